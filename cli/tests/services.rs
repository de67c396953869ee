//! `sooth services link` against a live validator (`sooth validator run` in a child process)
//! whose gateway runs in-process: the miner's key reaches the gateway's store of linked keys,
//! is never printed or logged, is kept sealed in the validator's database, and is handed over
//! again when the validator restarts; a validator whose gateway runs apart refuses keys.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Output, run, sooth};
use sooth_fake_upstream::{GatewayConfigBuilder, ServiceBuilder};
use sooth_proxy::{ApiKey, LinkedKeys, ProxyConfig, unlink_key};

const SECRET: &str = "sk-cli-linked-0b7e-never-printed";

/// A free loopback port.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A live validator in a temporary directory, stopped when dropped.
struct Validator {
    dir: tempfile::TempDir,
    child: Option<Child>,
    url: String,
    config: PathBuf,
    port: u16,
}

impl Validator {
    /// A validator with open registration and the `[gateway]` table given.
    fn start(gateway: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("events")).unwrap();
        let port = free_port();
        let config = dir.path().join("validator.toml");
        std::fs::write(
            &config,
            format!(
                "data_dir = \"data\"\n\n[sources]\njsonl_dirs = [\"events\"]\npoll_secs = 1\n\n\
                 [registration]\nopen = true\n\n[api]\nlisten = \"127.0.0.1:{port}\"\n\n\
                 [gateway]\n{gateway}\n"
            ),
        )
        .unwrap();
        let mut validator = Self {
            dir,
            child: None,
            url: format!("http://127.0.0.1:{port}"),
            config,
            port,
        };
        validator.restart();
        validator
    }

    /// Starts the validator (again), its log appended to `validator.log`.
    fn restart(&mut self) {
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
            .env("SOOTH_TEST_CHAT_KEY", "sk-operator-chat")
            .env("SOOTH_TEST_SEARCH_KEY", "sk-operator-search")
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

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits (up to a minute) until `check` holds, as long as the validator runs.
    fn wait_until(&mut self, what: &str, mut check: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !check() {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
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

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("validator.log")).unwrap_or_default()
    }

    /// `sooth ARGS... --validator URL --key KEY`.
    fn miner(&self, args: &[&str], key: &Path) -> Command {
        let mut command = sooth();
        command
            .args(args)
            .args(["--validator", &self.url, "--key"])
            .arg(key);
        command
    }

    /// `sooth services link SERVICE --api-key-env SOOTH_TEST_MINER_KEY` with the variable
    /// holding `key`.
    fn link(&self, service: &str, key: &str, hotkey_file: &Path) -> Output {
        let mut command = self.miner(
            &[
                "services",
                "link",
                service,
                "--api-key-env",
                "SOOTH_TEST_MINER_KEY",
            ],
            hotkey_file,
        );
        run(command.env("SOOTH_TEST_MINER_KEY", key))
    }

    /// Every file in the data directory, as bytes.
    fn data_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::new();
        for entry in std::fs::read_dir(self.dir.path().join("data")).unwrap() {
            let path = entry.unwrap().path();
            if path.is_file() {
                bytes.extend(std::fs::read(path).unwrap());
            }
        }
        bytes
    }
}

impl Drop for Validator {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A gateway configuration (services `chat` and `search`) in `dir`, its files in
/// `dir/gateway`, listening on a port of its own.
fn gateway_config(dir: &Path) -> PathBuf {
    let toml = GatewayConfigBuilder::new(dir.join("gateway"))
        .signing_key_file(dir.join("gateway-signing.key"))
        .service(ServiceBuilder::chat(
            "chat",
            "http://127.0.0.1:9",
            "SOOTH_TEST_CHAT_KEY",
            &["fake-org/Fake-Model-8B"],
        ))
        .service(ServiceBuilder::search(
            "search",
            "http://127.0.0.1:9",
            "SOOTH_TEST_SEARCH_KEY",
        ))
        .to_toml();
    let path = dir.join("gateway.toml");
    let port = free_port();
    std::fs::write(&path, format!("listen = \"127.0.0.1:{port}\"\n{toml}")).unwrap();
    path
}

/// The key the gateway in `gateway_dir` has on file for `miner` and `service`, if any.
fn gateway_key(gateway_dir: &Path, service: &str, miner: &str) -> Option<String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let keys = LinkedKeys::open(&gateway_dir.join("gateway.sqlite"), None)
            .await
            .unwrap();
        keys.lookup(service, miner)
            .map(|key: ApiKey| key.expose().to_owned())
    })
}

