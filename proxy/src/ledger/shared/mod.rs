//! Gateways sharing one ledger in PostgreSQL.
//!
//! Each running gateway is an *instance* (`gateway_instances`), with a
//! lease measured by the database's clock that every journal batch and a
//! heartbeat renew. A cap scope (a run on a service, or a miner's UTC day
//! on a service) is handed out to instances in *slices*
//! (`gateway_budget_slices`): an instance decides its calls in its books,
//! in memory, against the slices it holds, and asks the database for more
//! (`gateway_grant`, one statement) only when a slice runs out. A grant
//! takes a quarter of what the scope has free, or the shortfall if that is
//! more, under the scope row's lock, and never lets what the scope's
//! slices hold plus what gone instances committed pass the cap: so the
//! caps hold across every gateway, with zero overspend.
//!
//! An instance's journal records its reservations and settlements behind,
//! a few milliseconds later, in batches of one round trip each. When an
//! instance stops, what its recorded reservations committed in each scope
//! stays taken, open ones in full (their calls may have been billed), and
//! the rest of its slices is free again: at [`close`](super::Ledger::close)
//! (after the journal is written), or, for one that died, once its lease
//! ran out and a grant in the scope fenced it. A dead instance may have
//! made calls it had not recorded yet, so for it the database also counts
//! each slice's *margin* (a 32nd of the scope's cap) as spent; and an
//! instance never lets what it has reserved but not recorded in a scope
//! pass that margin: a reservation that would waits for its record before
//! [`reserve`](super::Ledger::reserve) returns, so before its call is made.
//! That is what keeps the caps with zero overspend whoever dies when, at
//! the price of at most one margin per scope lost with a dead gateway.
//!
//! A fenced instance can record nothing more: its next batch fails, the
//! reservations in it that waited for their record are refused, and it
//! registers again as a new instance with empty slices (recording the
//! others, whose calls were made, as the fenced instance's). A slice idle for [`IDLE_GIVE_BACK`] is
//! shrunk to what is committed in it, so that what one gateway does not use
//! is free for the others.
//!
//! Commits use `synchronous_commit = off` unless the ledger is durable: a
//! commit survives the gateway's crash but not the database server's own
//! last fraction of a second, as the SQLite ledger's `NORMAL`.
//!
//! What it must not touch: the books' decisions (`books.rs`) and the
//! batching of the journal (`journal.rs` one level up).

/// The instance's registration, lease and closing.
mod instance;
/// Writing the journal's batches to PostgreSQL.
mod journal;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use sooth_migrations::{open_postgres_native, redacted_url};
use sqlx::Row;
use sqlx::postgres::PgPool;

use super::books::{Books, Grant, Open, ScopeKind, Shortfall, day_key, run_key};
use super::journal::{Command, Failure, Write};
use super::{Inner, Ledger, LedgerError, Store, lock, now_ms};
use crate::background::BackgroundTask;
use crate::error_chain::Chain;
use crate::ledger::types::BudgetScope;
use instance::Instance;

/// How many times one reservation asks for a larger slice before it gives
/// up ([`LedgerError::Contended`]).
pub(super) const MAX_GRANTS_PER_RESERVATION: u32 = 8;

/// How long a slice stays larger than what is committed in it while no
/// call uses it.
pub const IDLE_GIVE_BACK: Duration = Duration::from_secs(1);

/// Requests for more of one miner's budget are made one at a time per
/// stripe, so that a burst of calls asks the database once, not once each.
const GRANT_STRIPES: usize = 64;

const GRANT_SQL: &str = "\
SELECT run_granted, day_granted, refused_kind, free_micros
  FROM gateway_grant($1, $2, $3, $4, $5, $6, $7, $8, $9)";

/// How to open a shared ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedLedgerOptions {
    /// How long the gateway's slices stay its own without a word from it;
    /// a gateway that died holds them that long. Default 10 s.
    pub lease: Duration,
    /// Wait for every commit to be flushed to the server's disk
    /// (`synchronous_commit = on`), and make settlements wait for theirs.
    /// Default `false`.
    pub durable: bool,
    /// Connections to the database (journal, grants, heartbeat and reports).
    /// Default 4.
    pub connections: u32,
    /// How long to wait for the database at open. Default 10 s.
    pub connect_timeout: Duration,
    /// What the gateway calls its host in `gateway_instances`.
    pub host: String,
}

