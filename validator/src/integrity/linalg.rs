//! Least squares by an orthonormal basis of the design's columns (modified Gram-Schmidt,
//! applied twice, dropping columns that add nothing): the residual of a vector is what its
//! projection on the basis leaves.

use crate::linalg::{cholesky_solve, dot};

/// Orthonormal columns spanning a design matrix's column space.
#[derive(Debug, Clone)]
pub(crate) struct OrthoBasis {
    rows: usize,
    /// Column-major: column `j` is `q[j * rows..(j + 1) * rows]`.
    q: Vec<f64>,
}

/// A column whose part outside the earlier columns is below this share of its own norm adds
/// nothing (it is a combination of them, up to rounding).
const DEPENDENT: f64 = 1e-8;

impl OrthoBasis {
    /// The basis of `columns` (each `rows` long), with each row scaled by `row_scale` when
    /// given (weighted least squares with weights `row_scale^2`).
    pub(crate) fn new(columns: &[Vec<f64>], rows: usize, row_scale: Option<&[f64]>) -> Self {
        let mut basis = Self {
            rows,
            q: Vec::with_capacity(columns.len() * rows),
        };
        let mut v = vec![0.0; rows];
        for column in columns {
            for (i, slot) in v.iter_mut().enumerate() {
                *slot = column[i] * row_scale.map_or(1.0, |s| s[i]);
            }
            let norm0 = norm(&v);
            if norm0 == 0.0 || !norm0.is_finite() {
                continue;
            }
            // Twice is enough (Kahan, Parlett): the second pass restores orthogonality lost
            // to rounding in the first.
            basis.project_out(&mut v);
            basis.project_out(&mut v);
            let rest = norm(&v);
            if rest > DEPENDENT * norm0 {
                basis.q.extend(v.iter().map(|x| x / rest));
            }
        }
        basis
    }

    /// How many independent columns the design has.
    pub(crate) fn rank(&self) -> usize {
        self.q.len().checked_div(self.rows).unwrap_or(0)
    }

    /// Replaces `v` by its residual: `v - Q Q' v`.
    pub(crate) fn project_out(&self, v: &mut [f64]) {
        if self.rows == 0 {
            return;
        }
        for column in self.q.chunks_exact(self.rows) {
            let c = dot(column, v);
            for (x, q) in v.iter_mut().zip(column) {
                *x -= c * q;
            }
        }
    }

    /// Replaces `v` by its residual on the basis restricted to the rows not in `missing`
    /// (least squares without those rows; their entries are ignored and set to 0), by a
    /// low-rank correction of the full basis (Woodbury) instead of a new factorization.
    /// Returns false, leaving `v` unspecified, when dropping the rows makes the design lose
    /// rank (the caller then factorizes the rows that remain).
    pub(crate) fn project_out_without(&self, v: &mut [f64], missing: &[usize]) -> bool {
        if missing.is_empty() {
            self.project_out(v);
            return true;
        }
        let k = self.rank();
        let m = missing.len();
        for &i in missing {
            v[i] = 0.0;
        }
        // g = Q_V' v_V (the missing rows are 0 in v).
        let columns: Vec<&[f64]> = self.q.chunks_exact(self.rows).collect();
        let g: Vec<f64> = columns.iter().map(|q| dot(q, v)).collect();
        // Q_M: the basis at the missing rows, m by k.
        let qm: Vec<Vec<f64>> = missing
            .iter()
            .map(|&i| columns.iter().map(|q| q[i]).collect())
            .collect();
        // c = (I - Q_M' Q_M)^-1 g = g + Q_M' (I - Q_M Q_M')^-1 Q_M g.
        let h: Vec<f64> = qm.iter().map(|row| dot(row, &g)).collect();
        let mut a = vec![vec![0.0; m]; m];
        for r in 0..m {
            for c in 0..m {
                a[r][c] = f64::from(u8::from(r == c)) - dot(&qm[r], &qm[c]);
            }
        }
        // A pivot below this means the rows dropped carried a direction no other row has.
        const PIVOT: f64 = 1e-9;
        let Some(s) = cholesky_solve(a, h, |d, _| d >= PIVOT) else {
            return false;
        };
        let mut c = g;
        for (row, s) in qm.iter().zip(&s) {
            for (cj, q) in c.iter_mut().zip(row) {
                *cj += q * s;
            }
        }
        debug_assert_eq!(c.len(), k);
        for (q, cj) in columns.iter().zip(&c) {
            for (x, qi) in v.iter_mut().zip(q.iter()) {
                *x -= cj * qi;
            }
        }
        for &i in missing {
            v[i] = 0.0;
        }
        true
    }
}

