//! A miner's commands against a live validator (`sooth validator run` in a child process):
//! `sooth keys generate`, `sooth miner register`, `sooth agent upload` and `sooth agent
//! status`; and the operator's `sooth validator add-miner` and `add-agent` beside them.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::live_validator::{LiveValidator, generate_key, last_word};
use common::{Output, run, scratch_root, sooth};

/// A validator taking uploads every 72 hours, with miners' own registration `open` or not.
fn start(open: bool) -> LiveValidator {
    LiveValidator::start(&config_text(open), &[])
}

/// `sooth agent upload AGENT` signed with `key`, with the tests' compile cache.
fn upload(validator: &LiveValidator, agent: &Path, key: &Path) -> Output {
    let mut command = validator.miner(&["agent", "upload"], key);
    command
        .arg(agent)
        .arg("--cache-dir")
        .arg(scratch_root().join("compile-cache"));
    run(&mut command)
}

/// A validator configuration (no gateway, no probe set: versions are verified without probe
/// runs).
fn config_text(open: bool) -> String {
    format!(
        "data_dir = \"data\"\n\n[sources]\njsonl_dirs = [\"events\"]\npoll_secs = 1\n\n\
         [uploads]\nmin_interval_hours = 72\n\n[registration]\nopen = {open}\n"
    )
}

/// The configuration of [`config_text`] written in `dir`, with its `events` directory.
fn write_config(dir: &Path, open: bool) -> PathBuf {
    std::fs::create_dir_all(dir.join("events")).unwrap();
    let config = dir.join("validator.toml");
    std::fs::write(&config, config_text(open)).unwrap();
    config
}

#[test]
fn keys_generate_writes_a_private_file_once_and_prints_the_public_key() {
    use std::os::unix::fs::PermissionsExt;

    let dir = tempfile::tempdir().unwrap();
    let (path, hotkey) = generate_key(dir.path(), "miner.key");
    assert_eq!(hotkey.len(), 64, "{hotkey}");
    assert!(hotkey.bytes().all(|b| b.is_ascii_hexdigit()), "{hotkey}");
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    let shown = run(sooth().args(["keys", "show", "--key"]).arg(&path)).ok();
    assert_eq!(last_word(&shown.stdout), hotkey);

    let before = std::fs::read(&path).unwrap();
    run(sooth().args(["keys", "generate", "--out"]).arg(&path))
        .fails_with("already exists (a hotkey file is never overwritten)");
    assert_eq!(std::fs::read(&path).unwrap(), before);

    let sr = dir.path().join("sr.key");
    let output = run(sooth()
        .args(["keys", "generate", "--scheme", "sr25519", "--out"])
        .arg(&sr))
    .ok();
    let address = last_word(&output.stdout);
    assert!(address.starts_with('5') && address.len() == 48, "{address}");
    let shown = run(sooth().args(["keys", "show", "--key"]).arg(&sr)).ok();
    assert_eq!(last_word(&shown.stdout), address);
}

#[test]
fn a_miner_registers_uploads_and_sees_its_version_verified_then_waits_its_turn() {
    let mut validator = start(true);
    let keys = tempfile::tempdir().unwrap();
    let (key, hotkey) = generate_key(keys.path(), "miner.key");

    let registered = run(&mut validator.miner(&["miner", "register"], &key)).ok();
    assert_eq!(
        registered.stdout.trim(),
        format!("registered {hotkey} as uid 0")
    );
    run(&mut validator.miner(&["miner", "register"], &key)).fails_with("already_registered");

    let uploaded = upload(&validator, &sooth_test_agents::always_half(), &key).ok();
    let last = uploaded.stdout.lines().last().unwrap().to_owned();
    let version: i64 = last
        .strip_prefix("version ")
        .and_then(|rest| rest.strip_suffix(": pending"))
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("not `version N: pending`: {}", uploaded.stdout));

    let id = version.to_string();
    let mut status = String::new();
    let url = validator.url.clone();
    validator.wait_until("the version is verified", || {
        let output = run(&mut validator_status(&key, &id, &url)).ok();
        status = output.stdout;
        let word = last_word(&status);
        assert!(
            matches!(word, "pending" | "verifying" | "verified"),
            "{status}"
        );
        word == "verified"
    });
    assert!(
        status.starts_with(&format!("version {version} of {hotkey}: sha256 ")),
        "{status}"
    );
    let all = run(&mut validator.miner(&["agent", "status"], &key)).ok();
    assert_eq!(all.stdout.trim(), format!("version {version}: verified"));

    // Another build within the 72 hours: refused, saying when the next is allowed.
    let refused = upload(&validator, &sooth_test_agents::market_baseline(), &key)
        .fails_with("upload_too_soon");
    assert!(refused.stderr.contains("allowed at"), "{}", refused.stderr);
}

