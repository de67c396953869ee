//! The rank-gauss ensemble of several models' predictions, per era.

use std::collections::HashMap;
use std::hash::Hash;

use super::MetaError;
use super::gauss::gaussianize;
use super::lstsq::least_squares;

/// The rank-gauss ensemble of one era (`SPEC.md`, "Benchmarks and the meta-model"): each
/// model's column is gaussianized ([`gaussianize`]: ranks with ties averaged, `(rank - 0.5) /
/// count`, the inverse normal CDF, divided by the standard deviation), the columns are
/// combined by the dot product with `weights`, the combination is gaussianized again, and,
/// when `neutralize_against` is not empty, its least-squares fit on those columns is
/// subtracted ([`neutralize`]).
///
/// `models` holds one column per model, each with one value per row of the era; `weights`
/// one weight per model. Missing values (`None` or NaN) stay missing: each model is ranked
/// among its present values, and a row where any model's value is missing is missing in the
/// ensemble (a weighted sum over fewer models would sit on another scale), so it takes no part
/// in the second gaussianization nor in the fit. Rows missing from a neutralization column are
/// missing in the result too.
///
/// # Errors
///
/// [`MetaError::NoModels`] when `models` is empty; [`MetaError::LengthMismatch`] when
/// `weights` does not have one weight per model or a column is not as long as the first
/// model's; [`MetaError::NonFinite`] when a weight is not finite; [`MetaError::Empty`] when
/// the era has no rows; and the errors of [`neutralize`].
pub fn ensemble_era(
    models: &[&[Option<f64>]],
    weights: &[f64],
    neutralize_against: &[&[Option<f64>]],
) -> Result<Vec<Option<f64>>, MetaError> {
    let Some(first) = models.first() else {
        return Err(MetaError::NoModels);
    };
    let rows = first.len();
    check_lengths(models, weights, neutralize_against, rows)?;
    if rows == 0 {
        return Err(MetaError::Empty("the era has no rows"));
    }
    let gaussianized: Vec<Vec<Option<f64>>> = models.iter().map(|m| gaussianize(m)).collect();
    let combined: Vec<Option<f64>> = (0..rows)
        .map(|i| {
            gaussianized
                .iter()
                .zip(weights)
                .try_fold(0.0, |sum, (column, w)| column[i].map(|g| sum + w * g))
        })
        .collect();
    let ensemble = gaussianize(&combined);
    if neutralize_against.is_empty() {
        Ok(ensemble)
    } else {
        neutralize(&ensemble, neutralize_against)
    }
}

fn check_lengths(
    models: &[&[Option<f64>]],
    weights: &[f64],
    neutralize_against: &[&[Option<f64>]],
    rows: usize,
) -> Result<(), MetaError> {
    if weights.len() != models.len() {
        return Err(MetaError::LengthMismatch {
            what: "weights",
            expected: models.len(),
            found: weights.len(),
        });
    }
    if weights.iter().any(|w| !w.is_finite()) {
        return Err(MetaError::NonFinite("weights"));
    }
    for (what, columns) in [
        ("model column", models),
        ("neutralization column", neutralize_against),
    ] {
        if let Some(c) = columns.iter().find(|c| c.len() != rows) {
            return Err(MetaError::LengthMismatch {
                what,
                expected: rows,
                found: c.len(),
            });
        }
    }
    Ok(())
}

/// `values` minus their least-squares fit on `columns` (no intercept: add a column of ones
/// to remove the mean as well), over the rows where the value and every column are present;
/// the other rows are missing in the result. The residual is orthogonal to each column over
/// those rows. With no columns, `values` are returned unchanged.
///
/// The residual is not rescaled: its standard deviation is at most the input's.
///
/// # Errors
///
/// [`MetaError::LengthMismatch`] when a column is not as long as `values`;
/// [`MetaError::NonFinite`] when a present value of a column is infinite;
/// [`MetaError::Empty`] when no row has the value and every column present;
/// [`MetaError::Singular`] when the columns are linearly dependent over those rows.
pub fn neutralize(
    values: &[Option<f64>],
    columns: &[&[Option<f64>]],
) -> Result<Vec<Option<f64>>, MetaError> {
    if columns.is_empty() {
        return Ok(values.to_vec());
    }
    if let Some(c) = columns.iter().find(|c| c.len() != values.len()) {
        return Err(MetaError::LengthMismatch {
            what: "neutralization column",
            expected: values.len(),
            found: c.len(),
        });
    }
    let present = |v: Option<f64>| v.filter(|x| !x.is_nan());
    if columns.iter().any(|c| {
        c.iter()
            .any(|v| present(*v).is_some_and(|x| x.is_infinite()))
    }) {
        return Err(MetaError::NonFinite("a neutralization column"));
    }
    let complete: Vec<usize> = (0..values.len())
        .filter(|&i| {
            present(values[i]).is_some_and(f64::is_finite)
                && columns.iter().all(|c| present(c[i]).is_some())
        })
        .collect();
    if complete.is_empty() {
        return Err(MetaError::Empty(
            "no row has the value and every neutralization column present",
        ));
    }
    let y: Vec<f64> = complete
        .iter()
        .map(|&i| present(values[i]).unwrap_or_default())
        .collect();
    let x: Vec<Vec<f64>> = columns
        .iter()
        .map(|c| {
            complete
                .iter()
                .map(|&i| present(c[i]).unwrap_or_default())
                .collect()
        })
        .collect();
    let b = least_squares(&x, &y)?;
    let mut out = vec![None; values.len()];
    for (row, &i) in complete.iter().enumerate() {
        let fit: f64 = x.iter().zip(&b).map(|(c, bj)| c[row] * bj).sum();
        out[i] = Some(y[row] - fit);
    }
    Ok(out)
}

