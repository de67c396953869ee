//! Miners' own service keys through the HTTP API: linked by a signed request, sealed at rest,
//! handed to the gateway's sink, never returned or logged; refused when the request is not
//! right; dropped (and taken back from the gateway) when a newer version activates.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use chrono::TimeDelta;
use common::at;
use common::desk::{Harness, LINKED_KEYS_KEY_FILE, Options, STORE_FILE, custom_section, harness};
use serde_json::Value;
use sooth_protocol::{HotkeyScheme, SecretHotkey, sign_epistula};
use sooth_validator::linked_keys::{
    KeySealer, LinkedKeySink, MinerKeys, ServiceKey, SinkError, SinkFuture,
};

/// What a sink was told, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Told {
    Link {
        miner: String,
        service: String,
        key: String,
    },
    Unlink {
        miner: String,
        service: String,
    },
}

/// A gateway's store of keys as the test sees it: services `chat` and `search`; it can be made
/// to refuse.
#[derive(Default)]
struct RecordingSink {
    told: Mutex<Vec<Told>>,
    refuse: AtomicBool,
    refuse_unlink: AtomicBool,
}

impl RecordingSink {
    fn told(&self) -> Vec<Told> {
        self.told.lock().unwrap().clone()
    }

    fn answer(&self, told: Told) -> Result<(), SinkError> {
        let unlinking = matches!(told, Told::Unlink { .. });
        if self.refuse.load(Ordering::SeqCst)
            || (unlinking && self.refuse_unlink.load(Ordering::SeqCst))
        {
            return Err(SinkError::new(std::io::Error::other(
                "database /srv/gateway/gateway.sqlite is locked",
            )));
        }
        self.told.lock().unwrap().push(told);
        Ok(())
    }
}

impl LinkedKeySink for RecordingSink {
    fn has_service(&self, service: &str) -> bool {
        matches!(service, "chat" | "search")
    }

    fn link<'a>(&'a self, miner: &'a str, service: &'a str, key: &'a ServiceKey) -> SinkFuture<'a> {
        let told = Told::Link {
            miner: miner.to_owned(),
            service: service.to_owned(),
            key: key.expose().to_owned(),
        };
        Box::pin(async move { self.answer(told) })
    }

    fn unlink<'a>(&'a self, miner: &'a str, service: &'a str) -> SinkFuture<'a> {
        let told = Told::Unlink {
            miner: miner.to_owned(),
            service: service.to_owned(),
        };
        Box::pin(async move { self.answer(told) })
    }
}

fn link(miner: &SecretHotkey, service: &str, key: &str) -> Told {
    Told::Link {
        miner: miner.public().to_string(),
        service: service.to_owned(),
        key: key.to_owned(),
    }
}

fn unlink(miner: &SecretHotkey, service: &str) -> Told {
    Told::Unlink {
        miner: miner.public().to_string(),
        service: service.to_owned(),
    }
}

fn code(body: &Value) -> &str {
    body["code"]
        .as_str()
        .unwrap_or_else(|| panic!("no code in {body}"))
}

/// Everything logged in this test binary, at every level.
fn captured_logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Arc::new(Mutex::new(Vec::new()));
        let writer = Arc::clone(&logs);
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || Capture(Arc::clone(&writer)))
            .try_init()
            .expect("the only subscriber of this test binary");
        logs
    })
    .clone()
}

struct Capture(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn always_half() -> Vec<u8> {
    std::fs::read(sooth_test_agents::always_half()).unwrap()
}

async fn with_sink(sink: &Arc<RecordingSink>, store_on_disk: bool) -> Harness {
    harness(Options {
        linked_keys: Some(Arc::clone(sink) as Arc<dyn LinkedKeySink>),
        store_on_disk,
        ..Options::default()
    })
    .await
}

/// The bytes of the store's files (the database and its WAL).
fn store_bytes(h: &Harness) -> Vec<u8> {
    let mut bytes = Vec::new();
    for suffix in ["", "-wal"] {
        let path = h.data_dir().join(format!("{STORE_FILE}{suffix}"));
        if let Ok(content) = std::fs::read(path) {
            bytes.extend(content);
        }
    }
    bytes
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle.as_bytes())
}

