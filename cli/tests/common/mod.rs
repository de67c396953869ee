//! Helpers shared by the CLI's integration tests: they run the built `sooth`
//! binary as a user would.

#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// What a finished command printed.
pub struct Output {
    pub success: bool,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// Panic with everything printed unless the command succeeded.
    pub fn ok(self) -> Self {
        assert!(
            self.success,
            "command failed ({:?})\nstdout:\n{}\nstderr:\n{}",
            self.code, self.stdout, self.stderr
        );
        self
    }

    /// Panic unless the command failed and said `message` on stderr.
    pub fn fails_with(self, message: &str) -> Self {
        assert!(
            !self.success,
            "command succeeded\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        assert!(
            self.stderr.contains(message),
            "stderr lacks {message:?}:\n{}",
            self.stderr
        );
        self
    }

    /// The stdout lines parsed as JSON objects.
    pub fn json_lines(&self) -> Vec<serde_json::Value> {
        self.stdout
            .lines()
            .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
            .collect()
    }
}

/// The `sooth` binary under test.
pub fn sooth() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sooth"))
}

/// Run a command to its end.
pub fn run(command: &mut Command) -> Output {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    Output {
        success: output.status.success(),
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

pub fn workspace_root() -> PathBuf {
    sooth_test_agents::workspace_root()
}

/// Scratch space of these tests under the workspace's `target/`, kept
/// between runs so that compiled dependencies are reused.
pub fn scratch_root() -> PathBuf {
    let dir = workspace_root().join("target").join("cli-tests");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `sooth agent test AGENT` with a compile cache under the scratch space.
pub fn agent_test(agent: &Path) -> Command {
    let mut command = sooth();
    command
        .args(["agent", "test"])
        .arg(agent)
        .arg("--cache-dir")
        .arg(scratch_root().join("compile-cache"));
    command
}

/// The shared ForecastBench file, when present.
pub fn forecastbench() -> Option<PathBuf> {
    let path = workspace_root().join("../shared/data/forecastbench/questions.jsonl");
    if path.exists() {
        Some(path)
    } else {
        println!("skipped: {} is absent", path.display());
        None
    }
}

/// The summary object ending a `--json` report, and the rows before it.
pub fn split_report(output: &Output) -> (Vec<serde_json::Value>, serde_json::Value) {
    let mut lines = output.json_lines();
    let summary = lines.pop().unwrap();
    assert_eq!(
        summary["summary"], true,
        "the last line is not the summary: {summary}"
    );
    assert!(lines.iter().all(|row| row.get("summary").is_none()));
    (lines, summary)
}

/// A file holding `text` in a fresh temporary directory.
pub fn file_with(name: &str, text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

/// Canned gateway answers: every chat says 0.72 and costs a tenth of a cent.
pub const RESPONSES_072: &str = r#"
[[rule]]
service = "chat"
cost_usd = 0.001
content = "Probability: 0.72"
"#;
pub mod day;
pub mod forwarder;
pub mod gateway_process;
pub mod live_validator;
