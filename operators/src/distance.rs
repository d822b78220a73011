//! Vector distances (Canberra, Bray-Curtis) and ranking keys by their
//! distance from a baseline.
//!
//! Both distances follow SciPy's conventions (`scipy.spatial.distance`), so
//! results can be checked against it. Inputs with NaN or infinite values
//! are rejected: a silent NaN score would sort unpredictably.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Checks equal lengths and finite values.
fn check(a: &[f64], b: &[f64]) -> Result<()> {
    if a.len() != b.len() {
        return Err(Error::LengthMismatch {
            left: a.len(),
            right: b.len(),
        });
    }
    for (index, (x, y)) in a.iter().zip(b).enumerate() {
        if x.is_nan() || y.is_nan() {
            return Err(Error::NaN { index });
        }
        if x.is_infinite() || y.is_infinite() {
            return Err(Error::Infinite { index });
        }
    }
    Ok(())
}

/// The Canberra distance `sum |a_i - b_i| / (|a_i| + |b_i|)`, where a term
/// with `a_i == b_i == 0` counts 0 (SciPy's convention).
///
/// # Examples
/// ```
/// use keyflow_operators::distance::canberra;
/// assert_eq!(canberra(&[1.0, 0.0, 0.0], &[0.0, 1.0, 0.0]).unwrap(), 2.0);
/// assert_eq!(canberra(&[1.0, 1.0, 0.0], &[0.0, 1.0, 0.0]).unwrap(), 1.0);
/// assert_eq!(canberra(&[3.0, 0.0], &[1.0, 0.0]).unwrap(), 0.5);
/// assert!(canberra(&[1.0], &[1.0, 2.0]).is_err());
/// assert!(canberra(&[f64::NAN], &[1.0]).is_err());
/// ```
pub fn canberra(a: &[f64], b: &[f64]) -> Result<f64> {
    check(a, b)?;
    Ok(a.iter()
        .zip(b)
        .map(|(x, y)| {
            let den = x.abs() + y.abs();
            if den == 0.0 {
                0.0
            } else {
                (x - y).abs() / den
            }
        })
        .sum())
}

/// The Bray-Curtis distance `sum |a_i - b_i| / sum |a_i + b_i|`, 0 when the
/// denominator is 0 (two zero vectors are identical).
///
/// # Examples
/// ```
/// use keyflow_operators::distance::bray_curtis;
/// assert_eq!(bray_curtis(&[1.0, 0.0, 0.0], &[0.0, 1.0, 0.0]).unwrap(), 1.0);
/// assert_eq!(bray_curtis(&[3.0, 1.0], &[1.0, 1.0]).unwrap(), 2.0 / 6.0);
/// assert_eq!(bray_curtis(&[0.0, 0.0], &[0.0, 0.0]).unwrap(), 0.0);
/// ```
pub fn bray_curtis(a: &[f64], b: &[f64]) -> Result<f64> {
    check(a, b)?;
    let (num, den) = a.iter().zip(b).fold((0.0, 0.0), |(n, d), (x, y)| {
        (n + (x - y).abs(), d + (x + y).abs())
    });
    Ok(if den == 0.0 { 0.0 } else { num / den })
}

/// A distance between two vectors, chosen by name on a command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum Metric {
    /// [`canberra`].
    #[default]
    Canberra,
    /// [`bray_curtis`].
    BrayCurtis,
}

impl Metric {
    /// The distance between `a` and `b`.
    ///
    /// # Examples
    /// ```
    /// use keyflow_operators::distance::Metric;
    /// let m: Metric = "bray-curtis".parse().unwrap();
    /// assert_eq!(m, Metric::BrayCurtis);
    /// assert_eq!(m.distance(&[1.0, 0.0], &[0.0, 1.0]).unwrap(), 1.0);
    /// assert_eq!(Metric::Canberra.to_string(), "canberra");
    /// assert!("euclid".parse::<Metric>().is_err());
    /// ```
    pub fn distance(&self, a: &[f64], b: &[f64]) -> Result<f64> {
        match self {
            Metric::Canberra => canberra(a, b),
            Metric::BrayCurtis => bray_curtis(a, b),
        }
    }

