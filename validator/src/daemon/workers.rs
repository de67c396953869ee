//! The daemon as a scheduler for runner workers: a pass's owed runs handed to the workers
//! through the store, with their components, and the wait until the workers have recorded
//! them.

use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

use tokio::sync::Mutex;

use super::{Daemon, DaemonError, Owed, OwedRuns};
use crate::causes::with_causes;
use crate::components::Components;
use crate::store::{QueuedRun, RunOwner};
use crate::wakeups::Wakeups;

/// What the hand-off to the workers keeps from pass to pass.
pub(super) struct WorkerHandoff {
    /// Where the components the workers fetch are read from.
    components: Components,
    state: Mutex<HandoffState>,
}

struct HandoffState {
    /// Hears the workers' records (a connection of its own, kept between passes).
    records: Wakeups,
    /// The components known to be in the store: each is looked for there once per process.
    stored: HashSet<String>,
}

impl WorkerHandoff {
    pub(super) fn new(components: Components) -> Self {
        Self {
            components,
            state: Mutex::new(HandoffState {
                records: Wakeups::none("the workers' records"),
                stored: HashSet::new(),
            }),
        }
    }
}

impl Daemon {
    /// Hands `jobs` to the runner workers: their components where the workers can fetch them,
    /// then the runs in the queue.
    pub(super) async fn hand_to_workers(
        &self,
        jobs: Vec<Owed>,
        handoff: &WorkerHandoff,
    ) -> Result<OwedRuns, DaemonError> {
        let mut state = handoff.state.lock().await;
        let hashes: BTreeSet<&str> = jobs
            .iter()
            .map(|owed| owed.job().version_hash.as_str())
            .filter(|hash| !state.stored.contains(*hash))
            .collect();
        for hash in hashes {
            if !self.store.has_component(hash).await? {
                let bytes = handoff
                    .components
                    .read(hash)
                    .await
                    .map_err(|error| DaemonError::Component(with_causes(&error)))?;
                self.store.put_component(hash, &bytes).await?;
            }
            state.stored.insert(hash.to_owned());
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
        // Listening before the runs are queued: no record can come before the listener.
        if !state.records.is_listening() {
            state.records =
                Wakeups::from_opened(self.store.records_listener().await, "the workers' records");
        }
        let count = self.store.enqueue_runs(&queued).await?;
        let mut waited = std::time::Instant::now();
        loop {
            if self.store.queue_is_empty().await? {
                break;
            }
            if waited.elapsed() >= WORKERS_NOTICE {
                let queue = self.store.queue_counts().await?;
                tracing::info!(
                    waiting = queue.waiting,
                    leased = queue.leased,
                    "waiting for the runner workers"
                );
                waited = std::time::Instant::now();
            }
            tokio::select! {
                () = state.records.next() => {}
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
