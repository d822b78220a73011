//! The timely operator that reads partitions and holds event-time progress.

use std::sync::atomic::Ordering;

use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::{Duration, Instant};

use timely::container::CapacityContainerBuilder;
use timely::dataflow::operators::generic::operator::source as timely_source;
use timely::dataflow::Scope;

use super::watermark::{Held, PartitionClock, Settled, Verdict};
use super::{BadInputPolicy, Batch, EventStream, Partition, PollStatus, Source, SourceConfig};
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::run::Context;
use crate::time::EventTime;

struct Reader<T> {
    index: usize,
    /// The file and the place in it, for a split of a file.
    split: Option<(usize, usize)>,
    /// Whether the partition was told to pause since it was last polled.
    paused: bool,
    partition: Box<dyn Partition<T>>,
    clock: PartitionClock,
    done: bool,
    /// The input's position after `consumed` items, when it can seek.
    position: Option<u64>,
    /// Items (records and bad records) polled so far.
    consumed: u64,
    /// While resuming: skip items without looking at them up to here.
    skip_to: u64,
    /// While resuming: re-read up to this many items, emitting only late
    /// records at or after `replay_from`, which the checkpoint did not hold.
    replay: Option<(u64, EventTime)>,
    /// For checkpoints: late records sent at or after the next boundary,
    /// with where their poll started.
    marks: Vec<(EventTime, Mark)>,
    /// Positions saved in checkpoints not yet known complete, by epoch.
    saved: Vec<(EventTime, u64)>,
    /// Records held far ahead of the watermark (see
    /// [`PartitionClock::with_jump_after`]), in the order read.
    ahead: Vec<(Held, EventTime, T)>,
    /// Where the poll that read the first of `ahead` started: a checkpoint
    /// taken while records are held re-reads them from there.
    ahead_mark: Option<Mark>,
}

/// A late record: the time it travels at, its event time, and itself.
type LateRecord<T> = (EventTime, EventTime, T);

impl<T> Reader<T> {
    /// Once the run of records held ahead has settled (see
    /// [`PartitionClock::settled`]), rejects or sends them: on time ones
    /// through `give`, late ones onto `late`, marked for checkpoints at
    /// where the run began. Returns how many were rejected and how many
    /// went late, to count (none while replaying).
    #[inline]
    fn settle(
        &mut self,
        source: &str,
        replaying: Option<(u64, EventTime)>,
        next_boundary: Option<EventTime>,
        give: impl FnMut(EventTime, T),
        late: &mut Vec<LateRecord<T>>,
    ) -> (u64, u64) {
        match self.clock.settled() {
            None => (0, 0),
            Some(settled) => self.settle_run(source, settled, replaying, next_boundary, give, late),
        }
    }

    fn settle_run(
        &mut self,
        source: &str,
        settled: Settled,
        replaying: Option<(u64, EventTime)>,
        next_boundary: Option<EventTime>,
        mut give: impl FnMut(EventTime, T),
        late: &mut Vec<LateRecord<T>>,
    ) -> (u64, u64) {
        let counted = |n: u64| if replaying.is_none() { n } else { 0 };
        let n = match settled {
            Settled::Rejected(n) => {
                self.ahead.drain(..n);
                return (counted(n as u64), 0);
            }
            Settled::Followed(n) => n,
        };
        debug_assert_eq!(n, self.ahead.len());
        if replaying.is_none() {
            tracing::warn!(
                source,
                partition = self.index,
                "followed {n} records in a row too far ahead of the watermark: it moved on \
                 to {}",
                self.clock.watermark()
            );
        }
        let (mut sent_late, mut latest) = (0, None);
        for (held, ts, item) in self.ahead.drain(..) {
            match held {
                Held::OnTime if replaying.is_none() => give(ts, item),
                Held::Late(at) if replaying.is_none_or(|(_, from)| at >= from) => {
                    sent_late += 1;
                    latest = latest.max(Some(at));
                    late.push((at, ts, item));
                }
                _ => {}
            }
        }
        let mark = self.ahead_mark.take();
        if let (Some(next), Some(at), Some(mark)) = (next_boundary, latest, mark) {
            if at >= next {
                self.marks.push((at, mark));
            }
        }
        (0, counted(sent_late))
    }
}

