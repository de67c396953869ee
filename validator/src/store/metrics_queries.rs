//! The few aggregate reads `/metrics` makes at each scrape ([`Store::metrics_gauges`]).
//!
//! A scrape comes every few seconds whatever the store's size, so every read here must stay
//! cheap on a store of millions of runs: none of them touches `validator_runs` (runs by outcome
//! and their durations are counted in process, `crate::metrics`), and each reads an index, or
//! a table whose size grows with something far smaller than the runs:
//!
//! - events by status: each count reads only its partial index (`validator_events_open`,
//!   `validator_events_resolution`), never the rows with their texts; about 100 entries a day;
//! - the verification queue: the partial index `validator_verifications_waiting`, which holds
//!   only the items still waiting or leased;
//! - the last weights computation: one end of `validator_weights_history`'s primary key;
//! - versions by status: a pass over `validator_agent_versions`, which no index covers by
//!   status; its size is bounded by the upload rate times the slots (one upload per hotkey every
//!   3 days: about 31,000 rows a year at 256 slots);
//! - gateway spend by service: a pass over `gateway_miner_day_totals`, one row per miner, day
//!   and service (not per request or run): about 190,000 rows a year at 256 slots and two
//!   services.
//!
//! - the gateways sharing the ledger: the [`MAX_GATEWAYS_SHOWN`] newest rows of
//!   `gateway_instances` (one per gateway process started), by its primary key.
//!
//! The last two are the store's only reads of gateway tables: read-only, of the ledger's totals
//! and instances whose schemas are `migrations/sqlite/0001_gateway_ledger.sql` and
//! `0011_gateway_shared_ledger.sql`. When the gateway keeps its ledger in another database, the
//! tables are empty here and no service has a charge.
//!
//! All of it is read in one read transaction, so a scrape sees one consistent state.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::{QueueCounts, Store, StoreError, VersionStatus, WorkerRecord, from_optional_ms};

/// Every status a version can have, in the order `/metrics` lists them.
pub const VERSION_STATUSES: [VersionStatus; 5] = [
    VersionStatus::Pending,
    VersionStatus::Verified,
    VersionStatus::Active,
    VersionStatus::Inactive,
    VersionStatus::Refused,
];

// The partial indexes' conditions are repeated word for word in the WHERE clauses: SQLite uses a
// partial index only for a query whose WHERE clause contains the index's own.
const OPEN_EVENTS: &str = "SELECT count(*) FROM validator_events WHERE status = 'open'";
const RESOLVED_EVENTS: &str = "SELECT count(*) FROM validator_events WHERE status = 'resolved'";
const VERSIONS_BY_STATUS: &str =
    "SELECT status, count(*) AS n FROM validator_agent_versions GROUP BY status";
const QUEUE_BY_STATE: &str = "SELECT state, count(*) AS n FROM validator_verifications \
                              WHERE state IN ('queued', 'verifying') GROUP BY state";
const LAST_WEIGHTS: &str = "SELECT max(computed_at_ms) FROM validator_weights_history";
const GATEWAY_INSTANCES: &str = "SELECT id, host, state, reservations, refusals, charged_micros \
                                   FROM gateway_instances ORDER BY id DESC LIMIT 64";
const GATEWAY_SPEND: &str = "SELECT service, CAST(sum(charged_micros) AS BIGINT) AS charged \
                               FROM gateway_miner_day_totals GROUP BY service";

/// How many gateway instances `/metrics` shows: the newest.
pub const MAX_GATEWAYS_SHOWN: usize = 64;

/// A gateway process sharing the ledger, as `/metrics` reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GatewayInstanceRecord {
    /// Its instance number.
    pub id: i64,
    /// The host it said it runs on.
    pub host: String,
    /// `live`, `closed` or `fenced`.
    pub state: String,
    /// Reservations it recorded.
    pub reservations: u64,
    /// Grants the ledger refused it (a cap was reached).
    pub refusals: u64,
    /// Micro-dollars it charged.
    pub charged_micros: u64,
}

/// What the store holds at one instant, as `/metrics` reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetricsGauges {
    /// Events not resolved yet.
    pub open_events: u64,
    /// Events resolved.
    pub resolved_events: u64,
    /// Agent versions per status; every status of [`VERSION_STATUSES`] is present (zero when
    /// no version has it).
    pub versions: BTreeMap<&'static str, u64>,
    /// Verification queue items waiting for a worker (`queued`).
    pub queue_waiting: u64,
    /// Verification queue items held under a lease (`verifying`), including leases whose
    /// worker died and that have not been claimed again yet.
    pub queue_leased: u64,
    /// The instant of the last weights computation recorded, if any.
    pub last_weights_at: Option<DateTime<Utc>>,
    /// Micro-dollars the gateway's ledger has charged (settled) in this file, by service name;
    /// only services with a row in `gateway_miner_day_totals` appear.
    pub gateway_charged_micros: BTreeMap<String, u64>,
    /// The runner workers, with the leases each holds.
    pub workers: Vec<WorkerRecord>,
    /// The runs queued for the workers.
    pub run_queue: QueueCounts,
    /// The gateways sharing the ledger in this database, newest first.
    pub gateways: Vec<GatewayInstanceRecord>,
}

