//! Run configuration and execution: threads, processes, and clean failure.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use timely::worker::Worker;
use timely::{CommunicationConfig, WorkerConfig};

use crate::checkpoint::{CheckpointConfig, Checkpointer, StepCheckpoint};
use crate::error::{Error, Result};
use crate::explain::{GraphLog, JobGraph};
use crate::flow::Dataflow;
use crate::metrics::Metrics;

/// How many workers and processes run a job, and how the processes find each
/// other. Built from clap flags by the CLI; never from timely's own argument
/// parser, which rejects unknown flags and reads `-h` as a host file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunConfig {
    /// Checkpoints, when the job keeps them.
    pub checkpoint: Option<CheckpointConfig>,
    /// Worker threads per process.
    pub workers: usize,
    /// Number of processes in the cluster.
    pub processes: usize,
    /// This process's index, `0..processes`.
    pub process: usize,
    /// `host:port` of every process, in process order (empty for one process).
    pub hosts: Vec<String>,
    /// How long to wait for peers at start-up.
    pub connect_timeout: Duration,
    /// How long a peer may stay silent before this process gives up on it.
    pub peer_timeout: Duration,
    /// Settings every process of a cluster must share, as `(flag, value)`,
    /// compared when the processes connect (the layout is always compared).
    pub settings: Vec<(String, String)>,
    /// The secret that processes of one cluster prove they hold.
    pub secret: Option<ClusterSecret>,
    /// A file created once this process has joined its cluster (a readiness
    /// signal for orchestrators).
    pub ready_file: Option<std::path::PathBuf>,
}

/// Worker threads per process of the job started last in this process; 0
/// before any.
static WORKER_THREADS: AtomicUsize = AtomicUsize::new(0);

/// Whether this process has more cores than the last job started in it has
/// worker threads. Inputs that can do part of their work on a thread of
/// their own, beside their worker, ask this first, so that they do not take
/// time from workers that already have every core. It is a hint for speed
/// alone: what a job computes never depends on it. False outside a job.
///
/// ```
/// // No job has run in this process yet.
/// assert!(!keyflow_dataflow::run::spare_core());
/// ```
pub fn spare_core() -> bool {
    let workers = WORKER_THREADS.load(Ordering::Relaxed);
    workers > 0 && cores() > workers
}

/// The cores this process may use, read once: on Linux each reading costs
/// a dozen system calls (the affinity mask, then the cgroup's quota
/// files), and inputs ask at every poll.
fn cores() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// The most worker threads one process runs.
pub const MAX_WORKERS: usize = 512;

/// A cluster secret; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct ClusterSecret(pub Vec<u8>);

impl std::fmt::Debug for ClusterSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterSecret(..)")
    }
}

impl RunConfig {
    /// One process with `workers` threads.
    pub fn threads(workers: usize) -> Self {
        RunConfig {
            checkpoint: None,
            workers,
            processes: 1,
            process: 0,
            hosts: Vec::new(),
            connect_timeout: Duration::from_secs(30),
            peer_timeout: Duration::from_secs(30),
            settings: Vec::new(),
            secret: None,
            ready_file: None,
        }
    }

    /// The same configuration, checkpointing to `dir` every `every_ms` of
    /// event time. `fingerprint` names the job and whatever changes its
    /// results (a restore with another fingerprint is refused); a run
    /// started again with the same directory resumes where it stopped.
    ///
    /// ```
    /// use keyflow_dataflow::run::RunConfig;
    /// let config = RunConfig::threads(2).checkpointed("ckpt", 60_000, "word-count v1");
    /// assert_eq!(config.checkpoint.unwrap().every, 60_000);
    /// ```
    pub fn checkpointed(
        mut self,
        dir: impl Into<std::path::PathBuf>,
        every_ms: u64,
        fingerprint: &str,
    ) -> Self {
        self.checkpoint = Some(CheckpointConfig {
            dir: dir.into(),
            every: every_ms,
            fingerprint: fingerprint.to_string(),
        });
        self
    }

    /// Total workers over all processes.
    pub fn peers(&self) -> usize {
        self.workers * self.processes
    }

