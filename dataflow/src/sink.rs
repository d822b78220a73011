//! Sinks: where results go, written exactly once and in a stable order.
//!
//! The [`sink`] operator gathers a stream on worker 0 of the cluster and
//! hands it over one complete timestamp at a time, sorted, once the frontier
//! has passed that time. So every result is written once, by one writer, and
//! the file is byte for byte the same at any number of workers and processes.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;

use crate::error::{Error, Result};
use crate::run::Context;
use crate::source::EventStream;
use crate::time::EventTime;
use crate::window::Data;

/// Something that takes a job's results.
pub trait Sink<T>: 'static {
    /// Takes every record of one complete event time, sorted.
    fn write(&mut self, time: EventTime, records: &[(EventTime, T)]) -> Result<()>;

    /// Called once when the stream ends: flush and close.
    fn close(&mut self) -> Result<()> {
        Ok(())
    }
}

/// Writes `stream` to the sink that `make` builds. Only worker 0 of the
/// cluster calls `make` (at build time, so a bad path fails before any work)
/// and writes; the other workers forward their records to it.
///
/// # Examples
/// ```
/// use keyflow_dataflow::prelude::*;
/// use keyflow_dataflow::sink::{sink, JsonLinesSink};
///
/// let dir = std::env::temp_dir().join(format!("keyflow-sink-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir).unwrap();
/// let path = dir.join("out.jsonl");
/// let target = path.clone();
/// run(&RunConfig::threads(2), move |worker, ctx| {
///     let target = target.clone();
///     worker.dataflow(|scope| {
///         let input = IterSource::new("n", 2, |p| (0..2u64).map(move |i| (i, i + 10 * p as u64)));
///         let events = source(scope, ctx, input, &SourceConfig::default())?;
///         sink(events, ctx, "numbers", move || JsonLinesSink::create(&target))
///     })
/// })
/// .unwrap();
/// assert_eq!(std::fs::read_to_string(&path).unwrap(), "0\n10\n1\n11\n");
/// ```
pub fn sink<'scope, T, S, F>(
    stream: EventStream<'scope, T>,
    ctx: &Arc<Context>,
    name: &str,
    make: F,
) -> Result<()>
where
    T: Data + Ord,
    S: Sink<T>,
    F: FnOnce() -> Result<S>,
{
    let mut target = if stream.scope().index() == 0 {
        Some(make()?)
    } else {
        None
    };
    let ctx = Arc::clone(ctx);
    let mut builder = OperatorBuilder::new(format!("Sink({name})"), stream.scope());
    let mut input = builder.new_input(stream, Exchange::new(|_: &(EventTime, T)| 0));
    builder.build(move |_| {
        let mut stash: std::collections::BTreeMap<EventTime, Vec<(EventTime, T)>> =
            std::collections::BTreeMap::new();
        let mut closed = false;
        move |frontiers| {
            input.for_each(|cap, data| {
                if let Some(&time) = cap.least() {
                    stash.entry(time).or_default().append(data);
                }
            });
            let Some(sink) = target.as_mut() else {
                stash.clear();
                return;
            };
            let frontier = &frontiers[0];
            while let Some(entry) = stash.first_entry() {
                if frontier.less_equal(entry.key()) {
                    break;
                }
                let time = *entry.key();
                let mut records = entry.remove();
                records.sort();
                if let Err(e) = sink.write(time, &records) {
                    ctx.fail(e);
                    target = None;
                    return;
                }
            }
            if frontier.is_empty() && !closed {
                closed = true;
                if let Err(e) = sink.close() {
                    ctx.fail(e);
                }
            }
        }
    });
    Ok(())
}

/// Writes each record as one line of JSON.
pub struct JsonLinesSink {
    path: PathBuf,
    out: BufWriter<File>,
}

impl JsonLinesSink {
    /// Creates (or truncates) `path`, creating its directory.
    pub fn create(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        let file = File::create(path).map_err(|e| Error::io(path, e))?;
        Ok(JsonLinesSink {
            path: path.to_path_buf(),
            out: BufWriter::new(file),
        })
    }
}

impl<T: Serialize> Sink<T> for JsonLinesSink {
    fn write(&mut self, _time: EventTime, records: &[(EventTime, T)]) -> Result<()> {
        for (_, record) in records {
            serde_json::to_writer(&mut self.out, record)
                .map_err(|e| Error::External(format!("{}: {e}", self.path.display())))?;
            self.out
                .write_all(b"\n")
                .map_err(|e| Error::io(&self.path, e))?;
        }
        // Each complete time is flushed, so a reader tailing the file sees
        // whole results.
        self.out.flush().map_err(|e| Error::io(&self.path, e))
    }

    fn close(&mut self) -> Result<()> {
        self.out.flush().map_err(|e| Error::io(&self.path, e))?;
        self.out
            .get_ref()
            .sync_all()
            .map_err(|e| Error::io(&self.path, e))
    }
}

/// Prints each record on stdout with a formatting function.
pub struct StdoutSink<F>(pub F);

impl<T, F> Sink<T> for StdoutSink<F>
where
    F: FnMut(EventTime, &T) -> String + 'static,
{
    fn write(&mut self, _time: EventTime, records: &[(EventTime, T)]) -> Result<()> {
        let stdout = std::io::stdout();
        let mut out = stdout.lock();
        for (ts, record) in records {
            // A closed pipe (`| head`) is not a job failure worth a panic.
            if writeln!(out, "{}", (self.0)(*ts, record)).is_err() {
                return Ok(());
            }
        }
        Ok(())
    }
}
