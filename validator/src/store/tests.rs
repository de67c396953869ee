//! Tests of the store, through its public API, on in-memory and file databases.

use std::path::Path;

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{Map, json};

use super::*;
use crate::activation::{AgentVersion, active_version};
use crate::event::Event;
use crate::executor::{ExecutedRun, RunStatus};
use crate::registration::RegistrationDecision;
use crate::scoring::{Miner, Outcome, ResolvedEvent, ScoredEvent, leaderboard};
use crate::test_support::at;
use sooth_test_postgres::TestSchema;

const T0: &str = "2026-03-01T00:00:00Z";

fn t(hours: i64) -> DateTime<Utc> {
    at(T0) + TimeDelta::hours(hours)
}

fn miner(uid: u16, hotkey: &str, registered_at: DateTime<Utc>) -> Miner {
    Miner {
        uid,
        hotkey: hotkey.to_owned(),
        registered_at,
    }
}

fn new_event(id: &str, created_at: DateTime<Utc>) -> Event {
    Event {
        id: id.to_owned(),
        kind: "market".to_owned(),
        title: format!("Will {id} happen?"),
        description: "A test question.".to_owned(),
        metadata: Map::from_iter([("market_prob".to_owned(), json!(0.4))]),
        created_at,
        cutoff: created_at + TimeDelta::days(3),
    }
}

fn ok_run(event_id: &str, hotkey: &str, hash: &str, prediction: f64) -> NewRun {
    NewRun {
        event_id: event_id.to_owned(),
        hotkey: hotkey.to_owned(),
        version_hash: hash.to_owned(),
        executed: ExecutedRun {
            status: RunStatus::Ok,
            prediction: Some(prediction),
            duration_ms: 1234,
            logs: "thinking...\n".to_owned(),
            gateway_usage: json!({"llm": {"calls": 1}}),
            cost_usd: 0.002,
        },
        finished_at: at(T0) + TimeDelta::minutes(5),
    }
}

/// `run` with its executed part changed by `change`.
fn changed(mut run: NewRun, change: impl FnOnce(&mut ExecutedRun)) -> NewRun {
    change(&mut run.executed);
    run
}

fn failed_run(event_id: &str, hotkey: &str, hash: &str, status: RunStatus) -> NewRun {
    changed(ok_run(event_id, hotkey, hash, 0.0), |run| {
        run.status = status;
        run.prediction = None;
    })
}

/// The whole error chain, one cause after another.
fn chain(error: StoreError) -> String {
    format!("{:#}", anyhow::Error::new(error))
}

/// What the scores history keeps of `events`.
fn scored(events: &[ResolvedEvent]) -> Vec<ScoredEvent> {
    events.iter().map(ScoredEvent::of).collect()
}

/// The runs owed at `as_of`: the missing ones whose miner had a version active at the event's
/// creation, as (event, miner, version).
async fn owed(store: &Store, as_of: DateTime<Utc>) -> Vec<(String, String, String)> {
    let versions = store.versions_for_activation().await.unwrap();
    store
        .missing_runs(as_of)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|run| {
            let version = active_version(&versions, &run.hotkey, run.created_at)?;
            Some((run.event_id, run.hotkey, version.hash.clone()))
        })
        .collect()
}

/// Verified 30 s after its upload.
fn version(hotkey: &str, hash: &str, uploaded_at: DateTime<Utc>) -> AgentVersion {
    AgentVersion {
        hotkey: hotkey.to_owned(),
        hash: hash.to_owned(),
        uploaded_at,
        verified_at: Some(uploaded_at + TimeDelta::seconds(30)),
    }
}

/// A store with miners alice (uid 0) and bob (uid 1), registered at T0 - 1 day, each with a
/// version uploaded then (active from T0).
async fn two_miners(engine: Engine) -> TestStore {
    let store = empty_store(engine).await;
    for (uid, hotkey) in [(0, "alice"), (1, "bob")] {
        store
            .register_miner(&miner(uid, hotkey, t(-24)))
            .await
            .unwrap();
        store
            .add_agent_version(&version(hotkey, &format!("{hotkey}-v1"), t(-20)))
            .await
            .unwrap();
    }
    store
}

/// A store on one engine, and the PostgreSQL schema it lives in (dropped with it).
struct TestStore {
    store: Store,
    _schema: Option<TestSchema>,
}

impl std::ops::Deref for TestStore {
    type Target = Store;

    fn deref(&self) -> &Store {
        &self.store
    }
}

/// An empty store: in memory on SQLite, in a schema of its own on the test server on
/// PostgreSQL.
async fn empty_store(engine: Engine) -> TestStore {
    match engine {
        Engine::Sqlite => TestStore {
            store: Store::in_memory().await.unwrap(),
            _schema: None,
        },
        Engine::Postgres => {
            let schema = TestSchema::create().await;
            let store = Store::connect(schema.url(), &StoreOptions::default())
                .await
                .unwrap();
            TestStore {
                store,
                _schema: Some(schema),
            }
        }
    }
}