impl Store {
    /// The aggregates `/metrics` reports, read in one read transaction. See the module docs for
    /// what each costs.
    ///
    /// # Errors
    ///
    /// [`StoreError::Database`] when a read fails; [`StoreError::Corrupt`] for a count or sum
    /// below zero or a version status the schema does not allow (a file edited by hand).
    pub async fn metrics_gauges(&self) -> Result<MetricsGauges, StoreError> {
        let mut read = self.begin_read().await?;
        let open_events: i64 = sqlx::query_scalar(OPEN_EVENTS)
            .fetch_one(&mut *read)
            .await?;
        let resolved_events: i64 = sqlx::query_scalar(RESOLVED_EVENTS)
            .fetch_one(&mut *read)
            .await?;

        let mut versions: BTreeMap<&'static str, u64> = VERSION_STATUSES
            .iter()
            .map(|status| (status.as_str(), 0))
            .collect();
        let rows = sqlx::query(VERSIONS_BY_STATUS)
            .fetch_all(&mut *read)
            .await?;
        for row in rows {
            let word: String = row.try_get("status")?;
            let status = VersionStatus::parse(&word).ok_or_else(|| {
                StoreError::Corrupt(format!("an agent version has status {word:?}"))
            })?;
            versions.insert(status.as_str(), count(row.try_get("n")?, "versions")?);
        }

        let (mut queue_waiting, mut queue_leased) = (0, 0);
        let rows = sqlx::query(QUEUE_BY_STATE).fetch_all(&mut *read).await?;
        for row in rows {
            let state: String = row.try_get("state")?;
            let n = count(row.try_get("n")?, "verification queue items")?;
            match state.as_str() {
                "queued" => queue_waiting = n,
                "verifying" => queue_leased = n,
                other => {
                    return Err(StoreError::Corrupt(format!(
                        "a verification queue item is in state {other:?}"
                    )));
                }
            }
        }

        let last_weights_ms: Option<i64> = sqlx::query_scalar(LAST_WEIGHTS)
            .fetch_one(&mut *read)
            .await?;

        let rows = sqlx::query(GATEWAY_SPEND).fetch_all(&mut *read).await?;
        let mut gateway_charged_micros = BTreeMap::new();
        for row in rows {
            let service: String = row.try_get("service")?;
            let charged = count(row.try_get("charged")?, "gateway charges")?;
            gateway_charged_micros.insert(service, charged);
        }
        debug_assert!(GATEWAY_INSTANCES.ends_with(&MAX_GATEWAYS_SHOWN.to_string()));
        let mut gateways = Vec::new();
        for row in sqlx::query(GATEWAY_INSTANCES).fetch_all(&mut *read).await? {
            gateways.push(GatewayInstanceRecord {
                id: row.try_get("id")?,
                host: row.try_get("host")?,
                state: row.try_get("state")?,
                reservations: count(row.try_get("reservations")?, "gateway reservations")?,
                refusals: count(row.try_get("refusals")?, "gateway refusals")?,
                charged_micros: count(row.try_get("charged_micros")?, "gateway charges")?,
            });
        }
        // Only reads: ending the transaction either way leaves the file as it was.
        read.commit().await?;
        let workers = self.workers().await?;
        let run_queue = self.queue_counts().await?;

        Ok(MetricsGauges {
            open_events: count(open_events, "open events")?,
            resolved_events: count(resolved_events, "resolved events")?,
            versions,
            queue_waiting,
            queue_leased,
            last_weights_at: from_optional_ms(last_weights_ms, "computed_at_ms")?,
            gateway_charged_micros,
            workers,
            run_queue,
            gateways,
        })
    }
}

/// A count or sum as read back; `what` names it for the error.
fn count(value: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| StoreError::Corrupt(format!("{what} add up to {value}")))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// The reads of tables that grow with the events and the queue's history go through their
    /// indexes: a plan that scans the table instead would make every scrape slower as the
    /// store grows.
    #[tokio::test]
    async fn the_counts_of_growing_tables_are_answered_from_indexes() {
        let store = Store::in_memory().await.unwrap();
        for (sql, index) in [
            (OPEN_EVENTS, "validator_events_open"),
            (RESOLVED_EVENTS, "validator_events_resolution"),
            (QUEUE_BY_STATE, "validator_verifications_waiting"),
        ] {
            let plan = store.query_plan(sql).await;
            assert!(plan.contains(index), "{sql}\nplan:\n{plan}");
        }
        let plan = store.query_plan(LAST_WEIGHTS).await;
        assert!(
            plan.contains("SEARCH") && plan.contains("INDEX"),
            "max(computed_at_ms) should read one end of the primary key; plan:\n{plan}"
        );
    }

    #[tokio::test]
    async fn an_empty_store_reads_zero_everywhere() {
        let store = Store::in_memory().await.unwrap();
        let gauges = store.metrics_gauges().await.unwrap();
        assert_eq!(gauges.open_events, 0);
        assert_eq!(gauges.resolved_events, 0);
        assert_eq!(gauges.versions.len(), VERSION_STATUSES.len());
        assert!(gauges.versions.values().all(|&n| n == 0));
        assert_eq!((gauges.queue_waiting, gauges.queue_leased), (0, 0));
        assert_eq!(gauges.last_weights_at, None);
        assert!(gauges.gateway_charged_micros.is_empty());
    }
}
