//! Gateway benchmark: latency the proxy adds over calling the upstream
//! directly, at paced rates of 500, 1,000 and 2,000 requests/s of distinct
//! chat requests, with the cache off and with it on in its default
//! configuration (every request a miss, so every answer is stored), and
//! cache-hit throughput.
//!
//! ```text
//! cargo bench -p sooth-proxy --bench gateway
//! ```

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{PACED_FOR, gateway, ms, paced, percentile};

use sooth_fake_upstream::{FakeUpstream, FakeUpstreamConfig, GatewayConfigBuilder, ServiceBuilder};
use sooth_protocol::{RunClaims, encode_public_key, generate_key, mint};
use sooth_proxy::{Ledger, ProxyConfig};

const MODEL: &str = "fake-org/Fake-Model-8B";
/// Paced rates, requests per second.
const RATES: [u64; 3] = [500, 1000, 2000];
#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let fake_config = FakeUpstreamConfig::default();
    let upstream = FakeUpstream::start(fake_config.clone())
        .await
        .expect("fake upstream");
    let dir = tempfile::tempdir().expect("tempdir");
    let validator = generate_key();
    let base = upstream.base_url();
    let chat = |name: &str, cache: &str| {
        ServiceBuilder::chat(name, &base, "UNUSED", &[MODEL])
            .set("cache", format!("{cache:?}"))
            .day_caps(1_000_000.0, 1_000_000.0)
    };
    let toml = GatewayConfigBuilder::new("unused")
        .validator_public_key(encode_public_key(&validator.verifying_key()))
        .default_services("uncached", "search")
        .service(chat("uncached", "off"))
        .service(chat("cached", "on"))
        .service(ServiceBuilder::search("search", &base, "UNUSED"))
        .to_toml();
    let config = ProxyConfig::from_toml(&toml, "bench").expect("config");
    let keys = BTreeMap::from([
        ("uncached".to_owned(), fake_config.api_key.clone()),
        ("cached".to_owned(), fake_config.api_key.clone()),
        ("search".to_owned(), fake_config.search_api_key.clone()),
    ]);
    let database = dir.path().join("gateway.sqlite");
    let ledger = Ledger::open(&database).await.expect("ledger");
    let gateway = gateway(&config, &validator, ledger, dir.path(), &keys).await;
    let now = chrono::Utc::now().timestamp();
    let token = Arc::new(mint(
        &validator,
        &RunClaims {
            run_id: "bench".into(),
            miner: "bench-miner".into(),
            agent_hash: "00".repeat(32),
            caps_usd: BTreeMap::from([("*".into(), 1_000_000.0)]),
            linked_key: false,
            issued_at: now,
            expires_at: now + 3600,
            as_of: now,
        },
    ));
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .tcp_nodelay(true)
        .build()
        .expect("client");
    let upstream_url = format!("{base}/v1/chat/completions");
    let gateway_url = format!("{}/v1/chat", gateway.base_url());
    let body = |i: usize| serde_json::json!({"model": MODEL, "messages": [{"role": "user", "content": format!("question {i}")}], "max_tokens": 8});

    // Warm both paths' connection pools.
    for i in 0..200 {
        client
            .post(&upstream_url)
            .bearer_auth(&fake_config.api_key)
            .json(&body(i))
            .send()
            .await
            .expect("warm");
        client
            .post(&gateway_url)
            .bearer_auth(token.as_str())
            .json(&body(i))
            .send()
            .await
            .expect("warm");
        client
            .post(format!("{}/v1/chat/cached", gateway.base_url()))
            .bearer_auth(token.as_str())
            .json(&body(i))
            .send()
            .await
            .expect("warm");
    }
    println!(
        "sooth gateway benchmark ({} cores); distinct chat requests, {} s per scenario",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        PACED_FOR.as_secs()
    );
    let cached_url = format!("{}/v1/chat/cached", gateway.base_url());
    // Every request of every scenario has its own prompt: all are misses.
    let mut next_prompt = 1_000_000;
    for rate in RATES {
        let mut direct = paced(rate, |i| {
            client
                .post(&upstream_url)
                .bearer_auth(&fake_config.api_key)
                .json(&body(next_prompt + i))
        })
        .await;
        next_prompt += 1_000_000;
        let (d50, d99) = (
            percentile(&mut direct.latencies, 0.5),
            percentile(&mut direct.latencies, 0.99),
        );
        println!(
            "{rate} requests/s: direct p50 {:.3} ms p99 {:.3} ms",
            ms(d50),
            ms(d99)
        );
        for (name, url) in [("cache off", &gateway_url), ("cache on", &cached_url)] {
            let mut proxied = paced(rate, |i| {
                client
                    .post(url)
                    .bearer_auth(token.as_str())
                    .json(&body(next_prompt + i))
            })
            .await;
            next_prompt += 1_000_000;
            let (p50, p99) = (
                percentile(&mut proxied.latencies, 0.5),
                percentile(&mut proxied.latencies, 0.99),
            );
            println!(
                "  via gateway, {name:9}: p50 {:.3} ms p99 {:.3} ms max {:.3} ms; added p50 {:.3} ms p99 {:.3} ms; answered {:.0}/s",
                ms(p50),
                ms(p99),
                ms(percentile(&mut proxied.latencies, 1.0)),
                ms(p50.saturating_sub(d50)),
                ms(p99.saturating_sub(d99)),
                proxied.achieved,
            );
        }
    }
    println!(
        "  (targets at 1,000/s: added p50 <= 0.3 ms, p99 <= 1 ms; at 2,000/s: answered ~2,000/s)"
    );

    // Cache hits: one prompt, many clients, for a fixed time.
    let hit_body = serde_json::json!({"model": MODEL, "messages": [{"role": "user", "content": "the same question"}], "max_tokens": 8});
    client
        .post(&cached_url)
        .bearer_auth(token.as_str())
        .json(&hit_body)
        .send()
        .await
        .expect("prime");
    let window = Duration::from_secs(3);
    let started = Instant::now();
    let workers: Vec<_> = (0..64)
        .map(|_| {
            let (client, url, token, body) = (
                client.clone(),
                cached_url.clone(),
                token.clone(),
                hit_body.clone(),
            );
            tokio::spawn(async move {
                let mut done = 0u64;
                while started.elapsed() < window {
                    let response = client
                        .post(&url)
                        .bearer_auth(token.as_str())
                        .json(&body)
                        .send()
                        .await
                        .expect("hit");
                    assert_eq!(
                        response
                            .headers()
                            .get("x-sooth-cache")
                            .and_then(|v| v.to_str().ok()),
                        Some("hit")
                    );
                    response.bytes().await.expect("body");
                    done += 1;
                }
                done
            })
        })
        .collect();
    let mut hits = 0;
    for worker in workers {
        hits += worker.await.expect("worker");
    }
    println!(
        "cache hits: {:.0} requests/s with 64 concurrent clients (target >= 20,000)",
        hits as f64 / started.elapsed().as_secs_f64()
    );
}
