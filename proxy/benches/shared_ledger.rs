//! Shared-ledger benchmark: the latency a gateway adds over calling the
//! upstream directly when two gateways share one spend ledger in
//! PostgreSQL, at 1,000 distinct chat requests a second split between them,
//! next to one gateway on its own SQLite ledger (the default) in the same
//! run. The requests come from 250 runs of 20 calls by 50 miners, so slices
//! of the run caps are granted throughout, as in a day of LLM agents.
//!
//! ```text
//! cargo bench -p sooth-proxy --bench shared_ledger
//! ```
//!
//! PostgreSQL is `SOOTH_TEST_POSTGRES_URL`, by default the machine's own
//! (`postgres://postgres@127.0.0.1:5432/test`), in a schema of its own.

mod common;

use std::collections::BTreeMap;

use common::{gateway, ms, paced, percentile};
use ed25519_dalek::SigningKey;
use sooth_fake_upstream::{FakeUpstream, FakeUpstreamConfig, GatewayConfigBuilder, ServiceBuilder};
use sooth_protocol::{RunClaims, encode_public_key, generate_key, mint};
use sooth_proxy::{Ledger, ProxyConfig, RunningGateway, SharedLedgerOptions};
use sooth_test_postgres::TestSchema;

const MODEL: &str = "fake-org/Fake-Model-8B";
const RATE: u64 = 1000;
const CALLS_PER_RUN: usize = 20;
const MINERS: usize = 50;

/// The token of run `run` (of miner `run % MINERS`) in scenario `scenario`.
fn tokens(validator: &SigningKey, scenario: &str, runs: usize) -> Vec<String> {
    let now = chrono::Utc::now().timestamp();
    (0..runs)
        .map(|run| {
            mint(
                validator,
                &RunClaims {
                    run_id: format!("{scenario}-{run}"),
                    miner: format!("miner-{}", run % MINERS),
                    agent_hash: "00".repeat(32),
                    caps_usd: BTreeMap::from([("*".into(), 1.0)]),
                    linked_key: false,
                    issued_at: now,
                    expires_at: now + 3600,
                    as_of: now,
                },
            )
        })
        .collect()
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .init();
    let fake_config = FakeUpstreamConfig::default();
    let upstream = FakeUpstream::start(fake_config.clone())
        .await
        .expect("fake upstream");
    let base = upstream.base_url();
    let validator = generate_key();
    let toml = GatewayConfigBuilder::new("unused")
        .validator_public_key(encode_public_key(&validator.verifying_key()))
        .default_services("chat", "search")
        .service(
            ServiceBuilder::chat("chat", &base, "UNUSED", &[MODEL])
                .set("cache", "\"off\"")
                .day_caps(1_000.0, 1_000.0),
        )
        .service(ServiceBuilder::search("search", &base, "UNUSED"))
        .to_toml();
    let config = ProxyConfig::from_toml(&toml, "bench").expect("config");
    let keys = BTreeMap::from([
        ("chat".to_owned(), fake_config.api_key.clone()),
        ("search".to_owned(), fake_config.search_api_key.clone()),
    ]);
    let dirs: Vec<_> = (0..3)
        .map(|_| tempfile::tempdir().expect("tempdir"))
        .collect();
    let own = gateway(
        &config,
        &validator,
        Ledger::open(&dirs[0].path().join("gateway.sqlite"))
            .await
            .expect("ledger"),
        dirs[0].path(),
        &keys,
    )
    .await;
    let schema = TestSchema::create().await;
    let mut shared = Vec::new();
    for dir in &dirs[1..] {
        let ledger = Ledger::open_shared(schema.url(), &SharedLedgerOptions::default())
            .await
            .expect("shared ledger");
        shared.push(gateway(&config, &validator, ledger, dir.path(), &keys).await);
    }
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .tcp_nodelay(true)
        .build()
        .expect("client");
    let upstream_url = format!("{base}/v1/chat/completions");
    let body = |i: usize| serde_json::json!({"model": MODEL, "messages": [{"role": "user", "content": format!("question {i}")}], "max_tokens": 8});
    let calls = (RATE * common::PACED_FOR.as_secs()) as usize;
    let runs = calls.div_ceil(CALLS_PER_RUN);

    // Warm the connection pools (and the ledgers) with runs of their own.
    let warm = tokens(&validator, "warm", 10);
    for i in 0..200 {
        for url in [own.base_url(), shared[0].base_url(), shared[1].base_url()] {
            client
                .post(format!("{url}/v1/chat"))
                .bearer_auth(&warm[i % warm.len()])
                .json(&body(i))
                .send()
                .await
                .expect("warm");
        }
    }
    println!(
        "sooth shared-ledger benchmark ({} cores); {RATE} distinct chat requests/s for {} s, runs of {CALLS_PER_RUN} calls by {MINERS} miners",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        common::PACED_FOR.as_secs()
    );
    let mut direct = paced(RATE, |i| {
        client
            .post(&upstream_url)
            .bearer_auth(&fake_config.api_key)
            .json(&body(i))
    })
    .await;
    let (d50, d99) = (
        percentile(&mut direct.latencies, 0.5),
        percentile(&mut direct.latencies, 0.99),
    );
    println!(
        "direct to the upstream: p50 {:.3} ms p99 {:.3} ms",
        ms(d50),
        ms(d99)
    );
    let scenarios = [
        ("one gateway, its own SQLite ledger", vec![own.base_url()]),
        (
            "two gateways sharing a PostgreSQL ledger",
            shared.iter().map(RunningGateway::base_url).collect(),
        ),
    ];
    for (index, (name, urls)) in scenarios.iter().enumerate() {
        let tokens = tokens(&validator, &format!("s{index}"), runs);
        let mut proxied = paced(RATE, |i| {
            client
                .post(format!("{}/v1/chat", urls[i % urls.len()]))
                .bearer_auth(&tokens[i / CALLS_PER_RUN])
                .json(&body(1_000_000 * (index + 1) + i))
        })
        .await;
        let (p50, p99) = (
            percentile(&mut proxied.latencies, 0.5),
            percentile(&mut proxied.latencies, 0.99),
        );
        println!(
            "{name}: p50 {:.3} ms p99 {:.3} ms; added p50 {:.3} ms p99 {:.3} ms; answered {:.0}/s",
            ms(p50),
            ms(p99),
            ms(p50.saturating_sub(d50)),
            ms(p99.saturating_sub(d99)),
            proxied.achieved,
        );
    }
    println!("  (targets for the shared ledger: added p50 <= 0.5 ms, p99 <= 3 ms)");
    for gateway in shared {
        gateway.stop().await;
    }
    own.stop().await;
}
