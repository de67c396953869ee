//! Rank-gauss: ranks mapped to standard normal quantiles.

use statrs::distribution::{ContinuousCDF, Normal};

use super::rank::rank_average;

/// The inverse of the standard normal CDF.
fn probit(p: f64) -> f64 {
    // Normal::standard() cannot fail; inverse_cdf is finite for p strictly inside (0, 1),
    // which (rank - 0.5) / count always is.
    Normal::standard().inverse_cdf(p)
}

/// `Phi^-1((rank - 0.5) / count)` of each present value, `rank` from [`rank_average`] (ties
/// averaged) and `count` the number of present values; missing values (`None` or NaN) stay
/// missing.
///
/// Without ties the result is symmetric about zero (its present values sum to zero up to
/// rounding); averaged ties can move its mean slightly.
#[must_use]
pub fn rank_gauss(values: &[Option<f64>]) -> Vec<Option<f64>> {
    let ranks = rank_average(values);
    let count = ranks.iter().flatten().count() as f64;
    ranks
        .into_iter()
        .map(|r| r.map(|r| probit((r - 0.5) / count)))
        .collect()
}

/// [`rank_gauss`] divided by the standard deviation of its present values (the population
/// standard deviation, `numpy.std` with `ddof=0`), so that they have unit variance. Missing
/// values stay missing.
///
/// When every present value is tied (or only one is present) the transformed values are all
/// zero and have no spread: they are returned as zeros.
#[must_use]
pub fn gaussianize(values: &[Option<f64>]) -> Vec<Option<f64>> {
    let mut g = rank_gauss(values);
    let (n, sum, sum_sq) = g
        .iter()
        .flatten()
        .fold((0.0, 0.0, 0.0), |(n, s, q), x| (n + 1.0, s + x, q + x * x));
    if n == 0.0 {
        return g;
    }
    let mean = sum / n;
    let sd = (sum_sq / n - mean * mean).max(0.0).sqrt();
    if sd > 0.0 {
        for x in g.iter_mut().flatten() {
            *x /= sd;
        }
    }
    g
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_close(got: &[Option<f64>], expected: &[Option<f64>], tol: f64) {
        assert_eq!(got.len(), expected.len());
        for (i, (g, e)) in got.iter().zip(expected).enumerate() {
            match (g, e) {
                (Some(g), Some(e)) => assert!((g - e).abs() < tol, "row {i}: {g} vs {e}"),
                (None, None) => {}
                _ => panic!("row {i}: {g:?} vs {e:?}"),
            }
        }
    }

    const X: [Option<f64>; 9] = [
        Some(0.3),
        None,
        Some(0.1),
        Some(0.3),
        Some(0.7),
        Some(0.2),
        Some(0.1),
        Some(0.3),
        Some(0.9),
    ];

    // Computed by the script in the comments of the two tests below.
    const RANK_GAUSS: [Option<f64>; 9] = [
        Some(0.1573106846101707),
        None,
        Some(-1.1503493803760079),
        Some(0.1573106846101707),
        Some(0.887146559018876),
        Some(-0.4887764111146695),
        Some(-1.1503493803760079),
        Some(0.1573106846101707),
        Some(1.5341205443525463),
    ];
    const GAUSSIANIZED: [Option<f64>; 9] = [
        Some(0.18016703469933698),
        None,
        Some(-1.3174886196964986),
        Some(0.18016703469933698),
        Some(1.016043921480826),
        Some(-0.5597928509416745),
        Some(-1.3174886196964986),
        Some(0.18016703469933698),
        Some(1.7570195567597247),
    ];

    #[test]
    fn rank_gauss_matches_scipy() {
        // Expected: with v the 8 present values,
        // scipy.stats.norm.ppf((scipy.stats.rankdata(v, method="average") - 0.5) / 8).
        let expected = RANK_GAUSS;
        assert_close(&rank_gauss(&X), &expected, 1e-12);
    }

    #[test]
    fn gaussianize_matches_numpy() {
        // Expected: g = the rank_gauss values above; g / numpy.std(g) (ddof=0).
        let expected = GAUSSIANIZED;
        assert_close(&gaussianize(&X), &expected, 1e-12);
    }

    #[test]
    fn one_value_or_all_tied_are_zeros() {
        assert_eq!(gaussianize(&[Some(3.0)]), vec![Some(0.0)]);
        assert_eq!(
            gaussianize(&[Some(1.0), None, Some(1.0)]),
            vec![Some(0.0), None, Some(0.0)]
        );
        assert_eq!(gaussianize(&[None]), vec![None]);
    }
}