/// Where a poll started: items read before it, the clock before it, and
/// the input's position there when it can seek.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Mark {
    items: u64,
    clock: PartitionClock,
    position: Option<u64>,
}

/// What stands in for a finished partition.
struct Exhausted;

impl<T> Partition<T> for Exhausted {
    fn poll(&mut self, _batch: &mut Batch<T>) -> Result<PollStatus> {
        Ok(PollStatus::Done)
    }
}

/// A partition's position in a checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ReaderSnap {
    index: usize,
    consumed: u64,
    clock: PartitionClock,
    idle: bool,
    done: bool,
    /// The input's position after `consumed` items, when it can seek.
    position: Option<u64>,
    /// Where to re-read from, so as to send again the late records that
    /// were sent at or after the epoch before it was taken.
    replay: Option<Mark>,
}

impl<T> Reader<T> {
    fn snap(&self, epoch: EventTime, now: Instant, idle: Option<Duration>) -> ReaderSnap {
        let held = self.ahead_mark.as_ref().filter(|_| !self.ahead.is_empty());
        let replay = self
            .marks
            .iter()
            .filter(|m| m.0 >= epoch)
            .map(|m| &m.1)
            .chain(held)
            .min_by_key(|m| m.items)
            .cloned();
        ReaderSnap {
            index: self.index,
            consumed: self.consumed,
            clock: self.clock.clone(),
            idle: self.clock.is_idle(now, idle),
            done: self.done && replay.is_none(),
            position: self.position,
            replay,
        }
    }
}

/// Whether reader `i` waits for an earlier split of its file on this worker.
///
/// A worker reads its splits of one file one after another: otherwise a
/// later split, hours ahead in event time, would be read alongside the
/// first while the worker's capability stays at the first one's watermark,
/// and everything it read would wait in windows downstream. Each split is
/// still read until it has seen a record, so that its watermark holds the
/// capability back to where its records start: what it reads later is
/// judged on time or late by its own clock alone, whatever the layout. A
/// split also waits until every earlier one has seen a record, so that
/// the earliest always gets a place among the open inputs first; a split
/// that waits is told to pause, which closes its file.
fn held_back<T>(readers: &[Reader<T>], i: usize) -> bool {
    let primed = |r: &Reader<T>| r.clock.max_seen().is_some();
    let mut earlier = unfinished_earlier_splits(readers, i).peekable();
    earlier.peek().is_some() && (primed(&readers[i]) || earlier.any(|e| !primed(e)))
}

/// At most this many items are read from a split to learn where its
/// records start while an earlier split of its file is still being read:
/// what it reads then waits downstream until the earlier splits catch up,
/// so with many splits a full batch from each would hold a good part of
/// the file at once.
const PRIME_BATCH: usize = 16;

/// Whether split `i` is read only to see its first record, and then held
/// back (see [`held_back`]).
fn priming<T>(readers: &[Reader<T>], i: usize) -> bool {
    readers[i].clock.max_seen().is_none() && unfinished_earlier_splits(readers, i).next().is_some()
}

/// The unfinished readers of earlier splits of reader `i`'s file on this
/// worker; none while `i` replays or skips to its checkpointed position,
/// or is not a split.
fn unfinished_earlier_splits<T>(
    readers: &[Reader<T>],
    i: usize,
) -> impl Iterator<Item = &Reader<T>> {
    let r = &readers[i];
    let of = r
        .split
        .filter(|_| r.replay.is_none() && r.consumed >= r.skip_to);
    readers.iter().filter(move |e| {
        !e.done
            && matches!((of, e.split), (Some((file, part)), Some((f, p))) if f == file && p < part)
    })
}

/// A worker's readers, and the partitions a checkpoint found finished.
type Opened<T> = (Vec<Reader<T>>, Vec<ReaderSnap>);

