//! The JSON-lines file sink and the temporary-file bookkeeping shared by
//! file outputs.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::{Encoded, Sink};
use crate::error::{Error, Result};
use crate::time::EventTime;

/// Writes each record as one line of JSON.
///
/// A regular file is written under a temporary name beside it and renamed
/// into place when the stream ends, so a run that fails or is killed never
/// leaves output that looks complete, nor destroys an earlier complete one.
/// With checkpoints, the file in progress is cut back to its commit point on
/// restore, so the finished file equals an uninterrupted run byte for byte.
/// Special files (`/dev/stdout`, a FIFO) are written directly.
///
/// # Examples
/// ```
/// use keyflow_dataflow::prelude::*;
///
/// let path = std::env::temp_dir().join(format!("keyflow-jsonl-sink-{}.jsonl", std::process::id()));
/// let target = path.clone();
/// run(&RunConfig::threads(2), move |flow| {
///     let input = IterSource::new("n", 1, |_| (1..=3u64).map(|i| (i, i * i)));
///     let target = target.clone();
///     flow.source("n", input, &SourceConfig::default())?.sink("squares", move || JsonLinesSink::create(&target))
/// })
/// .unwrap();
/// assert_eq!(std::fs::read_to_string(&path).unwrap(), "1\n4\n9\n");
/// # std::fs::remove_file(&path).unwrap();
/// ```
pub struct JsonLinesSink {
    path: PathBuf,
    /// The file in progress; `None` when writing `path` directly.
    tmp: Option<PathBuf>,
    out: BufWriter<File>,
    /// Set once a commit point was handed out: the file in progress must
    /// then outlive a failure, for the restore.
    committed: bool,
    /// Flushed and synced for the stream's end (see [`Sink::prepare_close`]),
    /// with nothing written since.
    prepared: bool,
    closed: bool,
}

/// The write buffer's size: 64 KiB, not `BufWriter`'s 8 KiB, so that a
/// large output takes eight times fewer write calls, each still small
/// enough for a core's cache (`BENCHMARKS.md`, *Through the standard
/// JSON-lines sink*).
const BUFFER: usize = 1 << 16;

/// Where the symbolic link `path` leads, its own links followed; for a
/// link to a file not yet there, the file it names.
fn link_target(path: &Path) -> Result<PathBuf> {
    match std::fs::canonicalize(path) {
        Ok(target) => Ok(target),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let target = std::fs::read_link(path).map_err(|e| Error::io(path, e))?;
            Ok(path.parent().unwrap_or(Path::new("")).join(target))
        }
        Err(e) => Err(Error::io(path, e)),
    }
}

fn special(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| !m.is_file() && !m.is_dir())
}

/// The temporary files beside `path` (`.NAME.WHAT-PID-N`), each with what
/// follows the prefix (`PID-N`); none when its directory cannot be read.
fn temps_beside(path: &Path, what: &str) -> Vec<(PathBuf, String)> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let dir = match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(d) => d.to_path_buf(),
        None => PathBuf::from("."),
    };
    let prefix = format!(".{name}.{what}-");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let file = entry.file_name().to_string_lossy().into_owned();
            let rest = file.strip_prefix(&prefix)?.to_string();
            Some((entry.path(), rest))
        })
        .collect()
}

/// Removes temporary files beside `path` that killed runs left behind
/// (`.NAME.WHAT-PID-N`), except `keep`. Called on restore only: a resumed
/// run owns its outputs.
pub fn remove_stale_temps(path: &Path, what: &str, keep: Option<&Path>) {
    for (found, _) in temps_beside(path, what) {
        if keep.is_none_or(|k| k.file_name() != found.file_name()) {
            let _ = std::fs::remove_file(&found);
        }
    }
}

/// Removes the temporary files beside `path` (`.NAME.WHAT-PID-N`) whose
/// process no longer runs on this host: what runs killed before they
/// finished left behind. Called once an output is final, so a run that
/// does finish clears them; a file of a live process stays, and so does
/// every one where `/proc` cannot tell.
///
/// ```
/// use keyflow_dataflow::sink::remove_orphaned_temps;
///
/// let dir = std::env::temp_dir().join(format!("keyflow-orphans-{}", std::process::id()));
/// std::fs::create_dir_all(&dir)?;
/// // Above Linux's largest process id: no such process runs.
/// let dead = dir.join(".out.jsonl.inprogress-4194305-0");
/// let mine = dir.join(format!(".out.jsonl.inprogress-{}-3", std::process::id()));
/// std::fs::write(&dead, "half")?;
/// std::fs::write(&mine, "half")?;
/// remove_orphaned_temps(&dir.join("out.jsonl"), "inprogress");
/// # #[cfg(target_os = "linux")]
/// assert!(!dead.exists());
/// assert!(mine.exists());
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn remove_orphaned_temps(path: &Path, what: &str) {
    if !Path::new("/proc/self").exists() {
        return;
    }
    for (found, rest) in temps_beside(path, what) {
        let pid = rest
            .split_once('-')
            .and_then(|(pid, n)| n.parse::<u64>().ok().and(pid.parse::<u32>().ok()));
        let orphaned = pid.is_some_and(|pid| {
            pid != std::process::id() && !Path::new("/proc").join(pid.to_string()).exists()
        });
        if orphaned {
            let _ = std::fs::remove_file(&found);
        }
    }
}

