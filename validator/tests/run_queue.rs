//! The run queue of the runner workers, through the store's API, on both engines: runs are
//! claimed under a lease by the database's clock, fenced by their attempt, recorded exactly
//! once; a worker whose sandbox differs is turned away; on PostgreSQL, workers claiming at once
//! never take the same run.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::json;
use sooth_test_postgres::TestSchema;
use sooth_validator::store::{
    ClaimRecorded, FinishedClaim, QueuedRun, RunOwner, RunRecorded, Store, StoreError,
    StoreOptions, WorkerRegistration, WorkerState,
};
use sooth_validator::{AgentVersion, Event, ExecutedRun, Miner, RunStatus};

const HASH: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const SANDBOX: &str = "sooth-runner/test";

fn start() -> DateTime<Utc> {
    "2026-01-01T00:00:00Z".parse().unwrap()
}

/// A store with miners m0..m{miners}, each with version [`HASH`], and events e000..e{events}.
async fn filled(store: &Store, miners: u16, events: usize) {
    for uid in 0..miners {
        let hotkey = format!("m{uid}");
        store
            .register_miner(&Miner {
                uid,
                hotkey: hotkey.clone(),
                registered_at: start(),
            })
            .await
            .unwrap();
        store
            .add_agent_version(&AgentVersion {
                hotkey,
                hash: HASH.to_owned(),
                uploaded_at: start(),
                verified_at: Some(start()),
            })
            .await
            .unwrap();
    }
    for i in 0..events {
        store
            .insert_event(&Event::new(
                format!("e{i:03}"),
                "T?",
                start() + TimeDelta::minutes(i as i64),
            ))
            .await
            .unwrap();
    }
}

fn queued(event: usize, uid: u16) -> QueuedRun {
    let hotkey = format!("m{uid}");
    QueuedRun {
        run_id: format!("e{event:03}/{hotkey}"),
        event_id: format!("e{event:03}"),
        owner: RunOwner::Miner {
            hotkey: hotkey.clone(),
        },
        component_hash: HASH.to_owned(),
        gateway_name: hotkey,
        uid,
    }
}

fn worker(id: &str, sandbox: &str) -> WorkerRegistration {
    WorkerRegistration {
        worker_id: id.to_owned(),
        host: "test-host".to_owned(),
        sandbox_version: sandbox.to_owned(),
        concurrency: 4,
    }
}

fn ok(prediction: f64) -> ExecutedRun {
    ExecutedRun {
        status: RunStatus::Ok,
        prediction: Some(prediction),
        duration_ms: 5,
        logs: String::new(),
        gateway_usage: json!({}),
        cost_usd: 0.0,
    }
}

async fn postgres_store() -> (Store, TestSchema) {
    let schema = TestSchema::create().await;
    let store = Store::connect(schema.url(), &StoreOptions::default())
        .await
        .unwrap();
    (store, schema)
}

async fn a_run_is_claimed_fenced_and_recorded_once(store: &Store) {
    filled(store, 1, 1).await;
    store.set_scheduler_sandbox(SANDBOX).await.unwrap();
    store.register_worker(&worker("w1", SANDBOX)).await.unwrap();
    store.register_worker(&worker("w2", SANDBOX)).await.unwrap();
    assert!(store.queue_is_empty().await.unwrap());
    assert_eq!(store.enqueue_runs(&[queued(0, 0)]).await.unwrap(), 1);
    // Queued once, whatever the scheduler says twice.
    assert_eq!(store.enqueue_runs(&[queued(0, 0)]).await.unwrap(), 0);

    let lease = Duration::from_millis(300);
    let first = store.claim_runs("w1", 10, lease).await.unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].attempt, 1);
    assert_eq!(first[0].event.event.id, "e000");
    // Held: nobody else gets it while the lease runs.
    assert!(store.claim_runs("w2", 10, lease).await.unwrap().is_empty());
    let counts = store.queue_counts().await.unwrap();
    assert_eq!((counts.waiting, counts.leased), (0, 1));
    assert!(!store.queue_is_empty().await.unwrap());

    tokio::time::sleep(Duration::from_millis(450)).await;
    let second = store.claim_runs("w2", 10, lease).await.unwrap();
    assert_eq!(second.len(), 1, "the ended lease is claimed again");
    assert_eq!(second[0].attempt, 2);

    // The first holder's outcome is refused: it no longer holds the run.
    let late = store
        .record_claimed(
            "w1",
            &[FinishedClaim {
                claim: first[0].clone(),
                executed: ok(0.9),
            }],
        )
        .await
        .unwrap();
    assert_eq!(late, [ClaimRecorded::LeaseLost]);
    let recorded = store
        .record_claimed(
            "w2",
            &[FinishedClaim {
                claim: second[0].clone(),
                executed: ok(0.3),
            }],
        )
        .await
        .unwrap();
    assert_eq!(recorded, [ClaimRecorded::Recorded(RunRecorded::Inserted)]);
    let runs = store.runs_of_event("e000").await.unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].run.executed.prediction, Some(0.3));
    // Recorded: the queue is empty, and the run is never queued again.
    let counts = store.queue_counts().await.unwrap();
    assert_eq!((counts.waiting, counts.leased), (0, 0));
    assert!(store.queue_is_empty().await.unwrap());
    assert_eq!(store.enqueue_runs(&[queued(0, 0)]).await.unwrap(), 0);

    let workers = store.workers().await.unwrap();
    let w1 = workers
        .iter()
        .find(|w| w.registration.worker_id == "w1")
        .unwrap();
    let w2 = workers
        .iter()
        .find(|w| w.registration.worker_id == "w2")
        .unwrap();
    assert_eq!((w1.claimed, w1.completed, w1.expired), (1, 0, 1));
    assert_eq!((w2.claimed, w2.completed, w2.expired), (1, 1, 0));
    assert_eq!(w2.state, WorkerState::Running);
    assert_eq!((w1.leased, w2.leased), (0, 0));
}