impl Default for SharedLedgerOptions {
    fn default() -> Self {
        Self {
            lease: Duration::from_secs(10),
            durable: false,
            connections: 4,
            connect_timeout: Duration::from_secs(10),
            host: std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".to_owned()),
        }
    }
}

/// A shared ledger's connection to PostgreSQL and its instance.
#[derive(Debug)]
pub(super) struct SharedStore {
    pool: PgPool,
    instance: Arc<Instance>,
    grant_turns: Vec<tokio::sync::Mutex<()>>,
    /// Gives idle slices back and renews the lease; stopped at close or
    /// when the last clone goes.
    keeper: Mutex<Option<BackgroundTask>>,
}

impl Ledger {
    /// Opens the ledger shared by every gateway on the PostgreSQL database
    /// at `url` (bringing its schema up to date) as a new instance.
    ///
    /// # Errors
    ///
    /// [`LedgerError::Connect`] when the database cannot be reached or
    /// migrated (the message names the URL without its password),
    /// [`LedgerError::Database`] when the instance cannot be registered.
    pub async fn open_shared(
        url: &str,
        options: &SharedLedgerOptions,
    ) -> Result<Self, LedgerError> {
        let pool = open_postgres_native(
            url,
            options.connections.max(2),
            options.connect_timeout,
            !options.durable,
        )
        .await
        .map_err(|source| LedgerError::Connect {
            url: redacted_url(url),
            source,
        })?;
        let instance = Arc::new(Instance::register(&pool, &options.host, options.lease).await?);
        let books = Arc::new(Mutex::new(Books::sliced(instance.id())));
        let failure = Failure::default();
        let sink = journal::PgSink::new(pool.clone(), Arc::clone(&instance), Arc::clone(&books));
        let journal = super::journal::spawn(sink, failure.clone(), super::journal::LINGER);
        let keeper = spawn_keeper(journal.clone(), Arc::clone(&books), options.lease);
        tracing::info!(
            instance = instance.id(),
            "ledger: shared through PostgreSQL"
        );
        Ok(Self {
            inner: Arc::new(Inner {
                books,
                journal,
                failure,
                wait_for_commit: options.durable,
                store: Store::Shared(SharedStore {
                    pool,
                    instance,
                    grant_turns: (0..GRANT_STRIPES)
                        .map(|_| tokio::sync::Mutex::new(()))
                        .collect(),
                    keeper: Mutex::new(Some(keeper)),
                }),
            }),
        })
    }

    /// This gateway's instance in a shared ledger (`None` for a file's).
    pub fn shared_instance(&self) -> Option<i64> {
        match &self.inner.store {
            Store::Shared(shared) => Some(shared.instance.id()),
            Store::File(_) => None,
        }
    }
}

impl SharedStore {
    pub(super) fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub(super) fn instance(&self) -> &Instance {
        &self.instance
    }

