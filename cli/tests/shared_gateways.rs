//! Two `sooth proxy run` processes sharing one spend ledger in the
//! machine's PostgreSQL (a schema of its own): 1,000 concurrent calls split
//! over both against one miner's daily cap, one gateway killed with SIGKILL
//! while calls are in flight. What the upstream billed never passes the
//! cap, and once the dead gateway's lease ends, the survivor gets what the
//! dead one held but had not spent.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::sooth;
use sooth_fake_upstream::{FakeUpstream, FakeUpstreamConfig, GatewayConfigBuilder, ServiceBuilder};
use sooth_protocol::{RunClaims, encode_public_key, generate_key, mint};
use sooth_test_postgres::TestSchema;

/// 0.5 USD a day at 0.002 USD a search: at most 250 searches.
const DAY_CAP: f64 = 0.5;
const SEARCH_USD: f64 = 0.002;
const LEASE_SECS: u64 = 2;

struct Gateway {
    child: Child,
    url: String,
}

fn start_gateway(dir: &std::path::Path, name: &str, base_config: &str, key: &str) -> Gateway {
    let config = dir.join(format!("{name}.toml"));
    std::fs::write(
        &config,
        base_config.replace("DATA_DIR", &dir.join(name).display().to_string()),
    )
    .expect("config");
    let mut child = sooth()
        .args(["proxy", "run", "--config"])
        .arg(&config)
        .env("SOOTH_TEST_SEARCH_KEY", key)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("sooth proxy run");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let url = loop {
        let line = lines
            .next()
            .unwrap_or_else(|| panic!("gateway {name} ended before listening"))
            .expect("stdout line");
        if let Some(url) = line.strip_prefix("gateway listening on ") {
            break url.trim().to_owned();
        }
    };
    // Keep draining what it prints, so that it never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    Gateway { child, url }
}

fn kill(child: &Child, signal: &str) {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(child.id().to_string())
        .status()
        .expect("kill");
    assert!(status.success(), "kill -{signal}");
}

/// Sends `count` searches, numbered from `first`, to `urls` in turn, all at
/// once; the statuses (0 when no answer came: the gateway was gone).
async fn searches(
    client: &reqwest::Client,
    urls: &[String],
    tokens: &[String],
    first: usize,
    count: usize,
) -> Vec<tokio::task::JoinHandle<u16>> {
    (first..first + count)
        .map(|i| {
            let request = client
                .post(format!("{}/v1/search", urls[i % urls.len()]))
                .bearer_auth(&tokens[i % tokens.len()])
                .json(&serde_json::json!({"query": format!("question {i}")}));
            tokio::spawn(async move {
                match request.send().await {
                    Ok(response) => response.status().as_u16(),
                    Err(_) => 0,
                }
            })
        })
        .collect()
}

async fn statuses(tasks: Vec<tokio::task::JoinHandle<u16>>) -> BTreeMap<u16, usize> {
    let mut counts = BTreeMap::new();
    for task in tasks {
        *counts.entry(task.await.expect("task")).or_default() += 1;
    }
    counts
}