/// The tests that hold on either engine, each run on both: `sqlite::NAME` and
/// `postgres::NAME` (one suite, so that the engines cannot drift apart).
macro_rules! on_both_engines {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(super::Engine::Sqlite).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(super::Engine::Postgres).await;
                }
            )*
        }
    };
}

on_both_engines!(
    registration_and_deregistration,
    a_registration_decision_is_recorded_whole_or_not_at_all,
    versions_are_added_listed_and_activated,
    a_duplicate_event_id_is_refused_naming_it_and_the_first_stays,
    an_event_with_a_missing_or_invalid_field_is_refused_before_anything_is_written,
    resolution_errors_and_idempotence,
    a_run_is_recorded_once_per_event_and_miner,
    invalid_runs_are_refused,
    runs_needed_follow_activation_registration_and_cutoff,
    resolved_events_come_in_scoring_order_with_predictions_by_miner,
    scores_and_weights_are_written_together,
);

async fn count(store: &Store, table: &str) -> i64 {
    sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
        .fetch_one(&store.reader)
        .await
        .unwrap()
}

// ----- opening -----

#[tokio::test]
async fn a_file_store_keeps_its_data_across_reopening_and_shares_the_gateway_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sooth.sqlite");
    let store = Store::open(&path).await.unwrap();
    store.insert_event(&new_event("e1", t(1))).await.unwrap();
    store.close().await;

    // Reopening applies no migration twice and finds the event.
    let store = Store::open(&path).await.unwrap();
    let event = store.event("e1").await.unwrap().unwrap();
    assert_eq!(event.event, new_event("e1", t(1)));
    assert_eq!(event.status, EventStatus::Open);
    // One file with the gateway's tables: its migrations ran too.
    let gateway_tables: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name LIKE 'gateway_%'",
    )
    .fetch_one(&store.reader)
    .await
    .unwrap();
    assert!(gateway_tables >= 3, "gateway tables: {gateway_tables}");
    let journal_mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&store.reader)
        .await
        .unwrap();
    assert_eq!(journal_mode, "wal");
    // The probe file used to test the directory is gone.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.iter().all(|name| !name.contains("probe")),
        "{names:?}"
    );
}

#[tokio::test]
async fn a_missing_directory_is_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent").join("sooth.sqlite");
    let error = Store::open(&path).await.unwrap_err();
    assert!(matches!(error, StoreError::Open { .. }), "{error:?}");
    let message = chain(error);
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(message.contains("does not exist"), "{message}");
}

/// Whether the current user can write into a directory whose permission bits forbid it (root
/// can: `chmod` does not stop it).
fn permissions_are_enforced(read_only_dir: &Path) -> bool {
    let probe = read_only_dir.join("can-i-write");
    match std::fs::write(&probe, b"x") {
        Ok(()) => {
            let _ = std::fs::remove_file(&probe);
            false
        }
        Err(_) => true,
    }
}

#[cfg(unix)]
#[tokio::test]
async fn a_read_only_data_directory_is_refused_naming_the_file() {
    use std::os::unix::fs::PermissionsExt;

    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o555)).unwrap();
    let restore = || {
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    };
    let read_only_dir = if permissions_are_enforced(dir.path()) {
        dir.path().to_owned()
    } else if permissions_are_enforced(Path::new("/proc")) {
        // Root ignores mode 0555, but not a pseudo file system that has no room for files.
        println!(
            "a_read_only_data_directory_is_refused_naming_the_file: this user (root?) can \
             write into a directory with mode 0555; testing with /proc instead"
        );
        std::path::PathBuf::from("/proc")
    } else {
        restore();
        println!(
            "SKIPPED a_read_only_data_directory_is_refused_naming_the_file: this user (root?) \
             can write into a directory with mode 0555 and into /proc, so no read-only \
             directory is at hand"
        );
        return;
    };
    let path = read_only_dir.join("sooth.sqlite");
    let result = Store::open(&path).await;
    restore();
    let error = result.unwrap_err();
    assert!(matches!(error, StoreError::Open { .. }), "{error:?}");
    let message = chain(error);
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(message.contains("not writable"), "{message}");
    assert!(!path.exists());
}

// ----- miners -----

