//! A partition of JSON-lines pageviews: one file, or one split of a large
//! plain file, read in place or ahead on a thread of its own.

use std::cell::{Cell, RefCell};

use keyflow_dataflow::source::{
    BadRecord, Batch, FileSplit, InputFile, NextLine, Partition, PollStatus, SKIP_CHUNK,
};
use keyflow_dataflow::time::EventTime;

use super::article::{Article, PageView};
use super::interner::{Interner, GROUP};
use super::jsonl::{parse_timed, JsonView};
use super::jsonl_ahead::{ReadAhead, Served};

/// Articles a worker keeps shared: enough for the busy part of a day's
/// traffic, at about 60 bytes each.
const INTERNED: usize = 1 << 20;

thread_local! {
    /// One interner per worker thread, shared by every partition it reads:
    /// the splits of a file name the same articles, and a keyed operator
    /// compares two handles to one allocation without reading the names.
    static INTERNER: RefCell<Interner> = RefCell::new(Interner::new(INTERNED));
}

/// One file, or one split of a file, read line by line: in place, or ahead
/// on a thread of its own (see [`ReadAhead`]).
pub(super) struct JsonlPartition {
    /// The file; `None` while a read-ahead thread has it.
    reader: Option<InputFile>,
    held: Held,
    /// Reading ahead on a thread, with what it read not yet handed out.
    ahead: Option<ReadAhead>,
    read_ahead: ReadAheadWhen,
}

/// When a partition reads ahead on a thread of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReadAheadWhen {
    /// When this process has a core to spare (see
    /// [`spare_core`](keyflow_dataflow::run::spare_core)).
    SpareCore,
    /// Whenever a poll asks for enough (for tests).
    #[cfg(test)]
    Always,
    /// Never (for tests).
    #[cfg(test)]
    Never,
}

/// The least room a poll must have to start reading ahead: priming polls
/// that read a few lines of a split, to learn where its records start, do
/// not start a thread that would read the split far ahead.
const READ_AHEAD_ROOM: usize = 1024;

thread_local! {
    /// Whether a read-ahead thread has this worker's interner. One at a
    /// time per worker: partitions read alongside each other (many whole
    /// files) would otherwise each start a thread and an interner of their
    /// own.
    static LENT: Cell<bool> = const { Cell::new(false) };
}

/// The worker's interner, for a read-ahead thread to use; the worker gets
/// an empty one meanwhile. `None` while another thread has it.
fn lend_interner() -> Option<Interner> {
    if LENT.replace(true) {
        return None;
    }
    Some(INTERNER.with_borrow_mut(|interner| std::mem::replace(interner, Interner::new(INTERNED))))
}

/// Ends a loan of the worker's interner, giving it back (`None` if it is
/// lost with its thread); the worker keeps the fuller of the two.
fn return_interner(lent: Option<Interner>) {
    LENT.set(false);
    let Some(lent) = lent else { return };
    INTERNER.with_borrow_mut(|interner| {
        if lent.len() >= interner.len() {
            *interner = lent;
        }
    });
}

/// Why [`Held::read`] stopped.
pub(super) enum Stopped {
    /// It read as many items as it had room for.
    Full,
    /// The file is read to its end.
    End,
    /// The file is not open yet: other files hold every place.
    Wait,
}

/// Lines read whose articles are not yet looked up: the interner looks up
/// a group at a time.
#[derive(Default)]
pub(super) struct Held {
    /// Their names, one after another.
    names: String,
    pending: Vec<Pending>,
    articles: Vec<Article>,
}

/// A line read whose article is not yet looked up.
struct Pending {
    ts: EventTime,
    views: u64,
    /// Where its project and its title end in `names`.
    project_end: usize,
    title_end: usize,
}

impl Held {
    /// Keeps a parsed line until its group is looked up; true when the
    /// group is full.
    pub(super) fn hold(&mut self, ts: EventTime, raw: &JsonView<'_>) -> bool {
        self.names.push_str(&raw.project);
        let project_end = self.names.len();
        self.names.push_str(&raw.title);
        self.pending.push(Pending {
            ts,
            views: raw.views,
            project_end,
            title_end: self.names.len(),
        });
        self.pending.len() == GROUP
    }

