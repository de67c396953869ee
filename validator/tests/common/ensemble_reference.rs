//! The rank-gauss ensemble's reference case, shared by the library's tests
//! (`validator/tests/tables.rs`) and the command's (`cli/tests/ensemble.rs`, which includes this
//! file by path): an input table and the outputs computed independently with scipy and numpy.

#![allow(dead_code)]

/// Two eras interleaved, ties within an era (`a` 0.35 twice in e1, 0.52 twice in e2), missing
/// values in `a`, `b` and `f1`.
pub const INPUT_CSV: &str = "\
id,era,a,b,f1,f2
1,e1,0.61,0.5,0.2,1.0
2,e2,0.3,0.77,1.0,-1.5
3,e1,0.2,0.45,-1.0,0.0
4,e2,0.25,0.25,0.0,0.4
5,e1,0.35,0.4,0.5,-1.0
6,e2,,0.7,-1.0,0.2
7,e1,NaN,0.62,1.5,2.0
8,e2,0.66,0.61,2.0,-0.6
9,e1,0.8,0.71,0.3,0.5
10,e2,0.1,0.33,0.5,1.1
11,e1,0.35,0.33,-0.7,0.5
12,e2,0.52,0.52,0.5,0.3
13,e1,0.12,0.28,0.9,-0.3
14,e2,0.52,0.1,-0.3,0.9
15,e1,0.55,0.59,,0.8
16,e2,0.41,,0.8,-0.2
";

// Expected values computed in Python (scipy 1.17, numpy 2.4, pandas 3.1) from the table
// above read with pandas.read_csv:
//
//   def gauss(x):
//       x = np.asarray(x, float); out = np.full_like(x, nan); p = ~np.isnan(x)
//       g = norm.ppf((rankdata(x[p], method="average") - 0.5) / p.sum())
//       sd = np.std(g); out[p] = g / sd if sd > 0 else g
//       return out
//   def ensemble(d, models, weights, neut):
//       out = pd.Series(nan, index=d.index)
//       for _, g in d.groupby("era", sort=False):
//           e = gauss(np.column_stack([gauss(g[m]) for m in models]) @ np.array(weights, float))
//           if neut:
//               X = g[neut].to_numpy(float); ok = ~np.isnan(e) & ~np.isnan(X).any(axis=1)
//               r = np.full_like(e, nan)
//               r[ok] = e[ok] - X[ok] @ np.linalg.lstsq(X[ok], e[ok], rcond=None)[0]; e = r
//           out[g.index] = e
//       return out.to_numpy()
//
// PLAIN = ensemble(df, ["a", "b"], [1, 2], []); NEUTRAL = the same with ["f1", "f2"].
pub const PLAIN: [Option<f64>; 16] = [
    Some(0.40167176242090474),
    Some(1.542418689406634),
    Some(0.0),
    Some(-1.542418689406634),
    Some(-0.4016717624209046),
    None,
    None,
    Some(0.7522415143560073),
    Some(1.607573943839657),
    Some(-0.2346855143559176),
    Some(-0.8685423480530444),
    Some(0.23468551435591775),
    Some(-1.607573943839657),
    Some(-0.7522415143560073),
    Some(0.8685423480530444),
    None,
];
pub const NEUTRAL: [Option<f64>; 16] = [
    Some(-0.24041845951090302),
    Some(0.1506064445279982),
    Some(0.006119696363640686),
    Some(-1.2475597342834208),
    Some(0.2361346720563547),
    None,
    None,
    Some(-0.26222924466198494),
    Some(1.285304893601025),
    Some(0.4331310306496257),
    Some(-1.1846917019280356),
    Some(0.31278414911503455),
    Some(-1.4208217857692098),
    Some(-0.0029815163788016186),
    None,
    None,
];

/// Asserts `got` is `expected` within 1e-9, missing exactly where expected.
pub fn assert_close(got: &[Option<f64>], expected: &[Option<f64>]) {
    assert_eq!(got.len(), expected.len());
    for (i, (g, e)) in got.iter().zip(expected).enumerate() {
        match (g, e) {
            (Some(g), Some(e)) => assert!((g - e).abs() < 1e-9, "row {}: {g} vs {e}", i + 1),
            (None, None) => {}
            _ => panic!("row {}: {g:?} vs {e:?}", i + 1),
        }
    }
}
