//! Runner benchmark: prints the figures the README reports.
//!
//! ```text
//! cargo bench -p sooth-runner --bench runner
//! ```
//!
//! Scenarios that report peak memory run in a child process of their own, so
//! that one scenario's peak does not hide in another's.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sooth_runner::{Agent, AgentEvent, RunSpec, Runner, RunnerConfig, ScriptedGateway};

const SCENARIO_ENV: &str = "SOOTH_BENCH_SCENARIO";

fn event(i: usize, title: &str) -> AgentEvent {
    let mut event = AgentEvent::new(format!("bench-{i}"), title, 1_750_000_000);
    event.metadata.insert("market_prob".into(), 0.61.into());
    event
}

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    let index = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[index]
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<f64>()
                .ok()
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

async fn load(runner: &Runner, path: &std::path::Path) -> Agent {
    let bytes = std::fs::read(path).expect("agent file");
    runner.load(&bytes).await.expect("agent loads")
}

async fn run_once(runner: &Runner, agent: &Agent, event: &AgentEvent, spec: &RunSpec) -> Duration {
    let report = runner.run(agent, event, spec).await.expect("valid event");
    assert!(
        report.outcome.probability().is_some(),
        "bench run failed: {:?}",
        report.outcome
    );
    report.duration
}

async fn sequential(runner: &Runner, agent: &Agent, runs: usize) -> (Duration, Duration) {
    let spec = RunSpec::new("bench", Arc::new(ScriptedGateway::empty()));
    let ev = event(0, "bench");
    for _ in 0..runs.min(50) {
        run_once(runner, agent, &ev, &spec).await;
    }
    let mut samples = Vec::with_capacity(runs);
    for _ in 0..runs {
        let started = Instant::now();
        run_once(runner, agent, &ev, &spec).await;
        samples.push(started.elapsed());
    }
    (
        percentile(&mut samples, 0.5),
        percentile(&mut samples, 0.99),
    )
}

