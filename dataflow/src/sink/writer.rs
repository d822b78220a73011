//! The writer of a sink, on a thread of its own.
//!
//! A worker that writes also computes: with the single writer, worker 0
//! merges every worker's runs and formats every record of the output, and
//! the other workers wait for it. So the sink runs on a thread beside its
//! worker (as a Flink sink runs in a task of its own), fed through a
//! bounded channel: the worker hands it each complete time as it was
//! stashed, and the thread turns it into records (the merge), writes them
//! and commits, in the order the worker asked. The operating system runs
//! that thread on whichever core has room. When the thread falls
//! [`QUEUE`] tasks behind, the worker waits for it, which holds back the
//! sources as any slow operator does.

use std::collections::BTreeMap;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;

use timely::progress::frontier::MutableAntichain;

use super::{Points, Sink, StepBlobs};
use crate::checkpoint::StepCheckpoint;
use crate::error::{Error, Result};
use crate::run::Context;
use crate::time::EventTime;

/// How many tasks (times to write, epochs to commit) the worker may hand
/// the thread ahead of what it has done.
pub(super) const QUEUE: usize = 4;

/// What the worker asks of the thread, in order.
enum Task<X> {
    /// Write the time's stashed entry.
    Write(EventTime, X),
    /// Commit at the checkpoint epoch: every earlier time was handed over.
    Commit(EventTime),
    /// The stream ended: close the sink.
    Close,
}

/// One writer of a sink. The worker side: it hands complete times and
/// checkpoint epochs to the sink's thread, in order, and waits for the
/// thread when the stream ends.
pub(super) struct Writer<X> {
    /// `None` on workers that do not write, and once the thread stopped.
    tasks: Option<SyncSender<Task<X>>>,
    thread: Option<JoinHandle<()>>,
    /// Tells which checkpoint epochs the frontier passed.
    ckpt: Option<StepCheckpoint>,
}

/// The sink and what its thread needs to write and commit.
pub(super) struct Target<S> {
    pub sink: S,
    pub ckpt: Option<StepCheckpoint>,
    pub points: Points,
}

