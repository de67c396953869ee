//! The two pieces of dense linear algebra the integrity checks and the meta-model share: the
//! dot product and a Cholesky solve of the normal equations. Each caller says which pivots it
//! accepts, since what counts as a dependent column is theirs to decide.

/// Solves `a x = b` for a symmetric positive definite `a` by Cholesky (`a = L L'`); `None`
/// when a pivot `d` of the factor (before its square root) fails `acceptable(d, diagonal)`,
/// `diagonal` being `a`'s own entry there.
pub(crate) fn cholesky_solve(
    mut a: Vec<Vec<f64>>,
    mut b: Vec<f64>,
    acceptable: impl Fn(f64, f64) -> bool,
) -> Option<Vec<f64>> {
    let n = b.len();
    for j in 0..n {
        let diagonal = a[j][j];
        let d = diagonal - dot(&a[j][..j], &a[j][..j]);
        if !acceptable(d, diagonal) {
            return None;
        }
        let d = d.sqrt();
        a[j][j] = d;
        for i in j + 1..n {
            let x = (a[i][j] - dot(&a[i][..j], &a[j][..j])) / d;
            a[i][j] = x;
        }
    }
    // L z = b, then L' x = z.
    for i in 0..n {
        let x = (b[i] - dot(&a[i][..i], &b[..i])) / a[i][i];
        b[i] = x;
    }
    for i in (0..n).rev() {
        let later: f64 = (i + 1..n).map(|k| a[k][i] * b[k]).sum();
        b[i] = (b[i] - later) / a[i][i];
    }
    Some(b)
}

/// The dot product, with four running sums so that the loop pipelines and vectorizes.
pub(crate) fn dot(a: &[f64], b: &[f64]) -> f64 {
    let mut sums = [0.0; 4];
    let (a4, b4) = (a.chunks_exact(4), b.chunks_exact(4));
    let (ra, rb) = (a4.remainder(), b4.remainder());
    for (x, y) in a4.zip(b4) {
        for j in 0..4 {
            sums[j] += x[j] * y[j];
        }
    }
    let tail: f64 = ra.iter().zip(rb).map(|(x, y)| x * y).sum();
    (sums[0] + sums[1]) + (sums[2] + sums[3]) + tail
}
