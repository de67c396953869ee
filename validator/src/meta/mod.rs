//! The benchmark models' statistics (`SPEC.md`, "Benchmarks and the meta-model"): the
//! rank-gauss ensemble and contribution to the meta-model (MMC), as pure functions over one
//! era (a day) of predictions.
//!
//! Its rooms:
//!
//! - `rank`: ranks with ties averaged, missing values kept missing ([`rank_average`]);
//! - `gauss`: `r = (rank - 0.5) / count` through the inverse normal CDF ([`rank_gauss`]),
//!   and scaled to unit standard deviation ([`gaussianize`]);
//! - `lstsq`: least squares by the normal equations and Cholesky, for neutralization;
//! - `ensemble`: the weighted rank-gauss ensemble of several models, optionally neutralized
//!   against chosen columns ([`ensemble_era`], [`ensemble_by_era`], [`neutralize`]);
//! - `mmc`: a prediction's contribution beyond the meta-model ([`mmc_era`], [`mmc`],
//!   [`MetaEra`]);
//! - `pools`: the meta-model, per event a pool of the miners' forecasts ([`Pool`]);
//! - `contribution`: each miner's MMC over a scoring window, its eras the days of
//!   resolution ([`contributions`]).

mod contribution;
mod ensemble;
mod gauss;
mod lstsq;
mod mmc;
mod pools;
mod rank;
mod table_ensemble;

pub use contribution::contributions;
pub use ensemble::{ensemble_by_era, ensemble_era, neutralize};
pub use gauss::{gaussianize, rank_gauss};
pub use mmc::{MetaEra, MmcEra, mmc, mmc_era};
pub use pools::Pool;
pub use rank::rank_average;
pub use table_ensemble::{TableEnsemble, TableEnsembleError, ensemble_table};

/// Why a statistic could not be computed from its input.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MetaError {
    /// Two inputs that must be as long as each other are not.
    #[error("{what}: expected {expected} values, found {found}")]
    LengthMismatch {
        /// Which input is the wrong length.
        what: &'static str,
        /// The length it must have.
        expected: usize,
        /// The length it has.
        found: usize,
    },
    /// An era has no rows (or no rows with every value present), or no eras were given.
    #[error("empty era: {0}")]
    Empty(&'static str),
    /// An ensemble was asked of no models.
    #[error("no models to ensemble")]
    NoModels,
    /// A value that must be a finite number is not (NaN or infinite).
    #[error("{0} holds a value that is not a finite number")]
    NonFinite(&'static str),
    /// The neutralization columns are linearly dependent (or fewer rows than columns) over
    /// the rows where they are all present, so their least-squares fit is not unique.
    #[error("the neutralization columns are linearly dependent over the era's rows")]
    Singular,
}
