//! A miner's key linked through the validator reaches a running gateway: the gateway pays that
//! miner's calls with it under the linked cap, until the miner's next version activates and
//! the validator takes the key back.
//!
//! The sink here hands keys to the gateway's data directory as `sooth validator run` does for
//! its in-process gateway (`sooth_proxy::link_key` and `unlink_key`); the gateway sees them at
//! its periodic reload.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use sooth_fake_upstream::{FakeUpstream, FakeUpstreamConfig, GatewayConfigBuilder, ServiceBuilder};
use sooth_protocol::{HotkeyScheme, RunClaims, SecretHotkey, generate_key, mint};
use sooth_proxy::{ApiKey, ProxyConfig, RunningGateway, launch, link_key, unlink_key};
use sooth_runner::{
    ChatMessage, ChatRequest, Gateway, GatewayAnswer, GatewayError, GatewayRequest, HttpGateway,
    RunContext,
};
use sooth_validator::linked_keys::{
    KeySealer, LinkedKeySink, MinerKeys, ServiceKey, SinkError, SinkFuture,
};
use sooth_validator::store::Store;
use sooth_validator::{AgentVersion, Miner};

const MODEL: &str = "fake-org/Fake-Model-8B";
const MINER_KEY: &str = "sk-miner-linked-through-validator-5d1c";

/// The gateway's store of linked keys in its data directory.
struct GatewayDirectory {
    config: ProxyConfig,
}

impl LinkedKeySink for GatewayDirectory {
    fn has_service(&self, service: &str) -> bool {
        self.config.services.contains_key(service)
    }

    fn link<'a>(&'a self, miner: &'a str, service: &'a str, key: &'a ServiceKey) -> SinkFuture<'a> {
        Box::pin(async move {
            let key = ApiKey::parse(key.expose()).map_err(SinkError::new)?;
            link_key(&self.config, miner, service, key)
                .await
                .map_err(SinkError::new)
        })
    }

    fn unlink<'a>(&'a self, miner: &'a str, service: &'a str) -> SinkFuture<'a> {
        Box::pin(async move {
            unlink_key(&self.config, miner, service)
                .await
                .map(|_| ())
                .map_err(SinkError::new)
        })
    }
}

struct World {
    upstream: FakeUpstream,
    gateway: RunningGateway,
    validator: ed25519_dalek::SigningKey,
    config: ProxyConfig,
    _dir: tempfile::TempDir,
}

/// A gateway started as in-process ones are (`launch`, reloading linked keys every 5 s), its
/// chat service capped at $0.0002 a miner a day with the operator's key and $10 with the
/// miner's own.
async fn world() -> World {
    let fake = FakeUpstreamConfig {
        extra_api_keys: vec![MINER_KEY.to_owned()],
        ..FakeUpstreamConfig::default()
    };
    let upstream = FakeUpstream::start(fake.clone())
        .await
        .expect("fake upstream");
    let dir = tempfile::tempdir().expect("tempdir");
    let validator = generate_key();
    let base = upstream.base_url();
    let toml = GatewayConfigBuilder::new(dir.path().join("gateway"))
        .signing_key_file(dir.path().join("gateway-signing.key"))
        .validator_public_key(sooth_protocol::encode_public_key(
            &validator.verifying_key(),
        ))
        .default_services("chutes", "desearch")
        .service(
            ServiceBuilder::chat("chutes", &base, "CHUTES_API_KEY", &[MODEL])
                .set("max_output_tokens", 512)
                .day_caps(0.0002, 10.0),
        )
        .service(
            ServiceBuilder::search("desearch", &base, "DESEARCH_API_KEY").day_caps(0.0002, 10.0),
        )
        .to_toml();
    let config = ProxyConfig::from_toml(&toml, "test config").expect("config");
    let keys = BTreeMap::from([
        ("chutes".to_owned(), fake.api_key.clone()),
        ("desearch".to_owned(), fake.search_api_key.clone()),
    ]);
    let gateway = launch(
        config.clone(),
        Some(validator.verifying_key()),
        keys,
        Some("127.0.0.1:0".parse().expect("addr")),
    )
    .await
    .expect("gateway");
    World {
        upstream,
        gateway,
        validator,
        config,
        _dir: dir,
    }
}

/// One chat call of `miner` asking `question` for `max_tokens` tokens, with a token as the
/// validator mints them (no `linked_key` claim: the key on file decides).
async fn ask(world: &World, miner: &str, question: &str, max_tokens: u32) -> GatewayAnswer {
    let now = Utc::now().timestamp();
    let claims = RunClaims {
        run_id: question.into(),
        miner: miner.into(),
        agent_hash: "ab".repeat(32),
        caps_usd: BTreeMap::from([("*".into(), 1.0)]),
        linked_key: false,
        issued_at: now,
        expires_at: now + 300,
        as_of: now,
    };
    let run = RunContext {
        run_id: question.into(),
        event_id: "e".into(),
        agent_hash: "ab".repeat(32),
        miner: Some(miner.into()),
        deadline: Instant::now() + Duration::from_secs(30),
        token: Some(mint(&world.validator, &claims)),
    };
    let request = GatewayRequest::Chat(ChatRequest {
        model: MODEL.into(),
        messages: vec![ChatMessage {
            role: "user".into(),
            content: question.into(),
        }],
        temperature: Some(0.0),
        max_tokens: Some(max_tokens),
    });
    HttpGateway::new(world.gateway.base_url())
        .expect("client")
        .handle(&run, request)
        .await
}

