//! The progress line of long runs: events/s, event-time progress, late and
//! bad counts, on stderr.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use keyflow::dataflow::run::Context;
use keyflow::dataflow::time::format_utc;

/// Prints progress every second (on a terminal) or every 10 seconds (in a
/// log) until dropped.
pub struct Progress {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Progress {
    /// Starts reporting on `ctx`'s metrics; `quiet` turns it off.
    pub fn start(ctx: &Arc<Context>, quiet: bool) -> Self {
        Self::start_with(ctx, quiet, |_| String::new())
    }

    /// Like [`Progress::start`], with a job's own words at the end of each
    /// line (`extra` returns them; empty for none).
    pub fn start_with(
        ctx: &Arc<Context>,
        quiet: bool,
        extra: impl Fn(&Context) -> String + Send + 'static,
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        if quiet {
            return Progress { stop, thread: None };
        }
        let (flag, ctx) = (Arc::clone(&stop), Arc::clone(ctx));
        let thread =
            std::thread::spawn(move || {
                let tty = std::io::stderr().is_terminal();
                let every = if tty {
                    Duration::from_secs(1)
                } else {
                    Duration::from_secs(10)
                };
                let started = Instant::now();
                let mut last = (Instant::now(), 0u64);
                let mut shown = false;
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(100));
                    if last.0.elapsed() < every {
                        continue;
                    }
                    let m = ctx.metrics.snapshot();
                    let rate = (m.events - last.1) as f64 / last.0.elapsed().as_secs_f64();
                    last = (Instant::now(), m.events);
                    let mut line =
                        format!(
                    "[{:>4}s] {} events ({:.0}/s), event time {}, late {}, bad {}, future {}",
                    started.elapsed().as_secs(),
                    m.events,
                    rate,
                    if m.watermark > 0 { format_utc(m.watermark) } else { "-".into() },
                    m.late(),
                    m.bad,
                    m.future
                );
                    let more = extra(&ctx);
                    if !more.is_empty() {
                        line.push_str(", ");
                        line.push_str(&more);
                    }
                    let mut err = std::io::stderr().lock();
                    if tty {
                        let _ = write!(err, "\r{line}\x1b[K");
                    } else {
                        let _ = writeln!(err, "{line}");
                    }
                    shown = true;
                }
                if shown && tty {
                    let _ = writeln!(std::io::stderr());
                }
            });
        Progress {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The last line of a run on stderr: what was read and what was skipped.
/// `--quiet` keeps it: it is the only report of dropped and bad records.
pub fn summary(ctx: &Context, _quiet: bool) {
    {
        let m = ctx.metrics.snapshot();
        say!(
            "done: {} events, {} late, {} bad, {} too far in the future",
            m.events,
            m.late(),
            m.bad,
            m.future
        );
        if m.skipped > 0 {
            say!("skipped: {} records with no views", m.skipped);
        }
        // Which steps the late, dropped and bad records were counted at,
        // when there were any: two windowed steps can differ.
        for (id, s) in ctx.metrics.steps() {
            if s.late + s.dropped + s.bad > 0 {
                say!(
                    "  step {id}: {} in, {} out, {} late, {} dropped, {} bad",
                    s.records_in,
                    s.records_out,
                    s.late,
                    s.dropped,
                    s.bad
                );
            }
        }
    }
}
