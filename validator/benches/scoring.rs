//! Times a full rescoring of 256 miners over 10,000 resolved events (issue 4 asks for
//! <= 1 s): the per-event Brier scores of every miner on every event (what the scores history
//! stores) and the Brier-101 leaderboard with its weights.
//!
//! Run with `cargo bench -p sooth-validator --bench scoring`.

#[path = "common/random.rs"]
mod random;

use std::time::Instant;

use chrono::{DateTime, TimeDelta, Utc};
use sooth_validator::{Miner, Outcome, ResolvedEvent, ScoredEvent, leaderboard};

use random::XorShift;

const MINERS: usize = 256;
const EVENTS: usize = 10_000;
const REPEATS: u32 = 5;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let start: DateTime<Utc> = "2026-01-01T00:00:00Z".parse()?;
    let mut random = XorShift(0x9E37_79B9_7F4A_7C15);

    let miners: Vec<Miner> = (0..MINERS)
        .map(|i| -> Result<Miner, Box<dyn std::error::Error>> {
            Ok(Miner {
                uid: u16::try_from(i)?,
                hotkey: format!("hotkey-{i:03}"),
                registered_at: start + TimeDelta::hours(i64::try_from(i)?),
            })
        })
        .collect::<Result<_, _>>()?;

    // About 100 events a day; every tenth prediction missing, some outside [0, 1].
    let events: Vec<ResolvedEvent> = (0..EVENTS)
        .map(|i| -> Result<ResolvedEvent, Box<dyn std::error::Error>> {
            let created_at = start + TimeDelta::seconds(864 * i64::try_from(i)?);
            let outcome = if random.next_unit() < 0.5 {
                Outcome::No
            } else {
                Outcome::Yes
            };
            let predictions = (0..MINERS)
                .map(|_| {
                    let p = random.next_unit();
                    (p >= 0.1).then_some(p * 1.2 - 0.1)
                })
                .collect();
            Ok(ResolvedEvent {
                id: format!("event-{i:05}"),
                created_at,
                resolved_at: created_at + TimeDelta::days(3),
                outcome,
                predictions,
            })
        })
        .collect::<Result<_, _>>()?;

    let mut best_scores = f64::INFINITY;
    let mut best_leaderboard = f64::INFINITY;
    let mut checksum = 0.0;
    for _ in 0..REPEATS {
        let timer = Instant::now();
        for event in &events {
            checksum += ScoredEvent::of(event)
                .scores
                .iter()
                .map(|score| score.brier)
                .sum::<f64>();
        }
        best_scores = best_scores.min(timer.elapsed().as_secs_f64());

        let timer = Instant::now();
        let rows = leaderboard(&miners, &events)?;
        best_leaderboard = best_leaderboard.min(timer.elapsed().as_secs_f64());
        checksum += rows.first().and_then(|row| row.mean_brier).unwrap_or(0.0);
    }

    let rows = leaderboard(&miners, &events)?;
    if let Some(winner) = rows.first() {
        println!(
            "winner: uid {} mean Brier {:.4} over {} events ({} imputed)",
            winner.miner.uid,
            winner.mean_brier.unwrap_or(f64::NAN),
            winner.events_counted,
            winner.imputed_count
        );
    }
    println!(
        "{MINERS} miners x {EVENTS} resolved events, best of {REPEATS} (checksum {checksum:.3}):"
    );
    println!(
        "  per-event Brier scores, all miners x all events: {:.2} ms",
        best_scores * 1e3
    );
    println!(
        "  Brier-101 leaderboard and weights:               {:.2} ms",
        best_leaderboard * 1e3
    );
    println!(
        "  full rescoring (both):                            {:.2} ms",
        (best_scores + best_leaderboard) * 1e3
    );
    Ok(())
}
