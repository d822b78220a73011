//! Reading a partition ahead, on a thread of its own.
//!
//! A worker that reads a large file spends much of its time reading lines
//! and parsing them. Where the process has a core to spare, a partition
//! hands that work to a thread beside its worker, as Flink's sources hand
//! theirs to a split fetcher: the thread fills chunks of parsed records in
//! file order and the worker takes them through a bounded channel. The
//! worker's polls return the same items in the same order, cut at the same
//! places, as reading in place would, so what a job computes, and what a
//! checkpoint counts, never depend on whether a core was spare.

use std::cell::Cell;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;

use super::{BadRecord, Batch, Partition, PollStatus};
use crate::error::{Error, Result};
use crate::time::EventTime;

/// Items (good or bad) a chunk holds at most.
const CHUNK: usize = 2048;

/// Chunks the thread may have ready before it waits for the worker.
const READY: usize = 4;

/// The least room a poll must have to start reading ahead: priming polls
/// that read a few lines of a split, to learn where its records start, do
/// not start a thread that would read the split far ahead.
const READ_AHEAD_ROOM: usize = 1024;

/// Why a [`ChunkRead::read`] stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// It read as many items as it had room for.
    Full,
    /// The input is read to its end.
    End,
    /// The input is not open yet: other files hold every place among the
    /// [`MAX_OPEN_INPUTS`](super::MAX_OPEN_INPUTS).
    Wait,
}

/// A partition's reader that can move to a thread of its own and read
/// there (see [`AheadPartition`]).
pub trait ChunkRead<T>: Send + 'static {
    /// Reads up to `room` items in input order: each record to `records`,
    /// each malformed one to `bad` with how many of `records` come before
    /// it. Returns how many items it read and why it stopped. Every item
    /// read is in `records` or `bad` when it returns, after an error too.
    fn read(
        &mut self,
        room: usize,
        records: &mut Vec<(EventTime, T)>,
        bad: &mut VecDeque<(usize, BadRecord)>,
    ) -> Result<(usize, Stopped)>;

    /// Whether its input is open: a thread only starts on an open input,
    /// so that it never waits for a place among the open inputs.
    fn is_open(&self) -> bool;

    /// As [`Partition::offset`].
    fn offset(&self) -> u64;

    /// As [`Partition::skip`], on the worker's thread.
    fn skip(&mut self, n: u64) -> Result<(u64, PollStatus)>;

    /// As [`Partition::pause`], on the worker's thread.
    fn pause(&mut self);

    /// What it reads, such as a file's path, for errors that happen
    /// outside its own calls.
    fn describe(&self) -> String {
        "an input".to_string()
    }
}

/// When an [`AheadPartition`] reads ahead on a thread of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReadAheadWhen {
    /// When the process has a core to spare (see
    /// [`spare_core`](crate::run::spare_core)): the default.
    #[default]
    SpareCore,
    /// Whenever a poll asks for enough (for tests).
    Always,
    /// Never.
    Never,
}

thread_local! {
    /// Whether a partition of this worker reads ahead. One at a time per
    /// worker: partitions read alongside each other (many whole files)
    /// would otherwise each start a thread.
    static CLAIMED: Cell<bool> = const { Cell::new(false) };
}

/// This worker's one read-ahead thread, held while it runs.
struct Claim;

impl Claim {
    fn take() -> Option<Claim> {
        (!CLAIMED.replace(true)).then_some(Claim)
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        CLAIMED.set(false);
    }
}

/// A run of items read in input order.
struct Chunk<T> {
    records: Vec<(EventTime, T)>,
    /// Malformed items, each with how many of `records` come before it.
    bad: VecDeque<(usize, BadRecord)>,
    /// Whether it came with no items at all (the input had to wait).
    empty: bool,
    /// Set on the last chunk: the input's end, or why reading failed.
    end: Option<Result<()>>,
}

impl<T> Chunk<T> {
    fn is_drained(&self) -> bool {
        self.records.is_empty() && self.bad.is_empty()
    }

