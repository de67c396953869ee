//! A live scheduler with runner workers (`sooth validator run` with `scheduling.workers` on
//! PostgreSQL) runs no agent, probe runs included: a version added to it waits in the queue
//! until a `sooth runner` verifies it by the plan the scheduler published. A worker whose
//! host's clock is an hour slow keeps the version it verifies (its lease is measured by the
//! database's clock) from a worker with the right time; told to stop while it verifies, it
//! keeps at it; told twice, it exits at once, and the other worker verifies the version once
//! the first one's lease has ended.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::day::{FAKETIME, ProcessesOf, signal, skewed, wait_until, wait_with_deadline};
use common::live_validator::free_port;
use common::{run, sooth};
use serde_json::Value;
use sooth_protocol::{HotkeyScheme, SecretHotkey};
use sooth_test_postgres::TestSchema;

/// What a verifier logs (at `-v`) when it claims a version, and when it verifies one.
const CLAIMED: &str = "verifying version=";
const DECIDED: &str = "version verified";

/// The run limit of the scheduler and its workers alike (their sandboxes must match).
const RUNNER: &str = "[runner]\ntimeout = 3\n";

/// The probe set: 20 plain questions, then 10 that the hostile agent sleeps through (each
/// until the run limit: 15 s of verification at two runs at once).
fn write_probe(path: &Path) {
    let mut rows = String::new();
    for index in 0..30 {
        let title = if index < 20 { "Will it?" } else { "sleep" };
        rows.push_str(&format!(
            "{{\"id\": \"probe-{index}\", \"title\": \"{title}\", \
             \"created_at\": \"2025-01-01T00:00:00Z\", \"cutoff\": \"2025-02-01T00:00:00Z\", \
             \"metadata\": {{\"market_prob\": 0.4}}, \"outcome\": {}}}\n",
            index % 2
        ));
    }
    std::fs::write(path, rows).unwrap();
}

/// The agent version `version` as the scheduler's API shows it.
fn agent(port: u16, version: u64) -> Value {
    let url = format!("http://127.0.0.1:{port}/v1/agents/{version}");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime
        .block_on(async { reqwest::get(&url).await?.json::<Value>().await })
        .unwrap_or(Value::Null)
}

