//! The whole scale-out at once, each part a process of its own on one PostgreSQL database: a
//! scheduler (`sooth backtest --workers`), three runner workers (`sooth runner`, each on a
//! host of its own when the test runs as root: a network namespace reaching the others over a
//! veth pair) and two gateways (`sooth proxy run`) sharing one spend ledger, the agents' LLM
//! calls going to a fake upstream through both. Mid-day one worker is killed with SIGKILL
//! while it holds runs, and one gateway while calls wait on the upstream, among them 1,000
//! searches split over both gateways against one miner's daily cap. The leaderboard, every
//! score and the weights equal the single-process SQLite backtest's with one gateway; every
//! run is recorded once; what reached the upstream never passes the cap.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::process::{Child, Command};
use std::time::Duration;

use common::day::{Day, drain_survivors, signal, worker};
use common::forwarder::{Forwarder, through};
use common::gateway_process::{GatewayProcess, start_gateway};
use sooth_fake_upstream::{
    CHAT_KEY_ENV, FakeUpstream, FakeUpstreamConfig, GatewayConfigBuilder, SEARCH_KEY_ENV,
    ServiceBuilder,
};
use sooth_protocol::{RunClaims, encode_public_key, encode_signing_key_hex, generate_key, mint};

/// The LLM forecaster's model.
const MODEL: &str = "deepseek-ai/DeepSeek-V3";
/// The burst's miner may spend 0.5 USD a day on searches at 0.002 USD: 250 searches.
const SEARCH_DAY_CAP: f64 = 0.5;
const SEARCH_USD: f64 = 0.002;
const BURST: usize = 1000;

/// A host of its own for a process: a network namespace joined to this one by a veth pair.
/// Deleted, with its link, when dropped.
struct OwnHost {
    name: String,
    /// This host's address on the pair: where the namespace reaches the rest.
    outside: String,
}

impl OwnHost {
    /// Host `index`, or `None` when namespaces cannot be made here (not root, no `ip`).
    fn make(index: u32) -> Option<Self> {
        let tag = std::process::id() % 10_000;
        let name = format!("sooth{tag}w{index}");
        // A subnet no interface of this host is on yet.
        let taken = Command::new("ip")
            .args(["-o", "addr"])
            .output()
            .map(|output| String::from_utf8_lossy(&output.stdout).into_owned())
            .ok()?;
        let subnet = (0..100)
            .map(|step| format!("10.{}.{index}", 100 + (tag + step) % 100))
            .find(|subnet| !taken.contains(&format!("inet {subnet}.")))?;
        let host = Self {
            name: name.clone(),
            outside: format!("{subnet}.1"),
        };
        let (outer, inner) = (format!("so{tag}h{index}"), format!("so{tag}n{index}"));
        let steps: [&[&str]; 8] = [
            &["netns", "add", &name],
            &[
                "link", "add", &outer, "type", "veth", "peer", "name", &inner,
            ],
            &["link", "set", &inner, "netns", &name],
            &["addr", "add", &format!("{subnet}.1/30"), "dev", &outer],
            &["link", "set", &outer, "up"],
            &[
                "-n",
                &name,
                "addr",
                "add",
                &format!("{subnet}.2/30"),
                "dev",
                &inner,
            ],
            &["-n", &name, "link", "set", &inner, "up"],
            &["-n", &name, "link", "set", "lo", "up"],
        ];
        for step in steps {
            let done = Command::new("ip")
                .args(step)
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|status| status.success());
            if !done {
                drop(host);
                return None;
            }
        }
        Some(host)
    }

    /// Runs what follows it inside the namespace.
    fn launcher(&self) -> Vec<String> {
        ["ip", "netns", "exec", &self.name]
            .map(str::to_owned)
            .to_vec()
    }
}

impl Drop for OwnHost {
    fn drop(&mut self) {
        // The veth pair goes with the namespace.
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.name])
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// The gateways' configuration: chat and search at `upstream`, sharing the ledger at `url`.
fn gateway_toml(upstream: &str, data_dir: &std::path::Path, validator: &str) -> String {
    GatewayConfigBuilder::new(data_dir)
        .signing_key_file(data_dir.join("signing.key"))
        .validator_public_key(validator)
        .service(ServiceBuilder::chat(
            "chat",
            upstream,
            CHAT_KEY_ENV,
            &[MODEL],
        ))
        .service(
            ServiceBuilder::search("search", upstream, SEARCH_KEY_ENV)
                .set("price_per_call", SEARCH_USD)
                .set("cache", "\"off\"")
                .day_caps(SEARCH_DAY_CAP, SEARCH_DAY_CAP),
        )
        .to_toml()
}

