//! What the API answers: one serializable struct per JSON shape, built from the store's
//! records.
//!
//! Instants are RFC 3339 strings in UTC (`2026-03-01T00:00:00Z`, with milliseconds when there
//! are), outcomes the numbers 0 and 1, statuses the lower-case words the store keeps. A field
//! without a value is `null`, never left out.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use crate::event::{Event, Outcome};
use crate::meta::{Pool, contributions};
use crate::scoring::{Miner, score_totals};
pub use crate::store::ReferenceKind;
use crate::store::{
    Consistency, EventRecord, EventStatus, IntegrityCheck, MinerRecord, MinerRun, RunRecord, Store,
    StoreError, VersionRecord, WeightRow,
};

/// The body of every error: `{"code": "...", "message": "..."}`, with `next_allowed_at` for
/// an upload refused by the rate and `retry_at` for a registration refused by its hourly bound.
#[derive(Debug, Clone, Serialize)]
pub struct ErrorView {
    /// What went wrong, as a stable snake_case word for programs.
    pub code: &'static str,
    /// What went wrong, for a human.
    pub message: String,
    /// When the next upload is allowed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_allowed_at: Option<DateTime<Utc>>,
    /// When to try again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_at: Option<DateTime<Utc>>,
}

/// `GET /health`.
#[derive(Debug, Clone, Serialize)]
pub struct HealthView {
    /// Always `"ok"`: the daemon answers.
    pub status: &'static str,
}

/// An event (`GET /v1/events`, `GET /v1/events/{id}`): its fields, then how it stands.
#[derive(Debug, Clone, Serialize)]
pub struct EventView {
    /// The event as it was created: id, kind, title, description, metadata, creation and
    /// cutoff.
    #[serde(flatten)]
    pub event: Event,
    /// `open` or `resolved`.
    pub status: &'static str,
    /// 0 or 1 once resolved, `null` before.
    pub outcome: Option<Outcome>,
    /// When it resolved, `null` before.
    pub resolved_at: Option<DateTime<Utc>>,
}

impl From<EventRecord> for EventView {
    fn from(record: EventRecord) -> Self {
        Self {
            event: record.event,
            status: match record.status {
                EventStatus::Open => "open",
                EventStatus::Resolved => "resolved",
            },
            outcome: record.outcome,
            resolved_at: record.resolved_at,
        }
    }
}

/// A run on an event (`GET /v1/events/{id}/runs`).
#[derive(Debug, Clone, Serialize)]
pub struct RunView {
    /// The miner that ran.
    pub hotkey: String,
    /// The hash of the agent version that ran.
    pub version_hash: String,
    /// How it ended: `ok`, `timeout`, `trap`, `invalid_output`, `memory_exceeded`,
    /// `instantiation_failure` or `crash`.
    pub status: &'static str,
    /// The agent's prediction (`ok` runs only; may lie outside [0, 1]).
    pub prediction: Option<f64>,
    /// The value scored: the prediction clipped to [0.01, 0.99] (`ok` runs only).
    pub clipped_prediction: Option<f64>,
    /// Wall-clock duration.
    pub duration_ms: u64,
    /// What its gateway calls cost, in USD.
    pub cost_usd: f64,
    /// When it finished.
    pub finished_at: DateTime<Utc>,
    /// What it used through the gateway, as the runner reported it.
    pub gateway_usage: Value,
    /// Its captured output (truncated by the runner).
    pub logs: String,
}

impl From<RunRecord> for RunView {
    fn from(record: RunRecord) -> Self {
        let run = record.run;
        let executed = run.executed;
        Self {
            hotkey: run.hotkey,
            version_hash: run.version_hash,
            status: executed.status.as_str(),
            prediction: executed.prediction,
            clipped_prediction: record.clipped_prediction,
            duration_ms: executed.duration_ms,
            cost_usd: executed.cost_usd,
            finished_at: run.finished_at,
            gateway_usage: executed.gateway_usage,
            logs: executed.logs,
        }
    }
}

/// A run of a miner, with its event's outcome and the miner's score
/// (`GET /v1/miners/{hotkey}/runs`).
#[derive(Debug, Clone, Serialize)]
pub struct MinerRunView {
    /// The event.
    pub event_id: String,
    /// The run, as on the event's list of runs.
    #[serde(flatten)]
    pub run: RunView,
    /// The event's outcome, `null` while open.
    pub outcome: Option<Outcome>,
    /// The miner's Brier score on the event, `null` until scored.
    pub brier: Option<f64>,
    /// Whether that score is of the imputed 0.5 (no valid prediction), `null` until scored.
    pub imputed: Option<bool>,
}

impl From<MinerRun> for MinerRunView {
    fn from(record: MinerRun) -> Self {
        Self {
            event_id: record.run.run.event_id.clone(),
            run: record.run.into(),
            outcome: record.outcome,
            brier: record.score.as_ref().map(|score| score.brier),
            imputed: record.score.as_ref().map(|score| score.imputed),
        }
    }
}

