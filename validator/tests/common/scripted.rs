//! A scripted executor standing in for the sandbox, and a daemon on a simulated clock driven
//! through its public API.

use std::sync::{Arc, Mutex};

use serde_json::{Map, Value, json};
use sooth_validator::store::Store;
use sooth_validator::{
    Clock, Daemon, DaemonSettings, Event, ExecutedRun, Execution, Ingested, NoWeightSetter,
    Outcome, RegistrationRules, Resolution, RunExecutor, RunJob, RunStatus, SimulatedClock,
    WeightSetter,
};

use super::at;

/// What a scripted agent answers: a prediction, or a failure status.
#[derive(Debug, Clone, Copy)]
pub enum Answer {
    Says(f64),
    Fails(RunStatus),
}

/// Answers from each event's metadata: `{"answers": {"<hotkey>": 0.7 | "trap" ...}}`; a miner
/// not named says 0.5. Counts the executions per (event, hotkey, version).
#[derive(Default)]
pub struct ScriptedExecutor {
    executions: Mutex<Vec<(String, String, String)>>,
}

impl ScriptedExecutor {
    pub fn executions(&self) -> Vec<(String, String, String)> {
        self.executions.lock().unwrap().clone()
    }

    pub fn count(&self, event_id: &str, hotkey: &str) -> usize {
        self.executions()
            .iter()
            .filter(|(event, miner, _)| event == event_id && miner == hotkey)
            .count()
    }
}

impl RunExecutor for ScriptedExecutor {
    fn execute(self: Arc<Self>, job: RunJob) -> Execution {
        self.executions.lock().unwrap().push((
            job.event.event.id.clone(),
            job.hotkey.clone(),
            job.version_hash.clone(),
        ));
        let answers = job.event.event.metadata.get("answers");
        let answer = answers.and_then(|answers| answers.get(&job.hotkey)).map_or(
            Answer::Says(0.5),
            |value| match value {
                Value::Number(number) => Answer::Says(number.as_f64().unwrap()),
                Value::String(word) => Answer::Fails(RunStatus::parse(word).unwrap()),
                other => panic!("bad scripted answer {other}"),
            },
        );
        let run = match answer {
            Answer::Says(prediction) => ExecutedRun {
                status: RunStatus::Ok,
                prediction: Some(prediction),
                duration_ms: 3,
                logs: String::new(),
                gateway_usage: json!({}),
                cost_usd: 0.0,
            },
            Answer::Fails(status) => ExecutedRun {
                status,
                prediction: None,
                ..ExecutedRun::crash("scripted failure")
            },
        };
        Box::pin(async move { run })
    }
}

pub struct Harness {
    pub daemon: Daemon,
    pub clock: SimulatedClock,
    pub executor: Arc<ScriptedExecutor>,
}

pub async fn harness_with(
    start: &str,
    rules: RegistrationRules,
    weights: Arc<dyn WeightSetter>,
) -> Harness {
    let clock = SimulatedClock::new(at(start));
    let executor = Arc::new(ScriptedExecutor::default());
    let daemon = Daemon::new(
        Store::in_memory().await.unwrap(),
        Arc::new(clock.clone()),
        executor.clone(),
        weights,
        DaemonSettings {
            max_concurrent_runs: 4,
            registration: rules,
            ..DaemonSettings::default()
        },
    )
    .unwrap();
    Harness {
        daemon,
        clock,
        executor,
    }
}

pub async fn harness(start: &str) -> Harness {
    harness_with(
        start,
        RegistrationRules::default(),
        Arc::new(NoWeightSetter),
    )
    .await
}

impl Harness {
    pub async fn advance(&self, to: &str) {
        self.clock.advance_to(at(to)).unwrap();
        self.daemon.step().await.unwrap();
    }

    /// Registers `hotkey` now with version `hash`.
    pub async fn miner(&self, hotkey: &str, hash: &str) {
        self.daemon.register_miner(hotkey).await.unwrap();
        self.daemon
            .add_verified_version(hotkey, hash)
            .await
            .unwrap();
    }

    /// An event created now, with scripted answers.
    pub async fn event(&self, id: &str, answers: Value) {
        let mut event = Event::new(id, format!("Question {id}?"), self.clock.now());
        let mut metadata = Map::new();
        metadata.insert("answers".to_owned(), answers);
        event.metadata = metadata;
        assert_eq!(
            self.daemon.ingest_event(&event).await.unwrap(),
            Ingested::New
        );
        self.daemon.step().await.unwrap();
    }

    /// Resolves `id` now and scores.
    pub async fn resolve(&self, id: &str, outcome: Outcome) {
        self.daemon
            .ingest_resolution(&Resolution {
                event_id: id.to_owned(),
                outcome,
                resolved_at: self.clock.now(),
            })
            .await
            .unwrap();
        self.daemon.step().await.unwrap();
    }

    pub async fn mean(&self, hotkey: &str) -> f64 {
        let standings = self.daemon.standings(self.clock.now()).await.unwrap();
        standings
            .iter()
            .find(|row| row.miner.hotkey == hotkey)
            .and_then(|row| row.mean_brier)
            .unwrap_or_else(|| panic!("{hotkey} has no mean"))
    }

    pub async fn winner(&self) -> String {
        let weights = self.daemon.store().latest_weights().await.unwrap();
        let winners: Vec<_> = weights.iter().filter(|row| row.weight == 1.0).collect();
        assert_eq!(winners.len(), 1, "{weights:?}");
        winners[0].hotkey.clone()
    }
}
