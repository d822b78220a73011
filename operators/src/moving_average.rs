//! Cumulative moving averages, alone and per key.
//!
//! After `n` observations the average is `a = (x_1 + ... + x_n) / n`. It is
//! updated in place, without the history: `n <- n + 1`,
//! `a <- a + (x - a) / n`.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};

use keyflow_dataflow::hash::StableMap;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

fn check(expected: usize, x: &[f64]) -> Result<()> {
    if x.len() != expected {
        return Err(Error::LengthMismatch {
            left: expected,
            right: x.len(),
        });
    }
    for (index, v) in x.iter().enumerate() {
        if v.is_nan() {
            return Err(Error::NaN { index });
        }
        if v.is_infinite() {
            return Err(Error::Infinite { index });
        }
    }
    Ok(())
}

/// Averages the `n`-th vector `x` into `values`, the averages of the
/// `n - 1` before it: `a_i <- a_i + (x_i - a_i) / n`, in place. `values`
/// and `x` are paired in order, and entries past the shorter of the two are
/// left alone; nothing is checked, so callers that take outside input check
/// it first (as [`CumulativeAverage::update`] does).
///
/// Code whose averages must agree to the bit with [`CumulativeAverage`] and
/// [`KeyedAverage`] calls this rather than restating the formula: the
/// mathematically equal `(a_i * (n - 1) + x_i) / n` can round differently.
///
/// # Examples
/// ```
/// use keyflow_operators::moving_average::average_in;
/// let mut a = [2.0, 10.0];
/// average_in(&mut a, [4.0, 0.0], 2);
/// average_in(&mut a, [9.0, 5.0], 3);
/// assert_eq!(a, [5.0, 5.0]);
/// ```
pub fn average_in(values: &mut [f64], x: impl IntoIterator<Item = f64>, n: u64) {
    let n = n as f64;
    for (a, x) in values.iter_mut().zip(x) {
        *a += (x - *a) / n;
    }
}

/// The elementwise average of the `n` vectors seen so far.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct CumulativeAverage {
    /// How many vectors were averaged.
    pub n: u64,
    /// The averages.
    pub values: Vec<f64>,
}

impl CumulativeAverage {
    /// An average of nothing yet, over vectors of length `len`.
    pub fn new(len: usize) -> Self {
        CumulativeAverage {
            n: 0,
            values: vec![0.0; len],
        }
    }

    /// Averages in `x`: `n <- n + 1`, then `a_i <- a_i + (x_i - a_i) / n`.
    /// A NaN, an infinite value or a length other than the average's is
    /// rejected and leaves the average unchanged.
    ///
    /// # Examples
    /// ```
    /// use keyflow_operators::moving_average::CumulativeAverage;
    /// let mut avg = CumulativeAverage::new(2);
    /// avg.update(&[2.0, 10.0]).unwrap();
    /// avg.update(&[4.0, 0.0]).unwrap();
    /// avg.update(&[9.0, 5.0]).unwrap();
    /// assert_eq!(avg, CumulativeAverage { n: 3, values: vec![5.0, 5.0] });
    /// assert!(avg.update(&[1.0]).is_err());
    /// assert!(avg.update(&[1.0, f64::NAN]).is_err());
    /// assert_eq!(avg.n, 3);
    /// ```
    pub fn update(&mut self, x: &[f64]) -> Result<()> {
        check(self.values.len(), x)?;
        self.n += 1;
        average_in(&mut self.values, x.iter().copied(), self.n);
        Ok(())
    }
}

/// Per-key averages over a shared count of periods (days, say).
///
/// Every key is averaged over the same `n` periods: a key without an
/// observation in a period counts zeros for it, and a key first seen in
/// period `n + 1` counts zeros for the `n` periods before. So after
/// [`KeyedAverage::update`] with day vectors `day`:
/// - a tracked key with `x` in `day`: `a <- a + (x - a) / (n + 1)`;
/// - a tracked key absent from `day`: `a <- a * n / (n + 1)` (x = 0);
/// - a new key with `x` in `day`: `a = x / (n + 1)`;
///
/// and then `n <- n + 1`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(bound(
    serialize = "K: Serialize + Eq + Hash",
    deserialize = "K: Deserialize<'de> + Eq + Hash"
))]
pub struct KeyedAverage<K> {
    /// Periods averaged.
    pub n: u64,
    /// Length of every vector.
    pub len: usize,
    /// The averages by key.
    pub values: StableMap<K, Vec<f64>>,
}