    /// Asks the database to grow this gateway's slices of `open`'s scopes
    /// by at least `shortfall`, one request per miner at a time.
    ///
    /// # Errors
    ///
    /// [`LedgerError::BudgetExceeded`] when a scope cannot spare the
    /// shortfall (counting, as committed, what other gateways hold),
    /// [`LedgerError::LeaseLost`] when this instance was fenced,
    /// [`LedgerError::Database`].
    pub(super) async fn grow(
        &self,
        inner: &Inner,
        open: &Open,
        shortfall: Shortfall,
        run_cap: i64,
        day_cap: i64,
    ) -> Result<(), LedgerError> {
        let run_key = run_key(&open.run_id, &open.service);
        let day_key = day_key(&open.miner, &open.day, &open.service);
        let stripe = stripe_of(&day_key);
        let _turn = self.grant_turns[stripe].lock().await;
        // Whoever had the turn before may have been granted enough.
        let (shortfall, instance) = {
            let books = lock(&inner.books);
            match books.shortfall(open) {
                Some(now) if now.generation == shortfall.generation => (now, books.owner()),
                // Enough now, or the books started over: decide again.
                _ => return Ok(()),
            }
        };
        let row = sqlx::query(GRANT_SQL)
            .bind(instance)
            .bind(&open.run_id)
            .bind(&open.miner)
            .bind(&open.day)
            .bind(&open.service)
            .bind(run_cap)
            .bind(shortfall.run.max(0))
            .bind(day_cap)
            .bind(shortfall.day.max(0))
            .fetch_one(&self.pool)
            .await
            .map_err(|error| self.lease_lost_or(error, &inner.journal))?;
        let refused: Option<String> = row.try_get("refused_kind")?;
        if let Some(kind) = refused {
            let free: i64 = row.try_get("free_micros")?;
            let (scope, cap, kind, key) = if kind == "run" {
                (BudgetScope::Run, run_cap, ScopeKind::Run, run_key)
            } else {
                (BudgetScope::MinerDay, day_cap, ScopeKind::Day, day_key)
            };
            let unused = lock(&inner.books).unused(kind, &key);
            return Err(super::budget_exceeded(
                open,
                super::Refused {
                    scope,
                    cap,
                    committed: cap.saturating_sub(free).saturating_sub(unused),
                },
            ));
        }
        lock(&inner.books).add_granted(Grant {
            run_key,
            day_key,
            run: row.try_get("run_granted")?,
            day: row.try_get("day_granted")?,
            run_cap,
            day_cap,
            generation: shortfall.generation,
        });
        Ok(())
    }

    /// A grant refused because this instance was fenced: the journal's next
    /// batch finds out too and registers a new instance, so send it one.
    fn lease_lost_or(
        &self,
        error: sqlx::Error,
        journal: &tokio::sync::mpsc::UnboundedSender<Command>,
    ) -> LedgerError {
        let fenced = error
            .as_database_error()
            .is_some_and(|e| e.message().starts_with(instance::FENCED_MESSAGE));
        if fenced {
            let _ = journal.send(Command::Write(Write::Heartbeat));
            LedgerError::LeaseLost
        } else {
            LedgerError::from(error)
        }
    }

    /// Gives every slice up and closes the pool (after the journal has
    /// written everything).
    pub(super) async fn close(&self, books: &Mutex<Books>) {
        drop(lock(&self.keeper).take());
        let owner = lock(books).owner();
        if let Err(error) = instance::close(&self.pool, owner).await {
            tracing::error!(error = %Chain(&error), instance = owner,
                "ledger: cannot give the slices up; they are taken back when the lease ends");
        }
        self.pool.close().await;
    }
}

fn stripe_of(key: &str) -> usize {
    use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
    let hash = BuildHasherDefault::<DefaultHasher>::default().hash_one(key);
    // The remainder is below GRANT_STRIPES, so it fits any usize.
    (hash % GRANT_STRIPES as u64) as usize
}

/// Every second, hands back what idle slices hold beyond their use; every
/// third of a lease, renews it (when no batch did meanwhile, this is the
/// only sign of life).
fn spawn_keeper(
    journal: tokio::sync::mpsc::UnboundedSender<Command>,
    books: Arc<Mutex<Books>>,
    lease: Duration,
) -> BackgroundTask {
    let renew_every = (lease / 3).max(Duration::from_millis(100));
    let tick_every = IDLE_GIVE_BACK.min(renew_every);
    let task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(tick_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut renewed = tokio::time::Instant::now();
        loop {
            tick.tick().await;
            let idle_ms = i64::try_from(IDLE_GIVE_BACK.as_millis()).unwrap_or(i64::MAX);
            let surplus = lock(&books).take_idle_surplus(now_ms() - idle_ms);
            let mut sent = Ok(());
            for surplus in surplus {
                sent = journal.send(Command::Write(Write::GiveBack(surplus)));
            }
            if renewed.elapsed() >= renew_every {
                renewed = tokio::time::Instant::now();
                sent = journal.send(Command::Write(Write::Heartbeat));
            }
            if sent.is_err() {
                break;
            }
        }
    });
    BackgroundTask(task.abort_handle())
}
