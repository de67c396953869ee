//! The two-sample Kolmogorov-Smirnov statistic and its critical value.

/// The two-sample Kolmogorov-Smirnov statistic `D`: the largest distance between the two
/// empirical distribution functions (ties handled as `scipy.stats.ks_2samp` does).
///
/// `None` when either sample is empty or holds a non-finite value.
#[must_use]
pub fn ks_statistic(x: &[f64], y: &[f64]) -> Option<f64> {
    if x.is_empty() || y.is_empty() || x.iter().chain(y).any(|v| !v.is_finite()) {
        return None;
    }
    let mut a = x.to_vec();
    let mut b = y.to_vec();
    a.sort_by(f64::total_cmp);
    b.sort_by(f64::total_cmp);
    Some(ks_sorted(&a, &b))
}

/// [`ks_statistic`] of two samples already sorted ascending, both non-empty and finite.
#[must_use]
pub(crate) fn ks_sorted(a: &[f64], b: &[f64]) -> f64 {
    let (n, m) = (a.len() as f64, b.len() as f64);
    let (mut i, mut j) = (0, 0);
    let mut d: f64 = 0.0;
    while i < a.len() && j < b.len() {
        let value = a[i].min(b[j]);
        while i < a.len() && a[i] <= value {
            i += 1;
        }
        while j < b.len() && b[j] <= value {
            j += 1;
        }
        d = d.max((i as f64 / n - j as f64 / m).abs());
    }
    // Once one sample is exhausted its distribution function is 1; the other's only rises
    // towards 1, so the distance can only shrink from here.
    d
}

/// The asymptotic coefficient `c(alpha) = sqrt(-ln(alpha / 2) / 2)` of the two-sample
/// Kolmogorov-Smirnov test at significance `alpha` (the Kolmogorov distribution's upper
/// quantile to about eight digits when `alpha` is small).
#[must_use]
pub fn ks_coefficient(alpha: f64) -> f64 {
    (-(alpha / 2.0).ln() / 2.0).sqrt()
}

/// The critical value of `D` for samples of sizes `n` and `m` at significance `alpha`:
/// `c(alpha) * sqrt((n + m) / (n * m))`. `None` when a sample is empty.
#[must_use]
pub fn ks_critical_value(n: usize, m: usize, alpha: f64) -> Option<f64> {
    if n == 0 || m == 0 {
        return None;
    }
    let (n, m) = (n as f64, m as f64);
    Some(ks_coefficient(alpha) * ((n + m) / (n * m)).sqrt())
}

/// The Kolmogorov distribution's survival function `P(K > x)` and its logarithm (which stays
/// finite where the probability underflows).
#[must_use]
pub fn kolmogorov_survival(x: f64) -> (f64, f64) {
    if x <= 0.0 {
        return (1.0, 0.0);
    }
    if x < 1.18 {
        // P(K <= x) = sqrt(2 pi) / x * sum exp(-(2k - 1)^2 pi^2 / (8 x^2)): fast for small x.
        let t = -std::f64::consts::PI * std::f64::consts::PI / (8.0 * x * x);
        let cdf: f64 = (1..=20)
            .map(|k: i32| (f64::from((2 * k - 1) * (2 * k - 1)) * t).exp())
            .sum::<f64>()
            * (2.0 * std::f64::consts::PI).sqrt()
            / x;
        let sf = (1.0 - cdf).max(0.0);
        return (sf, sf.ln());
    }
    if x > 6.0 {
        // The series' first term; the second is exp(-6 x^2) times smaller.
        let ln = std::f64::consts::LN_2 - 2.0 * x * x;
        return (ln.exp(), ln);
    }
    // P(K > x) = 2 sum (-1)^(k - 1) exp(-2 k^2 x^2).
    let sf: f64 = (1..=20)
        .map(|k: i32| {
            let sign = if k % 2 == 1 { 1.0 } else { -1.0 };
            sign * (-2.0 * f64::from(k * k) * x * x).exp()
        })
        .sum::<f64>()
        * 2.0;
    (sf, sf.ln())
}

