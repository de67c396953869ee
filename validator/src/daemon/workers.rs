//! The daemon as a scheduler for runner workers: a pass's owed runs handed to the workers
//! through the store, with their components, and the wait until the workers have recorded
//! them.

use std::collections::BTreeSet;
use std::time::Duration;

use super::{Daemon, DaemonError, Owed, OwedRuns};
use crate::causes::with_causes;
use crate::components::Components;
use crate::store::{QueuedRun, RunOwner};

impl Daemon {
    /// Hands `jobs` to the runner workers: their components where the workers can fetch them,
    /// then the runs in the queue.
    pub(super) async fn hand_to_workers(
        &self,
        jobs: Vec<Owed>,
        components: &Components,
    ) -> Result<OwedRuns, DaemonError> {
        let hashes: BTreeSet<&str> = jobs
            .iter()
            .map(|owed| owed.job().version_hash.as_str())
            .collect();
        for hash in hashes {
            if !self.store.has_component(hash).await? {
                let bytes = components
                    .read(hash)
                    .await
                    .map_err(|error| DaemonError::Component(with_causes(&error)))?;
                self.store.put_component(hash, &bytes).await?;
            }
        }
        let queued: Vec<QueuedRun> = jobs
            .into_iter()
            .map(|owed| {
                let (owner, job) = match owed {
                    Owed::Miner(job) => (
                        RunOwner::Miner {
                            hotkey: job.hotkey.clone(),
                        },
                        job,
                    ),
                    Owed::Benchmark { entry, job } => (RunOwner::Benchmark { entry }, job),
                };
                QueuedRun {
                    run_id: job.run_id,
                    event_id: job.event.event.id,
                    owner,
                    component_hash: job.version_hash,
                    gateway_name: job.hotkey,
                    uid: job.uid,
                }
            })
            .collect();
        let runs = queued
            .iter()
            .filter(|run| matches!(run.owner, RunOwner::Miner { .. }))
            .count();
        // Listening before the runs are queued: no record can come before the listener. The
        // listener is kept from pass to pass (a connection of its own).
        let mut records = self.records.lock().await;
        if records.is_none() {
            match self.store.records_listener().await {
                Ok(listener) => *records = listener,
                Err(error) => {
                    tracing::warn!(error = %with_causes(&error),
                                   "cannot listen for the workers' records; looking every poll");
                }
            }
        }
        let count = self.store.enqueue_runs(&queued).await?;
        let mut waited = std::time::Instant::now();
        loop {
            let queue = self.store.queue_counts().await?;
            if queue.waiting + queue.leased == 0 {
                break;
            }
            if waited.elapsed() >= WORKERS_NOTICE {
                tracing::info!(
                    waiting = queue.waiting,
                    leased = queue.leased,
                    "waiting for the runner workers"
                );
                waited = std::time::Instant::now();
            }
            let heard = async {
                match records.as_mut() {
                    Some(listener) => listener.heard().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                result = heard => {
                    if result.is_err() {
                        *records = None;
                    }
                }
                () = tokio::time::sleep(WORKERS_POLL) => {}
            }
        }
        Ok(OwedRuns {
            runs,
            benchmark_runs: queued.len() - runs,
            queued: count,
            failed: 0,
        })
    }
}

/// How often a scheduler looks whether the workers have recorded the runs it handed out, when
/// no notification says so first.
const WORKERS_POLL: Duration = Duration::from_millis(100);
/// How often a scheduler waiting for its workers says so.
const WORKERS_NOTICE: Duration = Duration::from_secs(30);
