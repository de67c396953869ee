//! The verification queue in the store, through its public API: uploads queued with the rate
//! checked in the same transaction, claims under leases, one verdict per item whatever dies
//! when, bounded retries.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::engines::{Engine, TestStore, empty_store};

use chrono::TimeDelta;
use common::at;
use sooth_validator::Miner;
use sooth_validator::RunStatus;
use sooth_validator::store::{
    AttemptFailed, IntegrityCheck, MAX_VERDICTS_SHOWN, NewUpload, NewVerdict, ProbeRun, QueueState,
    StoreError, UploadedBy, VerdictScope, Verification, VersionStatus,
};

const HASH_A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const HASH_B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

async fn store_with(engine: Engine, miners: &[&str]) -> TestStore {
    let store = empty_store(engine).await;
    for (uid, hotkey) in miners.iter().enumerate() {
        store
            .register_miner(&Miner {
                uid: u16::try_from(uid).unwrap(),
                hotkey: (*hotkey).to_owned(),
                registered_at: at("2026-03-01T00:00:00Z"),
            })
            .await
            .unwrap();
    }
    store
}

fn upload(hotkey: &str, hash: &str, at_text: &str) -> NewUpload {
    NewUpload {
        hotkey: hotkey.to_owned(),
        hash: hash.to_owned(),
        size_bytes: 1000,
        uploaded_by: UploadedBy::Miner,
        at: at(at_text),
        min_interval: TimeDelta::days(3),
    }
}

async fn a_miner_uploads_once_per_interval_and_the_refusal_says_when_next(engine: Engine) {
    let store = store_with(engine, &["alice"]).await;
    let first = store
        .enqueue_upload(&upload("alice", HASH_A, "2026-03-02T10:00:00Z"))
        .await
        .unwrap();
    let refused = store
        .enqueue_upload(&upload("alice", HASH_B, "2026-03-04T09:59:59Z"))
        .await
        .unwrap_err();
    match refused {
        StoreError::UploadTooSoon {
            next_allowed_at, ..
        } => assert_eq!(next_allowed_at, at("2026-03-05T10:00:00Z")),
        other => panic!("expected UploadTooSoon, got {other:?}"),
    }
    // Nothing of the refused upload was written.
    assert_eq!(store.uploads_of("alice").await.unwrap().len(), 1);
    assert_eq!(store.verification_backlog().await.unwrap(), 1);
    // The operator's additions do not count against the miner's rate.
    let mut operator = upload("alice", HASH_B, "2026-03-03T00:00:00Z");
    operator.uploaded_by = UploadedBy::Operator;
    let second = store.enqueue_upload(&operator).await.unwrap();
    assert!(second > first);
    // And the rate allows the next miner upload exactly at the boundary.
    store
        .enqueue_upload(&upload(
            "alice",
            "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc",
            "2026-03-05T10:00:00Z",
        ))
        .await
        .unwrap();
}

async fn unknown_and_deregistered_miners_cannot_upload_and_the_same_bytes_twice_are_refused(
    engine: Engine,
) {
    let store = store_with(engine, &["alice"]).await;
    assert!(matches!(
        store
            .enqueue_upload(&upload("mallory", HASH_A, "2026-03-02T10:00:00Z"))
            .await,
        Err(StoreError::UnknownMiner { .. })
    ));
    let mut operator = upload("alice", HASH_A, "2026-03-02T10:00:00Z");
    operator.uploaded_by = UploadedBy::Operator;
    store.enqueue_upload(&operator).await.unwrap();
    assert!(matches!(
        store.enqueue_upload(&operator).await,
        Err(StoreError::DuplicateVersion { .. })
    ));
    store
        .deregister_miner("alice", at("2026-03-03T00:00:00Z"))
        .await
        .unwrap();
    let mut later = upload("alice", HASH_B, "2026-03-09T00:00:00Z");
    later.uploaded_by = UploadedBy::Operator;
    assert!(matches!(
        store.enqueue_upload(&later).await,
        Err(StoreError::NotRegistered { .. })
    ));
}

