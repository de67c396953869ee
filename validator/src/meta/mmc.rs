//! Contribution to the meta-model (MMC): how much of a prediction's covariance with the
//! outcome is not already in the meta-model.

use super::MetaError;
use super::gauss::rank_gauss;
use crate::linalg::dot;

/// One era's meta-model and outcomes, transformed once (`m = Phi^-1(rank(meta))`, `t =
/// outcome - mean(outcome)`) so that many miners' predictions can be scored against them.
#[derive(Debug, Clone, PartialEq)]
pub struct MetaEra {
    /// The meta-model, rank-gaussed.
    m: Vec<f64>,
    /// `m . m`.
    mm: f64,
    /// The outcomes, centred.
    t: Vec<f64>,
}

impl MetaEra {
    /// Prepares an era from the meta-model's prediction and the outcome of each of its
    /// events (row `i` of both is the same event).
    ///
    /// # Errors
    ///
    /// [`MetaError::LengthMismatch`] when `outcomes` is not as long as `meta`;
    /// [`MetaError::Empty`] when there are no events; [`MetaError::NonFinite`] when a value
    /// is NaN or infinite.
    pub fn new(meta: &[f64], outcomes: &[f64]) -> Result<Self, MetaError> {
        if outcomes.len() != meta.len() {
            return Err(MetaError::LengthMismatch {
                what: "outcomes",
                expected: meta.len(),
                found: outcomes.len(),
            });
        }
        if meta.is_empty() {
            return Err(MetaError::Empty("the era has no events"));
        }
        let m = gaussed(meta, "the meta-model")?;
        if outcomes.iter().any(|x| !x.is_finite()) {
            return Err(MetaError::NonFinite("the outcomes"));
        }
        let mean = outcomes.iter().sum::<f64>() / outcomes.len() as f64;
        let t = outcomes.iter().map(|y| y - mean).collect();
        let mm = dot(&m, &m);
        Ok(Self { m, mm, t })
    }

    /// How many events the era has.
    #[must_use]
    pub fn len(&self) -> usize {
        self.t.len()
    }

    /// Whether the era has no events (never true of a constructed era).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.t.is_empty()
    }

    /// The MMC of `predictions` (one per event, in the era's order) in this era:
    /// `p = Phi^-1(rank(predictions))` (ranks with ties averaged, `(rank - 0.5) / N`),
    /// `p_perp = p - m (p.m)/(m.m)`, `MMC = t.p_perp / N`.
    ///
    /// When the meta-model is constant over the era (`m` is all zeros) there is nothing to
    /// project out and `p_perp = p`.
    ///
    /// # Errors
    ///
    /// [`MetaError::LengthMismatch`] when `predictions` is not one per event;
    /// [`MetaError::NonFinite`] when a prediction is NaN or infinite.
    pub fn contribution(&self, predictions: &[f64]) -> Result<f64, MetaError> {
        if predictions.len() != self.len() {
            return Err(MetaError::LengthMismatch {
                what: "predictions",
                expected: self.len(),
                found: predictions.len(),
            });
        }
        let p = gaussed(predictions, "the predictions")?;
        let beta = if self.mm > 0.0 {
            dot(&p, &self.m) / self.mm
        } else {
            0.0
        };
        let covariance: f64 = p
            .iter()
            .zip(&self.m)
            .zip(&self.t)
            .map(|((p, m), t)| t * (p - m * beta))
            .sum();
        Ok(covariance / self.len() as f64)
    }
}

/// `Phi^-1((rank - 0.5) / N)` of finite values.
fn gaussed(values: &[f64], what: &'static str) -> Result<Vec<f64>, MetaError> {
    if values.iter().any(|x| !x.is_finite()) {
        return Err(MetaError::NonFinite(what));
    }
    let wrapped: Vec<Option<f64>> = values.iter().copied().map(Some).collect();
    Ok(rank_gauss(&wrapped).into_iter().flatten().collect())
}

/// One era of a miner's MMC: its predictions, the meta-model's and the outcomes, one per
/// event and in the same order.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MmcEra<'a> {
    /// The miner's predictions.
    pub predictions: &'a [f64],
    /// The meta-model's predictions.
    pub meta: &'a [f64],
    /// The events' outcomes (1 or 0 for binary events).
    pub outcomes: &'a [f64],
}

/// The MMC of `predictions` against `meta` in one era ([`MetaEra::contribution`]).
///
/// # Errors
///
/// As [`MetaEra::new`] and [`MetaEra::contribution`]: mismatched lengths, an empty era, a
/// value that is not finite.
pub fn mmc_era(predictions: &[f64], meta: &[f64], outcomes: &[f64]) -> Result<f64, MetaError> {
    MetaEra::new(meta, outcomes)?.contribution(predictions)
}