/// Opens this worker's partitions, at their checkpointed positions when
/// resuming. Returns the readers and the partitions already finished.
fn open_readers<S: Source>(
    src: &S,
    peers: usize,
    index: usize,
    config: &SourceConfig,
    restored: Option<(EventTime, &[Vec<u8>])>,
) -> Result<Opened<S::Item>> {
    let mine = |p: usize| p % peers == index;
    let now_ms = crate::time::wall_clock_ms();
    let Some((epoch, parts)) = restored else {
        let mut readers = Vec::new();
        for p in (0..src.partitions()).filter(|p| mine(*p)) {
            let partition = src.open(p)?;
            readers.push(Reader {
                index: p,
                split: src.split_of(p),
                paused: false,
                position: partition.position(),
                partition,
                clock: PartitionClock::new(config.max_out_of_orderness, config.max_future)
                    .with_jump_after(config.jump_after)
                    .starting_at(now_ms),
                done: false,
                consumed: 0,
                skip_to: 0,
                replay: None,
                marks: Vec::new(),
                saved: Vec::new(),
                ahead: Vec::new(),
                ahead_mark: None,
            });
        }
        return Ok((readers, Vec::new()));
    };
    let mut snaps = Vec::new();
    for part in parts {
        let list: Vec<ReaderSnap> = crate::checkpoint::decode(part, &src.name())?;
        snaps.extend(list.into_iter().filter(|s| mine(s.index)));
    }
    snaps.sort_by_key(|s| s.index);
    let expected: Vec<usize> = (0..src.partitions()).filter(|p| mine(*p)).collect();
    if snaps.iter().map(|s| s.index).collect::<Vec<_>>() != expected {
        return Err(Error::Checkpoint {
            path: format!("source {}", src.name()).into(),
            reason: "the checkpoint does not hold every partition of the input".into(),
        });
    }
    let mut readers = Vec::new();
    let mut finished = Vec::new();
    let now = Instant::now();
    for snap in snaps {
        if snap.done {
            finished.push(snap);
            continue;
        }
        let (start, clock, position) = match &snap.replay {
            Some(mark) => (mark.items, mark.clock.clone(), mark.position),
            None => (snap.consumed, snap.clock.clone(), snap.position),
        };
        let mut clock = clock.with_jump_after(config.jump_after).starting_at(now_ms);
        // An input that can seek opens where it was; others skip there.
        let (partition, consumed) = match position {
            Some(at) => (src.open_at(snap.index, at)?, start),
            None => (src.open(snap.index)?, 0),
        };
        if snap.idle && snap.replay.is_none() {
            clock.note_idle(now);
        }
        readers.push(Reader {
            index: snap.index,
            split: src.split_of(snap.index),
            paused: false,
            position,
            partition,
            clock,
            done: false,
            consumed,
            skip_to: start,
            replay: snap.replay.as_ref().map(|_| (snap.consumed, epoch)),
            marks: Vec::new(),
            saved: Vec::new(),
            ahead: Vec::new(),
            ahead_mark: None,
        });
    }
    Ok((readers, finished))
}

