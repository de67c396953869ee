//! The fake upstream's tests.

use super::*;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const MODEL: &str = "fake-org/Fake-Model-8B";

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client")
}

fn config() -> FakeUpstreamConfig {
    FakeUpstreamConfig {
        input_usd_per_million: 2.0,
        output_usd_per_million: 8.0,
        search_usd: 0.004,
        ..FakeUpstreamConfig::default()
    }
}

async fn start() -> FakeUpstream {
    FakeUpstream::start(config()).await.expect("start")
}

fn chat_body(prompt: &str, max_tokens: Option<u64>) -> Value {
    let mut body = json!({
        "model": MODEL,
        "messages": [
            {"role": "system", "content": "You forecast."},
            {"role": "user", "content": prompt},
        ],
        "temperature": 0.2,
    });
    if let Some(max) = max_tokens {
        body["max_tokens"] = json!(max);
    }
    body
}

async fn post_chat(
    fake: &FakeUpstream,
    client: &reqwest::Client,
    body: &Value,
) -> reqwest::Response {
    client
        .post(format!("{}/v1/chat/completions", fake.base_url()))
        .bearer_auth("fake-chat-key")
        .json(body)
        .send()
        .await
        .expect("send")
}

async fn post_search(
    fake: &FakeUpstream,
    client: &reqwest::Client,
    body: &Value,
) -> reqwest::Response {
    client
        .post(format!("{}/search", fake.base_url()))
        .header("authorization", "fake-search-key")
        .json(body)
        .send()
        .await
        .expect("send")
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-12
}

#[tokio::test]
async fn health_answers_and_is_not_counted() {
    let fake = start().await;
    let response = client()
        .get(format!("{}/health", fake.base_url()))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 200);
    assert_eq!(fake.stats(), FakeStats::default());
    assert!(fake.recorded().is_empty());
    fake.shutdown().await;
}

#[tokio::test]
async fn chat_happy_path_reports_usage_and_bills_it() {
    let fake = start().await;
    let client = client();
    // System "You forecast." (13 chars) + user prompt (27 chars) = 40 chars.
    let prompt = "Will it rain in Paris soon?";
    assert_eq!(prompt.len(), 27);
    let response = post_chat(&fake, &client, &chat_body(prompt, Some(100))).await;
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.expect("json");
    assert_eq!(answer["object"], "chat.completion");
    assert_eq!(answer["model"], MODEL);
    let content = answer["choices"][0]["message"]["content"]
        .as_str()
        .expect("content");
    assert_eq!(content, default_chat_answer(prompt));
    assert!(content.starts_with("Probability: 0."), "{content}");
    assert_eq!(content.len(), 17);
    assert_eq!(answer["choices"][0]["message"]["role"], "assistant");
    assert_eq!(answer["choices"][0]["finish_reason"], "stop");
    assert_eq!(answer["usage"]["prompt_tokens"], 10);
    assert_eq!(answer["usage"]["completion_tokens"], 5);
    assert_eq!(answer["usage"]["total_tokens"], 15);

    // Identical prompt, identical answer; another prompt is still well formed.
    let again: Value = post_chat(&fake, &client, &chat_body(prompt, Some(100)))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(again["choices"][0]["message"]["content"], content);
    assert_ne!(again["id"], answer["id"]);

    let stats = fake.stats();
    assert_eq!(stats.chat_requests, 2);
    assert_eq!(stats.chat_ok, 2);
    assert_eq!(stats.billed_prompt_tokens, 20);
    assert_eq!(stats.billed_completion_tokens, 10);
    // 20 * $2/M + 10 * $8/M = $0.00012.
    assert!(
        close(stats.billed_usd, 20.0 * 2e-6 + 10.0 * 8e-6),
        "{stats:?}"
    );
    fake.shutdown().await;
}

#[tokio::test]
async fn chat_completion_never_exceeds_max_tokens() {
    let fake = start().await;
    let client = client();
    fake.set_chat_reply(Some("x".repeat(400))); // 100 tokens
    let answer: Value = post_chat(&fake, &client, &chat_body("q", Some(7)))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(answer["usage"]["completion_tokens"], 7);
    assert_eq!(answer["choices"][0]["finish_reason"], "length");
    assert_eq!(
        answer["choices"][0]["message"]["content"]
            .as_str()
            .map(str::len),
        Some(28)
    );
    // Without max_tokens the limit is 16.
    let answer: Value = post_chat(&fake, &client, &chat_body("q", None))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(answer["usage"]["completion_tokens"], DEFAULT_MAX_TOKENS);
    // Default answer (5 tokens) cut to 1 token.
    fake.set_chat_reply(None);
    let answer: Value = post_chat(&fake, &client, &chat_body("q", Some(1)))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(answer["usage"]["completion_tokens"], 1);
    assert_eq!(answer["choices"][0]["message"]["content"], "Prob");
    // max_tokens 0 or negative is a 400, not billed.
    let billed = fake.stats().billed_usd;
    for bad in [json!(0), json!(-5)] {
        let mut body = chat_body("q", None);
        body["max_tokens"] = bad;
        assert_eq!(post_chat(&fake, &client, &body).await.status(), 400);
    }
    assert!(close(fake.stats().billed_usd, billed));
    fake.shutdown().await;
}