    /// Scores `key`'s current vector `c` against its baseline `a`: `None`
    /// when the volume `sum_j (c_j + a_j)` is below `min_volume`, else the
    /// distance with the volume.
    ///
    /// The volume is summed in index order, one `c_j + a_j` at a time, and
    /// comes first: a key below `min_volume` is skipped without its values
    /// being checked or its distance computed. Vectors of different lengths
    /// are always an error.
    ///
    /// # Examples
    /// ```
    /// use keyflow_operators::distance::Metric;
    /// let s = Metric::Canberra.score("spike", &[3.0, 0.0], &[1.0, 0.0], 4.0).unwrap();
    /// let s = s.unwrap();
    /// assert_eq!((s.key, s.score, s.volume), ("spike", 0.5, 4.0));
    /// assert!(Metric::Canberra.score("tiny", &[1.0], &[1.0], 4.0).unwrap().is_none());
    /// assert!(Metric::Canberra.score("bad", &[1.0], &[], 0.0).is_err());
    /// ```
    pub fn score<K>(
        &self,
        key: K,
        c: &[f64],
        a: &[f64],
        min_volume: f64,
    ) -> Result<Option<Scored<K>>> {
        if c.len() != a.len() {
            return Err(Error::LengthMismatch {
                left: c.len(),
                right: a.len(),
            });
        }
        let volume = c.iter().zip(a).fold(0.0, |v, (x, y)| v + (x + y));
        if volume < min_volume {
            return Ok(None);
        }
        let score = self.distance(c, a)?;
        Ok(Some(Scored { key, score, volume }))
    }
}

impl FromStr for Metric {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "canberra" => Ok(Metric::Canberra),
            "bray-curtis" | "braycurtis" | "bray_curtis" => Ok(Metric::BrayCurtis),
            other => Err(Error::Config(format!(
                "metric `{other}` is not one of: canberra, bray-curtis"
            ))),
        }
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Metric::Canberra => "canberra",
            Metric::BrayCurtis => "bray-curtis",
        })
    }
}

/// A key with its distance from its baseline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scored<K> {
    /// The key.
    pub key: K,
    /// Its distance from the baseline.
    pub score: f64,
    /// `sum(c_j + a_j)`: its volume in the current and baseline vectors.
    pub volume: f64,
}

/// The ranking order, best first: score descending (by
/// [`f64::total_cmp`]), then key ascending.
///
/// # Examples
/// ```
/// use std::cmp::Ordering;
/// use keyflow_operators::distance::best_first;
/// assert_eq!(best_first((2.0, &"b"), (1.0, &"a")), Ordering::Less);
/// assert_eq!(best_first((1.0, &"b"), (1.0, &"a")), Ordering::Greater);
/// ```
pub fn best_first<K: Ord + ?Sized>(a: (f64, &K), b: (f64, &K)) -> Ordering {
    b.0.total_cmp(&a.0).then_with(|| a.1.cmp(b.1))
}

fn rank<K: Ord>(a: &Scored<K>, b: &Scored<K>) -> Ordering {
    best_first((a.score, &a.key), (b.score, &b.key))
}

/// The `k` best of the scored keys pushed into it (all when `k` is 0), in
/// [`best_first`] order. Keys are expected to be distinct: entries with the
/// same score and key come out in no particular order.
///
/// While keys are pushed it holds at most `max(2k, 64)` of them, cutting
/// back to the best `k` whenever it reaches that.
///
/// # Examples
/// ```
/// use keyflow_operators::distance::{BestScores, Scored};
/// let mut best = BestScores::new(2);
/// for (key, score) in [("a", 1.0), ("b", 3.0), ("c", 3.0), ("d", 2.0)] {
///     best.push(Scored { key, score, volume: 0.0 });
/// }
/// let keys: Vec<_> = best.into_sorted().into_iter().map(|s| s.key).collect();
/// assert_eq!(keys, vec!["b", "c"]);
/// ```
#[derive(Debug, Clone)]
pub struct BestScores<K> {
    k: usize,
    best: Vec<Scored<K>>,
}

impl<K: Ord> BestScores<K> {
    /// Keeps the best `k`; all when `k` is 0.
    pub fn new(k: usize) -> Self {
        BestScores {
            k,
            best: Vec::new(),
        }
    }

    /// Adds one scored key.
    pub fn push(&mut self, scored: Scored<K>) {
        self.best.push(scored);
        let k = self.k;
        if k > 0 && self.best.len() >= (2 * k).max(64) {
            self.best.select_nth_unstable_by(k, rank);
            self.best.truncate(k);
        }
    }

    /// The best `k`, best first.
    pub fn into_sorted(mut self) -> Vec<Scored<K>> {
        self.best.sort_unstable_by(rank);
        if self.k > 0 {
            self.best.truncate(self.k);
        }
        self.best
    }
}

