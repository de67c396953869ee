//! Two `sooth proxy run` processes sharing one spend ledger in the
//! machine's PostgreSQL (a schema of its own): 1,000 concurrent calls split
//! over both against one miner's daily cap, one gateway killed with SIGKILL
//! while calls are in flight. What reached the upstream never passes the
//! cap, and once the dead gateway's lease ends, the survivor gets what the
//! dead one held but had not spent. Then a gateway whose connection to the database is cut
//! for longer than its lease: it pauses its spending and resumes, each call recorded once.
//! And a miner's own key linked through one gateway serves its calls on the other.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::day::signal;
use common::forwarder::{Forwarder, through};
use common::gateway_process::{GatewayProcess, start_gateway};
use sooth_fake_upstream::{FakeUpstream, FakeUpstreamConfig, GatewayConfigBuilder, ServiceBuilder};
use sooth_protocol::{RunClaims, encode_public_key, generate_key, mint};
use sooth_test_postgres::TestSchema;

/// 0.5 USD a day at 0.002 USD a search: at most 250 searches.
const DAY_CAP: f64 = 0.5;
const SEARCH_USD: f64 = 0.002;
const LEASE_SECS: u64 = 2;

fn start(dir: &std::path::Path, name: &str, base_config: &str, key: &str) -> GatewayProcess {
    let config = dir.join(format!("{name}.toml"));
    std::fs::write(
        &config,
        base_config.replace("DATA_DIR", &dir.join(name).display().to_string()),
    )
    .expect("config");
    start_gateway(&config, &[("SOOTH_TEST_SEARCH_KEY", key)])
}

/// What both tests start from: a runtime, a fake upstream answering after `latency`, a schema
/// on the test server, a directory and the validator's key.
struct Bench {
    runtime: tokio::runtime::Runtime,
    search_key: String,
    upstream: FakeUpstream,
    schema: TestSchema,
    dir: tempfile::TempDir,
    validator: ed25519_dalek::SigningKey,
}

impl Bench {
    fn new(latency: Duration) -> Self {
        Self::accepting(latency, Vec::new())
    }

    /// With an upstream that also accepts `miners_keys` (miners' own keys).
    fn accepting(latency: Duration, miners_keys: Vec<String>) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let fake_config = FakeUpstreamConfig {
            search_usd: SEARCH_USD,
            latency,
            extra_api_keys: miners_keys,
            ..FakeUpstreamConfig::default()
        };
        let upstream = runtime
            .block_on(FakeUpstream::start(fake_config.clone()))
            .expect("fake upstream");
        let schema = runtime.block_on(TestSchema::create());
        Self {
            runtime,
            search_key: fake_config.search_api_key,
            upstream,
            schema,
            dir: tempfile::tempdir().expect("tempdir"),
            validator: generate_key(),
        }
    }
}

/// A gateway's configuration (`DATA_DIR` to be replaced) on the shared ledger at
/// `database_url`: its search service at `upstream`, `DAY_CAP` a miner's day.
fn shared_toml(
    upstream: &str,
    dir: &std::path::Path,
    validator: &ed25519_dalek::SigningKey,
    database_url: &str,
) -> String {
    let toml = GatewayConfigBuilder::new("DATA_DIR")
        .signing_key_file(dir.join("signing.key"))
        .validator_public_key(encode_public_key(&validator.verifying_key()))
        .default_services("chat", "search")
        .service(ServiceBuilder::chat(
            "chat",
            upstream,
            "SOOTH_TEST_SEARCH_KEY",
            &["m"],
        ))
        .service(
            ServiceBuilder::search("search", upstream, "SOOTH_TEST_SEARCH_KEY")
                .set("price_per_call", SEARCH_USD)
                .set("cache", "\"off\"")
                .day_caps(DAY_CAP, DAY_CAP),
        )
        .to_toml();
    format!(
        "listen = \"127.0.0.1:0\"\ndatabase_url = {database_url:?}\nledger_lease_secs = {LEASE_SECS}\n{toml}"
    )
}