#[tokio::test]
async fn chat_without_the_right_key_is_401() {
    let fake = start().await;
    let client = client();
    let url = format!("{}/v1/chat/completions", fake.base_url());
    let body = chat_body("q", None);
    let missing = client.post(&url).json(&body).send().await.expect("send");
    assert_eq!(missing.status(), 401);
    let wrong = client
        .post(&url)
        .bearer_auth("not-the-key")
        .json(&body)
        .send()
        .await
        .expect("send");
    assert_eq!(wrong.status(), 401);
    let error: Value = wrong.json().await.expect("json");
    assert_eq!(error["error"]["code"], "invalid_api_key");
    assert!(error["error"]["message"].is_string());
    // The raw key without "Bearer" is not accepted either.
    let raw = client
        .post(&url)
        .header("authorization", "fake-chat-key")
        .json(&body)
        .send()
        .await
        .expect("send");
    assert_eq!(raw.status(), 401);
    // A 401 does not consume a scripted failure.
    fake.fail_next(1, Failure::Unavailable);
    let wrong = client.post(&url).json(&body).send().await.expect("send");
    assert_eq!(wrong.status(), 401);
    assert_eq!(fake.pending_failures(), 1);
    let stats = fake.stats();
    assert_eq!((stats.chat_requests, stats.chat_ok), (4, 0));
    assert!(close(stats.billed_usd, 0.0));
    fake.shutdown().await;
}

#[tokio::test]
async fn chat_unknown_model_is_404() {
    let fake = start().await;
    let mut body = chat_body("q", None);
    body["model"] = json!("nobody/Nothing-1B");
    let response = post_chat(&fake, &client(), &body).await;
    assert_eq!(response.status(), 404);
    let error: Value = response.json().await.expect("json");
    assert_eq!(error["error"]["message"], "model not found");
    assert_eq!(error["error"]["code"], "model_not_found");
    assert_eq!(fake.stats().chat_ok, 0);
    assert!(close(fake.stats().billed_usd, 0.0));
    fake.shutdown().await;
}

#[tokio::test]
async fn chat_malformed_json_is_400() {
    let fake = start().await;
    let response = client()
        .post(format!("{}/v1/chat/completions", fake.base_url()))
        .bearer_auth("fake-chat-key")
        .body("{not json")
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 400);
    let error: Value = response.json().await.expect("json");
    assert_eq!(error["error"]["type"], "invalid_request_error");
    fake.shutdown().await;
}

#[tokio::test]
async fn unavailable_then_success() {
    let fake = start().await;
    let client = client();
    fake.fail_next(2, Failure::Unavailable);
    assert_eq!(fake.pending_failures(), 2);
    let body = chat_body("q", None);
    for _ in 0..2 {
        let response = post_chat(&fake, &client, &body).await;
        assert_eq!(response.status(), 503);
    }
    assert_eq!(post_chat(&fake, &client, &body).await.status(), 200);
    let stats = fake.stats();
    assert_eq!((stats.chat_requests, stats.chat_ok), (3, 1));
    assert_eq!(fake.pending_failures(), 0);
    fake.shutdown().await;
}

#[tokio::test]
async fn rate_limited_with_retry_after() {
    let fake = start().await;
    let client = client();
    fake.fail_next(
        1,
        Failure::RateLimited {
            retry_after: Duration::from_millis(1_500),
        },
    );
    fake.fail_next(1, Failure::Status(500));
    let response = post_chat(&fake, &client, &chat_body("q", None)).await;
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "2");
    assert_eq!(response.headers()[RETRY_AFTER_MS], "1500");
    let error: Value = response.json().await.expect("json");
    assert_eq!(error["error"]["code"], "rate_limit_exceeded");
    // Plans queue up: the second one comes next.
    let response = post_chat(&fake, &client, &chat_body("q", None)).await;
    assert_eq!(response.status(), 500);
    assert_eq!(
        post_chat(&fake, &client, &chat_body("q", None))
            .await
            .status(),
        200
    );
    fake.shutdown().await;
}

