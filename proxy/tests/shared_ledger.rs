//! Gateways sharing one spend ledger in PostgreSQL (the machine's server,
//! a schema of its own per test): the caps hold across ledgers with zero
//! overspend, a ledger that closes or dies gives its slices back (one that
//! died: what it recorded stays spent), and one whose lease ran out is
//! fenced and goes on as a new instance.

use std::sync::Arc;
use std::time::Duration;

use sooth_proxy::{BudgetScope, Ledger, LedgerError, Reservation, SharedLedgerOptions};
use sooth_test_postgres::TestSchema;

const DAY: &str = "2026-11-27";

fn options(lease: Duration) -> SharedLedgerOptions {
    SharedLedgerOptions {
        lease,
        host: "test".into(),
        ..SharedLedgerOptions::default()
    }
}

fn reservation(run: &str, amount: f64, run_cap: f64, day_cap: f64) -> Reservation {
    Reservation {
        run_id: run.into(),
        miner: "miner".into(),
        service: "chat".into(),
        day: DAY.into(),
        amount_usd: amount,
        run_cap_usd: run_cap,
        day_cap_usd: day_cap,
    }
}

async fn sql_i64(url: &str, sql: &str) -> i64 {
    let pool = sqlx::PgPool::connect(url).await.expect("the test schema");
    let value = sqlx::query_scalar(sql)
        .fetch_one(&pool)
        .await
        .unwrap_or_else(|error| panic!("{sql}: {error}"));
    pool.close().await;
    value
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_concurrent_reservations_over_two_ledgers_never_pass_the_day_cap() {
    let schema = TestSchema::create().await;
    let first = Ledger::open_shared(schema.url(), &options(Duration::from_secs(10)))
        .await
        .unwrap();
    let second = Ledger::open_shared(schema.url(), &options(Duration::from_secs(10)))
        .await
        .unwrap();
    assert_ne!(first.shared_instance(), second.shared_instance());
    let day_cap = 5.0;
    let mut tasks = Vec::new();
    for i in 0..1000 {
        let ledger = if i % 2 == 0 { &first } else { &second }.clone();
        // 0.001 to 0.02 USD: 1,000 of them ask about twice the cap.
        let amount = 0.001 + f64::from(i % 20) * 0.001;
        tasks.push(tokio::spawn(async move {
            let id = ledger
                .reserve(reservation(
                    &format!("run-{}", i % 50),
                    amount,
                    1.0,
                    day_cap,
                ))
                .await;
            match id {
                Ok(id) => {
                    // Every call costs its worst case (so the charges are
                    // what was spent), but some fail unbilled.
                    if i % 7 == 0 {
                        ledger.release(id).await.unwrap();
                        Ok(0.0)
                    } else {
                        Ok(ledger.settle(id, amount, false).await.unwrap().charged_usd)
                    }
                }
                Err(error) => Err(error),
            }
        }));
    }
    let (mut charged, mut granted, mut refused) = (0.0, 0, 0);
    for task in tasks {
        match task.await.unwrap() {
            Ok(usd) => {
                charged += usd;
                granted += 1;
            }
            Err(LedgerError::BudgetExceeded { scope, .. }) => {
                assert_eq!(scope, BudgetScope::MinerDay);
                refused += 1;
            }
            Err(other) => panic!("unexpected refusal: {other}"),
        }
    }
    assert_eq!(granted + refused, 1000);
    assert!(granted > 100, "only {granted} of 1,000 went through");
    for ledger in [&first, &second] {
        ledger.check_consistency().await.unwrap();
    }
    let total = first
        .spent_by_miner_day("miner", DAY, "chat")
        .await
        .unwrap();
    assert!((total - charged).abs() < 1e-6, "{total} vs {charged}");
    assert!(
        charged <= day_cap + 1e-9,
        "{charged} USD spent under a cap of {day_cap}"
    );
    // Slices shrink as the budget does: little is stranded in one ledger
    // while the other refuses.
    assert!(
        charged >= 0.95 * day_cap,
        "only {charged} of {day_cap} USD spent"
    );
    first.close().await;
    second.close().await;
    // Closed, the slices are given up: nothing is held, what was committed stays.
    assert_eq!(
        sql_i64(schema.url(), "SELECT COUNT(*) FROM gateway_budget_slices").await,
        0
    );
    let gone = sql_i64(
        schema.url(),
        "SELECT gone_micros FROM gateway_budget_scopes WHERE kind = 'day'",
    )
    .await;
    assert_eq!(gone, (charged * 1e6).round() as i64);
}

#[tokio::test]
async fn a_ledger_that_dies_holds_its_slices_until_its_lease_ends_and_what_it_reserved_stays_spent()
{
    let schema = TestSchema::create().await;
    let lease = Duration::from_millis(1500);
    let doomed = Ledger::open_shared(schema.url(), &options(lease))
        .await
        .unwrap();
    let survivor = Ledger::open_shared(schema.url(), &options(lease))
        .await
        .unwrap();
    // An open reservation (its call may have been billed) and a settled one.
    doomed
        .reserve(reservation("a", 0.3, 1.0, 1.0))
        .await
        .unwrap();
    let settled = doomed
        .reserve(reservation("b", 0.2, 1.0, 1.0))
        .await
        .unwrap();
    doomed.settle(settled, 0.1, false).await.unwrap();
    doomed.flush().await.unwrap();
    // Dies: dropped without closing, its lease no longer renewed.
    drop(doomed);
    let refused = survivor.reserve(reservation("c", 0.55, 1.0, 1.0)).await;
    assert!(
        matches!(
            refused,
            Err(LedgerError::BudgetExceeded {
                scope: BudgetScope::MinerDay,
                ..
            })
        ),
        "the dead ledger's slice is still held: {refused:?}"
    );
    tokio::time::sleep(lease + Duration::from_millis(300)).await;
    // Once the lease ran out: 1.0 - 0.3 open - 0.1 charged - the margin
    // for calls it might not have recorded (1.0 / 32) = 0.56875 free.
    survivor
        .reserve(reservation("c", 0.568_75, 1.0, 1.0))
        .await
        .unwrap();
    let refused = survivor
        .reserve(reservation("d", 0.000_001, 1.0, 1.0))
        .await;
    assert!(
        matches!(refused, Err(LedgerError::BudgetExceeded { .. })),
        "{refused:?}"
    );
    assert_eq!(
        sql_i64(
            schema.url(),
            "SELECT COUNT(*) FROM gateway_instances WHERE state = 'fenced'"
        )
        .await,
        1
    );
    survivor.check_consistency().await.unwrap();
    survivor.close().await;
}

#[tokio::test]
async fn a_fenced_ledger_refuses_what_it_cannot_record_then_goes_on_as_a_new_instance() {
    let schema = TestSchema::create().await;
    let lease = Duration::from_secs(10);
    let fenced = Ledger::open_shared(schema.url(), &options(lease))
        .await
        .unwrap();
    let other = Ledger::open_shared(schema.url(), &options(lease))
        .await
        .unwrap();
    fenced
        .reserve(reservation("a", 0.1, 1.0, 1.0))
        .await
        .unwrap();
    let first_instance = fenced.shared_instance().unwrap();
    // Its lease runs out (as if it lost the database for longer), and a
    // grant in the scope takes its slice back.
    let pool = sqlx::PgPool::connect(schema.url()).await.unwrap();
    sqlx::query("UPDATE gateway_instances SET lease_until_ms = 0 WHERE id = $1")
        .bind(first_instance)
        .execute(&pool)
        .await
        .unwrap();
    other
        .reserve(reservation("b", 0.75, 1.0, 1.0))
        .await
        .unwrap();
    // The fenced ledger still holds a slice in memory. A call within the
    // slice's margin (1.0 / 32, counted as spent when the slice was taken
    // back) goes through and is recorded as the fenced instance's; one
    // beyond it must be recorded first, which it cannot be: refused.
    fenced
        .reserve(reservation("a", 0.01, 1.0, 1.0))
        .await
        .unwrap();
    let refused = fenced.reserve(reservation("a", 0.05, 1.0, 1.0)).await;
    assert!(
        matches!(refused, Err(LedgerError::LeaseLost)),
        "{refused:?}"
    );
    // Then it goes on as a new instance: 1.0 - (0.1 + 1.0 / 32) - 0.75
    // = 0.11875 free.
    let again = Arc::new(fenced);
    let mut tries = 0;
    let id = loop {
        tries += 1;
        match again.reserve(reservation("a", 0.118_75, 1.0, 1.0)).await {
            Ok(id) => break id,
            Err(LedgerError::LeaseLost) if tries < 20 => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(error) => panic!("{error}"),
        }
    };
    assert_ne!(again.shared_instance(), Some(first_instance));
    assert!(matches!(
        again.reserve(reservation("a", 0.000_001, 1.0, 1.0)).await,
        Err(LedgerError::BudgetExceeded { .. })
    ));
    // The call made within the margin is on record, as the fenced
    // instance's.
    again.flush().await.unwrap();
    let recorded: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM gateway_reservations WHERE gateway = $1")
            .bind(first_instance)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(recorded, 2);
    again.settle(id, 0.05, false).await.unwrap();
    again.check_consistency().await.unwrap();
    assert_eq!(
        sql_i64(
            schema.url(),
            "SELECT COUNT(*) FROM gateway_instances WHERE state = 'live'"
        )
        .await,
        2
    );
    again.close().await;
    other.close().await;
    pool.close().await;
}

#[tokio::test]
async fn idle_slices_are_handed_back_and_the_run_cap_holds_across_ledgers() {
    let schema = TestSchema::create().await;
    let lease = Duration::from_secs(10);
    let first = Ledger::open_shared(schema.url(), &options(lease))
        .await
        .unwrap();
    let second = Ledger::open_shared(schema.url(), &options(lease))
        .await
        .unwrap();
    // The first takes a slice of the run's 1.0 larger than it uses.
    let id = first
        .reserve(reservation("r", 0.1, 1.0, 10.0))
        .await
        .unwrap();
    first.settle(id, 0.1, false).await.unwrap();
    let slice = sql_i64(
        schema.url(),
        "SELECT granted_micros FROM gateway_budget_slices WHERE kind = 'run'",
    )
    .await;
    assert!(
        slice > 100_000,
        "a slice of {slice} covers more than the call"
    );
    // Idle, it shrinks to what was used, so the other ledger gets the rest.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    second
        .reserve(reservation("r", 0.9, 1.0, 10.0))
        .await
        .unwrap();
    let refused = first.reserve(reservation("r", 0.000_001, 1.0, 10.0)).await;
    assert!(
        matches!(
            refused,
            Err(LedgerError::BudgetExceeded {
                scope: BudgetScope::Run,
                ..
            })
        ),
        "{refused:?}"
    );
    first.check_consistency().await.unwrap();
    second.check_consistency().await.unwrap();
    first.close().await;
    second.close().await;
}

#[tokio::test]
async fn an_unreachable_database_is_an_error_naming_it_without_its_password() {
    let error = Ledger::open_shared(
        "postgres://sooth:secret@127.0.0.1:1/ledger",
        &SharedLedgerOptions {
            connect_timeout: Duration::from_secs(2),
            ..options(Duration::from_secs(10))
        },
    )
    .await
    .unwrap_err();
    let shown = format!("{error}");
    assert!(
        shown.contains("postgres://sooth:***@127.0.0.1:1/ledger"),
        "{shown}"
    );
    assert!(!shown.contains("secret"), "{shown}");
}
