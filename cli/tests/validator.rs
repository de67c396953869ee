//! `sooth validator run`, `sooth validator add-agent` and `sooth demo` as an operator runs them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Read;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::live_validator::free_port;
use common::{run, sooth};
use serde_json::Value;
use sooth_fake_upstream::{CHAT_KEY_ENV, FakeUpstream, FakeUpstreamConfig, SEARCH_KEY_ENV};
use sooth_protocol::{HotkeyScheme, SecretHotkey};

/// GET `url` as JSON; `None` until something answers with JSON.
fn get(url: &str) -> Option<Value> {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let response = reqwest::get(url).await.ok()?;
        response.json().await.ok()
    })
}

/// What the child wrote on its (piped) stderr.
fn stderr_of(child: &mut Child) -> String {
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        pipe.read_to_string(&mut stderr).unwrap();
    }
    stderr
}

fn wait_for(what: &str, child: &mut Child, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !check() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "the validator exited ({status}) before {what}:\n{}",
                stderr_of(child)
            );
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A validator configuration in `dir` with its gateway in-process on `upstream` (which the
/// agents here never call).
fn write_config(dir: &Path, port: u16, upstream: &FakeUpstream) -> std::path::PathBuf {
    let config = dir.join("validator.toml");
    std::fs::create_dir_all(dir.join("events")).unwrap();
    std::fs::write(
        &config,
        format!(
            "data_dir = \"data\"\n\n[sources]\njsonl_dirs = [\"events\"]\npoll_secs = 1\n\n\
             [api]\nlisten = \"127.0.0.1:{port}\"\n\n[competition]\nslots = 4\n\n\
             [gateway]\nconfig = \"gateway.toml\"\n"
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("gateway.toml"),
        upstream.gateway_config_toml(dir, &["m"], 1.0),
    )
    .unwrap();
    config
}

#[test]
fn the_live_validator_ingests_scores_publishes_weights_and_serves_its_api() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let upstream = runtime
        .block_on(FakeUpstream::start(FakeUpstreamConfig::default()))
        .unwrap();
    let config = write_config(dir.path(), port, &upstream);
    let keys = upstream.gateway_api_keys();
    let miner_a = SecretHotkey::from_seed(HotkeyScheme::Ed25519, &[0xa; 32])
        .public()
        .to_string();
    let miner_b = SecretHotkey::from_seed(HotkeyScheme::Ed25519, &[0xb; 32])
        .public()
        .to_string();

    // Its probe runs would call the in-process gateway, which needs the upstream keys.
    let added = run(sooth()
        .args(["validator", "add-agent", "--config"])
        .arg(&config)
        .args(["--hotkey", &miner_a])
        .arg(sooth_test_agents::always_half())
        .env(CHAT_KEY_ENV, &keys["chat"])
        .env(SEARCH_KEY_ENV, &keys["search"]))
    .ok();
    assert!(
        added
            .stdout
            .contains(&format!("registered {miner_a} as uid 0")),
        "{}",
        added.stdout
    );
    assert!(added.stdout.contains("active at the next 00:00 UTC"));
    run(sooth()
        .args(["validator", "add-agent", "--config"])
        .arg(&config)
        .args(["--hotkey", &miner_b])
        .arg(dir.path().join("validator.toml"))
        .env(CHAT_KEY_ENV, &keys["chat"])
        .env(SEARCH_KEY_ENV, &keys["search"]))
    .fails_with("is not a WebAssembly component");

    let mut child = sooth()
        .current_dir(dir.path())
        .args(["-v", "validator", "run", "--config"])
        .arg(&config)
        .env(CHAT_KEY_ENV, &keys["chat"])
        .env(SEARCH_KEY_ENV, &keys["search"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    wait_for("the API answers", &mut child, || {
        get(&format!("{base}/health")).is_some()
    });

    // An event created an hour ago and resolved now, written in two appends (the second line
    // arrives later, as a watched file grows).
    let created = chrono::Utc::now() - chrono::TimeDelta::hours(1);
    let events = dir.path().join("events").join("today.jsonl");
    std::fs::write(
        &events,
        format!(
            "{{\"id\": \"live-1\", \"title\": \"Will it rain?\", \"created_at\": \"{}\"}}\nnot json\n",
            created.to_rfc3339()
        ),
    )
    .unwrap();
    wait_for("the event is ingested", &mut child, || {
        get(&format!("{base}/v1/events/live-1")).is_some_and(|event| event["id"] == "live-1")
    });
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&events)
        .unwrap();
    std::io::Write::write_all(
        &mut file,
        format!(
            "{{\"event_id\": \"live-1\", \"outcome\": 1, \"resolved_at\": \"{}\"}}\n",
            chrono::Utc::now().to_rfc3339()
        )
        .as_bytes(),
    )
    .unwrap();
    let weights_file = dir.path().join("data").join("weights.json");
    wait_for("weights are written", &mut child, || weights_file.exists());
    let weights: Value = serde_json::from_slice(&std::fs::read(&weights_file).unwrap()).unwrap();
    assert_eq!(weights["weights"][0]["hotkey"], miner_a.as_str());
    assert_eq!(weights["weights"][0]["weight"], 1.0);

    // Its version activates at the next midnight: this event was imputed 0.5.
    let board = get(&format!("{base}/v1/leaderboard")).unwrap();
    assert_eq!(board["rows"][0]["hotkey"], miner_a.as_str());
    assert_eq!(board["rows"][0]["mean_brier"], 0.25);
    assert_eq!(board["rows"][0]["imputed_count"], 1);
    let event = get(&format!("{base}/v1/events/live-1")).unwrap();
    assert_eq!(event["outcome"], 1);
    // The refused agent left no miner registered for it.
    assert_eq!(board["rows"].as_array().unwrap().len(), 1, "{board}");
    // A service manager stops it with SIGTERM: it finishes cleanly.
    let signalled = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(signalled.success());
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(String::from_utf8_lossy(&output.stdout).contains("validator stopped"));
    assert!(stderr.contains("gateway started in-process"), "{stderr}");
    assert!(
        stderr.contains("not json") || stderr.contains("malformed"),
        "{stderr}"
    );
}

#[test]
fn the_demo_runs_its_world_through_the_daemon_with_given_agents() {
    let out = tempfile::tempdir().unwrap();
    let output = run(sooth()
        .args(["demo", "--days", "2", "--events-per-day", "30", "--agents"])
        .arg(sooth_test_agents::market_baseline())
        .arg(sooth_test_agents::always_half())
        .arg("--out")
        .arg(out.path()))
    .ok();
    assert!(
        output.stdout.contains("synthetic world: seed 7"),
        "{}",
        output.stdout
    );
    let report: Value =
        serde_json::from_slice(&std::fs::read(out.path().join("leaderboard.json")).unwrap())
            .unwrap();
    let rows = report["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["hotkey"], "market_baseline");
    assert_eq!(rows[0]["weight"], 1.0);
    assert_eq!(rows[1]["mean_brier_all"], 0.25);
    let events = rows[0]["events_all"].as_u64().unwrap();
    assert!(
        (48..=72).contains(&events),
        "{events} events over 2 days of 30"
    );
    // The pages, with each agent as a benchmark too and the meta-model's pools.
    let index = std::fs::read_to_string(out.path().join("site").join("index.html")).unwrap();
    for reference in [
        "market_baseline",
        "always_half",
        "meta:linear",
        "meta:log-odds",
    ] {
        assert!(
            index.contains(&format!(r#"data-reference="{reference}""#)),
            "{reference}: {index}"
        );
    }
    assert!(
        output.stdout.contains("benchmark market_baseline"),
        "{}",
        output.stdout
    );
}