/// [`ensemble_era`] over a table of several eras: `eras` names each row's era (rows of an
/// era need not be adjacent), and each era is ensembled on its own; the result has one value
/// per row, in the rows' order.
///
/// # Errors
///
/// [`MetaError::LengthMismatch`] when a column is not as long as `eras`; otherwise the first
/// error of [`ensemble_era`] on an era (in the order eras first appear).
pub fn ensemble_by_era<K: Eq + Hash>(
    eras: &[K],
    models: &[&[Option<f64>]],
    weights: &[f64],
    neutralize_against: &[&[Option<f64>]],
) -> Result<Vec<Option<f64>>, MetaError> {
    if models.is_empty() {
        return Err(MetaError::NoModels);
    }
    check_lengths(models, weights, neutralize_against, eras.len())?;
    let mut order: Vec<Vec<usize>> = Vec::new();
    let mut index: HashMap<&K, usize> = HashMap::new();
    for (row, era) in eras.iter().enumerate() {
        let slot = *index.entry(era).or_insert_with(|| {
            order.push(Vec::new());
            order.len() - 1
        });
        order[slot].push(row);
    }
    let pick = |column: &[Option<f64>], rows: &[usize]| -> Vec<Option<f64>> {
        rows.iter().map(|&i| column[i]).collect()
    };
    let mut out = vec![None; eras.len()];
    for rows in &order {
        let m: Vec<Vec<Option<f64>>> = models.iter().map(|c| pick(c, rows)).collect();
        let n: Vec<Vec<Option<f64>>> = neutralize_against.iter().map(|c| pick(c, rows)).collect();
        let m: Vec<&[Option<f64>]> = m.iter().map(Vec::as_slice).collect();
        let n: Vec<&[Option<f64>]> = n.iter().map(Vec::as_slice).collect();
        for (&i, v) in rows.iter().zip(ensemble_era(&m, weights, &n)?) {
            out[i] = v;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const N: Option<f64> = None;
    const A: [Option<f64>; 10] = [
        Some(0.61),
        Some(0.20),
        Some(0.35),
        N,
        Some(0.80),
        Some(0.35),
        Some(0.12),
        Some(0.55),
        Some(0.47),
        Some(0.90),
    ];
    const B: [Option<f64>; 10] = [
        Some(0.30),
        Some(0.25),
        Some(0.70),
        Some(0.66),
        Some(0.10),
        Some(0.52),
        N,
        Some(0.52),
        Some(0.41),
        Some(0.77),
    ];
    const C: [Option<f64>; 10] = [
        Some(0.50),
        Some(0.45),
        Some(0.40),
        Some(0.62),
        Some(0.71),
        Some(0.33),
        Some(0.28),
        Some(0.59),
        Some(0.50),
        Some(0.64),
    ];
    const W: [f64; 3] = [1.0, 2.0, 0.5];
    const N1: [Option<f64>; 10] = [
        Some(0.2),
        Some(-1.0),
        Some(0.5),
        Some(1.5),
        Some(0.3),
        Some(-0.7),
        Some(0.9),
        N,
        Some(-0.2),
        Some(1.1),
    ];
    const N2: [Option<f64>; 10] = [
        Some(1.0),
        Some(0.0),
        Some(-1.0),
        Some(2.0),
        Some(0.5),
        Some(0.5),
        Some(-0.3),
        Some(0.8),
        Some(-1.5),
        Some(0.4),
    ];

    // Expected values computed independently in Python (scipy 1.17, numpy 2.4):
    //   gauss(x) = norm.ppf((rankdata(x[present], method="average") - 0.5) / n_present),
    //              divided by numpy.std (ddof=0), NaN kept NaN;
    //   ensemble = gauss(column_stack([gauss(A), gauss(B), gauss(C)]) @ W)  (NaN if any NaN);
    //   neutralized = ensemble - X @ numpy.linalg.lstsq(X, ensemble, rcond=None)[0] over the
    //   rows where ensemble, N1 and N2 are all present, X = column_stack([N1, N2]).
    const ENSEMBLE: [Option<f64>; 10] = [
        Some(-0.1705220066792723),
        Some(-1.6629596035333782),
        Some(0.9616512180173269),
        None,
        Some(-0.9616512180173269),
        Some(-0.5298250061482329),
        None,
        Some(0.5298250061482329),
        Some(0.1705220066792723),
        Some(1.6629596035333782),
    ];
    const NEUTRALIZED: [Option<f64>; 10] = [
        Some(-0.06877963360226497),
        Some(-0.3570897200066545),
        Some(-0.05420007352838696),
        None,
        Some(-1.171954008184168),
        Some(0.5657420872116498),
        None,
        None,
        Some(-0.11267854128891103),
        Some(0.371669271566923),
    ];

    fn assert_close(got: &[Option<f64>], expected: &[Option<f64>]) {
        assert_eq!(got.len(), expected.len());
        for (i, (g, e)) in got.iter().zip(expected).enumerate() {
            match (g, e) {
                (Some(g), Some(e)) => assert!((g - e).abs() < 1e-12, "row {i}: {g} vs {e}"),
                (None, None) => {}
                _ => panic!("row {i}: {g:?} vs {e:?}"),
            }
        }
    }

    #[test]
    fn ensemble_matches_scipy_reference() {
        let e = ensemble_era(&[&A, &B, &C], &W, &[]).expect("ensemble");
        assert_close(&e, &ENSEMBLE);
    }

    #[test]
    fn neutralized_ensemble_matches_numpy_lstsq() {
        let e = ensemble_era(&[&A, &B, &C], &W, &[&N1, &N2]).expect("ensemble");
        assert_close(&e, &NEUTRALIZED);
        // The residual is orthogonal to each neutralization column over its rows.
        for column in [&N1, &N2] {
            let d: f64 = e
                .iter()
                .zip(column)
                .filter_map(|(r, c)| Some(r.as_ref()? * c.as_ref()?))
                .sum();
            assert!(d.abs() < 1e-12, "{d}");
        }
    }

    #[test]
    fn eras_are_ensembled_separately_whatever_the_row_order() {
        // Era "x" is A/B/C as above, era "y" the same columns reversed; rows interleaved.
        let rev = |c: &[Option<f64>; 10]| -> Vec<Option<f64>> { c.iter().rev().copied().collect() };
        let (ra, rb, rc) = (rev(&A), rev(&B), rev(&C));
        let mut eras = Vec::new();
        let (mut a, mut b, mut c) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..10 {
            eras.extend(["x", "y"]);
            a.extend([A[i], ra[i]]);
            b.extend([B[i], rb[i]]);
            c.extend([C[i], rc[i]]);
        }
        let out = ensemble_by_era(&eras, &[&a, &b, &c], &W, &[]).expect("ensemble");
        let x: Vec<Option<f64>> = out.iter().step_by(2).copied().collect();
        let y: Vec<Option<f64>> = out.iter().skip(1).step_by(2).rev().copied().collect();
        assert_close(&x, &ENSEMBLE);
        assert_close(&y, &ENSEMBLE);
    }

    #[test]
    fn bad_shapes_are_errors() {
        assert_eq!(ensemble_era(&[], &[], &[]), Err(MetaError::NoModels));
        assert_eq!(
            ensemble_era(&[&A, &B], &[1.0], &[]),
            Err(MetaError::LengthMismatch {
                what: "weights",
                expected: 2,
                found: 1
            })
        );
        assert_eq!(
            ensemble_era(&[&A, &B[..9]], &[1.0, 1.0], &[]),
            Err(MetaError::LengthMismatch {
                what: "model column",
                expected: 10,
                found: 9
            })
        );
        assert_eq!(
            ensemble_era(&[&A], &[1.0], &[&N1[..3]]),
            Err(MetaError::LengthMismatch {
                what: "neutralization column",
                expected: 10,
                found: 3
            })
        );
        assert_eq!(
            ensemble_era(&[&A], &[f64::NAN], &[]),
            Err(MetaError::NonFinite("weights"))
        );
        assert_eq!(
            ensemble_era(&[&[]], &[1.0], &[]),
            Err(MetaError::Empty("the era has no rows"))
        );
        assert_eq!(
            ensemble_era(&[&A], &[1.0], &[&N1, &N1]),
            Err(MetaError::Singular)
        );
        assert!(matches!(
            ensemble_era(&[&A], &[1.0], &[&[None; 10]]),
            Err(MetaError::Empty(_))
        ));
        assert_eq!(
            ensemble_by_era(&["x"; 9], &[&A], &[1.0], &[]),
            Err(MetaError::LengthMismatch {
                what: "model column",
                expected: 9,
                found: 10
            })
        );
    }
}
