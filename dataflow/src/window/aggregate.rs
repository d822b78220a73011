//! Aggregations: a general aggregator (add / merge / finish) and the
//! conveniences `count`, `sum`, `fold` and `reduce` built on it.
//!
//! Every aggregator can merge partial results, which is what lets keyflow
//! combine records locally before the keyed exchange and combine sliding
//! windows from shared panes.

use std::marker::PhantomData;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::Error;
use crate::time::{format_utc, EventTime};
use crate::Data;

/// A general aggregation over the values `V` of one key and window.
///
/// `merge` must agree with `add`: adding values to two accumulators and
/// merging them gives what adding all values to one gives, in any order.
/// That is what makes results independent of the number of workers.
pub trait Aggregator<V>: Clone + 'static {
    /// The partial result, shipped between workers.
    type Acc: Data;
    /// The result of a window.
    type Output: Data;
    /// An empty accumulator.
    fn init(&self) -> Self::Acc;
    /// Adds one value.
    fn add(&self, acc: &mut Self::Acc, value: V);
    /// Adds another accumulator.
    fn merge(&self, acc: &mut Self::Acc, other: &Self::Acc);
    /// Turns the accumulator into the window's result.
    fn finish(&self, acc: &Self::Acc) -> Self::Output;
    /// Whether `acc` holds a true result, checked before a window's result
    /// is made: an aggregator whose accumulator can pass what its type
    /// holds (a sum) says why not here, and the window's step fails naming
    /// the key and the window instead of giving a wrong value. The default
    /// accepts every accumulator.
    fn check(&self, _acc: &Self::Acc) -> std::result::Result<(), String> {
        Ok(())
    }
}

/// Counts values.
#[derive(Debug, Clone, Copy, Default)]
pub struct Count;

impl<V> Aggregator<V> for Count {
    type Acc = u64;
    type Output = u64;
    fn init(&self) -> u64 {
        0
    }
    #[inline]
    fn add(&self, acc: &mut u64, _value: V) {
        *acc += 1;
    }
    fn merge(&self, acc: &mut u64, other: &u64) {
        *acc += *other;
    }
    fn finish(&self, acc: &u64) -> u64 {
        *acc
    }
}

/// Sums values. An integer sum stops at its type's limit instead of
/// wrapping around, and a window whose sum reached the limit fails its
/// step, naming the key and the window (see [`Aggregator::check`]); so
/// where sums can come near it, sum into a wider type. (A sum exactly at
/// the limit fails too: it cannot be told from one that went past it.)
/// Floats sum as IEEE 754 does.
///
/// ```
/// use keyflow_dataflow::window::{Aggregator, Sum};
/// let sum = Sum::<u64>::new();
/// let mut acc = sum.init();
/// sum.add(&mut acc, 2);
/// sum.merge(&mut acc, &3);
/// assert_eq!(sum.finish(&acc), 5);
/// let bytes = Sum::<u8>::new();
/// let mut acc = bytes.init();
/// bytes.add(&mut acc, 200);
/// bytes.add(&mut acc, 100);
/// assert!(bytes.check(&acc).unwrap_err().contains("u8::MAX"));
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct Sum<V>(PhantomData<V>);

impl<V> Sum<V> {
    /// A summing aggregator.
    pub fn new() -> Self {
        Sum(PhantomData)
    }
}

/// A value [`Sum`] can sum: the integer and float types.
pub trait SumValue: Data + Default {
    /// Adds `other`, stopping at the type's limit.
    fn sum_in(&mut self, other: &Self);
    /// The limit `self` is at (`"u64::MAX"`), if it is at one.
    fn at_limit(&self) -> Option<&'static str>;
}

macro_rules! integer_sums {
    ($($t:ty),*) => {$(
        impl SumValue for $t {
            #[inline]
            fn sum_in(&mut self, other: &Self) {
                *self = self.saturating_add(*other);
            }
            fn at_limit(&self) -> Option<&'static str> {
                if *self == <$t>::MAX {
                    Some(concat!(stringify!($t), "::MAX"))
                } else if *self == <$t>::MIN && <$t>::MIN != 0 {
                    // An unsigned type's minimum, 0, is no limit: nothing
                    // added to a sum takes it below 0.
                    Some(concat!(stringify!($t), "::MIN"))
                } else {
                    None
                }
            }
        }
    )*};
}

integer_sums!(u8, u16, u32, u64, u128, usize, i8, i16, i32, i64, i128, isize);

impl SumValue for f32 {
    #[inline]
    fn sum_in(&mut self, other: &Self) {
        *self += *other;
    }
    fn at_limit(&self) -> Option<&'static str> {
        None
    }
}

impl SumValue for f64 {
    #[inline]
    fn sum_in(&mut self, other: &Self) {
        *self += *other;
    }
    fn at_limit(&self) -> Option<&'static str> {
        None
    }
}

