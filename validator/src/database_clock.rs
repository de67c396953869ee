//! The database's clock as a host reads it: the host's clock plus the offset last measured
//! against the database. Runner workers verify by it, so that verification leases mean the same
//! on hosts whose clocks disagree, as run leases do (those are measured in SQL).
//!
//! This module owns the offset and its measurement; it must not read the database otherwise.

use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, TimeDelta, Utc};

use crate::clock::{Clock, Sleep, SystemClock};
use crate::store::{Store, StoreError};

/// The database's clock, read without a round trip.
#[derive(Debug, Default)]
pub struct DatabaseClock {
    /// Database minus host, in milliseconds.
    offset_ms: AtomicI64,
}

impl DatabaseClock {
    /// A clock set against `store`'s database now.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the database's clock cannot be read.
    pub async fn measured(store: &Store) -> Result<Self, StoreError> {
        let clock = Self::default();
        clock.measure(store).await?;
        Ok(clock)
    }

    /// Measures the offset again (the host's clock may have been stepped since), taking the
    /// middle of the round trip as the instant the database read its clock.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the database's clock cannot be read; the offset stays as it was.
    pub async fn measure(&self, store: &Store) -> Result<(), StoreError> {
        let before = Utc::now();
        let database = store.database_now().await?;
        let after = Utc::now();
        let host = before + (after - before) / 2;
        self.offset_ms
            .store((database - host).num_milliseconds(), Ordering::Relaxed);
        Ok(())
    }

    /// The offset last measured, database minus host.
    #[must_use]
    pub fn offset(&self) -> TimeDelta {
        TimeDelta::milliseconds(self.offset_ms.load(Ordering::Relaxed))
    }
}

impl Clock for DatabaseClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now() + self.offset()
    }

    fn sleep_until(&self, instant: DateTime<Utc>) -> Sleep {
        SystemClock::new().sleep_until(instant - self.offset())
    }
}
