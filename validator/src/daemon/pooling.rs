//! The daemon's meta-model step: once a pass has recorded every owed run, the pools of the
//! miners' forecasts on each event it has seen to, weighted equally and by the current weights,
//! recorded as the meta-model's reference forecasts.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::{Daemon, DaemonError, RECORD_BATCH, StepState};
use crate::executor::{ExecutedRun, RunStatus};
use crate::meta::Pool;
use crate::store::{EventsSeen, NewReferenceForecast, StoreError};

impl Daemon {
    /// Records the meta-model's pools of every event created by `now` that has none yet; runs
    /// only after every owed run was recorded, so an event's pools are over all of its runs.
    /// Returns how many events were pooled.
    pub(super) async fn pool_events(
        &self,
        now: DateTime<Utc>,
        seen: EventsSeen,
        state: &mut StepState,
    ) -> Result<usize, DaemonError> {
        if !state.pools_recorded {
            let names = Pool::ALL.map(Pool::name);
            self.store.ensure_meta_entries(&names).await?;
            state.pools_recorded = true;
        }
        let inputs = self
            .store
            .events_to_pool(now, Pool::ALL[0].name(), seen)
            .await?;
        if inputs.events.is_empty() {
            return Ok(0);
        }
        let weights: HashMap<String, f64> = self
            .store
            .latest_weights()
            .await?
            .into_iter()
            .map(|row| (row.hotkey, row.weight))
            .collect();
        let miner_weights: Vec<f64> = inputs
            .hotkeys
            .iter()
            .map(|hotkey| weights.get(hotkey).copied().unwrap_or(0.0))
            .collect();
        let mut forecasts = Vec::with_capacity(inputs.events.len() * Pool::ALL.len());
        for input in &inputs.events {
            let weighted: Vec<(f64, f64)> = input
                .forecasts
                .iter()
                .map(|&(miner, value)| {
                    let weight = miner_weights.get(miner as usize).copied().unwrap_or(0.0);
                    (value, weight)
                })
                .collect();
            for pool in Pool::ALL {
                let pooled = pool.of(&weighted).map_err(|error| {
                    StoreError::Corrupt(format!(
                        "the forecasts on event {:?} cannot be pooled: {error}",
                        input.event_id
                    ))
                })?;
                forecasts.push(NewReferenceForecast {
                    event_id: input.event_id.clone(),
                    entry: pool.name().to_owned(),
                    executed: pooled.map(pooled_forecast),
                    finished_at: now,
                });
            }
        }
        for batch in forecasts.chunks(RECORD_BATCH * Pool::ALL.len()) {
            self.store.record_reference_forecasts(batch).await?;
        }
        Ok(inputs.events.len())
    }
}

/// A pool's forecast, recorded as a run of no duration that answered `probability`.
fn pooled_forecast(probability: f64) -> ExecutedRun {
    ExecutedRun {
        status: RunStatus::Ok,
        prediction: Some(probability),
        duration_ms: 0,
        logs: String::new(),
        gateway_usage: serde_json::Value::Object(serde_json::Map::new()),
        cost_usd: 0.0,
    }
}
