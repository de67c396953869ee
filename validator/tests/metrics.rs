//! `GET /metrics` through its router: in-process observations and store contents scraped,
//! parsed as OpenMetrics text and checked value by value; bounded label sets; a failed store
//! read.

#![allow(clippy::unwrap_used, clippy::expect_used)] // the helpers unwrap what the tests set up

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use chrono::{DateTime, TimeDelta, Utc};
use common::at;
use serde_json::Map;
use sooth_validator::metrics::{CONTENT_TYPE, ValidatorMetrics, VerificationOutcome, router};
use sooth_validator::store::{AttemptFailed, NewUpload, Store, UploadedBy, Verification};
use sooth_validator::verification::Verified;
use sooth_validator::{Event, Miner, Outcome, RunStatus};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool};
use tower::ServiceExt;

// --- The exposition, parsed ------------------------------------------------------------------

/// One sample line: `name{labels} value`.
#[derive(Debug, Clone, PartialEq)]
struct Sample {
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
}

/// A whole exposition, checked as it is parsed.
#[derive(Debug)]
struct Exposition {
    /// Family name to type, as declared.
    types: Vec<(String, String)>,
    samples: Vec<Sample>,
}

impl Exposition {
    /// Parses `text`, refusing anything that is not OpenMetrics text as Prometheus reads it:
    /// every line a `# HELP`, `# TYPE` or `# UNIT` descriptor, or a sample of a declared family
    /// with a suffix its type allows, `# EOF` once and last, each family declared once.
    fn parse(text: &str) -> Result<Self, String> {
        let body = text
            .strip_suffix("# EOF\n")
            .ok_or_else(|| "the exposition does not end with `# EOF`".to_owned())?;
        let mut types: Vec<(String, String)> = Vec::new();
        let mut samples = Vec::new();
        for (number, line) in body.lines().enumerate() {
            let bad = |why: &str| format!("line {}: {why}: {line:?}", number + 1);
            if let Some(descriptor) = line.strip_prefix("# ") {
                let mut words = descriptor.splitn(3, ' ');
                let (kind, name) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
                if !is_metric_name(name) {
                    return Err(bad("bad family name"));
                }
                match kind {
                    "HELP" | "UNIT" => {}
                    "TYPE" => {
                        let kind = words.next().unwrap_or("");
                        if !["counter", "gauge", "histogram"].contains(&kind) {
                            return Err(bad("unexpected type"));
                        }
                        if types.iter().any(|(declared, _)| declared == name) {
                            return Err(bad("family declared twice"));
                        }
                        types.push((name.to_owned(), kind.to_owned()));
                    }
                    _ => return Err(bad("unknown descriptor")),
                }
                continue;
            }
            let sample = parse_sample(line).map_err(|why| bad(&why))?;
            // A family's samples follow its descriptors: the sample belongs to the family
            // declared last.
            let (family, kind) = types
                .last()
                .filter(|(family, _)| sample.name.starts_with(family.as_str()))
                .ok_or_else(|| bad("sample outside its family's block"))?;
            let suffix = &sample.name[family.len()..];
            let allowed: &[&str] = match kind.as_str() {
                "counter" => &["_total", "_created"],
                "gauge" => &[""],
                _ => &["_bucket", "_sum", "_count", "_created"],
            };
            if !allowed.contains(&suffix) {
                return Err(bad("suffix not allowed for the family's type"));
            }
            samples.push(sample);
        }
        Ok(Self { types, samples })
    }

