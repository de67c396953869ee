//! The pages' view models: what each template shows, every number already formatted.
//!
//! Owns the shaping of the store's records into rows, with the numbers in the formats of
//! `format`. Text from the data stays text: the templates escape it.

use askama::Template;
use chrono::{DateTime, Utc};

use super::format::count_of;
pub use super::format::{
    Num, brier, count, duration, instant, probability, share, signed, usd, weight,
};
use super::links::Links;
pub use super::operator::{OperatorPage, SpendRow};
use super::queries::{EventData, MinerData, gateway_calls};
use super::svg::{self, LineChart, Series};
use crate::api::views::{LeaderboardView, ReferenceKind};
use crate::scoring::SCORING_WINDOW;
use crate::store::EventStatus;

/// Characters of a run's logs shown on a page; the rest is cut with a note.
pub const MAX_LOG_CHARS: usize = 2_000;

/// Points of a line chart per series, at most.
pub const MAX_CHART_POINTS: usize = 500;

/// A reference entry's kind as every page shows it.
fn reference_kind(kind: ReferenceKind) -> &'static str {
    match kind {
        ReferenceKind::Benchmark => "benchmark",
        ReferenceKind::MetaModel => "meta-model",
    }
}

/// What every page has: title, links to the main pages, whether it refreshes.
#[derive(Debug, Clone)]
pub struct Chrome {
    /// The page's title.
    pub title: String,
    /// Refresh every minute.
    pub refresh: bool,
    /// Link to the leaderboard.
    pub home: String,
    /// Link to the operator page.
    pub operator: String,
}

impl Chrome {
    pub(super) fn new(title: impl Into<String>, links: Links) -> Self {
        Self {
            title: title.into(),
            refresh: links.refresh(),
            home: links.home(),
            operator: links.operator(),
        }
    }
}

/// `/`: the latest weights computation by rank, then the reference entries.
#[derive(Debug, Clone, Template)]
#[template(path = "leaderboard.html")]
pub struct LeaderboardPage {
    /// Title and links.
    pub chrome: Chrome,
    /// When the weights were computed, if ever.
    pub computed_at: Option<String>,
    /// One row per miner, best rank first.
    pub rows: Vec<LeaderboardRow>,
    /// The benchmark agents and meta-model pools.
    pub references: Vec<ReferenceRow>,
    /// The scoring window's size.
    pub window: usize,
}

/// A miner's row of the leaderboard.
#[derive(Debug, Clone)]
pub struct LeaderboardRow {
    /// Rank, 1 best.
    pub rank: Num,
    /// Its uid.
    pub uid: u16,
    /// Its hotkey.
    pub hotkey: String,
    /// Link to its page.
    pub href: String,
    /// Mean Brier over the window.
    pub brier: Num,
    /// Events in the window.
    pub events: Num,
    /// Of which imputed.
    pub imputed: Num,
    /// Share of days beating 0.25.
    pub consistency: Num,
    /// Days scored.
    pub days: Num,
    /// Contribution to the meta-model.
    pub mmc: Num,
    /// Failed live integrity checks.
    pub flags: Vec<&'static str>,
    /// Weight.
    pub weight: Num,
}

/// A reference row of the leaderboard.
#[derive(Debug, Clone)]
pub struct ReferenceRow {
    /// Its name.
    pub name: String,
    /// `benchmark` or `meta-model`.
    pub kind: &'static str,
    /// Mean Brier over the window.
    pub brier: Num,
    /// Events in the window.
    pub events: Num,
    /// Of which imputed.
    pub imputed: Num,
}

impl LeaderboardPage {
    /// The page of `view`.
    #[must_use]
    pub fn new(view: LeaderboardView, links: Links) -> Self {
        Self {
            chrome: Chrome::new("sooth leaderboard", links),
            computed_at: view.computed_at.map(instant),
            rows: view
                .rows
                .into_iter()
                .map(|row| LeaderboardRow {
                    rank: count_of(row.rank),
                    uid: row.uid,
                    href: links.miner(&row.hotkey),
                    hotkey: row.hotkey,
                    brier: brier(row.mean_brier),
                    events: count_of(row.events_counted),
                    imputed: count_of(row.imputed_count),
                    consistency: share(row.consistency),
                    days: count(u64::from(row.days_scored)),
                    mmc: signed(row.mmc),
                    flags: row.integrity_flags,
                    weight: weight(row.weight),
                })
                .collect(),
            references: view
                .references
                .into_iter()
                .map(|row| ReferenceRow {
                    name: row.name,
                    kind: reference_kind(row.kind),
                    brier: brier(row.mean_brier),
                    events: count_of(row.events_counted),
                    imputed: count_of(row.imputed_count),
                })
                .collect(),
            window: SCORING_WINDOW,
        }
    }
}

