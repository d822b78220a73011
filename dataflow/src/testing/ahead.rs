//! Checks that a [`ChunkRead`] reads ahead exactly as it reads in place.

use crate::source::{AheadPartition, Batch, ChunkRead, Partition, PollStatus, ReadAheadWhen};
use crate::time::EventTime;

/// What one poll handed out: its records, its bad records (each as
/// `location: reason`) and its status.
pub type Polled<T> = (Vec<(EventTime, T)>, Vec<String>, PollStatus);

/// Polls to the end with room for `limits[i]` items at poll `i` (4,096
/// past the last), pausing right after the polls listed in `pauses`.
/// Returns every poll, and whether a thread read ahead at any point.
///
/// # Panics
/// If a poll fails, the partition is not done after 10,000 polls, or it
/// is done while a thread still has its reader.
pub fn poll_to_end<T, R>(
    partition: &mut AheadPartition<T, R>,
    limits: &[usize],
    pauses: &[usize],
) -> (Vec<Polled<T>>, bool)
where
    T: Send + 'static,
    R: ChunkRead<T>,
{
    let mut out = Vec::new();
    let mut ahead = false;
    for i in 0..10_000 {
        let mut batch = Batch::new(limits.get(i).copied().unwrap_or(4096));
        let status = partition.poll(&mut batch).expect("poll");
        ahead |= partition.is_reading_ahead();
        let bad = batch
            .bad
            .iter()
            .map(|b| format!("{}: {}", b.location, b.reason))
            .collect();
        out.push((std::mem::take(&mut batch.records), bad, status));
        if pauses.contains(&i) {
            partition.pause();
        }
        if status == PollStatus::Done {
            assert!(
                !partition.is_reading_ahead() && partition.reader().is_some(),
                "a partition that is done has its reader back"
            );
            return (out, ahead);
        }
    }
    panic!("not done after 10,000 polls");
}

/// Skips `n` items, as a partition resumed from a checkpoint does before
/// its first poll.
fn skipped<T, R>(mut partition: AheadPartition<T, R>, n: u64) -> AheadPartition<T, R>
where
    T: Send + 'static,
    R: ChunkRead<T>,
{
    let mut skipped = 0;
    while skipped < n {
        let (more, status) = partition.skip(n - skipped).expect("skip");
        skipped += more;
        if status == PollStatus::Done {
            break;
        }
    }
    partition
}

/// A priming poll first (no thread starts on it), then large ones, some
/// cutting a chunk, and a small one among them.
const LIMITS: [usize; 8] = [16, 2000, 1024, 5000, 1500, 3, 4096, 1100];

/// Checks that each of `partitions` partitions that `open` makes hands
/// out, poll by poll, the same records and bad records read ahead as read
/// in place: straight through, with pauses (which close the input), and
/// resumed after skipping 3,000 items. Returns how many items (records
/// and bad ones) the partitions held. A test of a custom [`ChunkRead`]
/// calls it with inputs of a few thousand items or more, so that reading
/// ahead crosses chunks.
///
/// # Panics
/// Where the polls differ, or reading ahead never starts on an input with
/// more than one poll's worth of items.
///
/// # Examples
/// ```
/// use std::collections::VecDeque;
/// use keyflow_dataflow::source::{AheadPartition, BadRecord, ChunkRead, PollStatus, Stopped};
/// use keyflow_dataflow::testing::check_read_ahead;
///
/// /// Counts up to 10,000; every tenth number is malformed.
/// struct Count(u64);
/// impl ChunkRead<u64> for Count {
///     fn read(&mut self, room: usize, records: &mut Vec<(u64, u64)>, bad: &mut VecDeque<(usize, BadRecord)>) -> keyflow_dataflow::Result<(usize, Stopped)> {
///         for read in 0..room {
///             match self.0 {
///                 10_000 => return Ok((read, Stopped::End)),
///                 n if n % 10 == 9 => bad.push_back((records.len(), BadRecord::new(format!("#{n}"), "nines"))),
///                 n => records.push((n, n)),
///             }
///             self.0 += 1;
///         }
///         Ok((room, Stopped::Full))
///     }
///     fn is_open(&self) -> bool { true }
///     fn offset(&self) -> u64 { self.0 }
///     fn skip(&mut self, n: u64) -> keyflow_dataflow::Result<(u64, PollStatus)> {
///         let n = n.min(10_000 - self.0);
///         self.0 += n;
///         Ok((n, if self.0 == 10_000 { PollStatus::Done } else { PollStatus::Ready }))
///     }
///     fn pause(&mut self) {}
/// }
///
/// assert_eq!(check_read_ahead(1, |_| AheadPartition::new(Count(0))), 10_000);
/// ```
pub fn check_read_ahead<T, R>(
    partitions: usize,
    open: impl Fn(usize) -> AheadPartition<T, R>,
) -> usize
where
    T: Send + PartialEq + std::fmt::Debug + 'static,
    R: ChunkRead<T>,
{
    let mut items = 0;
    for index in 0..partitions {
        let (here, ahead) = poll_to_end(
            &mut open(index).read_ahead(ReadAheadWhen::Never),
            &LIMITS,
            &[],
        );
        assert!(!ahead, "partition {index} read ahead when told never to");
        items += here.iter().map(|p| p.0.len() + p.1.len()).sum::<usize>();
        for pauses in [&[][..], &[1, 2, 4][..]] {
            let mut p = open(index).read_ahead(ReadAheadWhen::Always);
            let (there, ahead) = poll_to_end(&mut p, &LIMITS, pauses);
            assert!(
                ahead || here.len() <= 2,
                "partition {index}: a large poll of an open input reads ahead"
            );
            assert_eq!(there, here, "partition {index}, pauses {pauses:?}");
        }
        let resumed = |when| skipped(open(index).read_ahead(when), 3000);
        let (there, ahead) = poll_to_end(&mut resumed(ReadAheadWhen::Always), &[1024], &[]);
        let (here, _) = poll_to_end(&mut resumed(ReadAheadWhen::Never), &[1024], &[]);
        assert_eq!(there, here, "partition {index}, resumed");
        assert!(
            ahead || here.len() == 1,
            "partition {index}: a resumed partition reads ahead"
        );
    }
    items
}
