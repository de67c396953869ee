//! `sooth agent build` on a Rust toolchain that lacks the `wasm32-wasip2`
//! target (one installed before the project asked for it): the build adds the
//! target with rustup, saying so, or, without rustup, stops with one line that
//! names the command to run. Stand-in `rustc`, `rustup` and `cargo` on `PATH`
//! play the toolchain and record what they are asked.

#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::path::PathBuf;

use common::{run, sooth};

/// A toolchain of shell scripts whose target library directory is `libdir`.
struct FakeToolchain {
    dir: tempfile::TempDir,
    project: PathBuf,
}

impl FakeToolchain {
    fn new(with_rustup: bool, target_installed: bool) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        let libdir = dir.path().join("lib/rustlib/wasm32-wasip2/lib");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::create_dir_all(&libdir).unwrap();
        if target_installed {
            std::fs::write(libdir.join("libstd-0123abcd.rlib"), b"").unwrap();
        }
        let log = dir.path().join("calls.log");
        let script = |name: &str, body: &str| {
            let path = bin.join(name);
            std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        };
        script(
            "rustc",
            &format!(
                "echo \"rustc $*\" >> '{log}'\necho '{libdir}'",
                log = log.display(),
                libdir = libdir.display()
            ),
        );
        if with_rustup {
            script(
                "rustup",
                &format!("echo \"rustup $*\" >> '{}'", log.display()),
            );
        }
        // The build itself fails: these tests are about what happens before it.
        script(
            "cargo",
            &format!("echo \"cargo $*\" >> '{}'\nexit 101", log.display()),
        );
        let project = dir.path().join("agent");
        std::fs::create_dir_all(&project).unwrap();
        std::fs::write(
            project.join("Cargo.toml"),
            "[package]\nname = \"agent\"\nversion = \"0.1.0\"\n",
        )
        .unwrap();
        Self { dir, project }
    }

    fn build(&self) -> common::Output {
        run(sooth()
            .args(["agent", "build"])
            .arg(&self.project)
            .env("PATH", self.dir.path().join("bin")))
    }

    fn calls(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join("calls.log"))
            .unwrap_or_default()
            .lines()
            .map(|line| {
                // Only the tool and its first words: cargo's flags are not the point here.
                line.split_whitespace()
                    .take(3)
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect()
    }
}

fn assert_one_error_line(stderr: &str) -> &str {
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|line| line.starts_with("error:"))
        .collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    errors[0]
}

#[test]
fn a_missing_target_is_added_with_rustup_saying_so() {
    let toolchain = FakeToolchain::new(true, false);
    let output = toolchain.build();
    assert!(!output.success);
    assert!(
        output.stderr.contains(
            "lacks the wasm32-wasip2 target; adding it with `rustup target add wasm32-wasip2`"
        ),
        "{}",
        output.stderr
    );
    assert_eq!(
        toolchain.calls(),
        [
            "rustc --print target-libdir",
            "rustup target add",
            "cargo build --release"
        ]
    );
    assert!(
        std::fs::read_to_string(toolchain.dir.path().join("calls.log"))
            .unwrap()
            .contains("rustup target add wasm32-wasip2"),
    );
}

#[test]
fn without_rustup_one_line_names_the_command_to_run() {
    let toolchain = FakeToolchain::new(false, false);
    let output = toolchain.build();
    assert!(!output.success);
    let line = assert_one_error_line(&output.stderr);
    assert!(line.contains("lacks the wasm32-wasip2 target"), "{line}");
    assert!(line.contains("`rustup target add wasm32-wasip2`"), "{line}");
    // Nothing is built on a toolchain that cannot build it.
    assert_eq!(toolchain.calls(), ["rustc --print target-libdir"]);
}

#[test]
fn an_installed_target_is_left_alone() {
    let toolchain = FakeToolchain::new(true, true);
    let output = toolchain.build();
    assert!(!output.success);
    assert_eq!(
        toolchain.calls(),
        ["rustc --print target-libdir", "cargo build --release"]
    );
    assert!(!output.stderr.contains("adding it"), "{}", output.stderr);
    let line = assert_one_error_line(&output.stderr);
    assert!(line.contains("cargo build failed"), "{line}");
}
