//! k-means clustering: k-means++ seeding from a seeded ChaCha generator, then Lloyd's
//! iterations; the best of several seedings (least within-cluster sum of squares) is kept.
//! The same input and seed always give the same clusters.

use rand::RngExt;
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::SeedableRng;

/// A partition of points into clusters.
#[derive(Debug, Clone, PartialEq)]
pub struct Clustering {
    /// The cluster of each point, `0..centroids.len()`.
    pub labels: Vec<usize>,
    /// Each cluster's mean.
    pub centroids: Vec<Vec<f64>>,
    /// The sum of squared distances of the points to their centroids.
    pub inertia: f64,
}

/// Clusters `points` (all of one dimension) into at most `k` clusters (fewer when there are
/// fewer points), trying `restarts` seedings from `seed` and running at most `max_iterations`
/// Lloyd iterations each.
#[must_use]
pub fn kmeans(
    points: &[Vec<f64>],
    k: usize,
    seed: u64,
    restarts: usize,
    max_iterations: usize,
) -> Clustering {
    let k = k.min(points.len());
    if k == 0 {
        return Clustering {
            labels: vec![0; points.len()],
            centroids: Vec::new(),
            inertia: 0.0,
        };
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut best: Option<Clustering> = None;
    for _ in 0..restarts.max(1) {
        let centroids = seed_centroids(points, k, &mut rng);
        let clustering = lloyd(points, centroids, max_iterations);
        if best.as_ref().is_none_or(|b| clustering.inertia < b.inertia) {
            best = Some(clustering);
        }
    }
    best.unwrap_or_else(|| Clustering {
        labels: vec![0; points.len()],
        centroids: Vec::new(),
        inertia: 0.0,
    })
}

/// k-means++ (Arthur and Vassilvitskii, 2007): the first centre uniformly at random, each
/// next one with probability proportional to its squared distance to the nearest centre.
fn seed_centroids(points: &[Vec<f64>], k: usize, rng: &mut ChaCha8Rng) -> Vec<Vec<f64>> {
    let n = points.len();
    let pick = |rng: &mut ChaCha8Rng| ((rng.random::<f64>() * n as f64) as usize).min(n - 1);
    let mut centroids = vec![points[pick(rng)].clone()];
    let mut nearest: Vec<f64> = points
        .iter()
        .map(|p| squared_distance(p, &centroids[0]))
        .collect();
    while centroids.len() < k {
        let total: f64 = nearest.iter().sum();
        let chosen = if total > 0.0 {
            let target = rng.random::<f64>() * total;
            let mut acc = 0.0;
            let mut chosen = n - 1;
            for (i, d) in nearest.iter().enumerate() {
                acc += d;
                if acc > target && *d > 0.0 {
                    chosen = i;
                    break;
                }
            }
            chosen
        } else {
            pick(rng)
        };
        let centre = points[chosen].clone();
        for (d, p) in nearest.iter_mut().zip(points) {
            *d = d.min(squared_distance(p, &centre));
        }
        centroids.push(centre);
    }
    centroids
}

/// Lloyd's iterations from `centroids` until no point changes cluster. A cluster left empty
/// keeps its centre.
fn lloyd(points: &[Vec<f64>], mut centroids: Vec<Vec<f64>>, max_iterations: usize) -> Clustering {
    let dim = points.first().map_or(0, Vec::len);
    let mut labels = vec![usize::MAX; points.len()];
    for _ in 0..max_iterations.max(1) {
        let mut changed = false;
        for (label, p) in labels.iter_mut().zip(points) {
            let nearest = nearest_centroid(p, &centroids);
            if *label != nearest {
                *label = nearest;
                changed = true;
            }
        }
        if !changed {
            break;
        }
        let mut sums = vec![vec![0.0; dim]; centroids.len()];
        let mut counts = vec![0_usize; centroids.len()];
        for (&label, p) in labels.iter().zip(points) {
            counts[label] += 1;
            for (s, v) in sums[label].iter_mut().zip(p) {
                *s += v;
            }
        }
        for ((centre, sum), count) in centroids.iter_mut().zip(sums).zip(counts) {
            if count > 0 {
                *centre = sum.into_iter().map(|s| s / count as f64).collect();
            }
        }
    }
    let inertia = labels
        .iter()
        .zip(points)
        .map(|(&label, p)| squared_distance(p, &centroids[label]))
        .sum();
    Clustering {
        labels,
        centroids,
        inertia,
    }
}

fn nearest_centroid(p: &[f64], centroids: &[Vec<f64>]) -> usize {
    let mut best = (0, f64::INFINITY);
    for (j, c) in centroids.iter().enumerate() {
        let d = squared_distance(p, c);
        if d < best.1 {
            best = (j, d);
        }
    }
    best.0
}

fn squared_distance(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three well-separated groups in the plane.
    fn blobs() -> Vec<Vec<f64>> {
        [
            [0.0, 0.1],
            [0.3, -0.2],
            [-0.2, 0.2],
            [0.1, 0.3],
            [5.0, 5.2],
            [5.3, 4.9],
            [4.8, 5.1],
            [5.1, 4.7],
            [5.2, 5.0],
            [-4.9, 5.0],
            [-5.2, 4.8],
            [-5.0, 5.3],
        ]
        .iter()
        .map(|p| p.to_vec())
        .collect()
    }

    #[test]
    fn matches_scikit_learn_on_well_separated_groups() {
        // sklearn.cluster.KMeans(n_clusters=3, n_init=10, random_state=0).fit(blobs):
        // labels [2,2,2,2,0,0,0,0,0,1,1,1] (up to renaming), inertia 0.7393333333333331,
        // centres (0.05, 0.1), (5.08, 4.98), (-5.0333333, 5.0333333).
        let clustering = kmeans(&blobs(), 3, 7, 4, 100);
        let l = &clustering.labels;
        assert!(l[..4].iter().all(|&x| x == l[0]));
        assert!(l[4..9].iter().all(|&x| x == l[4]));
        assert!(l[9..].iter().all(|&x| x == l[9]));
        assert!(l[0] != l[4] && l[4] != l[9] && l[0] != l[9]);
        assert!((clustering.inertia - 0.739_333_333_333_333_1).abs() < 1e-9);
        let centre = |i: usize| &clustering.centroids[l[i]];
        for (got, want) in [
            (centre(0), [0.05, 0.1]),
            (centre(4), [5.08, 4.98]),
            (centre(9), [-5.033_333_333_333_333, 5.033_333_333_333_333]),
        ] {
            assert!((got[0] - want[0]).abs() < 1e-9 && (got[1] - want[1]).abs() < 1e-9);
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_clusters_and_small_inputs_are_handled() {
        let points: Vec<Vec<f64>> = (0..40)
            .map(|i| vec![f64::from(i % 7), f64::from((i * 13) % 11)])
            .collect();
        assert_eq!(kmeans(&points, 5, 3, 2, 100), kmeans(&points, 5, 3, 2, 100));
        let two = vec![vec![1.0], vec![1.0]];
        let clustering = kmeans(&two, 5, 1, 1, 10);
        assert_eq!(clustering.centroids.len(), 2);
        assert_eq!(clustering.inertia, 0.0);
        assert!(kmeans(&[], 5, 1, 1, 10).centroids.is_empty());
    }
}