/// Temporary files being written that a signal handler should remove.
static IN_FLIGHT: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());

fn in_flight() -> std::sync::MutexGuard<'static, Vec<PathBuf>> {
    IN_FLIGHT.lock().unwrap_or_else(|p| p.into_inner())
}

/// Removes the files in progress of unfinished, uncommitted outputs: a
/// process about to exit on SIGINT or SIGTERM calls this so that none is
/// left behind. (A file in progress that a checkpoint committed stays: the
/// next run resumes it.)
pub fn remove_temporary_files() {
    for tmp in in_flight().drain(..) {
        let _ = std::fs::remove_file(tmp);
    }
}

fn untrack(path: &Path) {
    in_flight().retain(|p| p != path);
}

/// A temporary name beside `path`, unique in this process.
pub fn temp_name(path: &Path, what: &str) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let dir = path.parent().unwrap_or(Path::new(""));
    dir.join(format!(".{name}.{what}-{}-{n}", std::process::id()))
}

impl JsonLinesSink {
    /// Starts writing part `part` of a partitioned output in `dir`
    /// ([`JsonLinesSink::part_path`]), for
    /// [`crate::Events::sink_partitioned`].
    pub fn part(dir: &Path, part: usize) -> Result<Self> {
        Self::create(&Self::part_path(dir, part))
    }

    /// The file of part `part` in `dir`: `DIR/part-W.jsonl`.
    ///
    /// ```
    /// use std::path::Path;
    /// use keyflow_dataflow::sink::JsonLinesSink;
    /// assert_eq!(JsonLinesSink::part_path(Path::new("out"), 3), Path::new("out/part-3.jsonl"));
    /// ```
    pub fn part_path(dir: &Path, part: usize) -> PathBuf {
        dir.join(format!("part-{part}.jsonl"))
    }

    /// Starts writing `path` (creating its directory). The file appears
    /// under its name when the stream ends. A directory at `path` is an
    /// error now, not when the stream ends; a symbolic link is followed, so
    /// that its target is written and the link stays (`/dev/stdout` of a
    /// shell that sends it to a file, say).
    pub fn create(path: &Path) -> Result<Self> {
        if path.is_dir() {
            return Err(Error::Config(format!(
                "output {} is a directory, not a file",
                path.display()
            )));
        }
        let resolved;
        let path = match std::fs::symlink_metadata(path) {
            Ok(meta) if meta.file_type().is_symlink() && !special(path) => {
                resolved = link_target(path)?;
                resolved.as_path()
            }
            _ => path,
        };
        if special(path) {
            let file = std::fs::OpenOptions::new()
                .write(true)
                .open(path)
                .map_err(|e| Error::io(path, e))?;
            return Ok(JsonLinesSink {
                path: path.to_path_buf(),
                tmp: None,
                out: BufWriter::with_capacity(BUFFER, file),
                committed: false,
                prepared: false,
                closed: false,
            });
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        let tmp = temp_name(path, "inprogress");
        let file = File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        in_flight().push(tmp.clone());
        Ok(JsonLinesSink {
            path: path.to_path_buf(),
            tmp: Some(tmp),
            out: BufWriter::with_capacity(BUFFER, file),
            committed: false,
            prepared: false,
            closed: false,
        })
    }

    fn written(&self) -> &Path {
        self.tmp.as_deref().unwrap_or(&self.path)
    }
}

impl Drop for JsonLinesSink {
    fn drop(&mut self) {
        if let (Some(tmp), false, false) = (&self.tmp, self.closed, self.committed) {
            let _ = std::fs::remove_file(tmp);
        }
        if let Some(tmp) = &self.tmp {
            untrack(tmp);
        }
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
        self.flush_time()
    }

    fn prepare_close(&mut self) -> Result<()> {
        self.prepare()
    }

    fn close(&mut self) -> Result<()> {
        self.finish()
    }

    fn commit(&mut self) -> Result<Vec<u8>> {
        self.commit_point()
    }