    /// The value of the sample named `name` with exactly `labels`.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let mut wanted: Vec<(String, String)> = labels
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect();
        wanted.sort();
        self.samples
            .iter()
            .find(|sample| {
                let mut got = sample.labels.clone();
                got.sort();
                sample.name == name && got == wanted
            })
            .map(|sample| sample.value)
    }

    /// As [`value`](Self::value), failing the test when the sample is missing.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.value(name, labels)
            .unwrap_or_else(|| panic!("no sample {name} {labels:?} in\n{:#?}", self.samples))
    }

    /// The values of `label` across the samples named `name`, with their values, sorted.
    fn by_label(&self, name: &str, label: &str) -> Vec<(String, f64)> {
        let mut found: Vec<(String, f64)> = self
            .samples
            .iter()
            .filter(|sample| sample.name == name)
            .filter_map(|sample| {
                sample
                    .labels
                    .iter()
                    .find(|(key, _)| key == label)
                    .map(|(_, value)| (value.clone(), sample.value))
            })
            .collect();
        found.sort_by(|a, b| a.0.cmp(&b.0));
        found
    }

    /// A histogram's cumulative bucket counts by upper bound, in order.
    fn buckets(&self, family: &str) -> Vec<(f64, f64)> {
        let name = format!("{family}_bucket");
        let mut buckets: Vec<(f64, f64)> = self
            .samples
            .iter()
            .filter(|sample| sample.name == name)
            .map(|sample| {
                let (_, le) = sample.labels.iter().find(|(key, _)| key == "le").unwrap();
                (parse_value(le).unwrap(), sample.value)
            })
            .collect();
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        buckets
    }

    /// The cumulative count of `family`'s bucket with upper bound `le`.
    fn bucket(&self, family: &str, le: f64) -> f64 {
        self.buckets(family)
            .iter()
            .find(|(bound, _)| {
                (*bound - le).abs() < 1e-9 || (bound.is_infinite() && le.is_infinite())
            })
            .unwrap_or_else(|| panic!("{family} has no bucket {le}"))
            .1
    }

    fn type_of(&self, family: &str) -> Option<&str> {
        self.types
            .iter()
            .find(|(name, _)| name == family)
            .map(|(_, kind)| kind.as_str())
    }
}

fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic() || first == '_' || first == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn parse_value(text: &str) -> Result<f64, String> {
    match text {
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => text
            .parse::<f64>()
            .map_err(|_| format!("bad value {text:?}")),
    }
}

