//! `sooth agent test` against a gateway started in-process from a
//! configuration, with upstream keys from the environment, against the fake
//! upstream: the path a miner takes to test on real services. And `sooth
//! proxy link-key` / `unlink-key`, which put miners' own keys on file.

mod common;

use std::io::Write as _;
use std::process::{Command, Stdio};

use std::collections::BTreeMap;
use std::sync::Arc;

use common::{Output, run, sooth};
use sooth_fake_upstream::{
    Failure, FakeUpstream, FakeUpstreamConfig, GatewayConfigBuilder, ServiceBuilder,
};
use sooth_protocol::{RunClaims, generate_key, mint};
use sooth_proxy::{ApiKey, LinkedKeys, ProxyConfig, launch};
use sooth_runner::{AgentEvent, HttpGateway, RunSpec, Runner, RunnerConfig};

const MODEL: &str = "deepseek-ai/DeepSeek-V3";

/// A gateway configuration in `dir`. `sooth agent test` runs on the miner's
/// own keys, which count as linked: give the operator's daily cap as 0 to
/// check that only the linked cap applies.
fn config(
    dir: &std::path::Path,
    base: &str,
    chat_key_env: &str,
    operator_day_cap: f64,
) -> std::path::PathBuf {
    let path = dir.join("gateway.toml");
    let text = GatewayConfigBuilder::new(dir.join("data"))
        .signing_key_file(dir.join("signing.key"))
        .default_services("chutes", "desearch")
        .service(
            ServiceBuilder::chat("chutes", base, chat_key_env, &[MODEL])
                .day_caps(operator_day_cap, 5.0),
        )
        .service(
            ServiceBuilder::search("desearch", base, "SOOTH_TEST_SEARCH_KEY").day_caps(5.0, 5.0),
        )
        .to_toml();
    std::fs::write(&path, text).expect("config");
    path
}

/// A fake upstream on loopback and a gateway configuration of it in a
/// directory of its own, with `operator_day_cap` as the operator's daily cap.
struct World {
    /// Keeps the upstream's tasks running.
    _runtime: tokio::runtime::Runtime,
    upstream: FakeUpstream,
    fake_config: FakeUpstreamConfig,
    dir: tempfile::TempDir,
    config: std::path::PathBuf,
}

impl World {
    fn new(fake_config: FakeUpstreamConfig, operator_day_cap: f64) -> Self {
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        let upstream = runtime
            .block_on(FakeUpstream::start(fake_config.clone()))
            .expect("fake upstream");
        let dir = tempfile::tempdir().expect("tempdir");
        let config = config(
            dir.path(),
            &upstream.base_url(),
            "SOOTH_TEST_CHAT_KEY",
            operator_day_cap,
        );
        Self {
            _runtime: runtime,
            upstream,
            fake_config,
            dir,
            config,
        }
    }

    /// `sooth agent test AGENT --gateway-config ... --json` with the
    /// upstream's keys in the environment.
    fn agent_test(&self, agent: &std::path::Path) -> Command {
        let mut command = sooth();
        command
            .args(["agent", "test"])
            .arg(agent)
            .arg("--gateway-config")
            .arg(&self.config)
            .arg("--json")
            .env("SOOTH_TEST_CHAT_KEY", &self.fake_config.api_key)
            .env("SOOTH_TEST_SEARCH_KEY", &self.fake_config.search_api_key);
        command
    }

    /// A JSON Lines file of one event with this id and title.
    fn one_event(&self, id: &str, title: &str) -> std::path::PathBuf {
        let events = self.dir.path().join(format!("{id}.jsonl"));
        std::fs::write(
            &events,
            format!(
                "{{\"id\": \"{id}\", \"title\": \"{title}\", \"created_at\": \"2025-03-02T12:00:00Z\", \"cutoff\": \"2025-03-05T12:00:00Z\"}}\n"
            ),
        )
        .expect("events");
        events
    }
}

#[test]
fn the_llm_forecaster_runs_through_an_in_process_gateway() {
    let world = World::new(
        FakeUpstreamConfig {
            models: vec![MODEL.into()],
            ..FakeUpstreamConfig::default()
        },
        0.0,
    );
    let output = run(&mut world.agent_test(&sooth_test_agents::llm_forecaster())).ok();
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
    let stats = world.upstream.stats();
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
        world.dir.path().join("signing.key").exists(),
        "an outbound signing key was created"
    );
}

#[test]
fn a_missing_upstream_key_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config(
        dir.path(),
        "http://127.0.0.1:9",
        "SOOTH_TEST_UNSET_KEY",
        1.0,
    );
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
    let config = config(dir.path(), "http://127.0.0.1:9", "SOOTH_TEST_CHAT_KEY", 1.0);
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

