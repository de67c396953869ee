//! Ranks with ties averaged, missing values kept missing.

/// The 1-based ranks of `values` among the present ones, ties given the average of the
/// ranks they span (`scipy.stats.rankdata(x, method="average")` over the present values).
///
/// A missing value (`None`, or `Some(NaN)`, which is treated as missing) stays missing and
/// takes no part in the ranking of the others.
#[must_use]
pub fn rank_average(values: &[Option<f64>]) -> Vec<Option<f64>> {
    let mut present: Vec<(usize, f64)> = values
        .iter()
        .enumerate()
        .filter_map(|(i, v)| v.filter(|x| !x.is_nan()).map(|x| (i, x)))
        .collect();
    present.sort_by(|a, b| a.1.total_cmp(&b.1));
    let mut ranks = vec![None; values.len()];
    let mut start = 0;
    while start < present.len() {
        let value = present[start].1;
        let end = present[start..]
            .iter()
            .position(|&(_, x)| x != value)
            .map_or(present.len(), |k| start + k);
        // Positions start..end (0-based) share ranks start+1..=end: their average.
        let rank = (start + 1 + end) as f64 / 2.0;
        for &(i, _) in &present[start..end] {
            ranks[i] = Some(rank);
        }
        start = end;
    }
    ranks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_match_scipy_with_ties_and_missing_values() {
        // Expected: scipy.stats.rankdata([0.3, 0.1, 0.3, 0.7, 0.1, 0.3, 0.9], method="average")
        // on the present values, put back at their positions (None stays None).
        let x = [
            Some(0.3),
            None,
            Some(0.1),
            Some(0.3),
            Some(0.7),
            Some(f64::NAN),
            Some(0.1),
            Some(0.3),
            Some(0.9),
        ];
        let expected = [
            Some(4.0),
            None,
            Some(1.5),
            Some(4.0),
            Some(6.0),
            None,
            Some(1.5),
            Some(4.0),
            Some(7.0),
        ];
        assert_eq!(rank_average(&x), expected);
    }

    #[test]
    fn all_missing_and_empty_give_missing_and_empty() {
        assert_eq!(rank_average(&[]), Vec::<Option<f64>>::new());
        assert_eq!(rank_average(&[None, None]), vec![None, None]);
        assert_eq!(
            rank_average(&[Some(-0.0), Some(0.0)]),
            vec![Some(1.5), Some(1.5)]
        );
    }
}