async fn registration_and_deregistration(engine: Engine) {
    let store = empty_store(engine).await;
    store
        .register_miner(&miner(0, "alice", t(0)))
        .await
        .unwrap();
    store.register_miner(&miner(1, "bob", t(1))).await.unwrap();
    assert_eq!(
        store.registered_miners().await.unwrap(),
        [miner(0, "alice", t(0)), miner(1, "bob", t(1))]
    );

    let error = store
        .register_miner(&miner(5, "alice", t(2)))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, StoreError::AlreadyRegistered { hotkey, uid: 0 } if hotkey == "alice"),
        "{error:?}"
    );
    let error = store
        .register_miner(&miner(1, "carol", t(2)))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, StoreError::UidTaken { uid: 1, holder } if holder == "bob"),
        "{error:?}"
    );
    assert!(matches!(
        store.register_miner(&miner(2, "", t(2))).await,
        Err(StoreError::InvalidMiner { .. })
    ));

    // Deregistration: bob loses uid 1, which carol can then take.
    assert!(matches!(
        store.deregister_miner("bob", t(0)).await,
        Err(StoreError::InvalidInstant(_))
    ));
    store.deregister_miner("bob", t(3)).await.unwrap();
    assert!(matches!(
        store.deregister_miner("bob", t(4)).await,
        Err(StoreError::NotRegistered { .. })
    ));
    assert!(matches!(
        store.deregister_miner("nobody", t(4)).await,
        Err(StoreError::UnknownMiner { .. })
    ));
    store
        .register_miner(&miner(1, "carol", t(4)))
        .await
        .unwrap();
    let bob = store.miner("bob").await.unwrap().unwrap();
    assert_eq!(bob.deregistered_at, Some(t(3)));

    // Bob comes back in another slot, in the same row: a new registration instant.
    store.register_miner(&miner(2, "bob", t(5))).await.unwrap();
    let bob = store.miner("bob").await.unwrap().unwrap();
    assert_eq!((bob.miner.uid, bob.deregistered_at), (2, None));
    assert_eq!(bob.miner.registered_at, t(5));
    assert_eq!(store.miner("nobody").await.unwrap(), None);
}

async fn a_registration_decision_is_recorded_whole_or_not_at_all(engine: Engine) {
    let store = empty_store(engine).await;
    store
        .register_miner(&miner(0, "alice", t(0)))
        .await
        .unwrap();
    store.register_miner(&miner(1, "bob", t(0))).await.unwrap();

    // Replaces bob in uid 1.
    store
        .apply_registration(&RegistrationDecision {
            registered: miner(1, "carol", t(200)),
            deregistered: Some(miner(1, "bob", t(0))),
        })
        .await
        .unwrap();
    let hotkeys: Vec<_> = store
        .registered_miners()
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.hotkey)
        .collect();
    assert_eq!(hotkeys, ["alice", "carol"]);
    assert_eq!(
        store.miner("bob").await.unwrap().unwrap().deregistered_at,
        Some(t(200))
    );

    // A decision whose registration fails (uid 1 is carol's, not alice's) must not leave
    // alice deregistered.
    let error = store
        .apply_registration(&RegistrationDecision {
            registered: miner(1, "dave", t(300)),
            deregistered: Some(miner(0, "alice", t(0))),
        })
        .await
        .unwrap_err();
    assert!(
        matches!(error, StoreError::UidTaken { uid: 1, .. }),
        "{error:?}"
    );
    assert_eq!(
        store.miner("alice").await.unwrap().unwrap().deregistered_at,
        None
    );
    assert_eq!(store.miner("dave").await.unwrap(), None);
}

// ----- versions -----

