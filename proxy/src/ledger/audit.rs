//! What the ledger reports: the totals of a run or a miner's day, the
//! charges of a run, and a check that the file and the books agree.

use std::collections::HashMap;

use sqlx::Row;

use super::books::{Scope, day_key, run_key};
use super::money::micros_to_usd;
use super::{Charge, Ledger, LedgerError, ReservationId, Store, lock};

const CHARGES_FOR_RUN_SQL: &str = "\
SELECT id, run_id, miner, service, day, reserved_micros, charged_micros,
       overrun_micros, estimated, created_at_ms, closed_at_ms
  FROM gateway_reservations
 WHERE run_id = $1 AND state = 'settled'
 ORDER BY id";

/// Totals that disagree with the reservations they sum (should be none).
const INCONSISTENT_TOTALS_SQL: &str = "\
SELECT
  (SELECT COUNT(*) FROM gateway_run_totals t
    WHERE t.reserved_micros <> (SELECT COALESCE(SUM(r.reserved_micros), 0)
                                  FROM gateway_reservations r
                                 WHERE r.run_id = t.run_id AND r.service = t.service
                                   AND r.state = 'open')
       OR t.charged_micros <> (SELECT COALESCE(SUM(r.charged_micros), 0)
                                 FROM gateway_reservations r
                                WHERE r.run_id = t.run_id AND r.service = t.service
                                  AND r.state = 'settled'))
+ (SELECT COUNT(*) FROM gateway_miner_day_totals t
    WHERE t.reserved_micros <> (SELECT COALESCE(SUM(r.reserved_micros), 0)
                                  FROM gateway_reservations r
                                 WHERE r.miner = t.miner AND r.day = t.day
                                   AND r.service = t.service AND r.state = 'open')
       OR t.charged_micros <> (SELECT COALESCE(SUM(r.charged_micros), 0)
                                 FROM gateway_reservations r
                                WHERE r.miner = t.miner AND r.day = t.day
                                  AND r.service = t.service AND r.state = 'settled'))
+ (SELECT COUNT(*) FROM gateway_reservations r
    WHERE r.state IN ('open', 'settled')
      AND (NOT EXISTS (SELECT 1 FROM gateway_run_totals t
                        WHERE t.run_id = r.run_id AND t.service = r.service)
           OR NOT EXISTS (SELECT 1 FROM gateway_miner_day_totals t
                           WHERE t.miner = r.miner AND t.day = r.day
                             AND t.service = r.service)))";

impl Ledger {
    /// What a run was charged on a service (settled charges only), in USD.
    ///
    /// # Errors
    ///
    /// [`LedgerError::Unavailable`] or [`LedgerError::Closed`] when the
    /// decisions before it cannot be written first, [`LedgerError::Database`].
    pub async fn spent_usd(&self, run_id: &str, service: &str) -> Result<f64, LedgerError> {
        self.total(
            "SELECT charged_micros FROM gateway_run_totals WHERE run_id = $1 AND service = $2",
            "SELECT SUM(charged_micros)::BIGINT FROM gateway_reservations
              WHERE run_id = $1 AND service = $2 AND state = 'settled'",
            &[run_id, service],
        )
        .await
    }

    /// What a run holds in open reservations on a service, in USD.
    ///
    /// # Errors
    ///
    /// [`LedgerError::Unavailable`] or [`LedgerError::Closed`] when the
    /// decisions before it cannot be written first, [`LedgerError::Database`].
    pub async fn reserved_usd(&self, run_id: &str, service: &str) -> Result<f64, LedgerError> {
        self.total(
            "SELECT reserved_micros FROM gateway_run_totals WHERE run_id = $1 AND service = $2",
            "SELECT SUM(reserved_micros)::BIGINT FROM gateway_reservations
              WHERE run_id = $1 AND service = $2 AND state = 'open'",
            &[run_id, service],
        )
        .await
    }

