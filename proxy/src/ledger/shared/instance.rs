//! A gateway's instance in the shared ledger: registering it, and closing
//! it (giving its slices up). Its lease is renewed by the journal's batches
//! (`gateway_journal`).

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use sqlx::postgres::PgPool;

/// How the database says that an instance was fenced (`gateway_grant`,
/// `gateway_journal`).
pub(super) const FENCED_MESSAGE: &str = "gateway instance fenced";

const REGISTER_SQL: &str = "\
INSERT INTO gateway_instances (host, started_at_ms, lease_until_ms)
SELECT $1, now_ms, now_ms + $2
  FROM (SELECT (EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT AS now_ms) AS clock
RETURNING id";

/// This gateway's current instance (a new one after its lease was lost).
#[derive(Debug)]
pub(in crate::ledger) struct Instance {
    id: AtomicI64,
    host: String,
    lease_ms: i64,
}

impl Instance {
    /// Registers a new instance, with a lease of `lease` from now by the
    /// database's clock.
    pub async fn register(pool: &PgPool, host: &str, lease: Duration) -> Result<Self, sqlx::Error> {
        let lease_ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
        let id = sqlx::query_scalar(REGISTER_SQL)
            .bind(host)
            .bind(lease_ms)
            .fetch_one(pool)
            .await?;
        Ok(Self {
            id: AtomicI64::new(id),
            host: host.to_owned(),
            lease_ms,
        })
    }

    /// Registers again, as a new instance, after this one was fenced; the
    /// new id.
    pub async fn register_again(&self, pool: &PgPool) -> Result<i64, sqlx::Error> {
        let id = sqlx::query_scalar(REGISTER_SQL)
            .bind(&self.host)
            .bind(self.lease_ms)
            .fetch_one(pool)
            .await?;
        self.id.store(id, Ordering::Release);
        Ok(id)
    }

    /// The instance's id.
    pub fn id(&self) -> i64 {
        self.id.load(Ordering::Acquire)
    }

    /// How long its lease lasts, milliseconds.
    pub fn lease_ms(&self) -> i64 {
        self.lease_ms
    }
}

/// Closes instance `id`: every slice of it is given up.
pub(super) async fn close(pool: &PgPool, id: i64) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT gateway_close_instance($1, FALSE)")
        .bind(id)
        .execute(pool)
        .await
        .map(drop)
}
