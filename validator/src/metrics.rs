//! The validator's Prometheus metrics, served as text at `GET /metrics` ([`router`]).
//!
//! Two kinds of series, every name prefixed `sooth_validator_`:
//!
//! - **counted in process** by [`ValidatorMetrics`], fed by the daemon and the verification
//!   worker as things happen: runs by outcome and their durations, the runs owed, scoring
//!   durations, weights publications, verification outcomes. They start at zero with each
//!   process, as Prometheus counters do; runs by outcome are counted here rather than in the
//!   store because counting them there would read millions of rows at every scrape;
//! - **read from the store at each scrape** ([`Store::metrics_gauges`], a few cheap aggregates):
//!   events by status, versions by status, the verification queue, the last weights
//!   computation, the gateway's charges by service when its ledger shares the file, and the
//!   runner workers (what each claimed, completed and lost, the leases it holds) with the runs
//!   queued for them: the workers count in the store, so that one scrape of the scheduler
//!   shows every host.
//!
//! | series | type | labels |
//! |---|---|---|
//! | `runs_total` | counter | `status`: a run status word, or `other` |
//! | `run_duration_seconds` | histogram | |
//! | `runs_owed` | gauge | |
//! | `scoring_duration_seconds` | histogram | |
//! | `weights_set_total` | counter | |
//! | `weights_last_set_timestamp_seconds` | gauge | |
//! | `verifications_total` | counter | `outcome`: [`VerificationOutcome`] |
//! | `events` | gauge | `status`: `open`, `resolved` |
//! | `versions` | gauge | `status`: `pending`, `verified`, `active`, `inactive`, `refused` |
//! | `verification_queue_items` | gauge | `state`: `waiting`, `leased` |
//! | `weights_last_computed_timestamp_seconds` | gauge (absent before the first) | |
//! | `gateway_charged_micro_usd` | gauge | `service` |
//! | `worker_runs` | gauge | `worker`, `kind`: `claimed`, `completed`, `expired` |
//! | `worker_leases` | gauge | `worker` |
//! | `run_queue_items` | gauge | `state`: `waiting`, `leased` |
//! | `gateway_calls` | gauge | `gateway` (`host#instance`), `kind`: `reserved`, `refused` |
//! | `gateway_instance_charged_micro_usd` | gauge | `gateway` |
//! | `gateway_instance_live` | gauge (1 live, 0 closed or fenced) | `gateway` |
//!
//! Every label value comes from a closed list (or, for `service`, from the gateway's
//! configuration through its ledger; for `worker`, from the operator's workers, the
//! [`MAX_WORKERS_SHOWN`] seen last; for `gateway`, the gateways sharing the ledger, the
//! [`MAX_GATEWAYS_SHOWN`](crate::store::metrics_queries::MAX_GATEWAYS_SHOWN) newest), so no caller can grow the exposition without bound: a
//! status word the validator does not know is counted as `other`.
//!
//! It must not decide anything nor write to the store.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, Utc};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::executor::RunStatus;
use crate::store::metrics_queries::MetricsGauges;
use crate::store::{AttemptFailed, Store};
use crate::verification::Verified;

/// The prefix of every series.
const PREFIX: &str = "sooth_validator";

/// The content type of the exposition (OpenMetrics text, what `prometheus-client` encodes).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The label value of a run status word the validator does not know.
pub const OTHER: &str = "other";

/// Every run status, in the order the exposition lists them before any run is observed.
const RUN_STATUSES: [RunStatus; 7] = [
    RunStatus::Ok,
    RunStatus::Timeout,
    RunStatus::Trap,
    RunStatus::InvalidOutput,
    RunStatus::MemoryExceeded,
    RunStatus::InstantiationFailure,
    RunStatus::Crash,
];

/// Upper bounds of the run duration buckets, seconds: fine below a few seconds (most runs
/// that call no service), coarse up to the 240 s time limit, one bucket past it (a killed run
/// reports a little more than the limit).
const RUN_BUCKETS: [f64; 14] = [
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 180.0, 240.0, 300.0,
];

/// Labels of a series by status.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    status: &'static str,
}

/// Labels of the verification queue.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

/// Labels of verification outcomes.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