    fn restore(&mut self, point: &[u8]) -> Result<()> {
        self.resume(point)
    }
}

/// With [`crate::Events::sink_encoded`], the file holds the bytes the
/// encoder made, as they are (lines of CSV, say), with the same temporary
/// file, commit points and restore as JSON lines.
impl Sink<Encoded> for JsonLinesSink {
    fn write(&mut self, _time: EventTime, records: &[(EventTime, Encoded)]) -> Result<()> {
        for (_, Encoded(bytes)) in records {
            // In pieces the size of a cache, not megabytes at once: one
            // large write measured several times as costly in the kernel.
            for piece in bytes.chunks(BUFFER) {
                self.out
                    .write_all(piece)
                    .map_err(|e| Error::io(&self.path, e))?;
            }
        }
        self.flush_time()
    }

    fn prepare_close(&mut self) -> Result<()> {
        self.prepare()
    }

    fn close(&mut self) -> Result<()> {
        self.finish()
    }

    fn commit(&mut self) -> Result<Vec<u8>> {
        self.commit_point()
    }

    fn restore(&mut self, point: &[u8]) -> Result<()> {
        self.resume(point)
    }
}

impl JsonLinesSink {
    /// Each complete time is flushed, so a reader tailing the file sees
    /// whole results.
    fn flush_time(&mut self) -> Result<()> {
        self.prepared = false;
        self.out.flush().map_err(|e| Error::io(&self.path, e))
    }

    /// Flushes and syncs the file in progress, which stays under its
    /// temporary name until [`JsonLinesSink::finish`].
    fn prepare(&mut self) -> Result<()> {
        let written = self.written().to_path_buf();
        self.out.flush().map_err(|e| Error::io(&written, e))?;
        if let Some(tmp) = &self.tmp {
            self.out
                .get_ref()
                .sync_all()
                .map_err(|e| Error::io(tmp, e))?;
        }
        self.prepared = true;
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        if !self.prepared {
            self.prepare()?;
        }
        if let Some(tmp) = self.tmp.clone() {
            std::fs::rename(&tmp, &self.path).map_err(|e| Error::io(&self.path, e))?;
            if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
                if let Ok(d) = File::open(dir) {
                    let _ = d.sync_all();
                }
            }
            remove_orphaned_temps(&self.path, "inprogress");
        }
        self.closed = true;
        Ok(())
    }

    fn commit_point(&mut self) -> Result<Vec<u8>> {
        let written = self.written().to_path_buf();
        self.out.flush().map_err(|e| Error::io(&written, e))?;
        let Some(tmp) = &self.tmp else {
            return Ok(Vec::new());
        };
        self.out
            .get_ref()
            .sync_data()
            .map_err(|e| Error::io(tmp, e))?;
        let len = self
            .out
            .get_ref()
            .metadata()
            .map_err(|e| Error::io(tmp, e))?
            .len();
        self.committed = true;
        untrack(tmp);
        crate::checkpoint::encode(&(tmp.clone(), len))
    }

    fn resume(&mut self, point: &[u8]) -> Result<()> {
        if point.is_empty() {
            return Ok(());
        }
        let (old, len): (PathBuf, u64) = crate::checkpoint::decode(point, "sink commit point")?;
        let Some(tmp) = self.tmp.take() else {
            return Err(Error::Config(format!(
                "{}: a checkpoint of a regular file cannot resume into a special file",
                self.path.display()
            )));
        };
        let _ = std::fs::remove_file(&tmp);
        untrack(&tmp);
        // Killed after the rename but before the run was marked finished:
        // the complete file goes back to being the file in progress.
        if !old.exists() && self.path.exists() {
            std::fs::rename(&self.path, &old).map_err(|e| Error::io(&old, e))?;
        }
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&old)
            .map_err(|e| Error::Checkpoint {
                path: old.clone(),
                reason: format!("the output in progress cannot be reopened: {e}"),
            })?;
        let have = file.metadata().map_err(|e| Error::io(&old, e))?.len();
        if have < len {
            return Err(Error::Checkpoint {
                path: old,
                reason: format!(
                    "the output in progress holds {have} bytes, the checkpoint committed {len}"
                ),
            });
        }
        file.set_len(len).map_err(|e| Error::io(&old, e))?;
        let mut out = BufWriter::with_capacity(BUFFER, file);
        use std::io::Seek;
        out.seek(std::io::SeekFrom::Start(len))
            .map_err(|e| Error::io(&old, e))?;
        self.out = out;
        remove_stale_temps(&self.path, "inprogress", Some(&old));
        self.tmp = Some(old);
        self.committed = true;
        Ok(())
    }
}