impl<X: Send + 'static> Writer<X> {
    /// A writer on a worker that writes nothing: it drops what it is given.
    pub fn idle() -> Self {
        Writer {
            tasks: None,
            thread: None,
            ckpt: None,
        }
    }

    /// Starts the thread of `target`, which turns each stashed entry into
    /// the sorted records of its time with `records` (called with an empty
    /// batch) before it writes them.
    pub fn start<T, S, R>(
        target: Target<S>,
        ctx: &Arc<Context>,
        step: &str,
        records: R,
    ) -> Result<Self>
    where
        T: Send + 'static,
        S: Sink<T> + Send,
        R: FnMut(X, &mut Vec<(EventTime, T)>) + Send + 'static,
    {
        let (tx, rx) = sync_channel(QUEUE);
        let clock = target.ckpt.clone();
        let (context, name) = (Arc::clone(ctx), step.to_string());
        let thread = std::thread::Builder::new()
            .name(format!("keyflow-sink-{step}"))
            .spawn(move || {
                let served = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    serve(rx, target, &context, &name, records)
                }));
                if let Err(payload) = served {
                    let message = crate::run::panic_message(&*payload);
                    let error = Error::External(format!("the writer panicked: {message}"));
                    context.fail(error.in_step(&name));
                }
            })
            .map_err(|e| Error::External(format!("sink `{step}`: cannot start its thread: {e}")))?;
        Ok(Writer {
            tasks: Some(tx),
            thread: Some(thread),
            ckpt: clock,
        })
    }

    /// Hands the thread the stashed times that `frontier` has passed, in
    /// order, with a commit at each checkpoint epoch passed on the way;
    /// once the frontier is empty, the close, and then waits for the
    /// thread to finish.
    pub fn advance(
        &mut self,
        frontier: &MutableAntichain<EventTime>,
        stash: &mut BTreeMap<EventTime, X>,
    ) {
        let Some(tasks) = self.tasks.as_ref() else {
            stash.clear();
            return;
        };
        let mut epochs = match self.ckpt.as_mut() {
            Some(k) => k.clock().passed_frontier(frontier),
            None => Vec::new(),
        }
        .into_iter()
        .peekable();
        let mut sent = true;
        while let Some(entry) = stash.first_entry() {
            if frontier.less_equal(entry.key()) {
                break;
            }
            let time = *entry.key();
            while let Some(epoch) = epochs.next_if(|e| *e <= time) {
                sent &= tasks.send(Task::Commit(epoch)).is_ok();
            }
            sent &= tasks.send(Task::Write(time, entry.remove())).is_ok();
        }
        for epoch in epochs {
            sent &= tasks.send(Task::Commit(epoch)).is_ok();
        }
        if frontier.is_empty() && sent {
            sent = tasks.send(Task::Close).is_ok();
            self.stop();
        }
        if !sent {
            // The thread stopped on a failure, which it reported.
            self.stop();
            stash.clear();
        }
    }

    /// Closes the channel and waits for the thread: it does what it was
    /// handed (unless the job is failing) and drops the sink. (A panic on
    /// the thread was caught and reported there.)
    fn stop(&mut self) {
        self.tasks = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl<X> Drop for Writer<X> {
    fn drop(&mut self) {
        // A job that stops early (a failure elsewhere) still waits for the
        // sink to be dropped, so that its cleanup (removing a temporary
        // file) is done before the run returns.
        self.tasks = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The sink's thread: does each task in order, until the channel closes,
/// the job fails, or a task fails (reported to the job, which stops).
fn serve<X, T, S, R>(
    tasks: Receiver<Task<X>>,
    mut target: Target<S>,
    ctx: &Context,
    step: &str,
    mut records: R,
) where
    S: Sink<T>,
    R: FnMut(X, &mut Vec<(EventTime, T)>),
    T: 'static,
    S: Send,
{
    // Kept between times so that its allocation is reused (where `records`
    // fills it rather than replacing it).
    let mut batch = Vec::new();
    for task in tasks {
        if ctx.is_aborted() {
            return;
        }
        let outcome = match task {
            Task::Write(time, entry) => {
                records(entry, &mut batch);
                let written = target.sink.write(time, &batch);
                batch.clear();
                written
            }
            Task::Commit(epoch) => commit(&mut target, epoch),
            Task::Close => {
                if let Err(e) = ctx.check_close() {
                    // The job's own rule, not this step's failure: the sink
                    // drops unclosed, so its output stays as it was.
                    ctx.fail(e);
                    return;
                }
                match target.sink.prepare_close() {
                    // Published only once every other step, here and on
                    // the other processes, has ended well too.
                    Ok(()) => return ctx.close_later::<T, S>(step, target.sink),
                    Err(e) => Err(e),
                }
            }
        };
        if let Err(e) = outcome {
            ctx.fail(e.in_step(step));
            return;
        }
    }
}

fn commit<T, S: Sink<T>>(target: &mut Target<S>, epoch: EventTime) -> Result<()> {
    let Some(k) = target.ckpt.as_ref() else {
        return Ok(());
    };
    let sink = &mut target.sink;
    sink.pre_commit(epoch);
    let mut blobs = StepBlobs::new(k, epoch);
    let point = sink.commit_with(&mut blobs)?;
    let refs = blobs.refs;
    let bytes = match &target.points {
        Points::Single => point,
        Points::Parts { part, adopted } => {
            let mut all = Vec::with_capacity(adopted.len() + 1);
            all.push((*part, point));
            all.extend(adopted.iter().cloned());
            crate::checkpoint::encode(&all)?
        }
    };
    k.save_with(epoch, bytes, &refs)
}
