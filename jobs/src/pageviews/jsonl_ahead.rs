//! Reading a JSON-lines partition ahead, on a thread of its own.
//!
//! A worker that reads a large file spends about a quarter of its time
//! reading lines, parsing them and looking up their articles. Where the
//! process has a core to spare, a partition hands that work to a thread
//! beside its worker, as Flink's sources hand theirs to a split fetcher:
//! the thread fills chunks of parsed records in file order and the worker
//! takes them through a bounded channel. The worker's polls return the
//! same items in the same order as reading in place would, so what the job
//! computes, and what a checkpoint counts, do not change.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;

use keyflow_dataflow::source::{BadRecord, Batch, InputFile};
use keyflow_dataflow::time::EventTime;

use super::article::PageView;
use super::interner::Interner;
use super::jsonl_partition::{Held, Stopped};

/// Lines (good or bad) a chunk holds at most.
const CHUNK: usize = 2048;

/// Chunks the thread may have ready before it waits for the worker.
const READY: usize = 4;

/// A run of lines parsed in file order.
struct Chunk {
    records: Vec<(EventTime, PageView)>,
    /// Malformed lines, each with how many of `records` come before it.
    bad: VecDeque<(usize, BadRecord)>,
    /// Whether it came with no lines at all (the file had to wait).
    empty: bool,
    /// Set on the last chunk: the file's end, or why reading failed.
    end: Option<keyflow_dataflow::Result<()>>,
}

impl Chunk {
    fn is_drained(&self) -> bool {
        self.records.is_empty() && self.bad.is_empty()
    }

    /// Moves up to `room` items into `batch`, in file order; returns how
    /// many it moved.
    fn serve(&mut self, batch: &mut Batch<PageView>, mut room: usize) -> usize {
        let mut moved = 0;
        while room > 0 && !self.is_drained() {
            let n = match self.bad.front() {
                Some((0, _)) => {
                    let (_, bad) = self.bad.pop_front().expect("a bad line is next");
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

/// A thread reading a partition's file ahead of its worker, and what it
/// has read that the worker has not taken yet.
pub(super) struct ReadAhead {
    chunks: Option<Receiver<Chunk>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<(InputFile, Interner)>>,
    /// Received and not yet handed out, oldest first.
    ready: VecDeque<Chunk>,
}

/// What a poll of the read-ahead found.
pub(super) enum Served {
    /// Items were handed out (perhaps none, if the batch had no room) and
    /// more may follow.
    More,
    /// Everything read ahead is handed out and the thread is gone, with
    /// the reader and interner it gave back (none if `stop` took them):
    /// the reader reads on, and is at its end if the file is.
    Over(Option<Box<(InputFile, Interner)>>),
}

impl ReadAhead {
    /// Starts reading `file` (open already, so that the thread never waits
    /// for a place among the open inputs) on a thread that looks articles
    /// up in `interner`.
    pub(super) fn start(file: InputFile, interner: Interner) -> std::io::Result<ReadAhead> {
        let (send, chunks) = sync_channel(READY);
        let stop = Arc::new(AtomicBool::new(false));
        let halt = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("keyflow:read-ahead".into())
            .spawn(move || fetch(file, interner, send, &halt))?;
        Ok(ReadAhead {
            chunks: Some(chunks),
            stop,
            thread: Some(thread),
            ready: VecDeque::new(),
        })
    }

    /// Hands out up to the batch's room of items in file order, waiting
    /// for the thread when nothing read is left. Read errors come out where
    /// they happened in the file.
    pub(super) fn poll(&mut self, batch: &mut Batch<PageView>) -> keyflow_dataflow::Result<Served> {
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
                    // An empty chunk: the file waits for a place, held by
                    // other partitions that this worker must go on to read.
                    return Ok(Served::More);
                }
                continue;
            }
            match self.chunks.as_ref().map(Receiver::recv) {
                Some(Ok(chunk)) => self.ready.push_back(chunk),
                // The thread has sent its last chunk (or was stopped, by
                // `stop`, and what it sent is all handed out).
                Some(Err(_)) | None => return Ok(Served::Over(self.stop().map(Box::new))),
            }
        }
    }

    /// Whether its thread is still reading (not stopped by `stop`, nor
    /// over).
    pub(super) fn is_running(&self) -> bool {
        self.thread.is_some()
    }

    /// Stops the thread and takes back its reader, now at the end of what
    /// was read ahead, and its interner (`None` if stopped before); the
    /// chunks it sent stay in `ready` for later polls.
    pub(super) fn stop(&mut self) -> Option<(InputFile, Interner)> {
        let thread = self.thread.take()?;
        self.stop.store(true, Ordering::Release);
        if let Some(chunks) = self.chunks.take() {
            // Draining lets a thread waiting to send see the stop.
            while let Ok(chunk) = chunks.recv() {
                self.ready.push_back(chunk);
            }
        }
        match thread.join() {
            Ok(back) => Some(back),
            // The thread only parses; a panic there is a bug to surface.
            Err(payload) => std::panic::resume_unwind(payload),
        }
    }
}

impl Drop for ReadAhead {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.stop.store(true, Ordering::Release);
            // Closing the channel ends a thread waiting to send.
            self.chunks = None;
            let _ = self.thread.take().map(JoinHandle::join);
        }
    }
}

/// The thread: reads, parses and looks up chunks until the file ends, the
/// worker stops it or the channel closes; gives back the reader and
/// interner.
fn fetch(
    mut file: InputFile,
    mut interner: Interner,
    chunks: SyncSender<Chunk>,
    stop: &AtomicBool,
) -> (InputFile, Interner) {
    let mut held = Held::default();
    loop {
        let mut chunk = Chunk {
            records: Vec::with_capacity(CHUNK),
            bad: VecDeque::new(),
            empty: false,
            end: None,
        };
        let read = held.read(
            &mut file,
            &mut interner,
            CHUNK,
            &mut chunk.records,
            &mut chunk.bad,
        );
        match read {
            Ok((_, Stopped::End)) => chunk.end = Some(Ok(())),
            // Started on an open file, which keeps its place to its end:
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
            return (file, interner);
        }
    }
}