/// `BURST` searches of one miner, split over `urls` in turn, all at once; each one's status
/// (0 when no answer came: the gateway was gone).
fn burst(
    runtime: &tokio::runtime::Runtime,
    validator: &ed25519_dalek::SigningKey,
    urls: &[String],
) -> Vec<tokio::task::JoinHandle<u16>> {
    let now = chrono::Utc::now().timestamp();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(BURST)
        .build()
        .unwrap();
    (0..BURST)
        .map(|i| {
            let token = mint(
                validator,
                &RunClaims {
                    run_id: format!("burst-{}", i % 100),
                    miner: "burst".into(),
                    agent_hash: "00".repeat(32),
                    caps_usd: BTreeMap::from([("*".into(), SEARCH_DAY_CAP)]),
                    linked_key: false,
                    issued_at: now,
                    expires_at: now + 3600,
                    as_of: now,
                },
            );
            let request = client
                .post(format!("{}/v1/search", urls[i % urls.len()]))
                .bearer_auth(token)
                .json(&serde_json::json!({"query": format!("question {i}")}));
            runtime.spawn(async move {
                match request.send().await {
                    Ok(response) => response.status().as_u16(),
                    Err(_) => 0,
                }
            })
        })
        .collect()
}

#[test]
fn a_day_through_a_scheduler_three_workers_and_two_gateways_with_one_of_each_killed() {
    let Some(day) = Day::new(
        vec![
            sooth_test_agents::llm_forecaster(),
            sooth_test_agents::always_half(),
        ],
        sooth_test_agents::market_baseline(),
    ) else {
        return;
    };
    let (runtime, url, dir) = (&day.runtime, day.url(), day.dir());
    let upstream_config = FakeUpstreamConfig {
        models: vec![MODEL.to_owned()],
        search_usd: SEARCH_USD,
        // Calls are waiting on the upstream when the gateway is killed.
        latency: Duration::from_millis(100),
        ..FakeUpstreamConfig::default()
    };
    let upstream = runtime
        .block_on(FakeUpstream::start(upstream_config.clone()))
        .unwrap();
    let keys = [
        (CHAT_KEY_ENV, upstream_config.api_key.as_str()),
        (SEARCH_KEY_ENV, upstream_config.search_api_key.as_str()),
    ];
    let validator = generate_key();
    let validator_public = encode_public_key(&validator.verifying_key());

    // The reference: one process on SQLite, its agents calling a gateway of its own.
    let reference_gateway = dir.join("reference-gateway.toml");
    std::fs::write(
        &reference_gateway,
        gateway_toml(
            &upstream.base_url(),
            &dir.join("reference-gateway"),
            &"00".repeat(32),
        ),
    )
    .unwrap();
    day.run_reference(|command| {
        command
            .arg("--gateway-config")
            .arg(&reference_gateway)
            .envs(keys);
    });
    let reference_chats = upstream.stats().chat_requests;
    assert!(reference_chats > 0, "the reference run asked no LLM");
    upstream.reset_stats();

    // Two gateways sharing the ledger, reachable from the workers' hosts.
    let gateways: Vec<GatewayProcess> = ["a", "b"]
        .iter()
        .map(|name| {
            let config = dir.join(format!("gateway-{name}.toml"));
            let toml = gateway_toml(
                &upstream.base_url(),
                &dir.join(format!("gateway-{name}")),
                &validator_public,
            );
            std::fs::write(
                &config,
                format!(
                    "listen = \"0.0.0.0:0\"\ndatabase_url = {url:?}\nledger_lease_secs = 2\n{toml}"
                ),
            )
            .unwrap();
            start_gateway(&config, &keys)
        })
        .collect();
    let ports: Vec<u16> = gateways
        .iter()
        .map(|gateway| gateway.url.rsplit(':').next().unwrap().parse().unwrap())
        .collect();
    let key_file = dir.join("validator.key");
    std::fs::write(&key_file, encode_signing_key_hex(&validator)).unwrap();

    // Three workers, each on a host of its own when it can be made: the database and the
    // gateways are then on another host, reached over the veth pair.
    let names = ["w0", "w1", "w2"];
    let hosts: Vec<Option<OwnHost>> = (0..3).map(OwnHost::make).collect();
    let (_, database) = through(url, "127.0.0.1", 0);
    let mut forwarders = Vec::new();
    let mut workers: Vec<Child> = Vec::new();
    for (id, host) in names.iter().zip(&hosts) {
        let (address, launcher) = match host {
            Some(host) => (host.outside.clone(), host.launcher()),
            None => ("127.0.0.1".to_owned(), Vec::new()),
        };
        let forwarder = Forwarder::start(runtime, &format!("{address}:0"), database.clone());
        let (worker_url, _) = through(url, &address, forwarder.port);
        forwarders.push(forwarder);
        let gateway_urls: Vec<String> = ports
            .iter()
            .map(|port| format!("\"http://{address}:{port}\""))
            .collect();
        let more = format!(
            "key_file = {:?}\ngateway_url = [{}]\n",
            key_file.display().to_string(),
            gateway_urls.join(", ")
        );
        workers.push(day.start_worker(&worker_url, id, &more, &launcher));
    }
    let own_hosts = hosts.iter().filter(|host| host.is_some()).count();
    eprintln!("{own_hosts} of 3 workers on hosts of their own");
    let mut scheduler = day.start_scheduler();
    let store = day.store();

    // One worker killed while it holds runs.
    let (victim, held_at_kill) =
        day.kill_a_worker_holding_runs(&store, &mut scheduler, &workers, &names, 10);

    // One gateway killed while calls wait on the upstream: the agents' and a burst of
    // searches against one miner's cap, split over both gateways.
    let local: Vec<String> = ports
        .iter()
        .map(|port| format!("http://127.0.0.1:{port}"))
        .collect();
    let searches = burst(runtime, &validator, &local);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while upstream.stats().search_requests < 100 {
        assert!(
            std::time::Instant::now() < deadline,
            "the burst never reached the upstream"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(
        scheduler.try_wait().unwrap().is_none(),
        "the day ended before a gateway could be killed"
    );
    let [survivor, doomed]: [GatewayProcess; 2] = gateways.try_into().ok().unwrap();
    signal(&doomed.child, "KILL");
    let chats_at_kill = upstream.stats().chat_requests;
    let mut statuses: BTreeMap<u16, usize> = BTreeMap::new();
    for task in searches {
        *statuses.entry(runtime.block_on(task).unwrap()).or_default() += 1;
    }

    // The same results as one process on SQLite with one gateway, to the last bit.
    day.scheduled_as_the_reference(&mut scheduler, &["leaderboard.json", "leaderboard.csv"]);
    day.same_scores_runs_and_weights(&store);
    let recorded = runtime.block_on(store.workers()).unwrap();
    let completed: u64 = recorded.iter().map(|w| w.completed).sum();
    assert_eq!(completed, day.runs_owed(), "{recorded:?}");
    assert!(
        worker(&recorded, names[victim]).expired >= held_at_kill,
        "{recorded:?}"
    );
    // The LLM agent's calls went on after the gateway died.
    let chats = upstream.stats().chat_requests;
    assert!(
        chats_at_kill < chats,
        "{chats_at_kill} calls when the gateway was killed, {chats} in all"
    );

    // Every search that reached the upstream counts as billed, answered or not.
    let billed = upstream.stats().search_requests;
    eprintln!("burst: {statuses:?}, billed {billed}");
    assert!(
        billed as f64 * SEARCH_USD <= SEARCH_DAY_CAP + 1e-9,
        "{billed} searches billed under a cap of {} searches",
        SEARCH_DAY_CAP / SEARCH_USD
    );
    assert!(statuses.get(&200).copied().unwrap_or(0) > 0, "{statuses:?}");
    assert!(
        statuses.keys().all(|status| [0, 200, 402].contains(status)),
        "{statuses:?}"
    );

    drain_survivors(&day, &store, workers, &names, victim);
    drop((survivor, doomed, forwarders, hosts));
    runtime.block_on(store.close());
    runtime.block_on(upstream.shutdown());
}