/// `sooth agent status VERSION`.
fn validator_status(key: &Path, version: &str, url: &str) -> Command {
    let mut command = sooth();
    command
        .args(["agent", "status", version, "--validator", url, "--key"])
        .arg(key);
    command
}

#[test]
fn where_registration_is_the_operators_a_miner_uploads_once_added() {
    let validator = start(false);
    let keys = tempfile::tempdir().unwrap();
    let (key, hotkey) = generate_key(keys.path(), "miner.key");

    run(&mut validator.miner(&["miner", "register"], &key)).fails_with("registration_closed");

    // A file that is no component is refused before it is sent (the validator would have
    // refused this unregistered key first).
    let bogus = keys.path().join("bogus.wasm");
    std::fs::write(&bogus, "not a component").unwrap();
    let refused = upload(&validator, &bogus, &key).fails_with("agent ").stderr;
    assert!(
        refused.contains("was not uploaded")
            && refused.contains("does not load in the validator's sandbox"),
        "{refused}"
    );
    assert!(!refused.contains("unknown_hotkey"), "{refused}");

    let agent = sooth_test_agents::always_half();
    upload(&validator, &agent, &key).fails_with("unknown_hotkey");

    run(sooth()
        .args(["validator", "add-miner", "--config"])
        .arg(&validator.config)
        .args(["--hotkey", "miner-7"]))
    .fails_with("\"miner-7\" is not a hotkey");
    let added = run(sooth()
        .args(["validator", "add-miner", "--config"])
        .arg(&validator.config)
        .args(["--hotkey", &hotkey]))
    .ok();
    assert_eq!(added.stdout.trim(), format!("registered {hotkey} as uid 0"));

    let uploaded = upload(&validator, &agent, &key).ok();
    assert!(
        uploaded.stdout.trim_end().ends_with(": pending"),
        "{}",
        uploaded.stdout
    );
}

#[test]
fn the_operators_copy_of_another_miners_agent_is_rejected_as_a_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), false);
    let (_, first) = generate_key(dir.path(), "first.key");
    let (_, second) = generate_key(dir.path(), "second.key");
    let agent = sooth_test_agents::always_half();
    let add = |hotkey: &str| {
        run(sooth()
            .args(["validator", "add-agent", "--config"])
            .arg(&config)
            .args(["--hotkey", hotkey])
            .arg(&agent))
    };

    let added = add(&first).ok();
    assert!(
        added
            .stdout
            .contains(&format!("registered {first} as uid 0")),
        "{}",
        added.stdout
    );
    assert!(
        added.stdout.contains(&format!(" of {first}: verified\n")),
        "{}",
        added.stdout
    );
    assert!(added.stdout.contains("active at the next 00:00 UTC"));

    let copied = add(&second).fails_with("was rejected: duplicate");
    assert!(
        copied.stdout.contains(&format!(" of {second}: rejected")),
        "{}",
        copied.stdout
    );
}

#[test]
fn a_compile_bomb_is_rejected_at_verification_by_the_compile_caps() {
    use sooth_test_agents::crafted::{NESTED_BLOCKS_DEPTH, nested_blocks};
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), false);
    // Seven MiB of nested blocks: gigabytes to compile without the compile process's caps.
    let bomb = dir.path().join("bomb.wasm");
    std::fs::write(&bomb, nested_blocks(NESTED_BLOCKS_DEPTH)).unwrap();
    let (_, hotkey) = generate_key(dir.path(), "miner.key");
    let started = Instant::now();
    let refused = run(sooth()
        .args(["validator", "add-agent", "--config"])
        .arg(&config)
        .args(["--hotkey", &hotkey])
        .arg(&bomb))
    .fails_with("was rejected");
    assert!(
        refused.stderr.contains("does not load")
            && refused.stderr.contains("compilation needed more than"),
        "{}",
        refused.stderr
    );
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "refused after {:?}",
        started.elapsed()
    );
}