#[tokio::test]
async fn garbage_body_is_200_not_json_and_not_billed() {
    let fake = start().await;
    fake.fail_next(1, Failure::Garbage);
    let response = post_chat(&fake, &client(), &chat_body("q", None)).await;
    assert_eq!(response.status(), 200);
    let text = response.text().await.expect("text");
    assert!(serde_json::from_str::<Value>(&text).is_err());
    let stats = fake.stats();
    assert_eq!((stats.chat_requests, stats.chat_ok), (1, 1));
    assert!(close(stats.billed_usd, 0.0));
    fake.shutdown().await;
}

#[tokio::test]
async fn no_usage_is_answered_but_not_billed() {
    let fake = start().await;
    let client = client();
    fake.fail_next(1, Failure::NoUsage);
    let answer: Value = post_chat(&fake, &client, &chat_body("q", None))
        .await
        .json()
        .await
        .expect("json");
    assert!(answer.get("usage").is_none());
    assert!(answer["choices"][0]["message"]["content"].is_string());
    fake.fail_next(1, Failure::NoUsage);
    let answer: Value = post_search(&fake, &client, &json!({"prompt": "news"}))
        .await
        .json()
        .await
        .expect("json");
    assert!(answer.get("cost_usd").is_none());
    assert!(answer["results"].is_array());
    let stats = fake.stats();
    assert_eq!((stats.chat_ok, stats.search_ok), (1, 1));
    assert_eq!(stats.billed_searches, 0);
    assert!(close(stats.billed_usd, 0.0));
    fake.shutdown().await;
}

#[tokio::test]
async fn cold_model_is_503_until_warmed() {
    let fake = start().await;
    let client = client();
    fake.set_cold(MODEL, true);
    let response = post_chat(&fake, &client, &chat_body("q", None)).await;
    assert_eq!(response.status(), 503);
    let error: Value = response.json().await.expect("json");
    assert_eq!(error["error"]["code"], "model_cold");
    // Other models are unaffected.
    let mut other = chat_body("q", None);
    other["model"] = json!("fake-org/Fake-Model-70B");
    assert_eq!(post_chat(&fake, &client, &other).await.status(), 200);
    fake.set_cold(MODEL, false);
    assert_eq!(
        post_chat(&fake, &client, &chat_body("q", None))
            .await
            .status(),
        200
    );
    fake.shutdown().await;
}

#[tokio::test]
async fn search_happy_path_and_billing() {
    let fake = start().await;
    let client = client();
    let body = json!({
        "prompt": "election polls",
        "tools": ["web", "news"],
        "start_date": "2025-03-01",
        "end_date": "2025-03-31",
        "count": 4,
    });
    let response = post_search(&fake, &client, &body).await;
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.expect("json");
    let results = answer["results"].as_array().expect("results");
    assert_eq!(results.len(), 4);
    for result in results {
        assert!(result["title"].is_string());
        assert!(
            result["url"]
                .as_str()
                .is_some_and(|u| u.starts_with("https://"))
        );
        assert!(result["snippet"].is_string());
    }
    // The newest four pages of the window (weekly from 2025-01-01),
    // newest first.
    let published: Vec<&str> = results
        .iter()
        .map(|r| r["published"].as_str().expect("published"))
        .collect();
    assert_eq!(
        published,
        [
            "2025-03-26T00:00:00Z",
            "2025-03-19T00:00:00Z",
            "2025-03-12T00:00:00Z",
            "2025-03-05T00:00:00Z"
        ]
    );
    assert_eq!(answer["cost_usd"], 0.004);
    // Deterministic.
    let again: Value = post_search(&fake, &client, &body)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(again, answer);
    // Bearer form is refused, so is a missing prompt.
    let bearer = client
        .post(format!("{}/search", fake.base_url()))
        .bearer_auth("fake-search-key")
        .json(&body)
        .send()
        .await
        .expect("send");
    assert_eq!(bearer.status(), 401);
    assert_eq!(
        post_search(&fake, &client, &json!({"count": 2}))
            .await
            .status(),
        400
    );

    let stats = fake.stats();
    assert_eq!((stats.search_requests, stats.search_ok), (4, 2));
    assert_eq!(stats.billed_searches, 2);
    assert!(close(stats.billed_usd, 0.008), "{stats:?}");
    assert_eq!(stats.chat_requests, 0);
    fake.shutdown().await;
}

