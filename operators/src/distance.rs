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

/// Best first: score descending, then key ascending.
fn rank<K: Ord>(a: &Scored<K>, b: &Scored<K>) -> Ordering {
    b.score.total_cmp(&a.score).then_with(|| a.key.cmp(&b.key))
}

/// Scores each key's current vector `c` against its baseline and returns the
/// `k` highest scores (all when `k` is 0), by score descending then key.
///
/// `baseline(key)` gives the key's baseline vector; only its first
/// `c.len()` entries are compared (so hours `0..=h` of a day compare with
/// the same hours of a 24-hour baseline). A key without a baseline compares
/// with zeros. Keys whose volume `sum(c_j + a_j)` is below `min_volume` are
/// skipped. Errors on NaN, infinite values, or a baseline shorter than `c`.
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
    let mut best: Vec<Scored<K>> = Vec::new();
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
        let score = metric.distance(c, a)?;
        let volume: f64 = c.iter().chain(a).sum();
        if volume < min_volume {
            continue;
        }
        best.push(Scored { key, score, volume });
        if k > 0 && best.len() >= (2 * k).max(64) {
            best.select_nth_unstable_by(k, rank);
            best.truncate(k);
        }
    }
    best.sort_by(rank);
    if k > 0 {
        best.truncate(k);
    }
    Ok(best)
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
