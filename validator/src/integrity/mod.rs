//! The integrity statistics of the verification queue (SPEC, "Integrity checks"):
//! originality and concordance as pure functions of prediction vectors and what everyone can
//! see about the events. No storage, no HTTP: the queue loads the vectors, calls
//! [`check_originality`] and [`check_concordance`], and records the verdicts.
//!
//! # Originality
//!
//! SPEC's rule on raw predictions (|Pearson| > 0.95, then the KS statistic) stays available as
//! [`OriginalityMode::Raw`]; on the shared questions it rejects honest agents, because most
//! good agents follow the market price and correlate above 0.95 with it and with each other
//! (the labelled set in `tests/originality.rs` shows it flagging the market, its extremized
//! and shrunk versions and the private-signal agents as copies of one another).
//!
//! The default, [`OriginalityMode::BeyondPublic`], measures agreement *beyond* what the
//! public signals explain and judges it by its significance over the events compared:
//!
//! 1. Each version's predictions (clipped to [0.01, 0.99] as scoring clips them) are explained
//!    by the public signals ([`PublicSignals`]: the market, the benchmark agents'
//!    predictions; and the outcome where the event has resolved, passed to
//!    [`check_originality_resolved`]): a linear fit in probability
//!    and a weighted linear fit in log-odds over the market (linear, log-odds and a natural
//!    spline in log-odds), each benchmark (probability and log-odds) and the outcome; the
//!    better fit's residual, in probability, is what the version says of its own.
//! 2. A version whose residual's root mean square is below `public_tolerance` (0.005) is
//!    **public-signal only** and compared with no one (see below).
//! 3. Each residual is centred and scaled by its neighbours' mean and spread (the 6 events on
//!    either side in the order of the version's fitted value, same outcome), because residual
//!    spread varies with the event and two honest agents' spreads vary together.
//! 4. For a pair, the correlation `r` of these standardized residuals, each event weighted by
//!    `p (1 - p)` of the public consensus, gives `z = atanh(r) sqrt(n_eff - 3 - k n_eff / n)`:
//!    about standard normal for two independent agents, and growing like `sqrt(n)` for a
//!    copy, whatever noise it adds.
//! 5. A copy is `z >= threshold`, the normal quantile for a family-wise false-positive rate of
//!    1e-6 with a Bonferroni correction over 256 comparisons: `z >= 5.77`.
//!
//! Why these choices, from the labelled set (`tests/originality.rs`, on the shared real
//! questions): correlations of log-odds residuals fail because 62 % of these questions have a
//! market under 0.05 or over 0.95, where a copier's noise of 0.01 in probability is a large
//! move in log-odds; residuals in probability keep that noise small. A fixed correlation level
//! fails both ways (it depends on the number of events); the significance does not. Fits in
//! both spaces are needed because honest agents are built in both (a linear pool of the market
//! and an LLM is curved in log-odds, an extremized market is curved in probability), and a
//! curve left in two residuals makes them correlate. The outcome is among the regressors
//! because two agents that both forecast well agree for that reason. Without the local
//! standardization, the statistic's spread for two independent private-signal agents was up
//! to twice the standard normal's; with it, about 1.05.
//!
//! **Public-signal only, compared with no one** (rather than "a copy of the benchmark"): an
//! agent that adds nothing to the market and the benchmark agents takes nothing from another
//! miner; anything it outputs is open to everyone, and following the market is what most good
//! agents do. Flagging it would reject the honest market-follower, the most common honest
//! agent. It also cannot profit from copying: identical predictions tie, and ties go to the
//! earlier registration. For the same reason an earlier public-signal-only version is not
//! compared with later ones. A copier of a miner's *private* signal cannot hide here: its
//! residual is the victim's.
//!
//! A failed run leaves that event out of the version's comparisons (scoring imputes 0.5 for
//! it, but an imputed value says nothing about the agent, and counting it would let a copier
//! dilute the agreement by failing on purpose).
//!
//! # Concordance
//!
//! [`check_concordance`]: k-means (k = 5, fixed seed) over standardized event features, the
//! KS statistic between probe and live predictions per cluster with its p-value, the
//! clusters' p-values combined by Fisher's method and flagged below significance 0.001
//! (details and the reason for not averaging the statistics in the `concordance` module's
//! documentation).
//!
//! # Rooms
//!
//! `originality` (entry point and verdict), `config`, `signals` (the public signals and the
//! design built from them), `residuals` (fits and local standardization), `beyond_public` and
//! `raw_rule` (the two rules), `concordance`, and the hand-written statistics `pearson`,
//! `ks`, `kmeans` and `linalg`, each tested against independently computed references
//! (scipy, numpy, scikit-learn); `normal` wraps `statrs`.

mod beyond_public;
mod concordance;
mod config;
mod error;
mod kmeans;
mod ks;
mod linalg;
mod normal;
mod originality;
mod pearson;
mod raw_rule;
mod residuals;
mod signals;

pub use concordance::{
    ClusterConcordance, ConcordanceConfig, ConcordanceVerdict, EventFeatures, check_concordance,
};
pub use config::{OriginalityConfig, OriginalityMode};
pub use error::IntegrityError;
pub use kmeans::{Clustering, kmeans};
pub use ks::{kolmogorov_survival, ks_coefficient, ks_critical_value, ks_p_value, ks_statistic};
pub use normal::{chi_squared_upper_quantile, chi_squared_upper_tail, upper_quantile, upper_tail};
pub use originality::{OriginalityVerdict, check_originality, check_originality_resolved};
pub use pearson::{effective_size, fisher_z, pearson, weighted_pearson};
pub use signals::PublicSignals;