#[tokio::test]
async fn search_honours_its_window_unless_told_to_leak() {
    let fake = start().await;
    let client = client();
    let published = |answer: &Value| -> Vec<i64> {
        answer["results"]
            .as_array()
            .expect("results")
            .iter()
            .map(|r| {
                chrono::DateTime::parse_from_rfc3339(r["published"].as_str().expect("date"))
                    .expect("rfc 3339")
                    .timestamp()
            })
            .collect()
    };
    let ask = |body: Value| {
        let (fake, client) = (&fake, &client);
        async move {
            let response = post_search(fake, client, &body).await;
            assert_eq!(response.status(), 200);
            response.json::<Value>().await.expect("json")
        }
    };
    // No window: the newest pages of the corpus.
    let newest = SEARCH_FIRST_PUBLISHED + (SEARCH_CORPUS_SIZE - 1) * SEARCH_PUBLISHED_STEP;
    let all = ask(json!({"prompt": "q", "count": 2})).await;
    assert_eq!(published(&all), [newest, newest - SEARCH_PUBLISHED_STEP]);
    // An end in any of the accepted forms: nothing after it.
    let end = SEARCH_FIRST_PUBLISHED + 10 * SEARCH_PUBLISHED_STEP + 3600;
    for form in [
        json!(end),
        json!("2025-03-12T01:00:00Z"),
        json!("2025-03-12T03:00:00+02:00"),
    ] {
        let answer = ask(json!({"prompt": "q", "count": 5, "end_date": form})).await;
        let dates = published(&answer);
        assert_eq!(dates.len(), 5, "{form}");
        assert_eq!(dates[0], end - 3600, "{form}");
        assert!(dates.iter().all(|d| *d <= end), "{form}");
    }
    // A date-only end includes the page published at its midnight.
    let answer = ask(json!({"prompt": "q", "count": 1, "end_date": "2025-03-12"})).await;
    assert_eq!(published(&answer), [end - 3600]);
    // Both bounds: only what lies between.
    let answer = ask(
        json!({"prompt": "q", "count": 20, "start_date": "2025-01-08", "end_date": "2025-01-22"}),
    )
    .await;
    assert_eq!(published(&answer).len(), 3);
    // Unreadable bounds are refused.
    for bad in [json!("yesterday"), json!(true), json!(1.5)] {
        let response = post_search(&fake, &client, &json!({"prompt": "q", "end_date": bad})).await;
        assert_eq!(response.status(), 400, "{bad}");
    }
    // A leaking upstream answers as if there were no window.
    fake.set_search_ignores_window(true);
    let leaked = ask(json!({"prompt": "q", "count": 2, "end_date": end})).await;
    assert_eq!(published(&leaked), published(&all));
    fake.shutdown().await;
}

#[tokio::test]
async fn generic_echo() {
    let fake = start().await;
    let client = client();
    let url = format!("{}/generic/weather", fake.base_url());
    let body = json!({"city": "Oslo", "days": [1, 2]});
    let response = client
        .post(&url)
        .header("x-api-key", "fake-generic-key")
        .json(&body)
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.expect("json");
    assert_eq!(answer, json!({"echo": body, "service": "weather"}));
    let unauthorized = client.post(&url).json(&body).send().await.expect("send");
    assert_eq!(unauthorized.status(), 401);
    let stats = fake.stats();
    assert_eq!((stats.generic_requests, stats.generic_ok), (2, 1));
    assert!(close(stats.billed_usd, 0.0));
    fake.shutdown().await;
}

#[tokio::test]
async fn records_sooth_headers_and_raw_body() {
    let fake = start().await;
    let raw = br#"{"model":"fake-org/Fake-Model-8B","messages":[{"role":"user","content":"hi"}]}"#;
    let response = client()
        .post(format!("{}/v1/chat/completions", fake.base_url()))
        .bearer_auth("fake-chat-key")
        .header("X-Sooth-Signature", "c2ln")
        .header("x-sooth-nonce", "n1")
        .header("x-other", "ignored")
        .header("content-type", "application/json")
        .body(raw.to_vec())
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 200);
    let recorded = fake.recorded();
    assert_eq!(recorded.len(), 1);
    let request = &recorded[0];
    assert_eq!(request.path, "/v1/chat/completions");
    assert_eq!(request.body, raw.to_vec());
    assert_eq!(request.headers.len(), 2);
    assert_eq!(request.header("x-sooth-signature"), Some("c2ln"));
    assert_eq!(request.header("X-SOOTH-NONCE"), Some("n1"));
    assert_eq!(request.header("authorization"), None);
    assert_eq!(request.api_key.as_deref(), Some("fake-chat-key"));
    fake.reset_stats();
    assert!(fake.recorded().is_empty());
    assert_eq!(fake.stats(), FakeStats::default());
    fake.shutdown().await;
}