#[test]
fn two_gateways_one_killed_keep_one_cap_with_zero_overspend() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let fake_config = FakeUpstreamConfig {
        search_usd: SEARCH_USD,
        // Calls are in flight when the gateway is killed.
        latency: Duration::from_millis(200),
        ..FakeUpstreamConfig::default()
    };
    let upstream = runtime
        .block_on(FakeUpstream::start(fake_config.clone()))
        .expect("fake upstream");
    let schema = runtime.block_on(TestSchema::create());
    let dir = tempfile::tempdir().expect("tempdir");
    let validator = generate_key();
    let base = upstream.base_url();
    let toml = GatewayConfigBuilder::new("DATA_DIR")
        .signing_key_file(dir.path().join("signing.key"))
        .validator_public_key(encode_public_key(&validator.verifying_key()))
        .default_services("chat", "search")
        .service(ServiceBuilder::chat(
            "chat",
            &base,
            "SOOTH_TEST_SEARCH_KEY",
            &["m"],
        ))
        .service(
            ServiceBuilder::search("search", &base, "SOOTH_TEST_SEARCH_KEY")
                .set("price_per_call", SEARCH_USD)
                .set("cache", "\"off\"")
                .day_caps(DAY_CAP, DAY_CAP),
        )
        .to_toml();
    let toml = format!(
        "listen = \"127.0.0.1:0\"\ndatabase_url = {:?}\nledger_lease_secs = {LEASE_SECS}\n{toml}",
        schema.url()
    );
    let mut survivor = start_gateway(dir.path(), "a", &toml, &fake_config.search_api_key);
    let doomed = start_gateway(dir.path(), "b", &toml, &fake_config.search_api_key);
    let now = chrono::Utc::now().timestamp();
    // One miner, 100 runs, each free to spend the whole daily cap.
    let tokens: Vec<String> = (0..100)
        .map(|run| {
            mint(
                &validator,
                &RunClaims {
                    run_id: format!("run-{run}"),
                    miner: "miner".into(),
                    agent_hash: "00".repeat(32),
                    caps_usd: BTreeMap::from([("*".into(), DAY_CAP)]),
                    linked_key: false,
                    issued_at: now,
                    expires_at: now + 3600,
                    as_of: now,
                },
            )
        })
        .collect();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(1000)
        .build()
        .expect("client");
    let urls = [survivor.url.clone(), doomed.url.clone()];

    let (first_round, after_lease) = runtime.block_on(async {
        let tasks = searches(&client, &urls, &tokens, 0, 1000).await;
        // Killed while its calls wait on the upstream.
        tokio::time::sleep(Duration::from_millis(100)).await;
        kill(&doomed.child, "KILL");
        let first_round = statuses(tasks).await;
        // Once its lease has ended, what it held and did not spend is free.
        tokio::time::sleep(Duration::from_secs(LEASE_SECS + 1)).await;
        let tasks = searches(&client, &urls[..1], &tokens, 1000, 300).await;
        (first_round, statuses(tasks).await)
    });
    let billed = upstream.stats().billed_searches;
    let answered = |counts: &BTreeMap<u16, usize>| counts.get(&200).copied().unwrap_or(0);
    eprintln!("first round {first_round:?}, after the lease {after_lease:?}, billed {billed}");
    assert!(
        billed as f64 * SEARCH_USD <= DAY_CAP + 1e-9,
        "{billed} searches billed under a cap of {} searches",
        DAY_CAP / SEARCH_USD
    );
    assert!(answered(&first_round) > 0, "{first_round:?}");
    // Every refusal is the budget's (402), or the killed gateway's silence.
    for status in first_round.keys().chain(after_lease.keys()) {
        assert!(
            [0, 200, 402].contains(status),
            "{first_round:?} {after_lease:?}"
        );
    }
    assert!(
        answered(&after_lease) > 0,
        "the dead gateway's unspent slices never came back: {after_lease:?}"
    );
    // What the killed gateway reserved stays spent (its calls may have been
    // billed): the survivor spends the rest, and not a search more.
    assert!(
        after_lease.get(&402).copied().unwrap_or(0) > 0,
        "{after_lease:?}"
    );

    // The killed gateway had made calls, and what it reserved is counted.
    let (killed_reserved, killed_held) = runtime.block_on(async {
        let pool = sqlx::PgPool::connect(schema.url()).await.expect("schema");
        let row: (i64, i64) = sqlx::query_as(
            "SELECT i.reservations,
                    COALESCE((SELECT SUM(r.reserved_micros) FROM gateway_reservations r
                               WHERE r.gateway = i.id AND r.state = 'open'), 0)::BIGINT
               FROM gateway_instances i WHERE i.state = 'fenced'",
        )
        .fetch_one(&pool)
        .await
        .expect("the killed gateway was fenced");
        pool.close().await;
        row
    });
    assert!(killed_reserved > 0, "the killed gateway made no call");
    let held_searches = (killed_held as f64 / 1e6 / SEARCH_USD).round() as u64;
    assert!(
        billed + held_searches <= (DAY_CAP / SEARCH_USD).round() as u64,
        "{billed} billed and {held_searches} held by the killed gateway"
    );

    kill(&survivor.child, "INT");
    let status = survivor.child.wait().expect("wait");
    assert!(
        status.success(),
        "the surviving gateway stopped with {status}"
    );
    runtime.block_on(upstream.shutdown());
}