async fn versions_are_added_listed_and_activated(engine: Engine) {
    let store = empty_store(engine).await;
    store
        .register_miner(&miner(0, "alice", t(0)))
        .await
        .unwrap();
    store
        .add_agent_version(&version("alice", "v1", t(1)))
        .await
        .unwrap();
    store
        .add_agent_version(&version("alice", "v2", t(2)))
        .await
        .unwrap();
    let pending = AgentVersion {
        verified_at: None,
        ..version("alice", "v3", t(3))
    };
    store.add_agent_version(&pending).await.unwrap();

    // Refusals.
    assert!(matches!(
        store.add_agent_version(&version("alice", "v1", t(4))).await,
        Err(StoreError::DuplicateVersion { .. })
    ));
    assert!(matches!(
        store.add_agent_version(&version("nobody", "x", t(4))).await,
        Err(StoreError::UnknownMiner { .. })
    ));
    assert!(matches!(
        store.add_agent_version(&version("alice", "", t(4))).await,
        Err(StoreError::InvalidVersion { .. })
    ));
    let backwards = AgentVersion {
        verified_at: Some(t(3)),
        ..version("alice", "v4", t(4))
    };
    assert!(matches!(
        store.add_agent_version(&backwards).await,
        Err(StoreError::InvalidVersion { .. })
    ));

    // The pending version is not a candidate for activation.
    let candidates = store.versions_for_activation().await.unwrap();
    let hashes: Vec<_> = candidates.iter().map(|v| v.hash.as_str()).collect();
    assert_eq!(hashes, ["v1", "v2"]);
    assert_eq!(
        crate::activation::active_version(&candidates, "alice", t(24)).map(|v| v.hash.as_str()),
        Some("v2")
    );

    // Activating v2 at midnight supersedes v1, which never ran; again is a no-op.
    assert!(store.record_activation("alice", "v2", t(24)).await.unwrap());
    assert!(!store.record_activation("alice", "v2", t(24)).await.unwrap());
    assert!(matches!(
        store.record_activation("alice", "v3", t(48)).await,
        Err(StoreError::InvalidVersion { .. })
    ));
    assert!(matches!(
        store.record_activation("alice", "nope", t(48)).await,
        Err(StoreError::UnknownVersion { .. })
    ));
    let records = store.agent_versions("alice").await.unwrap();
    let summary: Vec<_> = records
        .iter()
        .map(|r| {
            (
                r.version.hash.as_str(),
                r.status,
                r.activated_at,
                r.deactivated_at,
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("v1", VersionStatus::Inactive, None, None),
            ("v2", VersionStatus::Active, Some(t(24)), None),
            ("v3", VersionStatus::Pending, None, None),
        ]
    );
    assert!(
        records[0]
            .reason
            .as_deref()
            .unwrap()
            .contains("superseded by v2")
    );

    // A newer verified version replaces v2 at the next midnight.
    store
        .add_agent_version(&version("alice", "v5", t(30)))
        .await
        .unwrap();
    assert!(store.record_activation("alice", "v5", t(48)).await.unwrap());
    let records = store.agent_versions("alice").await.unwrap();
    let v2 = records.iter().find(|r| r.version.hash == "v2").unwrap();
    assert_eq!(
        (v2.status, v2.deactivated_at),
        (VersionStatus::Inactive, Some(t(48)))
    );
    // A deregistered miner's versions are no longer candidates.
    store.deregister_miner("alice", t(50)).await.unwrap();
    assert!(store.versions_for_activation().await.unwrap().is_empty());
    assert!(matches!(
        store
            .add_agent_version(&version("alice", "v6", t(51)))
            .await,
        Err(StoreError::NotRegistered { .. })
    ));
}

// ----- events -----

async fn a_duplicate_event_id_is_refused_naming_it_and_the_first_stays(engine: Engine) {
    let store = empty_store(engine).await;
    store.insert_event(&new_event("e1", t(1))).await.unwrap();
    let mut second = new_event("e1", t(5));
    second.title = "Something else?".to_owned();
    let error = store.insert_event(&second).await.unwrap_err();
    assert!(
        matches!(&error, StoreError::DuplicateEvent { event_id } if event_id == "e1"),
        "{error:?}"
    );
    assert!(error.to_string().contains("\"e1\""), "{error}");
    assert_eq!(
        store.event("e1").await.unwrap().unwrap().event,
        new_event("e1", t(1))
    );
    assert_eq!(count(&store, "validator_events").await, 1);
}

async fn an_event_with_a_missing_or_invalid_field_is_refused_before_anything_is_written(
    engine: Engine,
) {
    let store = empty_store(engine).await;
    let good = new_event("e1", t(1));
    let cases: Vec<(Event, &str)> = vec![
        (
            Event {
                id: String::new(),
                ..good.clone()
            },
            "`id` must be 1 to 256 bytes",
        ),
        (
            Event {
                kind: " ".to_owned(),
                ..good.clone()
            },
            "`kind` must not be empty",
        ),
        (
            Event {
                title: String::new(),
                ..good.clone()
            },
            "`title` must not be empty",
        ),
        (
            Event {
                cutoff: good.created_at,
                ..good.clone()
            },
            "not after the creation",
        ),
        (
            Event {
                cutoff: good.created_at - TimeDelta::hours(1),
                ..good.clone()
            },
            "not after the creation",
        ),
    ];
    for (event, expected) in cases {
        let error = store.insert_event(&event).await.unwrap_err();
        assert!(
            matches!(error, StoreError::InvalidEvent { .. }) && chain(error).contains(expected),
            "{expected}"
        );
    }
    assert_eq!(count(&store, "validator_events").await, 0);
    // An empty description and metadata are fine.
    store
        .insert_event(&Event {
            description: String::new(),
            metadata: Map::new(),
            ..good
        })
        .await
        .unwrap();
}

async fn resolution_errors_and_idempotence(engine: Engine) {
    let store = empty_store(engine).await;
    store.insert_event(&new_event("e1", t(1))).await.unwrap();

    let error = store.resolve_event("nope", 1, t(80)).await.unwrap_err();
    assert!(
        matches!(&error, StoreError::UnknownEvent { event_id } if event_id == "nope"),
        "{error:?}"
    );
    let error = store.resolve_event("e1", 2, t(80)).await.unwrap_err();
    assert!(
        matches!(error, StoreError::InvalidOutcome { value: 2, .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("0 or 1"), "{error}");
    assert!(matches!(
        store.resolve_event("e1", 1, t(0)).await,
        Err(StoreError::InvalidResolution { .. })
    ));
    // None of the refusals resolved it.
    assert_eq!(
        store.event("e1").await.unwrap().unwrap().status,
        EventStatus::Open
    );

    assert_eq!(
        store.resolve_event("e1", 1, t(80)).await.unwrap(),
        ResolutionRecorded::Recorded
    );
    // The same again (even with sub-millisecond noise) is fine and changes nothing.
    assert_eq!(
        store
            .resolve_event("e1", 1, t(80) + TimeDelta::microseconds(300))
            .await
            .unwrap(),
        ResolutionRecorded::AlreadyRecorded
    );
    // A different outcome, or a different instant, is refused; the first stands.
    for (outcome, instant) in [(0, t(80)), (1, t(81))] {
        let error = store
            .resolve_event("e1", outcome, instant)
            .await
            .unwrap_err();
        assert!(
            matches!(
                error,
                StoreError::ConflictingResolution {
                    recorded_outcome: 1,
                    ..
                }
            ),
            "{error:?}"
        );
        assert!(error.to_string().contains("already resolved"), "{error}");
    }
    let event = store.event("e1").await.unwrap().unwrap();
    assert_eq!(
        (event.status, event.outcome, event.resolved_at),
        (EventStatus::Resolved, Some(Outcome::Yes), Some(t(80)))
    );
}

// ----- runs -----

async fn a_run_is_recorded_once_per_event_and_miner(engine: Engine) {
    let store = two_miners(engine).await;
    store.insert_event(&new_event("e1", t(1))).await.unwrap();
    let first = ok_run("e1", "alice", "alice-v1", 1.3);
    assert_eq!(
        store.record_run(&first).await.unwrap(),
        RunRecorded::Inserted
    );
    // A second record, even a different one, is a no-op that says so.
    let second = ok_run("e1", "alice", "alice-v1", 0.2);
    assert_eq!(
        store.record_run(&second).await.unwrap(),
        RunRecorded::AlreadyRecorded
    );
    assert_eq!(
        store
            .record_run(&failed_run("e1", "bob", "bob-v1", RunStatus::Timeout))
            .await
            .unwrap(),
        RunRecorded::Inserted
    );

    let runs = store.runs_of_event("e1").await.unwrap();
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0].run, first);
    // 1.3 is kept as the agent said it and scored as 0.99.
    assert_eq!(runs[0].clipped_prediction, Some(0.99));
    assert_eq!(runs[1].run.executed.status, RunStatus::Timeout);
    assert_eq!(runs[1].clipped_prediction, None);
}

async fn invalid_runs_are_refused(engine: Engine) {
    let store = two_miners(engine).await;
    store.insert_event(&new_event("e1", t(1))).await.unwrap();
    let invalid = [
        ok_run("e1", "alice", "alice-v1", f64::NAN),
        changed(ok_run("e1", "alice", "alice-v1", 0.5), |run| {
            run.prediction = None;
        }),
        changed(ok_run("e1", "alice", "alice-v1", 0.5), |run| {
            run.status = RunStatus::Trap;
        }),
        changed(ok_run("e1", "alice", "alice-v1", 0.5), |run| {
            run.cost_usd = -1.0
        }),
    ];
    for run in &invalid {
        let error = store.record_run(run).await.unwrap_err();
        assert!(matches!(error, StoreError::InvalidRun { .. }), "{error:?}");
    }
    assert!(matches!(
        store
            .record_run(&ok_run("nope", "alice", "alice-v1", 0.5))
            .await,
        Err(StoreError::UnknownEvent { .. })
    ));
    assert!(matches!(
        store
            .record_run(&ok_run("e1", "nobody", "alice-v1", 0.5))
            .await,
        Err(StoreError::UnknownMiner { .. })
    ));
    // Another miner's version is not this miner's.
    assert!(matches!(
        store
            .record_run(&ok_run("e1", "alice", "bob-v1", 0.5))
            .await,
        Err(StoreError::UnknownVersion { .. })
    ));
    assert_eq!(count(&store, "validator_runs").await, 0);
}

#[test]
fn a_store_dropped_mid_write_keeps_exactly_the_committed_runs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sooth.sqlite");
    let miners = ["alice", "bob", "carol"];
    let event_ids: Vec<String> = (0..20).map(|i| format!("e{i:02}")).collect();

    // First life: record half the runs, start one more and abandon it half-way, then drop
    // everything without closing (the runtime too, so no task survives).
    let committed = {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async {
            let store = Store::open(&path).await.unwrap();
            for (uid, hotkey) in (0..).zip(miners) {
                store
                    .register_miner(&miner(uid, hotkey, t(-24)))
                    .await
                    .unwrap();
                store
                    .add_agent_version(&version(hotkey, "v1", t(-20)))
                    .await
                    .unwrap();
            }
            for (i, id) in event_ids.iter().enumerate() {
                store
                    .insert_event(&new_event(id, t(i64::try_from(i).unwrap())))
                    .await
                    .unwrap();
            }
            let mut committed = Vec::new();
            for id in &event_ids[..10] {
                for hotkey in miners {
                    store
                        .record_run(&ok_run(id, hotkey, "v1", 0.7))
                        .await
                        .unwrap();
                    committed.push((id.clone(), hotkey));
                }
            }
            // Poll one more record once and drop it: cancelled somewhere inside its
            // transaction, which must then roll back or have committed whole.
            let last = ok_run(&event_ids[10], "alice", "v1", 0.7);
            let abandoned = store.record_run(&last);
            let _ = tokio::time::timeout(std::time::Duration::ZERO, abandoned).await;
            committed
        })
    };

    // Second life: the committed runs are there, once; recording everything again inserts
    // only what was missing.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let store = Store::open(&path).await.unwrap();
        let before = count(&store, "validator_runs").await;
        let committed_count = i64::try_from(committed.len()).unwrap();
        assert!(
            before == committed_count || before == committed_count + 1,
            "{before} rows after {committed_count} commits"
        );
        let mut inserted = 0;
        for id in &event_ids {
            for hotkey in miners {
                match store
                    .record_run(&ok_run(id, hotkey, "v1", 0.7))
                    .await
                    .unwrap()
                {
                    RunRecorded::Inserted => inserted += 1,
                    RunRecorded::AlreadyRecorded => {
                        assert!(
                            committed.contains(&(id.clone(), hotkey))
                                || (id == &event_ids[10] && hotkey == "alice"),
                            "{id} {hotkey} was recorded but never committed"
                        );
                    }
                }
            }
        }
        assert_eq!(i64::from(inserted) + before, 60);
        assert_eq!(count(&store, "validator_runs").await, 60);
        for id in &event_ids {
            assert_eq!(store.runs_of_event(id).await.unwrap().len(), 3);
        }
    });
}