    /// Reads up to `room` items (every line but blank ones) of `file`,
    /// parsing them and looking up their articles in `interner`, into
    /// `records`; each malformed line goes to `bad` with how many records
    /// come before it. Returns how many items it read and why it stopped.
    /// Every line read is in `records` or `bad` when it returns, after a
    /// read error too.
    pub(super) fn read(
        &mut self,
        file: &mut InputFile,
        interner: &mut Interner,
        room: usize,
        records: &mut Vec<(EventTime, PageView)>,
        bad: &mut impl Extend<(usize, BadRecord)>,
    ) -> keyflow_dataflow::Result<(usize, Stopped)> {
        let mut items = 0;
        let stopped = loop {
            if items == room {
                break Stopped::Full;
            }
            let next = match file.next_line() {
                Ok(next) => next,
                Err(e) => {
                    self.flush(interner, records);
                    return Err(e);
                }
            };
            let parsed = match next {
                NextLine::End => break Stopped::End,
                NextLine::Wait => break Stopped::Wait,
                NextLine::Line(Err(reason)) => Err(reason),
                NextLine::Line(Ok(line)) if line.trim().is_empty() => continue,
                NextLine::Line(Ok(line)) => parse_timed(line),
            };
            items += 1;
            match parsed {
                Ok((ts, raw)) => {
                    if self.hold(ts, &raw) {
                        self.flush(interner, records);
                    }
                }
                Err(reason) => {
                    // The lines held come first.
                    self.flush(interner, records);
                    bad.extend([(records.len(), BadRecord::new(file.location(), reason))]);
                }
            }
        };
        self.flush(interner, records);
        Ok((items, stopped))
    }

    /// Looks up the held lines' articles and adds them to `records`, in
    /// the order they were read.
    pub(super) fn flush(
        &mut self,
        interner: &mut Interner,
        records: &mut Vec<(EventTime, PageView)>,
    ) {
        if self.pending.is_empty() {
            return;
        }
        let mut names = [("", ""); GROUP];
        let mut start = 0;
        for (name, held) in names.iter_mut().zip(&self.pending) {
            *name = (
                &self.names[start..held.project_end],
                &self.names[held.project_end..held.title_end],
            );
            start = held.title_end;
        }
        // Empty: the last flush drained it.
        interner.get_group(&names[..self.pending.len()], &mut self.articles);
        for (held, article) in self.pending.drain(..).zip(self.articles.drain(..)) {
            records.push((held.ts, PageView::new(article, held.views)));
        }
        self.names.clear();
    }
}

impl JsonlPartition {
    /// The lines of `split`, not opened yet.
    pub(super) fn new(split: &FileSplit) -> Self {
        JsonlPartition {
            reader: Some(InputFile::split(split)),
            held: Held::default(),
            ahead: None,
            read_ahead: ReadAheadWhen::SpareCore,
        }
    }

    /// The file, read in place (no read-ahead holds it).
    fn file(&mut self) -> &mut InputFile {
        self.reader.as_mut().expect("no read-ahead holds the file")
    }

    /// Whether a poll with room for `room` items starts reading ahead: an
    /// open file (so that the thread never waits for a place among the open
    /// inputs), a large poll, and a core to spare.
    fn starts_reading_ahead(&self, room: usize) -> bool {
        let open = self.reader.as_ref().is_some_and(InputFile::is_open);
        let when = match self.read_ahead {
            ReadAheadWhen::SpareCore => keyflow_dataflow::run::spare_core(),
            #[cfg(test)]
            ReadAheadWhen::Always => true,
            #[cfg(test)]
            ReadAheadWhen::Never => false,
        };
        open && room >= READ_AHEAD_ROOM && when
    }

    /// Hands out what the read-ahead has read; `None` once it is over and
    /// the file is back here to read on in place.
    fn poll_ahead(
        &mut self,
        batch: &mut Batch<PageView>,
    ) -> keyflow_dataflow::Result<Option<PollStatus>> {
        let Some(ahead) = self.ahead.as_mut() else {
            return Ok(None);
        };
        let running = ahead.is_running();
        match ahead.poll(batch) {
            Ok(Served::More) => Ok(Some(PollStatus::Ready)),
            Ok(Served::Over(back)) => {
                self.ahead = None;
                if let Some((file, interner)) = back.map(|b| *b) {
                    self.reader = Some(file);
                    return_interner(Some(interner));
                }
                Ok(None)
            }
            Err(e) => {
                if running {
                    return_interner(None);
                }
                Err(e)
            }
        }
    }