/// Labels of a worker's counts.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WorkerLabels {
    worker: String,
    kind: &'static str,
}

/// Labels of a gateway's counts.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GatewayLabels {
    gateway: String,
    kind: &'static str,
}

/// Labels of one gateway's gauges.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GatewayOnlyLabels {
    gateway: String,
}

/// Labels of a worker's leases.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WorkerOnlyLabels {
    worker: String,
}

/// The most workers `/metrics` reports, those seen last.
pub const MAX_WORKERS_SHOWN: usize = 256;

/// Labels of the gateway's charges.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServiceLabels {
    service: String,
}

/// What became of one verification attempt, as `verifications_total` counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VerificationOutcome {
    /// The version passed: it activates at the next midnight.
    Verified,
    /// The version failed a step or a check.
    Rejected,
    /// The attempt failed for a reason of the validator's; the item is queued again.
    Retrying,
    /// The last allowed attempt failed; the version was rejected with its error.
    GaveUp,
    /// Another worker took the item over; nothing was recorded.
    LeaseLost,
}

impl VerificationOutcome {
    /// Every outcome, in the order the exposition lists them.
    pub const ALL: [Self; 5] = [
        Self::Verified,
        Self::Rejected,
        Self::Retrying,
        Self::GaveUp,
        Self::LeaseLost,
    ];

    /// The label value.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Verified => "verified",
            Self::Rejected => "rejected",
            Self::Retrying => "retrying",
            Self::GaveUp => "gave_up",
            Self::LeaseLost => "lease_lost",
        }
    }
}

impl From<&Verified> for VerificationOutcome {
    fn from(done: &Verified) -> Self {
        match done {
            Verified::Decided {
                verification: crate::store::Verification::Verified,
                ..
            } => Self::Verified,
            Verified::Decided { .. } => Self::Rejected,
            Verified::AttemptFailed { outcome, .. } => match outcome {
                AttemptFailed::Retrying => Self::Retrying,
                AttemptFailed::GaveUp => Self::GaveUp,
                AttemptFailed::LeaseLost => Self::LeaseLost,
            },
            Verified::LeaseLost { .. } => Self::LeaseLost,
        }
    }
}

/// The series counted in process, and the gateway services always reported. Share it as an
/// `Arc`: every method takes `&self` and only touches atomics.
#[derive(Debug)]
pub struct ValidatorMetrics {
    registry: Registry,
    runs: Family<StatusLabels, Counter>,
    run_duration: Histogram,
    runs_owed: Gauge<u64, AtomicU64>,
    scoring_duration: Histogram,
    weights_set: Counter,
    weights_last_set: Gauge<f64, AtomicU64>,
    verifications: Family<OutcomeLabels, Counter>,
    run_spend: Family<ServiceLabels, Counter<f64, AtomicU64>>,
    /// The service names `run_spend` has series for: at most [`MAX_SPEND_SERVICES`].
    spend_services: std::sync::Mutex<std::collections::BTreeSet<String>>,
    gateway_services: Vec<String>,
}

/// The most service names the runs' spend is counted under; past them, `other`. A run's usage
/// names its services as the agent asked for them, so an agent could otherwise grow the
/// registry without bound.
pub const MAX_SPEND_SERVICES: usize = 32;