    /// Reads a host file: one `host:port` per line, in process order; blank
    /// lines and `#` comments are ignored.
    pub fn read_hostfile(path: &Path) -> Result<Vec<String>> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Ok(text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(str::to_string)
            .collect())
    }

    /// Checks the configuration, naming the first bad value.
    pub fn validate(&self) -> Result<()> {
        if self.workers == 0 {
            return Err(Error::Config(
                "--workers 0: need at least one worker".into(),
            ));
        }
        if self.workers > MAX_WORKERS {
            return Err(Error::Config(format!(
                "--workers {}: at most {MAX_WORKERS} per process (every pair of workers \
                 keeps channels, so memory grows with the square); run more processes instead",
                self.workers
            )));
        }
        if self.processes == 0 {
            return Err(Error::Config(
                "--processes 0: need at least one process".into(),
            ));
        }
        if self.process >= self.processes {
            return Err(Error::Config(format!(
                "--process {} is out of range for --processes {} (valid: 0..{})",
                self.process,
                self.processes,
                self.processes - 1
            )));
        }
        if self.processes > 1 {
            if self.hosts.len() != self.processes {
                return Err(Error::Config(format!(
                    "the host file lists {} addresses but --processes is {}",
                    self.hosts.len(),
                    self.processes
                )));
            }
            for (i, host) in self.hosts.iter().enumerate() {
                let ok = host.rsplit_once(':').is_some_and(|(h, p)| {
                    !h.is_empty() && p.parse::<u16>().is_ok_and(|port| port > 0)
                });
                if !ok {
                    return Err(Error::Config(format!(
                        "host entry `{host}` (of --hostfile or --peers) is not host:port, \
                         with a port from 1 to 65535"
                    )));
                }
                if let Some(first) = self.hosts[..i].iter().position(|h| h == host) {
                    return Err(Error::Config(format!(
                        "host entry `{host}` is given for process {first} and process {i}: \
                         each process listens on an address of its own"
                    )));
                }
            }
            if self.connect_timeout.is_zero() {
                return Err(Error::Config(
                    "--connect-timeout 0: the processes could never connect".into(),
                ));
            }
        }
        Ok(())
    }

    /// The timely configuration for this process.
    pub fn timely_config(&self) -> timely::Config {
        let communication = if self.processes > 1 {
            CommunicationConfig::Cluster {
                threads: self.workers,
                process: self.process,
                addresses: self.hosts.clone(),
                report: false,
                zerocopy: false,
            }
        } else if self.workers > 1 {
            CommunicationConfig::Process(self.workers)
        } else {
            CommunicationConfig::Thread
        };
        timely::Config {
            communication,
            worker: WorkerConfig::default(),
        }
    }
}

/// What the workers of one process share: metrics and the first failure.
#[derive(Debug)]
pub struct Context {
    /// The configuration the job runs with.
    pub config: RunConfig,
    /// Process-wide counters.
    pub metrics: Metrics,
    failure: Mutex<Option<Error>>,
    aborted: AtomicBool,
    finished: AtomicUsize,
    checkpointer: std::sync::OnceLock<Arc<Checkpointer>>,
    graph_wanted: AtomicBool,
    graph: std::sync::OnceLock<JobGraph>,
    close_check: std::sync::OnceLock<CloseCheck>,
    /// Tells the other processes of a cluster that this one failed.
    announce: std::sync::OnceLock<Announce>,
    /// The sinks whose streams ended, to close once the run ended well.
    closing: Mutex<Vec<Closing>>,
}

/// A sink whose stream ended: its step and what closes it.
struct Closing {
    step: String,
    close: Box<dyn FnOnce() -> Result<()> + Send>,
}

impl std::fmt::Debug for Closing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Closing").field("step", &self.step).finish()
    }
}

/// What [`Context::fail`] calls with this process's own first error.
struct Announce(Box<dyn Fn(&Error) + Send + Sync>);

impl std::fmt::Debug for Announce {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Announce")
    }
}

/// What a sink asks before it closes (see [`Context::check_before_close`]).
struct CloseCheck(Box<CheckFn>);

type CheckFn = dyn Fn(&Context) -> Result<()> + Send + Sync;

impl std::fmt::Debug for CloseCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CloseCheck")
    }
}

impl Context {
    /// A fresh context for `config`.
    pub fn new(config: RunConfig) -> Self {
        Context {
            config,
            metrics: Metrics::default(),
            failure: Mutex::new(None),
            aborted: AtomicBool::new(false),
            finished: AtomicUsize::new(0),
            checkpointer: std::sync::OnceLock::new(),
            graph_wanted: AtomicBool::new(false),
            graph: std::sync::OnceLock::new(),
            close_check: std::sync::OnceLock::new(),
            announce: std::sync::OnceLock::new(),
            closing: Mutex::new(Vec::new()),
        }
    }

