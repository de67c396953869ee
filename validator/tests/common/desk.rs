//! A validator's desk, queue and daemon in one process on a simulated clock, with requests
//! signed as miners sign them; miners' linked keys handed to a sink of the test's choosing.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use chrono::TimeDelta;
use serde_json::Value;
use sooth_protocol::{Hotkey, HotkeyScheme, SecretHotkey, sign_epistula};
use sooth_runner::{CompileIsolation, Runner, RunnerConfig, ScriptedGateway};
use sooth_validator::linked_keys::{KeySealer, LinkedKeySink, MinerKeys};
use sooth_validator::store::{EventRecord, EventStatus, Store};
use sooth_validator::verification::{ProbeSet, VerificationSettings, Verified, Verifier};
use sooth_validator::{
    Clock, Daemon, DaemonSettings, DeskSettings, Event, NoWeightSetter, Outcome, SandboxExecutor,
    SimulatedClock, UploadDesk,
};
use tower::ServiceExt as _;

use super::at;

pub const MAX_BYTES: u64 = 4 << 20;

/// The key file sealing miners' linked keys, in the harness's data directory.
pub const LINKED_KEYS_KEY_FILE: &str = "linked-keys.key";

/// The store's file in the harness's data directory, when it has one.
pub const STORE_FILE: &str = "validator.sqlite";

pub struct Harness {
    pub router: Router,
    pub verifier: Arc<Verifier>,
    pub daemon: Arc<Daemon>,
    pub store: Store,
    pub clock: Arc<SimulatedClock>,
    pub validator: Hotkey,
    /// Miners' linked keys, with [`Options::linked_keys`].
    pub miner_keys: Option<Arc<MinerKeys>>,
    dir: tempfile::TempDir,
}

pub struct Options {
    pub open_registration: bool,
    pub probe: ProbeSet,
    pub max_probe_failures: usize,
    pub timeout: Duration,
    pub registrations_per_hour: u32,
    /// Take miners' linked keys, handing them to this sink (sealed with
    /// [`LINKED_KEYS_KEY_FILE`]); without one, linking is refused.
    pub linked_keys: Option<Arc<dyn LinkedKeySink>>,
    /// Keep the store in [`STORE_FILE`] rather than in memory.
    pub store_on_disk: bool,
    /// Benchmark agents whose probe predictions are public signals.
    pub benchmarks: Vec<(String, Vec<u8>)>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            open_registration: true,
            probe: ProbeSet::default(),
            max_probe_failures: 20,
            timeout: Duration::from_secs(5),
            registrations_per_hour: 100,
            linked_keys: None,
            store_on_disk: false,
            benchmarks: Vec::new(),
        }
    }
}

pub async fn harness(options: Options) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let store = if options.store_on_disk {
        Store::open(&dir.path().join(STORE_FILE)).await.unwrap()
    } else {
        Store::in_memory().await.unwrap()
    };
    let clock = Arc::new(SimulatedClock::new(at("2026-03-02T10:00:00Z")));
    let runner = Runner::new(RunnerConfig {
        timeout: options.timeout,
        memory_limit_bytes: 64 << 20,
        compile_isolation: CompileIsolation::InProcess,
        ..RunnerConfig::default()
    })
    .unwrap();
    let executor = Arc::new(
        SandboxExecutor::new(
            runner,
            dir.path().join("agents"),
            Arc::new(ScriptedGateway::empty()),
            None,
        )
        .unwrap(),
    );
    let daemon = Arc::new(
        Daemon::new(
            store.clone(),
            clock.clone(),
            executor.clone(),
            Arc::new(NoWeightSetter),
            DaemonSettings::default(),
        )
        .unwrap(),
    );
    let verifier = Arc::new(
        Verifier::new(
            store.clone(),
            executor.clone(),
            clock.clone(),
            options.probe,
            VerificationSettings {
                max_probe_failures: options.max_probe_failures,
                concurrency: 2,
                ..VerificationSettings::default()
            },
        )
        .with_benchmarks(options.benchmarks),
    );
    let validator = SecretHotkey::generate(HotkeyScheme::Ed25519).public();
    let miner_keys = options.linked_keys.map(|sink| {
        let sealer = KeySealer::load_or_create(&dir.path().join(LINKED_KEYS_KEY_FILE)).unwrap();
        Arc::new(MinerKeys::new(store.clone(), sealer, sink))
    });
    let desk = UploadDesk::new(
        &validator,
        vec![HotkeyScheme::Ed25519, HotkeyScheme::Sr25519],
        Duration::from_secs(8),
        executor.components().clone(),
        daemon.clone(),
        Some(verifier.clone()),
        DeskSettings {
            max_bytes: MAX_BYTES,
            min_interval: TimeDelta::days(3),
            open_registration: options.open_registration,
            registrations_per_hour: options.registrations_per_hour,
        },
    );
    let desk = Arc::new(match &miner_keys {
        Some(keys) => desk.with_miner_keys(keys.clone()),
        None => desk,
    });
    Harness {
        router: sooth_validator::api::router_with_uploads(desk, 2),
        verifier,
        daemon,
        store,
        clock,
        validator,
        miner_keys,
        dir,
    }
}