fn norm(v: &[f64]) -> f64 {
    dot(v, v).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_vector_in_the_span_has_no_residual_and_dependent_columns_are_dropped() {
        let rows = 5;
        let x: Vec<f64> = (0..rows).map(|i| i as f64).collect();
        let columns = vec![
            vec![1.0; rows],
            x.clone(),
            x.iter().map(|v| 2.0 * v + 1.0).collect(),
        ];
        let basis = OrthoBasis::new(&columns, rows, None);
        assert_eq!(basis.rank(), 2);
        let mut y: Vec<f64> = x.iter().map(|v| 3.0 - 0.5 * v).collect();
        basis.project_out(&mut y);
        assert!(y.iter().all(|r| r.abs() < 1e-12), "{y:?}");
    }

    #[test]
    fn residuals_match_numpy_least_squares() {
        // numpy.linalg.lstsq(X, y) with X = [1, x, x^2], x = 0..6, y below; residual y - X b.
        let rows = 6;
        let x: Vec<f64> = (0..rows).map(|i| i as f64).collect();
        let columns = vec![
            vec![1.0; rows],
            x.clone(),
            x.iter().map(|v| v * v).collect(),
        ];
        let mut y = vec![0.3, 1.1, 0.7, 2.5, 1.9, 4.0];
        OrthoBasis::new(&columns, rows, None).project_out(&mut y);
        let expected = [
            -0.167_857_142_857_144_65,
            0.390_714_285_714_284_24,
            -0.454_285_714_285_715_5,
            0.697_142_857_142_856_6,
            -0.754_999_999_999_999_4,
            0.289_285_714_285_716_37,
        ];
        for (r, e) in y.iter().zip(expected) {
            assert!((r - e).abs() < 1e-12, "{y:?}");
        }
    }

    #[test]
    fn dropping_rows_by_correction_matches_a_new_factorization() {
        let rows = 12;
        let x: Vec<f64> = (0..rows).map(|i| (i as f64 * 0.7).sin()).collect();
        let columns = vec![
            vec![1.0; rows],
            x.clone(),
            x.iter().map(|v| v * v * v).collect(),
        ];
        let y: Vec<f64> = (0..rows).map(|i| (i as f64 * 1.3).cos()).collect();
        let missing = [2, 7, 8];
        let full = OrthoBasis::new(&columns, rows, None);
        let mut corrected = y.clone();
        assert!(full.project_out_without(&mut corrected, &missing));
        let kept: Vec<usize> = (0..rows).filter(|i| !missing.contains(i)).collect();
        let sub: Vec<Vec<f64>> = columns
            .iter()
            .map(|c| kept.iter().map(|&i| c[i]).collect())
            .collect();
        let mut direct: Vec<f64> = kept.iter().map(|&i| y[i]).collect();
        OrthoBasis::new(&sub, kept.len(), None).project_out(&mut direct);
        for (j, &i) in kept.iter().enumerate() {
            assert!((corrected[i] - direct[j]).abs() < 1e-12, "{i}");
        }
        assert!(missing.iter().all(|&i| corrected[i] == 0.0));
    }

    #[test]
    fn dropping_the_only_row_of_a_column_is_refused() {
        let rows = 6;
        let indicator: Vec<f64> = (0..rows).map(|i| f64::from(u8::from(i == 3))).collect();
        let columns = vec![vec![1.0; rows], indicator];
        let full = OrthoBasis::new(&columns, rows, None);
        let mut v = vec![1.0; rows];
        assert!(!full.project_out_without(&mut v, &[3]));
    }
}