    /// Asks [`run_with_context`] to record the graph of the dataflow it
    /// builds (on worker 0 of the cluster), for [`Context::graph`]. timely
    /// then logs on that worker while the job runs, which costs it a little
    /// time; the graph is all that is kept.
    pub fn record_graph(&self) {
        self.graph_wanted.store(true, Ordering::SeqCst);
    }

    /// The job's graph, once its dataflow is built, if
    /// [`Context::record_graph`] asked for it and this process holds worker
    /// 0.
    ///
    /// # Examples
    /// ```
    /// use std::sync::Arc;
    /// use keyflow_dataflow::prelude::*;
    /// use keyflow_dataflow::run::run_with_context;
    ///
    /// let ctx = Arc::new(Context::new(RunConfig::threads(2)));
    /// ctx.record_graph();
    /// run_with_context(Arc::clone(&ctx), |flow| {
    ///     let input = IterSource::new("n", 2, |p| (0..3u64).map(move |i| (i, i + p as u64)));
    ///     flow.source("n", input, &SourceConfig::default())?.filter(|n| n % 2 == 0);
    ///     Ok(())
    /// })
    /// .unwrap();
    /// let graph = ctx.graph().unwrap();
    /// assert_eq!(graph.nodes[0].id, "n");
    /// assert_eq!(graph.edges[0].to, "Filter");
    /// ```
    pub fn graph(&self) -> Option<&JobGraph> {
        self.graph.get()
    }

