//! The daemon's scoring step: the window of the last resolved events it keeps between steps,
//! brought up to date with each batch of resolutions, scored, recorded and published.

use std::collections::HashSet;

use chrono::{DateTime, Utc};

use super::{Daemon, DaemonError, StepState};
use crate::scoring::{
    LeaderboardRow, Miner, ResolvedEvent, ScoredEvent, assign_winner_take_all, leaderboard_over,
};
use crate::weights::Weights;

/// The last 101 resolved events with the predictions of `miners`.
#[derive(Debug)]
pub(super) struct ScoringWindow {
    pub(super) miners: Vec<Miner>,
    pub(super) events: Vec<ResolvedEvent>,
}

impl Daemon {
    /// Brings the scoring window up to `now` with the events resolved since the last scoring,
    /// records their scores and the leaderboard, and publishes the weights. `None` when nothing
    /// new counts yet (no event resolved by `now`, or only events resolved later).
    ///
    /// Returns the leaderboard and the events of `resolved` whose resolution instant is still
    /// to come.
    pub(super) async fn score(
        &self,
        now: DateTime<Utc>,
        state: &mut StepState,
        resolved: &HashSet<String>,
        requested: bool,
    ) -> Result<(Option<Vec<LeaderboardRow>>, HashSet<String>), DaemonError> {
        let miners = self.store.registered_miners().await?;
        let pending: Vec<String> = resolved.iter().cloned().collect();
        let (window, fresh) = match state.window.take() {
            Some(mut window) if window.miners == miners => {
                let fresh = self.store.resolved_events(&miners, &pending, now).await?;
                let fresh_ids: HashSet<&str> = fresh.iter().map(|e| e.id.as_str()).collect();
                window
                    .events
                    .retain(|event| !fresh_ids.contains(event.id.as_str()));
                window.events.extend(fresh.iter().cloned());
                window
                    .events
                    .sort_by(|a, b| (a.resolved_at, &a.id).cmp(&(b.resolved_at, &b.id)));
                let excess = window
                    .events
                    .len()
                    .saturating_sub(self.settings.scoring_window);
                window.events.drain(..excess);
                let fresh: HashSet<String> = fresh.into_iter().map(|event| event.id).collect();
                (window, fresh)
            }
            _ => {
                // First scoring of this process, or the miners changed: load it all.
                let events = self
                    .store
                    .last_resolved_events(&miners, self.settings.scoring_window, now)
                    .await?;
                let fresh = events
                    .iter()
                    .filter(|event| resolved.contains(&event.id))
                    .map(|event| event.id.clone())
                    .collect();
                (ScoringWindow { miners, events }, fresh)
            }
        };
        // Events resolved at an instant still to come wait for it; the rest are scored now
        // (or fell outside the window, which a full load would not include either).
        let mut later = HashSet::new();
        for id in pending.iter().filter(|id| !fresh.contains(*id)) {
            let record = self.store.event(id).await?;
            if record.is_some_and(|record| record.resolved_at.is_some_and(|at| at > now)) {
                later.insert(id.clone());
            }
        }
        if window.events.is_empty() || (fresh.is_empty() && !requested) {
            state.window = Some(window);
            return Ok((None, later));
        }
        let mut rows =
            leaderboard_over(&window.miners, &window.events, self.settings.scoring_window)?;
        // A miner whose active version was found copying or discordant on live events earns
        // nothing until a new version activates; the weight goes to the next in rank.
        let unpaid = self.store.hotkeys_without_weight().await?;
        if !unpaid.is_empty() {
            assign_winner_take_all(&mut rows, |miner| !unpaid.contains(&miner.hotkey));
        }
        let newly_scored: Vec<ScoredEvent> = window
            .events
            .iter()
            .filter(|event| fresh.contains(&event.id))
            .map(ScoredEvent::of)
            .collect();
        self.store
            .record_scores_and_weights(&window.miners, &newly_scored, &rows, now)
            .await?;
        if let Err(error) = self
            .weight_setter
            .set_weights(&Weights::from_leaderboard(now, &rows))
        {
            tracing::error!(
                error = &error as &dyn std::error::Error,
                "weights recorded but not published"
            );
        }
        state.window = Some(window);
        Ok((Some(rows), later))
    }
}