impl<K: Eq + Hash> PartialEq for KeyedAverage<K> {
    fn eq(&self, other: &Self) -> bool {
        self.n == other.n && self.len == other.len && self.values == other.values
    }
}

impl<K: Eq + Hash + Clone> KeyedAverage<K> {
    /// No periods yet, over vectors of length `len`.
    pub fn new(len: usize) -> Self {
        KeyedAverage {
            n: 0,
            len,
            values: StableMap::default(),
        }
    }

    /// The average of `key`, if tracked.
    pub fn get(&self, key: &K) -> Option<&[f64]> {
        self.values.get(key).map(Vec::as_slice)
    }

    /// Averages in one period's vectors (see the type's docs). Every vector
    /// is checked first, so on error nothing changes.
    ///
    /// # Examples
    /// ```
    /// use std::collections::HashMap;
    /// use keyflow_operators::moving_average::KeyedAverage;
    ///
    /// let mut base = KeyedAverage::new(2);
    /// base.update(&HashMap::from([("a", vec![4.0, 2.0])])).unwrap();
    /// base.update(&HashMap::from([("a", vec![2.0, 2.0]), ("b", vec![6.0, 3.0])])).unwrap();
    /// assert_eq!(base.get(&"a"), Some(&[3.0, 2.0][..]));
    /// assert_eq!(base.get(&"b"), Some(&[3.0, 1.5][..])); // zeros on day 1
    /// base.update(&HashMap::from([("b", vec![0.0, 1.5])])).unwrap();
    /// assert_eq!(base.n, 3);
    /// assert_eq!(base.get(&"a"), Some(&[2.0, 4.0 / 3.0][..])); // zeros on day 3
    /// assert_eq!(base.get(&"b"), Some(&[2.0, 1.5][..]));
    /// ```
    pub fn update<S: BuildHasher>(&mut self, day: &HashMap<K, Vec<f64>, S>) -> Result<()> {
        for x in day.values() {
            check(self.len, x)?;
        }
        let n = self.n as f64;
        let n1 = n + 1.0;
        for (key, a) in self.values.iter_mut() {
            match day.get(key) {
                Some(x) => average_in(a, x.iter().copied(), self.n + 1),
                None => a.iter_mut().for_each(|a| *a = *a * n / n1),
            }
        }
        for (key, x) in day {
            if !self.values.contains_key(key) {
                self.values
                    .insert(key.clone(), x.iter().map(|x| x / n1).collect());
            }
        }
        self.n += 1;
        Ok(())
    }

    /// Stops tracking keys whose averages sum to less than `min_total`
    /// (keys that have decayed towards zero). Returns how many were dropped.
    pub fn prune(&mut self, min_total: f64) -> usize {
        let before = self.values.len();
        self.values
            .retain(|_, a| a.iter().sum::<f64>() >= min_total);
        before - self.values.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_average_equals_plain_mean_with_zeros() {
        let days: Vec<HashMap<u32, Vec<f64>>> = vec![
            HashMap::from([(1, vec![3.0]), (2, vec![1.0])]),
            HashMap::from([(2, vec![5.0])]),
            HashMap::from([(3, vec![9.0]), (1, vec![6.0])]),
            HashMap::new(),
        ];
        let mut avg = KeyedAverage::new(1);
        for day in &days {
            avg.update(day).unwrap();
        }
        for key in 1..=3u32 {
            let total: f64 = days.iter().filter_map(|d| d.get(&key)).map(|x| x[0]).sum();
            let got = avg.get(&key).unwrap()[0];
            assert!((got - total / 4.0).abs() < 1e-12, "key {key}: {got}");
        }
        assert_eq!(avg.prune(2.0), 1); // key 3: 9/4 stays; key 2: 6/4 goes
        assert!(avg.get(&2).is_none());
    }

    #[test]
    fn bad_day_changes_nothing() {
        let mut avg = KeyedAverage::new(2);
        avg.update(&HashMap::from([(1, vec![1.0, 1.0])])).unwrap();
        let before = avg.clone();
        let bad = HashMap::from([(1, vec![1.0, 1.0]), (2, vec![f64::NAN, 0.0])]);
        assert!(matches!(avg.update(&bad), Err(Error::NaN { index: 0 })));
        assert_eq!(avg, before);
        let json = serde_json::to_string(&avg).unwrap();
        let back: KeyedAverage<u32> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, avg);
    }
}
