//! The labelled set of issue 11 (item 7): simulated agents over the shared real questions,
//! the copies that originality must catch and the honest agents it must spare, under the
//! default rule (`beyond_public`) and SPEC's raw rule.
//!
//! Every agent is a deterministic function of (question, agent seed): its noise comes from a
//! ChaCha generator seeded by both. The "LLM" is the gateway's fake upstream: its answer is a
//! hash of the prompt that `agents-examples/llm-forecaster` sends (`default_chat_answer` in
//! `fake-upstream/src/chat.rs`), so every agent asking it gets the same pseudo-probability,
//! and the LLM forecaster is a benchmark agent whose predictions are public.
//!
//! The figures are printed: `cargo test -p sooth-validator --test originality -- --nocapture`.

use std::path::PathBuf;
use std::sync::OnceLock;

use rand::RngExt;
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::SeedableRng;
use sooth_validator::integrity::{
    OriginalityConfig, OriginalityMode, OriginalityVerdict, PublicSignals,
    check_originality_resolved,
};

/// Share of yes among the shared questions (their README).
const BASE_RATE: f64 = 0.146;
/// Probe set: the first 200 questions in file order.
const PROBE: std::ops::Range<usize> = 0..200;
/// Live window: the next 101.
const LIVE: std::ops::Range<usize> = 200..301;
/// Agent seeds tried for the honest agents (each gives every agent new private noise).
const REPLICATES: u64 = 10;
/// Noise draws per copy level.
const DRAWS: u64 = 200;

struct Question {
    id: String,
    market: f64,
    outcome: bool,
    /// The fake upstream's answer to the LLM forecaster's prompt.
    llm: f64,
}

fn questions() -> Option<&'static [Question]> {
    static QUESTIONS: OnceLock<Option<Vec<Question>>> = OnceLock::new();
    QUESTIONS.get_or_init(load).as_deref()
}

fn load() -> Option<Vec<Question>> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/data/forecastbench/questions.jsonl");
    let Ok(text) = std::fs::read_to_string(&path) else {
        println!(
            "SKIPPED: {} is absent; the labelled set needs the shared questions",
            path.display()
        );
        return None;
    };
    let questions: Vec<Question> = text
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let value: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
            let text = |key: &str| value[key].as_str().unwrap_or_default().to_owned();
            let market = value["market_prob"].as_f64().expect("a market probability");
            let title = text("title");
            let description = text("description");
            Question {
                id: text("id"),
                market,
                outcome: value["outcome"].as_i64() == Some(1),
                llm: llm_answer(&title, &description, market),
            }
        })
        .collect();
    assert!(questions.len() >= LIVE.end, "too few questions");
    Some(questions)
}

/// What the LLM forecaster asks and what the fake upstream answers (a hash of the prompt).
fn llm_answer(title: &str, description: &str, market: f64) -> f64 {
    let mut prompt = format!("Question: {title}\n");
    if !description.is_empty() {
        prompt.push_str(&format!("Background: {description}\n"));
    }
    prompt.push_str(&format!("The market currently says {market:.2}.\n"));
    prompt.push_str(
        "Answer with the probability that the answer is yes, as a number between 0 and 1.",
    );
    let hash = prompt.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    (hash % 99 + 1) as f64 / 100.0
}

fn logit(p: f64) -> f64 {
    let p = p.clamp(1e-4, 1.0 - 1e-4);
    (p / (1.0 - p)).ln()
}

fn logistic(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// A standard normal draw that depends only on (question, seed).
fn noise(question: &Question, seed: u64) -> f64 {
    let key = question
        .id
        .bytes()
        .fold(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15), |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        });
    let mut rng = ChaCha8Rng::seed_from_u64(key);
    let u: f64 = 1.0 - rng.random::<f64>();
    let v: f64 = rng.random();
    (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
}

