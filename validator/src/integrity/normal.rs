//! The standard normal and chi-squared distributions' tails and quantiles (from `statrs`),
//! for thresholds and p-values.

use statrs::distribution::{ChiSquared, ContinuousCDF, Normal};

/// `P(Z > z)` for a standard normal `Z`.
#[must_use]
pub fn upper_tail(z: f64) -> f64 {
    standard().sf(z)
}

/// The `z` with `P(Z > z) = alpha` for a standard normal `Z` (`alpha` in (0, 1)).
#[must_use]
pub fn upper_quantile(alpha: f64) -> f64 {
    standard().inverse_cdf(1.0 - alpha)
}

/// `P(X > x)` for a chi-squared `X` with `degrees` degrees of freedom (`degrees >= 1`).
#[must_use]
pub fn chi_squared_upper_tail(x: f64, degrees: u32) -> f64 {
    ChiSquared::new(f64::from(degrees.max(1))).map_or(f64::NAN, |d| d.sf(x))
}

/// The `x` with `P(X > x) = alpha` for a chi-squared `X` with `degrees` degrees of freedom.
#[must_use]
pub fn chi_squared_upper_quantile(alpha: f64, degrees: u32) -> f64 {
    ChiSquared::new(f64::from(degrees.max(1))).map_or(f64::NAN, |d| d.inverse_cdf(1.0 - alpha))
}

fn standard() -> Normal {
    Normal::standard()
}

#[cfg(test)]
mod tests {
    use super::*;

    // Reference values: scipy.stats.norm.isf(1e-6 / 256) and scipy.stats.norm.sf(5.0).
    #[test]
    fn quantile_and_tail_match_scipy() {
        let z = upper_quantile(1e-6 / 256.0);
        assert!((z - 5.772_454_595_669_131_5).abs() < 1e-6, "{z}");
        let p = upper_tail(5.0);
        assert!((p / 2.866_515_718_791_933e-7 - 1.0).abs() < 1e-9, "{p}");
    }

    // Reference values: scipy.stats.chi2.isf(0.001, 10) and scipy.stats.chi2.sf(8.4, 10).
    #[test]
    fn chi_squared_matches_scipy() {
        let x = chi_squared_upper_quantile(0.001, 10);
        assert!((x - 29.588_298_445_074_42).abs() < 1e-6, "{x}");
        let p = chi_squared_upper_tail(8.4, 10);
        assert!((p - 0.589_827_021_310_577_5).abs() < 1e-9, "{p}");
    }
}
