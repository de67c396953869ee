//! What the command line prints when it fails, for real failures: one line,
//! `error: ` and then each layer of the failure once, outermost first, joined
//! by `: caused by `, with no cause repeated by the layer above it.

#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use common::{run, sooth};

/// The one `error:` line of `stderr`, split into its layers.
fn layers(stderr: &str) -> Vec<String> {
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|line| line.starts_with("error: "))
        .collect();
    assert_eq!(errors.len(), 1, "one error line expected:\n{stderr}");
    errors[0]["error: ".len()..]
        .split(": caused by ")
        .map(str::to_owned)
        .collect()
}

/// No layer's text holds another layer's: each cause is said once.
fn assert_each_cause_once(layers: &[String]) {
    for (i, outer) in layers.iter().enumerate() {
        for inner in &layers[i + 1..] {
            assert!(
                !outer.contains(inner.as_str()) && !inner.contains(outer.as_str()),
                "a cause is repeated: {outer:?} and {inner:?} in {layers:?}"
            );
        }
    }
}

#[test]
fn an_unreadable_configuration_names_the_file_then_why() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("validator.toml");
    let output = run(sooth().args(["validator", "run", "--config"]).arg(&missing));
    assert!(!output.success);
    let layers = layers(&output.stderr);
    assert!(layers.len() >= 2, "{layers:?}");
    assert!(layers[0].contains("validator.toml"), "{layers:?}");
    assert!(
        layers.last().unwrap().contains("No such file or directory"),
        "{layers:?}"
    );
    assert_each_cause_once(&layers);
}

#[test]
fn a_file_that_is_no_component_says_so_once() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("validator.toml");
    std::fs::write(&config, "data_dir = \"data\"\n").unwrap();
    let bogus = dir.path().join("bogus.wasm");
    std::fs::write(&bogus, "not a component").unwrap();
    let output = run(sooth()
        .args(["validator", "add-agent", "--config"])
        .arg(&config)
        .args([
            "--hotkey",
            "d43593c715fdd31c61141abd04a99fd6822c8558854ccde39a5684e7a56da27d",
        ])
        .arg(&bogus));
    assert!(!output.success);
    let layers = layers(&output.stderr);
    assert!(
        layers
            .iter()
            .any(|layer| layer.contains("not a WebAssembly binary")),
        "{layers:?}"
    );
    assert_each_cause_once(&layers);
}

#[test]
fn a_full_disk_names_the_database_failure_once() {
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events.jsonl");
    let lines: String = (0..3_000)
        .map(|i| {
            format!(
                "{{\"id\": \"e{i}\", \"title\": \"Will event {i} happen?\", \"created_at\": \"2025-03-01T00:00:00Z\", \"description\": \"{}\"}}\n",
                "background ".repeat(20)
            )
        })
        .collect();
    std::fs::write(&events, lines).unwrap();
    // Files may not grow past 300 KiB (SIGXFSZ ignored, so a write past it fails instead of
    // killing the process): the database fills up part-way.
    let output = run(std::process::Command::new("bash")
        .arg("-c")
        .arg("ulimit -f 300; trap '' XFSZ; exec \"$@\"")
        .arg("bash")
        .arg(env!("CARGO_BIN_EXE_sooth"))
        .arg("backtest")
        .arg("--events")
        .arg(&events)
        .arg("--agents")
        .arg(sooth_test_agents::always_half())
        .arg("--data-dir")
        .arg(dir.path().join("data")));
    assert!(!output.success);
    let layers = layers(&output.stderr);
    assert!(
        layers.last().unwrap().contains("full") || layers.last().unwrap().contains("disk"),
        "{layers:?}"
    );
    assert_each_cause_once(&layers);
}