/// `/miners/{hotkey}`.
#[derive(Debug, Clone, Template)]
#[template(path = "miner.html")]
pub struct MinerPage {
    /// Title and links.
    pub chrome: Chrome,
    /// The hotkey.
    pub hotkey: String,
    /// Its uid.
    pub uid: u16,
    /// When it registered.
    pub registered_at: String,
    /// When it was deregistered, if it was.
    pub deregistered_at: Option<String>,
    /// Its line of the latest weights: rank, Brier-101, events, imputed, weight.
    pub standing: Option<Standing>,
    /// Its agent versions, newest upload first.
    pub versions: Vec<VersionRow>,
    /// The rolling Brier chart (SVG, built escaped by `svg`).
    pub rolling_chart: String,
    /// Scored events in the history.
    pub scored_events: Num,
    /// Its rolling Brier after the last scored event.
    pub latest_rolling: Num,
    /// The reliability chart (SVG, built escaped by `svg`).
    pub calibration_chart: String,
    /// The reliability bins, as a table.
    pub bins: Vec<BinRow>,
    /// Forecasts in the bins.
    pub calibrated: Num,
    /// Its newest runs.
    pub runs: Vec<RunRow>,
    /// The scoring window's size.
    pub window: usize,
}

/// A miner's standing in the latest weights.
#[derive(Debug, Clone)]
pub struct Standing {
    /// Rank.
    pub rank: Num,
    /// Brier-101.
    pub brier: Num,
    /// Events in the window.
    pub events: Num,
    /// Of which imputed.
    pub imputed: Num,
    /// Weight.
    pub weight: Num,
}

/// An agent version.
#[derive(Debug, Clone)]
pub struct VersionRow {
    /// Its hash.
    pub hash: String,
    /// Its status word.
    pub status: &'static str,
    /// Uploaded.
    pub uploaded_at: String,
    /// Activated, if it was.
    pub activated_at: String,
    /// Why refused or superseded.
    pub reason: String,
}

/// A bin of the reliability chart.
#[derive(Debug, Clone)]
pub struct BinRow {
    /// `0.00–0.10`.
    pub range: String,
    /// Forecasts in it.
    pub count: Num,
    /// Their mean prediction.
    pub mean: Num,
    /// Observed frequency of 1.
    pub observed: Num,
}

/// A run on a miner's page.
#[derive(Debug, Clone)]
pub struct RunRow {
    /// The event.
    pub event_id: String,
    /// Link to the event's page.
    pub event_href: String,
    /// How it ended.
    pub status: &'static str,
    /// The raw prediction.
    pub prediction: Num,
    /// The scored prediction.
    pub clipped: Num,
    /// `0`, `1` or `open`.
    pub outcome: &'static str,
    /// Its Brier score.
    pub brier: Num,
    /// Wall-clock duration.
    pub duration: Num,
    /// Gateway calls.
    pub calls: Num,
    /// Cost.
    pub cost: Num,
    /// When it finished.
    pub finished_at: String,
    /// Its logs, cut to [`MAX_LOG_CHARS`].
    pub logs: String,
    /// Set when the logs were cut: what was left out.
    pub logs_note: Option<String>,
}

/// `text` cut to `max` characters, with a note of what was cut.
fn truncated(text: &str, max: usize) -> (String, Option<String>) {
    match text.char_indices().nth(max) {
        None => (text.to_owned(), None),
        Some((end, _)) => {
            let total = text.chars().count();
            (
                text[..end].to_owned(),
                Some(format!(
                    "Truncated: the first {max} of {total} characters are shown."
                )),
            )
        }
    }
}

fn outcome_word(outcome: Option<crate::event::Outcome>) -> &'static str {
    match outcome.map(crate::event::Outcome::as_u8) {
        Some(0) => "0",
        Some(_) => "1",
        None => "open",
    }
}