    /// Has every sink of this process ask `check` before it closes, that
    /// is, before it makes its output final (a file sink renames its file
    /// into place then). An error fails the run there, and the outputs keep
    /// what they held before it: a file sink removes its file in progress.
    /// For rules over the whole run's input that only its end can settle,
    /// such as refusing a run in which every record was malformed. Only
    /// the first check set counts; returns whether this one was set.
    ///
    /// # Examples
    /// ```
    /// use std::sync::Arc;
    /// use keyflow_dataflow::prelude::*;
    /// use keyflow_dataflow::run::run_with_context;
    ///
    /// let path = std::env::temp_dir().join(format!("keyflow-doc-gate-{}.jsonl", std::process::id()));
    /// std::fs::write(&path, "old\n")?;
    /// let ctx = Arc::new(Context::new(RunConfig::threads(2)));
    /// ctx.check_before_close(|ctx| match ctx.metrics.snapshot().events {
    ///     0 => Err(Error::External("nothing was read".into())),
    ///     _ => Ok(()),
    /// });
    /// let target = path.clone();
    /// let run = run_with_context(Arc::clone(&ctx), move |flow| {
    ///     let target = target.clone();
    ///     let none = IterSource::new("n", 2, |_| std::iter::empty::<(u64, u64)>());
    ///     flow.source("n", none, &SourceConfig::default())?.sink("out", move || JsonLinesSink::create(&target))
    /// });
    /// assert_eq!(run.unwrap_err().to_string(), "nothing was read");
    /// assert_eq!(std::fs::read_to_string(&path)?, "old\n");
    /// # std::fs::remove_file(&path)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn check_before_close(
        &self,
        check: impl Fn(&Context) -> Result<()> + Send + Sync + 'static,
    ) -> bool {
        self.close_check.set(CloseCheck(Box::new(check))).is_ok()
    }

    /// Runs the check set by [`Context::check_before_close`], if any.
    pub(crate) fn check_close(&self) -> Result<()> {
        match self.close_check.get() {
            Some(check) => (check.0)(self),
            None => Ok(()),
        }
    }

    /// The process's checkpoint coordinator, when the job checkpoints.
    pub fn checkpointer(&self) -> Option<&Arc<Checkpointer>> {
        self.checkpointer.get()
    }

    /// For a stateful operator that cannot checkpoint yet: an error naming
    /// it when the job checkpoints, rather than a silently wrong restore.
    pub fn refuse_checkpoints(&self, what: &str) -> Result<()> {
        match self.checkpointer.get() {
            Some(_) => Err(Error::Config(format!(
                "{what} does not support checkpoints yet; run without --checkpoint-dir"
            ))),
            None => Ok(()),
        }
    }

    /// Declares a stateful step on global worker `worker`; returns its
    /// checkpoint handle when the job checkpoints. Step ids are unique per
    /// worker: a second use is an error naming both (`place` says where).
    pub fn checkpoint_step(
        &self,
        worker: usize,
        step: &str,
        place: &str,
    ) -> Result<Option<StepCheckpoint>> {
        self.checkpointer
            .get()
            .map(|c| c.register(worker, step, place))
            .transpose()
    }

    /// Records `error` (the first one wins) and asks every worker to stop.
    pub fn fail(&self, error: Error) {
        let own = !matches!(error, Error::PeerFailed { .. });
        self.record(error, own && !self.is_aborted(), false);
    }

    /// [`Context::fail`] for this process's own start-up checks, which run
    /// while a peer's report of its own failed checks may already have
    /// come in: each process then reports its own reason not to start,
    /// not the peer's.
    fn fail_at_start(&self, error: Error) {
        self.record(error, true, true);
    }

    /// Records `error` where the slot is empty (or, with `over_peer`,
    /// holds a peer's failure), after telling the peers of it if
    /// `announce`, and asks every worker to stop.
    fn record(&self, error: Error, announce: bool, over_peer: bool) {
        // The peers hear of this process's own error before its workers
        // drop their dataflows: until they stop too, timely's network
        // threads here wait for them, and they for this process.
        if let (true, Some(announce)) = (announce, self.announce.get()) {
            (announce.0)(&error);
        }
        let mut slot = self.failure.lock().unwrap_or_else(|p| p.into_inner());
        let replace = match &*slot {
            None => true,
            Some(Error::PeerFailed { .. }) => over_peer,
            Some(_) => false,
        };
        if replace {
            *slot = Some(error);
        }
        self.aborted.store(true, Ordering::SeqCst);
    }

    /// Keeps `sink` of step `step`, whose stream ended, to close when the
    /// run has ended well; a failed run drops it unclosed.
    pub(crate) fn close_later<T: 'static, S: crate::sink::Sink<T> + Send>(
        &self,
        step: &str,
        mut sink: S,
    ) {
        let close = Box::new(move || <S as crate::sink::Sink<T>>::close(&mut sink));
        self.closing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Closing {
                step: step.to_string(),
                close,
            });
    }

    /// Closes the sinks kept by [`Context::close_later`], in the order
    /// their streams ended, until one fails; with `ended_well` false it
    /// drops them all unclosed.
    fn close_sinks(&self, ended_well: bool) -> Result<()> {
        let closing = std::mem::take(&mut *self.closing.lock().unwrap_or_else(|p| p.into_inner()));
        if !ended_well {
            return Ok(());
        }
        for Closing { step, close } in closing {
            let closed = catch_unwind(AssertUnwindSafe(close)).unwrap_or_else(|payload| {
                Err(Error::External(format!(
                    "the sink panicked while closing: {}",
                    panic_message(&*payload)
                )))
            });
            closed.map_err(|e| e.in_step(&step))?;
        }
        Ok(())
    }

    /// Whether the job is stopping because of a failure.
    pub fn is_aborted(&self) -> bool {
        self.aborted.load(Ordering::Relaxed)
    }

    fn take_failure(&self) -> Option<Error> {
        self.failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }
}

pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic payload".to_string()
    }
}

/// Steps `worker` until its dataflows complete, or drops them all if the job
/// fails elsewhere, so that no worker waits forever on a dead peer.
pub fn step_until_done(worker: &mut Worker, ctx: &Context) {
    while worker.has_dataflows() {
        if ctx.is_aborted() {
            for id in worker.installed_dataflows() {
                worker.drop_dataflow(id);
            }
            break;
        }
        worker.step_or_park(Some(Duration::from_millis(20)));
    }
}

/// Runs a job: on every worker of this process, `build` declares the
/// dataflow on the [`Dataflow`] it is given; then the workers run it to
/// completion.
///
/// `build` returns an error to stop the job (for example a file that cannot
/// be opened); errors found while building (a duplicate step id, a bad
/// window) stop it too. A panicking worker becomes [`Error::WorkerPanic`];
/// a failing source or sink becomes its own error, naming the step. Either
/// way the other workers stop and `run` returns the first error. The values
/// `build` returns are collected over this process's workers.
///
/// # Examples
/// ```
/// use keyflow_dataflow::prelude::*;
/// let indexes = run(&RunConfig::threads(2), |flow| Ok(flow.index())).unwrap();
/// assert_eq!(indexes, vec![0, 1]);
/// ```
pub fn run<T, F>(config: &RunConfig, build: F) -> Result<Vec<T>>
where
    T: Send + 'static,
    F: for<'s> Fn(&Dataflow<'s>) -> Result<T> + Send + Sync + 'static,
{
    run_with_context(Arc::new(Context::new(config.clone())), build)
}

