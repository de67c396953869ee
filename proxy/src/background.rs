//! The gateway's background maintenance tasks (the cache's purge and key
//! index catch-up, the ledger's WAL checkpoints, the linked keys' reload):
//! one periodic loop for all of them, and the guard that stops one.

use std::future::Future;
use std::time::Duration;

use crate::error_chain::Chain;

/// Aborts a background maintenance task when dropped (its owner keeps it in an `Arc`, so the
/// task stops when the last clone goes).
#[derive(Debug)]
pub(crate) struct BackgroundTask(pub(crate) tokio::task::AbortHandle);

impl Drop for BackgroundTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// When a periodic task first runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FirstRun {
    /// At once, then every period.
    Now,
    /// After one period: what it does was just done by its owner's open.
    AfterOnePeriod,
}

/// Runs `work` every `every` until `pool` closes (its owner closed it);
/// late ticks are delayed, not bunched. A failure is logged as
/// `failure` and the task carries on, unless the pool closed meanwhile,
/// which is what made it fail.
pub(crate) fn spawn_periodic<DB, F, Fut, E>(
    pool: sqlx::Pool<DB>,
    every: Duration,
    first: FirstRun,
    failure: &'static str,
    mut work: F,
) -> BackgroundTask
where
    DB: sqlx::Database,
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), E>> + Send,
    E: std::error::Error + 'static,
{
    let task = tokio::spawn(async move {
        let start = match first {
            FirstRun::Now => tokio::time::Instant::now(),
            FirstRun::AfterOnePeriod => tokio::time::Instant::now() + every,
        };
        let mut tick = tokio::time::interval_at(start, every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if pool.is_closed() {
                break;
            }
            if let Err(error) = work().await {
                if pool.is_closed() {
                    break;
                }
                tracing::warn!(error = %Chain(&error), "{failure}");
            }
        }
    });
    BackgroundTask(task.abort_handle())
}