impl Harness {
    /// The data directory: the components, the key file, the store when on disk.
    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn now_ms(&self) -> u64 {
        u64::try_from(self.clock.now().timestamp_millis()).unwrap()
    }

    /// A signed POST of `body` to `path` by `miner`, signed at `signed_ms`.
    pub fn signed_at(
        &self,
        miner: &SecretHotkey,
        path: &str,
        body: Vec<u8>,
        signed_ms: u64,
    ) -> Request<Body> {
        let headers = sign_epistula(miner, &body, &self.validator.to_string(), signed_ms);
        let mut request = Request::post(path).header("content-length", body.len());
        for (name, value) in headers.pairs() {
            request = request.header(name, value);
        }
        request.body(Body::from(body)).unwrap()
    }

    pub fn signed(&self, miner: &SecretHotkey, path: &str, body: Vec<u8>) -> Request<Body> {
        self.signed_at(miner, path, body, self.now_ms())
    }

    pub async fn send(&self, request: Request<Body>) -> (StatusCode, Value) {
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&bytes)));
        (status, body)
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.send(Request::get(path).body(Body::empty()).unwrap())
            .await
    }

    pub async fn register(&self, miner: &SecretHotkey) {
        let (status, body) = self
            .send(self.signed(miner, "/v1/miners", Vec::new()))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }

    pub async fn upload(&self, miner: &SecretHotkey, bytes: Vec<u8>) -> (StatusCode, Value) {
        self.send(self.signed(miner, "/v1/agents", bytes)).await
    }

    /// A signed link of `api_key` for `service` (a path segment as it stands) by `miner`.
    pub async fn link_key(
        &self,
        miner: &SecretHotkey,
        service: &str,
        api_key: &str,
    ) -> (StatusCode, Value) {
        let body = serde_json::to_vec(&serde_json::json!({ "api_key": api_key })).unwrap();
        self.send(self.signed(miner, &format!("/v1/services/{service}/key"), body))
            .await
    }

    /// Verifies everything queued; returns what each pass did.
    pub async fn verify_all(&self) -> Vec<Verified> {
        let mut done = Vec::new();
        while let Some(pass) = self.verifier.verify_next().await.unwrap() {
            done.push(pass);
        }
        done
    }
}

pub fn probe_events(titles: &[&str]) -> ProbeSet {
    let created = at("2025-06-01T00:00:00Z");
    ProbeSet::from_events(
        titles
            .iter()
            .enumerate()
            .map(|(index, title)| {
                let mut event = Event::new(
                    format!("probe-{index}"),
                    *title,
                    created + TimeDelta::hours(i64::try_from(index).unwrap()),
                );
                event
                    .metadata
                    .insert("market_prob".to_owned(), serde_json::json!(0.3));
                EventRecord {
                    event,
                    status: EventStatus::Resolved,
                    outcome: Some(Outcome::No),
                    resolved_at: Some(at("2025-07-01T00:00:00Z")),
                }
            })
            .collect(),
    )
}

/// The first `count` questions of the shared ForecastBench file, or `None` (with a message)
/// where the file is absent.
pub fn shared_probe_set(count: usize) -> Option<ProbeSet> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/data/forecastbench/questions.jsonl");
    if !path.exists() {
        eprintln!("skipped: {} is absent", path.display());
        return None;
    }
    Some(ProbeSet::load(&path, count).unwrap())
}

/// A WebAssembly custom section named `name` with no content: appended to a component it
/// changes the bytes and nothing else.
pub fn custom_section(name: &str) -> Vec<u8> {
    let mut payload = Vec::new();
    leb128(&mut payload, name.len());
    payload.extend_from_slice(name.as_bytes());
    let mut section = vec![0_u8];
    leb128(&mut section, payload.len());
    section.extend_from_slice(&payload);
    section
}

fn leb128(out: &mut Vec<u8>, mut value: usize) {
    loop {
        let byte = u8::try_from(value & 0x7f).unwrap();
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}