    /// Moves up to `room` items into `batch`, in input order; returns how
    /// many it moved.
    fn serve(&mut self, batch: &mut Batch<T>, mut room: usize) -> usize {
        let mut moved = 0;
        while room > 0 && !self.is_drained() {
            let n = match self.bad.front() {
                Some((0, _)) => {
                    let (_, bad) = self.bad.pop_front().expect("a bad item is next");
                    batch.bad.push(bad);
                    room -= 1;
                    moved += 1;
                    continue;
                }
                Some(&(good, _)) => good.min(room),
                None => self.records.len().min(room),
            };
            if n == self.records.len() {
                // The usual case: the whole chunk, moved without a copy
                // of each record.
                batch.records.append(&mut self.records);
            } else {
                batch.records.extend(self.records.drain(..n));
            }
            for bad in &mut self.bad {
                bad.0 -= n;
            }
            room -= n;
            moved += n;
        }
        moved
    }
}

/// A thread reading ahead of its worker, and what it has read that the
/// worker has not taken yet.
struct ReadAhead<T: Send + 'static, R: ChunkRead<T>> {
    chunks: Option<Receiver<Chunk<T>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<R>>,
    /// Received and not yet handed out, oldest first.
    ready: VecDeque<Chunk<T>>,
    /// Held while the thread runs.
    claim: Option<Claim>,
}

/// What a poll of the read-ahead found.
enum Served<R> {
    /// Items were handed out (perhaps none, if the batch had no room) and
    /// more may follow.
    More,
    /// Everything read ahead is handed out and the thread is gone, with
    /// the reader it gave back (none if `stop` took it): the reader reads
    /// on, and is at its end if the input is.
    Over(Option<R>),
}

impl<T: Send + 'static, R: ChunkRead<T>> ReadAhead<T, R> {
    fn start(claim: Claim, reader: R) -> std::io::Result<ReadAhead<T, R>> {
        let (send, chunks) = sync_channel(READY);
        let stop = Arc::new(AtomicBool::new(false));
        let halt = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("keyflow:read-ahead".into())
            .spawn(move || fetch(reader, send, &halt))?;
        Ok(ReadAhead {
            chunks: Some(chunks),
            stop,
            thread: Some(thread),
            ready: VecDeque::new(),
            claim: Some(claim),
        })
    }

    /// Hands out up to the batch's room of items in input order, waiting
    /// for the thread when nothing read is left. Read errors come out
    /// where they happened in the input.
    fn poll(&mut self, batch: &mut Batch<T>) -> Result<Served<R>> {
        let mut room = batch.room();
        loop {
            if let Some(chunk) = self.ready.front_mut() {
                room -= chunk.serve(batch, room);
                if !chunk.is_drained() {
                    return Ok(Served::More);
                }
                let chunk = self.ready.pop_front().expect("front above");
                if let Some(Err(e)) = chunk.end {
                    self.stop();
                    return Err(e);
                }
                if chunk.empty || room == 0 {
                    // An empty chunk: the input waits for a place, held by
                    // other partitions that this worker must go on to read.
                    return Ok(Served::More);
                }
                continue;
            }
            match self.chunks.as_ref().map(Receiver::recv) {
                Some(Ok(chunk)) => self.ready.push_back(chunk),
                // The thread has sent its last chunk (or was stopped, by
                // `stop`, and what it sent is all handed out).
                Some(Err(_)) | None => return Ok(Served::Over(self.stop())),
            }
        }
    }

    /// Stops the thread and takes back its reader, now at the end of what
    /// was read ahead (`None` if stopped before); the chunks it sent stay
    /// in `ready` for later polls.
    fn stop(&mut self) -> Option<R> {
        let thread = self.thread.take()?;
        self.stop.store(true, Ordering::Release);
        if let Some(chunks) = self.chunks.take() {
            // Draining lets a thread waiting to send see the stop.
            while let Ok(chunk) = chunks.recv() {
                self.ready.push_back(chunk);
            }
        }
        let back = match thread.join() {
            Ok(back) => back,
            // The thread only reads and parses; a panic there is a bug to
            // surface.
            Err(payload) => std::panic::resume_unwind(payload),
        };
        self.claim = None;
        Some(back)
    }
}