/// A record whose miner has no version with the claimed component's hash is refused, alone or
/// in a batch, and writes nothing: the run stays queued under its lease.
async fn a_record_of_an_unknown_version_writes_nothing(store: &Store) {
    filled(store, 1, 2).await;
    store.set_scheduler_sandbox(SANDBOX).await.unwrap();
    store.register_worker(&worker("w1", SANDBOX)).await.unwrap();
    let stranger = QueuedRun {
        component_hash: "b".repeat(64),
        ..queued(0, 0)
    };
    store.enqueue_runs(&[stranger, queued(1, 0)]).await.unwrap();
    let claims = store
        .claim_runs("w1", 10, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(claims.len(), 2);
    let finished: Vec<FinishedClaim> = claims
        .iter()
        .map(|claim| FinishedClaim {
            claim: claim.clone(),
            executed: ok(0.4),
        })
        .collect();
    for batch in [&finished[..1], &finished[..]] {
        let refused = store.record_claimed("w1", batch).await;
        assert!(
            matches!(refused, Err(StoreError::UnknownVersion { .. })),
            "{refused:?}"
        );
    }
    for event in ["e000", "e001"] {
        assert!(store.runs_of_event(event).await.unwrap().is_empty());
    }
    let counts = store.queue_counts().await.unwrap();
    assert_eq!((counts.waiting, counts.leased), (0, 2));
    // The good one alone goes through.
    let recorded = store.record_claimed("w1", &finished[1..]).await.unwrap();
    assert_eq!(recorded, [ClaimRecorded::Recorded(RunRecorded::Inserted)]);
}

#[tokio::test]
async fn sqlite_a_record_of_an_unknown_version_writes_nothing() {
    a_record_of_an_unknown_version_writes_nothing(&Store::in_memory().await.unwrap()).await;
}

#[tokio::test]
async fn postgres_a_record_of_an_unknown_version_writes_nothing() {
    let (store, _schema) = postgres_store().await;
    a_record_of_an_unknown_version_writes_nothing(&store).await;
}

async fn a_worker_of_another_sandbox_is_turned_away(store: &Store) {
    filled(store, 1, 1).await;
    let before = store.register_worker(&worker("early", SANDBOX)).await;
    assert!(matches!(before, Err(StoreError::NoScheduler)), "{before:?}");
    store.set_scheduler_sandbox(SANDBOX).await.unwrap();
    let error = store
        .register_worker(&worker("old", "sooth-runner/0.0.1"))
        .await
        .unwrap_err();
    let message = error.to_string();
    assert!(message.contains("sooth-runner/0.0.1"), "{message}");
    assert!(message.contains(SANDBOX), "{message}");
    store.enqueue_runs(&[queued(0, 0)]).await.unwrap();
    assert!(
        store
            .claim_runs("old", 10, Duration::from_secs(60))
            .await
            .unwrap()
            .is_empty()
    );
    let workers = store.workers().await.unwrap();
    let old = workers
        .iter()
        .find(|w| w.registration.worker_id == "old")
        .unwrap();
    assert_eq!(old.state, WorkerState::Refused);
    assert!(old.detail.contains("sooth-runner/0.0.1"));
}

async fn a_stopped_worker_hands_back_what_it_held(store: &Store) {
    filled(store, 2, 2).await;
    store.set_scheduler_sandbox(SANDBOX).await.unwrap();
    store.register_worker(&worker("w1", SANDBOX)).await.unwrap();
    store.register_worker(&worker("w2", SANDBOX)).await.unwrap();
    let runs: Vec<QueuedRun> = (0..2)
        .flat_map(|event| (0..2).map(move |uid| queued(event, uid)))
        .collect();
    assert_eq!(store.enqueue_runs(&runs).await.unwrap(), 4);
    let held = store
        .claim_runs("w1", 3, Duration::from_secs(600))
        .await
        .unwrap();
    assert_eq!(held.len(), 3);
    store
        .set_worker_state("w1", WorkerState::Draining)
        .await
        .unwrap();
    // Draining: it claims nothing more.
    assert!(
        store
            .claim_runs("w1", 3, Duration::from_secs(600))
            .await
            .unwrap()
            .is_empty()
    );
    store
        .set_worker_state("w1", WorkerState::Stopped)
        .await
        .unwrap();
    let taken = store
        .claim_runs("w2", 10, Duration::from_secs(600))
        .await
        .unwrap();
    assert_eq!(
        taken.len(),
        4,
        "the stopped worker's three and the one never claimed"
    );
    // A record of the stopped worker's, arriving late, is refused.
    let late = store
        .record_claimed(
            "w1",
            &[FinishedClaim {
                claim: held[0].clone(),
                executed: ok(0.5),
            }],
        )
        .await
        .unwrap();
    assert_eq!(late, [ClaimRecorded::LeaseLost]);
    assert!(
        store
            .runs_of_event(&held[0].event.event.id)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn sqlite_a_run_is_claimed_fenced_and_recorded_once() {
    a_run_is_claimed_fenced_and_recorded_once(&Store::in_memory().await.unwrap()).await;
}

#[tokio::test]
async fn postgres_a_run_is_claimed_fenced_and_recorded_once() {
    let (store, _schema) = postgres_store().await;
    a_run_is_claimed_fenced_and_recorded_once(&store).await;
}

#[tokio::test]
async fn sqlite_a_worker_of_another_sandbox_is_turned_away() {
    a_worker_of_another_sandbox_is_turned_away(&Store::in_memory().await.unwrap()).await;
}

#[tokio::test]
async fn postgres_a_worker_of_another_sandbox_is_turned_away() {
    let (store, _schema) = postgres_store().await;
    a_worker_of_another_sandbox_is_turned_away(&store).await;
}

#[tokio::test]
async fn sqlite_a_stopped_worker_hands_back_what_it_held() {
    a_stopped_worker_hands_back_what_it_held(&Store::in_memory().await.unwrap()).await;
}

#[tokio::test]
async fn postgres_a_stopped_worker_hands_back_what_it_held() {
    let (store, _schema) = postgres_store().await;
    a_stopped_worker_hands_back_what_it_held(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_workers_claiming_at_once_never_take_the_same_run() {
    let (store, _schema) = postgres_store().await;
    filled(&store, 10, 30).await;
    store.set_scheduler_sandbox(SANDBOX).await.unwrap();
    let runs: Vec<QueuedRun> = (0..30)
        .flat_map(|event| (0..10).map(move |uid| queued(event, uid)))
        .collect();
    assert_eq!(store.enqueue_runs(&runs).await.unwrap(), 300);
    let mut tasks = Vec::new();
    for w in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let id = format!("w{w}");
            store.register_worker(&worker(&id, SANDBOX)).await.unwrap();
            let mut mine = Vec::new();
            loop {
                let claims = store
                    .claim_runs(&id, 7, Duration::from_secs(600))
                    .await
                    .unwrap();
                if claims.is_empty() {
                    break;
                }
                mine.extend(claims.into_iter().map(|claim| claim.run.run_id));
            }
            mine
        }));
    }
    let mut seen = HashSet::new();
    let mut total = 0;
    let mut workers_with_runs = 0;
    for task in tasks {
        let mine = task.await.unwrap();
        workers_with_runs += usize::from(!mine.is_empty());
        total += mine.len();
        seen.extend(mine);
    }
    assert_eq!(total, 300, "every run claimed once");
    assert_eq!(seen.len(), 300, "no run claimed twice");
    assert!(
        workers_with_runs >= 2,
        "the claims were spread over the workers"
    );
}