/// The p-value of a two-sample KS statistic `d` for sizes `n` and `m` and its logarithm,
/// from the Kolmogorov distribution at `(sqrt(e) + 0.12 + 0.11 / sqrt(e)) d` with
/// `e = n m / (n + m)` (Stephens' small-sample correction, as in Numerical Recipes'
/// `kstwo`). `None` when a sample is empty.
#[must_use]
pub fn ks_p_value(d: f64, n: usize, m: usize) -> Option<(f64, f64)> {
    if n == 0 || m == 0 {
        return None;
    }
    let (n, m) = (n as f64, m as f64);
    let root = (n * m / (n + m)).sqrt();
    Some(kolmogorov_survival((root + 0.12 + 0.11 / root) * d))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Reference values computed with scipy 1.17:
    //   scipy.stats.ks_2samp(x, y).statistic for the samples below;
    //   scipy.special.kolmogi(alpha) for the coefficient;
    //   math.sqrt(-math.log(0.001 / 2) / 2) * math.sqrt((10 + 7) / (10 * 7)).

    #[test]
    fn statistic_matches_scipy_with_ties() {
        let x = [0.1, 0.4, 0.4, 0.35, 0.8, 0.2, 0.95, 0.5, 0.5, 0.05];
        let y = [0.3, 0.4, 0.6, 0.7, 0.25, 0.9, 0.65];
        let d = ks_statistic(&x, &y).unwrap();
        assert!((d - 0.371_428_571_428_571_44).abs() < 1e-12, "{d}");
        let d = ks_statistic(&[0.5; 6], &[0.01, 0.2, 0.5, 0.99]).unwrap();
        assert!((d - 0.5).abs() < 1e-12, "{d}");
    }

    #[test]
    fn identical_samples_have_no_distance_and_disjoint_ones_the_most() {
        assert_eq!(ks_statistic(&[0.2, 0.4], &[0.4, 0.2]), Some(0.0));
        assert_eq!(ks_statistic(&[0.1, 0.2], &[0.8, 0.9, 0.7]), Some(1.0));
        assert_eq!(ks_statistic(&[], &[0.5]), None);
        assert_eq!(ks_statistic(&[f64::NAN], &[0.5]), None);
    }

    #[test]
    fn coefficient_and_critical_value_match_the_kolmogorov_distribution() {
        assert!((ks_coefficient(0.001) - 1.949_474_603_504_375_3).abs() < 1e-9);
        assert!((ks_coefficient(0.05) - 1.358_098_639_322_550_7).abs() < 1e-5);
        let c = ks_critical_value(10, 7, 0.001).unwrap();
        assert!((c - 0.960_711_573_381_995_9).abs() < 1e-12, "{c}");
        assert_eq!(ks_critical_value(0, 7, 0.001), None);
    }

    #[test]
    fn kolmogorov_survival_matches_scipy() {
        // scipy.special.kolmogorov(x) and its logarithm.
        for (x, sf, ln) in [
            (0.3, 0.999_990_694_198_665_5, -9.305_844_633_751_613e-6),
            (0.8, 0.544_142_411_574_198_1, -0.608_544_280_404_183_8),
            (1.0, 0.269_999_671_677_354_56, -1.309_334_535_994_299_6),
            (1.18, 0.123_453_809_429_765_7, -2.091_888_205_588_752_7),
            (1.5, 0.022_217_962_616_525_127, -3.806_854_190_400_080_6),
            (2.5, 7.453_306_344_157_342e-6, -11.806_852_819_440_055),
            (5.0, 3.857_499_695_927_835_6e-22, -49.306_852_819_440_05),
        ] {
            let (got_sf, got_ln) = kolmogorov_survival(x);
            assert!(
                (got_sf - sf).abs() <= 1e-12 + 1e-9 * sf,
                "{x}: {got_sf} vs {sf}"
            );
            assert!((got_ln - ln).abs() < 1e-9, "{x}: {got_ln} vs {ln}");
        }
        let (_, ln) = kolmogorov_survival(40.0);
        assert!(ln.is_finite() && ln < -3000.0);
    }

    #[test]
    fn p_value_uses_the_corrected_scaling() {
        // scipy.special.kolmogorov((sqrt(e) + 0.12 + 0.11 / sqrt(e)) * d), e = 93 * 75 / 168.
        let (p, _) = ks_p_value(0.167_311_827_956_989_3, 93, 75).unwrap();
        assert!((p - 0.176_941_852_090_375_52).abs() < 1e-9, "{p}");
        assert_eq!(ks_p_value(0.5, 0, 3), None);
    }
}
