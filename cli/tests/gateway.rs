//! `sooth agent test` against a gateway started in-process from a
//! configuration, with upstream keys from the environment, against the fake
//! upstream: the path a miner takes to test on real services. And `sooth
//! proxy link-key` / `unlink-key`, which put miners' own keys on file.

mod common;

use std::io::Write as _;
use std::process::{Command, Stdio};

use common::{Output, run, sooth};
use sooth_proxy::fake_upstream::{FakeUpstream, FakeUpstreamConfig};
use sooth_proxy::linked_keys::{ApiKey, LinkedKeys};

const MODEL: &str = "deepseek-ai/DeepSeek-V3";

fn config(dir: &std::path::Path, base: &str, chat_key_env: &str) -> std::path::PathBuf {
    let path = dir.join("gateway.toml");
    let text = format!(
        r#"
data_dir = "{data}"
validator_public_key = "{unused}"
signing_key_file = "{key}"
default_chat_service = "chutes"
default_search_service = "desearch"

[services.chutes]
kind = "chat"
base_url = "{base}"
api_key_env = "{chat_key_env}"
# `sooth agent test` runs on the miner's own keys, which count as linked:
# only the linked cap applies.
per_miner_day_cap_usd = 0.0
linked_per_miner_day_cap_usd = 5.0
models = {{ "{MODEL}" = {{ input_per_million = 0.5, output_per_million = 2.0 }} }}

[services.desearch]
kind = "search"
base_url = "{base}"
api_key_env = "SOOTH_TEST_SEARCH_KEY"
auth = "raw"
price_per_call = 0.002
per_miner_day_cap_usd = 5.0
linked_per_miner_day_cap_usd = 5.0
"#,
        data = dir.join("data").display(),
        key = dir.join("signing.key").display(),
        unused = "00".repeat(32),
    );
    std::fs::write(&path, text).expect("config");
    path
}

#[test]
fn the_llm_forecaster_runs_through_an_in_process_gateway() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let fake_config = FakeUpstreamConfig {
        models: vec![MODEL.into()],
        ..FakeUpstreamConfig::default()
    };
    let upstream = runtime
        .block_on(FakeUpstream::start(fake_config.clone()))
        .expect("fake upstream");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config(dir.path(), &upstream.base_url(), "SOOTH_TEST_CHAT_KEY");
    let agent = sooth_test_agents::llm_forecaster();
    let output = run(sooth()
        .args(["agent", "test"])
        .arg(&agent)
        .arg("--gateway-config")
        .arg(&config)
        .arg("--json")
        .env("SOOTH_TEST_CHAT_KEY", &fake_config.api_key)
        .env("SOOTH_TEST_SEARCH_KEY", &fake_config.search_api_key))
    .ok();
    let lines = output.json_lines();
    let summary = lines.last().expect("summary");
    let runs: Vec<_> = lines
        .iter()
        .filter(|line| line.get("summary").is_none())
        .collect();
    assert!(!runs.is_empty());
    for line in &runs {
        assert_eq!(line["status"], "ok", "{line}");
        assert_eq!(line["gateway_calls"], 1, "{line}");
        assert!(line["cost_usd"].as_f64().expect("cost") > 0.0, "{line}");
    }
    let stats = upstream.stats();
    assert_eq!(
        stats.chat_ok as usize,
        runs.len(),
        "every run's call reached the upstream"
    );
    let charged = summary["cost_usd"].as_f64().expect("total cost");
    assert!(
        (charged - stats.billed_usd).abs() < 1e-5,
        "charged {charged}, billed {}",
        stats.billed_usd
    );
    assert!(
        dir.path().join("signing.key").exists(),
        "an outbound signing key was created"
    );
}

#[test]
fn a_missing_upstream_key_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config(dir.path(), "http://127.0.0.1:9", "SOOTH_TEST_UNSET_KEY");
    run(sooth()
        .args(["agent", "test"])
        .arg(sooth_test_agents::market_baseline())
        .arg("--gateway-config")
        .arg(&config)
        .env_remove("SOOTH_TEST_UNSET_KEY"))
    .fails_with("SOOTH_TEST_UNSET_KEY");
}

/// Run `command` with `input` on its stdin.
fn run_with_stdin(command: &mut Command, input: &str) -> Output {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write stdin");
    let output = child.wait_with_output().expect("wait");
    Output {
        success: output.status.success(),
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn key_on_file(dir: &std::path::Path, miner: &str, service: &str) -> Option<ApiKey> {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        LinkedKeys::open(&dir.join("data").join("gateway.sqlite"), None)
            .await
            .expect("linked keys")
            .lookup(service, miner)
    })
}

#[test]
fn keys_are_linked_from_stdin_or_the_environment_and_unlinked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config(dir.path(), "http://127.0.0.1:9", "SOOTH_TEST_CHAT_KEY");
    let link = |service: &str| {
        let mut command = sooth();
        command
            .args(["proxy", "link-key", "--config"])
            .arg(&config)
            .args(["--miner", "5Miner", "--service", service]);
        command
    };
    let from_stdin = "sk-from-stdin-0a1b";
    let output = run_with_stdin(&mut link("chutes"), &format!("{from_stdin}\n")).ok();
    assert!(
        output
            .stdout
            .contains("linked a key for miner 5Miner on service chutes")
    );
    let from_env = "sk-from-env-2c3d";
    let env_output = run(link("desearch")
        .args(["--key-env", "SOOTH_TEST_LINKED_KEY"])
        .env("SOOTH_TEST_LINKED_KEY", from_env))
    .ok();
    for (output, key) in [(&output, from_stdin), (&env_output, from_env)] {
        assert!(!output.stdout.contains(key) && !output.stderr.contains(key));
    }
    assert_eq!(
        key_on_file(dir.path(), "5Miner", "chutes"),
        Some(ApiKey::parse(from_stdin).expect("key"))
    );
    assert_eq!(
        key_on_file(dir.path(), "5Miner", "desearch"),
        Some(ApiKey::parse(from_env).expect("key"))
    );

    // Refusals name what is wrong, never the key.
    run_with_stdin(&mut link("nowhere"), "sk-whatever\n").fails_with("nowhere");
    let spaced = "sk-has a-space";
    let refused = run_with_stdin(&mut link("chutes"), spaced).fails_with("visible ASCII");
    assert!(!refused.stderr.contains("a-space"), "{}", refused.stderr);
    run(link("chutes")
        .args(["--key-env", "SOOTH_TEST_UNSET_KEY"])
        .env_remove("SOOTH_TEST_UNSET_KEY"))
    .fails_with("SOOTH_TEST_UNSET_KEY");

    let unlink = || {
        let mut command = sooth();
        command
            .args(["proxy", "unlink-key", "--config"])
            .arg(&config)
            .args(["--miner", "5Miner", "--service", "chutes"]);
        command
    };
    assert!(run(&mut unlink()).ok().stdout.contains("unlinked"));
    assert_eq!(key_on_file(dir.path(), "5Miner", "chutes"), None);
    assert!(
        run(&mut unlink())
            .ok()
            .stdout
            .contains("had no key on file")
    );
    assert!(
        key_on_file(dir.path(), "5Miner", "desearch").is_some(),
        "only the named service is unlinked"
    );
}
