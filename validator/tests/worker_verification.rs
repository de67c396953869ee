//! Versions verified by runner workers, through the library's API on PostgreSQL: the scheduler
//! publishes its verification plan (probe set, settings, benchmark agents by hash) and keeps
//! each upload's component in the store; a worker on a host of its own (an empty directory)
//! fetches them and decides the same verdicts the scheduler would have; a worker told to stop
//! finishes the version in hand; a scheduler that publishes no plan keeps its queue to itself.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use chrono::TimeDelta;
use common::at;
use common::desk::{custom_section, probe_events, shared_probe_set};
use sooth_runner::{CompileIsolation, Runner, RunnerConfig, ScriptedGateway, content_hash};
use sooth_test_postgres::TestSchema;
use sooth_validator::store::{
    NewUpload, QueueState, Store, StoreOptions, UploadedBy, VersionStatus,
};
use sooth_validator::verification::{
    PlanError, PlannedBenchmark, ProbeSet, VerificationPlan, VerificationSettings,
};
use sooth_validator::worker::{Worker, WorkerReport, WorkerSettings};
use sooth_validator::{Miner, SandboxExecutor};
use tokio::sync::Notify;

fn runner() -> Runner {
    Runner::new(RunnerConfig {
        timeout: Duration::from_secs(5),
        memory_limit_bytes: 64 << 20,
        compile_isolation: CompileIsolation::InProcess,
        ..RunnerConfig::default()
    })
    .unwrap()
}

fn read(path: std::path::PathBuf) -> Vec<u8> {
    std::fs::read(path).unwrap()
}

/// A PostgreSQL store with miners `m0..m{count}`.
async fn store_with_miners(count: u16) -> (Store, TestSchema) {
    let schema = TestSchema::create().await;
    let store = Store::connect(schema.url(), &StoreOptions::default())
        .await
        .unwrap();
    for uid in 0..count {
        store
            .register_miner(&Miner {
                uid,
                hotkey: format!("m{uid}"),
                registered_at: at("2026-03-01T00:00:00Z"),
            })
            .await
            .unwrap();
    }
    (store, schema)
}

/// Queues `bytes` as miner `m{uid}`'s upload, `seconds` after a fixed instant, the component
/// kept in the store as the scheduler's desk keeps it.
async fn upload(store: &Store, uid: u16, bytes: &[u8], seconds: i64) -> i64 {
    store
        .enqueue_upload_for_workers(
            &NewUpload {
                hotkey: format!("m{uid}"),
                hash: content_hash(bytes),
                size_bytes: bytes.len() as u64,
                uploaded_by: UploadedBy::Operator,
                at: at("2026-03-02T10:00:00Z") + TimeDelta::seconds(seconds),
                min_interval: TimeDelta::zero(),
            },
            bytes,
        )
        .await
        .unwrap()
}

/// A worker on `url` with a directory of its own, verifying by the published plan.
struct RunningWorker {
    stop: Arc<Notify>,
    task: tokio::task::JoinHandle<WorkerReport>,
    _dir: tempfile::TempDir,
}

async fn start_worker(url: &str, sandbox: &str) -> RunningWorker {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::connect(url, &StoreOptions::default()).await.unwrap();
    let executor = Arc::new(
        SandboxExecutor::new(
            runner(),
            dir.path().join("agents"),
            Arc::new(ScriptedGateway::empty()),
            None,
        )
        .unwrap(),
    );
    let worker = Worker::new(
        store,
        executor,
        sandbox.to_owned(),
        WorkerSettings {
            worker_id: "verifier-1".to_owned(),
            host: "test-host".to_owned(),
            concurrency: 4,
            lease: Duration::from_secs(30),
            idle_poll: Duration::from_millis(100),
        },
    );
    let stop = Arc::new(Notify::new());
    let stopped = Arc::clone(&stop);
    let task = tokio::spawn(async move { worker.run(stopped.notified()).await.unwrap() });
    RunningWorker {
        stop,
        task,
        _dir: dir,
    }
}

impl RunningWorker {
    async fn stop(self) -> WorkerReport {
        self.stop.notify_one();
        tokio::time::timeout(Duration::from_secs(120), self.task)
            .await
            .expect("the worker drains")
            .unwrap()
    }
}

