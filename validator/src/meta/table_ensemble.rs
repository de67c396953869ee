//! The rank-gauss ensemble of a [`Table`]'s model columns, era by era: what `sooth ensemble`
//! computes.

use std::collections::HashMap;

use super::{MetaError, ensemble_era};
use crate::tables::{Table, TableError};

/// Why a table could not be ensembled.
#[derive(Debug, thiserror::Error)]
pub enum TableEnsembleError {
    /// No model was named.
    #[error("no models to ensemble")]
    NoModels,
    /// The models and their weights are not as many as each other.
    #[error("{models} models but {weights} weights: give one weight per model")]
    WeightCount {
        /// How many models were named.
        models: usize,
        /// How many weights were given.
        weights: usize,
    },
    /// A weight is NaN or infinite.
    #[error("the weight of model `{model}` is {weight}, not a finite number")]
    NonFiniteWeight {
        /// The model.
        model: String,
        /// Its weight.
        weight: f64,
    },
    /// A column is missing, not numeric, or a row has no era.
    #[error(transparent)]
    Table(#[from] TableError),
    /// The statistics failed on an era (for example, neutralization columns linearly
    /// dependent over its rows).
    #[error("era `{era}`: {error}")]
    Era {
        /// The era.
        era: String,
        /// What went wrong.
        error: MetaError,
    },
}

/// The result of [`ensemble_table`].
#[derive(Debug, Clone, PartialEq)]
pub struct TableEnsemble {
    /// The ensemble, one value per row of the table, in its order; `None` where missing.
    pub values: Vec<Option<f64>>,
    /// The number of distinct eras.
    pub eras: usize,
}

impl TableEnsemble {
    /// The number of missing values.
    #[must_use]
    pub fn missing(&self) -> usize {
        self.values.iter().filter(|v| v.is_none()).count()
    }
}

/// The rank-gauss ensemble ([`ensemble_era`], `SPEC.md` "Benchmarks and the meta-model") of
/// the columns `models` of `table`, weighted by `weights` (one per model), era by era: rows
/// are grouped by their value in the column `era_column` (text, or numbers taken as text;
/// rows of an era need not be adjacent), and, when `neutralize_against` names columns, the
/// ensemble of each era is neutralized against them. Missing values stay missing.
///
/// # Errors
///
/// [`TableEnsembleError::NoModels`] when `models` is empty;
/// [`TableEnsembleError::WeightCount`] when `weights` is not as long as `models`;
/// [`TableEnsembleError::NonFiniteWeight`] for a NaN or infinite weight;
/// [`TableEnsembleError::Table`] when a named column does not exist
/// ([`TableError::UnknownColumn`]), a model or neutralization cell is not a number
/// ([`TableError::NotANumber`]) or a row has no era ([`TableError::Missing`]);
/// [`TableEnsembleError::Era`] when the statistics fail on an era.
pub fn ensemble_table(
    table: &Table,
    models: &[&str],
    weights: &[f64],
    era_column: &str,
    neutralize_against: &[&str],
) -> Result<TableEnsemble, TableEnsembleError> {
    if models.is_empty() {
        return Err(TableEnsembleError::NoModels);
    }
    if models.len() != weights.len() {
        return Err(TableEnsembleError::WeightCount {
            models: models.len(),
            weights: weights.len(),
        });
    }
    if let Some((model, &weight)) = models.iter().zip(weights).find(|(_, w)| !w.is_finite()) {
        return Err(TableEnsembleError::NonFiniteWeight {
            model: (*model).to_owned(),
            weight,
        });
    }
    let model_columns: Vec<Vec<Option<f64>>> = models
        .iter()
        .map(|m| table.numbers(m))
        .collect::<Result<_, _>>()?;
    let neutral_columns: Vec<Vec<Option<f64>>> = neutralize_against
        .iter()
        .map(|n| table.numbers(n))
        .collect::<Result<_, _>>()?;
    let eras = table.keys(era_column)?;

    // Rows of each era, eras in the order they first appear.
    let mut order: Vec<(&str, Vec<usize>)> = Vec::new();
    let mut index: HashMap<&str, usize> = HashMap::new();
    for (row, era) in eras.iter().enumerate() {
        let era = era.as_deref().ok_or_else(|| TableError::Missing {
            column: era_column.to_owned(),
            row: row + 1,
        })?;
        let slot = *index.entry(era).or_insert_with(|| {
            order.push((era, Vec::new()));
            order.len() - 1
        });
        order[slot].1.push(row);
    }

    let pick = |columns: &[Vec<Option<f64>>], rows: &[usize]| -> Vec<Vec<Option<f64>>> {
        columns
            .iter()
            .map(|c| rows.iter().map(|&i| c[i]).collect())
            .collect()
    };
    let mut values = vec![None; table.rows()];
    for (era, rows) in &order {
        let m = pick(&model_columns, rows);
        let n = pick(&neutral_columns, rows);
        let m: Vec<&[Option<f64>]> = m.iter().map(Vec::as_slice).collect();
        let n: Vec<&[Option<f64>]> = n.iter().map(Vec::as_slice).collect();
        let ensemble = ensemble_era(&m, weights, &n).map_err(|error| TableEnsembleError::Era {
            era: (*era).to_owned(),
            error,
        })?;
        for (&i, v) in rows.iter().zip(ensemble) {
            values[i] = v;
        }
    }
    Ok(TableEnsemble {
        values,
        eras: order.len(),
    })
}