/// A miner with its versions and standing (`GET /v1/miners/{hotkey}`).
#[derive(Debug, Clone, Serialize)]
pub struct MinerView {
    /// Its uid (the last it held, if deregistered).
    pub uid: u16,
    /// Its hotkey.
    pub hotkey: String,
    /// When it (last) registered.
    pub registered_at: DateTime<Utc>,
    /// When it was deregistered; `null` while registered.
    pub deregistered_at: Option<DateTime<Utc>>,
    /// Its agent versions, oldest upload first.
    pub versions: Vec<VersionView>,
    /// Its line in the latest weights computation; `null` if it has none.
    pub standing: Option<StandingView>,
}

impl MinerView {
    /// The view of `record` with its `versions` and its line of the latest computation.
    #[must_use]
    pub fn new(
        record: MinerRecord,
        versions: Vec<VersionRecord>,
        standing: Option<WeightRow>,
    ) -> Self {
        Self {
            uid: record.miner.uid,
            hotkey: record.miner.hotkey,
            registered_at: record.miner.registered_at,
            deregistered_at: record.deregistered_at,
            versions: versions.into_iter().map(VersionView::from).collect(),
            standing: standing.map(StandingView::from),
        }
    }
}

/// An agent version of a miner.
#[derive(Debug, Clone, Serialize)]
pub struct VersionView {
    /// Its hash.
    pub hash: String,
    /// `pending`, `verified`, `active`, `inactive` or `rejected`.
    pub status: &'static str,
    /// When it was uploaded.
    pub uploaded_at: DateTime<Utc>,
    /// When it was verified, if it was.
    pub verified_at: Option<DateTime<Utc>>,
    /// When it became active, if it did.
    pub activated_at: Option<DateTime<Utc>>,
    /// When it stopped being active, if it did.
    pub deactivated_at: Option<DateTime<Utc>>,
    /// Why it was refused or superseded, if it was.
    pub reason: Option<String>,
}

impl From<VersionRecord> for VersionView {
    fn from(record: VersionRecord) -> Self {
        Self {
            hash: record.version.hash,
            status: super::upload_views::status_word(record.status, None),
            uploaded_at: record.version.uploaded_at,
            verified_at: record.version.verified_at,
            activated_at: record.activated_at,
            deactivated_at: record.deactivated_at,
            reason: record.reason,
        }
    }
}

/// A miner's line in the latest weights computation.
#[derive(Debug, Clone, Serialize)]
pub struct StandingView {
    /// When the weights were computed.
    pub computed_at: DateTime<Utc>,
    /// Its rank (1 is best).
    pub rank: usize,
    /// Its mean Brier score over the window; `null` before any event resolved.
    pub mean_brier: Option<f64>,
    /// Events in the window.
    pub events_counted: usize,
    /// Of which scored with the imputed 0.5.
    pub imputed_count: usize,
    /// Its weight.
    pub weight: f64,
}

impl From<WeightRow> for StandingView {
    fn from(row: WeightRow) -> Self {
        Self {
            computed_at: row.computed_at,
            rank: row.rank,
            mean_brier: row.mean_brier,
            events_counted: row.events_counted,
            imputed_count: row.imputed_count,
            weight: row.weight,
        }
    }
}

/// The latest weights computation, by rank (`GET /v1/leaderboard`).
#[derive(Debug, Clone, Serialize)]
pub struct LeaderboardView {
    /// When it was computed; `null` before any computation.
    pub computed_at: Option<DateTime<Utc>>,
    /// One line per miner scored, best rank first.
    pub rows: Vec<LeaderboardRowView>,
    /// The benchmark agents and the meta-model's pools, scored like miners over the same
    /// window and never weighted.
    pub references: Vec<ReferenceRowView>,
}

impl LeaderboardView {
    /// The leaderboard as the store has it now: the latest weights computation with each
    /// miner's consistency, integrity flags and contribution, and the reference entries.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when a read fails.
    pub async fn load(store: &Store) -> Result<Self, StoreError> {
        let rows = store.latest_weights().await?;
        let consistency = store.consistency().await?;
        let flags = store.failed_live_checks().await?;
        let mut view = Self::new(rows, &consistency, &flags);
        let Some(at) = view.computed_at else {
            return Ok(view);
        };
        // The window the miners were scored over: as many events as the longest row counted.
        let count = view
            .rows
            .iter()
            .map(|row| row.events_counted)
            .max()
            .unwrap_or(0);
        if count == 0 {
            return Ok(view);
        }
        let references = store.reference_window(count, at).await?;
        let totals = score_totals(references.entries.len(), &references.events);
        let events = references.events.len();
        view.references = references
            .entries
            .iter()
            .zip(&totals)
            .map(|(entry, total)| ReferenceRowView {
                name: entry.name.clone(),
                kind: entry.kind,
                mean_brier: (events > 0).then(|| total.brier_sum / events as f64),
                events_counted: events,
                imputed_count: total.imputed,
            })
            .collect();
        let Some(pool) = references
            .entries
            .iter()
            .position(|entry| entry.name == Pool::CONTRIBUTION.name())
        else {
            return Ok(view);
        };
        let meta: HashMap<&str, Option<f64>> = references
            .events
            .iter()
            .map(|event| (event.id.as_str(), event.predictions[pool]))
            .collect();
        let miners: Vec<Miner> = view
            .rows
            .iter()
            .map(|row| Miner {
                uid: row.uid,
                hotkey: row.hotkey.clone(),
                registered_at: at,
            })
            .collect();
        let window = store.last_resolved_events(&miners, count, at).await?;
        let pooled: Vec<Option<f64>> = window
            .iter()
            .map(|event| meta.get(event.id.as_str()).copied().flatten())
            .collect();
        let mmc = contributions(miners.len(), &window, &pooled)
            .map_err(|error| StoreError::Corrupt(format!("contributions: {error}")))?;
        for (row, mmc) in view.rows.iter_mut().zip(mmc) {
            row.mmc = mmc;
        }
        Ok(view)
    }

