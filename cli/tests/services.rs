//! `sooth services link` against a live validator (`sooth validator run` in a child process)
//! whose gateway runs in-process: the miner's key reaches the gateway's store of linked keys,
//! is never printed or logged, is kept sealed in the validator's database, and is handed over
//! again when the validator restarts; a validator whose gateway runs apart refuses keys.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::path::{Path, PathBuf};

use common::live_validator::{LiveValidator, free_port, generate_key};
use common::{Output, run};
use sooth_fake_upstream::{GatewayConfigBuilder, ServiceBuilder};
use sooth_proxy::{ApiKey, LinkedKeys, ProxyConfig, unlink_key};

const SECRET: &str = "sk-cli-linked-0b7e-never-printed";

/// A live validator with open registration and the `[gateway]` table given, with the fake
/// upstream's operator keys in its environment.
struct Validator(LiveValidator);

impl std::ops::Deref for Validator {
    type Target = LiveValidator;
    fn deref(&self) -> &LiveValidator {
        &self.0
    }
}

impl std::ops::DerefMut for Validator {
    fn deref_mut(&mut self) -> &mut LiveValidator {
        &mut self.0
    }
}

impl Validator {
    fn start(gateway: &str) -> Self {
        Self(LiveValidator::start(
            &format!(
                "data_dir = \"data\"\n\n[sources]\njsonl_dirs = [\"events\"]\npoll_secs = 1\n\n\
                 [registration]\nopen = true\n\n[gateway]\n{gateway}"
            ),
            &[
                ("SOOTH_TEST_CHAT_KEY", "sk-operator-chat"),
                ("SOOTH_TEST_SEARCH_KEY", "sk-operator-search"),
            ],
        ))
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