    /// What a miner was charged on a service during a UTC day (settled
    /// charges only), in USD.
    ///
    /// # Errors
    ///
    /// [`LedgerError::Unavailable`] or [`LedgerError::Closed`] when the
    /// decisions before it cannot be written first, [`LedgerError::Database`].
    pub async fn spent_by_miner_day(
        &self,
        miner: &str,
        day: &str,
        service: &str,
    ) -> Result<f64, LedgerError> {
        self.total(
            "SELECT charged_micros FROM gateway_miner_day_totals
              WHERE miner = $1 AND day = $2 AND service = $3",
            "SELECT SUM(charged_micros)::BIGINT FROM gateway_reservations
              WHERE miner = $1 AND day = $2 AND service = $3 AND state = 'settled'",
            &[miner, day, service],
        )
        .await
    }

    /// What a miner holds in open reservations on a service for a UTC day, in USD.
    ///
    /// # Errors
    ///
    /// [`LedgerError::Unavailable`] or [`LedgerError::Closed`] when the
    /// decisions before it cannot be written first, [`LedgerError::Database`].
    pub async fn reserved_by_miner_day(
        &self,
        miner: &str,
        day: &str,
        service: &str,
    ) -> Result<f64, LedgerError> {
        self.total(
            "SELECT reserved_micros FROM gateway_miner_day_totals
              WHERE miner = $1 AND day = $2 AND service = $3",
            "SELECT SUM(reserved_micros)::BIGINT FROM gateway_reservations
              WHERE miner = $1 AND day = $2 AND service = $3 AND state = 'open'",
            &[miner, day, service],
        )
        .await
    }

    /// The settled charges of a run, all services, oldest first.
    ///
    /// # Errors
    ///
    /// [`LedgerError::Unavailable`] or [`LedgerError::Closed`] when the
    /// decisions before it cannot be written first, [`LedgerError::Database`].
    pub async fn charges_for_run(&self, run_id: &str) -> Result<Vec<Charge>, LedgerError> {
        self.flush().await?;
        let rows = on_reader!(&self.inner.store, |pool| {
            sqlx::query_as::<_, ChargeRow>(CHARGES_FOR_RUN_SQL)
                .bind(run_id)
                .fetch_all(pool)
                .await?
        });
        Ok(rows.into_iter().map(Charge::from).collect())
    }

    /// Checks that the file's per-scope totals agree with the reservations
    /// they sum, and that the books in memory agree with the file; for a
    /// shared ledger, that its books agree with its instance's slices and
    /// the reservations it recorded. Reads the whole ledger: for startup
    /// and tests, not per request.
    ///
    /// # Errors
    ///
    /// [`LedgerError::Inconsistent`] when they disagree,
    /// [`LedgerError::Unavailable`] or [`LedgerError::Closed`] when the
    /// decisions before it cannot be written first, [`LedgerError::Database`].
    pub async fn check_consistency(&self) -> Result<(), LedgerError> {
        self.flush().await?;
        match &self.inner.store {
            Store::File(file) => {
                let bad: i64 = sqlx::query_scalar(INCONSISTENT_TOTALS_SQL)
                    .fetch_one(&file.reader)
                    .await?;
                if bad != 0 {
                    return Err(LedgerError::Inconsistent(format!(
                        "{bad} totals disagree with their reservations"
                    )));
                }
                self.check_books_against_file(&file.reader).await
            }
            Store::Shared(shared) => {
                self.check_books_against_slices(shared.pool(), shared.instance().id())
                    .await
            }
        }
    }

    async fn check_books_against_file(&self, reader: &sqlx::SqlitePool) -> Result<(), LedgerError> {
        let in_file = |sql: &'static str| sqlx::query(sql).fetch_all(reader);
        let runs = in_file(
            "SELECT run_id || char(0) || service, reserved_micros, charged_micros
               FROM gateway_run_totals",
        )
        .await?;
        let days = in_file(
            "SELECT miner || char(0) || day || char(0) || service, reserved_micros, charged_micros
               FROM gateway_miner_day_totals",
        )
        .await?;
        let books = lock(&self.inner.books);
        let (book_runs, book_days) = books.scopes();
        for (rows, scopes) in [(runs, book_runs), (days, book_days)] {
            for row in rows {
                let key: String = row.try_get(0)?;
                let in_file = (row.try_get::<i64, _>(1)?, row.try_get::<i64, _>(2)?);
                if let Some(scope) = scopes.get(&key)
                    && (scope.reserved, scope.charged) != in_file
                {
                    return Err(LedgerError::Inconsistent(format!(
                        "the books in memory say {:?} for {:?}, the file {in_file:?}",
                        (scope.reserved, scope.charged),
                        key.replace('\0', "/")
                    )));
                }
            }
        }
        Ok(())
    }