/// Like [`run`], with a context the caller keeps (to read metrics from
/// another thread while the job runs).
pub fn run_with_context<T, F>(ctx: Arc<Context>, build: F) -> Result<Vec<T>>
where
    T: Send + 'static,
    F: for<'s> Fn(&Dataflow<'s>) -> Result<T> + Send + Sync + 'static,
{
    run_workers_with_context(ctx, move |worker, ctx| {
        let wanted = worker.index() == 0 && ctx.graph_wanted.load(Ordering::SeqCst);
        let log = wanted.then(|| GraphLog::start(worker));
        let (value, steps) = worker.dataflow(|scope| {
            let flow = Dataflow::new(scope, ctx);
            let value = build(&flow)?;
            flow.finish()?;
            Ok::<_, Error>((value, flow.step_ids()))
        })?;
        if let Some(log) = log {
            let _ = ctx.graph.set(log.finish(worker, &steps));
        }
        Ok(value)
    })
}

/// The low-level form of [`run`]: `build` gets the timely worker itself,
/// for jobs that build several dataflows or use other timestamps. Wrap a
/// scope in [`Dataflow::new`] to use keyflow operators in it, and return
/// [`Dataflow::finish`]'s error.
///
/// # Examples
/// ```
/// use keyflow_dataflow::run::{run_workers, RunConfig};
/// let indexes = run_workers(&RunConfig::threads(2), |worker, _ctx| Ok(worker.index())).unwrap();
/// assert_eq!(indexes, vec![0, 1]);
/// ```
pub fn run_workers<T, F>(config: &RunConfig, build: F) -> Result<Vec<T>>
where
    T: Send + 'static,
    F: Fn(&mut Worker, &Arc<Context>) -> Result<T> + Send + Sync + 'static,
{
    run_workers_with_context(Arc::new(Context::new(config.clone())), build)
}