/// A miner's MMC: the mean of its per-era MMC ([`mmc_era`]) over `eras`, each era weighing
/// the same whatever its number of events.
///
/// # Errors
///
/// [`MetaError::Empty`] when there are no eras; otherwise the first error of [`mmc_era`].
pub fn mmc(eras: &[MmcEra<'_>]) -> Result<f64, MetaError> {
    if eras.is_empty() {
        return Err(MetaError::Empty("no eras"));
    }
    let mut sum = 0.0;
    for era in eras {
        sum += mmc_era(era.predictions, era.meta, era.outcomes)?;
    }
    Ok(sum / eras.len() as f64)
}

#[cfg(test)]
mod tests {
    use rand::RngExt;
    use rand_chacha::ChaCha8Rng;
    use rand_chacha::rand_core::SeedableRng;

    use super::*;

    const P1: [f64; 10] = [0.62, 0.35, 0.80, 0.41, 0.55, 0.20, 0.70, 0.55, 0.33, 0.90];
    const M1: [f64; 10] = [0.58, 0.40, 0.66, 0.50, 0.47, 0.31, 0.52, 0.60, 0.45, 0.72];
    const Y1: [f64; 10] = [1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 1.0, 0.0, 1.0];
    const P2: [f64; 6] = [0.10, 0.45, 0.45, 0.80, 0.65, 0.30];
    const M2: [f64; 6] = [0.25, 0.50, 0.40, 0.55, 0.70, 0.35];
    const Y2: [f64; 6] = [0.0, 1.0, 0.0, 1.0, 0.0, 1.0];

    // Expected values computed independently in numpy/scipy (scipy 1.17, numpy 2.4):
    //   rg(x) = scipy.stats.norm.ppf((scipy.stats.rankdata(x, method="average") - 0.5) / len(x))
    //   p, m = rg(pred), rg(meta); pp = p - m * (p @ m) / (m @ m)
    //   t = y - y.mean(); mmc = t @ pp / len(t)
    // for era 1 (P1, M1, Y1) and era 2 (P2, M2, Y2), and the mean of the two.
    const MMC1: f64 = 0.05100729563525509;
    const MMC2: f64 = 0.08730618949060769;
    const MMC_MEAN: f64 = 0.06915674256293139;

    #[test]
    fn mmc_matches_numpy_reference() {
        let a = mmc_era(&P1, &M1, &Y1).expect("era 1");
        let b = mmc_era(&P2, &M2, &Y2).expect("era 2");
        assert!((a - MMC1).abs() < 1e-12, "{a}");
        assert!((b - MMC2).abs() < 1e-12, "{b}");
        let eras = [
            MmcEra {
                predictions: &P1,
                meta: &M1,
                outcomes: &Y1,
            },
            MmcEra {
                predictions: &P2,
                meta: &M2,
                outcomes: &Y2,
            },
        ];
        let mean = mmc(&eras).expect("mean");
        assert!((mean - MMC_MEAN).abs() < 1e-12, "{mean}");
    }

    #[test]
    fn bad_input_is_an_error() {
        assert_eq!(mmc(&[]), Err(MetaError::Empty("no eras")));
        assert_eq!(
            mmc_era(&[], &[], &[]),
            Err(MetaError::Empty("the era has no events"))
        );
        assert_eq!(
            mmc_era(&P1, &M1, &Y2),
            Err(MetaError::LengthMismatch {
                what: "outcomes",
                expected: 10,
                found: 6
            })
        );
        assert_eq!(
            mmc_era(&P2, &M1, &Y1),
            Err(MetaError::LengthMismatch {
                what: "predictions",
                expected: 10,
                found: 6
            })
        );
        let mut bad = P1;
        bad[3] = f64::NAN;
        assert_eq!(
            mmc_era(&bad, &M1, &Y1),
            Err(MetaError::NonFinite("the predictions"))
        );
        assert_eq!(
            mmc_era(&P1, &bad, &Y1),
            Err(MetaError::NonFinite("the meta-model"))
        );
        assert_eq!(
            mmc_era(&P1, &M1, &bad),
            Err(MetaError::NonFinite("the outcomes"))
        );
        // A constant meta-model: nothing to project out, finite MMC.
        assert!(
            mmc_era(&P1, &[0.5; 10], &Y1)
                .expect("constant meta")
                .is_finite()
        );
    }

    fn normal(rng: &mut ChaCha8Rng) -> f64 {
        let u: f64 = 1.0 - rng.random::<f64>();
        let v: f64 = rng.random();
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }

    fn logistic(x: f64) -> f64 {
        1.0 / (1.0 + (-x).exp())
    }

    /// A seeded world: each event's log-odds is `a + b`; the crowd (and so the meta-model, a
    /// linear pool of 8 miners) sees `a` through noise; the informed agent sees `a` and `b`
    /// through noise; the uninformed agent sees only `a` through noise, like the crowd.
    #[test]
    fn a_copy_earns_zero_and_private_information_earns_more() {
        let mut rng = ChaCha8Rng::seed_from_u64(12);
        let (mut copy, mut informed, mut uninformed) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..60 {
            let n = 100;
            let mut meta = vec![0.0; n];
            let (mut inf, mut uninf, mut outcomes) = (vec![0.0; n], vec![0.0; n], vec![0.0; n]);
            for i in 0..n {
                let a = normal(&mut rng);
                let b = normal(&mut rng);
                outcomes[i] = f64::from(u8::from(rng.random::<f64>() < logistic(a + b)));
                meta[i] = (0..8)
                    .map(|_| logistic(a + 0.5 * normal(&mut rng)))
                    .sum::<f64>()
                    / 8.0;
                inf[i] = logistic(a + b + 0.5 * normal(&mut rng));
                uninf[i] = logistic(a + 0.5 * normal(&mut rng));
            }
            let era = MetaEra::new(&meta, &outcomes).expect("era");
            copy.push(era.contribution(&meta).expect("copy"));
            informed.push(era.contribution(&inf).expect("informed"));
            uninformed.push(era.contribution(&uninf).expect("uninformed"));
        }
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        assert!(copy.iter().all(|c| c.abs() < 1e-12), "{copy:?}");
        let (i, u) = (mean(&informed), mean(&uninformed));
        assert!(i > u + 0.02, "informed {i} vs uninformed {u}");
        assert!(i > 0.02, "informed {i}");
        assert!(u.abs() < 0.02, "uninformed {u}");
    }
}