/// The thread: reads chunks until the input ends, the worker stops it or
/// the channel closes; gives back the reader.
fn fetch<T, R: ChunkRead<T>>(mut reader: R, chunks: SyncSender<Chunk<T>>, stop: &AtomicBool) -> R {
    loop {
        let mut chunk = Chunk {
            records: Vec::with_capacity(CHUNK),
            bad: VecDeque::new(),
            empty: false,
            end: None,
        };
        match reader.read(CHUNK, &mut chunk.records, &mut chunk.bad) {
            Ok((_, Stopped::End)) => chunk.end = Some(Ok(())),
            // Started on an open input, which keeps its place to its end:
            // not expected, but then hand over what is read.
            Ok((0, Stopped::Wait)) => {
                std::thread::sleep(std::time::Duration::from_millis(1));
                chunk.empty = true;
            }
            Ok(_) => {}
            Err(e) => chunk.end = Some(Err(e)),
        }
        let last = chunk.end.is_some();
        if chunks.send(chunk).is_err() || last || stop.load(Ordering::Acquire) {
            return reader;
        }
    }
}

/// A partition read in place, or ahead on a thread of its own where the
/// process has a core to spare: the reading and parsing of its reader
/// then overlap with its worker's work. Each poll hands out exactly the
/// items that reading in place would (records and bad ones, in input
/// order, cut at the poll's room), so lateness, checkpoints and outputs do
/// not change. A thread starts only on a poll with room for at least 1,024
/// items of an open input, and at most one partition per worker reads
/// ahead at a time. [`JsonLinesSource`](super::JsonLinesSource) and
/// [`CsvSource`](super::CsvSource) partitions read this way when asked to
/// (their `read_ahead`); the trending and activity jobs' JSON-lines
/// inputs wherever a core is spare.
///
/// # Examples
/// ```
/// use std::collections::VecDeque;
/// use keyflow_dataflow::source::{AheadPartition, BadRecord, Batch, ChunkRead, Partition, PollStatus, ReadAheadWhen, Stopped};
///
/// /// Counts up to `end`; every tenth number is malformed.
/// struct Count { next: u64, end: u64 }
/// impl ChunkRead<u64> for Count {
///     fn read(&mut self, room: usize, records: &mut Vec<(u64, u64)>, bad: &mut VecDeque<(usize, BadRecord)>) -> keyflow_dataflow::Result<(usize, Stopped)> {
///         for read in 0..room {
///             if self.next == self.end {
///                 return Ok((read, Stopped::End));
///             }
///             match self.next % 10 {
///                 9 => bad.push_back((records.len(), BadRecord::new(format!("#{}", self.next), "nines are bad"))),
///                 _ => records.push((self.next, self.next)),
///             }
///             self.next += 1;
///         }
///         Ok((room, Stopped::Full))
///     }
///     fn is_open(&self) -> bool { true }
///     fn offset(&self) -> u64 { self.next }
///     fn skip(&mut self, n: u64) -> keyflow_dataflow::Result<(u64, PollStatus)> {
///         let n = n.min(self.end - self.next);
///         self.next += n;
///         Ok((n, if self.next == self.end { PollStatus::Done } else { PollStatus::Ready }))
///     }
///     fn pause(&mut self) {}
/// }
///
/// let mut p = AheadPartition::new(Count { next: 0, end: 5000 }).read_ahead(ReadAheadWhen::Always);
/// let mut batch = Batch::new(1500);
/// assert_eq!(p.poll(&mut batch)?, PollStatus::Ready);
/// assert!(p.is_reading_ahead());
/// assert_eq!((batch.records.len(), batch.bad.len()), (1350, 150));
/// assert_eq!(batch.records.last(), Some(&(1498, 1498)));
/// # Ok::<(), keyflow_dataflow::Error>(())
/// ```
pub struct AheadPartition<T: Send + 'static, R: ChunkRead<T>> {
    /// The reader; `None` while a read-ahead thread has it.
    reader: Option<R>,
    ahead: Option<ReadAhead<T, R>>,
    when: ReadAheadWhen,
    /// Bad items read in place, before they move to the batch.
    bad: VecDeque<(usize, BadRecord)>,
}