impl MinerPage {
    /// The page of `data`.
    #[must_use]
    pub fn new(data: MinerData, links: Links) -> Self {
        let hotkey = data.record.miner.hotkey.clone();
        let chart = rolling_chart(&data);
        let latest = svg::rolling_means(
            &data.scores.iter().map(|s| s.1).collect::<Vec<_>>(),
            SCORING_WINDOW,
        )
        .last()
        .copied();
        let bins = svg::calibration_bins(&data.calibration);
        let calibration_chart = svg::reliability_chart(
            "Calibration: observed frequency by predicted probability",
            &bins,
        );
        Self {
            chrome: Chrome::new(format!("Miner {hotkey}"), links),
            uid: data.record.miner.uid,
            registered_at: instant(data.record.miner.registered_at),
            deregistered_at: data.record.deregistered_at.map(instant),
            standing: data.standing.map(|row| Standing {
                rank: count_of(row.rank),
                brier: brier(row.mean_brier),
                events: count_of(row.events_counted),
                imputed: count_of(row.imputed_count),
                weight: weight(row.weight),
            }),
            versions: data
                .versions
                .into_iter()
                .rev()
                .map(|record| VersionRow {
                    hash: record.version.hash,
                    status: crate::api::upload_views::status_word(record.status, None),
                    uploaded_at: instant(record.version.uploaded_at),
                    activated_at: record.activated_at.map(instant).unwrap_or_default(),
                    reason: record.reason.unwrap_or_default(),
                })
                .collect(),
            rolling_chart: chart,
            scored_events: count_of(data.scores.len()),
            latest_rolling: brier(latest),
            calibration_chart,
            calibrated: count_of(data.calibration.len()),
            bins: bins
                .iter()
                .map(|bin| BinRow {
                    range: format!("{:.2}–{:.2}", bin.low, bin.high),
                    count: count_of(bin.count),
                    mean: probability(bin.mean_prediction),
                    observed: probability(bin.observed),
                })
                .collect(),
            runs: data
                .recent
                .into_iter()
                .map(|run| {
                    let record = run.run;
                    let executed = &record.run.executed;
                    let (logs, logs_note) = truncated(&executed.logs, MAX_LOG_CHARS);
                    RunRow {
                        event_href: links.event(&record.run.event_id),
                        status: executed.status.as_str(),
                        prediction: probability(executed.prediction),
                        clipped: probability(record.clipped_prediction),
                        outcome: outcome_word(run.outcome),
                        brier: brier(run.score.as_ref().map(|score| score.brier)),
                        duration: duration(executed.duration_ms),
                        calls: count(gateway_calls(&executed.gateway_usage)),
                        cost: usd(executed.cost_usd),
                        finished_at: instant(record.run.finished_at),
                        logs,
                        logs_note,
                        event_id: record.run.event_id,
                    }
                })
                .collect(),
            hotkey,
            window: SCORING_WINDOW,
        }
    }
}

/// Seconds since the epoch as a chart's x.
#[allow(clippy::cast_precision_loss)] // exact to the second for 285 million years
fn x_of(at: DateTime<Utc>) -> f64 {
    at.timestamp() as f64
}

/// The rolling Brier-101 of the miner and of each reference, over resolution time.
fn rolling_chart(data: &MinerData) -> String {
    let rolling = |scores: &[(DateTime<Utc>, f64)]| -> Vec<(f64, f64)> {
        let values: Vec<f64> = scores.iter().map(|score| score.1).collect();
        let points: Vec<(f64, f64)> = scores
            .iter()
            .zip(svg::rolling_means(&values, SCORING_WINDOW))
            .map(|(score, mean)| (x_of(score.0), mean))
            .collect();
        svg::downsample(&points, MAX_CHART_POINTS)
    };
    let mut series = vec![Series {
        name: data.record.miner.hotkey.clone(),
        points: rolling(&data.scores),
        dashed: false,
    }];
    series.extend(data.references.iter().map(|reference| Series {
        name: reference.name.clone(),
        points: rolling(&reference.scores),
        dashed: true,
    }));
    let all = data
        .scores
        .iter()
        .chain(data.references.iter().flat_map(|r| r.scores.iter()))
        .map(|score| score.0);
    let ticks = match (all.clone().min(), all.max()) {
        (Some(first), Some(last)) if first < last => {
            let middle = first + (last - first) / 2;
            vec![first, middle, last]
                .into_iter()
                .map(|at| (x_of(at), at.format("%Y-%m-%d").to_string()))
                .collect()
        }
        (Some(only), _) => vec![(x_of(only), only.format("%Y-%m-%d").to_string())],
        _ => Vec::new(),
    };
    svg::line_chart(&LineChart {
        title: format!("Rolling Brier-{SCORING_WINDOW} by resolution time (lower is better)"),
        series,
        x_ticks: ticks,
        guide: Some((0.25, "0.25: always 0.5".to_owned())),
    })
}

/// `/events/{id}`.
#[derive(Debug, Clone, Template)]
#[template(path = "event.html")]
pub struct EventPage {
    /// Title and links.
    pub chrome: Chrome,
    /// The event's id.
    pub id: String,
    /// Its kind.
    pub kind: String,
    /// Its question.
    pub title: String,
    /// Its description.
    pub description: String,
    /// Its metadata, as JSON text.
    pub metadata: String,
    /// Created.
    pub created_at: String,
    /// Cutoff.
    pub cutoff: String,
    /// `open` or `resolved`.
    pub status: &'static str,
    /// `0`, `1` or `open`.
    pub outcome: &'static str,
    /// Resolved at, if resolved.
    pub resolved_at: Option<String>,
    /// The miners' forecasts.
    pub forecasts: Vec<ForecastRow>,
    /// The references' forecasts.
    pub references: Vec<ReferenceForecastRow>,
}

