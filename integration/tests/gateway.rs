//! The gateway through its HTTP interface, against the fake upstream.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use sooth_fake_upstream::{
    Failure, FakeUpstream, FakeUpstreamConfig, GatewayConfigBuilder, SEARCH_FIRST_PUBLISHED,
    SEARCH_PUBLISHED_STEP, ServiceBuilder,
};
use sooth_protocol::{RequestSigner, verify_request};
use sooth_protocol::{RunClaims, generate_key, mint};
use sooth_proxy::{
    ApiKey, CacheOptions, GatewayState, Ledger, LinkedKeys, ProxyConfig, ResponseCache,
    RunningGateway, link_key, unlink_key,
};
use sooth_runner::{
    ChatMessage, ChatRequest, Gateway, GatewayAnswer, GatewayError, GatewayRequest,
    GatewayResponse, HttpGateway, RunContext, SearchRequest,
};

const MODEL: &str = "fake-org/Fake-Model-8B";

/// Keys miners may link: the fake upstream accepts them besides the
/// operator's.
const MINER_KEYS: [&str; 2] = ["sk-miner-own-key-1f6e", "sk-miner-search-key-77ab"];

struct World {
    upstream: FakeUpstream,
    gateway: RunningGateway,
    validator: ed25519_dalek::SigningKey,
    signer_public: ed25519_dalek::VerifyingKey,
    /// The configuration the gateway runs with (its data directory is the
    /// temporary one).
    config: ProxyConfig,
    /// The gateway's own store of linked keys.
    linked: LinkedKeys,
    _dir: tempfile::TempDir,
}

async fn world(day_cap: f64) -> World {
    world_with_caps(day_cap, day_cap).await
}

/// A world whose services have `day_cap` per miner per day with the
/// operator's key and `linked_day_cap` with the miner's own.
async fn world_with_caps(day_cap: f64, linked_day_cap: f64) -> World {
    world_with(day_cap, linked_day_cap, CacheOptions::default()).await
}