/// Waits until none of `versions` is pending.
async fn decided(store: &Store, versions: &[i64]) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
    loop {
        let mut pending = Vec::new();
        for version in versions {
            let record = store.upload(*version).await.unwrap().unwrap();
            if record.status == VersionStatus::Pending {
                pending.push(*version);
            }
        }
        if pending.is_empty() {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "versions {pending:?} are still pending"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_verifies_by_the_schedulers_plan_fetching_every_component_from_the_store() {
    let Some(probe) = shared_probe_set(200) else {
        return;
    };
    let (store, schema) = store_with_miners(4).await;
    let sandbox = runner().sandbox_version();
    // The market follower is a benchmark: the worker has only its hash, and fetches it.
    let market = read(sooth_test_agents::market_baseline());
    let benchmark = PlannedBenchmark {
        name: "market".to_owned(),
        hash: content_hash(&market),
    };
    store.put_component(&benchmark.hash, &market).await.unwrap();
    let settings = VerificationSettings::default();
    let plan = VerificationPlan::new(&settings, &probe, vec![benchmark]);
    plan.publish(&store, &sandbox).await.unwrap();

    let original = read(sooth_test_agents::signal_agent(&[]));
    let mut rebuilt = original.clone();
    rebuilt.extend_from_slice(&custom_section("rebuilt"));
    let half = read(sooth_test_agents::always_half());
    let first = upload(&store, 0, &original, 0).await;
    let copy = upload(&store, 1, &rebuilt, 1).await;
    let honest = upload(&store, 2, &half, 2).await;
    let same_bytes = upload(&store, 3, &original, 3).await;

    let worker = start_worker(schema.url(), &sandbox).await;
    decided(&store, &[first, copy, honest, same_bytes]).await;
    worker.stop().await;

    let status = |record: &sooth_validator::store::UploadRecord| record.status;
    let record = |version| {
        let store = store.clone();
        async move { store.upload(version).await.unwrap().unwrap() }
    };
    assert_eq!(status(&record(first).await), VersionStatus::Verified);
    assert_eq!(status(&record(honest).await), VersionStatus::Verified);
    let copied = record(copy).await;
    assert_eq!(status(&copied), VersionStatus::Refused, "{copied:?}");
    assert_eq!(copied.matched_version, Some(first), "{copied:?}");
    assert!(
        copied.reason.as_deref().unwrap().contains("not original"),
        "{copied:?}"
    );
    let duplicate = record(same_bytes).await;
    assert_eq!(duplicate.matched_version, Some(first), "{duplicate:?}");
    assert!(
        duplicate
            .reason
            .as_deref()
            .unwrap()
            .starts_with("duplicate"),
        "{duplicate:?}"
    );
    // The probe runs were the worker's, on every probe event of the plan.
    let predictions = store.probe_predictions(first).await.unwrap();
    assert_eq!(predictions.len(), probe.events().len());
    let halves = store.probe_predictions(honest).await.unwrap();
    assert!(halves.values().all(|value| *value == Some(0.5)));
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_told_to_stop_finishes_the_version_it_is_verifying() {
    let (store, schema) = store_with_miners(1).await;
    let sandbox = runner().sandbox_version();
    let titles: Vec<String> = (0..400).map(|index| format!("q{index}")).collect();
    let titles: Vec<&str> = titles.iter().map(String::as_str).collect();
    let probe = probe_events(&titles);
    let plan = VerificationPlan::new(&VerificationSettings::default(), &probe, Vec::new());
    plan.publish(&store, &sandbox).await.unwrap();
    let version = upload(&store, 0, &read(sooth_test_agents::always_half()), 0).await;

    let worker = start_worker(schema.url(), &sandbox).await;
    // Stopped as soon as it holds the version: it still decides it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while store.upload(version).await.unwrap().unwrap().queue != Some(QueueState::Verifying) {
        assert!(tokio::time::Instant::now() < deadline, "never claimed");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    worker.stop().await;
    let record = store.upload(version).await.unwrap().unwrap();
    assert_eq!(record.status, VersionStatus::Verified, "{record:?}");
    assert_eq!(
        store.probe_predictions(version).await.unwrap().len(),
        titles.len()
    );
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduler_that_publishes_no_plan_keeps_its_verification_queue() {
    let (store, schema) = store_with_miners(1).await;
    let sandbox = runner().sandbox_version();
    store.set_scheduler_sandbox(&sandbox).await.unwrap();
    let version = upload(&store, 0, &read(sooth_test_agents::always_half()), 0).await;
    let worker = start_worker(schema.url(), &sandbox).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    worker.stop().await;
    let record = store.upload(version).await.unwrap().unwrap();
    assert_eq!(record.status, VersionStatus::Pending, "{record:?}");
    assert_eq!(record.queue, Some(QueueState::Queued), "{record:?}");
    store.close().await;
}

#[test]
fn a_plan_carries_the_probe_set_and_settings_through_its_text() {
    let probe = shared_probe_set(300).unwrap_or_else(|| probe_events(&["a", "b", "c"]));
    let settings = VerificationSettings {
        max_attempts: 5,
        lease: TimeDelta::seconds(45),
        max_probe_failures: 7,
        ..VerificationSettings::default()
    };
    let benchmarks = vec![PlannedBenchmark {
        name: "constant".to_owned(),
        hash: content_hash(b"not even a component"),
    }];
    let plan = VerificationPlan::new(&settings, &probe, benchmarks);
    let read_back = VerificationPlan::from_json(&plan.to_json()).unwrap();
    assert_eq!(read_back, plan);
    assert_eq!(read_back.probe_set().unwrap(), probe);
    assert_eq!(read_back.settings(settings.concurrency), settings);
    assert_eq!(
        read_back.benchmarks[0].hash,
        content_hash(b"not even a component")
    );
}

#[test]
fn a_damaged_plan_is_refused_saying_what_is_wrong() {
    let plan = VerificationPlan::new(
        &VerificationSettings::default(),
        &ProbeSet::default(),
        Vec::new(),
    );
    let mut value: serde_json::Value = serde_json::from_str(&plan.to_json()).unwrap();
    value["probe"] = serde_json::Value::from("{\"id\": \"x\"}\n");
    let error = VerificationPlan::from_json(&value.to_string()).unwrap_err();
    assert!(matches!(error, PlanError::Malformed(_)), "{error:?}");
    assert!(error.to_string().contains("title"), "{error}");
    let error = VerificationPlan::from_json("{\"max_attempts\": 3, \"extra\": 1}").unwrap_err();
    assert!(error.to_string().contains("unknown field"), "{error}");
}