async fn an_item_is_claimed_once_and_a_verdict_is_recorded_once(engine: Engine) {
    let store = store_with(engine, &["alice"]).await;
    let version = store
        .enqueue_upload(&upload("alice", HASH_A, "2026-03-02T10:00:00Z"))
        .await
        .unwrap();
    let now = at("2026-03-02T10:00:01Z");
    let lease = TimeDelta::seconds(60);
    let claim = store
        .claim_verification(now, lease, 3)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((claim.version, claim.attempt), (version, 1));
    // Held: nobody else gets it while the lease lasts.
    assert!(
        store
            .claim_verification(now, lease, 3)
            .await
            .unwrap()
            .is_none()
    );
    let record = store.upload(version).await.unwrap().unwrap();
    assert_eq!(record.queue, Some(QueueState::Verifying));

    let verdict = NewVerdict {
        check: IntegrityCheck::Duplicate,
        scope: VerdictScope::Probe,
        passed: true,
        matched_version: None,
        statistic: None,
        detail: "no other miner uploaded these bytes before".to_owned(),
    };
    let probe = vec![
        ProbeRun {
            event_id: "p1".to_owned(),
            status: RunStatus::Ok,
            prediction: Some(1.5),
            duration_ms: 3,
        },
        ProbeRun {
            event_id: "p2".to_owned(),
            status: RunStatus::Timeout,
            prediction: None,
            duration_ms: 240_000,
        },
    ];
    let finished_at = at("2026-03-02T10:00:05Z");
    assert!(
        store
            .finish_verification(
                &claim,
                &Verification::Verified,
                std::slice::from_ref(&verdict),
                &probe,
                finished_at
            )
            .await
            .unwrap()
    );
    // The same claim cannot record a second verdict.
    assert!(
        !store
            .finish_verification(
                &claim,
                &Verification::Verified,
                &[verdict],
                &probe,
                finished_at
            )
            .await
            .unwrap()
    );
    let record = store.upload(version).await.unwrap().unwrap();
    assert_eq!(record.status, VersionStatus::Verified);
    assert_eq!(record.verified_at, Some(finished_at));
    assert_eq!(record.queue, Some(QueueState::Done));
    assert_eq!(record.verdicts.len(), 1);
    let predictions = store.probe_predictions(version).await.unwrap();
    // Probe predictions are stored as scored: clipped, or absent for a failed run.
    assert_eq!(predictions.get("p1"), Some(&Some(0.99)));
    assert_eq!(predictions.get("p2"), Some(&None));
    assert_eq!(store.verification_backlog().await.unwrap(), 0);
}

async fn a_dead_workers_item_is_claimed_again_after_its_lease_and_the_old_claim_is_fenced_off(
    engine: Engine,
) {
    let store = store_with(engine, &["alice"]).await;
    let version = store
        .enqueue_upload(&upload("alice", HASH_A, "2026-03-02T10:00:00Z"))
        .await
        .unwrap();
    let lease = TimeDelta::seconds(60);
    let first = store
        .claim_verification(at("2026-03-02T10:00:01Z"), lease, 3)
        .await
        .unwrap()
        .unwrap();
    // The first worker stops renewing (it died); after the lease another claims the item.
    let second = store
        .claim_verification(at("2026-03-02T10:01:02Z"), lease, 3)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((second.version, second.attempt), (version, 2));
    // The first worker wakes up: its renewal, failure and verdict are all refused.
    assert!(
        !store
            .renew_verification_lease(&first, at("2026-03-02T10:05:00Z"))
            .await
            .unwrap()
    );
    assert_eq!(
        store
            .fail_verification_attempt(&first, "late", at("2026-03-02T10:01:03Z"), 3)
            .await
            .unwrap(),
        AttemptFailed::LeaseLost
    );
    let rejected = Verification::Rejected {
        reason: "late verdict".to_owned(),
        matched_version: None,
    };
    assert!(
        !store
            .finish_verification(&first, &rejected, &[], &[], at("2026-03-02T10:01:04Z"))
            .await
            .unwrap()
    );
    assert!(
        store
            .finish_verification(
                &second,
                &Verification::Verified,
                &[],
                &[],
                at("2026-03-02T10:01:05Z")
            )
            .await
            .unwrap()
    );
    let record = store.upload(version).await.unwrap().unwrap();
    assert_eq!(record.status, VersionStatus::Verified);
    assert_eq!(record.attempts, 2);
}