/// Environment variable that turns [`crash_child_records_runs_forever`] on: the database path.
const CRASH_CHILD_DATABASE: &str = "SOOTH_STORE_CRASH_CHILD_DATABASE";

/// Not a test on its own: the child process of
/// [`a_killed_process_keeps_exactly_the_committed_runs`]. It records runs one by one and
/// prints `committed N` after each commit, until it is killed.
#[tokio::test]
#[ignore = "child process of a_killed_process_keeps_exactly_the_committed_runs"]
async fn crash_child_records_runs_forever() {
    let Some(path) = std::env::var_os(CRASH_CHILD_DATABASE) else {
        return;
    };
    let store = Store::open(Path::new(&path)).await.unwrap();
    for n in 0..100_000 {
        store
            .record_run(&ok_run(&format!("e{n:05}"), "alice", "v1", 0.6))
            .await
            .unwrap();
        println!("committed {n}");
    }
}

#[cfg(unix)]
#[tokio::test]
async fn a_killed_process_keeps_exactly_the_committed_runs() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sooth.sqlite");
    {
        let store = Store::open(&path).await.unwrap();
        store
            .register_miner(&miner(0, "alice", t(-24)))
            .await
            .unwrap();
        store
            .add_agent_version(&version("alice", "v1", t(-20)))
            .await
            .unwrap();
        for n in 0..2_000 {
            store
                .insert_event(&new_event(&format!("e{n:05}"), t(n)))
                .await
                .unwrap();
        }
        store.close().await;
    }

    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "store::tests::crash_child_records_runs_forever",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CRASH_CHILD_DATABASE, &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut last_reported: Option<i64> = None;
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if let Some(n) = line.strip_prefix("committed ") {
            let n: i64 = n.parse().unwrap();
            last_reported = Some(n);
            if n >= 150 {
                // SIGKILL: no destructor, no rollback, no close.
                child.kill().unwrap();
                break;
            }
        }
    }
    child.wait().unwrap();
    let last_reported = last_reported.expect("the child reported no commit");

    let store = Store::open(&path).await.unwrap();
    let rows = count(&store, "validator_runs").await;
    // Everything reported committed is there; at most the run in flight when killed besides
    // (it may have committed before it could print).
    assert!(
        rows == last_reported + 1 || rows == last_reported + 2,
        "{rows} rows, last reported commit {last_reported}"
    );
    for n in 0..rows {
        let runs = store.runs_of_event(&format!("e{n:05}")).await.unwrap();
        assert_eq!(runs.len(), 1, "event {n}");
        assert_eq!(runs[0].run.executed.prediction, Some(0.6));
    }
    // The restarted daemon's replay records each committed run once, no more.
    for n in 0..rows {
        assert_eq!(
            store
                .record_run(&ok_run(&format!("e{n:05}"), "alice", "v1", 0.6))
                .await
                .unwrap(),
            RunRecorded::AlreadyRecorded
        );
    }
    assert_eq!(count(&store, "validator_runs").await, rows);
}