/// [`world_with_caps`] with the gateway's cache opened with `cache_options`.
async fn world_with(day_cap: f64, linked_day_cap: f64, cache_options: CacheOptions) -> World {
    let fake = FakeUpstreamConfig {
        extra_api_keys: MINER_KEYS.map(str::to_owned).to_vec(),
        ..FakeUpstreamConfig::default()
    };
    let upstream = FakeUpstream::start(fake.clone())
        .await
        .expect("fake upstream");
    let dir = tempfile::tempdir().expect("tempdir");
    let validator = generate_key();
    let signing = generate_key();
    let signer_public = signing.verifying_key();
    let base = upstream.base_url();
    let service_caps = |service: ServiceBuilder| service.day_caps(day_cap, linked_day_cap);
    let toml = GatewayConfigBuilder::new(dir.path())
        .validator_public_key(sooth_protocol::encode_public_key(
            &validator.verifying_key(),
        ))
        .default_services("chutes", "desearch")
        .service(service_caps(
            ServiceBuilder::chat("chutes", &base, "CHUTES_API_KEY", &[MODEL])
                .set("max_output_tokens", 512),
        ))
        .service(service_caps(ServiceBuilder::search(
            "desearch",
            &base,
            "DESEARCH_API_KEY",
        )))
        .service(service_caps(
            ServiceBuilder::search("archive", &base, "DESEARCH_API_KEY")
                .set("clamp_to_as_of", false),
        ))
        .service(service_caps(ServiceBuilder::generic(
            "echo",
            &format!("{base}/generic/echo"),
            "ECHO_API_KEY",
            "x-api-key",
            0.001,
        )))
        .to_toml();
    let config = ProxyConfig::from_toml(&toml, "test config").expect("config");
    let keys = BTreeMap::from([
        ("chutes".to_owned(), fake.api_key.clone()),
        ("desearch".to_owned(), fake.search_api_key.clone()),
        ("archive".to_owned(), fake.search_api_key.clone()),
        ("echo".to_owned(), fake.generic_api_key.clone()),
    ]);
    let ledger = Ledger::open(&dir.path().join("gateway.sqlite"))
        .await
        .expect("ledger");
    let cache = ResponseCache::open_with(&dir.path().join("gateway.sqlite"), &cache_options)
        .await
        .expect("cache");
    // No periodic reload: the tests reload when they want another
    // process's links seen.
    let linked = LinkedKeys::open(&dir.path().join("gateway.sqlite"), None)
        .await
        .expect("linked keys");
    let state = GatewayState::new(
        config.clone(),
        validator.verifying_key(),
        RequestSigner::new(signing),
        ledger,
        cache,
        keys,
        linked.clone(),
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
        config,
        linked,
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
    token_for(world, run, chat_cap, "5Miner", false)
}

/// A token of `miner`'s, with the token's `linked_key` claim as given.
fn token_for(world: &World, run: &str, chat_cap: f64, miner: &str, linked_key: bool) -> String {
    let claims = RunClaims {
        run_id: run.into(),
        miner: miner.into(),
        agent_hash: "ab".repeat(32),
        caps_usd: BTreeMap::from([
            ("chutes".into(), chat_cap),
            ("desearch".into(), 0.01),
            ("echo".into(), 0.01),
        ]),
        linked_key,
        issued_at: now(),
        expires_at: now() + 300,
        as_of: now(),
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
        as_of: now(),
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

/// The API key the upstream saw on the last request it received.
fn last_key(world: &World) -> Option<String> {
    world
        .upstream
        .recorded()
        .last()
        .and_then(|request| request.api_key.clone())
}

/// Link as `sooth proxy link-key` does (a store of its own on the data
/// directory's file), then have the gateway re-read the keys on file, as its
/// periodic reload would.
async fn link_as_cli(world: &World, miner: &str, service: &str, key: &str) {
    link_key(
        &world.config,
        miner,
        service,
        ApiKey::parse(key).expect("key"),
    )
    .await
    .expect("link");
    world.linked.reload().await.expect("reload");
}

/// One chat call of `miner` (a token without the `linked_key` claim).
async fn ask(world: &World, miner: &str, question: &str, max_tokens: u32) -> GatewayAnswer {
    HttpGateway::new(world.gateway.base_url())
        .expect("client")
        .handle(
            &context(Some(token_for(world, question, 1.0, miner, false))),
            chat_about(question, max_tokens),
        )
        .await
}

fn is_over_budget(answer: &GatewayAnswer) -> bool {
    matches!(answer.result, Err(GatewayError::BudgetExceeded { .. }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_linked_key_pays_for_its_miner_under_the_linked_cap_until_unlinked() {
    // A call of 8 output tokens fits the operator's daily cap; one of 512
    // (about $0.001 reserved), and any search or echo call, only the linked
    // cap.
    let world = world_with_caps(0.0002, 10.0).await;
    let operator = FakeUpstreamConfig::default();

    let small = ask(&world, "5Other", "small, operator's key", 8).await;
    assert!(small.result.is_ok(), "{small:?}");
    assert_eq!(last_key(&world).as_deref(), Some(operator.api_key.as_str()));
    let large = ask(&world, "5Other", "large, operator's cap", 512).await;
    assert!(is_over_budget(&large), "{large:?}");

    link_as_cli(&world, "5Miner", "chutes", MINER_KEYS[0]).await;
    let before = world.upstream.stats().chat_requests;
    // The token does not claim a link: the key on file decides.
    let linked = ask(&world, "5Miner", "large, miner's own key", 512).await;
    assert!(linked.result.is_ok(), "{linked:?}");
    assert!(
        linked.cost_usd > 0.0,
        "the ledger still counts what it cost"
    );
    assert_eq!(world.upstream.stats().chat_requests, before + 1);
    assert_eq!(last_key(&world).as_deref(), Some(MINER_KEYS[0]));
    // Another miner is not affected.
    let other = ask(&world, "5Other", "small, still the operator's", 8).await;
    assert!(other.result.is_ok(), "{other:?}");
    assert_eq!(last_key(&world).as_deref(), Some(operator.api_key.as_str()));

    // A link is per service: search is still on the operator's key and cap.
    let client = HttpGateway::new(world.gateway.base_url()).expect("client");
    let run = context(Some(token(&world, "per-service", 1.0)));
    let search = GatewayRequest::Search(SearchRequest {
        query: "linked search".into(),
        max_results: Some(2),
        start_date: None,
        end_date: None,
    });
    let refused = client.handle(&run, search).await;
    assert!(is_over_budget(&refused), "{refused:?}");
    // A service whose key goes in a header of its own.
    link_as_cli(&world, "5Miner", "echo", MINER_KEYS[1]).await;
    let echo = client
        .handle(
            &run,
            GatewayRequest::Call {
                service: "echo".into(),
                body: r#"{"linked":true}"#.into(),
            },
        )
        .await;
    assert!(echo.result.is_ok(), "{echo:?}");
    assert_eq!(last_key(&world).as_deref(), Some(MINER_KEYS[1]));

    assert!(
        unlink_key(&world.config, "5Miner", "chutes")
            .await
            .expect("unlink")
    );
    world.linked.reload().await.expect("reload");
    let large = ask(&world, "5Miner", "large, after unlinking", 512).await;
    assert!(is_over_budget(&large), "{large:?}");
    let small = ask(&world, "5Miner", "small, after unlinking", 8).await;
    assert!(small.result.is_ok(), "{small:?}");
    assert_eq!(last_key(&world).as_deref(), Some(operator.api_key.as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_claiming_a_link_without_a_key_on_file_gets_the_operator_key_and_cap() {
    let world = world_with_caps(0.0002, 10.0).await;
    let client = HttpGateway::new(world.gateway.base_url()).expect("client");
    let ask_claiming = |question: &'static str, max_tokens| {
        let run = context(Some(token_for(&world, question, 1.0, "5Miner", true)));
        let client = client.clone();
        async move { client.handle(&run, chat_about(question, max_tokens)).await }
    };
    let large = ask_claiming("large, claimed link", 512).await;
    assert!(is_over_budget(&large), "{large:?}");
    let small = ask_claiming("small, claimed link", 8).await;
    assert!(small.result.is_ok(), "{small:?}");
    assert_eq!(
        last_key(&world).as_deref(),
        Some(FakeUpstreamConfig::default().api_key.as_str())
    );
}

/// Everything logged in this test process at every level, from the moment
/// the first test asks for it (one global subscriber, `log` records
/// included).
fn captured_logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let writer = buffer.clone();
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || Capture(writer.clone()))
            .try_init()
            .expect("the only global subscriber");
        buffer
    })
    .clone()
}

struct Capture(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_never_appear_in_logs_or_error_bodies() {
    let logs = captured_logs();
    let world = world(10.0).await;
    let revoked = "sk-revoked-by-upstream-4e2a";
    link_as_cli(&world, "5Miner", "chutes", MINER_KEYS[0]).await;
    link_as_cli(&world, "5Revoked", "chutes", revoked).await;

    // A retried call logs its retry.
    world.upstream.fail_next(1, Failure::Unavailable);
    let answer = ask(&world, "5Miner", "logged retry", 8).await;
    assert!(answer.result.is_ok(), "{answer:?}");
    assert_eq!(answer.retries, 1);

    // The upstream refuses a key: the miner's call fails, and the answer
    // does not repeat the key.
    let http = reqwest::Client::new();
    let refused = http
        .post(format!("{}/v1/chat", world.gateway.base_url()))
        .bearer_auth(token_for(&world, "revoked", 1.0, "5Revoked", true))
        .json(&serde_json::json!({"model": MODEL, "messages": [{"role": "user", "content": "revoked key"}], "max_tokens": 8}))
        .send()
        .await
        .expect("send");
    assert_eq!(refused.status(), 400);
    let body = refused.text().await.expect("body");
    assert!(body.contains("refused"), "{body}");
    assert_eq!(
        last_key(&world).as_deref(),
        Some(revoked),
        "the gateway sent the key on file"
    );
    let metrics = reqwest::get(format!("{}/metrics", world.gateway.base_url()))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");

    let logged = String::from_utf8_lossy(
        &logs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    )
    .into_owned();
    assert!(
        logged.contains("retrying upstream"),
        "the capture works: {logged}"
    );
    let operator = FakeUpstreamConfig::default();
    for key in [
        MINER_KEYS[0],
        revoked,
        &operator.api_key,
        &operator.search_api_key,
        &operator.generic_api_key,
    ] {
        assert!(!logged.contains(key), "a key was logged");
        assert!(!body.contains(key), "a key is in an error body: {body}");
        assert!(!metrics.contains(key), "a key is in the metrics");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_gateway_has_written_its_ledger_and_a_restart_keeps_the_caps() {
    let World {
        upstream,
        gateway,
        validator,
        _dir: dir,
        ..
    } = world(10.0).await;
    let client = HttpGateway::new(gateway.base_url()).expect("client");
    let now = now();
    let claims = RunClaims {
        run_id: "restart".into(),
        miner: "miner-restart".into(),
        agent_hash: "00".repeat(32),
        caps_usd: BTreeMap::from([("*".to_owned(), 1.0)]),
        linked_key: false,
        issued_at: now,
        expires_at: now + 600,
        as_of: now,
    };
    let run = context(Some(mint(&validator, &claims)));
    let mut spent = 0.0;
    for i in 0..5 {
        let answer = client.handle(&run, chat_about(&format!("q{i}"), 16)).await;
        assert!(answer.result.is_ok(), "{answer:?}");
        spent += answer.cost_usd;
    }
    assert!(spent > 0.0);
    assert!((upstream.stats().billed_usd - spent).abs() < 1e-5);
    gateway.stop().await;
    // The ledger file is free again and holds every charge.
    let ledger = Ledger::open(&dir.path().join("gateway.sqlite"))
        .await
        .expect("reopen");
    let charged = ledger.spent_usd("restart", "chutes").await.expect("spent");
    assert!((charged - spent).abs() < 1e-5, "{charged} vs {spent}");
    // A cap decision after the restart sees the spend before it.
    let refused = ledger
        .reserve(sooth_proxy::Reservation {
            run_id: "restart".into(),
            miner: "miner-restart".into(),
            service: "chutes".into(),
            day: sooth_proxy::utc_today(),
            amount_usd: 1.0 - spent + 1e-4,
            run_cap_usd: 1.0,
            day_cap_usd: 10.0,
        })
        .await;
    assert!(
        matches!(
            refused,
            Err(sooth_proxy::LedgerError::BudgetExceeded { .. })
        ),
        "{refused:?}"
    );
    ledger.check_consistency().await.expect("consistent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_calls_report_their_retries_and_error() {
    let world = world(10.0).await;
    let client = HttpGateway::new(world.gateway.base_url()).expect("client");
    let run = context(Some(token(&world, "failures", 1.0)));
    // The services' default: 4 attempts, so 3 retries before giving up.
    let attempts = 4;

    // A storm of 503s longer than the attempts.
    world.upstream.fail_next(100, Failure::Unavailable);
    let storm = client.handle(&run, chat_about("storm", 8)).await;
    assert!(
        matches!(storm.result, Err(GatewayError::Unavailable { .. })),
        "{storm:?}"
    );
    assert_eq!(storm.retries, attempts - 1, "{storm:?}");
    assert_eq!(storm.cost_usd, 0.0);
    assert_eq!(
        world.upstream.stats().chat_requests,
        u64::from(attempts),
        "every attempt reached the upstream"
    );
    let search = client
        .handle(
            &run,
            GatewayRequest::Search(SearchRequest {
                query: "storm".into(),
                max_results: None,
                start_date: None,
                end_date: None,
            }),
        )
        .await;
    assert!(
        matches!(search.result, Err(GatewayError::Unavailable { .. })),
        "{search:?}"
    );
    assert_eq!(search.retries, attempts - 1, "{search:?}");

    // 429s after every retry: the agent is told to wait, and how often the
    // gateway already tried.
    world.upstream.clear_failures();
    world.upstream.fail_next(
        100,
        Failure::RateLimited {
            retry_after: Duration::from_millis(20),
        },
    );
    let limited = client.handle(&run, chat_about("limited", 8)).await;
    assert!(
        matches!(limited.result, Err(GatewayError::RateLimited { .. })),
        "{limited:?}"
    );
    assert_eq!(limited.retries, attempts - 1, "{limited:?}");

    // One retry, then an answer that is not retried.
    world.upstream.clear_failures();
    world.upstream.fail_next(1, Failure::Unavailable);
    world.upstream.fail_next(1, Failure::Status(404));
    let gone = client.handle(&run, chat_about("gone", 8)).await;
    assert!(
        matches!(gone.result, Err(GatewayError::NotFound { .. })),
        "{gone:?}"
    );
    assert_eq!(gone.retries, 1);

    // One retry, then an unreadable 200: charged, and both reported.
    world.upstream.fail_next(1, Failure::Unavailable);
    world.upstream.fail_next(1, Failure::Garbage);
    let garbage = client.handle(&run, chat_about("garbage", 8)).await;
    assert!(
        matches!(garbage.result, Err(GatewayError::Unavailable { .. })),
        "{garbage:?}"
    );
    assert_eq!(garbage.retries, 1);
    assert!(garbage.cost_usd > 0.0, "{garbage:?}");

    // On the wire: the header on the failed answer itself.
    world.upstream.fail_next(100, Failure::Unavailable);
    let raw = reqwest::Client::new()
        .post(format!("{}/v1/chat", world.gateway.base_url()))
        .bearer_auth(token(&world, "raw-storm", 1.0))
        .json(&serde_json::json!({"model": MODEL, "messages": [{"role": "user", "content": "raw storm"}], "max_tokens": 8}))
        .send()
        .await
        .expect("send");
    assert_eq!(raw.status(), 503);
    assert_eq!(
        raw.headers()
            .get(sooth_protocol::RETRIES_HEADER)
            .and_then(|v| v.to_str().ok()),
        Some("3")
    );
}

/// Sends `POST path` to the gateway over a bare TCP connection, so that the
/// path arrives exactly as written (an HTTP client would resolve `..` and
/// `%2e%2e` segments before sending); the status and body of the answer.
async fn raw_post(world: &World, path: &str, token: &str, body: &str) -> (u16, String) {
    use std::io::{Read as _, Write as _};
    let request = format!(
        "POST {path} HTTP/1.1\r\nhost: gateway\r\nauthorization: Bearer {token}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let addr = world.gateway.addr();
    let answer = tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(addr).expect("connect");
        stream.write_all(request.as_bytes()).expect("write");
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).expect("read");
        answer
    })
    .await
    .expect("raw request");
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {answer}"));
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traversal_in_a_service_name_is_not_found_and_reaches_no_upstream() {
    let world = world(10.0).await;
    let token = token(&world, "traversal", 1.0);
    let chat_body = serde_json::json!({"model": MODEL, "messages": [{"role": "user", "content": "walk"}], "max_tokens": 8})
        .to_string();
    for path in [
        "/v1/call/..%2Fchat",
        "/v1/call/..%2fchat",
        "/v1/call/%2e%2e",
        "/v1/call/%2E%2E%2Fchat",
        "/v1/call/%2e%2e%2f%2e%2e%2fv1%2fchat",
        "/v1/call/echo%2F..%2F..%2Fchat",
        "/v1/call/echo%2F..%2F..%2Fv1%2Fchat",
        "/v1/call/..%2F..%2Fv1%2Fchat",
        "/v1/call/..%5Cchat",
        "/v1/call/%252e%252e%252fchat",
        "/v1/call/echo%2F",
        "/v1/call/echo%00",
        "/v1/call/echo%20",
        "/v1/call/ECHO",
        "/v1/call/../chat",
        "/v1/call/echo/../../chat",
        "/v1/call/./echo/..",
        "/v1/chat/..%2Fchat",
        "/v1/chat/%2e%2e%2fchutes",
        "/v1/search/..%2Fdesearch",
        "/v1/search/desearch%2F..%2F..%2Fv1%2Fchat",
    ] {
        let (status, body) = raw_post(&world, path, &token, &chat_body).await;
        assert_eq!(status, 404, "{path}: {body}");
        let error: GatewayError =
            serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"));
        assert!(
            matches!(error, GatewayError::NotFound { .. }),
            "{path}: {error:?}"
        );
    }
    let stats = world.upstream.stats();
    assert_eq!(
        (
            stats.chat_requests,
            stats.search_requests,
            stats.generic_requests
        ),
        (0, 0, 0),
        "a request reached the upstream"
    );
    assert!(world.upstream.recorded().is_empty());
    // The same connection path does reach a configured service.
    let (status, body) = raw_post(&world, "/v1/call/echo", &token, r#"{"x":1}"#).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(world.upstream.stats().generic_requests, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn made_up_service_names_do_not_grow_the_metrics() {
    let world = world(10.0).await;
    let http = reqwest::Client::new();
    let base = world.gateway.base_url();
    let token = token(&world, "labels", 1.0);
    for i in 0..200 {
        let route = ["call", "chat", "search"][i % 3];
        let response = http
            .post(format!("{base}/v1/{route}/made-up-{i}"))
            .bearer_auth(&token)
            .body("{}")
            .send()
            .await
            .expect("send");
        assert_eq!(response.status(), 404);
    }
    let metrics = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(!metrics.contains("made-up"), "{metrics}");
    let unknown: Vec<&str> = metrics
        .lines()
        .filter(|line| line.contains(sooth_proxy::UNKNOWN_SERVICE_LABEL))
        .collect();
    assert_eq!(unknown.len(), 1, "{unknown:?}");
    assert!(
        unknown[0].contains("status=\"404\"") && unknown[0].ends_with(" 200"),
        "{unknown:?}"
    );
}

/// A run token of `run` with the given as-of instant and a cap of $1 on
/// every service.
fn token_as_of(world: &World, run: &str, as_of: i64) -> String {
    let claims = RunClaims {
        run_id: run.into(),
        miner: "5Miner".into(),
        agent_hash: "ab".repeat(32),
        caps_usd: BTreeMap::from([("*".into(), 1.0)]),
        linked_key: false,
        issued_at: now(),
        expires_at: now() + 300,
        as_of,
    };
    mint(&world.validator, &claims)
}

/// A search on `service` through the HTTP API: the status and the results'
/// publication instants.
async fn search_on(
    world: &World,
    service: &str,
    token: &str,
    body: serde_json::Value,
) -> (u16, Vec<Option<i64>>) {
    let response = reqwest::Client::new()
        .post(format!("{}/v1/search/{service}", world.gateway.base_url()))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .expect("send");
    let status = response.status().as_u16();
    if status != 200 {
        return (status, Vec::new());
    }
    let answer: sooth_protocol::SearchResponse = response.json().await.expect("search answer");
    (status, answer.results.iter().map(|r| r.published).collect())
}

/// The window bounds of the last request the upstream received.
fn last_window(world: &World) -> (serde_json::Value, serde_json::Value) {
    let recorded = world.upstream.recorded();
    let last = recorded.last().expect("a request reached the upstream");
    let body: serde_json::Value = serde_json::from_slice(&last.body).expect("json body");
    (body["start_date"].clone(), body["end_date"].clone())
}

fn rfc3339(unix: i64) -> serde_json::Value {
    serde_json::Value::String(
        chrono::DateTime::from_timestamp(unix, 0)
            .expect("instant")
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    )
}

/// An hour after the fake corpus's page 20 (2025-05-21): pages 0 to 20 were
/// published by then, 21 to 99 after.
const AS_OF: i64 = SEARCH_FIRST_PUBLISHED + 20 * SEARCH_PUBLISHED_STEP + 3600;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_search_sees_nothing_published_after_the_runs_as_of_instant() {
    let world = world(10.0).await;
    let token = token_as_of(&world, "as-of", AS_OF);
    let day = 86_400;
    // No end date: the window ends at as-of, and the newest result is the
    // last page published before it.
    let (status, published) = search_on(
        &world,
        "desearch",
        &token,
        serde_json::json!({"query": "who wins", "max_results": 5}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        last_window(&world),
        (serde_json::Value::Null, rfc3339(AS_OF))
    );
    assert_eq!(published.len(), 5);
    assert_eq!(published[0], Some(AS_OF - 3600));
    assert!(published.iter().all(|p| p.is_some_and(|p| p <= AS_OF)));
    // A later end date is lowered to as-of; so is one far in the future.
    for (query, end) in [("later", AS_OF + 30 * day), ("much later", i64::MAX)] {
        let (status, published) = search_on(
            &world,
            "desearch",
            &token,
            serde_json::json!({"query": query, "max_results": 5, "start_date": AS_OF - 60 * day, "end_date": end}),
        )
        .await;
        assert_eq!(status, 200, "{query}");
        assert_eq!(
            last_window(&world),
            (rfc3339(AS_OF - 60 * day), rfc3339(AS_OF)),
            "{query}"
        );
        assert!(
            !published.is_empty() && published.iter().all(|p| p.is_some_and(|p| p <= AS_OF)),
            "{query}: {published:?}"
        );
    }
    // An earlier end date is forwarded as it is.
    let (status, _) = search_on(
        &world,
        "desearch",
        &token,
        serde_json::json!({"query": "earlier", "end_date": AS_OF - 10 * day}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(last_window(&world).1, rfc3339(AS_OF - 10 * day));
    // A window that starts after as-of is refused before the upstream.
    let before = world.upstream.stats().search_requests;
    let (status, _) = search_on(
        &world,
        "desearch",
        &token,
        serde_json::json!({"query": "tomorrow", "start_date": AS_OF + 1}),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(world.upstream.stats().search_requests, before);
    // An upstream that ignores the window: what it sends from after as-of
    // is dropped (its newest pages are all later, so nothing is left).
    world.upstream.set_search_ignores_window(true);
    let (status, published) = search_on(
        &world,
        "desearch",
        &token,
        serde_json::json!({"query": "leaky", "max_results": 5}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(world.upstream.stats().search_requests, before + 1);
    assert_eq!(published, Vec::<Option<i64>>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_clamp_off_the_search_window_is_forwarded_unchanged() {
    let world = world(10.0).await;
    let token = token_as_of(&world, "archive", AS_OF);
    let (status, published) = search_on(
        &world,
        "archive",
        &token,
        serde_json::json!({"query": "who wins", "max_results": 5}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        last_window(&world),
        (serde_json::Value::Null, serde_json::Value::Null)
    );
    assert!(
        published.iter().all(|p| p.is_some_and(|p| p > AS_OF)),
        "{published:?}"
    );
    let end = AS_OF + 30 * 86_400;
    let (status, published) = search_on(
        &world,
        "archive",
        &token,
        serde_json::json!({"query": "who wins", "end_date": end, "start_date": AS_OF + 1}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(last_window(&world), (rfc3339(AS_OF + 1), rfc3339(end)));
    assert!(!published.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_with_different_as_of_instants_do_not_share_a_search_answer() {
    let world = world(10.0).await;
    let later = AS_OF + 10 * SEARCH_PUBLISHED_STEP;
    let query = serde_json::json!({"query": "the same question", "max_results": 3});
    let (_, early) = search_on(
        &world,
        "desearch",
        &token_as_of(&world, "early", AS_OF),
        query.clone(),
    )
    .await;
    let (_, late) = search_on(
        &world,
        "desearch",
        &token_as_of(&world, "late", later),
        query.clone(),
    )
    .await;
    assert_eq!(world.upstream.stats().search_requests, 2);
    assert_eq!(early[0], Some(AS_OF - 3600));
    assert_eq!(late[0], Some(later - 3600));
    // A third run as of the first instant is answered from the cache, with
    // the first run's answer.
    let (_, again) = search_on(
        &world,
        "desearch",
        &token_as_of(&world, "again", AS_OF),
        query,
    )
    .await;
    assert_eq!(world.upstream.stats().search_requests, 2);
    assert_eq!(again, early);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_gateway_has_written_its_cached_answers() {
    // The writer would hold its batch for a minute: only the stop's flush
    // writes it in time.
    let options = CacheOptions {
        write_linger: Duration::from_secs(60),
        ..CacheOptions::default()
    };
    let World {
        upstream,
        gateway,
        validator,
        _dir: dir,
        ..
    } = world_with(10.0, 10.0, options).await;
    let client = HttpGateway::new(gateway.base_url()).expect("client");
    let claims = RunClaims {
        run_id: "cache-stop".into(),
        miner: "5Miner".into(),
        agent_hash: "00".repeat(32),
        caps_usd: BTreeMap::from([("*".to_owned(), 1.0)]),
        linked_key: false,
        issued_at: now(),
        expires_at: now() + 600,
        as_of: now(),
    };
    let run = context(Some(mint(&validator, &claims)));
    for i in 0..5 {
        let answer = client
            .handle(&run, chat_about(&format!("kept {i}"), 8))
            .await;
        assert!(answer.result.is_ok() && !answer.cached, "{answer:?}");
        // Asked again while the write is queued: answered from memory.
        let again = client
            .handle(&run, chat_about(&format!("kept {i}"), 8))
            .await;
        assert!(again.cached, "{again:?}");
    }
    assert_eq!(upstream.stats().chat_requests, 5);
    let started = Instant::now();
    gateway.stop().await;
    assert!(started.elapsed() < Duration::from_secs(30));
    let cache = ResponseCache::open(&dir.path().join("gateway.sqlite"))
        .await
        .expect("reopen");
    assert_eq!(
        cache
            .live_entries(sooth_proxy::unix_now_ms())
            .await
            .expect("count"),
        5
    );
}