async fn failed_attempts_are_retried_then_the_version_is_rejected_with_the_last_error(
    engine: Engine,
) {
    let store = store_with(engine, &["alice"]).await;
    let version = store
        .enqueue_upload(&upload("alice", HASH_A, "2026-03-02T10:00:00Z"))
        .await
        .unwrap();
    let lease = TimeDelta::seconds(60);
    let mut now = at("2026-03-02T10:00:01Z");
    for attempt in 1..=3 {
        let claim = store
            .claim_verification(now, lease, 3)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(claim.attempt, attempt);
        let outcome = store
            .fail_verification_attempt(&claim, &format!("disk error {attempt}"), now, 3)
            .await
            .unwrap();
        let expected = if attempt < 3 {
            AttemptFailed::Retrying
        } else {
            AttemptFailed::GaveUp
        };
        assert_eq!(outcome, expected);
        now += TimeDelta::seconds(1);
    }
    assert!(
        store
            .claim_verification(now, lease, 3)
            .await
            .unwrap()
            .is_none()
    );
    let record = store.upload(version).await.unwrap().unwrap();
    assert_eq!(record.status, VersionStatus::Refused);
    assert_eq!(record.queue, Some(QueueState::Failed));
    let reason = record.reason.unwrap();
    assert!(
        reason.contains("3 times") && reason.contains("disk error 3"),
        "{reason}"
    );
}

async fn an_item_whose_worker_died_on_every_attempt_is_rejected_not_claimed_forever(
    engine: Engine,
) {
    let store = store_with(engine, &["alice"]).await;
    let version = store
        .enqueue_upload(&upload("alice", HASH_A, "2026-03-02T10:00:00Z"))
        .await
        .unwrap();
    let lease = TimeDelta::seconds(60);
    let mut now = at("2026-03-02T10:00:01Z");
    for _ in 0..2 {
        // Claimed, then the worker dies (no renewal, no verdict).
        assert!(
            store
                .claim_verification(now, lease, 2)
                .await
                .unwrap()
                .is_some()
        );
        now += TimeDelta::seconds(61);
    }
    assert!(
        store
            .claim_verification(now, lease, 2)
            .await
            .unwrap()
            .is_none()
    );
    let record = store.upload(version).await.unwrap().unwrap();
    assert_eq!(record.status, VersionStatus::Refused);
    assert!(
        record
            .reason
            .as_deref()
            .unwrap_or("")
            .contains("stopped during every attempt"),
        "{:?}",
        record.reason
    );
}

async fn a_version_is_shown_with_its_newest_verdicts_only(engine: Engine) {
    let store = store_with(engine, &["alice"]).await;
    let version = store
        .enqueue_upload(&upload("alice", HASH_A, "2026-03-02T10:00:00Z"))
        .await
        .unwrap();
    // A year of daily live checks.
    let mut day = at("2026-03-03T00:00:00Z");
    for index in 0..MAX_VERDICTS_SHOWN + 10 {
        let verdict = NewVerdict {
            check: IntegrityCheck::Originality,
            scope: VerdictScope::Live,
            passed: true,
            matched_version: None,
            statistic: None,
            detail: format!("day {index}"),
        };
        store
            .record_live_verdicts(&[(version, verdict)], day)
            .await
            .unwrap();
        day += TimeDelta::days(1);
    }
    let record = store.upload(version).await.unwrap().unwrap();
    assert_eq!(record.verdicts.len(), MAX_VERDICTS_SHOWN);
    assert_eq!(record.verdicts[0].detail, "day 10");
    assert_eq!(
        record.verdicts.last().unwrap().detail,
        format!("day {}", MAX_VERDICTS_SHOWN + 9)
    );
}

crate::on_both_engines!(
    a_miner_uploads_once_per_interval_and_the_refusal_says_when_next,
    unknown_and_deregistered_miners_cannot_upload_and_the_same_bytes_twice_are_refused,
    an_item_is_claimed_once_and_a_verdict_is_recorded_once,
    a_dead_workers_item_is_claimed_again_after_its_lease_and_the_old_claim_is_fenced_off,
    failed_attempts_are_retried_then_the_version_is_rejected_with_the_last_error,
    an_item_whose_worker_died_on_every_attempt_is_rejected_not_claimed_forever,
    a_version_is_shown_with_its_newest_verdicts_only,
);