/// `sooth keys generate --out DIR/NAME`: the file and the public key printed.
fn generate_key(dir: &Path, name: &str) -> (PathBuf, String) {
    let path = dir.join(name);
    let output = run(sooth().args(["keys", "generate", "--out"]).arg(&path)).ok();
    let hotkey = output
        .stdout
        .lines()
        .last()
        .and_then(|line| line.split_whitespace().last())
        .unwrap()
        .to_owned();
    (path, hotkey)
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle.as_bytes())
}

#[test]
fn a_miner_links_its_key_and_the_in_process_gateway_has_it_and_no_one_sees_it() {
    let gateway_dir = tempfile::tempdir().unwrap();
    let gateway_toml = gateway_config(gateway_dir.path());
    let mut validator = Validator::start(&format!("config = {:?}", gateway_toml.display()));
    let keys = tempfile::tempdir().unwrap();
    let (key, hotkey) = generate_key(keys.path(), "miner.key");

    // Not registered yet.
    validator
        .link("chat", SECRET, &key)
        .fails_with("unknown_hotkey");
    run(&mut validator.miner(&["miner", "register"], &key)).ok();

    let linked = validator.link("chat", SECRET, &key).ok();
    assert!(
        linked
            .stdout
            .starts_with("linked your key for service chat at "),
        "{}",
        linked.stdout
    );
    let gateway_files = gateway_dir.path().join("gateway");
    assert_eq!(
        gateway_key(&gateway_files, "chat", &hotkey).as_deref(),
        Some(SECRET)
    );
    assert_eq!(gateway_key(&gateway_files, "search", &hotkey), None);

    // Refusals: the variable unset, names and keys the rules refuse, a service the gateway
    // lacks; none repeats the key.
    run(&mut validator.miner(
        &[
            "services",
            "link",
            "chat",
            "--api-key-env",
            "SOOTH_TEST_UNSET_VARIABLE",
        ],
        &key,
    ))
    .fails_with("SOOTH_TEST_UNSET_VARIABLE is unset");
    validator
        .link("Chat", SECRET, &key)
        .fails_with("not a service name");
    let refused = validator
        .link("chat", "sk with-a-space-secret", &key)
        .fails_with("not an API key");
    assert!(
        !refused.stderr.contains("with-a-space"),
        "{}",
        refused.stderr
    );
    let refused = validator
        .link("llm", SECRET, &key)
        .fails_with("unknown_service");
    assert!(
        !refused.stderr.contains("never-printed"),
        "{}",
        refused.stderr
    );

    // Sealed in the validator's data directory; never logged.
    let data = validator.data_bytes();
    assert!(
        contains(&data, &hotkey),
        "the data directory holds the miner"
    );
    assert!(!contains(&data, "never-printed"), "the key is in clear");
    assert!(validator.dir.path().join("data/linked-keys.key").exists());
    let log = validator.log();
    assert!(log.contains("linked its own key"), "{log}");
    assert!(!log.contains("never-printed"), "{log}");

    // A restarted validator hands its keys over again: the gateway's copy, removed behind
    // its back, is back.
    let gateway = ProxyConfig::from_file(&gateway_toml).unwrap();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(unlink_key(&gateway, &hotkey, "chat"))
        .unwrap();
    assert_eq!(gateway_key(&gateway_files, "chat", &hotkey), None);
    validator.restart();
    validator.wait_until("the key is handed over again", || {
        gateway_key(&gateway_files, "chat", &hotkey).as_deref() == Some(SECRET)
    });
    assert!(!validator.log().contains("never-printed"));
}

#[test]
fn a_validator_whose_gateway_runs_apart_refuses_keys_and_says_why_in_its_log() {
    let validator = Validator::start("url = \"http://127.0.0.1:9\"");
    let keys = tempfile::tempdir().unwrap();
    let (key, _) = generate_key(keys.path(), "miner.key");
    run(&mut validator.miner(&["miner", "register"], &key)).ok();
    validator
        .link("chat", SECRET, &key)
        .fails_with("takes no linked keys");
    let log = validator.log();
    assert!(log.contains("linked keys cannot be handed to it"), "{log}");
}
