//! The example agents, the scripted gateway, the compile cache and the
//! configuration, through the runner's public API.

#![allow(clippy::unwrap_used)] // a test that expects an error unwraps it

mod common;

use std::sync::Arc;

use common::{event, load, run, run_with, runner, scripted};
use sooth_runner::{RunOutcome, Runner, RunnerConfig, ScriptedGateway};
use sooth_test_agents::{llm_forecaster, market_baseline, python_llm_forecaster};

fn with_market(id: &str, market: f64) -> sooth_runner::AgentEvent {
    let mut event = event(id, "Will the market be right?");
    event.metadata.insert("market_prob".into(), market.into());
    event
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn market_baseline_forecasts_the_market_else_the_base_rate() {
    let runner = runner();
    let agent = load(&runner, &market_baseline()).await;
    let report = run(&runner, &agent, &with_market("m", 0.73)).await;
    assert_eq!(report.outcome.probability(), Some(0.73));
    let report = run(&runner, &agent, &event("n", "No market here")).await;
    assert_eq!(report.outcome.probability(), Some(0.35));
    assert_eq!(report.gateway.call_count(), 0);
    assert_eq!(agent.hash().len(), 64);
}

const ANSWERS: &str = r#"
[[rule]]
service = "chat"
contains = "flaky"
times = 1
error = "rate-limited"
retry_after_ms = 10

[[rule]]
service = "chat"
contains = "broken"
error = "not-found"
message = "no such model"

[[rule]]
service = "chat"
model = "deepseek-ai/DeepSeek-V3"
cost_usd = 0.0003
input_tokens = 120
output_tokens = 4
content = "Considering everything, probability: 0.72"
"#;

async fn check_llm_forecaster(path: &std::path::Path) {
    let runner = runner();
    let agent = load(&runner, path).await;
    let gateway = scripted(ANSWERS);

    let plain = run_with(
        &runner,
        &agent,
        &with_market("a", 0.4),
        gateway.clone(),
        None,
    )
    .await;
    assert_eq!(
        plain.outcome.probability(),
        Some(0.72),
        "{:?} {}",
        plain.outcome,
        plain.logs.text
    );
    assert_eq!(plain.gateway.call_count(), 1);
    assert_eq!(plain.gateway.calls[0].service, "chat");
    assert_eq!(plain.gateway.calls[0].status, "ok");
    assert!((plain.gateway.cost_usd() - 0.0003).abs() < 1e-12);

    let mut flaky = with_market("b", 0.4);
    flaky.title = "A flaky question".into();
    let retried = run_with(&runner, &agent, &flaky, gateway.clone(), None).await;
    assert_eq!(retried.outcome.probability(), Some(0.72));
    let statuses: Vec<_> = retried
        .gateway
        .calls
        .iter()
        .map(|c| c.status.as_str())
        .collect();
    assert_eq!(
        statuses,
        ["rate-limited", "ok"],
        "the agent retried after the rate limit"
    );

    let mut broken = with_market("c", 0.4);
    broken.title = "A broken question".into();
    let fallback = run_with(&runner, &agent, &broken, gateway, None).await;
    assert_eq!(
        fallback.outcome.probability(),
        Some(0.4),
        "falls back on the market price"
    );
    assert!(
        fallback.logs.text.contains("no such model"),
        "logs: {}",
        fallback.logs.text
    );
    assert_eq!(fallback.gateway.cost_usd(), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_llm_forecaster_uses_the_gateway_and_falls_back() {
    check_llm_forecaster(&llm_forecaster()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_llm_forecaster_behaves_like_the_rust_one() {
    check_llm_forecaster(&python_llm_forecaster()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compile_cache_survives_restarts_and_rejects_corrupt_entries() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = RunnerConfig {
        cache_dir: Some(dir.path().to_owned()),
        ..common::config()
    };
    let bytes = std::fs::read(market_baseline()).expect("agent");

    let first = Runner::new(config.clone()).expect("runner");
    let agent = first.load(&bytes).await.expect("loads");
    let entry = dir.path().join(format!("{}.cwasm", agent.hash()));
    assert!(entry.exists(), "the compiled component is cached");
    drop(first);

    // A fresh runner (a restart) loads the entry and runs it.
    let second = Runner::new(config.clone()).expect("runner");
    let agent = second.load(&bytes).await.expect("loads from cache");
    assert_eq!(
        run(&second, &agent, &with_market("x", 0.6))
            .await
            .outcome
            .probability(),
        Some(0.6)
    );

    // Flip one byte in the artifact: the entry is refused and recompiled.
    let entry_tag = entry.with_extension("tag");
    assert!(entry_tag.exists());
    let mut cached = std::fs::read(&entry).expect("entry");
    let last = cached.len() - 1;
    cached[last] ^= 0xff;
    std::fs::write(&entry, &cached).expect("corrupt");
    let agent = second.load(&bytes).await.expect("recompiles");
    assert_eq!(
        run(&second, &agent, &with_market("y", 0.3))
            .await
            .outcome
            .probability(),
        Some(0.3)
    );
    assert!(
        std::fs::read(&entry).expect("entry") != cached,
        "the corrupt entry was rewritten"
    );

    // An entry from another cache (another key) is foreign and not trusted.
    let other_dir = tempfile::tempdir().expect("tempdir");
    let other = Runner::new(RunnerConfig {
        cache_dir: Some(other_dir.path().to_owned()),
        ..common::config()
    })
    .expect("runner");
    std::fs::copy(
        &entry,
        other_dir.path().join(entry.file_name().expect("name")),
    )
    .expect("copy");
    std::fs::copy(
        &entry_tag,
        other_dir.path().join(entry_tag.file_name().expect("name")),
    )
    .expect("copy");
    let foreign_tag = std::fs::read(&entry_tag).expect("tag");
    let agent = other.load(&bytes).await.expect("recompiles");
    assert_eq!(
        run(&other, &agent, &with_market("z", 0.2))
            .await
            .outcome
            .probability(),
        Some(0.2)
    );
    let rewritten =
        std::fs::read(other_dir.path().join(entry_tag.file_name().expect("name"))).expect("tag");
    assert!(
        rewritten != foreign_tag,
        "the foreign entry was re-tagged under this cache's key"
    );
}

#[test]
fn configuration_refuses_unknown_keys_and_bad_values() {
    let error = RunnerConfig::from_toml("timeout = 10\nmemroy_limit_bytes = 5\n", "runner.toml")
        .unwrap_err();
    let chain = format!("{:#}", anyhow::Error::new(error));
    assert!(chain.contains("memroy_limit_bytes"), "{chain}");
    let error = RunnerConfig::from_toml("max_concurrent_runs = 0\n", "runner.toml").unwrap_err();
    assert!(error.to_string().contains("max_concurrent_runs"), "{error}");
    let config = RunnerConfig::from_toml(
        "timeout = 30\nmemory_limit_bytes = 268435456\n",
        "runner.toml",
    )
    .expect("valid");
    assert_eq!(config.timeout, std::time::Duration::from_secs(30));
    assert_eq!(config.memory_limit_bytes, 256 << 20);
    assert_eq!(
        RunnerConfig::default().timeout,
        std::time::Duration::from_secs(240)
    );
}

#[test]
fn responses_files_are_checked() {
    let error =
        ScriptedGateway::from_str("[[rule]]\nservice = \"chat\"\n", false, "r.toml").unwrap_err();
    assert!(
        error.to_string().contains("rule 1") && error.to_string().contains("exactly one"),
        "{error}"
    );
    let error = ScriptedGateway::from_str(
        "[[rule]]\nservice = \"chat\"\nerror = \"sad\"\n",
        false,
        "r.toml",
    )
    .unwrap_err();
    assert!(error.to_string().contains("unknown error kind"), "{error}");
    let error = ScriptedGateway::from_str(
        "[[rule]]\nservice = \"x\"\nbody = \"{nope\"\n",
        false,
        "r.toml",
    )
    .unwrap_err();
    assert!(error.to_string().contains("not valid JSON"), "{error}");
    let error = ScriptedGateway::from_str(
        "[[rule]]\nservice = \"chat\"\ncontent = \"1\"\nextra = 1\n",
        false,
        "r.toml",
    )
    .unwrap_err();
    let chain = format!("{:#}", anyhow::Error::new(error));
    assert!(chain.contains("extra"), "{chain}");
    let json = r#"{"rule": [{"service": "search", "results": [{"title": "t", "url": "u"}]}]}"#;
    assert!(ScriptedGateway::from_str(json, true, "r.json").is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_that_cannot_be_run_are_refused() {
    let runner = runner();
    let agent = load(&runner, &market_baseline()).await;
    let mut bad = event("", "empty id");
    let spec = sooth_runner::RunSpec::new("r", Arc::new(ScriptedGateway::empty()));
    assert!(runner.run(&agent, &bad, &spec).await.is_err());
    bad.id = "ok".into();
    bad.cutoff = bad.created_at - 1;
    let error = runner.run(&agent, &bad, &spec).await.unwrap_err();
    assert!(error.to_string().contains("cutoff"), "{error}");
    assert!(matches!(
        run(&runner, &agent, &event("fine", "x")).await.outcome,
        RunOutcome::Prediction { .. }
    ));
}