impl<T: Send + 'static, R: ChunkRead<T>> AheadPartition<T, R> {
    /// A partition that reads with `reader`, ahead where a core is spare.
    pub fn new(reader: R) -> Self {
        AheadPartition {
            reader: Some(reader),
            ahead: None,
            when: ReadAheadWhen::SpareCore,
            bad: VecDeque::new(),
        }
    }

    /// The same, reading ahead `when`.
    pub fn read_ahead(mut self, when: ReadAheadWhen) -> Self {
        self.when = when;
        self
    }

    /// Whether a thread reads ahead, or has read what is not yet handed
    /// out.
    pub fn is_reading_ahead(&self) -> bool {
        self.ahead.is_some()
    }

    /// The reader, when no read-ahead has it.
    pub fn reader(&self) -> Option<&R> {
        self.reader.as_ref()
    }

    /// Whether a poll with room for `room` items starts reading ahead.
    fn starts_reading_ahead(&self, room: usize) -> bool {
        let open = self.reader.as_ref().is_some_and(R::is_open);
        let when = match self.when {
            ReadAheadWhen::SpareCore => crate::run::spare_core(),
            ReadAheadWhen::Always => true,
            ReadAheadWhen::Never => false,
        };
        open && room >= READ_AHEAD_ROOM && when
    }

    /// Hands out what the read-ahead has read; `None` once it is over and
    /// the reader is back here to read on in place.
    fn poll_ahead(&mut self, batch: &mut Batch<T>) -> Result<Option<PollStatus>> {
        let Some(ahead) = self.ahead.as_mut() else {
            return Ok(None);
        };
        match ahead.poll(batch)? {
            Served::More => Ok(Some(PollStatus::Ready)),
            Served::Over(back) => {
                self.ahead = None;
                if let Some(reader) = back {
                    self.reader = Some(reader);
                }
                Ok(None)
            }
        }
    }

    /// Reads in place into `batch`.
    fn poll_here(&mut self, batch: &mut Batch<T>) -> Result<PollStatus> {
        let reader = self
            .reader
            .as_mut()
            .expect("no read-ahead holds the reader");
        let read = reader.read(batch.room(), &mut batch.records, &mut self.bad);
        batch.bad.extend(self.bad.drain(..).map(|(_, bad)| bad));
        Ok(match read? {
            (_, Stopped::End) => PollStatus::Done,
            // Full, or not open yet because other files hold every place.
            (_, Stopped::Full | Stopped::Wait) => PollStatus::Ready,
        })
    }
}

impl<T: Send + 'static, R: ChunkRead<T>> Partition<T> for AheadPartition<T, R> {
    fn poll(&mut self, batch: &mut Batch<T>) -> Result<PollStatus> {
        if let Some(status) = self.poll_ahead(batch)? {
            return Ok(status);
        }
        if self.starts_reading_ahead(batch.room()) {
            if let Some(claim) = Claim::take() {
                let reader = self.reader.take().expect("checked above");
                let what = reader.describe();
                // On failure the reader is lost with the closure; it only
                // holds what it read so far, and the run stops here.
                let ahead = ReadAhead::start(claim, reader).map_err(|e| {
                    Error::External(format!("cannot start a thread to read {what} ahead: {e}"))
                })?;
                self.ahead = Some(ahead);
                if let Some(status) = self.poll_ahead(batch)? {
                    return Ok(status);
                }
            }
        }
        self.poll_here(batch)
    }

    fn offset(&self) -> u64 {
        self.reader.as_ref().map_or(0, R::offset)
    }

    fn skip(&mut self, n: u64) -> Result<(u64, PollStatus)> {
        if self.ahead.is_some() {
            // Skips come before the first poll of a resumed partition; a
            // later one is handed out and dropped like a poll.
            let mut batch = Batch::new(n.min(super::SKIP_CHUNK) as usize);
            let status = self.poll(&mut batch)?;
            return Ok(((batch.records.len() + batch.bad.len()) as u64, status));
        }
        self.reader
            .as_mut()
            .expect("no read-ahead holds the reader")
            .skip(n)
    }

    fn pause(&mut self) {
        if let Some(reader) = self.ahead.as_mut().and_then(ReadAhead::stop) {
            // What it read stays to be handed out; the input closes where
            // the thread stopped.
            self.reader = Some(reader);
        }
        if let Some(reader) = self.reader.as_mut() {
            reader.pause();
        }
    }
}

impl<T: Send + 'static, R: ChunkRead<T>> Drop for ReadAhead<T, R> {
    fn drop(&mut self) {
        if let Some(thread) = self.thread.take() {
            self.stop.store(true, Ordering::Release);
            // Closing the channel ends a thread waiting to send.
            self.chunks = None;
            // The thread ends before the partition does; a thread that
            // panicked has nothing left to give back.
            let _ = thread.join();
        }
    }
}