#[tokio::test]
async fn a_linked_key_is_sealed_at_rest_handed_to_the_gateway_and_never_shown() {
    let logs = captured_logs();
    let secret = "sk-linked-7f3a9c1e-never-shown";
    let sink = Arc::new(RecordingSink::default());
    let h = with_sink(&sink, true).await;
    let (_, identity) = h.get("/v1/identity").await;
    assert_eq!(identity["linked_keys"], true, "{identity}");
    let miner = SecretHotkey::generate(HotkeyScheme::Ed25519);
    h.register(&miner).await;

    let (status, linked) = h.link_key(&miner, "chat", secret).await;
    assert_eq!(status, StatusCode::OK, "{linked}");
    assert_eq!(linked["service"], "chat");
    assert_eq!(linked["linked_at"], "2026-03-02T10:00:00Z");
    assert_eq!(linked.as_object().unwrap().len(), 2, "{linked}");
    assert_eq!(sink.told(), vec![link(&miner, "chat", secret)]);

    // Sealed in the database, with a key kept beside it, owner-only.
    let kept = h
        .store
        .sealed_key(&miner.public().to_string(), "chat")
        .await
        .unwrap()
        .expect("kept");
    assert_eq!(kept.nonce.len(), 24);
    assert_eq!(kept.version, None, "the miner had no version yet");
    let bytes = store_bytes(&h);
    assert!(
        contains(&bytes, &miner.public().to_string()),
        "the files read hold the miner's rows"
    );
    assert!(!contains(&bytes, secret), "the key is in the database file");
    assert!(!contains(&bytes, "never-shown"));
    let key_file = h.data_dir().join(LINKED_KEYS_KEY_FILE);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    // No answer shows it.
    let hotkey = miner.public().to_string();
    for path in [
        "/health".to_owned(),
        "/v1/identity".to_owned(),
        format!("/v1/miners/{hotkey}"),
        format!("/v1/miners/{hotkey}/agents"),
        format!("/v1/miners/{hotkey}/runs"),
        "/v1/leaderboard".to_owned(),
        "/v1/weights".to_owned(),
        "/v1/events".to_owned(),
        "/v1/services/chat/key".to_owned(),
    ] {
        let (_, body) = h.get(&path).await;
        assert!(!body.to_string().contains("never-shown"), "{path}: {body}");
    }
    // Nor any log line, though the link is logged.
    let logged = String::from_utf8(logs.lock().unwrap().clone()).unwrap();
    assert!(logged.contains("linked its own key"), "{logged}");
    assert!(!logged.contains("never-shown"), "{logged}");

    // A restarted validator opens it with the key file and hands it over again; with another
    // key file it does not open, and is said so without the key.
    let again = Arc::new(RecordingSink::default());
    let restarted = MinerKeys::new(
        h.store.clone(),
        KeySealer::load_or_create(&key_file).unwrap(),
        again.clone(),
    );
    let report = restarted.sync().await.unwrap();
    assert_eq!((report.handed, report.unopened), (1, 0), "{report:?}");
    assert_eq!(again.told(), vec![link(&miner, "chat", secret)]);
    let stranger = Arc::new(RecordingSink::default());
    let wrong_key = MinerKeys::new(
        h.store.clone(),
        KeySealer::from_key([9; 32]),
        stranger.clone(),
    );
    let report = wrong_key.sync().await.unwrap();
    assert_eq!((report.handed, report.unopened), (0, 1), "{report:?}");
    assert!(stranger.told().is_empty());
    let logged = String::from_utf8(logs.lock().unwrap().clone()).unwrap();
    assert!(logged.contains("does not open"), "{logged}");
    assert!(!logged.contains("never-shown"));

    // Linking again replaces the key.
    let (status, _) = h.link_key(&miner, "chat", "sk-second").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(sink.told().last(), Some(&link(&miner, "chat", "sk-second")));
    assert_eq!(h.store.sealed_keys().await.unwrap().len(), 1);
}

