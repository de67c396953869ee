//! Pearson correlation, plain and weighted, and Fisher's z transform.

/// Pearson's correlation coefficient of two equally long samples.
///
/// `None` when the samples differ in length, have fewer than two points, or either has no
/// spread (a constant has no correlation with anything).
#[must_use]
pub fn pearson(x: &[f64], y: &[f64]) -> Option<f64> {
    let weights = vec![1.0; x.len()];
    weighted_pearson(x, y, &weights)
}

/// Pearson's correlation with a non-negative weight per point: the correlation of the
/// weighted covariance matrix (`numpy.cov(x, y, aweights=w)` normalised).
///
/// `None` when the lengths differ, fewer than two points carry weight, or either sample has no
/// weighted spread.
#[must_use]
pub fn weighted_pearson(x: &[f64], y: &[f64], w: &[f64]) -> Option<f64> {
    if x.len() != y.len() || x.len() != w.len() {
        return None;
    }
    let (mut sw, mut sx, mut sy) = (0.0, 0.0, 0.0);
    let mut carrying = 0_usize;
    for ((&xi, &yi), &wi) in x.iter().zip(y).zip(w) {
        if wi > 0.0 {
            carrying += 1;
        }
        sw += wi;
        sx += wi * xi;
        sy += wi * yi;
    }
    if carrying < 2 || sw <= 0.0 {
        return None;
    }
    let (mx, my) = (sx / sw, sy / sw);
    let (mut sxx, mut syy, mut sxy) = (0.0, 0.0, 0.0);
    for ((&xi, &yi), &wi) in x.iter().zip(y).zip(w) {
        let (dx, dy) = (xi - mx, yi - my);
        sxx += wi * dx * dx;
        syy += wi * dy * dy;
        sxy += wi * dx * dy;
    }
    // A spread this small relative to the values is rounding, not signal.
    let scale_x = sx.abs().max(sw) / sw;
    let scale_y = sy.abs().max(sw) / sw;
    if sxx <= 1e-24 * sw * scale_x * scale_x || syy <= 1e-24 * sw * scale_y * scale_y {
        return None;
    }
    Some((sxy / (sxx * syy).sqrt()).clamp(-1.0, 1.0))
}

/// Kish's effective sample size of a set of weights, `(sum w)^2 / sum w^2`: how many
/// equally weighted points carry as much information.
#[must_use]
pub fn effective_size(w: &[f64]) -> f64 {
    let (s, s2) = w
        .iter()
        .fold((0.0, 0.0), |(s, s2), &wi| (s + wi, s2 + wi * wi));
    if s2 > 0.0 { s * s / s2 } else { 0.0 }
}

/// Fisher's z transform of a correlation, `atanh(r)`, with `r` kept inside (-1, 1) so that a
/// perfect correlation gives a large finite value.
#[must_use]
pub fn fisher_z(r: f64) -> f64 {
    const LIMIT: f64 = 1.0 - 1e-12;
    r.clamp(-LIMIT, LIMIT).atanh()
}

#[cfg(test)]
mod tests {
    use super::*;

    // Reference values computed with scipy 1.17 / numpy 2.4:
    //   x = [0.12, 0.5, 0.33, 0.91, 0.05, 0.77, 0.42, 0.64]
    //   y = [0.2, 0.45, 0.3, 0.8, 0.15, 0.7, 0.5, 0.52]
    //   w = [1, 2, 0.5, 1.5, 3, 0.25, 1, 2]
    //   scipy.stats.pearsonr(x, y).statistic
    //   c = numpy.cov(x, y, aweights=w); c[0,1] / sqrt(c[0,0] * c[1,1])
    //   numpy.arctanh(0.5)
    const X: [f64; 8] = [0.12, 0.5, 0.33, 0.91, 0.05, 0.77, 0.42, 0.64];
    const Y: [f64; 8] = [0.2, 0.45, 0.3, 0.8, 0.15, 0.7, 0.5, 0.52];
    const W: [f64; 8] = [1.0, 2.0, 0.5, 1.5, 3.0, 0.25, 1.0, 2.0];

    #[test]
    fn pearson_matches_scipy() {
        let r = pearson(&X, &Y).unwrap();
        assert!((r - 0.979_739_765_815_319_6).abs() < 1e-12, "{r}");
    }

    #[test]
    fn weighted_pearson_matches_numpy() {
        let r = weighted_pearson(&X, &Y, &W).unwrap();
        assert!((r - 0.984_098_511_980_449_8).abs() < 1e-12, "{r}");
    }

    #[test]
    fn effective_size_and_fisher_z() {
        assert!((effective_size(&W) - 5.869_565_217_391_305).abs() < 1e-12);
        assert!((fisher_z(0.5) - 0.549_306_144_334_054_9).abs() < 1e-15);
        assert!(fisher_z(1.0).is_finite());
    }

    #[test]
    fn no_correlation_without_spread() {
        assert_eq!(pearson(&[0.3; 5], &[0.1, 0.2, 0.3, 0.4, 0.5]), None);
        assert_eq!(pearson(&[0.1], &[0.2]), None);
        assert_eq!(pearson(&[0.1, 0.2], &[0.2]), None);
    }
}
