//! Shared set-up of the runner's integration tests.
#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sooth_runner::{Agent, AgentEvent, RunReport, RunSpec, Runner, RunnerConfig, ScriptedGateway};

pub fn config() -> RunnerConfig {
    RunnerConfig {
        max_concurrent_runs: 128,
        memory_limit_bytes: 64 << 20,
        ..RunnerConfig::default()
    }
}

pub fn runner() -> Runner {
    Runner::new(config()).expect("runner starts")
}

pub async fn load(runner: &Runner, path: &Path) -> Agent {
    let bytes = std::fs::read(path).expect("agent is readable");
    runner.load(&bytes).await.expect("agent loads")
}

pub fn event(id: &str, title: &str) -> AgentEvent {
    AgentEvent::new(id, title, 1_750_000_000)
}

pub fn scripted(toml: &str) -> Arc<ScriptedGateway> {
    Arc::new(ScriptedGateway::from_str(toml, false, "test script").expect("script parses"))
}

pub async fn run_with(
    runner: &Runner,
    agent: &Agent,
    event: &AgentEvent,
    gateway: Arc<ScriptedGateway>,
    timeout: Option<Duration>,
) -> RunReport {
    let spec = RunSpec {
        timeout,
        ..RunSpec::new(format!("run-{}", event.id), gateway)
    };
    runner
        .run(agent, event, &spec)
        .await
        .expect("event is valid")
}

pub async fn run(runner: &Runner, agent: &Agent, event: &AgentEvent) -> RunReport {
    run_with(
        runner,
        agent,
        event,
        Arc::new(ScriptedGateway::empty()),
        None,
    )
    .await
}

/// The reason of an `InvalidOutput` outcome; panics on any other outcome.
pub fn invalid_reason(report: &RunReport) -> String {
    match &report.outcome {
        sooth_runner::RunOutcome::InvalidOutput { reason } => reason.clone(),
        other => panic!("expected invalid output, got {other:?}"),
    }
}

/// The reasoning of a prediction; panics on any other outcome.
pub fn reasoning(report: RunReport) -> String {
    match report.outcome {
        sooth_runner::RunOutcome::Prediction {
            reasoning: Some(r), ..
        } => r,
        other => panic!("expected a prediction with reasoning, got {other:?}"),
    }
}
