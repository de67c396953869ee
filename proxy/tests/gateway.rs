//! The gateway through its HTTP interface, against the fake upstream.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sooth_proxy::cache::ResponseCache;
use sooth_proxy::config::ProxyConfig;
use sooth_proxy::fake_upstream::{Failure, FakeUpstream, FakeUpstreamConfig};
use sooth_proxy::ledger::Ledger;
use sooth_proxy::server::{GatewayState, RunningGateway};
use sooth_proxy::signing::{RequestSigner, verify_request};
use sooth_proxy::token::{RunClaims, generate_key, mint};
use sooth_runner::{
    ChatMessage, ChatRequest, Gateway, GatewayError, GatewayRequest, GatewayResponse, HttpGateway,
    RunContext, SearchRequest,
};

const MODEL: &str = "fake-org/Fake-Model-8B";

struct World {
    upstream: FakeUpstream,
    gateway: RunningGateway,
    validator: ed25519_dalek::SigningKey,
    signer_public: ed25519_dalek::VerifyingKey,
    _dir: tempfile::TempDir,
}

async fn world(day_cap: f64) -> World {
    let upstream = FakeUpstream::start(FakeUpstreamConfig::default())
        .await
        .expect("fake upstream");
    let dir = tempfile::tempdir().expect("tempdir");
    let validator = generate_key();
    let signing = generate_key();
    let signer_public = signing.verifying_key();
    let base = upstream.base_url();
    let config = ProxyConfig::from_toml(
        &format!(
            r#"
data_dir = "unused"
validator_public_key = "{validator}"
signing_key_file = "unused"
default_chat_service = "chutes"
default_search_service = "desearch"

[services.chutes]
kind = "chat"
base_url = "{base}"
api_key_env = "CHUTES_API_KEY"
max_output_tokens = 512
per_miner_day_cap_usd = {day_cap}
linked_per_miner_day_cap_usd = {day_cap}
models = {{ "{MODEL}" = {{ input_per_million = 0.5, output_per_million = 2.0 }} }}

[services.desearch]
kind = "search"
base_url = "{base}"
api_key_env = "DESEARCH_API_KEY"
auth = "raw"
price_per_call = 0.002
per_miner_day_cap_usd = {day_cap}
linked_per_miner_day_cap_usd = {day_cap}

[services.echo]
kind = "generic"
base_url = "{base}/generic/echo"
api_key_env = "ECHO_API_KEY"
auth = {{ header = "x-api-key" }}
price_per_call = 0.001
per_miner_day_cap_usd = {day_cap}
linked_per_miner_day_cap_usd = {day_cap}
"#,
            validator = sooth_proxy::token::encode_public_key(&validator.verifying_key()),
        ),
        "test config",
    )
    .expect("config");
    let fake = FakeUpstreamConfig::default();
    let keys = BTreeMap::from([
        ("chutes".to_owned(), fake.api_key.clone()),
        ("desearch".to_owned(), fake.search_api_key.clone()),
        ("echo".to_owned(), fake.generic_api_key.clone()),
    ]);
    let ledger = Ledger::open(&dir.path().join("gateway.sqlite"))
        .await
        .expect("ledger");
    let cache = ResponseCache::open(&dir.path().join("gateway.sqlite"))
        .await
        .expect("cache");
    let state = GatewayState::new(
        config,
        validator.verifying_key(),
        RequestSigner::new(signing),
        ledger,
        cache,
        keys,
    )
    .await
    .expect("state");
    let gateway = RunningGateway::start(state, "127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("gateway");
    World {
        upstream,
        gateway,
        validator,
        signer_public,
        _dir: dir,
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

fn token(world: &World, run: &str, chat_cap: f64) -> String {
    let claims = RunClaims {
        run_id: run.into(),
        miner: "5Miner".into(),
        agent_hash: "ab".repeat(32),
        caps_usd: BTreeMap::from([
            ("chutes".into(), chat_cap),
            ("desearch".into(), 0.01),
            ("echo".into(), 0.01),
        ]),
        linked_key: false,
        issued_at: now(),
        expires_at: now() + 300,
    };
    mint(&world.validator, &claims)
}

fn context(token: Option<String>) -> RunContext {
    RunContext {
        run_id: "run".into(),
        event_id: "e".into(),
        agent_hash: "ab".repeat(32),
        miner: Some("5Miner".into()),
        deadline: Instant::now() + Duration::from_secs(30),
        token,
    }
}

fn chat(max_tokens: u32) -> GatewayRequest {
    chat_about("Will it rain tomorrow in Lisbon?", max_tokens)
}

/// A chat request with its own prompt: distinct prompts are never answered
/// from one another's cache entries.
fn chat_about(question: &str, max_tokens: u32) -> GatewayRequest {
    GatewayRequest::Chat(ChatRequest {
        model: MODEL.into(),
        messages: vec![ChatMessage {
            role: "user".into(),
            content: question.into(),
        }],
        temperature: Some(0.0),
        max_tokens: Some(max_tokens),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_is_forwarded_signed_and_charged_what_the_upstream_billed() {
    let world = world(10.0).await;
    let client = HttpGateway::new(world.gateway.base_url()).expect("client");
    let run = context(Some(token(&world, "r1", 1.0)));
    let answer = client.handle(&run, chat(16)).await;
    let Ok(GatewayResponse::Chat(response)) = &answer.result else {
        panic!("{answer:?}")
    };
    assert!(
        response.content.starts_with("Probability: "),
        "{}",
        response.content
    );
    let billed = world.upstream.stats().billed_usd;
    assert!(billed > 0.0);
    assert!(
        (answer.cost_usd - billed).abs() < 2e-6,
        "charged {} billed {billed}",
        answer.cost_usd
    );

    let recorded = world.upstream.recorded();
    let last = recorded.last().expect("a request reached the upstream");
    let verified = verify_request(
        |name| last.header(name).map(str::to_owned),
        &last.body,
        &[world.signer_public],
        now(),
        60,
    )
    .expect("the upstream request carries a valid signature");
    assert_eq!(verified.miner, "5Miner");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_forged_and_expired_tokens_are_refused() {
    let world = world(10.0).await;
    let http = reqwest::Client::new();
    let url = format!("{}/v1/chat", world.gateway.base_url());
    let body = serde_json::json!({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "temperature": null, "max_tokens": 8});
    let missing = http.post(&url).json(&body).send().await.expect("send");
    assert_eq!(missing.status(), 401);

    let other = generate_key();
    let forged_claims = RunClaims {
        run_id: "r".into(),
        miner: "5Miner".into(),
        agent_hash: "x".into(),
        caps_usd: BTreeMap::from([("chutes".into(), 1.0)]),
        linked_key: false,
        issued_at: now(),
        expires_at: now() + 60,
    };
    let forged = http
        .post(&url)
        .bearer_auth(mint(&other, &forged_claims))
        .json(&body)
        .send()
        .await
        .expect("send");
    assert_eq!(forged.status(), 401);
    let expired_claims = RunClaims {
        issued_at: now() - 600,
        expires_at: now() - 300,
        ..forged_claims
    };
    let expired = http
        .post(&url)
        .bearer_auth(mint(&world.validator, &expired_claims))
        .json(&body)
        .send()
        .await
        .expect("send");
    assert_eq!(expired.status(), 401);
    assert!(expired.text().await.expect("body").contains("expired"));
    assert_eq!(
        world.upstream.stats().chat_requests,
        0,
        "nothing reached the upstream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_refused_before_anything_is_spent() {
    let world = world(10.0).await;
    let http = reqwest::Client::new();
    let url = format!("{}/v1/chat", world.gateway.base_url());
    let token = token(&world, "bad", 1.0);
    let send = |body: Vec<u8>| http.post(&url).bearer_auth(&token).body(body).send();
    assert_eq!(
        send(b"{not json".to_vec()).await.expect("send").status(),
        400
    );
    let zero = serde_json::json!({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 0});
    assert_eq!(
        send(serde_json::to_vec(&zero).expect("json"))
            .await
            .expect("send")
            .status(),
        400
    );
    let absurd = serde_json::json!({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4_000_000});
    assert_eq!(
        send(serde_json::to_vec(&absurd).expect("json"))
            .await
            .expect("send")
            .status(),
        400
    );
    let unknown = serde_json::json!({"model": "nobody/none", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8});
    let response = send(serde_json::to_vec(&unknown).expect("json"))
        .await
        .expect("send");
    assert_eq!(response.status(), 404);
    let huge = vec![b' '; 1 << 20];
    assert_eq!(send(huge).await.expect("send").status(), 413);
    assert_eq!(world.upstream.stats().chat_requests, 0);
    let error = HttpGateway::new(world.gateway.base_url())
        .expect("client")
        .handle(
            &context(Some(token.clone())),
            GatewayRequest::Call {
                service: "nope".into(),
                body: "{}".into(),
            },
        )
        .await;
    assert!(
        matches!(error.result, Err(GatewayError::NotFound { .. })),
        "{error:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unavailable_upstreams_are_retried_and_not_found_is_not() {
    let world = world(10.0).await;
    let client = HttpGateway::new(world.gateway.base_url()).expect("client");
    world.upstream.fail_next(2, Failure::Unavailable);
    let answer = client
        .handle(
            &context(Some(token(&world, "retry", 1.0))),
            chat_about("retry", 8),
        )
        .await;
    assert!(answer.result.is_ok(), "{answer:?}");
    assert_eq!(answer.retries, 2);
    assert_eq!(world.upstream.stats().chat_requests, 3);

    world.upstream.fail_next(
        1,
        Failure::RateLimited {
            retry_after: Duration::from_millis(300),
        },
    );
    let started = Instant::now();
    let answer = client
        .handle(
            &context(Some(token(&world, "limited", 1.0))),
            chat_about("limited", 8),
        )
        .await;
    assert!(answer.result.is_ok(), "{answer:?}");
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "Retry-After was honoured"
    );

    world.upstream.fail_next(1, Failure::Status(404));
    let answer = client
        .handle(
            &context(Some(token(&world, "gone", 1.0))),
            chat_about("gone", 8),
        )
        .await;
    assert!(
        matches!(answer.result, Err(GatewayError::NotFound { .. })),
        "{answer:?}"
    );
    assert_eq!(answer.cost_usd, 0.0);
    let metrics = reqwest::get(format!("{}/metrics", world.gateway.base_url()))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(metrics.contains("sooth_gateway_retries_total"), "{metrics}");
    assert!(
        metrics.contains("sooth_gateway_spend_usd_total"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_missing_usage_charge_the_reservation_as_estimated() {
    let world = world(10.0).await;
    let client = HttpGateway::new(world.gateway.base_url()).expect("client");
    world.upstream.fail_next(1, Failure::Garbage);
    let answer = client
        .handle(
            &context(Some(token(&world, "garbage", 1.0))),
            chat_about("garbage", 8),
        )
        .await;
    assert!(
        matches!(answer.result, Err(GatewayError::Unavailable { .. })),
        "{answer:?}"
    );
    world.upstream.fail_next(1, Failure::NoUsage);
    let answer = client
        .handle(
            &context(Some(token(&world, "nousage", 1.0))),
            chat_about("no usage", 8),
        )
        .await;
    assert!(answer.result.is_ok(), "{answer:?}");
    assert!(
        answer.cost_usd > 0.0,
        "the reservation is charged when usage is missing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_requests_never_overspend_one_cap() {
    let world = world(10.0).await;
    world.upstream.set_latency(Duration::from_millis(20));
    let client = Arc::new(HttpGateway::new(world.gateway.base_url()).expect("client"));
    let cap = 0.002;
    let run = Arc::new(context(Some(token(&world, "storm", cap))));
    let tasks: Vec<_> = (0..1000)
        .map(|i| {
            let (client, run) = (client.clone(), run.clone());
            tokio::spawn(async move {
                client
                    .handle(&run, chat_about(&format!("question {i}"), 64))
                    .await
            })
        })
        .collect();
    let mut ok = 0;
    let mut refused = 0;
    let mut charged = 0.0;
    for task in tasks {
        let answer = task.await.expect("task");
        match answer.result {
            Ok(_) => ok += 1,
            Err(GatewayError::BudgetExceeded { .. }) => refused += 1,
            Err(other) => panic!("unexpected {other:?}"),
        }
        charged += answer.cost_usd;
    }
    let billed = world.upstream.stats().billed_usd;
    assert!(ok > 0 && refused > 0, "ok {ok}, refused {refused}");
    assert!(
        billed <= cap + 1e-9,
        "the upstream billed {billed}, over the cap of {cap}"
    );
    assert!(charged <= cap + 1e-9, "charged {charged}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_and_generic_services_are_forwarded_and_priced() {
    let world = world(10.0).await;
    let client = HttpGateway::new(world.gateway.base_url()).expect("client");
    let run = context(Some(token(&world, "search", 1.0)));
    let search = GatewayRequest::Search(SearchRequest {
        query: "rain Lisbon".into(),
        max_results: Some(3),
        start_date: None,
        end_date: None,
    });
    let answer = client.handle(&run, search).await;
    assert!(
        matches!(answer.result, Ok(GatewayResponse::Search(_))),
        "{answer:?}"
    );
    assert!((answer.cost_usd - 0.002).abs() < 1e-9);
    let echo = client
        .handle(
            &run,
            GatewayRequest::Call {
                service: "echo".into(),
                body: r#"{"x":1}"#.into(),
            },
        )
        .await;
    let Ok(GatewayResponse::Call { body }) = &echo.result else {
        panic!("{echo:?}")
    };
    assert!(body.contains("\"x\":1"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_requests_are_served_from_cache_for_free_and_collapsed() {
    let world = world(10.0).await;
    world.upstream.set_latency(Duration::from_millis(100));
    let client = Arc::new(HttpGateway::new(world.gateway.base_url()).expect("client"));
    let run = Arc::new(context(Some(token(&world, "cache", 1.0))));
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (client, run) = (client.clone(), run.clone());
            tokio::spawn(async move { client.handle(&run, chat(8)).await })
        })
        .collect();
    let mut paid = 0;
    for task in tasks {
        let answer = task.await.expect("task");
        assert!(answer.result.is_ok(), "{answer:?}");
        if !answer.cached {
            paid += 1;
            assert!(answer.cost_usd > 0.0);
        } else {
            assert_eq!(answer.cost_usd, 0.0, "a cache hit costs nothing");
        }
    }
    assert_eq!(
        paid, 1,
        "concurrent identical requests collapse into one upstream call"
    );
    assert_eq!(world.upstream.stats().chat_requests, 1);
    let again = client.handle(&run, chat(8)).await;
    assert!(again.cached && again.cost_usd == 0.0, "{again:?}");
    assert_eq!(world.upstream.stats().chat_requests, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_service_has_its_own_route() {
    let world = world(10.0).await;
    let http = reqwest::Client::new();
    let base = world.gateway.base_url();
    let body = serde_json::json!({"model": MODEL, "messages": [{"role": "user", "content": "named route"}], "max_tokens": 8});
    let token = token(&world, "routes", 1.0);
    let named = http
        .post(format!("{base}/v1/chat/chutes"))
        .bearer_auth(&token)
        .json(&body)
        .send()
        .await
        .expect("send");
    assert_eq!(named.status(), 200);
    let wrong_kind = http
        .post(format!("{base}/v1/chat/desearch"))
        .bearer_auth(&token)
        .json(&body)
        .send()
        .await
        .expect("send");
    assert_eq!(wrong_kind.status(), 404);
    let unknown = http
        .post(format!("{base}/v1/search/nowhere"))
        .bearer_auth(&token)
        .json(&body)
        .send()
        .await
        .expect("send");
    assert_eq!(unknown.status(), 404);
}
