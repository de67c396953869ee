//! A forecaster with a private signal: the market's log-odds moved by a signal of its own, a
//! deterministic function of the event id and a seed (what an agent with information the
//! market lacks looks like to the originality check). With the `independent` feature the seed
//! differs: another honest agent. With `noise-1`, `noise-3` or `noise-5` it is the default
//! agent's forecast plus Gaussian noise of sigma 0.01, 0.03 or 0.05 in probability, drawn from
//! the sandbox's seeded random numbers: a copier disguising its copy. With `live-copier` it
//! recognises the public probe events by their ids and answers them with the independent
//! signal, and copies the default agent on live events; with `probe-constant` it says 0.5 on
//! probe events and forecasts with the independent signal on live ones.

use std::hash::BuildHasher as _;

use sooth_sdk::{Event, Forecast};

const ORIGINAL_SEED: u64 = 0x5eed_0001;
const INDEPENDENT_SEED: u64 = 0x5eed_0002;

#[cfg(feature = "noise-1")]
const NOISE: f64 = 0.01;
#[cfg(feature = "noise-3")]
const NOISE: f64 = 0.03;
#[cfg(feature = "noise-5")]
const NOISE: f64 = 0.05;
#[cfg(not(any(feature = "noise-1", feature = "noise-3", feature = "noise-5")))]
const NOISE: f64 = 0.0;

/// The seed of the signal this variant uses on `id`.
fn seed_for(id: &str) -> u64 {
    let probe = id.contains(':');
    if cfg!(feature = "independent") || (cfg!(feature = "live-copier") && probe) {
        INDEPENDENT_SEED
    } else if cfg!(feature = "probe-constant") {
        INDEPENDENT_SEED
    } else {
        ORIGINAL_SEED
    }
}

/// FNV-1a of the event id and the seed, as a number in [-1, 1].
fn private_signal(id: &str) -> f64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325 ^ seed_for(id);
    for byte in id.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    (hash >> 11) as f64 / (1_u64 << 53) as f64 * 2.0 - 1.0
}

/// A standard normal draw from the sandbox's random numbers (Box-Muller).
fn gaussian() -> f64 {
    let draw = || {
        let state = std::collections::hash_map::RandomState::new();
        ((state.hash_one(0_u64) >> 11) as f64 + 0.5) / (1_u64 << 53) as f64
    };
    let (u, v) = (draw(), draw());
    (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
}

fn forecast(event: Event) -> Result<Forecast, String> {
    if cfg!(feature = "probe-constant") && event.id.contains(':') {
        return Ok(Forecast::new(&event, 0.5).with_reasoning("a probe event"));
    }
    let market = sooth_sdk::metadata::market_prob(&event)
        .unwrap_or(0.35)
        .clamp(0.01, 0.99);
    let log_odds = (market / (1.0 - market)).ln() + 1.5 * private_signal(&event.id);
    let mut probability = 1.0 / (1.0 + (-log_odds).exp());
    if NOISE > 0.0 {
        probability = (probability + NOISE * gaussian()).clamp(0.0, 1.0);
    }
    Ok(Forecast::new(&event, probability).with_reasoning("market and a private signal"))
}

sooth_sdk::register!(forecast);