fn last_key(world: &World) -> Option<String> {
    world
        .upstream
        .recorded()
        .last()
        .and_then(|request| request.api_key.clone())
}

fn is_over_budget(answer: &GatewayAnswer) -> bool {
    matches!(answer.result, Err(GatewayError::BudgetExceeded { .. }))
}

/// Asks large questions (over the operator's cap) until `wanted` says the answer is as
/// expected, across the gateway's reload of the keys on file.
async fn until_large_call(
    world: &World,
    miner: &str,
    wanted: impl Fn(&GatewayAnswer) -> bool,
) -> GatewayAnswer {
    let deadline = Instant::now() + Duration::from_secs(20);
    for attempt in 0.. {
        let answer = ask(world, miner, &format!("large question {attempt}"), 512).await;
        if wanted(&answer) || Instant::now() > deadline {
            return answer;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    unreachable!("the loop returns")
}

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .expect("an instant")
        .with_timezone(&Utc)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_linked_through_the_validator_pays_its_miners_calls_until_a_new_version_activates() {
    let world = world().await;
    let operator = FakeUpstreamConfig::default();
    let miner = SecretHotkey::generate(HotkeyScheme::Ed25519)
        .public()
        .to_string();
    let other = SecretHotkey::generate(HotkeyScheme::Ed25519)
        .public()
        .to_string();

    // The validator's side: a registered miner with an active version.
    let store = Store::in_memory().await.expect("store");
    let t0 = at("2026-03-01T00:00:00Z");
    store
        .register_miner(&Miner {
            uid: 0,
            hotkey: miner.clone(),
            registered_at: t0,
        })
        .await
        .expect("registered");
    let version = |hash: &str, at: DateTime<Utc>| AgentVersion {
        hotkey: miner.clone(),
        hash: hash.to_owned(),
        uploaded_at: at,
        verified_at: Some(at),
    };
    store
        .add_agent_version(&version("v1", t0))
        .await
        .expect("v1");
    assert!(
        store
            .record_activation(&miner, "v1", t0 + TimeDelta::days(1))
            .await
            .expect("v1 activates")
    );
    let key_dir = tempfile::tempdir().expect("tempdir");
    let keys = MinerKeys::new(
        store.clone(),
        KeySealer::load_or_create(&key_dir.path().join("linked-keys.key")).expect("key file"),
        Arc::new(GatewayDirectory {
            config: world.config.clone(),
        }),
    );

    // Before: the operator's key and cap.
    let large = ask(&world, &miner, "large, before linking", 512).await;
    assert!(is_over_budget(&large), "{large:?}");

    // The miner links its key through the validator; a service the gateway lacks is refused.
    let refused = keys
        .link(&miner, "openai", MINER_KEY, t0 + TimeDelta::days(1))
        .await
        .expect_err("no such service");
    assert_eq!(refused.code(), "unknown_service");
    keys.link(&miner, "chutes", MINER_KEY, t0 + TimeDelta::days(1))
        .await
        .expect("linked");
    let linked = until_large_call(&world, &miner, |answer| answer.result.is_ok()).await;
    assert!(
        linked.result.is_ok(),
        "the gateway took the key: {linked:?}"
    );
    assert_eq!(last_key(&world).as_deref(), Some(MINER_KEY));
    // Another miner is still on the operator's key and cap.
    let small = ask(&world, &other, "small, another miner", 8).await;
    assert!(small.result.is_ok(), "{small:?}");
    assert_eq!(last_key(&world).as_deref(), Some(operator.api_key.as_str()));
    let large = ask(&world, &other, "large, another miner", 512).await;
    assert!(is_over_budget(&large), "{large:?}");

    // A new version activates: the key is dropped and taken back from the gateway.
    store
        .add_agent_version(&version("v2", t0 + TimeDelta::days(4)))
        .await
        .expect("v2");
    assert!(
        store
            .record_activation(&miner, "v2", t0 + TimeDelta::days(5))
            .await
            .expect("v2 activates")
    );
    assert_eq!(keys.release_dropped().await.expect("released"), 1);
    let after = until_large_call(&world, &miner, is_over_budget).await;
    assert!(
        is_over_budget(&after),
        "back to the operator's cap: {after:?}"
    );
    // What the miner's key paid still counts against the miner's day: now under the
    // operator's cap, nothing more goes upstream for it.
    let before = world.upstream.stats().chat_requests;
    let small = ask(&world, &miner, "small, after the new version", 8).await;
    assert!(is_over_budget(&small), "{small:?}");
    assert!(
        format!("{small:?}").contains("cap of $0.000200"),
        "{small:?}"
    );
    assert_eq!(world.upstream.stats().chat_requests, before);
    world.gateway.stop().await;
}
