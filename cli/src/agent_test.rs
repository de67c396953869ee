//! `sooth agent test`: run an agent on events in the validator's sandbox and
//! report each run and the Brier score, as the validator would count it.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use sooth_runner::{RunReport, RunSpec, RunnerConfig};

use crate::events::{self, SAMPLE_EVENTS, SAMPLE_ORIGIN, TestEvent};
use crate::gateway_choice::GatewayChoice;
use crate::runner_setup::{default_cache_dir, make_runner};
use crate::{TestArgs, outln};

/// Every prediction is clipped to this range before scoring.
const SCORING_CLIP: (f64, f64) = (0.01, 0.99);
/// What a failed run counts as.
const IMPUTED: f64 = 0.5;

/// An identifier of this invocation that no other takes: the start instant
/// in nanoseconds and the process id.
fn invocation_id() -> String {
    let nanos = chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default();
    format!("{nanos:x}-{:x}", std::process::id())
}

/// Run the agent on every event and print the report.
pub fn run(args: &TestArgs) -> anyhow::Result<()> {
    let config_timeout = RunnerConfig::default().timeout;
    let timeout = check_timeout(args.timeout, config_timeout)?;
    let (events, origin) = match &args.events {
        Some(path) => (events::read_file(path)?, path.display().to_string()),
        None => (
            events::parse(SAMPLE_EVENTS, SAMPLE_ORIGIN)?,
            SAMPLE_ORIGIN.to_owned(),
        ),
    };
    let bytes = std::fs::read(&args.agent)
        .with_context(|| format!("cannot read agent {}", args.agent.display()))?;
    let concurrency = args.concurrency.map_or_else(
        || std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
        |n| n as usize,
    );
    let cache_dir = args.cache_dir.clone().or_else(default_cache_dir);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let choice = GatewayChoice::from_args(args).await?;
        let gateway = choice.gateway.clone();
        let runner = make_runner(cache_dir)?;
        let agent = runner
            .load(&bytes)
            .await
            .with_context(|| format!("cannot load agent {}", args.agent.display()))?;
        if !args.json {
            outln(format_args!(
                "agent {} ({} bytes, sha256 {}) on {} events from {origin}",
                args.agent.display(),
                agent.size(),
                agent.hash(),
                events.len()
            ))?;
        }
        let progress = progress_bar(events.len(), args.json);
        // The gateway's ledger keys per-run caps by run id, and may be kept
        // across invocations in the same data directory: each invocation
        // names its runs afresh.
        let invocation = invocation_id();
        let mut runs = futures::stream::iter(events.iter().enumerate().map(|(index, event)| {
            let (runner, agent, progress) = (runner.clone(), agent.clone(), progress.clone());
            let run_id = format!("agent-test-{invocation}-{}", index + 1);
            let mut spec = RunSpec::new(run_id.clone(), gateway.clone());
            spec.timeout = timeout;
            spec.token = choice.token(
                &run_id,
                agent.hash(),
                event.event.created_at,
                timeout.unwrap_or(config_timeout).as_secs(),
            );
            let agent_event = event.event.clone();
            // A task per run: runs use every CPU, not only this one.
            tokio::spawn(async move {
                let report = runner.run(&agent, &agent_event, &spec).await;
                progress.inc(1);
                report
            })
        }))
        .buffered(concurrency);
        let mut summary = Summary::default();
        let widths = Widths::new(&events);
        if !args.json {
            progress.suspend(|| outln(widths.header()))?;
        }
        for event in &events {
            let joined = runs
                .next()
                .await
                .ok_or_else(|| anyhow!("a run went missing"))?;
            let report = joined
                .context("a run panicked")?
                .with_context(|| format!("cannot run event {}", event.event.id))?;
            let row = Row::new(event, report);
            progress.suspend(|| {
                if args.json {
                    outln(row.json())
                } else {
                    outln(widths.line(&row, args.logs))
                }
            })?;
            summary.add(&row);
        }
        progress.finish_and_clear();
        // The in-process gateway writes its last spending decisions to its
        // ledger as it stops; a later invocation on the same data directory
        // counts them.
        drop(runs);
        choice.stop().await;
        if args.json {
            outln(summary.json())
        } else {
            outln(summary.text())
        }
    })
}

/// The run limit: `--timeout` may only shorten the validator's.
fn check_timeout(requested: Option<f64>, limit: Duration) -> anyhow::Result<Option<Duration>> {
    let Some(secs) = requested else {
        return Ok(None);
    };
    if !secs.is_finite() || secs <= 0.0 {
        bail!("--timeout must be a positive number of seconds, got {secs}");
    }
    if secs > limit.as_secs_f64() {
        bail!(
            "--timeout {secs} is longer than the validator's {} s limit; it may only shorten it",
            limit.as_secs_f64()
        );
    }
    Ok(Some(Duration::from_secs_f64(secs)))
}