/// Waits until `check` holds of version `version`, with the scheduler still running.
fn wait_for_version(
    port: u16,
    version: u64,
    scheduler: &mut Child,
    what: &str,
    check: impl Fn(&str) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let record = agent(port, version);
        if check(record["status"].as_str().unwrap_or_default()) {
            return record;
        }
        assert!(
            scheduler.try_wait().unwrap().is_none(),
            "the scheduler exited before version {version} was {what}"
        );
        assert!(
            Instant::now() < deadline,
            "version {version} was never {what}: {record}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `sooth runner` as worker `id`, run by `launcher` (a command that runs its arguments) or
/// directly; its output in `ID.log`.
fn start_worker(dir: &Path, url: &str, id: &str, launcher: &[String]) -> Child {
    let config = dir.join(format!("{id}.toml"));
    std::fs::write(
        &config,
        format!(
            "database_url = \"{url}\"\nworker_id = \"{id}\"\ncache_dir = \"{id}-cache\"\n\
             concurrency = 2\nlease_secs = 3\n\n{RUNNER}"
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.join(format!("{id}.log"))).unwrap();
    let mut command = match launcher.split_first() {
        Some((program, args)) => {
            let mut command = std::process::Command::new(program);
            command.args(args).arg(env!("CARGO_BIN_EXE_sooth"));
            command
        }
        None => sooth(),
    };
    command
        .current_dir(dir)
        .args(["-v", "runner", "--config"])
        .arg(&config)
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap()
}

fn add_agent(config: &Path, hotkey: &str, agent: &Path) -> String {
    run(sooth()
        .args(["validator", "add-agent", "--config"])
        .arg(config)
        .args(["--hotkey", hotkey])
        .arg(agent))
    .ok()
    .stdout
}

fn hotkey(seed: u8) -> String {
    SecretHotkey::from_seed(HotkeyScheme::Ed25519, &[seed; 32])
        .public()
        .to_string()
}

#[test]
fn a_scheduler_with_workers_leaves_every_verification_to_them() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let schema = runtime.block_on(TestSchema::create());
    let url = schema.url();
    let dir = tempfile::tempdir().unwrap();
    let _processes = ProcessesOf(dir.path().to_path_buf());
    let dir = dir.path();
    let port = free_port();
    write_probe(&dir.join("probe.jsonl"));
    let config = dir.join("validator.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = \"data\"\ndatabase_url = \"{url}\"\n\n[scheduling]\nworkers = true\n\n\
             [api]\nlisten = \"127.0.0.1:{port}\"\n\n[verification]\n\
             probe_file = \"probe.jsonl\"\nlease_secs = 5\n\n{RUNNER}"
        ),
    )
    .unwrap();
    let scheduler_log = dir.join("scheduler.log");
    let mut scheduler = sooth()
        .current_dir(dir)
        .args(["-v", "validator", "run", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&scheduler_log).unwrap())
        .spawn()
        .unwrap();

    // Versions added while no worker runs wait: the scheduler verifies nothing itself.
    let (first, copier, hostile) = (hotkey(0xa), hotkey(0xb), hotkey(0xc));
    let half = sooth_test_agents::always_half();
    let added = add_agent(&config, &first, &half);
    assert!(
        added.contains("pending") && added.contains("a runner worker verifies it"),
        "{added}"
    );
    add_agent(&config, &copier, &half);
    std::thread::sleep(Duration::from_secs(3));
    for version in [1, 2] {
        let record = wait_for_version(port, version, &mut scheduler, "listed", |_| true);
        assert_eq!(record["status"], "pending", "{record}");
    }
    let status = run(sooth()
        .args(["validator", "status", "--config"])
        .arg(&config))
    .ok();
    assert!(
        status
            .stdout
            .contains("versions to verify: 2 waiting, 0 being verified"),
        "{}",
        status.stdout
    );

    // A worker verifies them, by the scheduler's plan; its host's clock is an hour slow.
    let slow = if Path::new(FAKETIME).exists() {
        skewed("-1h")
    } else {
        println!(
            "{FAKETIME} is absent (apt-get install faketime): the first worker keeps the time"
        );
        Vec::new()
    };
    let mut first_worker = start_worker(dir, url, "w1", &slow);
    let verified = wait_for_version(port, 1, &mut scheduler, "verified", |s| s == "verified");
    assert!(
        verified["verdicts"].as_array().unwrap().len() >= 2,
        "{verified}"
    );
    let copy = wait_for_version(port, 2, &mut scheduler, "decided", |s| s == "rejected");
    assert!(
        copy["reason"].as_str().unwrap().starts_with("duplicate"),
        "{copy}"
    );

    // While the slow worker verifies a slow agent, a worker with the right time does not take
    // the version from it: the lease is the database's, not an hour in the past.
    add_agent(&config, &hostile, &sooth_test_agents::hostile());
    wait_for_version(port, 3, &mut scheduler, "being verified", |s| {
        s == "verifying"
    });
    let mut second_worker = start_worker(dir, url, "w2", &[]);
    std::thread::sleep(Duration::from_secs(7));
    let held = agent(port, 3);
    assert_eq!(
        (held["status"].as_str(), held["attempts"].as_u64()),
        (Some("verifying"), Some(1)),
        "{held}"
    );

    // Stopped, the slow worker keeps at it; stopped again, it exits at once, and the version
    // waits for its lease to end.
    signal(&first_worker, "TERM");
    assert!(
        wait_until(&mut first_worker, Duration::from_secs(1)).is_none(),
        "the worker stopped without finishing the version it held"
    );
    signal(&first_worker, "TERM");
    let exit = wait_with_deadline(&mut first_worker, Duration::from_secs(5), "a forced stop");
    assert!(!exit.success());
    let log = std::fs::read_to_string(dir.join("w1.log")).unwrap();
    assert!(log.contains("stopped without draining"), "{log}");
    assert!(log.contains(CLAIMED) && log.contains(DECIDED), "{log}");

    // The other worker takes it over once the lease has ended.
    let decided = wait_for_version(port, 3, &mut scheduler, "decided", |s| {
        s == "verified" || s == "rejected"
    });
    assert_eq!(decided["attempts"], 2, "{decided}");

    signal(&second_worker, "TERM");
    let exit = wait_with_deadline(&mut second_worker, Duration::from_secs(30), "the drain");
    assert!(exit.success());
    signal(&scheduler, "TERM");
    let exit = wait_with_deadline(&mut scheduler, Duration::from_secs(30), "the scheduler");
    assert!(exit.success());
    let log = std::fs::read_to_string(&scheduler_log).unwrap();
    // Its verifier never claimed: the lines a verifier logs are the workers' alone.
    assert!(!log.contains(CLAIMED) && !log.contains(DECIDED), "{log}");
}
