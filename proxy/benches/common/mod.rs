//! What the gateway benchmarks share: requests sent at a paced rate, and
//! their latency percentiles.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use sooth_protocol::{RequestSigner, generate_key};
use sooth_proxy::{GatewayState, Ledger, LinkedKeys, ProxyConfig, ResponseCache, RunningGateway};

/// How long each paced scenario sends for.
pub const PACED_FOR: Duration = Duration::from_secs(5);

/// The `p` quantile (0 to 1) of `samples`, which it sorts.
pub fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    samples[((samples.len() as f64 - 1.0) * p).round() as usize]
}

/// Milliseconds.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// What one paced scenario measured.
pub struct Paced {
    pub latencies: Vec<Duration>,
    /// Requests answered per second, over the time from the first send to
    /// the last answer: below the offered rate when requests queue.
    pub achieved: f64,
}

/// Send requests at `rate` per second for [`PACED_FOR`]; request `i` is
/// `make(i)`.
pub async fn paced(rate: u64, make: impl Fn(usize) -> reqwest::RequestBuilder) -> Paced {
    let count = (rate * PACED_FOR.as_secs()) as usize;
    let mut ticker = tokio::time::interval(Duration::from_nanos(1_000_000_000 / rate));
    let mut tasks = Vec::with_capacity(count);
    let started = Instant::now();
    for i in 0..count {
        ticker.tick().await;
        let request = make(i);
        tasks.push(tokio::spawn(async move {
            let started = Instant::now();
            let response = request.send().await.expect("request");
            assert!(
                response.status().is_success(),
                "status {}",
                response.status()
            );
            response.bytes().await.expect("body");
            started.elapsed()
        }));
    }
    let mut latencies = Vec::with_capacity(count);
    for task in tasks {
        latencies.push(task.await.expect("task"));
    }
    Paced {
        latencies,
        achieved: count as f64 / started.elapsed().as_secs_f64(),
    }
}

/// A gateway on loopback honouring `validator`'s tokens, with `ledger`, its cache in
/// `dir/gateway.sqlite` and the operator's upstream `keys`.
pub async fn gateway(
    config: &ProxyConfig,
    validator: &SigningKey,
    ledger: Ledger,
    dir: &std::path::Path,
    keys: &BTreeMap<String, String>,
) -> RunningGateway {
    let cache = ResponseCache::open(&dir.join("gateway.sqlite"))
        .await
        .expect("cache");
    let state = GatewayState::new(
        config.clone(),
        validator.verifying_key(),
        RequestSigner::new(generate_key()),
        ledger,
        cache,
        keys.clone(),
        LinkedKeys::in_memory().await.expect("linked keys"),
    )
    .await
    .expect("state");
    RunningGateway::start(state, "127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("gateway")
}