#[tokio::test]
async fn recording_keeps_only_the_latest() {
    let fake = start().await;
    let client = client();
    let url = format!("{}/generic/log", fake.base_url());
    for i in 0..(RECORDED_CAPACITY + 5) {
        let response = client
            .post(&url)
            .header("x-api-key", "fake-generic-key")
            .json(&json!(i))
            .send()
            .await
            .expect("send");
        assert_eq!(response.status(), 200);
    }
    let recorded = fake.recorded();
    assert_eq!(recorded.len(), RECORDED_CAPACITY);
    assert_eq!(recorded[0].body, b"5".to_vec());
    assert_eq!(
        recorded[RECORDED_CAPACITY - 1].body,
        (RECORDED_CAPACITY + 4).to_string().into_bytes()
    );
    fake.shutdown().await;
}

async fn concurrent_chats(fake: &FakeUpstream, n: usize) {
    let client = client();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let client = client.clone();
        let url = format!("{}/v1/chat/completions", fake.base_url());
        tasks.spawn(async move {
            client
                .post(url)
                .bearer_auth("fake-chat-key")
                .json(&chat_body(&format!("question {i:04}"), Some(4)))
                .send()
                .await
                .expect("send")
                .status()
        });
    }
    while let Some(status) = tasks.join_next().await {
        assert_eq!(status.expect("join"), 200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_are_counted_exactly() {
    let fake = start().await;
    fake.set_latency(Duration::from_millis(20));
    concurrent_chats(&fake, 200).await;
    let stats = fake.stats();
    assert_eq!((stats.chat_requests, stats.chat_ok), (200, 200));
    // Each: 13 + 13 chars = 7 prompt tokens; answer cut to 4 tokens.
    assert_eq!(stats.billed_prompt_tokens, 200 * 7);
    assert_eq!(stats.billed_completion_tokens, 200 * 4);
    let expected = 200.0 * (7.0 * 2e-6 + 4.0 * 8e-6);
    assert!((stats.billed_usd - expected).abs() < 1e-9, "{stats:?}");
    fake.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_concurrent_requests_with_latency_overlap() {
    let fake = start().await;
    fake.set_latency(Duration::from_millis(300));
    let started = Instant::now();
    concurrent_chats(&fake, 1_000).await;
    let elapsed = started.elapsed();
    // Serialised, this would take 300 s; concurrently, about 0.3 s.
    assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
    assert_eq!(fake.stats().chat_ok, 1_000);
    fake.shutdown().await;
}

#[tokio::test]
async fn latency_is_respected_and_changeable() {
    let fake = FakeUpstream::start(FakeUpstreamConfig {
        latency: Duration::from_millis(150),
        ..config()
    })
    .await
    .expect("start");
    let client = client();
    let started = Instant::now();
    assert_eq!(
        post_chat(&fake, &client, &chat_body("q", None))
            .await
            .status(),
        200
    );
    assert!(started.elapsed() >= Duration::from_millis(150));

    // Applies to errors too (the 401 waits as well), and can be changed.
    fake.set_latency(Duration::from_millis(250));
    let started = Instant::now();
    let response = client
        .post(format!("{}/search", fake.base_url()))
        .json(&json!({"prompt": "x"}))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 401);
    assert!(started.elapsed() >= Duration::from_millis(250));

    // A scripted delay adds to it (to provoke client timeouts).
    fake.set_latency(Duration::ZERO);
    fake.fail_next(1, Failure::Delay(Duration::from_millis(300)));
    let timed_out = client
        .post(format!("{}/v1/chat/completions", fake.base_url()))
        .bearer_auth("fake-chat-key")
        .json(&chat_body("q", None))
        .timeout(Duration::from_millis(100))
        .send()
        .await;
    assert!(timed_out.is_err_and(|e| e.is_timeout()));
    let started = Instant::now();
    assert_eq!(
        post_chat(&fake, &client, &chat_body("q", None))
            .await
            .status(),
        200
    );
    assert!(started.elapsed() < Duration::from_millis(150));
    fake.shutdown().await;
}

#[tokio::test]
async fn shutdown_stops_the_server() {
    let fake = start().await;
    let url = format!("{}/health", fake.base_url());
    fake.shutdown().await;
    let refused = client().get(url).send().await;
    assert!(refused.is_err());
}