/// Tokens of `runs` runs of one miner, each free to spend the whole daily cap.
fn run_tokens(validator: &ed25519_dalek::SigningKey, runs: usize) -> Vec<String> {
    let now = chrono::Utc::now().timestamp();
    (0..runs)
        .map(|run| {
            mint(
                validator,
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
        .collect()
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
    // Calls are in flight when the gateway is killed: each waits 200 ms at the upstream.
    let bench = Bench::new(Duration::from_millis(200));
    let (runtime, upstream, schema, dir, validator) = (
        &bench.runtime,
        &bench.upstream,
        &bench.schema,
        &bench.dir,
        &bench.validator,
    );
    let toml = shared_toml(&upstream.base_url(), dir.path(), validator, schema.url());
    let mut survivor = start(dir.path(), "a", &toml, &bench.search_key);
    let doomed = start(dir.path(), "b", &toml, &bench.search_key);
    let tokens = run_tokens(validator, 100);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(1000)
        .build()
        .expect("client");
    let urls = [survivor.url.clone(), doomed.url.clone()];

    let (first_round, after_lease) = runtime.block_on(async {
        let tasks = searches(&client, &urls, &tokens, 0, 1000).await;
        // Killed while its calls wait on the upstream (each waits 200 ms
        // there): once both gateways together have 100 there.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while upstream.stats().search_requests < 100 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        signal(&doomed.child, "KILL");
        let first_round = statuses(tasks).await;
        // Once its lease has ended, what it held and did not spend is free.
        tokio::time::sleep(Duration::from_secs(LEASE_SECS + 1)).await;
        let tasks = searches(&client, &urls[..1], &tokens, 1000, 300).await;
        (first_round, statuses(tasks).await)
    });
    // Every search that reached the upstream counts as billed, answered or
    // not: a real service bills the calls of a gateway killed mid-call.
    let billed = upstream.stats().search_requests;
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
    // What the killed gateway held and had not spent came back: the
    // miner's day is handed out to the last search, the killed gateway's
    // part being what it recorded plus, at most, the slice's margin (a 32nd
    // of the cap) for calls it might not have recorded.
    let (gone, held, killed_committed) = runtime.block_on(async {
        let pool = sqlx::PgPool::connect(schema.url()).await.expect("schema");
        let day: (i64, i64, i64) = sqlx::query_as(
            "SELECT s.gone_micros,
                    (SELECT COALESCE(SUM(granted_micros), 0)::BIGINT FROM gateway_budget_slices sl
                      WHERE sl.kind = 'day' AND sl.subject = s.subject),
                    (SELECT gateway_committed_by(i.id, 'day', s.subject, s.day, s.service)
                       FROM gateway_instances i WHERE i.state = 'fenced')
               FROM gateway_budget_scopes s WHERE s.kind = 'day'",
        )
        .fetch_one(&pool)
        .await
        .expect("the miner's day");
        pool.close().await;
        day
    });
    let (cap, margin, price) = (500_000, 500_000 / 32, 2_000);
    // (Less when its slice held less than that.)
    assert!(
        (killed_committed..=killed_committed + margin).contains(&gone),
        "the killed gateway's part: {gone}, it recorded {killed_committed}"
    );
    assert!(
        gone + held <= cap && gone + held > cap - price,
        "{gone} gone and {held} held of {cap}"
    );
    // The killed gateway had calls at the upstream when it died (they count
    // above, though it never answered them).
    let killed_reserved = runtime.block_on(async {
        let pool = sqlx::PgPool::connect(schema.url()).await.expect("schema");
        let reserved: i64 =
            sqlx::query_scalar("SELECT reservations FROM gateway_instances WHERE state = 'fenced'")
                .fetch_one(&pool)
                .await
                .expect("the killed gateway was fenced");
        pool.close().await;
        reserved
    });
    assert!(killed_reserved > 0, "the killed gateway made no call");
    assert!(
        billed > (answered(&first_round) + answered(&after_lease)) as u64,
        "none of the killed gateway's calls reached the upstream"
    );

    signal(&survivor.child, "INT");
    let status = survivor.child.wait().expect("wait");
    assert!(
        status.success(),
        "the surviving gateway stopped with {status}"
    );
    let Bench {
        runtime, upstream, ..
    } = bench;
    runtime.block_on(upstream.shutdown());
}

/// Sends `count` searches one after another through `url`, `pause` apart; their statuses.
async fn searches_in_turn(
    client: &reqwest::Client,
    url: &str,
    tokens: &[String],
    count: usize,
    pause: Duration,
) -> BTreeMap<u16, usize> {
    let mut counts = BTreeMap::new();
    for i in 0..count {
        let status = client
            .post(format!("{url}/v1/search"))
            .bearer_auth(&tokens[i % tokens.len()])
            .json(&serde_json::json!({"query": format!("question {i}")}))
            .send()
            .await
            .map_or(0, |response| response.status().as_u16());
        *counts.entry(status).or_default() += 1;
        tokio::time::sleep(pause).await;
    }
    counts
}

#[test]
fn a_gateway_that_loses_the_database_mid_day_pauses_and_resumes_recording_each_call_once() {
    let bench = Bench::new(Duration::ZERO);
    let (runtime, upstream, schema, dir, validator) = (
        &bench.runtime,
        &bench.upstream,
        &bench.schema,
        &bench.dir,
        &bench.validator,
    );
    // The gateway reaches the database through a connection the test can cut.
    let (_, database) = through(schema.url(), "127.0.0.1", 0);
    let outage = Forwarder::start(runtime, "127.0.0.1:0", database);
    let (gateway_url, _) = through(schema.url(), "127.0.0.1", outage.port);
    let toml = shared_toml(&upstream.base_url(), dir.path(), validator, &gateway_url);
    let mut gateway = start(dir.path(), "g", &toml, &bench.search_key);
    let tokens = run_tokens(validator, 10);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client");
    let pause = Duration::from_millis(50);
    let (before, during, after) = runtime.block_on(async {
        let before = searches_in_turn(&client, &gateway.url, &tokens, 20, pause).await;
        // Cut for longer than the lease.
        outage.set_cut(true);
        let during = searches_in_turn(&client, &gateway.url, &tokens, 60, pause).await;
        outage.set_cut(false);
        // Back: it answers again within a second or so (its journal tries again at least
        // every second), and the day's cap is spent to the last search, and no further.
        let back = tokio::time::Instant::now();
        let mut after = BTreeMap::new();
        while !after.contains_key(&200) {
            assert!(
                back.elapsed() < Duration::from_secs(10),
                "never resumed: {after:?}"
            );
            let one = searches_in_turn(&client, &gateway.url, &tokens, 1, pause).await;
            for (status, count) in one {
                *after.entry(status).or_default() += count;
            }
        }
        eprintln!(
            "answering again {:?} after the database came back",
            back.elapsed()
        );
        let rest = searches_in_turn(&client, &gateway.url, &tokens, 300, Duration::ZERO).await;
        for (status, count) in rest {
            *after.entry(status).or_default() += count;
        }
        (before, during, after)
    });
    eprintln!("before {before:?}, during the outage {during:?}, after {after:?}");
    let answered = |counts: &BTreeMap<u16, usize>| counts.get(&200).copied().unwrap_or(0) as u64;
    assert_eq!(before, BTreeMap::from([(200, 20)]));
    // While the database is away, the gateway spends only what it was granted and may leave
    // unrecorded; then it refuses (503: its ledger is unavailable), and it never hangs.
    assert!(
        during.keys().all(|status| [200, 503].contains(status)),
        "{during:?}"
    );
    assert!(during.contains_key(&503), "{during:?}");
    assert!(
        after.keys().all(|status| [200, 402, 503].contains(status)) && after.contains_key(&402),
        "{after:?}"
    );
    let billed = upstream.stats().search_requests;
    assert_eq!(
        billed,
        answered(&before) + answered(&during) + answered(&after)
    );
    assert!(
        billed as f64 * SEARCH_USD <= DAY_CAP + 1e-9,
        "{billed} billed"
    );

    // Stopped: every answered search is recorded in the shared ledger, once.
    signal(&gateway.child, "INT");
    assert!(gateway.child.wait().expect("wait").success());
    let (calls, charged): (i64, i64) = runtime.block_on(async {
        let pool = sqlx::PgPool::connect(schema.url()).await.expect("schema");
        let recorded = sqlx::query_as(
            "SELECT COUNT(*), COALESCE(SUM(charged_micros), 0)::BIGINT
               FROM gateway_reservations WHERE state = 'settled' AND charged_micros > 0",
        )
        .fetch_one(&pool)
        .await
        .expect("the ledger");
        pool.close().await;
        recorded
    });
    assert_eq!(
        (calls as u64, charged as u64),
        (billed, billed * 2_000),
        "answered {billed}"
    );
    let Bench {
        runtime, upstream, ..
    } = bench;
    runtime.block_on(upstream.shutdown());
}

#[test]
fn a_key_linked_through_one_gateway_serves_the_miners_calls_on_every_gateway() {
    // The operator's key is one the upstream refuses: only the miner's own key gets answers.
    let miners_key = "sk-miners-own-5e6f";
    let bench = Bench::accepting(Duration::ZERO, vec![miners_key.to_owned()]);
    let (runtime, dir) = (&bench.runtime, bench.dir.path());
    let toml = shared_toml(
        &bench.upstream.base_url(),
        dir,
        &bench.validator,
        bench.schema.url(),
    );
    let a = start(dir, "a", &toml, "not-the-operators-key");
    let b = start(dir, "b", &toml, "not-the-operators-key");
    let tokens = run_tokens(&bench.validator, 1);
    let client = reqwest::Client::new();
    let answered_by = |url: &str| {
        let counts = runtime.block_on(searches_in_turn(&client, url, &tokens, 3, Duration::ZERO));
        assert!(!counts.contains_key(&0), "gateway {url} did not answer");
        counts.get(&200) == Some(&3)
    };
    assert!(!answered_by(&a.url) && !answered_by(&b.url));

    // Linked on gateway a's configuration, from its host.
    let mut link = common::sooth();
    link.args(["proxy", "link-key", "--config"])
        .arg(dir.join("a.toml"))
        .args([
            "--miner",
            "miner",
            "--service",
            "search",
            "--key-env",
            "SOOTH_TEST_LINKED_KEY",
        ])
        .env("SOOTH_TEST_LINKED_KEY", miners_key);
    common::run(&mut link).ok();
    // Both gateways reload the shared keys within their reload interval.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while !(answered_by(&b.url) && answered_by(&a.url)) {
        assert!(
            std::time::Instant::now() < deadline,
            "the linked key never served gateway b"
        );
        std::thread::sleep(Duration::from_millis(250));
    }

    // Unlinked on gateway b's: neither uses it any more.
    let mut unlink = common::sooth();
    unlink
        .args(["proxy", "unlink-key", "--config"])
        .arg(dir.join("b.toml"))
        .args(["--miner", "miner", "--service", "search"]);
    assert!(common::run(&mut unlink).ok().stdout.contains("unlinked"));
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while answered_by(&a.url) || answered_by(&b.url) {
        assert!(
            std::time::Instant::now() < deadline,
            "gateway a kept the unlinked key"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}