    /// Reads lines in place into `batch`.
    fn poll_here(&mut self, batch: &mut Batch<PageView>) -> keyflow_dataflow::Result<PollStatus> {
        let reader = self.reader.as_mut().expect("no read-ahead holds the file");
        let mut bad = Vec::new();
        let read = INTERNER.with_borrow_mut(|interner| {
            self.held
                .read(reader, interner, batch.room(), &mut batch.records, &mut bad)
        });
        batch.bad.extend(bad.into_iter().map(|(_, bad)| bad));
        Ok(match read? {
            (_, Stopped::End) => PollStatus::Done,
            // Full, or not open yet because other files hold every place.
            (_, Stopped::Full | Stopped::Wait) => PollStatus::Ready,
        })
    }
}

impl Partition<PageView> for JsonlPartition {
    fn poll(&mut self, batch: &mut Batch<PageView>) -> keyflow_dataflow::Result<PollStatus> {
        if let Some(status) = self.poll_ahead(batch)? {
            return Ok(status);
        }
        let lent = self
            .starts_reading_ahead(batch.room())
            .then(lend_interner)
            .flatten();
        if let Some(interner) = lent {
            let file = self.reader.take().expect("checked above");
            let path = file.path().to_path_buf();
            let ahead = ReadAhead::start(file, interner).map_err(|e| {
                return_interner(None);
                keyflow_dataflow::Error::External(format!(
                    "{}: cannot start a thread to read ahead: {e}",
                    path.display()
                ))
            })?;
            self.ahead = Some(ahead);
            if let Some(status) = self.poll_ahead(batch)? {
                return Ok(status);
            }
        }
        self.poll_here(batch)
    }

    fn offset(&self) -> u64 {
        self.reader.as_ref().map_or(0, InputFile::line)
    }

    fn skip(&mut self, n: u64) -> keyflow_dataflow::Result<(u64, PollStatus)> {
        if self.ahead.is_some() {
            // Skips come before the first poll of a resumed partition; a
            // later one is handed out and dropped like a poll.
            let mut batch = Batch::new(n.min(SKIP_CHUNK) as usize);
            let status = self.poll(&mut batch)?;
            return Ok(((batch.records.len() + batch.bad.len()) as u64, status));
        }
        // Blank lines are no items, every other line one: no need to parse.
        self.file().skip_items(n.min(SKIP_CHUNK))
    }

    fn pause(&mut self) {
        if let Some((file, interner)) = self.ahead.as_mut().and_then(ReadAhead::stop) {
            // What it read stays to be handed out; the file closes where
            // the thread stopped.
            self.reader = Some(file);
            return_interner(Some(interner));
        }
        if let Some(file) = self.reader.as_mut() {
            file.pause();
        }
    }
}

