//! The gateway configuration through its public parser.

use sooth_fake_upstream::{FakeUpstream, FakeUpstreamConfig};
use sooth_proxy::{ConfigError, ProxyConfig};

/// A configuration with one chat service named `chat` and one search
/// service named `search`, plus `extra` appended (more services).
fn config(extra: &str) -> String {
    format!(
        r#"
data_dir = "data"
validator_public_key = "{key}"
signing_key_file = "signing.key"
default_chat_service = "chat"
default_search_service = "search"

[services.chat]
kind = "chat"
base_url = "http://127.0.0.1:9"
api_key_env = "CHAT_KEY"
per_miner_day_cap_usd = 1.0
linked_per_miner_day_cap_usd = 1.0
models = {{ "org/m" = {{ input_per_million = 0.5, output_per_million = 2.0 }} }}

[services.search]
kind = "search"
base_url = "http://127.0.0.1:9"
api_key_env = "SEARCH_KEY"
per_miner_day_cap_usd = 1.0
linked_per_miner_day_cap_usd = 1.0
{extra}"#,
        key = "00".repeat(32)
    )
}

fn generic(name: &str) -> String {
    format!(
        r#"
[services.{name}]
kind = "generic"
base_url = "http://127.0.0.1:9"
api_key_env = "GENERIC_KEY"
per_miner_day_cap_usd = 1.0
linked_per_miner_day_cap_usd = 1.0
"#
    )
}

/// The whole error line of an invalid configuration, its causes included.
fn invalid_message(text: &str) -> String {
    match ProxyConfig::from_toml(text, "test") {
        Err(error @ (ConfigError::Invalid(_) | ConfigError::ServiceName { .. })) => {
            format!("{:#}", anyhow::Error::new(error))
        }
        other => panic!("expected an invalid configuration, got {other:?}"),
    }
}

#[test]
fn service_names_follow_the_runners_rule() {
    for name in ["echo", "my-llm_2", "0day", &"a".repeat(64)] {
        let parsed = ProxyConfig::from_toml(&config(&generic(name)), "test");
        assert!(parsed.is_ok(), "{name}: {parsed:?}");
    }
    // Quoted TOML keys can spell anything: each is refused, naming the rule.
    for name in [
        "\"../chat\"",
        "\"echo/../../chat\"",
        "\"..\"",
        "\"%2e%2e\"",
        "Echo",
        "-echo",
        "_echo",
        "\"ech o\"",
        "\"ech\\u00f6\"",
        "\"\"",
    ] {
        let message = invalid_message(&config(&generic(name)));
        assert!(message.contains("service name"), "{name}: {message}");
        assert!(
            message.contains("lowercase ASCII letters, digits") || message.contains("empty"),
            "{name}: {message}"
        );
    }
    let long = "a".repeat(65);
    let message = invalid_message(&config(&generic(&long)));
    assert!(message.contains("64 byte limit"), "{message}");
    // A name of megabytes is not repeated whole.
    let huge = format!("\"{}\"", "x".repeat(1 << 20));
    assert!(invalid_message(&config(&generic(&huge))).len() < 1_000);
}

#[test]
fn clamp_to_as_of_is_a_search_setting() {
    let on = ProxyConfig::from_toml(&config(""), "test").expect("config");
    assert!(on.services["search"].clamps_to_as_of());
    assert!(!on.services["chat"].clamps_to_as_of());
    let off = ProxyConfig::from_toml(&config("clamp_to_as_of = false\n"), "test").expect("config");
    assert!(!off.services["search"].clamps_to_as_of());
    let explicit =
        ProxyConfig::from_toml(&config("clamp_to_as_of = true\n"), "test").expect("config");
    assert!(explicit.services["search"].clamps_to_as_of());
    let on_generic = format!("{}clamp_to_as_of = true\n", generic("echo"));
    let message = invalid_message(&config(&on_generic));
    assert!(message.contains("search services only"), "{message}");
}

#[tokio::test]
async fn the_fake_upstreams_configuration_is_valid() {
    let fake = FakeUpstream::start(FakeUpstreamConfig::default())
        .await
        .expect("fake upstream");
    let dir = tempfile::tempdir().expect("tempdir");
    let text = fake.gateway_config_toml(dir.path(), &["org/m"], 1.0);
    let config = ProxyConfig::from_toml(&text, "fake").expect("valid");
    assert!(config.services["search"].clamps_to_as_of());
    fake.shutdown().await;
}

#[test]
fn a_shared_ledger_needs_a_postgresql_url_and_a_sane_lease() {
    let with = |top: &str| format!("{top}\n{}", config(""));
    let shared = ProxyConfig::from_toml(
        &with("database_url = \"postgres://sooth@db/sooth\"\nledger_lease_secs = 30"),
        "test",
    )
    .expect("a PostgreSQL ledger");
    assert_eq!(
        shared.database_url.as_deref(),
        Some("postgres://sooth@db/sooth")
    );
    assert_eq!(shared.ledger_lease_secs, 30);
    assert_eq!(
        ProxyConfig::from_toml(&config(""), "test")
            .unwrap()
            .ledger_lease_secs,
        10
    );
    for (top, says) in [
        (
            "database_url = \"sqlite://gateway.sqlite\"",
            "database_url must be a PostgreSQL URL",
        ),
        (
            "database_url = \"postgres://u:secret@db/x\"\nledger_lease_secs = 0",
            "ledger_lease_secs must be 1 to 3600",
        ),
    ] {
        let error = ProxyConfig::from_toml(&with(top), "test").unwrap_err();
        let shown = error.to_string();
        assert!(shown.contains(says), "{top}: {shown}");
        assert!(!shown.contains("secret"), "{shown}");
    }
}