async fn concurrent(
    runner: &Runner,
    agent: &Agent,
    runs: usize,
    title: &str,
    gateway: Arc<ScriptedGateway>,
) -> Duration {
    let started = Instant::now();
    let tasks: Vec<_> = (0..runs)
        .map(|i| {
            let (runner, agent, gateway) = (runner.clone(), agent.clone(), gateway.clone());
            let ev = event(i, title);
            tokio::spawn(async move {
                let spec = RunSpec::new(format!("run-{i}"), gateway);
                run_once(&runner, &agent, &ev, &spec).await
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("task");
    }
    started.elapsed()
}

fn config() -> RunnerConfig {
    RunnerConfig {
        max_concurrent_runs: 1000,
        ..RunnerConfig::default()
    }
}

async fn rust_agent() {
    let runner = Runner::new(config()).expect("runner");
    let agent = load(&runner, &sooth_test_agents::market_baseline()).await;
    println!(
        "rust example agent (market-baseline, {} KB)",
        agent.size() / 1024
    );
    let (p50, p99) = sequential(&runner, &agent, 5000).await;
    println!(
        "  sequential: p50 {:.1} us/run, p99 {:.1} us/run (target p50 <= 60 us)",
        micros(p50),
        micros(p99)
    );
    let mut per_run = Vec::new();
    // The first batch warms the pool up and is not counted.
    for batch in 0..6 {
        let wall = concurrent(
            &runner,
            &agent,
            1000,
            "bench",
            Arc::new(ScriptedGateway::empty()),
        )
        .await;
        if batch > 0 {
            per_run.push(wall / 1000);
        }
    }
    let median = percentile(&mut per_run, 0.5);
    println!(
        "  1,000 concurrent: {:.1} us/run amortized (median of 5 batches; target <= 60 us)",
        micros(median)
    );
}

async fn python_agent() {
    let runner = Runner::new(config()).expect("runner");
    let path = sooth_test_agents::python_llm_forecaster();
    let bytes = std::fs::read(&path).expect("agent");
    let started = Instant::now();
    let agent = runner.load(&bytes).await.expect("loads");
    let compile = started.elapsed();
    println!(
        "python example agent (llm-forecaster-py, {:.1} MB)",
        bytes.len() as f64 / 1e6
    );
    println!(
        "  compile (in-process, uncached): {:.2} s",
        compile.as_secs_f64()
    );
    let gateway = Arc::new(
        ScriptedGateway::from_str(
            "[[rule]]\nservice = \"chat\"\ncontent = \"0.7\"\n",
            false,
            "bench",
        )
        .expect("script"),
    );
    let spec = RunSpec::new("bench", gateway);
    let ev = event(0, "bench");
    for _ in 0..5 {
        run_once(&runner, &agent, &ev, &spec).await;
    }
    let mut samples = Vec::new();
    for _ in 0..200 {
        let started = Instant::now();
        run_once(&runner, &agent, &ev, &spec).await;
        samples.push(started.elapsed());
    }
    let p50 = percentile(&mut samples, 0.5);
    println!(
        "  sequential, one gateway call each: p50 {:.2} ms/run (target <= 3 ms)",
        p50.as_secs_f64() * 1e3
    );
}

async fn cached_load() {
    let dir = std::env::temp_dir().join(format!("sooth-bench-cache-{}", std::process::id()));
    let config = RunnerConfig {
        cache_dir: Some(dir.clone()),
        ..config()
    };
    for (name, path) in [
        ("rust", sooth_test_agents::market_baseline()),
        ("python", sooth_test_agents::python_llm_forecaster()),
    ] {
        let bytes = std::fs::read(&path).expect("agent");
        Runner::new(config.clone())
            .expect("runner")
            .load(&bytes)
            .await
            .expect("compiles");
        let mut samples = Vec::new();
        for _ in 0..7 {
            // A fresh runner each time: nothing is in memory, only on disk.
            let runner = Runner::new(config.clone()).expect("runner");
            let started = Instant::now();
            runner.load(&bytes).await.expect("loads from cache");
            samples.push(started.elapsed());
        }
        let p50 = percentile(&mut samples, 0.5);
        println!(
            "cached component load ({name}): p50 {:.1} ms (target <= 50 ms)",
            p50.as_secs_f64() * 1e3
        );
    }
    let _ = std::fs::remove_dir_all(dir);
}

async fn gateway_waits() {
    let runner = Runner::new(config()).expect("runner");
    let agent = load(&runner, &sooth_test_agents::hostile()).await;
    let gateway = Arc::new(
        ScriptedGateway::from_str(
            "[[rule]]\nservice = \"chat\"\ndelay_ms = 1000\ncontent = \"0.5\"\n",
            false,
            "bench",
        )
        .expect("script"),
    );
    let wall = concurrent(&runner, &agent, 1000, "gateway", gateway).await;
    println!(
        "1,000 concurrent runs each waiting 1 s on the gateway: {:.3} s wall (target <= 1.5 s), peak RSS {:.0} MiB (target <= 1024)",
        wall.as_secs_f64(),
        peak_rss_mib()
    );
}

async fn runaway() {
    let runner = Runner::new(config()).expect("runner");
    let agent = load(&runner, &sooth_test_agents::hostile()).await;
    let limit = Duration::from_millis(500);
    let mut worst = Duration::ZERO;
    for round in 0..3 {
        let tasks: Vec<_> = (0..4)
            .map(|i| {
                let (runner, agent) = (runner.clone(), agent.clone());
                let ev = event(round * 10 + i, "spin");
                tokio::spawn(async move {
                    let spec = RunSpec {
                        timeout: Some(limit),
                        ..RunSpec::new("spin", Arc::new(ScriptedGateway::empty()))
                    };
                    let report = runner.run(&agent, &ev, &spec).await.expect("valid");
                    assert_eq!(report.outcome.status(), "timeout");
                    report.duration
                })
            })
            .collect();
        for task in tasks {
            worst = worst.max(task.await.expect("task").saturating_sub(limit));
        }
    }
    println!(
        "runaway agents (4 concurrent spinners x 3 rounds): stopped at most {:.1} ms after the deadline (target <= 50 ms)",
        worst.as_secs_f64() * 1e3
    );
}

fn in_child(scenario: &str) {
    let exe = std::env::current_exe().expect("bench executable");
    let status = std::process::Command::new(exe)
        .env(SCENARIO_ENV, scenario)
        .status()
        .expect("child bench");
    assert!(status.success(), "scenario {scenario} failed");
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio");
    match std::env::var(SCENARIO_ENV).as_deref() {
        Ok("rust") => runtime.block_on(rust_agent()),
        Ok("python") => runtime.block_on(python_agent()),
        Ok("cache") => runtime.block_on(cached_load()),
        Ok("gateway") => runtime.block_on(gateway_waits()),
        Ok("runaway") => runtime.block_on(runaway()),
        _ => {
            // Build the agents once, outside any measurement.
            sooth_test_agents::market_baseline();
            sooth_test_agents::hostile();
            sooth_test_agents::python_llm_forecaster();
            println!(
                "sooth runner benchmark ({} cores)",
                std::thread::available_parallelism().map_or(0, |n| n.get())
            );
            for scenario in ["rust", "python", "cache", "gateway", "runaway"] {
                in_child(scenario);
            }
        }
    }
}
