//! Least squares by the normal equations, solved by Cholesky (the designs here are a few
//! columns of standardized values, well conditioned enough for it).

use super::MetaError;
use crate::linalg::{cholesky_solve, dot};

/// A pivot of the Cholesky factor below this share of its diagonal entry means the columns
/// are linearly dependent (up to rounding).
const DEPENDENT: f64 = 1e-10;

/// The coefficients `b` minimizing `|y - X b|`, `X` given by its `columns` (each as long as
/// `y`), with no intercept unless a column of ones is among them.
///
/// # Errors
///
/// [`MetaError::LengthMismatch`] when a column is not as long as `y`;
/// [`MetaError::Singular`] when the columns are linearly dependent (or fewer rows than
/// columns).
pub(crate) fn least_squares(columns: &[Vec<f64>], y: &[f64]) -> Result<Vec<f64>, MetaError> {
    let k = columns.len();
    for c in columns {
        if c.len() != y.len() {
            return Err(MetaError::LengthMismatch {
                what: "least-squares column",
                expected: y.len(),
                found: c.len(),
            });
        }
    }
    // Normal equations: (X'X) b = X'y.
    let mut a = vec![vec![0.0; k]; k];
    for i in 0..k {
        for j in 0..=i {
            let v = dot(&columns[i], &columns[j]);
            a[i][j] = v;
            a[j][i] = v;
        }
    }
    let rhs: Vec<f64> = columns.iter().map(|c| dot(c, y)).collect();
    cholesky_solve(a, rhs, |d, diagonal| {
        d.is_finite() && d > DEPENDENT * diagonal.abs() && d > 0.0
    })
    .ok_or(MetaError::Singular)
}

#[cfg(test)]
mod tests {
    use super::*;

    // numpy.linalg.lstsq(numpy.column_stack([numpy.ones(6), x, z]), y, rcond=None)[0] with
    // x, z and y as in the test below.
    const LSTSQ: [f64; 3] = [0.23586150041219966, 1.2356966199505377, 0.9746908491343781];

    #[test]
    fn coefficients_match_numpy_lstsq() {
        // Expected: numpy.linalg.lstsq(numpy.column_stack([ones, x, z]), y)[0].
        let x = vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0];
        let z = vec![1.0, -1.0, 0.5, 2.0, -0.5, 0.0];
        let y = [1.2, 0.7, 3.1, 5.9, 4.2, 6.8];
        let b = least_squares(&[vec![1.0; 6], x, z], &y).expect("full rank");
        for (got, want) in b.iter().zip(LSTSQ) {
            assert!((got - want).abs() < 1e-12, "{got} vs {want}");
        }
    }

    #[test]
    fn dependent_columns_are_singular_and_lengths_are_checked() {
        let x = vec![1.0, 2.0, 3.0];
        let two_x: Vec<f64> = x.iter().map(|v| 2.0 * v).collect();
        assert_eq!(
            least_squares(&[x.clone(), two_x], &[1.0, 2.0, 4.0]),
            Err(MetaError::Singular)
        );
        assert_eq!(
            least_squares(&[vec![1.0, 2.0]], &[1.0, 2.0, 3.0]),
            Err(MetaError::LengthMismatch {
                what: "least-squares column",
                expected: 3,
                found: 2
            })
        );
        // Fewer rows than columns.
        assert_eq!(
            least_squares(&[vec![1.0], vec![2.0]], &[1.0]),
            Err(MetaError::Singular)
        );
    }
}
