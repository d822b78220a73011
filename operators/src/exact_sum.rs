//! A sum of floating-point numbers that does not depend on their order.
//!
//! Adding `f64`s one by one rounds after every addition, so the same values
//! added in another order (as they are when a windowed aggregation combines
//! partial results from another number of workers) can give a different
//! last bit. [`ExactSum`] keeps the sum without rounding, as a short list of
//! non-overlapping partials (Shewchuk's algorithm, the one behind Python's
//! `math.fsum`), and rounds once, correctly, when read. Its value is
//! therefore the same for any order and any grouping of the additions, which
//! is what an [`Aggregator`](keyflow_dataflow::window::Aggregator) that
//! averages floats needs for results that are identical at every layout.

use serde::{Deserialize, Serialize};

/// The exact sum of finite `f64`s, rounded to the nearest `f64` (ties to
/// even) only by [`ExactSum::value`].
///
/// The partial sums must stay finite: keep the sum of the magnitudes of
/// the values added below `f64::MAX`, or the value may be infinite or NaN.
///
/// # Examples
/// ```
/// use keyflow_operators::exact_sum::ExactSum;
///
/// let values = [1e16, 1.0, -1e16, 0.1, 0.2];
/// let mut forward = ExactSum::default();
/// values.iter().for_each(|v| forward.add(*v));
/// let mut left = ExactSum::default();
/// values[3..].iter().rev().for_each(|v| left.add(*v));
/// let mut right = ExactSum::default();
/// values[..3].iter().for_each(|v| right.add(*v));
/// left.merge(&right);
/// assert_eq!(forward.value(), left.value());
/// assert_eq!(forward.value(), 1.3); // a naive sum from the left gives 0.30000000000000004
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ExactSum {
    /// Non-overlapping partials in increasing magnitude; their exact sum is
    /// the sum of everything added.
    partials: Vec<f64>,
}

impl ExactSum {
    /// Adds `x` exactly.
    pub fn add(&mut self, mut x: f64) {
        let mut kept = 0;
        for i in 0..self.partials.len() {
            let mut y = self.partials[i];
            if x.abs() < y.abs() {
                std::mem::swap(&mut x, &mut y);
            }
            let hi = x + y;
            let lo = y - (hi - x);
            if lo != 0.0 {
                self.partials[kept] = lo;
                kept += 1;
            }
            x = hi;
        }
        self.partials.truncate(kept);
        self.partials.push(x);
    }

    /// Adds everything `other` holds, exactly.
    pub fn merge(&mut self, other: &ExactSum) {
        for &x in &other.partials {
            self.add(x);
        }
    }

    /// The sum, correctly rounded to an `f64` (0 when nothing was added).
    pub fn value(&self) -> f64 {
        let p = &self.partials;
        let Some(mut n) = p.len().checked_sub(1) else {
            return 0.0;
        };
        let mut hi = p[n];
        let mut lo = 0.0;
        // Sum from the largest partial down until the rest no longer
        // changes the rounded result.
        while n > 0 {
            n -= 1;
            let x = hi;
            let y = p[n];
            hi = x + y;
            lo = y - (hi - x);
            if lo != 0.0 {
                break;
            }
        }
        // Round half to even correctly: if the remainder `lo` sits exactly
        // halfway and the partials below push the same way, round away.
        if n > 0 && ((lo < 0.0 && p[n - 1] < 0.0) || (lo > 0.0 && p[n - 1] > 0.0)) {
            let y = lo * 2.0;
            let x = hi + y;
            if y == x - hi {
                hi = x;
            }
        }
        hi
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum_of(values: &[f64]) -> f64 {
        let mut s = ExactSum::default();
        values.iter().for_each(|v| s.add(*v));
        s.value()
    }

    #[test]
    fn agrees_with_python_fsum() {
        // Values and results from CPython's test_math.testFsum.
        assert_eq!(sum_of(&[]), 0.0);
        assert_eq!(
            sum_of(&[1e100, 1.0, -1e100, 1e-100, 1e50, -1.0, -1e50]),
            1e-100
        );
        assert_eq!(
            sum_of(&[2.0f64.powi(53), -0.5, -2.0f64.powi(-54)]),
            2.0f64.powi(53) - 1.0
        );
        assert_eq!(
            sum_of(&[2.0f64.powi(53), 1.0, 2.0f64.powi(-100)]),
            2.0f64.powi(53) + 2.0
        );
        assert_eq!(sum_of(&[0.1; 10]), 1.0);
    }

    #[test]
    fn order_and_grouping_do_not_matter() {
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        for _ in 0..200 {
            let values: Vec<f64> = (0..(next() % 40))
                .map(|_| {
                    let mantissa = (next() % 2_000_000) as f64 - 1_000_000.0;
                    mantissa * 10f64.powi((next() % 30) as i32 - 15)
                })
                .collect();
            let forward = sum_of(&values);
            let mut reversed = values.clone();
            reversed.reverse();
            assert_eq!(forward.to_bits(), sum_of(&reversed).to_bits(), "{values:?}");
            let cut = values.len() / 3;
            let (mut a, mut b) = (ExactSum::default(), ExactSum::default());
            values[..cut].iter().for_each(|v| a.add(*v));
            values[cut..].iter().rev().for_each(|v| b.add(*v));
            b.merge(&a);
            assert_eq!(forward.to_bits(), b.value().to_bits(), "{values:?}");
        }
    }

    #[test]
    fn integers_sum_exactly() {
        let values: Vec<f64> = (0..1000).map(|i| (i * 37 % 1920) as f64).collect();
        let exact: i64 = (0..1000).map(|i| i * 37 % 1920).sum();
        assert_eq!(sum_of(&values), exact as f64);
    }
}
