//! Setting weights: where each weights computation goes once it is recorded.
//!
//! This module owns the [`WeightSetter`] trait (a chain client can implement it later) and the
//! implementation the daemon uses today, [`JsonFileWeights`], which writes the current weights
//! to a JSON file atomically (a reader never sees half a file). The weights history lives in
//! the store and the daemon's HTTP API serves it; this module must not compute weights (that is
//! [`crate::scoring`]) nor touch the store.

use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::scoring::LeaderboardRow;

/// One miner's weight.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MinerWeight {
    /// The miner's uid.
    pub uid: u16,
    /// The miner's hotkey.
    pub hotkey: String,
    /// Its share, in [0, 1]; the shares sum to 1 or (before any event resolved) to 0.
    pub weight: f64,
}

/// A weights computation, as set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Weights {
    /// When it was computed (the daemon's clock).
    pub computed_at: DateTime<Utc>,
    /// One entry per registered miner, by uid.
    pub weights: Vec<MinerWeight>,
}

impl Weights {
    /// The weights of a leaderboard computed at `computed_at`, by uid.
    #[must_use]
    pub fn from_leaderboard(computed_at: DateTime<Utc>, rows: &[LeaderboardRow]) -> Self {
        let mut weights: Vec<MinerWeight> = rows
            .iter()
            .map(|row| MinerWeight {
                uid: row.miner.uid,
                hotkey: row.miner.hotkey.clone(),
                weight: row.weight,
            })
            .collect();
        weights.sort_by_key(|weight| weight.uid);
        Self {
            computed_at,
            weights,
        }
    }
}

/// Why weights could not be set.
#[derive(Debug, Error)]
pub enum WeightsError {
    /// Writing the weights file failed.
    #[error("cannot write the weights file {}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Where weights go after each computation.
pub trait WeightSetter: Send + Sync + 'static {
    /// Publishes `weights`.
    ///
    /// # Errors
    ///
    /// [`WeightsError`] when they could not be published; the daemon logs it and publishes the
    /// next computation as usual (the weights history in the store is unaffected).
    fn set_weights(&self, weights: &Weights) -> Result<(), WeightsError>;
}

/// Writes the current weights to a JSON file, replacing it atomically.
#[derive(Debug, Clone)]
pub struct JsonFileWeights {
    path: PathBuf,
}

impl JsonFileWeights {
    /// Weights written to `path`.
    #[must_use]
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// The file written.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl WeightSetter for JsonFileWeights {
    fn set_weights(&self, weights: &Weights) -> Result<(), WeightsError> {
        let fail = |source| WeightsError::Write {
            path: self.path.clone(),
            source,
        };
        let directory = self
            .path
            .parent()
            .filter(|parent| !parent.as_os_str().is_empty())
            .unwrap_or_else(|| Path::new("."));
        // A temporary file in the same directory, renamed over the old one: the rename is atomic.
        let mut file = tempfile::NamedTempFile::new_in(directory).map_err(fail)?;
        let text = serde_json::to_vec_pretty(weights).map_err(|error| fail(error.into()))?;
        file.write_all(&text).map_err(fail)?;
        file.as_file().sync_all().map_err(fail)?;
        file.persist(&self.path)
            .map_err(|error| fail(error.error))?;
        Ok(())
    }
}

/// Sets weights nowhere (backtests and tests read them from the store).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoWeightSetter;

impl WeightSetter for NoWeightSetter {
    fn set_weights(&self, _weights: &Weights) -> Result<(), WeightsError> {
        Ok(())
    }
}