#[test]
fn a_503_storm_is_recorded_in_the_runs_gateway_log_with_its_retries() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let fake_config = FakeUpstreamConfig {
            models: vec![MODEL.into()],
            ..FakeUpstreamConfig::default()
        };
        let upstream = FakeUpstream::start(fake_config.clone())
            .await
            .expect("fake upstream");
        let dir = tempfile::tempdir().expect("tempdir");
        let path = config(dir.path(), &upstream.base_url(), "UNUSED", 1.0);
        let validator = generate_key();
        let gateway = launch(
            ProxyConfig::from_file(&path).expect("config"),
            Some(validator.verifying_key()),
            BTreeMap::from([
                ("chutes".to_owned(), fake_config.api_key.clone()),
                ("desearch".to_owned(), fake_config.search_api_key.clone()),
            ]),
            Some(([127, 0, 0, 1], 0).into()),
        )
        .await
        .expect("gateway");

        let runner = Runner::new(RunnerConfig::default()).expect("runner");
        let bytes = std::fs::read(sooth_test_agents::llm_forecaster()).expect("agent");
        let agent = runner.load(&bytes).await.expect("agent loads");
        let mut spec = RunSpec::new(
            "storm",
            Arc::new(HttpGateway::new(gateway.base_url()).expect("client")),
        );
        let now = chrono::Utc::now().timestamp();
        spec.token = Some(mint(
            &validator,
            &RunClaims {
                run_id: "storm".into(),
                miner: "5Miner".into(),
                agent_hash: agent.hash().to_owned(),
                caps_usd: BTreeMap::from([("*".to_owned(), 1.0)]),
                linked_key: false,
                issued_at: now,
                expires_at: now + 300,
                as_of: now,
            },
        ));
        // Longer than the gateway's 4 attempts at every call the agent makes.
        upstream.fail_next(1_000, Failure::Unavailable);
        let event = AgentEvent::new("storm-1", "Will the storm pass?", 1_750_000_000);
        let report = runner.run(&agent, &event, &spec).await.expect("run");

        let calls = &report.gateway.calls;
        assert!(!calls.is_empty(), "{report:?}");
        for call in calls {
            assert_eq!(call.status, "unavailable", "{call:?}");
            assert_eq!(call.retries, 3, "{call:?}");
            assert_eq!(call.cost_usd, 0.0, "{call:?}");
        }
        // The agent retries too: every attempt of every call reached the
        // upstream, and the log accounts for each.
        let attempts: u64 = calls.iter().map(|call| u64::from(call.retries) + 1).sum();
        assert_eq!(upstream.stats().chat_requests, attempts);
    });
}

/// Two invocations of `sooth agent test` on the same gateway data directory
/// do not share run ids, so the second does not find its per-run caps spent
/// by the first.
#[test]
fn each_invocation_of_agent_test_has_runs_of_its_own() {
    let world = World::new(
        FakeUpstreamConfig {
            search_usd: 0.002,
            ..FakeUpstreamConfig::default()
        },
        5.0,
    );
    let agent = sooth_test_agents::hostile();
    // One search per run at 0.002 under a run cap of 0.003: a run can pay
    // for one search, not two.
    for invocation in ["first", "second"] {
        let events = world.one_event(&format!("{invocation}-event"), "search-once");
        let output = run(world
            .agent_test(&agent)
            .arg("--events")
            .arg(&events)
            .args(["--run-cap-usd", "0.003"]))
        .ok();
        let lines = output.json_lines();
        let row = lines.first().expect("one run");
        assert_eq!(row["status"], "ok", "{invocation}: {row}");
        assert_eq!(row["cost_usd"], 0.002, "{invocation}: {row}");
    }
    assert_eq!(world.upstream.stats().search_requests, 2);
}

/// Runs `command` to its end and returns its peak resident memory in bytes
/// (`VmHWM`, read until the process exits) with what it printed.
fn peak_memory_of(command: &mut Command) -> (u64, String) {
    let child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let status_file = format!("/proc/{}/status", child.id());
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut peak = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let Ok(status) = std::fs::read_to_string(&status_file) else {
                    break;
                };
                let high_water_kib = status
                    .lines()
                    .find_map(|line| line.strip_prefix("VmHWM:"))
                    .and_then(|value| {
                        value
                            .trim()
                            .trim_end_matches("kB")
                            .trim()
                            .parse::<u64>()
                            .ok()
                    });
                if let Some(kib) = high_water_kib {
                    peak = peak.max(kib * 1024);
                }
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            peak
        })
    };
    let output = child.wait_with_output().expect("wait");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let peak = sampler.join().expect("sampler");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    (peak, String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The flood that took `sooth agent test` to gigabytes: an agent looping on
/// every kind of gateway call through the HTTP gateway until it is killed.
/// The process stays within a small fixed bound of a well-behaved run.
#[test]
fn gateway_floods_through_the_http_gateway_leave_memory_bounded() {
    let world = World::new(
        FakeUpstreamConfig {
            models: vec![MODEL.into()],
            ..FakeUpstreamConfig::default()
        },
        5.0,
    );
    let agent = sooth_test_agents::hostile();
    let measure = |title: &str| {
        peak_memory_of(
            world
                .agent_test(&agent)
                .arg("--events")
                .arg(world.one_event(title, title))
                .arg("--cache-dir")
                .arg(world.dir.path().join("compiled"))
                .args(["--timeout", "4"]),
        )
    };
    let (baseline, _) = measure("fine");
    assert!(baseline > 0, "VmHWM was read");
    for title in ["chat-loop", "search-loop", "call-loop", "long-name-loop"] {
        let (peak, stdout) = measure(title);
        let row: serde_json::Value =
            serde_json::from_str(stdout.lines().next().expect("a run")).expect("json");
        assert_eq!(row["status"], "timeout", "{title}: {row}");
        let calls = row["gateway_calls"].as_u64().expect("calls");
        assert!(calls > 1000, "{title}: the flood ran ({calls} calls)");
        let grown = peak.saturating_sub(baseline);
        eprintln!(
            "{title}: {calls} calls, peak {:.1} MiB, {:.1} MiB above a well-behaved run",
            peak as f64 / f64::from(1 << 20),
            grown as f64 / f64::from(1 << 20)
        );
        assert!(
            grown < 64 << 20,
            "{title}: peak {peak} bytes, {grown} over a well-behaved run's {baseline}"
        );
    }
}