/// A miner's forecast on an event.
#[derive(Debug, Clone)]
pub struct ForecastRow {
    /// The miner.
    pub hotkey: String,
    /// Link to its page.
    pub href: String,
    /// How the run ended.
    pub status: &'static str,
    /// The raw prediction.
    pub prediction: Num,
    /// The scored prediction.
    pub clipped: Num,
    /// Its Brier score, once scored.
    pub brier: Num,
    /// Wall-clock duration.
    pub duration: Num,
}

/// A reference's forecast on an event.
#[derive(Debug, Clone)]
pub struct ReferenceForecastRow {
    /// Its name.
    pub name: String,
    /// `benchmark` or `meta-model`.
    pub kind: &'static str,
    /// How its forecast ended; `none` without one.
    pub status: String,
    /// Its raw prediction.
    pub prediction: Num,
    /// Its scored prediction.
    pub clipped: Num,
    /// Its Brier score, once resolved.
    pub brier: Num,
    /// A benchmark run's wall-clock duration.
    pub duration: Num,
}

impl EventPage {
    /// The page of `data`.
    #[must_use]
    pub fn new(data: EventData, links: Links) -> Self {
        let record = data.record;
        let event = record.event;
        let brier_of = |hotkey: &str| {
            data.scores
                .iter()
                .find(|score| score.hotkey == hotkey)
                .map(|score| score.brier)
        };
        Self {
            chrome: Chrome::new(format!("Event {}", event.id), links),
            metadata: serde_json::Value::Object(event.metadata).to_string(),
            created_at: instant(event.created_at),
            cutoff: instant(event.cutoff),
            status: match record.status {
                EventStatus::Open => "open",
                EventStatus::Resolved => "resolved",
            },
            outcome: outcome_word(record.outcome),
            resolved_at: record.resolved_at.map(instant),
            forecasts: data
                .runs
                .iter()
                .map(|run| ForecastRow {
                    href: links.miner(&run.run.hotkey),
                    hotkey: run.run.hotkey.clone(),
                    status: run.run.executed.status.as_str(),
                    prediction: probability(run.run.executed.prediction),
                    clipped: probability(run.clipped_prediction),
                    brier: brier(brier_of(&run.run.hotkey)),
                    duration: duration(run.run.executed.duration_ms),
                })
                .collect(),
            references: data
                .references
                .into_iter()
                .map(|reference| ReferenceForecastRow {
                    name: reference.name,
                    kind: reference_kind(reference.kind),
                    status: reference.status.unwrap_or_else(|| "none".to_owned()),
                    prediction: probability(reference.prediction),
                    clipped: probability(reference.clipped),
                    brier: brier(reference.brier),
                    duration: reference.duration_ms.map_or_else(Num::none, duration),
                })
                .collect(),
            id: event.id,
            kind: event.kind,
            title: event.title,
            description: event.description,
        }
    }
}

/// A page saying what went wrong: 400, 404 or 500.
#[derive(Debug, Clone, Template)]
#[template(path = "error.html")]
pub struct ErrorPage {
    /// Title and links.
    pub chrome: Chrome,
    /// The HTTP status.
    pub status: u16,
    /// What went wrong, for a human (escaped).
    pub message: String,
}

impl ErrorPage {
    /// The page of an error with `status`, `heading` and `message`.
    #[must_use]
    pub fn new(status: u16, heading: &str, message: String) -> Self {
        Self {
            chrome: Chrome::new(heading, Links::Served),
            status,
            message,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_formatted_one_way() {
        assert_eq!(brier(Some(0.15625)).text, "0.1562");
        assert_eq!(brier(Some(0.15625)).value, "0.15625");
        assert_eq!(brier(None).value, "");
        assert_eq!(share(Some(0.5)).text, "50.0%");
        assert_eq!(signed(Some(0.01)).text, "+0.0100");
        assert_eq!(probability(Some(1e300)).text, "1.000e300");
        assert_eq!(duration(1500).text, "1.50 s");
        assert_eq!(usd(0.125).text, "$0.1250");
    }

    #[test]
    fn logs_are_cut_on_a_character_boundary() {
        let (text, note) = truncated("ééé", 2);
        assert_eq!(text, "éé");
        assert!(note.is_some_and(|note| note.contains("2 of 3")));
        assert_eq!(truncated("ab", 2), ("ab".to_owned(), None));
    }
}