async fn runs_needed_follow_activation_registration_and_cutoff(engine: Engine) {
    let store = two_miners(engine).await;
    // carol registered, but her only version is uploaded at T0 + 2 h: active from T0 + 24 h.
    store
        .register_miner(&miner(2, "carol", t(-24)))
        .await
        .unwrap();
    store
        .add_agent_version(&version("carol", "carol-v1", t(2)))
        .await
        .unwrap();
    store.insert_event(&new_event("early", t(1))).await.unwrap();
    store
        .insert_event(&new_event("later", t(25)))
        .await
        .unwrap();
    store
        .insert_event(&new_event("future", t(200)))
        .await
        .unwrap();

    let owned = |list: &[(&str, &str, &str)]| -> Vec<(String, String, String)> {
        list.iter()
            .map(|(a, b, c)| ((*a).to_owned(), (*b).to_owned(), (*c).to_owned()))
            .collect()
    };
    assert_eq!(
        owed(&store, t(30)).await,
        owned(&[
            ("early", "alice", "alice-v1"),
            ("early", "bob", "bob-v1"),
            ("later", "alice", "alice-v1"),
            ("later", "bob", "bob-v1"),
            ("later", "carol", "carol-v1"),
        ])
    );

    // Recorded runs (even failed ones) are not owed again; a deregistered miner's runs stop.
    store
        .record_run(&ok_run("early", "alice", "alice-v1", 0.4))
        .await
        .unwrap();
    store
        .record_run(&failed_run("later", "carol", "carol-v1", RunStatus::Trap))
        .await
        .unwrap();
    store.deregister_miner("bob", t(30)).await.unwrap();
    assert_eq!(
        owed(&store, t(30)).await,
        owned(&[("later", "alice", "alice-v1")])
    );
    // Past its cutoff (3 days after creation) an event gets no more runs; resolved neither.
    assert!(owed(&store, t(25) + TimeDelta::days(3)).await.is_empty());
    store.resolve_event("later", 0, t(40)).await.unwrap();
    assert!(owed(&store, t(41)).await.is_empty());
}