fn progress_bar(len: usize, json: bool) -> ProgressBar {
    if json || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len as u64);
    if let Ok(style) = ProgressStyle::with_template("{bar:40} {pos}/{len} runs, {elapsed}") {
        bar.set_style(style);
    }
    bar
}

/// One run, as reported.
struct Row {
    event_id: String,
    status: &'static str,
    prediction: Option<f64>,
    reasoning: Option<String>,
    reason: Option<String>,
    duration: Duration,
    gateway_calls: u64,
    cost_usd: f64,
    outcome: Option<u8>,
    logs: String,
    logs_dropped: u64,
}

impl Row {
    fn new(event: &TestEvent, report: RunReport) -> Self {
        let reasoning = match &report.outcome {
            sooth_runner::RunOutcome::Prediction { reasoning, .. } => reasoning.clone(),
            _ => None,
        };
        Self {
            event_id: event.event.id.clone(),
            status: report.outcome.status(),
            prediction: report.outcome.probability(),
            reasoning,
            reason: report.outcome.reason(),
            duration: report.duration,
            gateway_calls: report.gateway.call_count(),
            cost_usd: report.gateway.cost_usd(),
            outcome: event.outcome,
            logs: report.logs.text,
            logs_dropped: report.logs.dropped_bytes,
        }
    }

    /// The squared error the validator would score, when the outcome is known.
    fn brier(&self) -> Option<f64> {
        let outcome = f64::from(self.outcome?);
        let p = self
            .prediction
            .map_or(IMPUTED, |p| p.clamp(SCORING_CLIP.0, SCORING_CLIP.1));
        Some((p - outcome).powi(2))
    }

    fn json(&self) -> serde_json::Value {
        let mut row = json!({
            "event_id": self.event_id,
            "status": self.status,
            "prediction": self.prediction,
            "duration_ms": self.duration.as_secs_f64() * 1000.0,
            "reason": self.reason,
            "reasoning": self.reasoning,
            "gateway_calls": self.gateway_calls,
            "cost_usd": self.cost_usd,
        });
        if let (Some(outcome), Some(object)) = (self.outcome, row.as_object_mut()) {
            object.insert("outcome".into(), outcome.into());
        }
        row
    }
}

/// Column widths of the text report.
struct Widths {
    id: usize,
}

impl Widths {
    fn new(events: &[TestEvent]) -> Self {
        let id = events
            .iter()
            .map(|e| e.event.id.chars().count())
            .max()
            .unwrap_or(0)
            .clamp(5, 40);
        Self { id }
    }

    fn header(&self) -> String {
        format!(
            "{:<w$}  {:<15}  {:>10}  {:>10}  {:>5}  {:>10}",
            "EVENT",
            "STATUS",
            "PREDICTION",
            "DURATION",
            "CALLS",
            "COST",
            w = self.id
        )
    }

    fn line(&self, row: &Row, logs: bool) -> String {
        let prediction = row
            .prediction
            .map_or_else(|| "-".to_owned(), |p| format!("{p:.4}"));
        let mut text = format!(
            "{:<w$}  {:<15}  {:>10}  {:>10}  {:>5}  {:>10}",
            row.event_id,
            row.status,
            prediction,
            format_duration(row.duration),
            row.gateway_calls,
            format!("${:.6}", row.cost_usd),
            w = self.id
        );
        if let Some(reason) = &row.reason {
            text.push_str(&format!("\n    reason: {reason}"));
        }
        if logs && !row.logs.is_empty() {
            for line in row.logs.lines() {
                text.push_str(&format!("\n    | {line}"));
            }
            if row.logs_dropped > 0 {
                text.push_str(&format!(
                    "\n    | ({} more bytes dropped)",
                    row.logs_dropped
                ));
            }
        }
        text
    }
}

fn format_duration(duration: Duration) -> String {
    let ms = duration.as_secs_f64() * 1000.0;
    if ms < 10_000.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{:.1} s", ms / 1000.0)
    }
}

/// Totals over all runs.
#[derive(Default)]
struct Summary {
    runs: usize,
    ok: usize,
    failures: BTreeMap<&'static str, usize>,
    total_duration: Duration,
    gateway_calls: u64,
    cost_usd: f64,
    brier_sum: f64,
    scored: usize,
    imputed: usize,
}