impl Drop for JsonlPartition {
    fn drop(&mut self) {
        if self.ahead.as_ref().is_some_and(ReadAhead::is_running) {
            // Its thread stops as the read-ahead drops, with the interner.
            return_interner(None);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    /// A file of `n` lines, most good, some blank, malformed or not UTF-8.
    fn mixed_file(name: &str, n: usize) -> PathBuf {
        let path =
            std::env::temp_dir().join(format!("keyflow-{name}-{}.jsonl", std::process::id()));
        let mut bytes = Vec::new();
        for i in 0..n {
            match i % 997 {
                5 => bytes.extend_from_slice(b"\n"),
                17 => bytes.extend_from_slice(b"not json\n"),
                400 => {
                    bytes.extend_from_slice(b"{\"project\":\"en\",\"title\":\"\xff\",\"ts\":1}\n")
                }
                _ => bytes.extend_from_slice(
                    format!(
                        "{{\"project\":\"en\",\"title\":\"T{}\",\"ts\":{},\"views\":{}}}\n",
                        i % 301,
                        1000 + i,
                        1 + i % 3
                    )
                    .as_bytes(),
                ),
            }
        }
        std::fs::write(&path, bytes).unwrap();
        path
    }

    fn partition(split: &FileSplit, read_ahead: ReadAheadWhen) -> JsonlPartition {
        let mut p = JsonlPartition::new(split);
        p.read_ahead = read_ahead;
        p
    }

    type Polled = (Vec<(EventTime, PageView)>, Vec<String>, PollStatus);

    /// Polls with `limits` in turn (then 4096 until done), pausing after
    /// the polls listed in `pauses`; and whether it read ahead.
    fn polls(p: &mut JsonlPartition, limits: &[usize], pauses: &[usize]) -> (Vec<Polled>, bool) {
        let mut out = Vec::new();
        let mut ahead = false;
        for i in 0..10_000 {
            let mut batch = Batch::new(limits.get(i).copied().unwrap_or(4096));
            let status = p.poll(&mut batch).unwrap();
            ahead |= p.ahead.is_some();
            let bad = batch
                .bad
                .iter()
                .map(|b| format!("{}: {}", b.location, b.reason))
                .collect();
            out.push((std::mem::take(&mut batch.records), bad, status));
            if pauses.contains(&i) {
                p.pause();
            }
            if status == PollStatus::Done {
                assert!(p.ahead.is_none() && p.reader.is_some());
                return (out, ahead);
            }
        }
        panic!("no end");
    }

    fn skipped(mut p: JsonlPartition, n: u64) -> JsonlPartition {
        let mut skipped = 0;
        while skipped < n {
            skipped += p.skip(n - skipped).unwrap().0;
        }
        p
    }

    use ReadAheadWhen::{Always, Never};

    /// Reading ahead hands out, poll by poll, exactly what reading in place
    /// does: the same records and bad lines in the same polls, across
    /// chunks, pauses that close the file, and a skip.
    #[test]
    fn reading_ahead_polls_like_reading_in_place() {
        let path = mixed_file("ahead", 12_345);
        let bytes = std::fs::metadata(&path).unwrap().len();
        let splits =
            keyflow_dataflow::source::plan_splits_at(std::slice::from_ref(&path), bytes / 3 + 1);
        assert_eq!(splits.len(), 3);
        // A priming poll first (no thread), then large ones, some cutting
        // a chunk, with a bad line at a poll's edge among them.
        let limits = [16, 2000, 1024, 5000, 1500, 3, 4096, 1100];
        let mut items = 0;
        for split in &splits {
            let (here, ahead) = polls(&mut partition(split, Never), &limits, &[]);
            assert!(!ahead);
            items += here.iter().map(|p| p.0.len() + p.1.len()).sum::<usize>();
            for pauses in [&[][..], &[1, 2, 4][..]] {
                let (there, ahead) = polls(&mut partition(split, Always), &limits, pauses);
                assert!(ahead, "a large poll of an open file reads ahead");
                assert_eq!(there.len(), here.len());
                for (a, h) in there.iter().zip(&here) {
                    assert_eq!(a, h);
                }
            }
            // A resume skips what a checkpoint had read, then reads on.
            let (there, ahead) = polls(&mut skipped(partition(split, Always), 3000), &[1024], &[]);
            assert!(ahead);
            let (here, _) = polls(&mut skipped(partition(split, Never), 3000), &[1024], &[]);
            assert_eq!(there, here);
        }
        std::fs::remove_file(&path).unwrap();
        assert_eq!(items, 12_345 - 13, "every line but the blank ones");
    }

    /// One partition of a worker reads ahead at a time, and a partition
    /// dropped while its thread reads stops the thread and lets another
    /// start.
    #[test]
    fn one_read_ahead_at_a_time_per_worker() {
        let path = mixed_file("ahead-one", 50_000);
        let whole = FileSplit::whole(path.clone(), 0);
        let mut a = partition(&whole, Always);
        let mut b = partition(&whole, Always);
        for p in [&mut a, &mut b] {
            p.poll(&mut Batch::new(16)).unwrap();
            p.poll(&mut Batch::new(2000)).unwrap();
        }
        assert!(a.ahead.is_some() && b.ahead.is_none());
        drop(a);
        let (rest, ahead) = polls(&mut b, &[], &[]);
        assert!(ahead);
        let (mut here, _) = polls(&mut partition(&whole, Never), &[2016], &[]);
        here.remove(0);
        assert_eq!(rest, here);
        std::fs::remove_file(&path).unwrap();
    }
}
