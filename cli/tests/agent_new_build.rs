//! `sooth agent new`, `sooth agent build` and `sooth agent test` together:
//! the path of a miner starting from nothing. These build real projects
//! (cargo for wasm32-wasip2, componentize-py), so they are slow the first
//! time; compiled dependencies are kept under `target/cli-tests`.

#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::path::Path;

use common::{agent_test, run, scratch_root, sooth, split_report};

/// A fresh parent directory inside the workspace's `target/`: a project
/// there must not be claimed by the enclosing workspace.
fn parent() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("projects-")
        .tempdir_in(scratch_root())
        .unwrap()
}

/// The example events of a new project, forecast by its market-or-0.5 agent.
fn check_example_report(agent: &Path, events: &Path) {
    let output = run(agent_test(agent).arg("--events").arg(events).arg("--json")).ok();
    let (rows, summary) = split_report(&output);
    let predictions: Vec<(String, f64)> = rows
        .iter()
        .map(|row| {
            (
                row["event_id"].as_str().unwrap().to_owned(),
                row["prediction"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        predictions,
        [
            ("example-1".to_owned(), 0.3),
            ("example-2".to_owned(), 0.65),
            ("example-3".to_owned(), 0.5)
        ]
    );
    assert_eq!(summary["ok"], 3);
}

fn check_built(output: &common::Output, wasm: &Path) {
    assert!(output.stdout.contains("built "), "{}", output.stdout);
    assert!(output.stdout.contains("sha256"), "{}", output.stdout);
    let size = std::fs::metadata(wasm).unwrap().len();
    assert!(
        output.stdout.contains(&format!("{size} bytes")),
        "{}",
        output.stdout
    );
}

#[test]
fn a_new_rust_agent_builds_and_runs() {
    let parent = parent();
    run(sooth()
        .args(["agent", "new", "my-agent", "--dir"])
        .arg(parent.path()))
    .ok();
    let project = parent.path().join("my-agent");
    for file in [
        "Cargo.toml",
        "src/lib.rs",
        "rust-toolchain.toml",
        "README.md",
        "events.jsonl",
        "sooth/sdk/Cargo.toml",
        "sooth/sdk/src/lib.rs",
        "sooth/wit/sooth.wit",
    ] {
        assert!(project.join(file).is_file(), "{file} is missing");
    }
    let output = run(sooth()
        .args(["agent", "build"])
        .arg(&project)
        .env("CARGO_TARGET_DIR", scratch_root().join("rust-agent-target")))
    .ok();
    let wasm = project.join("agent.wasm");
    check_built(&output, &wasm);
    check_example_report(&wasm, &project.join("events.jsonl"));

    // A second `new` with the same name is refused and changes nothing.
    run(sooth()
        .args(["agent", "new", "my-agent", "--dir"])
        .arg(parent.path()))
    .fails_with("already exists");
    assert!(wasm.is_file());
}

#[test]
fn a_new_python_agent_builds_and_runs() {
    let parent = parent();
    run(sooth()
        .args(["agent", "new", "py-agent", "--lang", "python", "--dir"])
        .arg(parent.path()))
    .ok();
    let project = parent.path().join("py-agent");
    for file in [
        "app.py",
        "sooth_sdk.py",
        "wit/sooth.wit",
        "README.md",
        "events.jsonl",
    ] {
        assert!(project.join(file).is_file(), "{file} is missing");
    }
    let wasm = parent.path().join("out").join("py.wasm");
    std::fs::create_dir(wasm.parent().unwrap()).unwrap();
    let output = run(sooth()
        .args(["agent", "build"])
        .arg(&project)
        .arg("--out")
        .arg(&wasm))
    .ok();
    check_built(&output, &wasm);
    check_example_report(&wasm, &project.join("events.jsonl"));
}

#[test]
fn the_python_example_builds_from_the_repository_root() {
    let out = tempfile::tempdir().unwrap();
    let wasm = out.path().join("llm-forecaster-py.wasm");
    let output = run(sooth()
        .current_dir(common::workspace_root())
        .args([
            "agent",
            "build",
            "agents-examples/llm-forecaster-py",
            "--out",
        ])
        .arg(&wasm))
    .ok();
    check_built(&output, &wasm);
    // It found the SDK helper and the contract of this checkout, not copies.
    assert!(output.stderr.contains("wit/sooth.wit"), "{}", output.stderr);
    assert!(!output.stderr.contains("warning"), "{}", output.stderr);
}

#[test]
fn building_python_without_componentize_py_says_how_to_install_it() {
    let parent = parent();
    run(sooth()
        .args(["agent", "new", "py-agent", "--lang", "python", "--dir"])
        .arg(parent.path()))
    .ok();
    let empty = tempfile::tempdir().unwrap();
    run(sooth()
        .args(["agent", "build"])
        .arg(parent.path().join("py-agent"))
        .env("PATH", empty.path()))
    .fails_with("pip install componentize-py");
}

#[test]
fn building_a_directory_without_a_project_is_refused() {
    let empty = tempfile::tempdir().unwrap();
    run(sooth().args(["agent", "build"]).arg(empty.path())).fails_with("neither Cargo.toml");
}

#[test]
fn bad_names_are_refused() {
    let parent = parent();
    run(sooth()
        .args(["agent", "new", "../escape", "--dir"])
        .arg(parent.path()))
    .fails_with("invalid agent name");
}
