//! `sooth agent test`, run as a miner would run it.

#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use common::{RESPONSES_072, agent_test, file_with, forecastbench, run, split_report};

#[test]
fn market_baseline_runs_the_built_in_events() {
    let output = run(&mut agent_test(&sooth_test_agents::market_baseline())).ok();
    assert!(
        output
            .stdout
            .contains("on 20 events from <built-in sample events>"),
        "{}",
        output.stdout
    );
    assert!(
        output.stdout.contains("runs: 20, ok: 20, failed: 0"),
        "{}",
        output.stdout
    );
    assert!(output.stdout.contains("mean Brier: "), "{}", output.stdout);
    assert_eq!(
        output
            .stdout
            .lines()
            .filter(|line| line.starts_with("synthetic-"))
            .count(),
        20
    );
}

#[test]
fn forecastbench_brier_matches_an_independent_computation() {
    let Some(path) = forecastbench() else { return };
    let output = run(agent_test(&sooth_test_agents::market_baseline())
        .arg("--events")
        .arg(&path)
        .arg("--json"))
    .ok();
    let (rows, summary) = split_report(&output);

    // The same score, computed here from the file alone.
    let text = std::fs::read_to_string(&path).unwrap();
    let questions: Vec<serde_json::Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let expected: f64 = questions
        .iter()
        .map(|q| {
            let p = q["market_prob"].as_f64().unwrap().clamp(0.01, 0.99);
            (p - q["outcome"].as_f64().unwrap()).powi(2)
        })
        .sum::<f64>()
        / questions.len() as f64;

    assert_eq!(rows.len(), 560);
    for (row, question) in rows.iter().zip(&questions) {
        assert_eq!(
            row["event_id"], question["id"],
            "rows are not in input order"
        );
        assert_eq!(row["status"], "ok", "{row}");
        assert_eq!(row["prediction"].as_f64(), question["market_prob"].as_f64());
        assert_eq!(row["outcome"], question["outcome"]);
    }
    assert_eq!(summary["runs"], 560);
    assert_eq!(summary["ok"], 560);
    assert_eq!(summary["scored"], 560);
    assert_eq!(summary["imputed"], 0);
    let brier = summary["brier"].as_f64().unwrap();
    assert!((brier - expected).abs() < 1e-9, "{brier} != {expected}");
    assert!(
        (brier - 0.0589).abs() < 5e-5,
        "the file's README says 0.0589, got {brier}"
    );
}

fn check_llm_report(output: &common::Output) {
    let (rows, summary) = split_report(output);
    assert_eq!(rows.len(), 20);
    for row in &rows {
        assert_eq!(row["status"], "ok", "{row}");
        assert_eq!(row["prediction"], 0.72, "{row}");
        assert_eq!(row["gateway_calls"], 1, "{row}");
        assert!(
            (row["cost_usd"].as_f64().unwrap() - 0.001).abs() < 1e-12,
            "{row}"
        );
    }
    assert_eq!(summary["gateway_calls"], 20);
    assert!(
        (summary["cost_usd"].as_f64().unwrap() - 0.02).abs() < 1e-9,
        "{summary}"
    );
}

#[test]
fn llm_forecaster_answers_from_the_responses_file() {
    let (_dir, responses) = file_with("responses.toml", RESPONSES_072);
    let agent = sooth_test_agents::llm_forecaster();
    let output = run(agent_test(&agent)
        .arg("--responses")
        .arg(&responses)
        .arg("--json"))
    .ok();
    check_llm_report(&output);

    // The text report says the same.
    let output = run(agent_test(&agent).arg("--responses").arg(&responses)).ok();
    assert!(
        output.stdout.contains("gateway: 20 calls, $0.020000"),
        "{}",
        output.stdout
    );
}

#[test]
fn python_llm_forecaster_answers_from_the_responses_file() {
    let (_dir, responses) = file_with("responses.toml", RESPONSES_072);
    let agent = sooth_test_agents::python_llm_forecaster();
    let output = run(agent_test(&agent)
        .arg("--responses")
        .arg(&responses)
        .arg("--json"))
    .ok();
    check_llm_report(&output);
}

