//! The ledger's vocabulary: reservations, their ids and states, charges,
//! the caps that refuse, and how to open a ledger.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Which cap a refused reservation ran into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BudgetScope {
    /// The cap of one run on one service.
    Run,
    /// The cap of one miner on one service for one UTC day.
    MinerDay,
}

impl fmt::Display for BudgetScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Run => "run",
            Self::MinerDay => "miner-day",
        })
    }
}

/// The life cycle of a reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReservationState {
    /// Reserved, counts against the caps with its full amount.
    Open,
    /// Charged its actual cost (at most the reserved amount).
    Settled,
    /// Dropped with no charge by [`Ledger::release`](super::Ledger::release).
    Released,
    /// Dropped with no charge by [`Ledger::release_stale`](super::Ledger::release_stale).
    Stale,
}

impl ReservationState {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Settled => "settled",
            Self::Released => "released",
            Self::Stale => "stale",
        }
    }

    pub(super) fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "open" => Self::Open,
            "settled" => Self::Settled,
            "released" => Self::Released,
            "stale" => Self::Stale,
            _ => return None,
        })
    }
}

impl fmt::Display for ReservationState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The id of a reservation, unique within a ledger and never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ReservationId(pub(super) i64);

impl ReservationId {
    /// The id from its stored number.
    pub fn new(id: i64) -> Self {
        Self(id)
    }

    /// The stored number.
    pub fn get(self) -> i64 {
        self.0
    }
}

impl fmt::Display for ReservationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// A request to reserve the worst-case cost of one upstream call.
#[derive(Debug, Clone, PartialEq)]
pub struct Reservation {
    /// The run the call is made for.
    pub run_id: String,
    /// The miner (hotkey) the run belongs to.
    pub miner: String,
    /// The service called (a configured service name, e.g. `chutes`).
    pub service: String,
    /// The UTC day the spend counts against, `YYYY-MM-DD` (see [`utc_day`](super::utc_day)).
    pub day: String,
    /// The worst-case cost, in USD (rounded up to whole micro-dollars).
    pub amount_usd: f64,
    /// The cap of this run on this service, in USD.
    pub run_cap_usd: f64,
    /// The cap of this miner on this service for `day`, in USD (the one that
    /// applies: operator's key or the miner's linked key).
    pub day_cap_usd: f64,
}

/// A settled reservation: what a call was charged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Charge {
    /// The reservation.
    pub id: ReservationId,
    /// The run.
    pub run_id: String,
    /// The miner.
    pub miner: String,
    /// The service.
    pub service: String,
    /// The UTC day it counts against.
    pub day: String,
    /// What was reserved, in USD.
    pub reserved_usd: f64,
    /// What was charged, in USD (at most `reserved_usd`).
    pub charged_usd: f64,
    /// By how much the actual cost exceeded the reservation, in USD (not
    /// charged; a sign that the worst-case estimate was wrong).
    pub overrun_usd: f64,
    /// Whether the cost was estimated (e.g. the upstream reported no usage)
    /// rather than reported.
    pub estimated: bool,
    /// When the reservation was made, Unix milliseconds.
    pub reserved_at_ms: i64,
    /// When it was settled, Unix milliseconds.
    pub settled_at_ms: i64,
}

/// How to open a ledger file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerOptions {
    /// How long a writer waits for another process's write lock before
    /// failing with [`LedgerError::Database`](super::LedgerError::Database). Default 5 s.
    pub busy_timeout: Duration,
    /// Wait for every operation's commit before it returns, with
    /// `synchronous = FULL` (an fsync per commit: survives power loss),
    /// instead of journaling in the background with `NORMAL` (see the
    /// module docs, "Crash safety"). Default `false`.
    pub durable: bool,
    /// Connections for the read-only queries. Default 4.
    pub read_connections: u32,
    /// Checkpoint the write-ahead log from a background task at this
    /// interval, instead of letting SQLite do it inside whichever write
    /// crosses 1,000 pages (which then takes milliseconds: an fsync of the
    /// database file). Default 1 s; `None` keeps SQLite's automatic
    /// checkpoints and spawns no task.
    pub checkpoint_interval: Option<Duration>,
}

impl Default for LedgerOptions {
    fn default() -> Self {
        Self {
            busy_timeout: Duration::from_secs(5),
            durable: false,
            read_connections: 4,
            checkpoint_interval: Some(Duration::from_secs(1)),
        }
    }
}