#[tokio::test]
async fn bad_requests_are_refused_and_nothing_is_kept_or_handed() {
    let sink = Arc::new(RecordingSink::default());
    let h = with_sink(&sink, false).await;
    let miner = SecretHotkey::generate(HotkeyScheme::Sr25519);
    h.register(&miner).await;
    let body = |key: &str| serde_json::to_vec(&serde_json::json!({ "api_key": key })).unwrap();

    // A stranger.
    let stranger = SecretHotkey::generate(HotkeyScheme::Ed25519);
    let (status, refused) = h.link_key(&stranger, "chat", "sk-ok").await;
    assert_eq!(
        (status, code(&refused)),
        (StatusCode::FORBIDDEN, "unknown_hotkey")
    );

    // A signature over other bytes.
    let mut request = h.signed(&miner, "/v1/services/chat/key", body("sk-signed"));
    *request.body_mut() = Body::from(body("sk-swapped"));
    let (status, refused) = h.send(request).await;
    assert_eq!(
        (status, code(&refused)),
        (StatusCode::UNAUTHORIZED, "bad_signature")
    );

    // The same request twice.
    let request = || h.signed(&miner, "/v1/services/chat/key", body("sk-once"));
    let first = request();
    let mut replay = Request::post("/v1/services/chat/key");
    for (name, value) in first.headers() {
        replay = replay.header(name, value);
    }
    let replay = replay.body(Body::from(body("sk-once"))).unwrap();
    let (status, _) = h.send(first).await;
    assert_eq!(status, StatusCode::OK);
    let (status, refused) = h.send(replay).await;
    assert_eq!(
        (status, code(&refused)),
        (StatusCode::UNAUTHORIZED, "replayed_request")
    );
    let handed = sink.told().len();
    assert_eq!(handed, 1);
    h.clock.advance_by(TimeDelta::seconds(1)).unwrap();

    // Service names the protocol refuses, and one the gateway lacks.
    for service in ["Chat", "a.b", "..%2Fchat", "-chat", "%20"] {
        let (status, refused) = h.link_key(&miner, service, "sk-ok").await;
        assert_eq!(
            (status, code(&refused)),
            (StatusCode::BAD_REQUEST, "invalid_service"),
            "{service}: {refused}"
        );
    }
    let (status, refused) = h.link_key(&miner, "llm", "sk-ok").await;
    assert_eq!(
        (status, code(&refused)),
        (StatusCode::NOT_FOUND, "unknown_service")
    );

    // Keys the gateway could not send, said without repeating them.
    for key in ["", "   ", "sk secret-with-space", "sk-\u{e9}t\u{e9}"] {
        let (status, refused) = h.link_key(&miner, "chat", key).await;
        assert_eq!(
            (status, code(&refused)),
            (StatusCode::BAD_REQUEST, "invalid_api_key"),
            "{key:?}: {refused}"
        );
        assert!(!refused.to_string().contains("secret-with-space"));
    }
    let (status, refused) = h.link_key(&miner, "chat", &"k".repeat(4097)).await;
    assert_eq!(
        (status, code(&refused)),
        (StatusCode::BAD_REQUEST, "invalid_api_key")
    );

    // Bodies that are not the JSON asked for: the message never quotes them.
    for text in [
        "\"sk-bare-string-secret\"",
        "{\"key\": \"sk-other-field-secret\"}",
        "sk-not-json-secret",
        "{\"api_key\": \"sk-x\", \"extra\": 1}",
        "",
    ] {
        let request = h.signed(&miner, "/v1/services/chat/key", text.as_bytes().to_vec());
        let (status, refused) = h.send(request).await;
        assert_eq!(
            (status, code(&refused)),
            (StatusCode::BAD_REQUEST, "bad_request"),
            "{text}: {refused}"
        );
        assert!(!refused.to_string().contains("secret"), "{refused}");
    }

    // Too large, declared or not.
    let (status, refused) = h
        .send(h.signed(&miner, "/v1/services/chat/key", vec![b' '; 9000]))
        .await;
    assert_eq!(
        (status, code(&refused)),
        (StatusCode::PAYLOAD_TOO_LARGE, "too_large")
    );
    let big = vec![b' '; 9000];
    let headers = sign_epistula(&miner, &big, &h.validator.to_string(), h.now_ms());
    let mut request = Request::post("/v1/services/chat/key");
    for (name, value) in headers.pairs() {
        request = request.header(name, value);
    }
    let stream = futures::stream::iter([Ok::<_, std::io::Error>(big)]);
    let (status, refused) = h
        .send(request.body(Body::from_stream(stream)).unwrap())
        .await;
    assert_eq!(
        (status, code(&refused)),
        (StatusCode::PAYLOAD_TOO_LARGE, "too_large")
    );

    // Nothing of the refused requests was kept or handed: only the one accepted above.
    assert_eq!(sink.told().len(), handed);
    let kept = h.store.sealed_keys().await.unwrap();
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].hotkey, miner.public().to_string());

    // A validator whose gateway cannot take keys refuses them.
    let closed = harness(Options::default()).await;
    let (_, identity) = closed.get("/v1/identity").await;
    assert_eq!(identity["linked_keys"], false);
    closed.register(&miner).await;
    let (status, refused) = closed.link_key(&miner, "chat", "sk-ok").await;
    assert_eq!(
        (status, code(&refused)),
        (StatusCode::FORBIDDEN, "linked_keys_closed")
    );
    assert!(closed.store.sealed_keys().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_gateway_that_does_not_take_the_key_is_said_and_the_key_goes_over_at_the_next_start() {
    let sink = Arc::new(RecordingSink::default());
    let h = with_sink(&sink, false).await;
    let miner = SecretHotkey::generate(HotkeyScheme::Ed25519);
    h.register(&miner).await;
    sink.refuse.store(true, Ordering::SeqCst);
    let (status, refused) = h.link_key(&miner, "search", "sk-later").await;
    assert_eq!(
        (status, code(&refused)),
        (StatusCode::SERVICE_UNAVAILABLE, "gateway_unavailable")
    );
    let message = refused["message"].as_str().unwrap();
    assert!(
        !message.contains("/srv"),
        "no path of the gateway: {message}"
    );
    sink.refuse.store(false, Ordering::SeqCst);
    let report = h.miner_keys.as_ref().unwrap().sync().await.unwrap();
    assert_eq!(report.handed, 1);
    assert_eq!(sink.told(), vec![link(&miner, "search", "sk-later")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_version_activating_drops_the_keys_linked_before_it_uploaded() {
    let sink = Arc::new(RecordingSink::default());
    let h = with_sink(&sink, false).await;
    let keys = h.miner_keys.clone().unwrap();
    let miner = SecretHotkey::generate(HotkeyScheme::Ed25519);
    let other = SecretHotkey::generate(HotkeyScheme::Ed25519);
    h.register(&miner).await;
    h.register(&other).await;
    let hotkey = miner.public().to_string();

    // Linked before any upload: the first version's activation drops it.
    let (status, _) = h.link_key(&miner, "chat", "sk-before-any").await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = h.link_key(&other, "chat", "sk-other-miner").await;
    assert_eq!(status, StatusCode::OK);
    let (status, first) = h.upload(&miner, always_half()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{first}");
    let first = first["version"].as_i64().unwrap();
    // Linked after the upload: this version's activation keeps it.
    let (status, _) = h.link_key(&miner, "search", "sk-after-upload").await;
    assert_eq!(status, StatusCode::OK);
    h.verify_all().await;

    h.clock.advance_to(at("2026-03-03T00:00:01Z")).unwrap();
    let report = h.daemon.step().await.unwrap();
    assert_eq!(report.activations, 1, "{report:?}");
    let (_, version) = h.get(&format!("/v1/agents/{first}")).await;
    assert_eq!(version["status"], "active");
    let dropped = h.store.dropped_keys().await.unwrap();
    assert_eq!(dropped.len(), 1, "{dropped:?}");
    assert_eq!(
        (dropped[0].hotkey.as_str(), dropped[0].service.as_str()),
        (hotkey.as_str(), "chat")
    );
    assert_eq!(dropped[0].dropped_at, at("2026-03-03T00:00:00Z"));
    assert!(
        h.store.sealed_key(&hotkey, "chat").await.unwrap().is_none(),
        "a dropped key is not handed again"
    );
    // A gateway that does not forget it yet: a start still hands every kept key over.
    sink.refuse_unlink.store(true, Ordering::SeqCst);
    assert!(keys.release_dropped().await.is_err());
    let report = keys.sync().await.unwrap();
    assert_eq!((report.handed, report.released), (2, 0), "{report:?}");
    assert_eq!(
        h.store.dropped_keys().await.unwrap().len(),
        1,
        "kept to retry"
    );
    sink.refuse_unlink.store(false, Ordering::SeqCst);
    let before = sink.told().len();
    assert_eq!(keys.release_dropped().await.unwrap(), 1);
    assert_eq!(sink.told()[before..], [unlink(&miner, "chat")]);
    assert!(h.store.dropped_keys().await.unwrap().is_empty());
    assert_eq!(keys.release_dropped().await.unwrap(), 0, "once");
    let services = |keys: Vec<sooth_validator::store::SealedKey>| -> BTreeSet<(String, String)> {
        keys.into_iter()
            .map(|key| (key.hotkey, key.service))
            .collect()
    };
    assert_eq!(
        services(h.store.sealed_keys().await.unwrap()),
        BTreeSet::from([
            (hotkey.clone(), "search".to_owned()),
            (other.public().to_string(), "chat".to_owned()),
        ]),
        "the other miner's key and the one linked after the upload stay"
    );

    // The next upload: the key linked for the first version goes when it activates.
    h.clock.advance_by(TimeDelta::days(3)).unwrap();
    let mut bytes = always_half();
    bytes.extend(custom_section("second"));
    let (status, second) = h.upload(&miner, bytes).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{second}");
    let second = second["version"].as_i64().unwrap();
    h.verify_all().await;
    h.clock.advance_to(at("2026-03-07T00:00:01Z")).unwrap();
    // Not before it activates.
    assert!(h.store.dropped_keys().await.unwrap().is_empty());
    let report = h.daemon.step().await.unwrap();
    assert_eq!(report.activations, 1, "{report:?}");
    let before = sink.told().len();
    assert_eq!(keys.release_dropped().await.unwrap(), 1);
    assert_eq!(sink.told()[before..], [unlink(&miner, "search")]);
    assert_eq!(
        services(h.store.sealed_keys().await.unwrap()),
        BTreeSet::from([(other.public().to_string(), "chat".to_owned())])
    );

    // Linking again works, for the version now active.
    let (status, _) = h.link_key(&miner, "search", "sk-relinked").await;
    assert_eq!(status, StatusCode::OK);
    let kept = h
        .store
        .sealed_key(&hotkey, "search")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(kept.version, Some(second));
    assert_eq!(
        sink.told().last(),
        Some(&link(&miner, "search", "sk-relinked"))
    );
}