/// The operator behind [`crate::Dataflow::source`]: reads `src` on every
/// worker of the dataflow and returns its event stream.
///
/// Each worker opens the partitions `p` with `p % peers == index`, and
/// reads its splits of one file one after another (see `held_back`). The
/// operator holds a capability at the least watermark of its partitions that
/// are neither exhausted nor idle, so the stream's frontier is event-time
/// progress; an exhausted worker drops its capability, which lets every
/// window of a bounded input fire. Late records travel at their partition's
/// watermark, which is above their event time: that is how every later
/// operator recognizes them.
pub(crate) fn source_stream<'scope, S: Source>(
    scope: Scope<'scope, EventTime>,
    ctx: &Arc<Context>,
    step: &str,
    src: S,
    config: &SourceConfig,
) -> Result<EventStream<'scope, S::Item>> {
    config.validate()?;
    let peers = scope.peers();
    let index = scope.index();
    let name = src.name();
    let mut ckpt = ctx.checkpoint_step(index, step, &format!("source `{name}`"))?;
    let restored = ckpt
        .as_ref()
        .and_then(|c| c.restored_epoch().map(|e| (e, c.restored_parts())));
    let (mut readers, finished) = open_readers(&src, peers, index, config, restored)?;
    let completed = ckpt.as_ref().map(|c| c.completed());
    let resume_at = restored.map(|(e, _)| e);
    let ctx = Arc::clone(ctx);
    let counters = ctx.metrics.source(step);
    let step = step.to_string();
    let config = config.clone();
    let op_name = format!("Source({step})");
    let stream = timely_source::<_, CapacityContainerBuilder<Vec<(EventTime, S::Item)>>, _, _>(
        scope,
        &op_name,
        move |mut capability, info| {
            let activator = scope.activator_for(info.address);
            // A resumed source sends nothing below the epoch it resumes from.
            if let Some(epoch) = resume_at {
                capability.downgrade(&epoch);
            }
            let mut cap = Some(capability);
            let mut batch = Batch::new(config.batch);
            let mut late = Vec::new();
            let mut bad_seen = 0u64;
            move |output| {
                let Some(c) = cap.as_mut() else { return };
                if ctx.is_aborted() {
                    cap = None;
                    return;
                }
                let now = Instant::now();
                let mut busy = false;
                if let Some(newest) = completed.as_ref().and_then(|c| c.newest()) {
                    for reader in readers.iter_mut().filter(|r| !r.saved.is_empty()) {
                        let (done, _) = reader
                            .saved
                            .iter()
                            .partition::<Vec<_>, _>(|s| s.0 <= newest);
                        if let Some(&&(_, position)) = done.last() {
                            reader.saved.retain(|s| s.0 > newest);
                            if let Err(e) = reader.partition.committed(position) {
                                tracing::warn!(source = %name, "{e}");
                            }
                        }
                    }
                }
                let next_boundary = ckpt.as_mut().map(|k| k.clock().next());
                for i in 0..readers.len() {
                    if readers[i].done {
                        continue;
                    }
                    // Judged now, after the earlier splits' polls in this
                    // activation: every split gets its first batch in the
                    // first activation that has places to open them.
                    let held = held_back(&readers, i);
                    let primes = priming(&readers, i);
                    let reader = &mut readers[i];
                    if reader.consumed < reader.skip_to {
                        // Resuming: skip what the checkpoint had read, a
                        // batch per activation (files may wait for a place).
                        let (n, status) =
                            match reader.partition.skip(reader.skip_to - reader.consumed) {
                                Ok(done) => done,
                                Err(e) => {
                                    ctx.fail(e.in_step(&step));
                                    cap = None;
                                    return;
                                }
                            };
                        reader.consumed += n;
                        reader.position = reader.partition.position();
                        if reader.consumed < reader.skip_to && status == PollStatus::Done {
                            ctx.fail(Error::Checkpoint {
                                path: format!("source {name} partition {}", reader.index).into(),
                                reason: format!(
                                    "the input ended after {} items, the checkpoint read {}: it changed since",
                                    reader.consumed, reader.skip_to
                                ),
                            });
                            cap = None;
                            return;
                        }
                        busy |= n > 0 || status == PollStatus::Ready;
                        continue;
                    }
                    if held {
                        // Its turn comes when the earlier split is done,
                        // and this activation's work wakes the operator.
                        // Meanwhile its file is closed, so that waiting
                        // splits do not keep others from their first batch.
                        if !reader.paused {
                            reader.partition.pause();
                            reader.paused = true;
                        }
                        continue;
                    }
                    reader.paused = false;
                    batch.clear();
                    let replaying = reader.replay;
                    if let Some((until, _)) = replaying {
                        batch.limit = (until - reader.consumed).min(config.batch as u64) as usize;
                    } else if primes {
                        batch.limit = config.batch.min(PRIME_BATCH);
                    } else {
                        batch.limit = config.batch;
                    }
                    let before = next_boundary.map(|_| Mark {
                        items: reader.consumed,
                        clock: reader.clock.clone(),
                        position: reader.position,
                    });
                    let status = match reader.partition.poll(&mut batch) {
                        Ok(status) => status,
                        Err(e) => {
                            ctx.fail(e.in_step(&step));
                            cap = None;
                            return;
                        }
                    };
                    reader.consumed += (batch.records.len() + batch.bad.len()) as u64;
                    reader.position = reader.partition.position();
                    if replaying.is_none() {
                        Metrics::add(&ctx.metrics.skipped, batch.skipped);
                    }
                    if replaying.is_none() {
                        for bad in batch.bad.drain(..) {
                            match config.bad_input {
                                BadInputPolicy::Fail => {
                                    let e = Error::BadInput {
                                        location: bad.location,
                                        reason: bad.reason,
                                    };
                                    ctx.fail(e.in_step(&step));
                                    cap = None;
                                    return;
                                }
                                BadInputPolicy::Drop => {
                                    bad_seen += 1;
                                    Metrics::add(&ctx.metrics.bad, 1);
                                    Metrics::add(&counters.bad, 1);
                                    // A sample, not a flood: the first few, then
                                    // one in ten thousand.
                                    if bad_seen <= 5 || bad_seen.is_multiple_of(10_000) {
                                        tracing::warn!(
                                            source = %name,
                                            location = %bad.location,
                                            "skipped malformed record ({} so far): {}",
                                            bad_seen,
                                            bad.reason
                                        );
                                    }
                                }
                            }
                        }
                    }
                    if replaying.is_some() {
                        // A replay repeats the clock's steps exactly.
                    } else if !batch.records.is_empty() {
                        busy = true;
                        reader.clock.note_active(*c.time());
                        Metrics::add(&ctx.metrics.events, batch.records.len() as u64);
                        Metrics::add(&counters.records_out, batch.records.len() as u64);
                    } else if status == PollStatus::Idle {
                        reader.clock.note_idle(now);
                    }
                    if status == PollStatus::Ready {
                        busy = true;
                    }
                    let mut future = 0;
                    let mut late_read = 0;
                    let mut session = output.session(&*c);
                    let mut marked = false;
                    for (ts, item) in batch.records.drain(..) {
                        let verdict = reader.clock.observe(ts);
                        match verdict {
                            Verdict::OnTime if replaying.is_none() => session.give((ts, item)),
                            Verdict::Late(at) if replaying.is_none_or(|(_, from)| at >= from) => {
                                // One mark per poll, at its latest late time:
                                // a resume re-reads the whole poll.
                                if let (Some(next), Some(b)) = (next_boundary, before.as_ref()) {
                                    if at >= next {
                                        match reader.marks.last_mut() {
                                            Some(m) if marked => m.0 = m.0.max(at),
                                            _ => reader.marks.push((at, b.clone())),
                                        }
                                        marked = true;
                                    }
                                }
                                if replaying.is_none() {
                                    late_read += 1;
                                }
                                late.push((at, ts, item));
                            }
                            Verdict::Future if replaying.is_none() => future += 1,
                            Verdict::Ahead(held) => reader.ahead.push((held, ts, item)),
                            _ => {}
                        }
                        let give = |ts, item| session.give((ts, item));
                        let (rejected, sent_late) =
                            reader.settle(&name, replaying, next_boundary, give, &mut late);
                        (future, late_read) = (future + rejected, late_read + sent_late);
                        if matches!(verdict, Verdict::Ahead(_)) && reader.ahead.len() == 1 {
                            // The first of a run: a checkpoint taken before
                            // it stands re-reads it from this poll.
                            reader.ahead_mark = before.clone();
                        }
                    }
                    if status == PollStatus::Done && replaying.is_none() {
                        // The input ended with records held ahead.
                        reader.clock.end_of_input();
                        let give = |ts, item| session.give((ts, item));
                        let (rejected, sent_late) =
                            reader.settle(&name, replaying, next_boundary, give, &mut late);
                        (future, late_read) = (future + rejected, late_read + sent_late);
                    }
                    drop(session);
                    Metrics::add(&counters.late, late_read);
                    if future > 0 {
                        Metrics::add(&ctx.metrics.future, future);
                        Metrics::add(&counters.dropped, future);
                        tracing::warn!(
                            source = %name,
                            partition = reader.index,
                            "rejected {future} records too far ahead of the watermark"
                        );
                    }
                    if let Some((until, _)) = replaying {
                        if reader.consumed >= until {
                            reader.replay = None;
                        } else if status == PollStatus::Done {
                            ctx.fail(Error::Checkpoint {
                                path: format!("source {name} partition {}", reader.index).into(),
                                reason: format!(
                                    "the input ended after {} items, the checkpoint read {until}: it changed since",
                                    reader.consumed
                                ),
                            });
                            cap = None;
                            return;
                        }
                        busy = true;
                        continue;
                    }
                    if status == PollStatus::Done {
                        reader.done = true;
                        // Release the input (an open file and its place
                        // among the open ones) now; the reader stays only
                        // for what a checkpoint needs of it.
                        reader.partition = Box::new(Exhausted);
                    }
                }
                if !late.is_empty() {
                    late.sort_by_key(|(at, _, _)| *at);
                    let mut rest = late.drain(..).peekable();
                    while let Some((at, ts, item)) = rest.next() {
                        // Never below the capability: records held ahead by
                        // a partition that went idle meanwhile may be
                        // followed after progress passed their run's time.
                        let late_cap = c.delayed(&at.max(*c.time()));
                        let mut session = output.session(&late_cap);
                        session.give((ts, item));
                        while let Some((_, ts, item)) = rest.next_if(|(a, _, _)| *a == at) {
                            session.give((ts, item));
                        }
                    }
                }
                let finished_watermark = finished
                    .iter()
                    .map(|s| s.clock.watermark())
                    .max()
                    .unwrap_or(0);
                let highest = readers
                    .iter()
                    .map(|r| r.clock.watermark())
                    .max()
                    .unwrap_or(0)
                    .max(finished_watermark);
                ctx.metrics.raise_watermark(highest);
                counters.watermark.fetch_max(highest, Ordering::Relaxed);
                if readers.iter().all(|r| r.done) {
                    if let Some(mut k) = ckpt.take() {
                        // Good for the next boundary and every later one
                        // (nothing is sent below it any more; a resume
                        // re-reads from where late records sent at or after
                        // it began), not for boundaries it skipped.
                        let next = k.clock().next();
                        let mut snaps = finished.clone();
                        snaps.extend(readers.iter().map(|r| r.snap(next, now, None)));
                        if let Err(e) =
                            crate::checkpoint::encode(&snaps).and_then(|b| k.save_forever(next, b))
                        {
                            ctx.fail(e.in_step(&step));
                        }
                    }
                    cap = None;
                    return;
                }
                let active_min = readers
                    .iter()
                    .filter(|r| {
                        !r.done && r.replay.is_none() && !r.clock.is_idle(now, config.idle_timeout)
                    })
                    .map(|r| r.clock.watermark())
                    .min();
                // With every partition idle, follow the most advanced
                // watermark in this process rather than hold progress back.
                let target = active_min
                    .unwrap_or_else(|| highest.max(ctx.metrics.watermark.load(Ordering::Relaxed)));
                let replaying = readers
                    .iter()
                    .any(|r| r.replay.is_some() || r.consumed < r.skip_to);
                if target > *c.time() && !replaying {
                    c.downgrade(&target);
                    if let Some(k) = ckpt.as_mut() {
                        // Every boundary the capability passed: positions now
                        // are positions as of each of them.
                        for epoch in k.clock().passed(Some(target)) {
                            let mut snaps: Vec<ReaderSnap> = finished.clone();
                            snaps.extend(
                                readers
                                    .iter()
                                    .map(|r| r.snap(epoch, now, config.idle_timeout)),
                            );
                            for (r, s) in readers.iter_mut().zip(&snaps[finished.len()..]) {
                                // What a restore re-reads from is what is safe to commit.
                                let at = s.replay.as_ref().map_or(s.position, |m| m.position);
                                if let Some(at) = at {
                                    r.saved.push((epoch, at));
                                }
                            }
                            if let Err(e) =
                                crate::checkpoint::encode(&snaps).and_then(|b| k.save(epoch, b))
                            {
                                ctx.fail(e.in_step(&step));
                                cap = None;
                                return;
                            }
                        }
                        let next = k.clock().next();
                        for r in readers.iter_mut() {
                            r.marks.retain(|m| m.0 >= next);
                        }
                    }
                }
                if busy {
                    activator.activate();
                } else {
                    let nap = config
                        .idle_timeout
                        .map(|t| t / 4)
                        .unwrap_or(Duration::from_millis(10))
                        .clamp(Duration::from_millis(1), Duration::from_millis(50));
                    activator.activate_after(nap);
                }
            }
        },
    );
    Ok(stream)
}