impl Default for ValidatorMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl ValidatorMetrics {
    /// Every in-process series at zero; each run status and verification outcome is listed
    /// from the start, so that a rate over a series that has not moved yet reads zero rather
    /// than nothing.
    #[must_use]
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix(PREFIX);
        let runs = Family::<StatusLabels, Counter>::default();
        let run_duration = Histogram::new(RUN_BUCKETS);
        let runs_owed = Gauge::<u64, AtomicU64>::default();
        let scoring_duration = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        let weights_set = Counter::default();
        let weights_last_set = Gauge::<f64, AtomicU64>::default();
        let verifications = Family::<OutcomeLabels, Counter>::default();
        let run_spend = Family::<ServiceLabels, Counter<f64, AtomicU64>>::default();
        // The guards are dropped at once: creating the series is the point.
        for status in RUN_STATUSES {
            drop(runs.get_or_create(&StatusLabels {
                status: status.as_str(),
            }));
        }
        drop(runs.get_or_create(&StatusLabels { status: OTHER }));
        for outcome in VerificationOutcome::ALL {
            drop(verifications.get_or_create(&OutcomeLabels {
                outcome: outcome.as_str(),
            }));
        }
        registry.register("runs", "Runs recorded, by status", runs.clone());
        registry.register(
            "run_duration_seconds",
            "Wall-clock duration of runs",
            run_duration.clone(),
        );
        registry.register(
            "runs_owed",
            "Runs owed at the start of the daemon's last pass, less those recorded since",
            runs_owed.clone(),
        );
        registry.register(
            "scoring_duration_seconds",
            "Duration of scoring passes (scores, leaderboard, weights)",
            scoring_duration.clone(),
        );
        registry.register(
            "weights_set",
            "Weights published through the weight setter",
            weights_set.clone(),
        );
        registry.register(
            "weights_last_set_timestamp_seconds",
            "Instant of the computation whose weights were last published (0 before the first)",
            weights_last_set.clone(),
        );
        registry.register(
            "verifications",
            "Verification attempts, by outcome",
            verifications.clone(),
        );
        registry.register(
            "run_gateway_spend_usd",
            "What recorded runs spent through the gateway, in USD, by service, as the runner \
             reported it (calls past the recorded ones under `other`)",
            run_spend.clone(),
        );
        Self {
            registry,
            run_spend,
            spend_services: std::sync::Mutex::new(std::collections::BTreeSet::new()),
            runs,
            run_duration,
            runs_owed,
            scoring_duration,
            weights_set,
            weights_last_set,
            verifications,
            gateway_services: Vec::new(),
        }
    }

    /// The same, with `services` always in `gateway_charged_micro_usd` (zero while the ledger
    /// in the store's file has no charge for them, for instance because the gateway keeps its
    /// ledger elsewhere). Give it the gateway's configured service names; services found in the
    /// ledger are reported whether named here or not.
    #[must_use]
    pub fn with_gateway_services<I, S>(mut self, services: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.gateway_services = services.into_iter().map(Into::into).collect();
        self
    }

    /// Counts a recorded run. Call it in the daemon's `run_owed` for each run
    /// `Store::record_runs` answered `RunRecorded::Inserted` for, with
    /// `record.executed.status` and `Duration::from_millis(record.executed.duration_ms)`: a
    /// run recorded before (a repeat after a restart) is not counted twice.
    pub fn observe_run(&self, status: RunStatus, duration: Duration) {
        self.count_run(status.as_str(), duration);
    }

    /// Counts a run whose status is a word (from a runner, a log, another process): a word that
    /// is not a run status counts as `other`, so that no caller can add label values.
    pub fn observe_run_word(&self, word: &str, duration: Duration) {
        let status = RunStatus::parse(word).map_or(OTHER, RunStatus::as_str);
        self.count_run(status, duration);
    }

    fn count_run(&self, status: &'static str, duration: Duration) {
        self.runs.get_or_create(&StatusLabels { status }).inc();
        self.run_duration.observe(duration.as_secs_f64());
        // Saturating: a run recorded by a pass this gauge was not told about leaves it at zero.
        let _ = self.runs_owed.inner().fetch_update(
            std::sync::atomic::Ordering::Relaxed,
            std::sync::atomic::Ordering::Relaxed,
            |owed| owed.checked_sub(1),
        );
    }

    /// Counts what a recorded run spent through the gateway, by service, from its usage as the
    /// runner reported it (`validator_runs.gateway_usage` and its cost). Call it beside
    /// [`observe_run`](Self::observe_run). Past [`MAX_SPEND_SERVICES`] service names, spend
    /// counts as `other`.
    pub fn observe_run_spend(&self, usage: &serde_json::Value, cost_usd: f64) {
        for (service, _calls, usd) in crate::gateway_usage::spend_by_service(usage, cost_usd) {
            let service = match service {
                Some(name) => {
                    let mut known = self
                        .spend_services
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    if known.contains(&name) || known.len() < MAX_SPEND_SERVICES {
                        known.insert(name.clone());
                        name
                    } else {
                        OTHER.to_owned()
                    }
                }
                None => OTHER.to_owned(),
            };
            self.run_spend
                .get_or_create(&ServiceLabels { service })
                .inc_by(usd);
        }
    }

    /// Sets the runs owed. Call it in the daemon's `run_owed` once the jobs are known, with
    /// their number (runs with a version to run them: `jobs.len()`, not `missing.len()`), and
    /// with 0 when `Store::missing_runs` finds none; each [`observe_run`](Self::observe_run)
    /// then takes one off.
    pub fn set_runs_owed(&self, owed: usize) {
        self.runs_owed.set(u64::try_from(owed).unwrap_or(u64::MAX));
    }

    /// Counts a scoring pass of `duration`. Call it in the daemon's `step` around
    /// `self.score(..)` when it returns a leaderboard (`Ok((Some(_), _))`), timing the whole
    /// call: loading the window, the leaderboard, recording and publishing.
    pub fn observe_scoring(&self, duration: Duration) {
        self.scoring_duration.observe(duration.as_secs_f64());
    }

    /// Counts a weights publication of the computation at `at`. Call it in the daemon's
    /// scoring (`daemon/rescoring.rs`) after `weight_setter.set_weights(..)` succeeded, with
    /// that computation's `now`; a failed publication is not counted.
    pub fn observe_weights_set(&self, at: DateTime<Utc>) {
        self.weights_set.inc();
        // Milliseconds are what the store keeps; as f64 they are exact for any real instant.
        let seconds = at.timestamp_millis() as f64 / 1000.0;
        self.weights_last_set.set(seconds);
    }

    /// Counts the end of a verification attempt. Call it in `Verifier::work` beside
    /// `log_pass(&done)` with `(&done).into()`, or with an outcome directly.
    pub fn observe_verification(&self, outcome: VerificationOutcome) {
        self.verifications
            .get_or_create(&OutcomeLabels {
                outcome: outcome.as_str(),
            })
            .inc();
    }

    /// The whole exposition: the in-process series, then `gauges` (read from the store), then
    /// `# EOF`.
    #[must_use]
    pub fn render(&self, gauges: &MetricsGauges) -> String {
        let scraped = self.scraped_registry(gauges);
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = encode_registry(&mut text, &self.registry);
        let _ = encode_registry(&mut text, &scraped);
        let _ = encode_eof(&mut text);
        text
    }

    /// A registry of this scrape's store gauges: built anew each time, so that a value read at
    /// one scrape never lingers into the next.
    fn scraped_registry(&self, gauges: &MetricsGauges) -> Registry {
        let mut registry = Registry::with_prefix(PREFIX);

        let events = Family::<StatusLabels, Gauge<u64, AtomicU64>>::default();
        for (status, count) in [
            ("open", gauges.open_events),
            ("resolved", gauges.resolved_events),
        ] {
            events.get_or_create(&StatusLabels { status }).set(count);
        }
        registry.register("events", "Events, by status", events);

        let versions = Family::<StatusLabels, Gauge<u64, AtomicU64>>::default();
        for (&status, &count) in &gauges.versions {
            versions.get_or_create(&StatusLabels { status }).set(count);
        }
        registry.register("versions", "Agent versions, by status", versions);

        let queue = Family::<StateLabels, Gauge<u64, AtomicU64>>::default();
        for (state, count) in [
            ("waiting", gauges.queue_waiting),
            ("leased", gauges.queue_leased),
        ] {
            queue.get_or_create(&StateLabels { state }).set(count);
        }
        registry.register(
            "verification_queue_items",
            "Verification queue items waiting for a worker or held under a lease",
            queue,
        );

        if let Some(at) = gauges.last_weights_at {
            let last = Gauge::<f64, AtomicU64>::default();
            last.set(at.timestamp_millis() as f64 / 1000.0);
            registry.register(
                "weights_last_computed_timestamp_seconds",
                "Instant of the last weights computation recorded in the store",
                last,
            );
        }

        let mut charged: BTreeMap<&str, u64> = self
            .gateway_services
            .iter()
            .map(|service| (service.as_str(), 0))
            .collect();
        for (service, &micros) in &gauges.gateway_charged_micros {
            charged.insert(service, micros);
        }
        let spend = Family::<ServiceLabels, Gauge<u64, AtomicU64>>::default();
        for (service, micros) in charged {
            spend
                .get_or_create(&ServiceLabels {
                    service: service.to_owned(),
                })
                .set(micros);
        }
        let mut workers: Vec<_> = gauges.workers.iter().collect();
        workers.sort_by_key(|worker| std::cmp::Reverse(worker.seen_at));
        let runs = Family::<WorkerLabels, Gauge<u64, AtomicU64>>::default();
        let leases = Family::<WorkerOnlyLabels, Gauge<u64, AtomicU64>>::default();
        for worker in workers.into_iter().take(MAX_WORKERS_SHOWN) {
            let id = &worker.registration.worker_id;
            for (kind, count) in [
                ("claimed", worker.claimed),
                ("completed", worker.completed),
                ("expired", worker.expired),
            ] {
                runs.get_or_create(&WorkerLabels {
                    worker: id.clone(),
                    kind,
                })
                .set(count);
            }
            leases
                .get_or_create(&WorkerOnlyLabels { worker: id.clone() })
                .set(worker.leased);
        }
        registry.register(
            "worker_runs",
            "Runs each runner worker claimed, completed, and lost when its lease ended",
            runs,
        );
        registry.register(
            "worker_leases",
            "Runs each runner worker holds under a lease now",
            leases,
        );
        let run_queue = Family::<StateLabels, Gauge<u64, AtomicU64>>::default();
        for (state, count) in [
            ("waiting", gauges.run_queue.waiting),
            ("leased", gauges.run_queue.leased),
        ] {
            run_queue.get_or_create(&StateLabels { state }).set(count);
        }
        registry.register(
            "run_queue_items",
            "Runs handed to the runner workers, waiting for one or held under a lease",
            run_queue,
        );
        let calls = Family::<GatewayLabels, Gauge<u64, AtomicU64>>::default();
        let instance_charged = Family::<GatewayOnlyLabels, Gauge<u64, AtomicU64>>::default();
        let live = Family::<GatewayOnlyLabels, Gauge<u64, AtomicU64>>::default();
        for gateway in &gauges.gateways {
            let name = format!("{}#{}", gateway.host, gateway.id);
            for (kind, count) in [
                ("reserved", gateway.reservations),
                ("refused", gateway.refusals),
            ] {
                calls
                    .get_or_create(&GatewayLabels {
                        gateway: name.clone(),
                        kind,
                    })
                    .set(count);
            }
            let only = GatewayOnlyLabels { gateway: name };
            instance_charged
                .get_or_create(&only)
                .set(gateway.charged_micros);
            live.get_or_create(&only)
                .set(u64::from(gateway.state == "live"));
        }
        registry.register(
            "gateway_calls",
            "Calls each gateway sharing the ledger reserved, and the grants it was refused",
            calls,
        );
        registry.register(
            "gateway_instance_charged_micro_usd",
            "Micro-dollars each gateway sharing the ledger charged",
            instance_charged,
        );
        registry.register(
            "gateway_instance_live",
            "1 for a gateway sharing the ledger that is live, 0 once closed or fenced",
            live,
        );
        registry.register(
            "gateway_charged_micro_usd",
            "Micro-dollars the gateway charged to miners, by service (its ledger in this file)",
            spend,
        );
        registry
    }
}

/// Shared by the handler.
#[derive(Clone)]
struct MetricsState {
    store: Store,
    metrics: Arc<ValidatorMetrics>,
}

/// `GET /metrics`: the exposition of `metrics` and of `store`'s gauges, read at each request.
/// Merge it into the validator's router.
pub fn router(store: Store, metrics: Arc<ValidatorMetrics>) -> Router {
    Router::new()
        .route("/metrics", get(serve))
        .with_state(MetricsState { store, metrics })
}

async fn serve(State(state): State<MetricsState>) -> Response {
    match state.store.metrics_gauges().await {
        Ok(gauges) => (
            [(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE))],
            state.metrics.render(&gauges),
        )
            .into_response(),
        Err(error) => {
            tracing::error!(
                error = &error as &dyn std::error::Error,
                "cannot read the store for /metrics"
            );
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot read the validator's store; the validator's log says why\n",
            )
                .into_response()
        }
    }
}