/// `name{key="value",...} value` or `name value`.
fn parse_sample(line: &str) -> Result<Sample, String> {
    let (series, value) = line.rsplit_once(' ').ok_or_else(|| "no value".to_owned())?;
    let value = parse_value(value)?;
    let (name, labels) = match series.split_once('{') {
        None => (series, Vec::new()),
        Some((name, rest)) => {
            let inner = rest
                .strip_suffix('}')
                .ok_or_else(|| "unclosed label set".to_owned())?;
            let mut labels = Vec::new();
            // Label values here never hold quotes, commas or backslashes (the tests choose
            // them), so a plain split reads them.
            for pair in inner.split(',').filter(|pair| !pair.is_empty()) {
                let (key, quoted) = pair
                    .split_once('=')
                    .ok_or_else(|| format!("bad label {pair:?}"))?;
                let value = quoted
                    .strip_prefix('"')
                    .and_then(|quoted| quoted.strip_suffix('"'))
                    .ok_or_else(|| format!("unquoted label value {quoted:?}"))?;
                if !is_metric_name(key) {
                    return Err(format!("bad label name {key:?}"));
                }
                labels.push((key.to_owned(), value.to_owned()));
            }
            (name, labels)
        }
    };
    if !is_metric_name(name) {
        return Err(format!("bad sample name {name:?}"));
    }
    Ok(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

// --- Scraping --------------------------------------------------------------------------------

struct Scrape {
    status: StatusCode,
    content_type: String,
    body: String,
}

async fn scrape(store: &Store, metrics: &Arc<ValidatorMetrics>) -> Scrape {
    let response = router(store.clone(), Arc::clone(metrics))
        .oneshot(
            Request::get("/metrics")
                .body(Body::empty())
                .expect("a valid request"),
        )
        .await
        .expect("the router answers");
    let status = response.status();
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|value| value.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    Scrape {
        status,
        content_type,
        body: String::from_utf8(bytes.to_vec()).unwrap(),
    }
}

/// Scrapes, expecting a valid exposition.
async fn exposition(store: &Store, metrics: &Arc<ValidatorMetrics>) -> Exposition {
    let scrape = scrape(store, metrics).await;
    assert_eq!(scrape.status, StatusCode::OK, "{}", scrape.body);
    assert_eq!(scrape.content_type, CONTENT_TYPE);
    Exposition::parse(&scrape.body).unwrap_or_else(|why| panic!("{why}\n{}", scrape.body))
}

// --- The store -------------------------------------------------------------------------------

/// A store in a file, and a second connection to the same file to write what the store's
/// public API does not (the gateway's ledger, versions in every status, weights history).
async fn file_store() -> (tempfile::TempDir, Store, SqlitePool) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("validator.sqlite");
    let store = Store::open(&path).await.unwrap();
    let side = SqlitePool::connect_with(SqliteConnectOptions::new().filename(&path))
        .await
        .unwrap();
    (dir, store, side)
}

fn event(id: &str, created_at: DateTime<Utc>) -> Event {
    Event {
        id: id.to_owned(),
        kind: "market".to_owned(),
        title: format!("Will {id} happen?"),
        description: String::new(),
        metadata: Map::new(),
        created_at,
        cutoff: created_at + TimeDelta::days(3),
    }
}

fn upload(hotkey: &str, hash: &str, at_text: &str) -> NewUpload {
    NewUpload {
        hotkey: hotkey.to_owned(),
        hash: hash.to_owned(),
        size_bytes: 1000,
        uploaded_by: UploadedBy::Miner,
        at: at(at_text),
        min_interval: TimeDelta::days(3),
    }
}

async fn execute(side: &SqlitePool, sql: &str) {
    sqlx::query(sql)
        .execute(side)
        .await
        .unwrap_or_else(|error| panic!("{sql}: {error}"));
}

/// Miners alice, bob, carol and dave; events e1, e2 (open) and e3 (resolved); versions
/// pending 3 (bob's, carol's and dave's uploads), verified 1, active 2, inactive 0, refused 4;
/// the queue: carol's and dave's uploads waiting, bob's leased, two of dave's finished (one
/// done, one failed: not counted); two weights computations, the last at 2026-03-03T00:00:00.500Z; the
/// gateway's ledger: chat 1.5 USD (two miners, two days), search 0.04 USD, a reservation still
/// open (reserved, not charged).
async fn filled_store() -> (tempfile::TempDir, Store, SqlitePool) {
    let (dir, store, side) = file_store().await;
    for (uid, hotkey) in ["alice", "bob", "carol", "dave"].iter().enumerate() {
        store
            .register_miner(&Miner {
                uid: u16::try_from(uid).unwrap(),
                hotkey: (*hotkey).to_owned(),
                registered_at: at("2026-03-01T00:00:00Z"),
            })
            .await
            .unwrap();
    }
    for (id, created) in [
        ("e1", "2026-03-01T01:00:00Z"),
        ("e2", "2026-03-01T02:00:00Z"),
        ("e3", "2026-03-01T03:00:00Z"),
    ] {
        store.insert_event(&event(id, at(created))).await.unwrap();
    }
    store
        .resolve_event("e3", Outcome::Yes.as_u8(), at("2026-03-04T04:00:00Z"))
        .await
        .unwrap();

    store
        .enqueue_upload(&upload("bob", "hash-b1", "2026-03-02T10:00:00Z"))
        .await
        .unwrap();
    store
        .enqueue_upload(&upload("carol", "hash-c1", "2026-03-02T11:00:00Z"))
        .await
        .unwrap();
    store
        .enqueue_upload(&upload("dave", "hash-d5", "2026-03-02T11:30:00Z"))
        .await
        .unwrap();
    let claim = store
        .claim_verification(at("2026-03-02T12:00:00Z"), TimeDelta::minutes(10), 3)
        .await
        .unwrap()
        .expect("bob's upload waits");
    assert_eq!(claim.hotkey, "bob", "the oldest item is claimed first");

    let alice = "(SELECT miner_no FROM validator_miners WHERE hotkey = 'alice')";
    let dave = "(SELECT miner_no FROM validator_miners WHERE hotkey = 'dave')";
    execute(
        &side,
        &format!(
            "INSERT INTO validator_agent_versions \
                 (version_no, miner_no, hash, uploaded_at_ms, verified_at_ms, activated_at_ms, \
                  deactivated_at_ms, status) VALUES \
             (101, {dave}, 'hash-d0', 1, 2, 3, NULL, 'active'), \
             (102, {alice}, 'hash-a2', 5, 6, 7, NULL, 'active'), \
             (103, {alice}, 'hash-a3', 8, 9, NULL, NULL, 'verified'), \
             (104, {dave}, 'hash-d1', 10, NULL, NULL, NULL, 'refused'), \
             (105, {dave}, 'hash-d2', 11, NULL, NULL, NULL, 'refused'), \
             (106, {dave}, 'hash-d3', 12, NULL, NULL, NULL, 'refused'), \
             (107, {dave}, 'hash-d4', 13, NULL, NULL, NULL, 'refused')"
        ),
    )
    .await;
    execute(
        &side,
        "INSERT INTO validator_verifications \
             (version_no, queued_at_ms, state, attempts, finished_at_ms, last_error) VALUES \
         (104, 10, 'done', 1, 12, NULL), (105, 11, 'failed', 3, 13, 'it crashed')",
    )
    .await;
    execute(
        &side,
        &format!(
            "INSERT INTO validator_weights_history \
                 (computed_at_ms, miner_no, rank, weight, mean_brier, events_counted, \
                  imputed_count) VALUES \
             ({early}, {alice}, 1, 1.0, 0.2, 1, 0), \
             ({last}, {alice}, 1, 1.0, 0.2, 1, 0), \
             ({last}, {dave}, 2, 0.0, 0.3, 1, 1)",
            early = at("2026-03-02T00:00:00Z").timestamp_millis(),
            last = at("2026-03-03T00:00:00.500Z").timestamp_millis(),
        ),
    )
    .await;
    execute(
        &side,
        "INSERT INTO gateway_miner_day_totals \
             (miner, day, service, reserved_micros, charged_micros) VALUES \
         ('alice', '2026-03-01', 'chat', 0, 1250000), \
         ('bob', '2026-03-01', 'chat', 0, 200000), \
         ('alice', '2026-03-02', 'chat', 0, 50000), \
         ('alice', '2026-03-02', 'search', 0, 40000), \
         ('bob', '2026-03-02', 'search', 999, 0)",
    )
    .await;
    (dir, store, side)
}

// --- Tests -----------------------------------------------------------------------------------

const RUNS: &str = "sooth_validator_runs_total";
const RUN_DURATION: &str = "sooth_validator_run_duration_seconds";
const SCORING: &str = "sooth_validator_scoring_duration_seconds";

#[tokio::test]
async fn a_scrape_reports_the_observations_and_the_store_exactly() {
    let (_dir, store, _side) = filled_store().await;
    let metrics = Arc::new(ValidatorMetrics::new().with_gateway_services(["chat", "exa"]));

    metrics.set_runs_owed(10);
    metrics.observe_run(RunStatus::Ok, Duration::from_millis(50));
    metrics.observe_run(RunStatus::Ok, Duration::from_secs(2));
    metrics.observe_run(RunStatus::Timeout, Duration::from_millis(240_500));
    metrics.observe_run_word("trap", Duration::from_secs(1));
    metrics.observe_run_word("gremlins", Duration::from_millis(300));
    metrics.observe_scoring(Duration::from_millis(3));
    metrics.observe_scoring(Duration::from_millis(1500));
    metrics.observe_weights_set(at("2026-03-02T00:00:00Z"));
    metrics.observe_weights_set(at("2026-03-03T00:00:00.500Z"));
    metrics.observe_verification(VerificationOutcome::Verified);
    metrics.observe_verification(VerificationOutcome::Rejected);
    metrics.observe_verification(
        (&Verified::Decided {
            version: 7,
            verification: Verification::Rejected {
                reason: "a copy".to_owned(),
                matched_version: Some(3),
            },
        })
            .into(),
    );
    metrics.observe_verification(
        (&Verified::AttemptFailed {
            version: 8,
            outcome: AttemptFailed::GaveUp,
            error: "the component cannot be read".to_owned(),
        })
            .into(),
    );

    let scraped = exposition(&store, &metrics).await;

    // Runs by outcome: every status listed, the unknown word as `other`.
    assert_eq!(
        scraped.by_label(RUNS, "status"),
        [
            ("crash", 0.0),
            ("instantiation_failure", 0.0),
            ("invalid_output", 0.0),
            ("memory_exceeded", 0.0),
            ("ok", 2.0),
            ("other", 1.0),
            ("timeout", 1.0),
            ("trap", 1.0),
        ]
        .map(|(status, n)| (status.to_owned(), n))
    );
    assert_eq!(scraped.type_of("sooth_validator_runs"), Some("counter"));
    assert_eq!(scraped.get("sooth_validator_runs_owed", &[]), 5.0);

    // Durations 0.05, 0.3, 1, 2 and 240.5 s; bounds are inclusive.
    assert_eq!(scraped.get(&format!("{RUN_DURATION}_count"), &[]), 5.0);
    let sum = scraped.get(&format!("{RUN_DURATION}_sum"), &[]);
    assert!((sum - 243.85).abs() < 1e-9, "sum {sum}");
    for (le, count) in [
        (0.1, 1.0),
        (0.25, 1.0),
        (0.5, 2.0),
        (1.0, 3.0),
        (2.5, 4.0),
        (240.0, 4.0),
        (300.0, 5.0),
        (f64::INFINITY, 5.0),
    ] {
        assert_eq!(scraped.bucket(RUN_DURATION, le), count, "le {le}");
    }
    let counts: Vec<f64> = scraped.buckets(RUN_DURATION).iter().map(|b| b.1).collect();
    assert!(
        counts.windows(2).all(|pair| pair[0] <= pair[1]),
        "buckets are cumulative: {counts:?}"
    );

    // Scoring: 3 ms and 1.5 s, buckets doubling from 1 ms.
    assert_eq!(scraped.get(&format!("{SCORING}_count"), &[]), 2.0);
    let sum = scraped.get(&format!("{SCORING}_sum"), &[]);
    assert!((sum - 1.503).abs() < 1e-9, "sum {sum}");
    assert_eq!(scraped.bucket(SCORING, 0.002), 0.0);
    assert_eq!(scraped.bucket(SCORING, 0.004), 1.0);
    assert_eq!(scraped.bucket(SCORING, 1.024), 1.0);
    assert_eq!(scraped.bucket(SCORING, 2.048), 2.0);

    // Weights: two publications, the last of the computation at 2026-03-03T00:00:00.500Z;
    // the store's last computation is the same instant.
    let last = at("2026-03-03T00:00:00.500Z").timestamp_millis() as f64 / 1000.0;
    assert_eq!(scraped.get("sooth_validator_weights_set_total", &[]), 2.0);
    assert_eq!(
        scraped.get("sooth_validator_weights_last_set_timestamp_seconds", &[]),
        last
    );
    assert_eq!(
        scraped.get(
            "sooth_validator_weights_last_computed_timestamp_seconds",
            &[]
        ),
        last
    );

    assert_eq!(
        scraped.by_label("sooth_validator_verifications_total", "outcome"),
        [
            ("gave_up", 1.0),
            ("lease_lost", 0.0),
            ("rejected", 2.0),
            ("retrying", 0.0),
            ("verified", 1.0),
        ]
        .map(|(outcome, n)| (outcome.to_owned(), n))
    );

    // From the store.
    assert_eq!(
        scraped.by_label("sooth_validator_events", "status"),
        [("open", 2.0), ("resolved", 1.0)].map(|(status, n)| (status.to_owned(), n))
    );
    assert_eq!(
        scraped.by_label("sooth_validator_versions", "status"),
        [
            ("active", 2.0),
            ("inactive", 0.0),
            ("pending", 3.0),
            ("refused", 4.0),
            ("verified", 1.0),
        ]
        .map(|(status, n)| (status.to_owned(), n))
    );
    assert_eq!(
        scraped.by_label("sooth_validator_verification_queue_items", "state"),
        [("leased", 1.0), ("waiting", 2.0)].map(|(state, n)| (state.to_owned(), n))
    );
    // chat: 1.25 + 0.2 + 0.05 USD; search: 0.04 USD and an open reservation that is not a
    // charge; exa: configured, nothing in the ledger.
    assert_eq!(
        scraped.by_label("sooth_validator_gateway_charged_micro_usd", "service"),
        [("chat", 1_500_000.0), ("exa", 0.0), ("search", 40_000.0)]
            .map(|(service, n)| (service.to_owned(), n))
    );
    assert_eq!(
        scraped.type_of("sooth_validator_gateway_charged_micro_usd"),
        Some("gauge")
    );
}

#[tokio::test]
async fn the_store_gauges_follow_the_store_between_scrapes() {
    let (_dir, store, side) = filled_store().await;
    let metrics = Arc::new(ValidatorMetrics::new());
    let before = exposition(&store, &metrics).await;
    assert_eq!(
        before.get("sooth_validator_events", &[("status", "open")]),
        2.0
    );

    store
        .resolve_event("e1", Outcome::No.as_u8(), at("2026-03-04T05:00:00Z"))
        .await
        .unwrap();
    execute(
        &side,
        "UPDATE gateway_miner_day_totals SET charged_micros = charged_micros + 7 \
          WHERE service = 'search' AND miner = 'alice'",
    )
    .await;
    let after = exposition(&store, &metrics).await;
    assert_eq!(
        after.get("sooth_validator_events", &[("status", "open")]),
        1.0
    );
    assert_eq!(
        after.get("sooth_validator_events", &[("status", "resolved")]),
        2.0
    );
    assert_eq!(
        after.get(
            "sooth_validator_gateway_charged_micro_usd",
            &[("service", "search")]
        ),
        40_007.0
    );
}

#[tokio::test]
async fn an_empty_store_reports_zeros_and_no_weights_instant() {
    let store = Store::in_memory().await.unwrap();
    let metrics = Arc::new(ValidatorMetrics::new().with_gateway_services(["chat", "search"]));
    let scraped = exposition(&store, &metrics).await;
    assert_eq!(
        scraped.by_label("sooth_validator_gateway_charged_micro_usd", "service"),
        [("chat", 0.0), ("search", 0.0)].map(|(service, n)| (service.to_owned(), n))
    );
    assert!(
        scraped
            .by_label("sooth_validator_versions", "status")
            .iter()
            .all(|(_, n)| *n == 0.0)
    );
    assert_eq!(
        scraped.by_label("sooth_validator_versions", "status").len(),
        5
    );
    assert_eq!(scraped.get("sooth_validator_weights_set_total", &[]), 0.0);
    assert_eq!(
        scraped.value(
            "sooth_validator_weights_last_computed_timestamp_seconds",
            &[]
        ),
        None,
        "no computation recorded: no instant, rather than 1970"
    );
    assert_eq!(scraped.get(&format!("{RUN_DURATION}_count"), &[]), 0.0);
    assert_eq!(scraped.bucket(RUN_DURATION, f64::INFINITY), 0.0);
}

/// A hostile or buggy caller passing ever new words must not grow the exposition: every
/// unknown word is the same `other` series.
#[tokio::test]
async fn unknown_status_words_are_all_counted_as_other() {
    let store = Store::in_memory().await.unwrap();
    let metrics = Arc::new(ValidatorMetrics::new());
    let baseline = scrape(&store, &metrics).await.body.len();
    for n in 0..1000 {
        metrics.observe_run_word(&format!("status-{n}"), Duration::from_millis(n));
    }
    metrics.observe_run_word("OK", Duration::ZERO);
    metrics.observe_run_word("", Duration::ZERO);
    metrics.observe_run_word("ok", Duration::ZERO);

    let scrape = scrape(&store, &metrics).await;
    let scraped = Exposition::parse(&scrape.body).unwrap();
    let statuses = scraped.by_label(RUNS, "status");
    assert_eq!(statuses.len(), 8, "{statuses:?}");
    assert_eq!(scraped.get(RUNS, &[("status", "other")]), 1002.0);
    assert_eq!(scraped.get(RUNS, &[("status", "ok")]), 1.0);
    assert_eq!(scraped.get(&format!("{RUN_DURATION}_count"), &[]), 1003.0);
    // Only digits changed: the same lines, a few characters longer.
    assert!(
        scrape.body.len() < baseline + 200,
        "the exposition grew from {baseline} to {} bytes",
        scrape.body.len()
    );
}

/// What runs spent through the gateway, by service, as their usage reports it; an agent naming
/// ever new services in its calls gets at most `MAX_SPEND_SERVICES` series, the rest `other`.
#[tokio::test]
async fn run_spend_is_counted_by_service_with_a_bounded_set_of_names() {
    const SPEND: &str = "sooth_validator_run_gateway_spend_usd_total";
    let store = Store::in_memory().await.unwrap();
    let metrics = Arc::new(ValidatorMetrics::new());
    let usage = serde_json::json!({
        "total_calls": 4,
        "calls": [
            {"service": "llm", "cost_usd": 0.25},
            {"service": "llm", "cost_usd": 0.5},
            {"service": "search", "cost_usd": 0.125},
        ],
    });
    // One call past the recorded ones, and what it cost beyond them.
    metrics.observe_run_spend(&usage, 1.0);
    metrics.observe_run_spend(&usage, 0.875);
    let scraped = exposition(&store, &metrics).await;
    assert_eq!(scraped.get(SPEND, &[("service", "llm")]), 1.5);
    assert_eq!(scraped.get(SPEND, &[("service", "search")]), 0.25);
    assert_eq!(scraped.get(SPEND, &[("service", "other")]), 0.125);

    let hostile: Vec<serde_json::Value> = (0..100)
        .map(|n| serde_json::json!({"service": format!("svc-{n}\"}} x"), "cost_usd": 1.0}))
        .collect();
    metrics.observe_run_spend(&serde_json::json!({"calls": hostile}), 100.0);
    let scraped = exposition(&store, &metrics).await;
    let services = scraped.by_label(SPEND, "service");
    assert_eq!(
        services.len(),
        sooth_validator::metrics::MAX_SPEND_SERVICES + 1,
        "{services:?}"
    );
    let total: f64 = services.iter().map(|(_, usd)| usd).sum();
    assert!((total - 101.875).abs() < 1e-9, "{total}");
    assert_eq!(
        scraped.get(SPEND, &[("service", "other")]),
        0.125 + f64::from(100 - 30)
    );
}

#[tokio::test]
async fn a_failed_store_read_answers_500_in_plain_text() {
    let store = Store::in_memory().await.unwrap();
    let metrics = Arc::new(ValidatorMetrics::new());
    store.close().await;
    let scrape = scrape(&store, &metrics).await;
    assert_eq!(scrape.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        scrape.content_type.starts_with("text/plain"),
        "{}",
        scrape.content_type
    );
    assert!(scrape.body.contains("store"), "{}", scrape.body);
}

/// The parser the other tests rely on refuses what is not an exposition.
#[test]
fn the_exposition_check_refuses_malformed_text() {
    let good = "# HELP x_total Things.\n# TYPE x counter\nx_total{a=\"b\"} 1\n# EOF\n";
    assert!(Exposition::parse(good).is_ok());
    for bad in [
        // No EOF.
        "# TYPE x counter\nx_total 1\n",
        // EOF not last.
        "# TYPE x counter\n# EOF\nx_total 1\n",
        // Undeclared family.
        "y 1\n# EOF\n",
        // A gauge suffix on a counter.
        "# TYPE x counter\nx 1\n# EOF\n",
        // No value, a bad value, unquoted label.
        "# TYPE x gauge\nx\n# EOF\n",
        "# TYPE x gauge\nx one\n# EOF\n",
        "# TYPE x gauge\nx{a=b} 1\n# EOF\n",
        // Declared twice.
        "# TYPE x gauge\n# TYPE x gauge\nx 1\n# EOF\n",
    ] {
        assert!(Exposition::parse(bad).is_err(), "accepted {bad:?}");
    }
}

/// The scheduler's `/metrics` shows every runner worker of the PostgreSQL store (whatever host
/// it runs on): what each claimed and completed, its leases that ended under it, the leases it
/// holds, and the runs queued.
#[tokio::test]
async fn the_runner_workers_report_through_the_store_to_the_schedulers_metrics() {
    use sooth_validator::store::{
        FinishedClaim, QueuedRun, RunOwner, StoreOptions, WorkerRegistration,
    };
    use sooth_validator::{AgentVersion, ExecutedRun};

    let schema = sooth_test_postgres::TestSchema::create().await;
    let store = Store::connect(schema.url(), &StoreOptions::default())
        .await
        .unwrap();
    let start = at("2026-03-01T00:00:00Z");
    let hash = "b".repeat(64);
    store
        .register_miner(&Miner {
            uid: 0,
            hotkey: "m0".into(),
            registered_at: start,
        })
        .await
        .unwrap();
    store
        .add_agent_version(&AgentVersion {
            hotkey: "m0".into(),
            hash: hash.clone(),
            uploaded_at: start,
            verified_at: Some(start),
        })
        .await
        .unwrap();
    let mut queued = Vec::new();
    for i in 0..5 {
        let id = format!("e{i}");
        store
            .insert_event(&Event::new(id.clone(), "T?", start + TimeDelta::minutes(i)))
            .await
            .unwrap();
        queued.push(QueuedRun {
            run_id: format!("{id}/m0"),
            event_id: id,
            owner: RunOwner::Miner {
                hotkey: "m0".into(),
            },
            component_hash: hash.clone(),
            gateway_name: "m0".into(),
            uid: 0,
        });
    }
    store.set_scheduler_sandbox("sandbox").await.unwrap();
    for id in ["w1", "w2"] {
        store
            .register_worker(&WorkerRegistration {
                worker_id: id.into(),
                host: format!("{id}.internal"),
                sandbox_version: "sandbox".into(),
                concurrency: 4,
            })
            .await
            .unwrap();
    }
    store.enqueue_runs(&queued).await.unwrap();
    let lease = Duration::from_secs(600);
    let w1 = store.claim_runs("w1", 2, lease).await.unwrap();
    store.claim_runs("w2", 1, lease).await.unwrap();
    store
        .record_claimed(
            "w1",
            &[FinishedClaim {
                claim: w1[0].clone(),
                executed: ExecutedRun {
                    status: RunStatus::Ok,
                    prediction: Some(0.7),
                    duration_ms: 3,
                    logs: String::new(),
                    gateway_usage: serde_json::json!({}),
                    cost_usd: 0.0,
                },
            }],
        )
        .await
        .unwrap();

    let metrics = Arc::new(ValidatorMetrics::new());
    let scraped = exposition(&store, &metrics).await;
    let runs = |worker: &str, kind: &str| {
        scraped.get(
            "sooth_validator_worker_runs",
            &[("kind", kind), ("worker", worker)],
        )
    };
    assert_eq!(runs("w1", "claimed"), 2.0);
    assert_eq!(runs("w1", "completed"), 1.0);
    assert_eq!(runs("w1", "expired"), 0.0);
    assert_eq!(runs("w2", "claimed"), 1.0);
    assert_eq!(runs("w2", "completed"), 0.0);
    assert_eq!(
        scraped.by_label("sooth_validator_worker_leases", "worker"),
        [("w1".to_owned(), 1.0), ("w2".to_owned(), 1.0)]
    );
    assert_eq!(
        scraped.by_label("sooth_validator_run_queue_items", "state"),
        [("leased".to_owned(), 2.0), ("waiting".to_owned(), 2.0)]
    );
}

/// The gateways sharing the ledger in the store's database report through it: each one's
/// calls reserved and refused, its charges and whether it is live, for the newest 64 only.
#[tokio::test]
async fn the_gateways_sharing_the_ledger_report_the_newest_64_through_the_store() {
    let (_dir, store, side) = file_store().await;
    for id in 1..=70 {
        let state = if id == 70 { "fenced" } else { "live" };
        execute(
            &side,
            &format!(
                "INSERT INTO gateway_instances
                   (host, started_at_ms, lease_until_ms, state, reservations, refusals,
                    charged_micros)
                 VALUES ('gw', {id}, 0, '{state}', {}, {}, {})",
                id * 10,
                id % 3,
                id * 1000
            ),
        )
        .await;
    }
    let metrics = Arc::new(ValidatorMetrics::new());
    let scraped = exposition(&store, &metrics).await;
    let live = scraped.by_label("sooth_validator_gateway_instance_live", "gateway");
    assert_eq!(live.len(), 64, "only the newest 64 are shown");
    assert!(
        live.iter().all(|(name, _)| name != "gw#6"),
        "gw#6 is among the oldest"
    );
    assert_eq!(
        scraped.get(
            "sooth_validator_gateway_instance_live",
            &[("gateway", "gw#70")]
        ),
        0.0
    );
    assert_eq!(
        scraped.get(
            "sooth_validator_gateway_instance_live",
            &[("gateway", "gw#7")]
        ),
        1.0
    );
    let calls = |gateway: &str, kind: &str| {
        scraped.get(
            "sooth_validator_gateway_calls",
            &[("gateway", gateway), ("kind", kind)],
        )
    };
    assert_eq!(calls("gw#69", "reserved"), 690.0);
    assert_eq!(calls("gw#68", "refused"), 2.0);
    assert_eq!(
        scraped.get(
            "sooth_validator_gateway_instance_charged_micro_usd",
            &[("gateway", "gw#65")]
        ),
        65_000.0
    );
}