#[test]
fn without_responses_the_llm_forecaster_falls_back_on_the_market() {
    let output = run(agent_test(&sooth_test_agents::llm_forecaster()).arg("--json")).ok();
    let (rows, summary) = split_report(&output);
    for row in &rows {
        assert_eq!(row["status"], "ok", "{row}");
        assert_eq!(row["gateway_calls"], 1, "{row}");
        assert!(
            row["reasoning"].as_str().unwrap().starts_with("fallback: "),
            "{row}"
        );
    }
    assert_eq!(summary["cost_usd"].to_string(), "0.0");
}

#[test]
fn a_spinning_agent_times_out_at_the_shorter_limit() {
    let (_dir, events) = file_with(
        "events.jsonl",
        "{\"id\": \"spin-1\", \"title\": \"spin\", \"created_at\": 1740000000, \"outcome\": 1}\n",
    );
    let output = run(agent_test(&sooth_test_agents::hostile())
        .arg("--events")
        .arg(&events)
        .args(["--timeout", "1", "--json"]))
    .ok();
    let (rows, summary) = split_report(&output);
    assert_eq!(rows[0]["status"], "timeout", "{}", rows[0]);
    assert_eq!(rows[0]["prediction"], serde_json::Value::Null);
    assert!(
        rows[0]["reason"].as_str().unwrap().contains("1000 ms"),
        "{}",
        rows[0]
    );
    let ms = rows[0]["duration_ms"].as_f64().unwrap();
    assert!((1000.0..5000.0).contains(&ms), "{ms}");
    assert_eq!(summary["failures"]["timeout"], 1);
    assert_eq!(summary["imputed"], 1);
    assert_eq!(summary["brier"], 0.25);

    // The text report names the failure too, and the command still succeeds.
    let output = run(agent_test(&sooth_test_agents::hostile())
        .arg("--events")
        .arg(&events)
        .args(["--timeout", "1"]))
    .ok();
    assert!(
        output
            .stdout
            .contains("reason: killed after the 1000 ms limit"),
        "{}",
        output.stdout
    );
    assert!(
        output.stdout.contains("failed: 1 (timeout 1)"),
        "{}",
        output.stdout
    );
}

#[test]
fn a_file_that_is_not_wasm_is_refused() {
    let (_dir, garbage) = file_with("garbage.wasm", "this is not a component");
    run(&mut agent_test(&garbage)).fails_with("not a WebAssembly binary");
}

#[test]
fn a_component_importing_outside_the_contract_is_refused() {
    let evil = wat::parse_str(
        r#"(component
            (import "evil:net/socket@1.0.0" (instance (export "connect" (func))))
        )"#,
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("evil.wasm");
    std::fs::write(&path, evil).unwrap();
    run(&mut agent_test(&path)).fails_with("component imports `evil:net/socket@1.0.0`");
}

#[test]
fn a_missing_agent_is_refused() {
    run(&mut agent_test(std::path::Path::new("no/such/agent.wasm")))
        .fails_with("cannot read agent no/such/agent.wasm");
}

#[test]
fn the_timeout_may_only_shorten_the_limit() {
    let agent = sooth_test_agents::market_baseline();
    run(agent_test(&agent).args(["--timeout", "999"])).fails_with("may only shorten");
    run(agent_test(&agent).args(["--timeout", "0"])).fails_with("must be a positive number");
}

#[test]
fn a_malformed_events_line_is_named() {
    let text = "{\"id\": \"a\", \"title\": \"T\", \"created_at\": 1}\n{\"id\": \"b\", \"title\": \"T\", \"created_at\": \"soon\"}\n";
    let (_dir, events) = file_with("events.jsonl", text);
    let output = run(agent_test(&sooth_test_agents::market_baseline())
        .arg("--events")
        .arg(&events))
    .fails_with(&format!("{}:2: `created_at`", events.display()));
    assert!(output.stdout.is_empty(), "something ran: {}", output.stdout);
}

#[test]
fn a_missing_events_file_is_refused() {
    run(agent_test(&sooth_test_agents::market_baseline())
        .args(["--events", "no/such/events.jsonl"]))
    .fails_with("cannot read events file no/such/events.jsonl");
}

#[test]
fn a_bad_responses_file_is_refused() {
    let (_dir, responses) = file_with("responses.toml", "[[rule]]\nservice = \"chat\"\n");
    run(agent_test(&sooth_test_agents::market_baseline())
        .arg("--responses")
        .arg(&responses))
    .fails_with("give exactly one of content, results, body or error");
}
