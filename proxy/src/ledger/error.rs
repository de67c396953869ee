//! What can go wrong in the ledger.

use std::path::PathBuf;
use std::sync::Arc;

use sooth_migrations::{DatabaseError, OpenError};

use super::{BudgetScope, ReservationId, ReservationState};

/// Errors of the ledger.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// The database could not be opened or its schema brought up to date.
    #[error("cannot open the database of the spend ledger")]
    Open(#[from] OpenError),
    /// The shared ledger's PostgreSQL database could not be reached or
    /// brought up to date.
    #[error("cannot open the shared spend ledger at {url}")]
    Connect {
        /// The database's URL, its password replaced by `***`.
        url: String,
        /// Why.
        #[source]
        source: OpenError,
    },
    /// The reservation does not fit under a cap; nothing was reserved.
    #[error(
        "budget exceeded ({scope} cap): cap {cap_usd} USD, committed {committed_usd} USD, \
         requested {requested_usd} USD"
    )]
    BudgetExceeded {
        /// Which cap refused it (the run cap is checked first).
        scope: BudgetScope,
        /// The cap, in USD.
        cap_usd: f64,
        /// What was already committed in that scope (settled plus reserved), in USD.
        committed_usd: f64,
        /// The amount asked for (after rounding up to whole micro-dollars), in USD.
        requested_usd: f64,
    },
    /// No reservation has this id.
    #[error("unknown reservation {0}")]
    UnknownReservation(ReservationId),
    /// The reservation was already settled, released or dropped as stale.
    #[error("reservation {id} is already closed ({state})")]
    AlreadyClosed {
        /// The reservation.
        id: ReservationId,
        /// How it was closed.
        state: ReservationState,
    },
    /// An amount or cap that is negative, not finite, or absurdly large.
    #[error("invalid {field}: {value}")]
    InvalidAmount {
        /// Which argument.
        field: &'static str,
        /// The value given.
        value: f64,
    },
    /// An empty key (run id, miner, service) or a day not of the form `YYYY-MM-DD`.
    #[error("invalid {field}: {value:?}")]
    InvalidField {
        /// Which argument.
        field: &'static str,
        /// The value given.
        value: String,
    },
    /// The stored totals disagree with the reservations (a bug, or the file
    /// was edited by hand); nothing was changed.
    #[error("ledger inconsistent: {0}")]
    Inconsistent(String),
    /// Another ledger (in this process or another) has the file open.
    #[error("the ledger {} is in use by another gateway", .0.display())]
    InUse(PathBuf),
    /// The ledger cannot write its journal (its file on a full or read-only
    /// disk, or a shared ledger's database out of reach) and refuses
    /// reservations until it can.
    #[error("the ledger cannot write its journal and refuses reservations until it can")]
    Unavailable(#[source] Arc<DatabaseError>),
    /// This gateway's lease on the shared ledger ran out (it could not
    /// reach the database for longer than the lease) and its slices of the
    /// caps were taken back; the reservation was refused. The gateway goes
    /// on as a new instance with slices of its own.
    #[error(
        "the gateway's lease on the shared ledger ran out and its budget slices were taken \
         back; refused, try again"
    )]
    LeaseLost,
    /// Other gateways kept taking the budget this reservation was granted
    /// before it could use it; nothing was reserved.
    #[error("the budget is contended by other gateways; refused, try again")]
    Contended,
    /// The ledger was closed.
    #[error("the ledger is closed")]
    Closed,
    /// The lock file beside the ledger's file cannot be opened or locked.
    #[error("cannot lock the ledger through {}", .path.display())]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The database failed (I/O, lock wait beyond `busy_timeout`, ...).
    #[error("the spend ledger's database failed")]
    Database(#[source] DatabaseError),
}

impl From<sqlx::Error> for LedgerError {
    fn from(error: sqlx::Error) -> Self {
        Self::Database(error.into())
    }
}