// ----- resolved events and scoring -----

async fn resolved_events_come_in_scoring_order_with_predictions_by_miner(engine: Engine) {
    let store = two_miners(engine).await;
    store
        .register_miner(&miner(2, "carol", t(-24)))
        .await
        .unwrap();
    // Resolution order: "b" (t 10), then "a" and "c" at the same instant t 20 (by id); "d" is
    // open. Creation order is different on purpose.
    for (id, created) in [("c", 1), ("a", 2), ("b", 3), ("d", 4)] {
        store
            .insert_event(&new_event(id, t(created)))
            .await
            .unwrap();
    }
    store
        .record_run(&ok_run("a", "alice", "alice-v1", 0.8))
        .await
        .unwrap();
    store
        .record_run(&ok_run("a", "bob", "bob-v1", -2.0))
        .await
        .unwrap();
    store
        .record_run(&ok_run("b", "alice", "alice-v1", 0.3))
        .await
        .unwrap();
    store
        .record_run(&failed_run("b", "bob", "bob-v1", RunStatus::InvalidOutput))
        .await
        .unwrap();
    store
        .record_run(&ok_run("c", "bob", "bob-v1", 0.6))
        .await
        .unwrap();
    store
        .record_run(&ok_run("d", "bob", "bob-v1", 0.6))
        .await
        .unwrap();
    store.resolve_event("a", 1, t(20)).await.unwrap();
    store.resolve_event("c", 0, t(20)).await.unwrap();
    store.resolve_event("b", 0, t(10)).await.unwrap();

    // The miners slice decides the slots: bob first, carol (no runs) second; alice left out.
    let miners = [miner(1, "bob", t(-24)), miner(2, "carol", t(-24))];
    let events = store
        .last_resolved_events(&miners, 10, chrono::DateTime::<chrono::Utc>::MAX_UTC)
        .await
        .unwrap();
    let summary: Vec<_> = events
        .iter()
        .map(|e| (e.id.as_str(), e.outcome, e.predictions.clone()))
        .collect();
    assert_eq!(
        summary,
        [
            ("b", Outcome::No, vec![None, None]),
            ("a", Outcome::Yes, vec![Some(0.01), None]),
            ("c", Outcome::No, vec![Some(0.6), None]),
        ]
    );
    assert_eq!(events[1].created_at, t(2));
    assert_eq!(events[1].resolved_at, t(20));

    // The last 2 only.
    let ids: Vec<_> = store
        .last_resolved_events(&miners, 2, chrono::DateTime::<chrono::Utc>::MAX_UTC)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(ids, ["a", "c"]);
    assert!(
        store
            .last_resolved_events(&miners, 0, chrono::DateTime::<chrono::Utc>::MAX_UTC)
            .await
            .unwrap()
            .is_empty()
    );
    // The store's order is the scoring window's order.
    let all = store
        .last_resolved_events(&miners, 10, chrono::DateTime::<chrono::Utc>::MAX_UTC)
        .await
        .unwrap();
    let window: Vec<_> = crate::scoring::scoring_window(&all, crate::scoring::SCORING_WINDOW)
        .unwrap()
        .iter()
        .map(|e| e.id.clone())
        .collect();
    assert_eq!(window, ["b", "a", "c"]);
}