impl<V: SumValue> Aggregator<V> for Sum<V> {
    type Acc = V;
    type Output = V;
    fn init(&self) -> V {
        V::default()
    }
    #[inline]
    fn add(&self, acc: &mut V, value: V) {
        acc.sum_in(&value);
    }
    fn merge(&self, acc: &mut V, other: &V) {
        acc.sum_in(other);
    }
    fn finish(&self, acc: &V) -> V {
        acc.clone()
    }
    fn check(&self, acc: &V) -> std::result::Result<(), String> {
        match acc.at_limit() {
            Some(limit) => Err(format!(
                "the sum reached {limit}, the most its type holds; sum into a wider type"
            )),
            None => Ok(()),
        }
    }
}

/// The result of `key`'s window `[start, end)`, or `None` where `agg`
/// refuses the accumulator (see [`Aggregator::check`]): the first refusal
/// goes to `refused`, for the window's step to fail with.
pub(crate) fn result_of<V, K: std::fmt::Debug, G: Aggregator<V>>(
    agg: &G,
    acc: &G::Acc,
    (key, start, end): (&K, EventTime, EventTime),
    refused: &mut Option<Error>,
) -> Option<G::Output> {
    match agg.check(acc) {
        Ok(()) => Some(agg.finish(acc)),
        Err(reason) => {
            refused.get_or_insert_with(|| Error::BadInput {
                location: format!(
                    "key {key:?}, window {} to {}",
                    format_utc(start),
                    format_utc(end)
                ),
                reason,
            });
            None
        }
    }
}

/// Combines values with an associative, commutative function.
#[derive(Clone)]
pub struct Reduce<F>(pub F);

impl<V, F> Aggregator<V> for Reduce<F>
where
    V: Data,
    F: Fn(&V, &V) -> V + Clone + 'static,
{
    type Acc = Option<V>;
    type Output = V;
    fn init(&self) -> Option<V> {
        None
    }
    fn add(&self, acc: &mut Option<V>, value: V) {
        *acc = Some(match acc.take() {
            Some(a) => (self.0)(&a, &value),
            None => value,
        });
    }
    fn merge(&self, acc: &mut Option<V>, other: &Option<V>) {
        if let Some(o) = other {
            *acc = Some(match acc.take() {
                Some(a) => (self.0)(&a, o),
                None => o.clone(),
            });
        }
    }
    fn finish(&self, acc: &Option<V>) -> V {
        acc.clone()
            .expect("a fired window has at least one value, so its reduce accumulator is set")
    }
}

/// Folds a window's values in order, from an initial value.
///
/// A fold need not be associative, so its values are collected and folded in
/// sorted order when the window fires: that keeps the result the same at any
/// worker count. Prefer [`Aggregator`] or [`Reduce`] when the function allows
/// merging, as they keep less state.
#[derive(Clone)]
pub struct Fold<R, F> {
    init: R,
    step: F,
}

impl<R, F> Fold<R, F> {
    /// A fold starting at `init` that applies `step` to each value.
    pub fn new(init: R, step: F) -> Self {
        Fold { init, step }
    }
}

impl<V, R, F> Aggregator<V> for Fold<R, F>
where
    V: Data + Ord + Serialize + DeserializeOwned,
    R: Data,
    F: Fn(R, &V) -> R + Clone + 'static,
{
    type Acc = Vec<V>;
    type Output = R;
    fn init(&self) -> Vec<V> {
        Vec::new()
    }
    fn add(&self, acc: &mut Vec<V>, value: V) {
        acc.push(value);
    }
    fn merge(&self, acc: &mut Vec<V>, other: &Vec<V>) {
        acc.extend(other.iter().cloned());
    }
    fn finish(&self, acc: &Vec<V>) -> R {
        let mut values: Vec<&V> = acc.iter().collect();
        values.sort();
        values
            .into_iter()
            .fold(self.init.clone(), |r, v| (self.step)(r, v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split_merge<A: Aggregator<u64>>(agg: &A, values: &[u64]) -> A::Output {
        let (a, b) = values.split_at(values.len() / 2);
        let mut left = agg.init();
        let mut right = agg.init();
        b.iter().for_each(|v| agg.add(&mut right, *v));
        a.iter().rev().for_each(|v| agg.add(&mut left, *v));
        agg.merge(&mut left, &right);
        agg.finish(&left)
    }

    #[test]
    fn merging_agrees_with_adding() {
        let values = [5u64, 1, 9, 3, 3, 7];
        assert_eq!(split_merge(&Count, &values), 6);
        assert_eq!(split_merge(&Sum::<u64>::new(), &values), 28);
        assert_eq!(
            split_merge(&Reduce(|a: &u64, b: &u64| *a.max(b)), &values),
            9
        );
        let digits = Fold::new(0u64, |r, v: &u64| r * 10 + v);
        assert_eq!(split_merge(&digits, &values), 133_579);
    }
}
