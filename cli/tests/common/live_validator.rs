//! `sooth validator run` in a child process, in a temporary directory, for the tests of the
//! miners' commands against a live validator.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{run, sooth};

/// A free loopback port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The last word of the last line of `text`.
pub fn last_word(text: &str) -> &str {
    text.lines()
        .last()
        .and_then(|line| line.split_whitespace().last())
        .unwrap_or("")
}

/// `sooth keys generate --out DIR/NAME`: the file and the public key printed.
pub fn generate_key(dir: &Path, name: &str) -> (PathBuf, String) {
    let path = dir.join(name);
    let output = run(sooth().args(["keys", "generate", "--out"]).arg(&path)).ok();
    (path, last_word(&output.stdout).to_owned())
}

/// A live validator, stopped when dropped; its log (`-vv`) in `validator.log`.
pub struct LiveValidator {
    pub dir: tempfile::TempDir,
    pub url: String,
    pub config: PathBuf,
    child: Option<Child>,
    port: u16,
    envs: Vec<(String, String)>,
}

impl LiveValidator {
    /// A validator whose configuration is `toml` (watching `events/`) plus its `[api]`, run
    /// with the environment variables `envs`.
    pub fn start(toml: &str, envs: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("events")).unwrap();
        let port = free_port();
        let config = dir.path().join("validator.toml");
        std::fs::write(
            &config,
            format!("{toml}\n\n[api]\nlisten = \"127.0.0.1:{port}\"\n"),
        )
        .unwrap();
        let mut validator = Self {
            dir,
            url: format!("http://127.0.0.1:{port}"),
            config,
            child: None,
            port,
            envs: envs
                .iter()
                .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
                .collect(),
        };
        validator.restart();
        validator
    }

    /// Starts the validator (again), its log appended.
    pub fn restart(&mut self) {
        self.stop();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("validator.log"))
            .unwrap();
        let child = sooth()
            .current_dir(self.dir.path())
            .args(["-vv", "validator", "run", "--config"])
            .arg(&self.config)
            .envs(self.envs.iter().map(|(name, value)| (name, value)))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let port = self.port;
        self.wait_until("the API listens", || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
    }

    /// Stops the validator (SIGKILL).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits (up to a minute) until `check` holds, as long as the validator runs.
    pub fn wait_until(&mut self, what: &str, mut check: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !check() {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait().unwrap()
            {
                panic!(
                    "the validator exited ({status}) before {what}:\n{}",
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// What the validator logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("validator.log")).unwrap_or_default()
    }

    /// `sooth ARGS... --validator URL --key KEY`.
    pub fn miner(&self, args: &[&str], key: &Path) -> Command {
        let mut command = sooth();
        command
            .args(args)
            .args(["--validator", &self.url, "--key"])
            .arg(key);
        command
    }
}

impl Drop for LiveValidator {
    fn drop(&mut self) {
        self.stop();
    }
}
