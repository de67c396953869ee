//! What the host keeps for a run stays within a small fixed bound, whatever
//! the agent does with the gateway: measured as this process's resident
//! memory while an agent floods each kind of call until it is killed.
//!
//! This file is its own test binary with a single test, so that nothing
//! else runs in the process while it measures.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::{event, load, run, run_with, scripted};
use sooth_runner::{RunOutcome, Runner, RunnerConfig};
use sooth_test_agents::hostile;

/// The most a flooding run may add to the host's resident memory.
const BOUND_BYTES: u64 = 64 << 20;

fn resident_bytes() -> u64 {
    // statm's second field is resident pages.
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|field| field.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// Samples resident memory every millisecond until stopped; returns the peak.
struct PeakSampler {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    thread: std::thread::JoinHandle<()>,
}

impl PeakSampler {
    fn start() -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(resident_bytes()));
        let (stopping, peaking) = (stop.clone(), peak.clone());
        let thread = std::thread::spawn(move || {
            while !stopping.load(Ordering::Relaxed) {
                peaking.fetch_max(resident_bytes(), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        Self { stop, peak, thread }
    }

    fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap();
        self.peak.load(Ordering::Relaxed).max(resident_bytes())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_floods_leave_host_memory_within_a_fixed_bound() {
    assert!(resident_bytes() > 0, "this test reads /proc/self/statm");
    // The shipped defaults: the ceiling on calls and the records kept.
    let runner = Runner::new(RunnerConfig {
        max_concurrent_runs: 4,
        ..RunnerConfig::default()
    })
    .unwrap();
    let agent = load(&runner, &hostile()).await;
    // Long enough that keeping a record per call would pass the bound.
    let limit = Some(Duration::from_secs(6));
    // Warm up the pool slot, the allocator and the agent's own memory, so
    // that the baseline is the host at work, not at rest.
    assert_eq!(
        run(&runner, &agent, &event("warm", "fine"))
            .await
            .outcome
            .probability(),
        Some(0.42)
    );
    let warm = run_with(
        &runner,
        &agent,
        &event("warm", "long-name-loop"),
        scripted(""),
        Some(Duration::from_millis(300)),
    )
    .await;
    assert!(matches!(warm.outcome, RunOutcome::Timeout { .. }));

    for title in [
        "chat-loop",
        "search-loop",
        "call-loop",
        "long-name-loop",
        "handle-flood",
    ] {
        let baseline = resident_bytes();
        let sampler = PeakSampler::start();
        let report = run_with(&runner, &agent, &event("e", title), scripted(""), limit).await;
        let peak = sampler.finish();
        let grown = peak.saturating_sub(baseline);
        eprintln!(
            "{title}: {} calls, peak {:.1} MiB above a baseline of {:.1} MiB",
            report.gateway.call_count(),
            grown as f64 / f64::from(1 << 20),
            baseline as f64 / f64::from(1 << 20)
        );
        assert!(
            grown < BOUND_BYTES,
            "{title}: the host grew by {grown} bytes, over the {BOUND_BYTES} byte bound"
        );
        if title == "handle-flood" {
            assert!(
                matches!(report.outcome, RunOutcome::Trap { .. }),
                "{:?}",
                report.outcome
            );
        } else {
            assert_eq!(
                report.outcome,
                RunOutcome::Timeout { limit_ms: 6000 },
                "{title}"
            );
            // Thousands of calls: far past the 64 records kept, so that keeping one per call
            // would show. (A long name costs the unoptimized test build ~0.6 ms a call, so the
            // slowest flood makes about 10,000 in its 6 s.)
            assert!(
                report.gateway.call_count() > 5_000,
                "{title}: the flood ran"
            );
            assert!(report.gateway.calls.len() <= 64, "{title}");
        }
    }
}
