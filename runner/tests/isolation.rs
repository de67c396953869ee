//! Compiling untrusted bytes in a child process bounded in time and memory.

#![allow(clippy::unwrap_used)] // a test that expects an error unwraps it

mod common;

use std::time::Duration;

use sooth_runner::{CompileIsolation, LoadError, Runner, RunnerConfig};
use sooth_test_agents::{hostile, python_llm_forecaster};

fn isolated(memory: u64, timeout: Duration) -> Runner {
    Runner::new(RunnerConfig {
        compile_isolation: CompileIsolation::Subprocess {
            program: env!("CARGO_BIN_EXE_sooth-compile-worker").into(),
            args: Vec::new(),
        },
        compile_memory_limit_bytes: memory,
        compile_timeout: timeout,
        ..common::config()
    })
    .expect("runner")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_component_compiled_in_a_child_process_runs() {
    let runner = isolated(4 << 30, Duration::from_secs(60));
    let agent = common::load(&runner, &hostile()).await;
    let report = common::run(&runner, &agent, &common::event("e", "fine")).await;
    assert_eq!(report.outcome.probability(), Some(0.42));

    let error = runner.load(b"\0asm\x0d\0\x01\0garbage").await.unwrap_err();
    assert!(matches!(error, LoadError::Invalid(_)), "{error:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compilation_over_its_memory_cap_is_refused() {
    let runner = isolated(96 << 20, Duration::from_secs(60));
    let bytes = std::fs::read(python_llm_forecaster()).expect("agent");
    let error = runner.load(&bytes).await.unwrap_err();
    assert_eq!(
        error,
        LoadError::CompileMemory {
            limit_bytes: 96 << 20
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compilation_over_its_time_limit_is_killed() {
    let runner = isolated(4 << 30, Duration::from_millis(200));
    let bytes = std::fs::read(python_llm_forecaster()).expect("agent");
    let error = runner.load(&bytes).await.unwrap_err();
    assert_eq!(error, LoadError::CompileTimeout(Duration::from_millis(200)));
}
