//! Bounded compilation: crafted components that make the compiler
//! spend are refused as the component's fault within the default caps, the
//! largest legitimate agents still compile under them, and compiles beyond
//! `max_concurrent_compiles` wait their turn.
//!
//! Every runner here compiles in the `sooth-compile-worker` child process, as
//! a validator does.

#![allow(clippy::unwrap_used)] // a test that expects an error unwraps it

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sooth_runner::{CompileIsolation, ConfigError, LoadError, Runner, RunnerConfig};
use sooth_test_agents::crafted;

fn worker() -> PathBuf {
    env!("CARGO_BIN_EXE_sooth-compile-worker").into()
}

/// The default configuration, compiling in the worker process.
fn defaults() -> RunnerConfig {
    RunnerConfig {
        compile_isolation: CompileIsolation::Subprocess {
            program: worker(),
            args: Vec::new(),
        },
        ..common::config()
    }
}

/// Compiling in the real worker run by the shell `script`, which gets the
/// worker's path and then `args` before the worker's own arguments.
fn wrapped(script: &str, args: &[String]) -> CompileIsolation {
    let mut all = vec![
        "-c".to_owned(),
        script.to_owned(),
        "sh".to_owned(),
        worker().display().to_string(),
    ];
    all.extend_from_slice(args);
    CompileIsolation::Subprocess {
        program: "sh".into(),
        args: all,
    }
}

/// A runner whose worker is wrapped in a shell script that first sleeps
/// `delay`, and appends `start` and `end` lines with nanosecond times to
/// `log` around the real worker: the worker processes' lifetimes, seen from
/// outside the runner.
fn logged(slots: u32, delay: &str, log: &Path, cache: Option<PathBuf>) -> Runner {
    let script = r#"worker=$1; log=$2; delay=$3; shift 3
echo "start $(date +%s%N)" >> "$log"
sleep "$delay"
"$worker" "$@"
status=$?
echo "end $(date +%s%N)" >> "$log"
exit $status"#;
    Runner::new(RunnerConfig {
        compile_isolation: wrapped(script, &[log.display().to_string(), delay.to_owned()]),
        max_concurrent_compiles: slots,
        cache_dir: cache,
        ..common::config()
    })
    .expect("runner")
}

/// The (start, end) times of each worker in `log`, in the order they began.
fn lifetimes(log: &Path) -> Vec<(u128, u128)> {
    let text = std::fs::read_to_string(log).expect("worker log");
    let mut starts = Vec::new();
    let mut ends = Vec::new();
    for line in text.lines() {
        let (what, when) = line.split_once(' ').expect("log line");
        let when: u128 = when.parse().expect("time");
        match what {
            "start" => starts.push(when),
            "end" => ends.push(when),
            other => panic!("unexpected log line {other}"),
        }
    }
    starts.sort_unstable();
    ends.sort_unstable();
    assert_eq!(starts.len(), ends.len(), "every worker ended: {text}");
    starts.into_iter().zip(ends).collect()
}

