//! A new version's runs on the probe set.

use std::sync::Arc;

use futures::StreamExt as _;

use super::probe_set::ProbeSet;
use crate::executor::{RunExecutor, RunJob, RunStatus};
use crate::sandbox::SandboxExecutor;
use crate::store::{ProbeRun, VerificationClaim};

/// What came of the probe runs.
pub(super) struct ProbeOutcome {
    /// The runs that finished, in no particular order.
    pub runs: Vec<ProbeRun>,
    /// Why the version is rejected, when too many runs failed.
    pub refusal: Option<String>,
}

/// Runs `claim`'s version on every probe event, `concurrency` at a time. Stops, and says why,
/// once more than `max_failures` runs have failed: an agent that times out on every event
/// does not hold the queue for the whole set.
pub(super) async fn run_probe_set(
    executor: &Arc<SandboxExecutor>,
    probe: &ProbeSet,
    claim: &VerificationClaim,
    uid: u16,
    concurrency: usize,
    max_failures: usize,
) -> ProbeOutcome {
    // Owned jobs and futures: the stream must not borrow, or its future is not `Send` for
    // every lifetime (what spawning the worker needs).
    let executions: Vec<_> = probe
        .events()
        .iter()
        .map(|record| {
            let job = RunJob {
                run_id: format!(
                    "probe/{}/{}/{}",
                    claim.version, claim.hotkey, record.event.id
                ),
                event: record.clone(),
                hotkey: claim.hotkey.clone(),
                uid,
                version_hash: claim.hash.clone(),
            };
            let event_id = record.event.id.clone();
            let executor = Arc::clone(executor);
            async move { (event_id, executor.execute(job).await) }
        })
        .collect();
    let mut finished = futures::stream::iter(executions).buffer_unordered(concurrency.max(1));
    let mut runs = Vec::with_capacity(probe.events().len());
    let mut failures: Vec<RunStatus> = Vec::new();
    while let Some((event_id, run)) = finished.next().await {
        if run.status != RunStatus::Ok {
            failures.push(run.status);
        }
        runs.push(ProbeRun {
            event_id,
            status: run.status,
            prediction: run.prediction,
            duration_ms: run.duration_ms,
        });
        if failures.len() > max_failures {
            return ProbeOutcome {
                runs,
                refusal: Some(format!(
                    "the agent failed on {} of the probe events (more than the {max_failures} \
                     allowed), the first as {}; its probe runs were stopped",
                    failures.len(),
                    failures[0].as_str()
                )),
            };
        }
    }
    ProbeOutcome {
        runs,
        refusal: None,
    }
}