    /// A shared ledger's books against its instance's slices: each slice
    /// holds at least what the books think they were granted, and what the
    /// instance's recorded reservations commit in it is what the books say.
    async fn check_books_against_slices(
        &self,
        pool: &sqlx::PgPool,
        instance: i64,
    ) -> Result<(), LedgerError> {
        let rows = sqlx::query(
            "SELECT kind, subject, day, service, granted_micros,
                    gateway_committed_by(gateway, kind, subject, day, service)
               FROM gateway_budget_slices
              WHERE gateway = $1",
        )
        .bind(instance)
        .fetch_all(pool)
        .await?;
        let mut slices: HashMap<(bool, String), (i64, i64)> = HashMap::new();
        for row in rows {
            let (kind, subject, day, service): (String, String, String, String) = (
                row.try_get(0)?,
                row.try_get(1)?,
                row.try_get(2)?,
                row.try_get(3)?,
            );
            let is_run = kind == "run";
            let key = if is_run {
                run_key(&subject, &service)
            } else {
                day_key(&subject, &day, &service)
            };
            slices.insert((is_run, key), (row.try_get(4)?, row.try_get(5)?));
        }
        let books = lock(&self.inner.books);
        if books.owner() != instance {
            // Started over as a new instance since: nothing to compare yet.
            return Ok(());
        }
        let (book_runs, book_days) = books.scopes();
        let compare = |is_run: bool, key: &String, scope: &Scope| {
            let (granted, committed) = slices
                .get(&(is_run, key.clone()))
                .copied()
                .unwrap_or((0, 0));
            let in_books = scope.reserved + scope.charged;
            if scope.granted > granted || in_books != committed {
                return Err(LedgerError::Inconsistent(format!(
                    "the books say {:?} granted {} and committed {in_books}, the shared \
                     ledger granted {granted} and recorded {committed}",
                    key.replace('\0', "/"),
                    scope.granted
                )));
            }
            Ok(())
        };
        for (key, scope) in book_runs {
            compare(true, key, scope)?;
        }
        for (key, scope) in book_days {
            compare(false, key, scope)?;
        }
        Ok(())
    }

    /// A total read with `file_sql` from a file's ledger (its totals
    /// tables), with `shared_sql` from a shared one (its reservations).
    async fn total(
        &self,
        file_sql: &'static str,
        shared_sql: &'static str,
        args: &[&str],
    ) -> Result<f64, LedgerError> {
        self.flush().await?;
        let sql = match &self.inner.store {
            Store::File(_) => file_sql,
            Store::Shared(_) => shared_sql,
        };
        let micros: Option<Option<i64>> = on_reader!(&self.inner.store, |pool| {
            let mut query = sqlx::query_scalar::<_, Option<i64>>(sql);
            for arg in args {
                query = query.bind(*arg);
            }
            query.fetch_optional(pool).await?
        });
        Ok(micros_to_usd(micros.flatten().unwrap_or(0)))
    }
}

/// A settled reservation as either database returns it.
#[derive(sqlx::FromRow)]
struct ChargeRow {
    id: i64,
    run_id: String,
    miner: String,
    service: String,
    day: String,
    reserved_micros: i64,
    charged_micros: i64,
    overrun_micros: i64,
    estimated: bool,
    created_at_ms: i64,
    closed_at_ms: i64,
}

impl From<ChargeRow> for Charge {
    fn from(row: ChargeRow) -> Self {
        Self {
            id: ReservationId(row.id),
            run_id: row.run_id,
            miner: row.miner,
            service: row.service,
            day: row.day,
            reserved_usd: micros_to_usd(row.reserved_micros),
            charged_usd: micros_to_usd(row.charged_micros),
            overrun_usd: micros_to_usd(row.overrun_micros),
            estimated: row.estimated,
            reserved_at_ms: row.created_at_ms,
            settled_at_ms: row.closed_at_ms,
        }
    }
}