/// Like [`run_workers`], with a context the caller keeps.
pub fn run_workers_with_context<T, F>(ctx: Arc<Context>, build: F) -> Result<Vec<T>>
where
    T: Send + 'static,
    F: Fn(&mut Worker, &Arc<Context>) -> Result<T> + Send + Sync + 'static,
{
    ctx.config.validate()?;
    WORKER_THREADS.store(ctx.config.workers, Ordering::Relaxed);
    // Held until the run returns: another run on this directory, as this
    // process, would write the same parts and cut back the same outputs.
    let _lock = match &ctx.config.checkpoint {
        Some(config) => Some(crate::checkpoint::lock(&config.dir, ctx.config.process)?),
        None => None,
    };
    if let Some(config) = &ctx.config.checkpoint {
        let c = &ctx.config;
        match Checkpointer::open(config.clone(), c.process, c.processes, c.workers)? {
            Some(checkpointer) => {
                if let Some(epoch) = checkpointer.restored_epoch() {
                    tracing::info!(
                        "restoring from the checkpoint at {} in {}",
                        crate::time::format_utc(epoch),
                        config.dir.display()
                    );
                }
                let _ = ctx.checkpointer.set(checkpointer);
            }
            None => {
                tracing::info!(
                    "{}: this job already ran to its end; nothing to do",
                    config.dir.display()
                );
                return Ok(Vec::new());
            }
        }
    }
    let shared = Arc::clone(&ctx);
    let work = move |worker: &mut Worker| {
        let index = worker.index();
        if shared.is_aborted() {
            return None;
        }
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            let value = build(worker, &shared)?;
            if let Some(c) = shared.checkpointer() {
                c.seal(worker.index())?;
            }
            step_until_done(worker, &shared);
            Ok(value)
        }));
        let error = match outcome {
            Ok(Ok(value)) => return Some(value),
            Ok(Err(error)) => error,
            Err(payload) => Error::WorkerPanic {
                worker: index,
                message: panic_message(&*payload),
            },
        };
        shared.fail(error);
        for id in worker.installed_dataflows() {
            worker.drop_dataflow(id);
        }
        None
    };
    let mut watch = None;
    let guards = if ctx.config.processes > 1 {
        let (builders, comms, heartbeat) = join_cluster(&ctx)?;
        // From here an error goes through the workers, which then stop at
        // once: returning it would drop the mesh, whose threads wait for
        // the peers to close theirs first.
        let c = &ctx.config;
        let started = match (&c.checkpoint, ctx.checkpointer()) {
            (Some(ck), Some(checkpointer)) => {
                crate::checkpoint::check_shared(&ck.dir, c.process, c.processes)
                    .and_then(|()| checkpointer.check_start())
            }
            _ => Ok(()),
        };
        let announce = heartbeat.announcer();
        let _ = ctx
            .announce
            .set(Announce(Box::new(move |e| announce(&e.to_string()))));
        if let Err(error) = started.and_then(|()| mark_ready(c)) {
            ctx.fail_at_start(error);
        }
        watch = Some(heartbeat);
        watch_network_threads(&ctx);
        timely::execute::execute_from(builders, comms, WorkerConfig::default(), work)
            .map_err(Error::Startup)?
    } else {
        mark_ready(&ctx.config)?;
        timely::execute(ctx.config.timely_config(), work).map_err(Error::Startup)?
    };
    let mut values = Vec::new();
    for joined in guards.join() {
        match joined {
            Ok(Some(value)) => values.push(value),
            Ok(None) => {}
            Err(message) => ctx.fail(Error::WorkerPanic { worker: 0, message }),
        }
    }
    let mut failure = ctx.take_failure();
    if let (Some(watch), None) = (watch, &failure) {
        // Only a process that ended well says so (the peers of a failed
        // one heard its error); and its outputs are published only once
        // every peer has said so too, since a peer can fail after this
        // process's streams ended.
        if !watch.bye(|| ctx.is_aborted()) {
            failure = Some(
                ctx.take_failure()
                    .unwrap_or_else(|| Error::External("a process of the cluster failed".into())),
            );
        }
    }
    if let Err(e) = ctx.close_sinks(failure.is_none()) {
        failure = Some(e);
    }
    if let Some(c) = ctx.checkpointer() {
        let finished = c.finish(failure.is_none());
        if let (None, Err(e)) = (&failure, finished) {
            return Err(e);
        }
    }
    match failure {
        Some(error) => Err(error),
        None => Ok(values),
    }
}

/// timely's network threads panic when a peer process dies, and the
/// workers then either wait forever for the dead peer's progress messages or
/// panic while tearing down shared queues. Neither can be recovered inside
/// this process, so a network-thread panic ends the process at once with a
/// clear message and exit status 1 (what `keyflow cluster` reports).
fn watch_network_threads(ctx: &Arc<Context>) {
    let process = ctx.config.process;
    let workers = ctx.config.workers;
    let hosts = ctx.config.hosts.clone();
    let ctx = Arc::downgrade(ctx);
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let thread = std::thread::current();
        let name = thread.name().unwrap_or("");
        if name.starts_with("timely:recv") || name.starts_with("timely:send") {
            // Once this process's dataflows are complete, a peer that exits
            // first merely closes its sockets: nothing is lost.
            // A failed job's workers are stopping anyway, and say why.
            let done = ctx
                .upgrade()
                .is_none_or(|c| c.finished.load(Ordering::SeqCst) >= workers || c.is_aborted());
            if done {
                return;
            }
            // timely names these threads after the peer's index.
            let peer = name
                .rsplit_once('-')
                .and_then(|(_, i)| i.parse::<usize>().ok())
                .filter(|&i| i < hosts.len())
                .map(|i| format!("process {i} ({})", hosts[i]))
                .unwrap_or_else(|| "a peer process".to_string());
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "keyflow: error: process {process} lost {peer}: {}; a process of the cluster \
                 has stopped",
                panic_message(info.payload())
            );
            std::process::exit(1);
        }
        previous(info);
    }));
}

