//! Concordance (issue 11, item 8) on the shared real questions: a version that predicts the
//! same way on probe and live events passes; one that answers differently on probe events is
//! flagged.
//!
//! Probe events are the first 200 questions in file order, live events the next 101. Each
//! event's kind is its source (Polymarket, Manifold, Metaculus, INFER), its days to cutoff run
//! from the question date to the resolution date, its text is the title and description.

use std::path::PathBuf;

use chrono::NaiveDate;
use sooth_validator::integrity::{ConcordanceConfig, EventFeatures, check_concordance};

struct Question {
    features: EventFeatures,
    market: f64,
    outcome: bool,
    /// A number in [0, 1) that depends only on the question.
    hash: f64,
}

fn load() -> Option<Vec<Question>> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/data/forecastbench/questions.jsonl");
    let Ok(text) = std::fs::read_to_string(&path) else {
        println!(
            "SKIPPED: {} is absent; the concordance tests need the shared questions",
            path.display()
        );
        return None;
    };
    let date = |value: &serde_json::Value| {
        value
            .as_str()
            .and_then(|s| s.get(..10))
            .and_then(|s| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok())
    };
    Some(
        text.lines()
            .filter(|line| !line.trim().is_empty())
            .map(|line| {
                let value: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
                let text = |key: &str| value[key].as_str().unwrap_or_default().to_owned();
                let days = match (
                    date(&value["question_date"]),
                    date(&value["resolution_date"]),
                ) {
                    (Some(from), Some(to)) => (to - from).num_days() as f64,
                    _ => 0.0,
                };
                let market = value["market_prob"].as_f64().expect("a market probability");
                let id = text("id");
                let hash = id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
                    (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
                });
                Question {
                    features: EventFeatures {
                        market_probability: Some(market),
                        days_to_cutoff: days,
                        kind: text("source"),
                        text_length: text("title").chars().count()
                            + text("description").chars().count(),
                    },
                    market,
                    outcome: value["outcome"].as_i64() == Some(1),
                    hash: (hash >> 11) as f64 / (1_u64 << 53) as f64,
                }
            })
            .collect(),
    )
}

/// An honest forecaster: the market moved toward the outcome, plus noise of its own that
/// depends on the question and the agent's seed.
fn forecast_with(q: &Question, seed: u64) -> f64 {
    let p = q.market.clamp(1e-4, 1.0 - 1e-4);
    let logit = (p / (1.0 - p)).ln();
    let toward = if q.outcome { 0.75 } else { -0.75 };
    let own = (q.hash * (seed as f64 + 1.0) * 7919.0).fract();
    1.0 / (1.0 + (-(logit + toward + 1.4 * (own - 0.5))).exp())
}

fn forecast(q: &Question) -> f64 {
    forecast_with(q, 0)
}

fn side(
    questions: &[Question],
    predict: impl Fn(&Question) -> Option<f64>,
) -> Vec<(EventFeatures, Option<f64>)> {
    questions
        .iter()
        .map(|q| (q.features.clone(), predict(q)))
        .collect()
}

#[test]
fn the_same_behaviour_on_probe_and_live_events_passes() {
    let Some(questions) = load() else { return };
    let (probe, live) = (&questions[..200], &questions[200..301]);
    let config = ConcordanceConfig::default();
    for (name, predict) in [
        (
            "private signal",
            &(|q: &Question| Some(forecast(q))) as &dyn Fn(&Question) -> Option<f64>,
        ),
        ("market", &|q: &Question| Some(q.market)),
        ("constant 0.3", &|_: &Question| Some(0.3)),
    ] {
        let verdict = check_concordance(&side(probe, predict), &side(live, predict), &config)
            .expect("events on both sides");
        println!("{name}: {}", verdict.detail);
        assert!(!verdict.flagged, "{name}: {verdict:?}");
    }
}

#[test]
fn honest_forecasters_with_noise_of_their_own_pass() {
    let Some(questions) = load() else { return };
    let (probe, live) = (&questions[..200], &questions[200..301]);
    let config = ConcordanceConfig::default();
    let mut smallest = 1.0_f64;
    for seed in 0..50 {
        let predict = |q: &Question| Some(forecast_with(q, seed));
        let verdict = check_concordance(&side(probe, predict), &side(live, predict), &config)
            .expect("events on both sides");
        assert!(!verdict.flagged, "seed {seed}: {verdict:?}");
        smallest = smallest.min(verdict.p_value);
    }
    println!("50 honest forecasters: smallest combined p-value {smallest:.4}");
}

#[test]
fn answering_differently_on_probe_events_is_flagged() {
    let Some(questions) = load() else { return };
    let (probe, live) = (&questions[..200], &questions[200..301]);
    let config = ConcordanceConfig::default();
    let honest_live = side(live, |q| Some(forecast(q)));
    for (name, probe_side) in [
        ("a constant 0.5 on probe events", side(probe, |_| Some(0.5))),
        ("failing on every probe event", side(probe, |_| None)),
        (
            "the opposite of the market on probe events",
            side(probe, |q| Some(1.0 - q.market)),
        ),
    ] {
        let verdict =
            check_concordance(&probe_side, &honest_live, &config).expect("events on both sides");
        println!("{name}: {}", verdict.detail);
        assert!(verdict.flagged, "{name}: {verdict:?}");
        assert!(verdict.combined_statistic > verdict.critical_value);
        assert!(verdict.p_value < config.significance);
        assert_eq!(verdict.clusters.len(), 5);
    }
}
