//! A synthetic forecasting world for the demo and for benchmarks.
//!
//! This module owns the generator: events arriving unevenly (about `events_per_day` a day),
//! each with a hidden true probability, a market price that is that probability seen through
//! noise (in the metadata, where the market-price agents read it), a 3-day life to its cutoff,
//! and an outcome drawn from the truth, known some hours after the cutoff. The same seed gives
//! the same world. It must not store or run anything.

use chrono::{DateTime, TimeDelta, Utc};
use rand::RngExt;
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::SeedableRng;
use serde_json::{Map, Value, json};

use crate::event::{BINARY, DEFAULT_LIFETIME, Event, Outcome, Resolution};

/// What world to generate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WorldSpec {
    /// The seed: the same spec gives the same world.
    pub seed: u64,
    /// The first day's midnight (or any instant; days count from it).
    pub start: DateTime<Utc>,
    /// Days of events.
    pub days: u32,
    /// Mean events a day; each day has between 80 % and 120 % of it.
    pub events_per_day: u32,
    /// Standard deviation of the market's error, in log-odds.
    pub market_noise: f64,
}

impl Default for WorldSpec {
    fn default() -> Self {
        Self {
            seed: 7,
            start: DateTime::from_timestamp(1_767_225_600, 0).unwrap_or(DateTime::UNIX_EPOCH),
            days: 21,
            events_per_day: 100,
            market_noise: 0.6,
        }
    }
}

/// One generated event with what only the world knows.
#[derive(Debug, Clone, PartialEq)]
pub struct WorldEvent {
    /// The event as agents see it.
    pub event: Event,
    /// Its resolution (after the cutoff).
    pub resolution: Resolution,
    /// The hidden probability the outcome was drawn from.
    pub truth: f64,
}

/// Generates the world of `spec`, events in creation order.
#[must_use]
pub fn generate(spec: &WorldSpec) -> Vec<WorldEvent> {
    let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
    let mut world = Vec::new();
    let low = (f64::from(spec.events_per_day) * 0.8).round();
    let high = (f64::from(spec.events_per_day) * 1.2).round().max(low);
    for day in 0..spec.days {
        let day_start = spec.start + TimeDelta::days(i64::from(day));
        // Truncation is intended: whole events.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let count = rng.random_range(low..=high) as u32;
        let mut offsets: Vec<i64> = (0..count).map(|_| rng.random_range(0..24 * 3600)).collect();
        offsets.sort_unstable();
        for (index, offset) in offsets.into_iter().enumerate() {
            let truth_logit = normal(&mut rng) * 1.4;
            let market_logit = truth_logit + normal(&mut rng) * spec.market_noise;
            let truth = logistic(truth_logit);
            let market = (logistic(market_logit) * 1000.0).round() / 1000.0;
            let created_at = day_start + TimeDelta::seconds(offset);
            let id = format!("synthetic-{day:03}-{index:03}");
            let mut metadata = Map::new();
            metadata.insert("market_prob".to_owned(), json!(market));
            metadata.insert("source".to_owned(), Value::from("synthetic"));
            let event = Event {
                id: id.clone(),
                kind: BINARY.to_owned(),
                title: format!("Synthetic question {day}.{index}: will it happen?"),
                description: "A question of the demo's synthetic world; the market price in the \
                              metadata is the truth seen through noise."
                    .to_owned(),
                metadata,
                created_at,
                cutoff: created_at + DEFAULT_LIFETIME,
            };
            let outcome = if rng.random_bool(truth) {
                Outcome::Yes
            } else {
                Outcome::No
            };
            let resolved_at = event.cutoff + TimeDelta::seconds(rng.random_range(3600..24 * 3600));
            world.push(WorldEvent {
                resolution: Resolution {
                    event_id: id,
                    outcome,
                    resolved_at,
                },
                event,
                truth,
            });
        }
    }
    world
}

/// A standard normal draw (Box-Muller).
fn normal(rng: &mut ChaCha8Rng) -> f64 {
    // 1 - u is in (0, 1]: its logarithm is finite.
    let u: f64 = 1.0 - rng.random::<f64>();
    let v: f64 = rng.random();
    (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
}

fn logistic(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_world_and_another_seed_another() {
        let spec = WorldSpec {
            days: 3,
            ..WorldSpec::default()
        };
        assert_eq!(generate(&spec), generate(&spec));
        let other = generate(&WorldSpec { seed: 8, ..spec });
        assert_ne!(generate(&spec), other);
    }

    #[test]
    fn events_arrive_about_as_often_as_asked_and_resolve_after_their_cutoff() {
        let spec = WorldSpec {
            days: 10,
            ..WorldSpec::default()
        };
        let world = generate(&spec);
        assert!(
            (800..=1200).contains(&world.len()),
            "{} events",
            world.len()
        );
        for item in &world {
            assert!(item.resolution.resolved_at > item.event.cutoff);
            assert!(item.event.created_at >= spec.start);
            assert!(item.event.created_at < spec.start + TimeDelta::days(10));
            let market = item.event.metadata["market_prob"].as_f64().unwrap_or(-1.0);
            assert!((0.0..=1.0).contains(&market));
        }
        let ids: std::collections::HashSet<_> = world.iter().map(|w| &w.event.id).collect();
        assert_eq!(ids.len(), world.len());
    }

    #[test]
    fn outcomes_follow_the_truth_and_the_market_tracks_it() {
        let world = generate(&WorldSpec {
            days: 30,
            ..WorldSpec::default()
        });
        let n = world.len() as f64;
        let yes = world
            .iter()
            .filter(|w| w.resolution.outcome == Outcome::Yes)
            .count() as f64;
        let mean_truth = world.iter().map(|w| w.truth).sum::<f64>() / n;
        // 3,000 Bernoulli draws: the share of yes is within 0.03 of the mean truth.
        assert!(
            (yes / n - mean_truth).abs() < 0.03,
            "{} vs {mean_truth}",
            yes / n
        );
        let brier = |forecast: &dyn Fn(&WorldEvent) -> f64| {
            world
                .iter()
                .map(|w| (forecast(w) - w.resolution.outcome.as_f64()).powi(2))
                .sum::<f64>()
                / n
        };
        let truth = brier(&|w| w.truth);
        let market = brier(&|w| w.event.metadata["market_prob"].as_f64().unwrap_or(0.5));
        let half = brier(&|_| 0.5);
        assert!(truth < market && market < half, "{truth} {market} {half}");
    }
}