fn memory_refusal(error: &LoadError) -> bool {
    *error
        == LoadError::CompileMemory {
            limit_bytes: RunnerConfig::default().compile_memory_limit_bytes,
        }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn millions_of_nested_blocks_are_refused_at_the_default_memory_cap() {
    let bytes = crafted::nested_blocks(crafted::NESTED_BLOCKS_DEPTH);
    assert!(bytes.len() > 7_000_000, "{} bytes", bytes.len());
    let runner = Runner::new(defaults()).expect("runner");
    let started = Instant::now();
    let error = runner.load(&bytes).await.unwrap_err();
    assert!(memory_refusal(&error), "{error:?}");
    assert!(
        error.to_string().contains(
            &RunnerConfig::default()
                .compile_memory_limit_bytes
                .to_string()
        ),
        "the message names the limit: {error}"
    );
    // Under the old 8 GiB cap this shape took 1.9 GiB to compile, and over
    // a minute in a test build.
    assert!(
        started.elapsed() < RunnerConfig::default().compile_timeout,
        "refused only after {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_thousand_functions_are_refused_at_the_default_memory_cap() {
    let bytes = crafted::many_functions(crafted::MANY_FUNCTIONS);
    let runner = Runner::new(defaults()).expect("runner");
    let error = runner.load(&bytes).await.unwrap_err();
    assert!(memory_refusal(&error), "{error:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_agents_compile_under_the_default_caps() {
    let runner = Runner::new(defaults()).expect("runner");
    // The Python agent carries CPython: the largest legitimate agent, the
    // one the default caps are measured on.
    for path in [
        sooth_test_agents::python_llm_forecaster(),
        sooth_test_agents::llm_forecaster(),
    ] {
        let bytes = std::fs::read(&path).expect("agent");
        let agent = runner
            .load(&bytes)
            .await
            .unwrap_or_else(|error| panic!("{}: {error}", path.display()));
        assert_eq!(agent.hash(), sooth_runner::content_hash(&bytes));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_one_compile_slot_two_crafted_loads_compile_one_after_the_other() {
    let dir = tempfile::tempdir().expect("temp dir");
    let shapes = [
        crafted::nested_blocks(crafted::NESTED_BLOCKS_DEPTH),
        crafted::nested_blocks(crafted::NESTED_BLOCKS_DEPTH - 1),
    ];
    for slots in [1, 2] {
        let log = dir.path().join(format!("workers-{slots}.log"));
        let runner = logged(slots, "0.5", &log, None);
        let (first, second) = tokio::join!(runner.load(&shapes[0]), runner.load(&shapes[1]));
        for result in [first, second] {
            let error = result.unwrap_err();
            assert!(memory_refusal(&error), "{error:?}");
        }
        let workers = lifetimes(&log);
        assert_eq!(workers.len(), 2);
        let overlapped = workers[1].0 < workers[0].1;
        // Two slots are the control: the log shows workers running at once
        // when they do.
        assert_eq!(overlapped, slots == 2, "{slots} slot(s): {workers:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cached_agent_loads_while_the_only_compile_slot_is_busy() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("workers.log");
    let runner = logged(1, "3", &log, Some(dir.path().join("cache")));
    let agent = std::fs::read(sooth_test_agents::market_baseline()).expect("agent");
    runner.load(&agent).await.expect("compiles");

    let busy = tokio::spawn({
        let runner = runner.clone();
        async move {
            let bytes = crafted::nested_blocks(crafted::NESTED_BLOCKS_DEPTH);
            runner.load(&bytes).await
        }
    });
    // Wait until the crafted compile holds the slot (its worker started).
    while lifetimes_started(&log) < 2 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    runner.load(&agent).await.expect("loads from the cache");
    assert!(
        !busy.is_finished(),
        "the cached load waited for the compile slot"
    );
    let error = busy.await.expect("task").unwrap_err();
    assert!(memory_refusal(&error), "{error:?}");
    assert_eq!(
        lifetimes(&log).len(),
        2,
        "the cached load started no worker"
    );
}

fn lifetimes_started(log: &Path) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|line| line.starts_with("start"))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_cannot_start_is_a_runner_failure() {
    let runner = Runner::new(RunnerConfig {
        compile_isolation: CompileIsolation::Subprocess {
            program: "/nonexistent/sooth-compile-worker".into(),
            args: Vec::new(),
        },
        ..common::config()
    })
    .expect("runner");
    let error = runner.load(&crafted::many_functions(1)).await.unwrap_err();
    assert!(matches!(error, LoadError::Engine(_)), "{error:?}");
}

#[test]
fn compile_slots_must_be_at_least_one() {
    let error = RunnerConfig::from_toml("max_concurrent_compiles = 0", "test").unwrap_err();
    assert!(matches!(error, ConfigError::Invalid(_)), "{error:?}");
    let config = RunnerConfig::from_toml("max_concurrent_compiles = 3", "test").expect("valid");
    assert_eq!(config.max_concurrent_compiles, 3);
}

/// The worker compiles untrusted bytes: it inherits none of the runner's
/// environment (which may hold upstream API keys), only what it is given.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_gets_none_of_the_runners_environment() {
    assert!(
        std::env::var_os("HOME").is_some() || std::env::var_os("CARGO").is_some(),
        "the test process has an environment to leak"
    );
    let dir = tempfile::tempdir().unwrap();
    let seen = dir.path().join("worker-env");
    let script = r#"worker=$1; seen=$2; shift 2
env > "$seen"
exec "$worker" "$@""#;
    let runner = Runner::new(RunnerConfig {
        compile_isolation: wrapped(script, &[seen.display().to_string()]),
        ..common::config()
    })
    .unwrap();
    common::load(&runner, &sooth_test_agents::market_baseline()).await;
    let environment = std::fs::read_to_string(&seen).unwrap();
    let names: Vec<&str> = environment
        .lines()
        .filter_map(|line| line.split_once('=').map(|(name, _)| name))
        .collect();
    for given in ["RAYON_NUM_THREADS", "MALLOC_ARENA_MAX", "RUST_BACKTRACE"] {
        assert!(names.contains(&given), "{given} missing: {names:?}");
    }
    for leaked in ["HOME", "CARGO", "CARGO_MANIFEST_DIR", "RUST_TEST_THREADS"] {
        assert!(
            !names.contains(&leaked),
            "{leaked} reached the worker: {names:?}"
        );
    }
}
