//! Writing a shared ledger's journal: each batch is one call of
//! `gateway_journal`, which renews the instance's lease and records the
//! batch, or refuses it whole if the instance was fenced. After a refusal
//! the next batch first registers a new instance and starts the books over.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use sqlx::postgres::PgPool;

use super::super::books::{Books, IDS_PER_INSTANCE, ScopeKind};
use super::super::journal::{Failed, Sink, Write};
use super::super::lock;
use super::instance::{FENCED_MESSAGE, Instance};

const JOURNAL_SQL: &str = "\
SELECT gateway_journal($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15,
                       $16, $17, $18, $19, $20, $21)";

/// The journal's sink for a shared ledger.
pub(super) struct PgSink {
    pool: PgPool,
    instance: Arc<Instance>,
    books: Arc<Mutex<Books>>,
    /// Set when a batch was refused because the instance was fenced.
    lease_lost: bool,
}

impl PgSink {
    pub fn new(pool: PgPool, instance: Arc<Instance>, books: Arc<Mutex<Books>>) -> Self {
        Self {
            pool,
            instance,
            books,
            lease_lost: false,
        }
    }
}

/// A batch as the columns `gateway_journal` takes.
#[derive(Default)]
struct Columns {
    r_ids: Vec<i64>,
    /// The instance that made each (the one that was current then).
    r_gateways: Vec<i64>,
    r_runs: Vec<String>,
    r_miners: Vec<String>,
    r_services: Vec<String>,
    r_days: Vec<String>,
    r_reserved: Vec<i64>,
    r_created: Vec<i64>,
    c_ids: Vec<i64>,
    c_states: Vec<&'static str>,
    c_charged: Vec<i64>,
    c_overrun: Vec<i64>,
    c_estimated: Vec<bool>,
    c_closed: Vec<i64>,
    /// Hand-backs summed per scope: the update applies one row per slice.
    given_back: HashMap<(ScopeKind, String), i64>,
}

impl Columns {
    fn of(writes: &[Write]) -> Self {
        let mut columns = Self::default();
        for write in writes {
            match write {
                Write::Reserve { id, open, .. } => {
                    columns.r_ids.push(*id);
                    columns.r_gateways.push(id / IDS_PER_INSTANCE);
                    columns.r_runs.push(open.run_id.clone());
                    columns.r_miners.push(open.miner.clone());
                    columns.r_services.push(open.service.clone());
                    columns.r_days.push(open.day.clone());
                    columns.r_reserved.push(open.reserved);
                    columns.r_created.push(open.created_at_ms);
                }
                Write::Close(closed) => {
                    columns.c_ids.push(closed.id);
                    columns.c_states.push(closed.state.as_str());
                    columns.c_charged.push(closed.charged);
                    columns.c_overrun.push(closed.overrun);
                    columns.c_estimated.push(closed.estimated);
                    columns.c_closed.push(closed.closed_at_ms);
                }
                Write::GiveBack(surplus) => {
                    *columns
                        .given_back
                        .entry((surplus.kind, surplus.key.clone()))
                        .or_default() += surplus.micros;
                }
                Write::Heartbeat => {}
            }
        }
        columns
    }
}

impl Sink for PgSink {
    const DROPS_FAILED_RESERVATIONS: bool = true;

    async fn commit(&mut self, writes: &[Write]) -> Result<(), Failed> {
        if self.lease_lost {
            let id = self.instance.register_again(&self.pool).await?;
            lock(&self.books).reset(id);
            self.lease_lost = false;
            tracing::warn!(
                instance = id,
                "ledger: the lease on the shared ledger was lost; going on as a new instance"
            );
        }
        if writes.is_empty() {
            return Ok(());
        }
        let columns = Columns::of(writes);
        let (mut g_kinds, mut g_subjects, mut g_days, mut g_services, mut g_micros) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for ((kind, key), micros) in &columns.given_back {
            let parts: Vec<&str> = key.split('\0').collect();
            let (kind, subject, day, service) = match (kind, parts.as_slice()) {
                (ScopeKind::Run, [run, service]) => ("run", *run, "", *service),
                (ScopeKind::Day, [miner, day, service]) => ("day", *miner, *day, *service),
                _ => return Err(Failed::Inconsistent(format!("malformed scope key {key:?}"))),
            };
            g_kinds.push(kind);
            g_subjects.push(subject);
            g_days.push(day);
            g_services.push(service);
            g_micros.push(*micros);
        }
        let done = sqlx::query(JOURNAL_SQL)
            .bind(self.instance.id())
            .bind(self.instance.lease_ms())
            .bind(&columns.r_ids)
            .bind(&columns.r_gateways)
            .bind(&columns.r_runs)
            .bind(&columns.r_miners)
            .bind(&columns.r_services)
            .bind(&columns.r_days)
            .bind(&columns.r_reserved)
            .bind(&columns.r_created)
            .bind(&columns.c_ids)
            .bind(&columns.c_states)
            .bind(&columns.c_charged)
            .bind(&columns.c_overrun)
            .bind(&columns.c_estimated)
            .bind(&columns.c_closed)
            .bind(&g_kinds)
            .bind(&g_subjects)
            .bind(&g_days)
            .bind(&g_services)
            .bind(&g_micros)
            .execute(&self.pool)
            .await;
        match done {
            Ok(_) => {
                let mut books = lock(&self.books);
                for write in writes {
                    if let Write::Reserve {
                        open, generation, ..
                    } = write
                    {
                        books.recorded(open, *generation);
                    }
                }
                Ok(())
            }
            Err(error)
                if error
                    .as_database_error()
                    .is_some_and(|e| e.message().starts_with(FENCED_MESSAGE)) =>
            {
                self.lease_lost = true;
                Err(Failed::LeaseLost)
            }
            Err(error) => Err(error.into()),
        }
    }

    fn is_closed(&self) -> bool {
        self.pool.is_closed()
    }
}