/// Whether an agent's run fails on a question (one in `every`), deterministically.
fn fails(question: &Question, seed: u64, every: u64) -> bool {
    let key = question.id.bytes().fold(seed ^ 0x5151, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    key % every == 0
}

fn yes(question: &Question) -> f64 {
    if question.outcome { 0.5 } else { -0.5 }
}

/// A private-signal agent: the market moved by a noisy view of the outcome, in log-odds.
fn private_signal(q: &Question, strength: f64, spread: f64, seed: u64) -> f64 {
    logistic(logit(q.market) + strength * yes(q) + spread * noise(q, seed))
}

/// Agent A, the one copied.
fn agent_a(q: &Question, replicate: u64) -> f64 {
    private_signal(q, 1.5, 0.7, 1000 + replicate)
}

type Agent = (
    &'static str,
    Box<dyn Fn(&Question, u64) -> Option<f64> + Sync>,
);

/// The honest agents; none may be flagged as a copy of another.
fn honest_agents() -> Vec<Agent> {
    vec![
        ("A private signal", Box::new(|q, r| Some(agent_a(q, r)))),
        (
            "B private signal (fails 1 in 40)",
            Box::new(|q, r| {
                (!fails(q, 2000 + r, 40)).then(|| private_signal(q, 1.0, 0.8, 2000 + r))
            }),
        ),
        (
            "C strong private signal",
            Box::new(|q, r| Some(private_signal(q, 3.0, 0.5, 3000 + r))),
        ),
        (
            "D strong private signal",
            Box::new(|q, r| Some(private_signal(q, 3.0, 0.5, 4000 + r))),
        ),
        ("market", Box::new(|q, _| Some(q.market))),
        (
            "market extremized x1.3",
            Box::new(|q, _| Some(logistic(1.3 * logit(q.market)))),
        ),
        (
            "market shrunk to base rate",
            Box::new(|q, _| Some(0.8 * q.market + 0.2 * BASE_RATE)),
        ),
        (
            "market + noise 0.02",
            Box::new(|q, r| Some((q.market + 0.02 * noise(q, 5000 + r)).clamp(0.0, 1.0))),
        ),
        ("constant 0.5", Box::new(|_, _| Some(0.5))),
        ("constant 0.3", Box::new(|_, _| Some(0.3))),
        (
            "L1 0.7 market + 0.3 LLM",
            Box::new(|q, _| Some(0.7 * q.market + 0.3 * q.llm)),
        ),
        (
            "L2 log-odds mix + private (fails 1 in 40)",
            Box::new(|q, r| {
                (!fails(q, 6000 + r, 40)).then(|| {
                    logistic(
                        0.6 * logit(q.market)
                            + 0.4 * logit(q.llm)
                            + yes(q)
                            + 0.5 * noise(q, 6000 + r),
                    )
                })
            }),
        ),
        (
            "L3 log-odds mix 0.3 market + 0.7 LLM",
            Box::new(|q, _| Some(logistic(0.3 * logit(q.market) + 0.7 * logit(q.llm)))),
        ),
        (
            "L4 even log-odds mix + private",
            Box::new(|q, r| {
                Some(logistic(
                    0.5 * logit(q.market)
                        + 0.5 * logit(q.llm)
                        + 0.8 * yes(q)
                        + 0.6 * noise(q, 7000 + r),
                ))
            }),
        ),
        (
            "L5 0.6 market + 0.4 LLM + noise 0.03",
            Box::new(|q, r| {
                Some((0.6 * q.market + 0.4 * q.llm + 0.03 * noise(q, 8000 + r)).clamp(0.0, 1.0))
            }),
        ),
    ]
}

/// The events of one set with what everyone sees about them.
struct EventSet {
    name: &'static str,
    questions: &'static [Question],
    signals: PublicSignals,
    outcomes: Vec<Option<bool>>,
}

fn event_set(name: &'static str, range: std::ops::Range<usize>) -> Option<EventSet> {
    let questions = &questions()?[range];
    Some(EventSet {
        name,
        questions,
        signals: PublicSignals {
            market: questions.iter().map(|q| Some(q.market)).collect(),
            // The benchmark agents: the market-price baseline and the LLM forecaster.
            benchmarks: vec![
                questions.iter().map(|q| Some(q.market)).collect(),
                questions.iter().map(|q| Some(q.llm)).collect(),
            ],
        },
        outcomes: questions.iter().map(|q| Some(q.outcome)).collect(),
    })
}

fn sets() -> Option<[EventSet; 2]> {
    Some([
        event_set("probe, n = 200", PROBE)?,
        event_set("live, n = 101", LIVE)?,
    ])
}

fn predictions(set: &EventSet, agent: &Agent, replicate: u64) -> Vec<Option<f64>> {
    set.questions
        .iter()
        .map(|q| (agent.1)(q, replicate))
        .collect()
}

fn check(
    set: &EventSet,
    candidate: &[Option<f64>],
    earlier: &[(String, Vec<Option<f64>>)],
    mode: OriginalityMode,
) -> OriginalityVerdict<String> {
    check_with(set, candidate, earlier, mode, &set.outcomes)
}

fn check_with(
    set: &EventSet,
    candidate: &[Option<f64>],
    earlier: &[(String, Vec<Option<f64>>)],
    mode: OriginalityMode,
    outcomes: &[Option<bool>],
) -> OriginalityVerdict<String> {
    let config = OriginalityConfig {
        mode,
        ..OriginalityConfig::default()
    };
    check_originality_resolved(candidate, earlier, &set.signals, outcomes, &config)
        .expect("aligned input")
}

/// Which rule, and whether the outcomes are given to it.
#[derive(Clone, Copy)]
enum Rule {
    Default,
    DefaultWithoutOutcomes,
    Raw,
}

/// Per agent, over every other agent as the earlier version and every replicate: how often
/// it was flagged, how often it was public-signal only, and the largest statistic.
#[derive(Default)]
struct Row {
    pairs: usize,
    flagged: usize,
    public_only: usize,
    largest: f64,
}

fn honest_pairs(set: &EventSet, rule: Rule) -> Vec<(&'static str, Row)> {
    let (mode, outcomes) = match rule {
        Rule::Default => (OriginalityMode::BeyondPublic, set.outcomes.as_slice()),
        Rule::DefaultWithoutOutcomes => (OriginalityMode::BeyondPublic, &[][..]),
        Rule::Raw => (OriginalityMode::Raw, set.outcomes.as_slice()),
    };
    let agents = honest_agents();
    let mut rows: Vec<(&'static str, Row)> = agents
        .iter()
        .map(|(name, _)| (*name, Row::default()))
        .collect();
    for replicate in 0..REPLICATES {
        let vectors: Vec<Vec<Option<f64>>> = agents
            .iter()
            .map(|a| predictions(set, a, replicate))
            .collect();
        for (c, candidate) in vectors.iter().enumerate() {
            for (e, other) in vectors.iter().enumerate() {
                if c == e {
                    continue;
                }
                let earlier = vec![(agents[e].0.to_owned(), other.clone())];
                let row = &mut rows[c].1;
                row.pairs += 1;
                match check_with(set, candidate, &earlier, mode, outcomes) {
                    OriginalityVerdict::Copy { .. } => row.flagged += 1,
                    OriginalityVerdict::PublicSignalOnly { .. } => row.public_only += 1,
                    OriginalityVerdict::Original {
                        strongest: Some((_, statistic)),
                        ..
                    } => row.largest = row.largest.max(statistic),
                    _ => {}
                }
            }
        }
    }
    rows
}

#[test]
fn honest_agents_are_spared_by_the_default_rule() {
    let Some(sets) = sets() else { return };
    for set in &sets {
        let rows = honest_pairs(set, Rule::Default);
        println!(
            "\nbeyond_public, {}: each honest agent as the candidate against each other one as \
             the earlier version, {REPLICATES} agent seeds",
            set.name
        );
        println!("| honest agent | pairs | flagged | public-signal only | largest z |");
        println!("|---|---|---|---|---|");
        for (name, row) in &rows {
            println!(
                "| {name} | {} | {} | {} | {:.2} |",
                row.pairs, row.flagged, row.public_only, row.largest
            );
        }
        for (name, row) in &rows {
            assert_eq!(row.flagged, 0, "{name} flagged on the {} set", set.name);
        }
        let public = |name: &str| rows.iter().find(|(n, _)| *n == name).map(|(_, r)| r);
        for name in [
            "market",
            "constant 0.5",
            "constant 0.3",
            "L1 0.7 market + 0.3 LLM",
        ] {
            let row = public(name).expect("agent");
            assert_eq!(
                row.public_only, row.pairs,
                "{name} should be public-signal only"
            );
        }
        let a = public("A private signal").expect("agent");
        assert_eq!(a.public_only, 0, "A has a private signal");
    }
}

/// The honest agents other than A, as earlier versions: the copy must be told from all of
/// them and matched with A.
fn earlier_with_a(set: &EventSet, replicate: u64) -> Vec<(String, Vec<Option<f64>>)> {
    honest_agents()
        .iter()
        .map(|agent| (agent.0.to_owned(), predictions(set, agent, replicate)))
        .collect()
}

#[test]
fn exact_and_rebuilt_copies_are_caught() {
    let Some(sets) = sets() else { return };
    for set in &sets {
        let earlier = earlier_with_a(set, 0);
        // A rebuild with other bytes predicts exactly what A predicts.
        let rebuild = earlier[0].1.clone();
        let verdict = check(set, &rebuild, &earlier, OriginalityMode::BeyondPublic);
        let OriginalityVerdict::Copy {
            matched, detail, ..
        } = &verdict
        else {
            panic!(
                "the rebuild of A passed on the {} set: {verdict:?}",
                set.name
            );
        };
        assert_eq!(matched, "A private signal");
        assert!(detail.contains("identical"), "{detail}");
        println!("rebuild of A, {}: {verdict:?}", set.name);
    }
}

/// A copy of A with Gaussian noise of `sigma` in probability, clipped to [0, 1].
fn noisy_copy(set: &EventSet, sigma: f64, draw: u64) -> Vec<Option<f64>> {
    set.questions
        .iter()
        .map(|q| Some((agent_a(q, 0) + sigma * noise(q, 90_000 + draw)).clamp(0.0, 1.0)))
        .collect()
}

#[test]
fn noisy_copies_are_caught() {
    let Some(sets) = sets() else { return };
    println!("\nnoisy copies of A, {DRAWS} noise draws each, against all honest agents:");
    println!("| set | sigma | caught (beyond_public) | smallest z | caught (raw) |");
    println!("|---|---|---|---|---|");
    for set in &sets {
        let earlier = earlier_with_a(set, 0);
        for sigma in [0.01, 0.03, 0.05] {
            let (mut caught, mut caught_raw) = (0, 0);
            let mut smallest = f64::INFINITY;
            for draw in 0..DRAWS {
                let copy = noisy_copy(set, sigma, draw);
                match check(set, &copy, &earlier, OriginalityMode::BeyondPublic) {
                    OriginalityVerdict::Copy {
                        matched, statistic, ..
                    } => {
                        assert_eq!(matched, "A private signal", "matched the wrong agent");
                        caught += 1;
                        smallest = smallest.min(statistic);
                    }
                    OriginalityVerdict::Original {
                        strongest: Some((_, statistic)),
                        ..
                    } => smallest = smallest.min(statistic),
                    other => panic!("unexpected verdict {other:?}"),
                }
                if check(set, &copy, &earlier, OriginalityMode::Raw).is_copy() {
                    caught_raw += 1;
                }
            }
            let rate = f64::from(caught) / DRAWS as f64;
            println!(
                "| {} | {sigma} | {:.1} % | {smallest:.2} | {:.1} % |",
                set.name,
                100.0 * rate,
                100.0 * f64::from(caught_raw) / DRAWS as f64
            );
            if set.name.starts_with("probe") && sigma <= 0.03 {
                assert!(
                    rate >= 0.99,
                    "sigma {sigma} copies caught {rate} on the probe set"
                );
            }
        }
    }
}

#[test]
fn the_raw_rule_flags_honest_market_followers() {
    let Some(sets) = sets() else { return };
    for set in &sets {
        let rows = honest_pairs(set, Rule::Raw);
        println!(
            "\nraw rule (SPEC), {}: each honest agent as the candidate against each other one",
            set.name
        );
        println!("| honest agent | pairs | flagged | largest abs(r) among the spared |");
        println!("|---|---|---|---|");
        for (name, row) in &rows {
            println!(
                "| {name} | {} | {} | {:.3} |",
                row.pairs, row.flagged, row.largest
            );
        }
        let flagged = |name: &str| {
            rows.iter()
                .find(|(n, _)| *n == name)
                .map_or(0, |(_, r)| r.flagged)
        };
        // The evidence that the default is not the raw rule: honest market-followers and
        // honest private-signal agents are rejected as copies of one another.
        for name in [
            "market extremized x1.3",
            "market shrunk to base rate",
            "market + noise 0.02",
            "A private signal",
        ] {
            assert!(
                flagged(name) > 0,
                "the raw rule spared {name} on {}",
                set.name
            );
        }
    }
}

#[test]
fn without_the_outcomes_good_forecasters_look_alike() {
    let Some(sets) = sets() else { return };
    let set = &sets[0];
    let rows = honest_pairs(set, Rule::DefaultWithoutOutcomes);
    println!(
        "\nbeyond_public without the outcomes (check_originality), {}: two agents that both \
         forecast well agree because both are right",
        set.name
    );
    println!("| honest agent | pairs | flagged | largest z among the spared |");
    println!("|---|---|---|---|");
    for (name, row) in &rows {
        println!(
            "| {name} | {} | {} | {:.2} |",
            row.pairs, row.flagged, row.largest
        );
    }
    // The evidence that resolved events must be checked with their outcomes.
    let flagged: usize = rows.iter().map(|(_, row)| row.flagged).sum();
    assert!(
        flagged > 0,
        "no honest agent was flagged without the outcomes"
    );
}

#[test]
fn the_first_uploader_is_compared_with_no_one_before_it() {
    let Some(sets) = sets() else { return };
    let set = &sets[0];
    let original: Vec<Option<f64>> = set.questions.iter().map(|q| Some(agent_a(q, 0))).collect();
    let copy = noisy_copy(set, 0.01, 0);
    // The caller lists only the versions uploaded earlier: A first, then its copier.
    let verdict = check(set, &original, &[], OriginalityMode::BeyondPublic);
    assert!(
        matches!(
            verdict,
            OriginalityVerdict::Original {
                strongest: None,
                compared: 0
            }
        ),
        "{verdict:?}"
    );
    let earlier = vec![("A private signal".to_owned(), original)];
    let verdict = check(set, &copy, &earlier, OriginalityMode::BeyondPublic);
    assert_eq!(
        verdict.matched().map(String::as_str),
        Some("A private signal")
    );
}

#[test]
fn public_signal_only_agents_are_compared_with_no_one() {
    let Some(sets) = sets() else { return };
    let set = &sets[0];
    let earlier = earlier_with_a(set, 0);
    // A copy of the market-price benchmark: the market itself.
    let market: Vec<Option<f64>> = set.questions.iter().map(|q| Some(q.market)).collect();
    let verdict = check(set, &market, &earlier, OriginalityMode::BeyondPublic);
    assert!(
        matches!(verdict, OriginalityVerdict::PublicSignalOnly { .. }),
        "{verdict:?}"
    );
}