/// Forms the mesh with this process's peers (see [`crate::mesh`]), starts
/// the heartbeat on its control links, and builds timely's allocators over
/// its data links.
fn join_cluster(
    ctx: &Arc<Context>,
) -> Result<(
    Vec<timely::communication::AllocatorBuilder>,
    Box<dyn Any + Send>,
    crate::mesh::Watch,
)> {
    use timely::communication::allocator::zero_copy::initialize::initialize_networking_from_sockets;
    use timely::communication::allocator::ProcessBuilder;
    use timely::communication::{AllocatorBuilder, Hooks};

    let config = &ctx.config;
    let secret = config
        .secret
        .as_ref()
        .map(|s| s.0.as_slice())
        .unwrap_or(&[]);
    let links = crate::mesh::form(&crate::mesh::Mesh {
        process: config.process,
        processes: config.processes,
        workers: config.workers,
        hosts: &config.hosts,
        connect_timeout: config.connect_timeout,
        settings: &config.settings,
        secret,
    })?;
    let watch = crate::mesh::Watch::start(
        config.process,
        &config.hosts,
        links.control,
        config.peer_timeout,
        {
            // A process that has failed itself reports its own error, not
            // the peers that stop because of it.
            let ctx = Arc::downgrade(ctx);
            let exit = crate::mesh::watch::exit_on_lost();
            Arc::new(move |message: String| {
                if ctx.upgrade().is_none_or(|c| !c.is_aborted()) {
                    exit(message)
                }
            })
        },
        {
            let (mine, theirs) = (Arc::downgrade(ctx), Arc::downgrade(ctx));
            let failed = Arc::downgrade(ctx);
            crate::mesh::Reports {
                failed: Arc::new(move |peer, bytes| {
                    if let Some(c) = failed.upgrade() {
                        c.fail(Error::PeerFailed {
                            process: peer,
                            message: String::from_utf8_lossy(bytes).into_owned(),
                        });
                    }
                }),
                make: Arc::new(move || {
                    mine.upgrade()
                        .and_then(|c| serde_json::to_vec(&c.metrics.report()).ok())
                        .unwrap_or_default()
                }),
                take: Arc::new(move |peer, bytes| {
                    let report = serde_json::from_slice(bytes);
                    if let (Some(c), Ok(report)) = (theirs.upgrade(), report) {
                        c.metrics.note_peer(peer, report);
                    }
                }),
            }
        },
    )
    .map_err(|e| Error::Startup(format!("cannot start the heartbeat: {e}")))?;
    let hooks = Hooks::default();
    let local =
        ProcessBuilder::new_typed_vector(config.workers, hooks.refill.clone(), hooks.spill.clone());
    let (builders, comms) = initialize_networking_from_sockets(
        local,
        links.data,
        config.process,
        config.workers,
        hooks,
    )
    .map_err(|e| Error::Startup(format!("cannot start timely's network threads: {e}")))?;
    let builders = builders.into_iter().map(AllocatorBuilder::Tcp).collect();
    Ok((builders, Box::new(comms), watch))
}

/// Creates the ready file, if one is asked for, once the process has joined
/// its cluster.
fn mark_ready(config: &RunConfig) -> Result<()> {
    match &config.ready_file {
        Some(path) => std::fs::write(path, b"ready\n").map_err(|e| Error::io(path, e)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_values_by_name() {
        let mut c = RunConfig::threads(0);
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("--workers 0"));
        c.workers = MAX_WORKERS + 1;
        let message = c.validate().unwrap_err().to_string();
        assert!(message.contains("--workers 513: at most 512"), "{message}");
        c.workers = 1;
        c.processes = 2;
        c.process = 2;
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("--process 2"));
        c.process = 1;
        c.hosts = vec!["127.0.0.1:2101".into()];
        assert!(c.validate().unwrap_err().to_string().contains("lists 1"));
        c.hosts.push("nonsense".into());
        assert!(c.validate().unwrap_err().to_string().contains("nonsense"));
        c.hosts[1] = "127.0.0.1:0".into();
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("127.0.0.1:0"));
        c.hosts[1] = "127.0.0.1:2101".into();
        let message = c.validate().unwrap_err().to_string();
        assert!(message.contains("process 0 and process 1"), "{message}");
        c.hosts[1] = "127.0.0.1:2102".into();
        c.validate().unwrap();
        c.connect_timeout = Duration::ZERO;
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("--connect-timeout 0"));
    }

    #[test]
    fn a_panic_becomes_an_error() {
        let err = run_workers(&RunConfig::threads(2), |worker, _| {
            if worker.index() == 1 {
                panic!("boom at worker {}", worker.index());
            }
            Ok(())
        })
        .unwrap_err();
        assert!(err.to_string().contains("boom at worker 1"), "{err}");
    }
}
