//! `sooth proxy run` as a child process of a test, killed when the test drops it.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};

use super::sooth;

/// A running gateway process and the URL it said it listens on.
pub struct GatewayProcess {
    pub child: Child,
    pub url: String,
}

impl Drop for GatewayProcess {
    /// A test that fails leaves no gateway behind.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `sooth proxy run --config CONFIG` with `envs` (the upstream keys) and waits until
/// it listens.
pub fn start_gateway(config: &Path, envs: &[(&str, &str)]) -> GatewayProcess {
    let mut child = sooth()
        .args(["proxy", "run", "--config"])
        .arg(config)
        .envs(envs.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("sooth proxy run");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let url = loop {
        let line = lines
            .next()
            .unwrap_or_else(|| panic!("the gateway of {} ended before listening", config.display()))
            .expect("stdout line");
        if let Some(url) = line.strip_prefix("gateway listening on ") {
            break url.trim().to_owned();
        }
    };
    // Keep draining what it prints, so that it never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    GatewayProcess { child, url }
}
