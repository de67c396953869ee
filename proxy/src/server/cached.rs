//! Answering a route through the response cache.

use std::time::Duration;

use super::GatewayState;
use super::answer::{Answer, Refusal};
use crate::cache::{CacheMode, CachedResponse, cache_key};
use crate::config::{CachePolicy, ServiceConfig};
use crate::metrics::Metrics;

/// Serve from the cache, or run `fetch` (which reserves, forwards and
/// settles) once for all concurrent identical requests. Hits and collapsed
/// requests cost nothing and reserve nothing.
pub(super) async fn cached<F, Fut>(
    state: &GatewayState,
    service_name: &str,
    service: &ServiceConfig,
    route: &str,
    key_body: impl FnOnce() -> serde_json::Value,
    fetch: F,
) -> Result<Answer, Refusal>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<Answer, Refusal>>,
{
    let mode = match service.cache {
        CachePolicy::On => CacheMode::On,
        CachePolicy::Off => CacheMode::Off,
        CachePolicy::ReadOnly => CacheMode::ReadOnly,
    };
    // Without a cache there is nothing to look up, and the key (canonical
    // JSON and its hash) is not worth making.
    let key = match mode {
        CacheMode::Off => String::new(),
        CacheMode::On | CacheMode::ReadOnly => cache_key(service_name, route, &key_body()),
    };
    let ttl = Duration::from_secs(service.cache_ttl_secs);
    let fetched = std::sync::Mutex::new((0.0, 0));
    let (response, outcome) = state
        .cache
        .get_or_fetch(&key, service_name, mode, ttl, || async {
            let answer = fetch().await?;
            if let Ok(mut slot) = fetched.lock() {
                *slot = (answer.cost, answer.retries);
            }
            Ok(CachedResponse {
                status: 200,
                body: answer.body,
                content_type: "application/json".into(),
            })
        })
        .await?;
    let labels = Metrics::service(service_name);
    let (cost, retries, cache) = if outcome.called_upstream() {
        let (cost, retries) = fetched.lock().map_or((0.0, 0), |slot| *slot);
        if mode != CacheMode::Off {
            state.metrics.cache_misses.get_or_create(&labels).inc();
        }
        (cost, retries, "miss")
    } else {
        state.metrics.cache_hits.get_or_create(&labels).inc();
        (0.0, 0, "hit")
    };
    Ok(Answer {
        body: response.body,
        cost,
        retries,
        cache,
    })
}