async fn scores_and_weights_are_written_together(engine: Engine) {
    let store = two_miners(engine).await;
    store.insert_event(&new_event("e1", t(1))).await.unwrap();
    store.insert_event(&new_event("e2", t(2))).await.unwrap();
    store
        .record_run(&ok_run("e1", "alice", "alice-v1", 0.9))
        .await
        .unwrap();
    store
        .record_run(&ok_run("e1", "bob", "bob-v1", 0.6))
        .await
        .unwrap();
    store
        .record_run(&ok_run("e2", "alice", "alice-v1", 0.2))
        .await
        .unwrap();
    store.resolve_event("e1", 1, t(80)).await.unwrap();
    store.resolve_event("e2", 0, t(81)).await.unwrap();

    let miners = store.registered_miners().await.unwrap();
    let events = store
        .last_resolved_events(&miners, 101, chrono::DateTime::<chrono::Utc>::MAX_UTC)
        .await
        .unwrap();
    let standings = leaderboard(&miners, &events).unwrap();
    store
        .record_scores_and_weights(&miners, &scored(&events), &standings, t(82))
        .await
        .unwrap();

    // alice: 0.1^2 = 0.01 and 0.2^2 = 0.04; bob: 0.4^2 = 0.16 and imputed 0.25.
    let scores = store.event_scores("e1").await.unwrap();
    assert_eq!(scores.len(), 2);
    assert!((scores[0].brier - 0.01).abs() < 1e-12 && !scores[0].imputed);
    assert!((scores[1].brier - 0.16).abs() < 1e-12 && !scores[1].imputed);
    let scores = store.event_scores("e2").await.unwrap();
    assert!((scores[1].brier - 0.25).abs() < 1e-12 && scores[1].imputed);

    let weights = store.latest_weights().await.unwrap();
    let summary: Vec<_> = weights
        .iter()
        .map(|w| {
            (
                w.rank,
                w.hotkey.as_str(),
                w.weight,
                w.events_counted,
                w.imputed_count,
            )
        })
        .collect();
    assert_eq!(summary, [(1, "alice", 1.0, 2, 0), (2, "bob", 0.0, 2, 1)]);
    assert!((weights[0].mean_brier.unwrap() - 0.025).abs() < 1e-12);
    assert_eq!(weights[0].computed_at, t(82));

    // Recomputing at the same instant replaces, not duplicates.
    store
        .record_scores_and_weights(&miners, &scored(&events), &standings, t(82))
        .await
        .unwrap();
    assert_eq!(count(&store, "validator_weights_history").await, 2);
    assert_eq!(count(&store, "validator_scores").await, 4);

    // A batch that fails half-way (a standings row for an unknown miner, after the scores of a
    // new event) writes nothing at all.
    store.insert_event(&new_event("e3", t(3))).await.unwrap();
    store.resolve_event("e3", 1, t(90)).await.unwrap();
    let events = store
        .last_resolved_events(&miners, 101, chrono::DateTime::<chrono::Utc>::MAX_UTC)
        .await
        .unwrap();
    let mut standings = leaderboard(&miners, &events).unwrap();
    standings[1].miner.hotkey = "ghost".to_owned();
    let error = store
        .record_scores_and_weights(&miners, &scored(&events), &standings, t(91))
        .await
        .unwrap_err();
    assert!(
        matches!(error, StoreError::UnknownMiner { .. }),
        "{error:?}"
    );
    assert!(store.event_scores("e3").await.unwrap().is_empty());
    assert_eq!(store.latest_weights().await.unwrap()[0].computed_at, t(82));

    // Malformed input is refused before the transaction.
    let mut short = scored(&events);
    short[0].scores.pop();
    assert!(matches!(
        store
            .record_scores_and_weights(&miners, &short, &[], t(92))
            .await,
        Err(StoreError::InvalidScores(_))
    ));
}

#[tokio::test]
async fn a_big_window_of_a_file_store_loads_every_prediction_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("sooth.sqlite")).await.unwrap();
    let miners = [
        miner(0, "alice", t(-24)),
        miner(1, "bob", t(-24)),
        miner(2, "carol", t(-24)),
    ];
    for m in &miners {
        store.register_miner(m).await.unwrap();
        store
            .add_agent_version(&version(&m.hotkey, "v1", t(-20)))
            .await
            .unwrap();
    }
    // 1,500 events resolved in the reverse order of their creation; alice predicts on every
    // event, bob on every other one, carol never.
    let total: i64 = 1_500;
    for n in 0..total {
        let id = format!("e{n:04}");
        store.insert_event(&new_event(&id, t(n))).await.unwrap();
        let prediction = f64::from(u32::try_from(n % 97).unwrap()) / 100.0;
        store
            .record_run(&ok_run(&id, "alice", "v1", prediction))
            .await
            .unwrap();
        if n % 2 == 0 {
            store
                .record_run(&ok_run(&id, "bob", "v1", 0.5))
                .await
                .unwrap();
        }
        store
            .resolve_event(&id, u8::from(n % 3 == 0), t(2 * total - n))
            .await
            .unwrap();
    }
    let loaded = store
        .last_resolved_events(&miners, 1_200, chrono::DateTime::<chrono::Utc>::MAX_UTC)
        .await
        .unwrap();
    assert_eq!(loaded.len(), 1_200);
    // Oldest resolution first: the latest-created events resolved first, so the window (the
    // last 1,200 resolved) is e1199 down to e0000.
    for (position, event) in loaded.iter().enumerate() {
        let n = 1_199 - i64::try_from(position).unwrap();
        assert_eq!(event.id, format!("e{n:04}"));
        let expected = scored_prediction_of(f64::from(u32::try_from(n % 97).unwrap()) / 100.0);
        assert_eq!(event.predictions[0], Some(expected), "{}", event.id);
        assert_eq!(event.predictions[1], (n % 2 == 0).then_some(0.5));
        assert_eq!(event.predictions[2], None);
    }
}

fn scored_prediction_of(raw: f64) -> f64 {
    crate::scoring::scored_prediction(Some(raw)).value
}