impl Summary {
    fn add(&mut self, row: &Row) {
        self.runs += 1;
        if row.prediction.is_some() {
            self.ok += 1;
        } else {
            *self.failures.entry(row.status).or_default() += 1;
        }
        self.total_duration += row.duration;
        self.gateway_calls += row.gateway_calls;
        self.cost_usd += row.cost_usd;
        if let Some(brier) = row.brier() {
            self.brier_sum += brier;
            self.scored += 1;
            if row.prediction.is_none() {
                self.imputed += 1;
            }
        }
    }

    fn failed(&self) -> usize {
        self.runs - self.ok
    }

    fn mean_duration(&self) -> Duration {
        u32::try_from(self.runs)
            .ok()
            .filter(|n| *n > 0)
            .map_or(Duration::ZERO, |n| self.total_duration / n)
    }

    fn brier(&self) -> Option<f64> {
        (self.scored > 0).then(|| self.brier_sum / self.scored as f64)
    }

    fn json(&self) -> serde_json::Value {
        json!({
            "summary": true,
            "runs": self.runs,
            "ok": self.ok,
            "failed": self.failed(),
            "failures": self.failures,
            "mean_duration_ms": self.mean_duration().as_secs_f64() * 1000.0,
            "gateway_calls": self.gateway_calls,
            "cost_usd": self.cost_usd,
            "brier": self.brier(),
            "scored": self.scored,
            "imputed": self.imputed,
        })
    }

    fn text(&self) -> String {
        let mut text = format!(
            "\nruns: {}, ok: {}, failed: {}",
            self.runs,
            self.ok,
            self.failed()
        );
        if !self.failures.is_empty() {
            let parts: Vec<String> = self
                .failures
                .iter()
                .map(|(status, n)| format!("{status} {n}"))
                .collect();
            text.push_str(&format!(" ({})", parts.join(", ")));
        }
        text.push_str(&format!(
            "\nmean duration: {}",
            format_duration(self.mean_duration())
        ));
        text.push_str(&format!(
            "\ngateway: {} calls, ${:.6}",
            self.gateway_calls, self.cost_usd
        ));
        match self.brier() {
            Some(brier) => text.push_str(&format!(
                "\nmean Brier: {brier:.4} over {} events with outcomes ({} failed runs imputed {IMPUTED}; predictions clipped to [{}, {}])",
                self.scored, self.imputed, SCORING_CLIP.0, SCORING_CLIP.1
            )),
            None => text.push_str("\nmean Brier: n/a (no event has an outcome)"),
        }
        if self.failed() > 0 {
            text.push_str(&format!(
                "\nnote: {} of {} runs failed; a validator counts each as {IMPUTED}",
                self.failed(),
                self.runs
            ));
        }
        text
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn timeout_may_only_shorten_the_limit() {
        let limit = Duration::from_secs(240);
        assert_eq!(check_timeout(None, limit).unwrap(), None);
        assert_eq!(
            check_timeout(Some(1.5), limit).unwrap(),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(check_timeout(Some(240.0), limit).unwrap(), Some(limit));
        for bad in [0.0, -1.0, 240.5, 999.0, f64::NAN, f64::INFINITY] {
            assert!(
                check_timeout(Some(bad), limit).is_err(),
                "{bad} was accepted"
            );
        }
    }

    fn row(prediction: Option<f64>, outcome: Option<u8>) -> Row {
        Row {
            event_id: "e".into(),
            status: if prediction.is_some() {
                "ok"
            } else {
                "timeout"
            },
            prediction,
            reasoning: None,
            reason: None,
            duration: Duration::from_millis(10),
            gateway_calls: 1,
            cost_usd: 0.5,
            outcome,
            logs: String::new(),
            logs_dropped: 0,
        }
    }

    #[test]
    fn scores_as_the_validator_does() {
        let mut summary = Summary::default();
        summary.add(&row(Some(1.0), Some(1))); // clipped to 0.99: 0.0001
        summary.add(&row(None, Some(0))); // imputed 0.5: 0.25
        summary.add(&row(Some(0.3), None)); // no outcome: not scored
        assert_eq!(
            (
                summary.runs,
                summary.ok,
                summary.failed(),
                summary.scored,
                summary.imputed
            ),
            (3, 2, 1, 2, 1)
        );
        assert!((summary.brier().unwrap() - (0.0001 + 0.25) / 2.0).abs() < 1e-12);
        assert_eq!(summary.failures.get("timeout"), Some(&1));
        assert_eq!(summary.json()["gateway_calls"], 3);
        assert_eq!(
            row(None, None).json()["prediction"],
            serde_json::Value::Null
        );
        assert!(row(None, None).json().get("outcome").is_none());
        assert_eq!(row(Some(0.2), Some(1)).json()["outcome"], 1);
    }
}