/// Scores each key's current vector `c` against its baseline and returns the
/// `k` highest scores (all when `k` is 0), by score descending then key.
///
/// `baseline(key)` gives the key's baseline vector; only its first
/// `c.len()` entries are compared (so hours `0..=h` of a day compare with
/// the same hours of a 24-hour baseline). A key without a baseline compares
/// with zeros. Each key is scored by [`Metric::score`]: keys whose volume
/// `sum(c_j + a_j)` is below `min_volume` are skipped before their values
/// are checked; any other key with a NaN or infinite value is an error, as
/// is a baseline shorter than `c`. Ranking is by [`BestScores`], so keys are
/// expected to be distinct.
///
/// # Examples
/// ```
/// use std::collections::HashMap;
/// use keyflow_operators::distance::{rank_against_baseline, Metric};
///
/// let baseline: HashMap<&str, Vec<f64>> = HashMap::from([
///     ("steady", vec![10.0, 10.0, 10.0]),
///     ("spike", vec![1.0, 1.0, 1.0]),
/// ]);
/// let today = vec![
///     ("steady", vec![10.0, 11.0]),
///     ("spike", vec![1.0, 30.0]),
///     ("new", vec![0.0, 2.0]),
///     ("tiny", vec![0.0, 0.5]),
/// ];
/// let top = rank_against_baseline(
///     Metric::Canberra,
///     today,
///     |k: &&str| baseline.get(k).map(Vec::as_slice),
///     1.0,
///     2,
/// )
/// .unwrap();
/// let ranked: Vec<_> = top.iter().map(|s| (s.key, (s.score * 1000.0).round())).collect();
/// // "new": 0/0 counts 0, |2-0|/2 = 1; "spike": 29/31; "tiny" is below volume 1.
/// assert_eq!(ranked, vec![("new", 1000.0), ("spike", 935.0)]);
/// ```
pub fn rank_against_baseline<'b, K, C, I, F>(
    metric: Metric,
    current: I,
    mut baseline: F,
    min_volume: f64,
    k: usize,
) -> Result<Vec<Scored<K>>>
where
    K: Ord,
    C: AsRef<[f64]>,
    I: IntoIterator<Item = (K, C)>,
    F: FnMut(&K) -> Option<&'b [f64]>,
{
    let mut zeros: Vec<f64> = Vec::new();
    let mut best = BestScores::new(k);
    for (key, c) in current {
        let c = c.as_ref();
        let a: &[f64] = match baseline(&key) {
            Some(a) if a.len() >= c.len() => &a[..c.len()],
            Some(a) => {
                return Err(Error::LengthMismatch {
                    left: c.len(),
                    right: a.len(),
                })
            }
            None => {
                zeros.resize(c.len(), 0.0);
                &zeros[..c.len()]
            }
        };
        if let Some(scored) = metric.score(key, c, a, min_volume)? {
            best.push(scored);
        }
    }
    Ok(best.into_sorted())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_scipy_values() {
        // scipy.spatial.distance.canberra / braycurtis.
        let u = [1.0, 2.0, 0.0, 4.0];
        let v = [2.0, 2.0, 0.0, 1.0];
        assert!((canberra(&u, &v).unwrap() - (1.0 / 3.0 + 3.0 / 5.0)).abs() < 1e-12);
        assert!((bray_curtis(&u, &v).unwrap() - 4.0 / 12.0).abs() < 1e-12);
        assert_eq!(canberra(&[], &[]).unwrap(), 0.0);
    }

    #[test]
    fn rejects_bad_values_by_index() {
        assert!(matches!(
            canberra(&[0.0, f64::NAN], &[0.0, 0.0]),
            Err(Error::NaN { index: 1 })
        ));
        assert!(matches!(
            bray_curtis(&[0.0, 0.0, 1.0], &[0.0, 0.0, f64::INFINITY]),
            Err(Error::Infinite { index: 2 })
        ));
        assert!(matches!(
            bray_curtis(&[0.0], &[0.0, 0.0]),
            Err(Error::LengthMismatch { left: 1, right: 2 })
        ));
    }

    #[test]
    fn volume_adds_each_pair_in_index_order() {
        // Summing all of c and then all of a rounds this to 1e16.
        let s = Metric::BrayCurtis
            .score((), &[1e16, 1.0], &[0.0, 1.0], 0.0)
            .unwrap()
            .unwrap();
        assert_eq!(s.volume, 1e16 + 2.0);
        // Below the volume, values are not looked at; lengths always are.
        assert!(Metric::Canberra
            .score((), &[f64::NEG_INFINITY], &[0.0], 0.0)
            .unwrap()
            .is_none());
        assert!(matches!(
            Metric::Canberra.score((), &[0.0], &[0.0, 0.0], 1.0),
            Err(Error::LengthMismatch { left: 1, right: 2 })
        ));
    }

    #[test]
    fn ranking_breaks_ties_by_key_and_prunes() {
        let current: Vec<(u32, Vec<f64>)> =
            (0..500).map(|i| (i, vec![(i % 5) as f64 + 1.0])).collect();
        let top =
            rank_against_baseline(Metric::BrayCurtis, current, |_: &u32| None, 0.0, 3).unwrap();
        // Every score is 1.0 against zeros: the three smallest keys win.
        assert_eq!(top.iter().map(|s| s.key).collect::<Vec<_>>(), vec![0, 1, 2]);
        let short = rank_against_baseline(
            Metric::Canberra,
            vec![(1u32, vec![1.0, 2.0])],
            |_: &u32| Some(&[1.0][..]),
            0.0,
            0,
        );
        assert!(short.is_err());
    }
}
