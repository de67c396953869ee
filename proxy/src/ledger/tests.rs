//! The ledger's tests.

use super::*;
use std::path::Path;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};

const DAY: &str = "2026-03-01";

fn req(run: &str, miner: &str, amount: f64, run_cap: f64, day_cap: f64) -> Reservation {
    Reservation {
        run_id: run.to_owned(),
        miner: miner.to_owned(),
        service: "chutes".to_owned(),
        day: DAY.to_owned(),
        amount_usd: amount,
        run_cap_usd: run_cap,
        day_cap_usd: day_cap,
    }
}

async fn file_ledger() -> (tempfile::TempDir, Ledger) {
    let dir = tempfile::tempdir().expect("tempdir");
    let ledger = Ledger::open(&dir.path().join("ledger.sqlite"))
        .await
        .expect("open");
    (dir, ledger)
}

fn assert_usd(actual: f64, expected: f64) {
    assert!(
        (actual - expected).abs() < 1e-9,
        "expected {expected} USD, got {actual} USD"
    );
}

/// `err` is a refusal by the cap of `scope`, with these amounts.
fn assert_refused(err: LedgerError, scope: BudgetScope, cap: f64, committed: f64, requested: f64) {
    match err {
        LedgerError::BudgetExceeded {
            scope: refused_by,
            cap_usd,
            committed_usd,
            requested_usd,
        } => {
            assert_eq!(refused_by, scope);
            assert_usd(cap_usd, cap);
            assert_usd(committed_usd, committed);
            assert_usd(requested_usd, requested);
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn reserve_within_cap() {
    let ledger = Ledger::in_memory().await.unwrap();
    let a = ledger
        .reserve(req("r1", "m1", 0.40, 1.0, 10.0))
        .await
        .unwrap();
    let b = ledger
        .reserve(req("r1", "m1", 0.60, 1.0, 10.0))
        .await
        .unwrap();
    assert_ne!(a, b);
    assert_usd(ledger.reserved_usd("r1", "chutes").await.unwrap(), 1.0);
    assert_usd(
        ledger
            .reserved_by_miner_day("m1", DAY, "chutes")
            .await
            .unwrap(),
        1.0,
    );
    assert_usd(ledger.spent_usd("r1", "chutes").await.unwrap(), 0.0);
    // Other services have their own caps.
    let mut other = req("r1", "m1", 1.0, 1.0, 10.0);
    other.service = "desearch".to_owned();
    ledger.reserve(other).await.unwrap();
    assert_usd(ledger.reserved_usd("r1", "desearch").await.unwrap(), 1.0);
    ledger.check_consistency().await.unwrap();
}

#[tokio::test]
async fn refuses_beyond_run_cap() {
    let ledger = Ledger::in_memory().await.unwrap();
    ledger
        .reserve(req("r1", "m1", 0.70, 1.0, 10.0))
        .await
        .unwrap();
    let err = ledger
        .reserve(req("r1", "m1", 0.31, 1.0, 10.0))
        .await
        .unwrap_err();
    assert_refused(err, BudgetScope::Run, 1.0, 0.70, 0.31);
    // Nothing was reserved by the refusal; exactly the rest still fits.
    assert_usd(ledger.reserved_usd("r1", "chutes").await.unwrap(), 0.70);
    ledger
        .reserve(req("r1", "m1", 0.30, 1.0, 10.0))
        .await
        .unwrap();
    // Another run of the same miner is not affected by r1's cap.
    ledger
        .reserve(req("r2", "m1", 1.0, 1.0, 10.0))
        .await
        .unwrap();
    ledger.check_consistency().await.unwrap();
}

#[tokio::test]
async fn refuses_beyond_miner_day_cap() {
    let ledger = Ledger::in_memory().await.unwrap();
    ledger
        .reserve(req("r1", "m1", 0.80, 1.0, 1.5))
        .await
        .unwrap();
    ledger
        .reserve(req("r2", "m1", 0.60, 1.0, 1.5))
        .await
        .unwrap();
    let err = ledger
        .reserve(req("r3", "m1", 0.20, 1.0, 1.5))
        .await
        .unwrap_err();
    assert_refused(err, BudgetScope::MinerDay, 1.5, 1.4, 0.2);
    // A higher day cap (linked key) lets it through.
    ledger
        .reserve(req("r3", "m1", 0.20, 1.0, 5.0))
        .await
        .unwrap();
    // Another miner, another day: separate budgets.
    ledger
        .reserve(req("r4", "m2", 1.0, 1.0, 1.5))
        .await
        .unwrap();
    let mut tomorrow = req("r5", "m1", 1.0, 1.0, 1.5);
    tomorrow.day = "2026-03-02".to_owned();
    ledger.reserve(tomorrow).await.unwrap();
    assert_usd(
        ledger
            .reserved_by_miner_day("m1", DAY, "chutes")
            .await
            .unwrap(),
        1.6,
    );
    ledger.check_consistency().await.unwrap();
}

#[tokio::test]
async fn settle_lower_releases_the_rest() {
    let ledger = Ledger::in_memory().await.unwrap();
    let id = ledger
        .reserve(req("r1", "m1", 1.0, 1.0, 10.0))
        .await
        .unwrap();
    let charge = ledger.settle(id, 0.25, false).await.unwrap();
    assert_eq!(charge.id, id);
    assert_usd(charge.reserved_usd, 1.0);
    assert_usd(charge.charged_usd, 0.25);
    assert_usd(charge.overrun_usd, 0.0);
    assert!(!charge.estimated);
    assert_usd(ledger.spent_usd("r1", "chutes").await.unwrap(), 0.25);
    assert_usd(ledger.reserved_usd("r1", "chutes").await.unwrap(), 0.0);
    assert_usd(
        ledger
            .spent_by_miner_day("m1", DAY, "chutes")
            .await
            .unwrap(),
        0.25,
    );
    // The released 0.75 is available again, and not a micro-dollar more.
    let more = ledger
        .reserve(req("r1", "m1", 0.75, 1.0, 10.0))
        .await
        .unwrap();
    assert!(
        ledger
            .reserve(req("r1", "m1", 0.000001, 1.0, 10.0))
            .await
            .is_err()
    );
    ledger.settle(more, 0.5, true).await.unwrap();
    let charges = ledger.charges_for_run("r1").await.unwrap();
    assert_eq!(charges.len(), 2);
    assert_eq!(charges[0], charge);
    assert_usd(charges[1].charged_usd, 0.5);
    assert!(charges[1].estimated);
    ledger.check_consistency().await.unwrap();
}

#[tokio::test]
async fn settle_higher_charges_only_the_reservation() {
    let ledger = Ledger::in_memory().await.unwrap();
    let id = ledger
        .reserve(req("r1", "m1", 0.30, 1.0, 10.0))
        .await
        .unwrap();
    let charge = ledger.settle(id, 0.45, false).await.unwrap();
    assert_usd(charge.charged_usd, 0.30);
    assert_usd(charge.overrun_usd, 0.15);
    assert_usd(ledger.spent_usd("r1", "chutes").await.unwrap(), 0.30);
    let stored = ledger.charges_for_run("r1").await.unwrap();
    assert_eq!(stored, vec![charge]);
    // An absurd cost is still capped at the reservation.
    let id = ledger
        .reserve(req("r1", "m1", 0.70, 1.0, 10.0))
        .await
        .unwrap();
    let charge = ledger.settle(id, 1e300, true).await.unwrap();
    assert_usd(charge.charged_usd, 0.70);
    assert_usd(ledger.spent_usd("r1", "chutes").await.unwrap(), 1.0);
    ledger.check_consistency().await.unwrap();
}

#[tokio::test]
async fn release_charges_nothing() {
    let ledger = Ledger::in_memory().await.unwrap();
    let id = ledger
        .reserve(req("r1", "m1", 1.0, 1.0, 10.0))
        .await
        .unwrap();
    ledger.release(id).await.unwrap();
    assert_usd(ledger.spent_usd("r1", "chutes").await.unwrap(), 0.0);
    assert_usd(ledger.reserved_usd("r1", "chutes").await.unwrap(), 0.0);
    assert!(ledger.charges_for_run("r1").await.unwrap().is_empty());
    ledger
        .reserve(req("r1", "m1", 1.0, 1.0, 10.0))
        .await
        .unwrap();
    ledger.check_consistency().await.unwrap();
}

#[tokio::test]
async fn closing_twice_or_unknown_is_an_error() {
    let ledger = Ledger::in_memory().await.unwrap();
    let id = ledger
        .reserve(req("r1", "m1", 0.5, 1.0, 10.0))
        .await
        .unwrap();
    ledger.settle(id, 0.1, false).await.unwrap();
    for err in [
        ledger.settle(id, 0.1, false).await.unwrap_err(),
        ledger.release(id).await.unwrap_err(),
    ] {
        assert!(
            matches!(err, LedgerError::AlreadyClosed { id: i, state: ReservationState::Settled } if i == id),
            "{err:?}"
        );
    }
    let id = ledger
        .reserve(req("r1", "m1", 0.5, 1.0, 10.0))
        .await
        .unwrap();
    ledger.release(id).await.unwrap();
    assert!(matches!(
        ledger.settle(id, 0.1, false).await.unwrap_err(),
        LedgerError::AlreadyClosed {
            state: ReservationState::Released,
            ..
        }
    ));
    assert!(matches!(
        ledger.release(id).await.unwrap_err(),
        LedgerError::AlreadyClosed {
            state: ReservationState::Released,
            ..
        }
    ));
    let unknown = ReservationId::new(9_999);
    assert!(matches!(
        ledger.settle(unknown, 0.1, false).await.unwrap_err(),
        LedgerError::UnknownReservation(i) if i == unknown
    ));
    assert!(matches!(
        ledger.release(unknown).await.unwrap_err(),
        LedgerError::UnknownReservation(_)
    ));
    // The failed closes changed nothing.
    assert_usd(ledger.spent_usd("r1", "chutes").await.unwrap(), 0.1);
    ledger.check_consistency().await.unwrap();
}

#[tokio::test]
async fn rejects_bad_input() {
    let ledger = Ledger::in_memory().await.unwrap();
    for amount in [-0.01, f64::NAN, f64::INFINITY, 2e9] {
        assert!(matches!(
            ledger
                .reserve(req("r1", "m1", amount, 1.0, 1.0))
                .await
                .unwrap_err(),
            LedgerError::InvalidAmount {
                field: "amount_usd",
                ..
            }
        ));
    }
    assert!(matches!(
        ledger
            .reserve(req("r1", "m1", 0.1, -1.0, 1.0))
            .await
            .unwrap_err(),
        LedgerError::InvalidAmount {
            field: "run_cap_usd",
            ..
        }
    ));
    assert!(matches!(
        ledger
            .reserve(req("r1", "m1", 0.1, 1.0, f64::NAN))
            .await
            .unwrap_err(),
        LedgerError::InvalidAmount {
            field: "day_cap_usd",
            ..
        }
    ));
    for day in [
        "2026-3-01",
        "2026/03/01",
        "2026-13-01",
        "2026-03-00",
        "20260301",
        "",
    ] {
        let mut r = req("r1", "m1", 0.1, 1.0, 1.0);
        r.day = day.to_owned();
        assert!(matches!(
            ledger.reserve(r).await.unwrap_err(),
            LedgerError::InvalidField { field: "day", .. }
        ));
    }
    assert!(matches!(
        ledger
            .reserve(req("", "m1", 0.1, 1.0, 1.0))
            .await
            .unwrap_err(),
        LedgerError::InvalidField {
            field: "run_id",
            ..
        }
    ));
    let id = ledger
        .reserve(req("r1", "m1", 0.1, 1.0, 1.0))
        .await
        .unwrap();
    for actual in [-1.0, f64::NAN] {
        assert!(matches!(
            ledger.settle(id, actual, false).await.unwrap_err(),
            LedgerError::InvalidAmount {
                field: "actual_usd",
                ..
            }
        ));
    }
    // Still open after the refused settlements.
    ledger.settle(id, 0.05, false).await.unwrap();
    ledger.check_consistency().await.unwrap();
}

#[tokio::test]
async fn money_is_exact_micro_dollars() {
    // Float noise does not round a whole micro-dollar amount up ...
    assert_eq!(usd_to_micros_up("a", 0.000_123).unwrap(), 123);
    assert_eq!(usd_to_micros_up("a", 0.01).unwrap(), 10_000);
    assert_eq!(usd_to_micros_up("a", 0.1 + 0.2).unwrap(), 300_000);
    assert_eq!(usd_to_micros_down("a", 1.001).unwrap(), 1_001_000);
    // ... but fractions of a micro-dollar round in the safe direction.
    assert_eq!(usd_to_micros_up("a", 0.000_000_1).unwrap(), 1);
    assert_eq!(usd_to_micros_up("a", 0.000_001_5).unwrap(), 2);
    assert_eq!(usd_to_micros_down("a", 0.000_001_5).unwrap(), 1);
    let ledger = Ledger::in_memory().await.unwrap();
    // Ten times 0.1 fits exactly into 1.0 (0.1 + ... + 0.1 != 1.0 in f64).
    for _ in 0..10 {
        ledger
            .reserve(req("r1", "m1", 0.1, 1.0, 1.0))
            .await
            .unwrap();
    }
    assert!(
        ledger
            .reserve(req("r1", "m1", 0.000_000_1, 1.0, 1.0))
            .await
            .is_err()
    );
    // Settlements round to the nearest micro-dollar.
    let id = ledger
        .reserve(req("r2", "m2", 0.1, 1.0, 1.0))
        .await
        .unwrap();
    let charge = ledger.settle(id, 0.000_001_4, false).await.unwrap();
    assert_usd(charge.charged_usd, 0.000_001);
    ledger.check_consistency().await.unwrap();
}

#[tokio::test]
async fn persists_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.sqlite");
    let (settled, open) = {
        let ledger = Ledger::open(&path).await.unwrap();
        let settled = ledger
            .reserve(req("r1", "m1", 0.5, 1.0, 10.0))
            .await
            .unwrap();
        ledger.settle(settled, 0.2, true).await.unwrap();
        let open = ledger
            .reserve(req("r1", "m1", 0.3, 1.0, 10.0))
            .await
            .unwrap();
        ledger.close().await;
        (settled, open)
    };
    let ledger = Ledger::open(&path).await.unwrap();
    assert_usd(ledger.spent_usd("r1", "chutes").await.unwrap(), 0.2);
    assert_usd(ledger.reserved_usd("r1", "chutes").await.unwrap(), 0.3);
    assert_usd(
        ledger
            .spent_by_miner_day("m1", DAY, "chutes")
            .await
            .unwrap(),
        0.2,
    );
    let charges = ledger.charges_for_run("r1").await.unwrap();
    assert_eq!(charges.len(), 1);
    assert_eq!(charges[0].id, settled);
    assert!(charges[0].estimated);
    // The caps still see what happened before the restart.
    assert!(matches!(
        ledger
            .reserve(req("r1", "m1", 0.51, 1.0, 10.0))
            .await
            .unwrap_err(),
        LedgerError::BudgetExceeded {
            scope: BudgetScope::Run,
            ..
        }
    ));
    assert!(matches!(
        ledger.settle(settled, 0.1, false).await.unwrap_err(),
        LedgerError::AlreadyClosed { .. }
    ));
    ledger.settle(open, 0.3, false).await.unwrap();
    let next = ledger
        .reserve(req("r1", "m1", 0.5, 1.0, 10.0))
        .await
        .unwrap();
    assert!(next > open, "ids are not reused");
    ledger.check_consistency().await.unwrap();
}

/// Fires `n` concurrent reservations of `amount` and returns the ids of
/// those that succeeded; any error other than a budget refusal fails.
async fn reserve_concurrently(
    ledgers: &[Ledger],
    n: usize,
    make: impl Fn(usize) -> Reservation,
) -> Vec<ReservationId> {
    let start = Arc::new(tokio::sync::Barrier::new(n));
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let ledger = ledgers[i % ledgers.len()].clone();
        let start = start.clone();
        let r = make(i);
        tasks.push(tokio::spawn(async move {
            start.wait().await;
            ledger.reserve(r).await
        }));
    }
    let mut ok = Vec::new();
    for task in tasks {
        match task.await.unwrap() {
            Ok(id) => ok.push(id),
            Err(LedgerError::BudgetExceeded { .. }) => {}
            Err(other) => panic!("unexpected error: {other}"),
        }
    }
    ok
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_reservations_never_exceed_run_cap() {
    let (_dir, ledger) = file_ledger().await;
    let ok = reserve_concurrently(std::slice::from_ref(&ledger), 1_000, |i| {
        req("r1", &format!("m{}", i % 7), 0.01, 1.00, 100.0)
    })
    .await;
    assert_eq!(ok.len(), 100);
    let reserved = ledger.reserved_usd("r1", "chutes").await.unwrap();
    assert!(reserved <= 1.00);
    assert_usd(reserved, 1.00);
    // Settling them all at the full amount charges exactly the cap.
    for id in &ok {
        ledger.settle(*id, 0.01, false).await.unwrap();
    }
    assert_usd(ledger.spent_usd("r1", "chutes").await.unwrap(), 1.00);
    assert_eq!(ledger.charges_for_run("r1").await.unwrap().len(), 100);
    ledger.check_consistency().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_reservations_never_exceed_miner_day_cap() {
    let (_dir, ledger) = file_ledger().await;
    let ok = reserve_concurrently(std::slice::from_ref(&ledger), 1_000, |i| {
        req(&format!("r{}", i % 50), "m1", 0.01, 1.00, 1.00)
    })
    .await;
    assert_eq!(ok.len(), 100);
    let reserved = ledger
        .reserved_by_miner_day("m1", DAY, "chutes")
        .await
        .unwrap();
    assert!(reserved <= 1.00);
    assert_usd(reserved, 1.00);
    ledger.check_consistency().await.unwrap();
}

/// The books in memory are the truth, so one ledger owns a file: a
/// second one (in this process or another) is refused until the first
/// closes.
#[tokio::test]
async fn a_second_ledger_on_one_file_is_refused() {
    let (dir, first) = file_ledger().await;
    let path = dir.path().join("ledger.sqlite");
    assert!(matches!(
        Ledger::open(&path).await.unwrap_err(),
        LedgerError::InUse(_)
    ));
    first
        .reserve(req("r1", "m1", 0.5, 1.0, 10.0))
        .await
        .unwrap();
    first.close().await;
    let second = Ledger::open(&path).await.unwrap();
    assert_usd(second.reserved_usd("r1", "chutes").await.unwrap(), 0.5);
}

#[tokio::test]
async fn release_stale_drops_only_old_open_reservations() {
    let (dir, ledger) = file_ledger().await;
    let old = ledger
        .reserve(req("r1", "m1", 0.4, 1.0, 10.0))
        .await
        .unwrap();
    let old_settled = ledger
        .reserve(req("r1", "m1", 0.1, 1.0, 10.0))
        .await
        .unwrap();
    ledger.settle(old_settled, 0.1, false).await.unwrap();
    // Age them by two hours, as if left over from before a crash.
    ledger.close().await;
    let path = dir.path().join("ledger.sqlite");
    tamper(
        &path,
        &format!(
            "UPDATE gateway_reservations SET created_at_ms = created_at_ms - 7200000 WHERE id IN ({}, {})",
            old.get(),
            old_settled.get()
        ),
    )
    .await;
    let ledger = Ledger::open(&path).await.unwrap();
    let fresh = ledger
        .reserve(req("r1", "m1", 0.5, 1.0, 10.0))
        .await
        .unwrap();
    assert_eq!(ledger.release_stale(3 * 3600).await.unwrap(), 0);
    assert_eq!(ledger.release_stale(3600).await.unwrap(), 1);
    assert_eq!(ledger.release_stale(3600).await.unwrap(), 0);
    // The stale one charged nothing and its room is free again.
    assert_usd(ledger.spent_usd("r1", "chutes").await.unwrap(), 0.1);
    assert_usd(ledger.reserved_usd("r1", "chutes").await.unwrap(), 0.5);
    assert!(matches!(
        ledger.settle(old, 0.4, false).await.unwrap_err(),
        LedgerError::AlreadyClosed {
            state: ReservationState::Stale,
            ..
        }
    ));
    ledger.settle(fresh, 0.5, false).await.unwrap();
    ledger
        .reserve(req("r1", "m1", 0.4, 1.0, 10.0))
        .await
        .unwrap();
    // Age 0: everything open now is stale.
    assert_eq!(ledger.release_stale(0).await.unwrap(), 1);
    ledger.check_consistency().await.unwrap();
}

#[tokio::test]
async fn check_consistency_detects_tampered_totals() {
    let (dir, ledger) = file_ledger().await;
    let path = dir.path().join("ledger.sqlite");
    let id = ledger
        .reserve(req("r1", "m1", 0.5, 1.0, 10.0))
        .await
        .unwrap();
    ledger.check_consistency().await.unwrap();
    ledger.close().await;
    tamper(&path, "UPDATE gateway_run_totals SET reserved_micros = 1").await;
    let ledger = Ledger::open(&path).await.unwrap();
    assert!(matches!(
        ledger.check_consistency().await.unwrap_err(),
        LedgerError::Inconsistent(_)
    ));
    ledger.close().await;
    tamper(
        &path,
        "UPDATE gateway_run_totals SET reserved_micros = 500000",
    )
    .await;
    let ledger = Ledger::open(&path).await.unwrap();
    ledger.check_consistency().await.unwrap();
    ledger.close().await;
    // A missing total makes writing the closing fail and roll back
    // entirely; the ledger then refuses to reserve.
    tamper(&path, "DELETE FROM gateway_miner_day_totals").await;
    let ledger = Ledger::open(&path).await.unwrap();
    ledger.settle(id, 0.1, false).await.unwrap();
    assert!(matches!(
        ledger.flush().await.unwrap_err(),
        LedgerError::Inconsistent(_)
    ));
    assert!(matches!(
        ledger
            .reserve(req("r2", "m1", 0.1, 1.0, 10.0))
            .await
            .unwrap_err(),
        LedgerError::Inconsistent(_)
    ));
    let super::Store::File(file) = &ledger.inner.store else {
        unreachable!("a file's ledger")
    };
    let state: String = sqlx::query_scalar("SELECT state FROM gateway_reservations")
        .fetch_one(&file.reader)
        .await
        .unwrap();
    assert_eq!(state, "open");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_durable_ledger_has_written_each_reservation_when_it_returns() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.sqlite");
    let options = LedgerOptions {
        durable: true,
        ..LedgerOptions::default()
    };
    let ledger = Ledger::open_with(&path, &options).await.unwrap();
    let outsider = SqlitePoolOptions::new()
        .connect_with(SqliteConnectOptions::new().filename(&path))
        .await
        .unwrap();
    for i in 0..50 {
        let id = ledger
            .reserve(req(&format!("r{i}"), "m1", 0.01, 1.0, 10.0))
            .await
            .unwrap();
        let rows: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM gateway_reservations WHERE id = $1")
                .bind(id.get())
                .fetch_one(&outsider)
                .await
                .unwrap();
        assert_eq!(rows, 1, "reservation {id} is not in the file yet");
    }
}

/// Runs `sql` on the ledger file with a connection of its own, as a
/// person editing the file (or a crash leaving it so) would.
async fn tamper(path: &Path, sql: &str) {
    let pool = SqlitePoolOptions::new()
        .connect_with(SqliteConnectOptions::new().filename(path))
        .await
        .unwrap();
    sqlx::query(sql).execute(&pool).await.unwrap();
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_checkpoints_copy_the_wal_into_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.sqlite");
    let options = LedgerOptions {
        checkpoint_interval: Some(Duration::from_millis(10)),
        ..LedgerOptions::default()
    };
    let ledger = Ledger::open_with(&path, &options).await.unwrap();
    let size = || std::fs::metadata(&path).unwrap().len();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let before = size();
    for i in 0..300 {
        ledger
            .reserve(req(
                &format!("run-{i:04}-{}", "x".repeat(40)),
                "m1",
                0.01,
                1.0,
                10.0,
            ))
            .await
            .unwrap();
    }
    // The writer never checkpoints itself (wal_autocheckpoint = 0): only
    // the background task can have grown the database file.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        size() > before,
        "database file did not grow: {before} bytes"
    );
    ledger.check_consistency().await.unwrap();
    ledger.close().await;
}

#[test]
fn utc_days() {
    let at = |secs: u64| utc_day(UNIX_EPOCH + Duration::from_secs(secs));
    assert_eq!(at(0), "1970-01-01");
    assert_eq!(at(951_782_400), "2000-02-29");
    assert_eq!(at(1_709_164_800), "2024-02-29");
    assert_eq!(at(1_709_164_800 - 1), "2024-02-28");
    assert_eq!(at(1_709_251_200), "2024-03-01");
    assert!(check_day(&utc_today()).is_ok());
    assert_eq!(utc_day(UNIX_EPOCH - Duration::from_secs(10)), "1970-01-01");
}
