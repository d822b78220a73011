//! A source over in-memory iterators, one per partition.

use std::rc::Rc;

use super::{Batch, Partition, PollStatus, Source};
use crate::error::Result;
use crate::time::EventTime;

/// A source whose partition `p` is the iterator `make(p)` of
/// `(event time, item)` pairs. Bounded iterators end their partition.
///
/// # Examples
/// ```
/// use keyflow_dataflow::source::{IterSource, Source};
/// let src = IterSource::new("evens", 2, |p| (0..3u64).map(move |i| (i, 2 * i + p as u64)));
/// assert_eq!(src.partitions(), 2);
/// ```
pub struct IterSource<T, I> {
    name: String,
    partitions: usize,
    make: Rc<dyn Fn(usize) -> I>,
    _item: std::marker::PhantomData<T>,
}

impl<T, I> IterSource<T, I>
where
    I: Iterator<Item = (EventTime, T)> + 'static,
{
    /// A source named `name` with `partitions` partitions built by `make`.
    pub fn new(name: &str, partitions: usize, make: impl Fn(usize) -> I + 'static) -> Self {
        IterSource {
            name: name.to_string(),
            partitions,
            make: Rc::new(make),
            _item: std::marker::PhantomData,
        }
    }
}

struct IterPartition<I> {
    iter: I,
    read: u64,
}

impl<T, I: Iterator<Item = (EventTime, T)>> Partition<T> for IterPartition<I> {
    fn poll(&mut self, batch: &mut Batch<T>) -> Result<PollStatus> {
        while !batch.is_full() {
            match self.iter.next() {
                Some((ts, item)) => {
                    self.read += 1;
                    batch.push(ts, item);
                }
                None => return Ok(PollStatus::Done),
            }
        }
        Ok(PollStatus::Ready)
    }

    fn offset(&self) -> u64 {
        self.read
    }
}

impl<T: 'static, I> Source for IterSource<T, I>
where
    I: Iterator<Item = (EventTime, T)> + 'static,
{
    type Item = T;

    fn name(&self) -> String {
        self.name.clone()
    }

    fn partitions(&self) -> usize {
        self.partitions
    }

    fn open(&self, index: usize) -> Result<Box<dyn Partition<T>>> {
        Ok(Box::new(IterPartition {
            iter: (self.make)(index),
            read: 0,
        }))
    }
}