    /// The leaderboard of `rows`, each with its miner's consistency from `consistency` and its
    /// failed live checks from `flags`.
    #[must_use]
    pub fn new(
        rows: Vec<WeightRow>,
        consistency: &std::collections::HashMap<String, Consistency>,
        flags: &std::collections::HashMap<String, Vec<IntegrityCheck>>,
    ) -> Self {
        Self {
            computed_at: rows.first().map(|row| row.computed_at),
            rows: rows
                .into_iter()
                .map(|row| {
                    let days = consistency.get(&row.hotkey).copied().unwrap_or_default();
                    let failed = flags.get(&row.hotkey).map_or(&[][..], Vec::as_slice);
                    LeaderboardRowView::new(row, days, failed)
                })
                .collect(),
            references: Vec::new(),
        }
    }
}

/// A reference line of the leaderboard: a benchmark agent or a meta-model pool.
#[derive(Debug, Clone, Serialize)]
pub struct ReferenceRowView {
    /// Its name (`market-baseline`, `meta:linear`...).
    pub name: String,
    /// Benchmark or meta-model.
    pub kind: ReferenceKind,
    /// Mean Brier score over the same window as the miners'; `null` before any event resolved.
    pub mean_brier: Option<f64>,
    /// Events in the window.
    pub events_counted: usize,
    /// Of which scored with the imputed 0.5.
    pub imputed_count: usize,
}

/// A line of the leaderboard.
#[derive(Debug, Clone, Serialize)]
pub struct LeaderboardRowView {
    /// Rank (1 is best).
    pub rank: usize,
    /// The miner's uid.
    pub uid: u16,
    /// The miner's hotkey.
    pub hotkey: String,
    /// Mean Brier score over the window; `null` before any event resolved.
    pub mean_brier: Option<f64>,
    /// Events in the window.
    pub events_counted: usize,
    /// Of which scored with the imputed 0.5.
    pub imputed_count: usize,
    /// Weight.
    pub weight: f64,
    /// The share of its days of resolution on which its mean Brier beat 0.25; `null` before
    /// any.
    pub consistency: Option<f64>,
    /// Days of resolution it was scored on.
    pub days_scored: u32,
    /// The integrity checks its active version failed on its live events (`originality`,
    /// `concordance`): it earns no weight until a new version activates. Empty for most.
    pub integrity_flags: Vec<&'static str>,
    /// Its contribution to the meta-model (MMC), the mean over the days of resolution in the
    /// window; `null` before any.
    pub mmc: Option<f64>,
}

impl LeaderboardRowView {
    /// The line of `row`, with the miner's `consistency` and the checks its active version
    /// failed on live events.
    #[must_use]
    pub fn new(row: WeightRow, consistency: Consistency, flags: &[IntegrityCheck]) -> Self {
        Self {
            rank: row.rank,
            uid: row.uid,
            hotkey: row.hotkey,
            mean_brier: row.mean_brier,
            events_counted: row.events_counted,
            imputed_count: row.imputed_count,
            weight: row.weight,
            consistency: consistency.share(),
            days_scored: consistency.days,
            integrity_flags: flags.iter().map(|check| check.as_str()).collect(),
            mmc: None,
        }
    }
}

/// The latest weights, by uid (`GET /v1/weights`).
#[derive(Debug, Clone, Serialize)]
pub struct WeightsView {
    /// When they were computed; `null` before any computation.
    pub computed_at: Option<DateTime<Utc>>,
    /// One entry per miner scored, by uid.
    pub weights: Vec<WeightView>,
}

impl From<Vec<WeightRow>> for WeightsView {
    fn from(rows: Vec<WeightRow>) -> Self {
        let mut weights: Vec<WeightView> = rows
            .iter()
            .map(|row| WeightView {
                uid: row.uid,
                hotkey: row.hotkey.clone(),
                weight: row.weight,
            })
            .collect();
        weights.sort_by(|a, b| a.uid.cmp(&b.uid).then_with(|| a.hotkey.cmp(&b.hotkey)));
        Self {
            computed_at: rows.first().map(|row| row.computed_at),
            weights,
        }
    }
}

/// A miner's weight.
#[derive(Debug, Clone, Serialize)]
pub struct WeightView {
    /// The miner's uid.
    pub uid: u16,
    /// The miner's hotkey.
    pub hotkey: String,
    /// Its weight, in [0, 1].
    pub weight: f64,
}
