//! Prometheus metrics of the gateway, served as text at `/metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

/// Labels of per-request counters.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// Service name.
    pub service: String,
    /// HTTP status answered to the agent's runner.
    pub status: u16,
}

/// Labels of per-service series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServiceLabels {
    /// Service name.
    pub service: String,
}

/// Labels of budget refusals.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusalLabels {
    /// Service name.
    pub service: String,
    /// `run` or `miner_day`.
    pub scope: String,
}

/// Every series the gateway exports.
pub struct Metrics {
    registry: Registry,
    /// Requests answered, by service and status.
    pub requests: Family<RequestLabels, Counter>,
    /// Upstream latency, seconds.
    pub upstream_latency: Family<ServiceLabels, Histogram>,
    /// Upstream retries.
    pub retries: Family<ServiceLabels, Counter>,
    /// Cache hits.
    pub cache_hits: Family<ServiceLabels, Counter>,
    /// Cache misses.
    pub cache_misses: Family<ServiceLabels, Counter>,
    /// Money charged, US dollars.
    pub spend_usd: Family<ServiceLabels, Counter<f64, AtomicU64>>,
    /// Requests refused for budget.
    pub budget_refusals: Family<RefusalLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new(Counter::default())
    }
}

impl Metrics {
    /// Every series, with `cache_writes_dropped` as the counter of the
    /// cache's dropped writes (the cache counts them; see
    /// [`ResponseCache::dropped_writes_counter`](crate::cache::ResponseCache::dropped_writes_counter)).
    pub fn new(cache_writes_dropped: Counter) -> Self {
        let mut registry = Registry::with_prefix("sooth_gateway");
        let requests = Family::<RequestLabels, Counter>::default();
        let upstream_latency = Family::<ServiceLabels, Histogram>::new_with_constructor(
            (|| Histogram::new(exponential_buckets(0.0005, 2.0, 18))) as fn() -> Histogram,
        );
        let retries = Family::<ServiceLabels, Counter>::default();
        let cache_hits = Family::<ServiceLabels, Counter>::default();
        let cache_misses = Family::<ServiceLabels, Counter>::default();
        let spend_usd = Family::<ServiceLabels, Counter<f64, AtomicU64>>::default();
        let budget_refusals = Family::<RefusalLabels, Counter>::default();
        registry.register("requests", "Requests answered", requests.clone());
        registry.register(
            "upstream_latency_seconds",
            "Upstream latency",
            upstream_latency.clone(),
        );
        registry.register("retries", "Upstream retries", retries.clone());
        registry.register(
            "cache_hits",
            "Answers served from cache",
            cache_hits.clone(),
        );
        registry.register(
            "cache_misses",
            "Cacheable requests not in cache",
            cache_misses.clone(),
        );
        registry.register("spend_usd", "Money charged to miners", spend_usd.clone());
        registry.register(
            "budget_refusals",
            "Requests refused for budget",
            budget_refusals.clone(),
        );
        registry.register(
            "cache_writes_dropped",
            "Cache writes dropped because the write queue was full",
            // The cache counts them; the registry reads its counter.
            cache_writes_dropped,
        );
        Self {
            registry,
            requests,
            upstream_latency,
            retries,
            cache_hits,
            cache_misses,
            spend_usd,
            budget_refusals,
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }

    /// Label set for a service.
    pub fn service(name: &str) -> ServiceLabels {
        ServiceLabels {
            service: name.to_owned(),
        }
    }
}
