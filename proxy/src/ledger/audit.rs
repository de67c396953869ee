//! What the ledger reports: the totals of a run or a miner's day, the
//! charges of a run, and a check that the file and the books agree.

use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use super::money::micros_to_usd;
use super::{Charge, Ledger, LedgerError, ReservationId, lock};

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
        let rows = sqlx::query(CHARGES_FOR_RUN_SQL)
            .bind(run_id)
            .fetch_all(&self.inner.reader)
            .await?;
        rows.iter().map(charge_from_row).collect()
    }

    /// Checks that the file's per-scope totals agree with the reservations
    /// they sum, and that the books in memory agree with the file.
    /// Reads the whole ledger: for startup and tests, not per request.
    ///
    /// # Errors
    ///
    /// [`LedgerError::Inconsistent`] when they disagree,
    /// [`LedgerError::Unavailable`] or [`LedgerError::Closed`] when the
    /// decisions before it cannot be written first, [`LedgerError::Database`].
    pub async fn check_consistency(&self) -> Result<(), LedgerError> {
        self.flush().await?;
        let bad: i64 = sqlx::query_scalar(INCONSISTENT_TOTALS_SQL)
            .fetch_one(&self.inner.reader)
            .await?;
        if bad != 0 {
            return Err(LedgerError::Inconsistent(format!(
                "{bad} totals disagree with their reservations"
            )));
        }
        let in_file = |sql: &'static str| sqlx::query(sql).fetch_all(&self.inner.reader);
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

    async fn total(&self, sql: &'static str, args: &[&str]) -> Result<f64, LedgerError> {
        self.flush().await?;
        let mut query = sqlx::query_scalar::<_, i64>(sql);
        for arg in args {
            query = query.bind(*arg);
        }
        let micros = query.fetch_optional(&self.inner.reader).await?;
        Ok(micros_to_usd(micros.unwrap_or(0)))
    }
}

fn charge_from_row(row: &SqliteRow) -> Result<Charge, LedgerError> {
    Ok(Charge {
        id: ReservationId(row.try_get("id")?),
        run_id: row.try_get("run_id")?,
        miner: row.try_get("miner")?,
        service: row.try_get("service")?,
        day: row.try_get("day")?,
        reserved_usd: micros_to_usd(row.try_get("reserved_micros")?),
        charged_usd: micros_to_usd(row.try_get("charged_micros")?),
        overrun_usd: micros_to_usd(row.try_get("overrun_micros")?),
        estimated: row.try_get("estimated")?,
        reserved_at_ms: row.try_get("created_at_ms")?,
        settled_at_ms: row.try_get("closed_at_ms")?,
    })
}
