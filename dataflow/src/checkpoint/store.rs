//! The checkpoint directory on disk.
//!
//! ```text
//! DIR/epoch-<E>/p<P>-w<W>.part   one per worker: header, then the steps' parts
//! DIR/epoch-<E>/done-p<P>        process P has written all of its parts
//! DIR/epoch-<E>/MANIFEST         written last, by process 0: the epoch is complete
//! DIR/FINISHED                   the job ran to its end
//! DIR/start-p<P>                 the epoch process P of the current run restored
//! ```
//!
//! Every file is written to a temporary name, fsynced and renamed, and the
//! directory is fsynced after the rename. A part file starts with a magic
//! string, the format version, the body's length and its CRC-32, so that a
//! truncated, damaged, foreign or older file is an error that names it.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::time::EventTime;

/// The version of the files written here (2: sources keep the read
/// positions of inputs that can seek).
pub const FORMAT_VERSION: u32 = 2;
const MAGIC: &[u8; 8] = b"KFCKPT\0\x01";
const HEADER: usize = 8 + 4 + 8 + 4;

/// What a checkpoint directory holds for a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// Nothing to restore: start from the beginning.
    Fresh,
    /// Restore from the complete epoch `E`.
    Resume(EventTime),
    /// The job already ran to its end with this configuration.
    Finished,
}

#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    version: u32,
    fingerprint: String,
    epoch: EventTime,
    processes: usize,
    workers: usize,
    parts: Vec<String>,
    /// The CRC-32 of each part's body, as its header gives it, so that a
    /// part put there from another epoch or checkpoint is refused (empty
    /// in manifests written before they were recorded).
    #[serde(default)]
    part_crcs: Vec<u32>,
    /// Blobs (under `DIR/blobs/`) the parts refer to.
    #[serde(default)]
    blobs: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Finished {
    version: u32,
    fingerprint: String,
}

fn damaged(path: &Path, reason: impl Into<String>) -> Error {
    Error::Checkpoint {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

pub(crate) fn epoch_dir(dir: &Path, epoch: EventTime) -> PathBuf {
    dir.join(format!("epoch-{epoch}"))
}

pub(crate) fn part_name(process: usize, worker: usize) -> String {
    format!("p{process}-w{worker}.part")
}

fn sync_dir(dir: &Path) {
    // Not every file system can fsync a directory; the rename is still
    // atomic there.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Writes `bytes` to `path` atomically: temporary name, fsync, rename.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let written = File::create(&tmp).and_then(|mut f| {
        f.write_all(bytes)?;
        f.sync_all()
    });
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io(&tmp, e));
    }
    if let Err(e) = std::fs::rename(&tmp, path) {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io(path, e));
    }
    sync_dir(dir);
    Ok(())
}

/// Encodes the parts of one worker with the file header.
pub(crate) fn encode_part(steps: &BTreeMap<String, Vec<u8>>) -> Result<Vec<u8>> {
    framed(super::encode(steps)?)
}

fn framed(body: Vec<u8>) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(HEADER + body.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

/// Decodes a part, which must be the one whose body has checksum `crc`
/// when the manifest recorded it.
fn decode_part(path: &Path, crc: Option<u32>) -> Result<BTreeMap<String, Vec<u8>>> {
    let (body, found) = unframe_with_crc(path)?;
    if crc.is_some_and(|want| want != found) {
        return Err(damaged(
            path,
            "not the part this epoch's manifest recorded (its checksum differs): \
             it was put here from another epoch or checkpoint",
        ));
    }
    super::decode(&body, &path.display().to_string())
}

/// The body checksum in a part's header, for the manifest.
fn part_crc(path: &Path) -> Result<u32> {
    let mut head = [0u8; HEADER];
    File::open(path)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut head))
        .map_err(|e| damaged(path, format!("cannot read: {e}")))?;
    if &head[..8] != MAGIC {
        return Err(damaged(path, "not a keyflow checkpoint part (bad header)"));
    }
    let mut crc = [0u8; 4];
    crc.copy_from_slice(&head[20..24]);
    Ok(u32::from_le_bytes(crc))
}

fn blob_path(dir: &Path, name: &str) -> Result<PathBuf> {
    if name.is_empty() || name.contains('/') || name.contains("..") {
        return Err(damaged(
            &dir.join("blobs"),
            format!("bad blob name `{name}`"),
        ));
    }
    Ok(dir.join("blobs").join(name))
}

/// Writes a blob (framed and checksummed like a part).
pub(crate) fn write_blob(dir: &Path, name: &str, body: &[u8]) -> Result<()> {
    let path = blob_path(dir, name)?;
    let blobs = dir.join("blobs");
    std::fs::create_dir_all(&blobs).map_err(|e| Error::io(&blobs, e))?;
    write_atomic(&path, &framed(body.to_vec())?)
}

/// Reads a blob written by [`write_blob`], checking its frame.
pub(crate) fn read_blob(dir: &Path, name: &str) -> Result<Vec<u8>> {
    unframe(&blob_path(dir, name)?)
}

fn unframe(path: &Path) -> Result<Vec<u8>> {
    unframe_with_crc(path).map(|(body, _)| body)
}

/// The body of a framed file, checked, and its checksum.
fn unframe_with_crc(path: &Path) -> Result<(Vec<u8>, u32)> {
    let mut bytes = std::fs::read(path).map_err(|e| damaged(path, format!("cannot read: {e}")))?;
    if bytes.len() < HEADER || &bytes[..8] != MAGIC {
        return Err(damaged(path, "not a keyflow checkpoint part (bad header)"));
    }
    let word = |at: usize, n: usize| -> u64 {
        let mut b = [0u8; 8];
        b[..n].copy_from_slice(&bytes[at..at + n]);
        u64::from_le_bytes(b)
    };
    let version = word(8, 4) as u32;
    if version != FORMAT_VERSION {
        return Err(damaged(
            path,
            format!("format version {version}, this keyflow reads version {FORMAT_VERSION}"),
        ));
    }
    let len = word(12, 8);
    let crc = word(20, 4) as u32;
    let body = &bytes[HEADER..];
    if body.len() as u64 != len {
        return Err(damaged(
            path,
            format!("truncated: {} of {len} body bytes", body.len()),
        ));
    }
    if crc32fast::hash(body) != crc {
        return Err(damaged(path, "checksum mismatch (the file is damaged)"));
    }
    Ok((bytes.split_off(HEADER), crc))
}

/// Epoch directories present, newest first.
fn epochs(dir: &Path) -> Result<Vec<EventTime>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(dir, e)),
    };
    let mut found: Vec<EventTime> = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let name = entry.file_name();
        if let Some(e) = name.to_str().and_then(|n| n.strip_prefix("epoch-")) {
            if let Ok(e) = e.parse() {
                found.push(e);
            }
        }
    }
    found.sort_unstable_by(|a, b| b.cmp(a));
    Ok(found)
}

fn read_manifest(path: &Path) -> Result<Manifest> {
    let text =
        std::fs::read_to_string(path).map_err(|e| damaged(path, format!("cannot read: {e}")))?;
    let (json, crc_line) = text
        .trim_end()
        .rsplit_once('\n')
        .ok_or_else(|| damaged(path, "truncated manifest"))?;
    let crc = crc_line
        .strip_prefix("crc32 ")
        .and_then(|c| u32::from_str_radix(c, 16).ok())
        .ok_or_else(|| damaged(path, "manifest has no checksum line"))?;
    if crc32fast::hash(json.as_bytes()) != crc {
        return Err(damaged(path, "checksum mismatch (the manifest is damaged)"));
    }
    let manifest: Manifest =
        serde_json::from_str(json).map_err(|e| damaged(path, format!("bad manifest: {e}")))?;
    if manifest.version != FORMAT_VERSION {
        return Err(damaged(
            path,
            format!(
                "format version {}, this keyflow reads version {FORMAT_VERSION}",
                manifest.version
            ),
        ));
    }
    Ok(manifest)
}

fn check_fingerprint(path: &Path, found: &str, expected: &str) -> Result<()> {
    if found == expected {
        return Ok(());
    }
    Err(damaged(
        path,
        format!(
            "this checkpoint belongs to a different job or configuration \
             (it has `{found}`, this run is `{expected}`); use another checkpoint directory, \
             or discard this one (--fresh; `checkpoint::wipe` in a custom job)"
        ),
    ))
}

/// What `dir` holds for the job with `fingerprint`. A damaged or foreign
/// checkpoint is an error naming the file, never a fresh start. For a
/// finished job it also removes any epochs and blobs still there (a run
/// killed between marking the job finished and removing them); call it
/// holding the directory's [`lock`](super::lock).
pub fn status(dir: &Path, fingerprint: &str) -> Result<Status> {
    status_as(dir, fingerprint, 0)
}

/// [`status`] as process `process` of a cluster. Only process 0 checks
/// the fingerprint: the manifests and the finished marker carry its
/// fingerprint, and the others' may differ where their command lines may
/// (an output's path, an input's copy on another host). They must match
/// process 0's flags when the mesh forms, and restore the epoch it does.
pub fn status_as(dir: &Path, fingerprint: &str, process: usize) -> Result<Status> {
    let check = |path: &Path, found: &str| match process {
        0 => check_fingerprint(path, found, fingerprint),
        _ => Ok(()),
    };
    let finished = dir.join("FINISHED");
    if finished.exists() {
        let text = std::fs::read_to_string(&finished)
            .map_err(|e| damaged(&finished, format!("cannot read: {e}")))?;
        let f: Finished = serde_json::from_str(&text)
            .map_err(|e| damaged(&finished, format!("bad marker: {e}")))?;
        check(&finished, &f.fingerprint)?;
        // A run killed right after writing the marker left them behind.
        remove_epochs_and_blobs(dir)?;
        return Ok(Status::Finished);
    }
    for epoch in epochs(dir)? {
        let path = epoch_dir(dir, epoch).join("MANIFEST");
        if path.exists() {
            let manifest = read_manifest(&path)?;
            check(&path, &manifest.fingerprint)?;
            return Ok(Status::Resume(epoch));
        }
    }
    Ok(Status::Fresh)
}

/// The newest complete epoch in `dir`, whatever its job (for messages).
pub fn newest_complete(dir: &Path) -> Result<Option<EventTime>> {
    Ok(epochs(dir)?
        .into_iter()
        .find(|e| epoch_dir(dir, *e).join("MANIFEST").exists()))
}

/// Every part of a complete epoch, by step id, with the parts of all old
/// workers in worker order; process 0 checks the fingerprint (see
/// [`status_as`]).
pub(crate) fn load(
    dir: &Path,
    epoch: EventTime,
    fingerprint: &str,
    process: usize,
) -> Result<BTreeMap<String, Vec<Vec<u8>>>> {
    let edir = epoch_dir(dir, epoch);
    let manifest = read_manifest(&edir.join("MANIFEST"))?;
    if process == 0 {
        check_fingerprint(&edir.join("MANIFEST"), &manifest.fingerprint, fingerprint)?;
    }
    let mut steps: BTreeMap<String, Vec<Vec<u8>>> = BTreeMap::new();
    if !manifest.part_crcs.is_empty() && manifest.part_crcs.len() != manifest.parts.len() {
        return Err(damaged(
            &edir.join("MANIFEST"),
            "it lists another number of checksums than parts",
        ));
    }
    for (i, name) in manifest.parts.iter().enumerate() {
        if name.contains('/') || name.contains("..") {
            return Err(damaged(
                &edir.join("MANIFEST"),
                format!("bad part name `{name}`"),
            ));
        }
        let crc = manifest.part_crcs.get(i).copied();
        for (step, bytes) in decode_part(&edir.join(name), crc)? {
            steps.entry(step).or_default().push(bytes);
        }
    }
    Ok(steps)
}

/// Writes the manifest of `epoch` if every process has written its parts;
/// returns whether the epoch is complete.
pub(crate) fn try_complete(
    dir: &Path,
    epoch: EventTime,
    fingerprint: &str,
    processes: usize,
    workers: usize,
) -> Result<bool> {
    let edir = epoch_dir(dir, epoch);
    if !(0..processes).all(|p| edir.join(format!("done-p{p}")).exists()) {
        return Ok(false);
    }
    let mut blobs = Vec::new();
    for p in 0..processes {
        let done = edir.join(format!("done-p{p}"));
        let text = std::fs::read_to_string(&done).map_err(|e| Error::io(&done, e))?;
        let listed: Vec<String> =
            serde_json::from_str(&text).map_err(|e| damaged(&done, format!("bad marker: {e}")))?;
        blobs.extend(listed);
    }
    let parts: Vec<String> = (0..processes * workers)
        .map(|w| part_name(w / workers, w))
        .collect();
    let part_crcs = parts
        .iter()
        .map(|name| part_crc(&edir.join(name)))
        .collect::<Result<Vec<u32>>>()?;
    let manifest = Manifest {
        version: FORMAT_VERSION,
        fingerprint: fingerprint.to_string(),
        epoch,
        processes,
        workers,
        parts,
        part_crcs,
        blobs,
    };
    let json = serde_json::to_string(&manifest)
        .map_err(|e| Error::External(format!("checkpoint manifest: {e}")))?;
    let text = format!("{json}\ncrc32 {:08x}\n", crc32fast::hash(json.as_bytes()));
    write_atomic(&edir.join("MANIFEST"), text.as_bytes())?;
    prune(dir)?;
    Ok(true)
}

/// Whether a file was last written over an hour ago.
fn stale(entry: &std::fs::DirEntry) -> bool {
    entry
        .metadata()
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age > std::time::Duration::from_secs(3600))
}

/// Keeps the two newest complete epochs and anything newer (in progress).
fn prune(dir: &Path) -> Result<()> {
    let all = epochs(dir)?;
    let complete: Vec<_> = all
        .iter()
        .filter(|e| epoch_dir(dir, **e).join("MANIFEST").exists())
        .take(2)
        .collect();
    if let Some(&&oldest_kept) = complete.get(1).or(complete.first()) {
        for e in all.iter().filter(|e| **e < oldest_kept) {
            let _ = std::fs::remove_dir_all(epoch_dir(dir, *e));
        }
    }
    // Blobs: keep those a kept epoch refers to, and any newer than the
    // newest complete epoch (epochs in progress may refer to them).
    let Some(&&newest) = complete.first() else {
        return Ok(());
    };
    let mut keep = std::collections::BTreeSet::new();
    for e in &complete {
        keep.extend(read_manifest(&epoch_dir(dir, **e).join("MANIFEST"))?.blobs);
    }
    if let Ok(entries) = std::fs::read_dir(dir.join("blobs")) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let epoch = name
                .rsplit_once("-e")
                .and_then(|(_, e)| e.parse::<EventTime>().ok());
            if !keep.contains(&name) && epoch.is_some_and(|e| e <= newest) {
                let _ = std::fs::remove_file(entry.path());
            } else if name.starts_with('.') && name.contains(".tmp-") && stale(&entry) {
                // A writer killed between creating and renaming its file;
                // an hour old, it is no writer's of this cluster any more
                // (process ids say nothing across hosts).
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
    Ok(())
}

/// Removes what process `process` wrote for epochs after `restored`,
/// none of which is complete: a run killed mid-epoch leaves parts and a
/// done marker there. Process 0 of the next run would otherwise complete
/// such an epoch with them, and they may refer to blobs that pruning has
/// removed since, or to state the new run never had. Called before the
/// run joins its cluster, so no process of the new run writes before every
/// process has cleared its own.
pub(crate) fn forget_unfinished(
    dir: &Path,
    process: usize,
    restored: Option<EventTime>,
) -> Result<()> {
    let done = format!("done-p{process}");
    let parts = format!("p{process}-w");
    for epoch in epochs(dir)? {
        if restored.is_some_and(|r| epoch <= r) {
            continue;
        }
        let edir = epoch_dir(dir, epoch);
        if edir.join("MANIFEST").exists() {
            // Newer than the restored epoch yet complete: another run
            // completed it after this one looked. The start check refuses
            // that run; leave its files alone.
            continue;
        }
        let Ok(entries) = std::fs::read_dir(&edir) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name == done || (name.starts_with(&parts) && name.ends_with(".part")) {
                std::fs::remove_file(entry.path()).map_err(|e| Error::io(entry.path(), e))?;
            }
        }
    }
    Ok(())
}

#[derive(Debug, Serialize, Deserialize)]
struct Start {
    restored: Option<EventTime>,
}

/// Records the epoch process `process` restored from, for [`check_start`].
pub(crate) fn write_start(dir: &Path, process: usize, restored: Option<EventTime>) -> Result<()> {
    let text = serde_json::to_string(&Start { restored })
        .map_err(|e| Error::External(format!("checkpoint start: {e}")))?;
    write_atomic(&dir.join(format!("start-p{process}")), text.as_bytes())
}

/// Checks that every process of the cluster restored from the same epoch
/// as this one. Processes restarted one by one (a pod at a time) may read
/// the directory on either side of an epoch's completion; mixing their
/// states would give wrong output, so the run stops and says to start them
/// again. Call it once the mesh has formed: each process wrote its start
/// before joining.
pub(crate) fn check_start(
    dir: &Path,
    process: usize,
    processes: usize,
    restored: Option<EventTime>,
) -> Result<()> {
    let show = |e: Option<EventTime>| match e {
        Some(e) => format!("the checkpoint at {}", crate::time::format_utc(e)),
        None => "the beginning".to_string(),
    };
    for other in (0..processes).filter(|&p| p != process) {
        let path = dir.join(format!("start-p{other}"));
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        let start: Start =
            serde_json::from_str(&text).map_err(|e| damaged(&path, format!("bad marker: {e}")))?;
        if start.restored != restored {
            return Err(damaged(
                dir,
                format!(
                    "process {other} started from {} where process {process} started from {}: \
                     the processes were started at different moments of the checkpoint; \
                     start them all again together",
                    show(start.restored),
                    show(restored)
                ),
            ));
        }
    }
    Ok(())
}

/// Marks the job finished: a later run with the same configuration does
/// nothing, and the epochs are no longer needed.
pub(crate) fn mark_finished(dir: &Path, fingerprint: &str) -> Result<()> {
    let f = Finished {
        version: FORMAT_VERSION,
        fingerprint: fingerprint.to_string(),
    };
    let text = serde_json::to_string(&f).map_err(|e| Error::External(e.to_string()))?;
    write_atomic(&dir.join("FINISHED"), text.as_bytes())?;
    remove_epochs_and_blobs(dir)
}

/// Removes the epochs and blobs of a finished job: nothing restores them.
fn remove_epochs_and_blobs(dir: &Path) -> Result<()> {
    for e in epochs(dir)? {
        let _ = std::fs::remove_dir_all(epoch_dir(dir, e));
    }
    let _ = std::fs::remove_dir_all(dir.join("blobs"));
    Ok(())
}

/// Removes what keyflow wrote in `dir` (for `--fresh`), and nothing else.
pub fn wipe(dir: &Path) -> Result<()> {
    for e in epochs(dir)? {
        let path = epoch_dir(dir, e);
        std::fs::remove_dir_all(&path).map_err(|err| Error::io(&path, err))?;
    }
    let finished = dir.join("FINISHED");
    if finished.exists() {
        std::fs::remove_file(&finished).map_err(|e| Error::io(&finished, e))?;
    }
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.file_name().to_string_lossy().starts_with("start-p") {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    for sub in ["blobs", "ids"] {
        let path = dir.join(sub);
        if path.exists() {
            std::fs::remove_dir_all(&path).map_err(|e| Error::io(&path, e))?;
        }
    }
    Ok(())
}

/// A random identity for `name` (a sink's transactional id, say) that
/// lives as long as the checkpoint directory's history: the same on every
/// restart, new after [`wipe`] or in a new directory. Made on first use.
pub fn identity(dir: &Path, name: &str) -> Result<String> {
    let ids = dir.join("ids");
    let file = ids.join(name);
    match std::fs::read_to_string(&file) {
        Ok(text) if !text.trim().is_empty() => return Ok(text.trim().to_string()),
        _ => {}
    }
    std::fs::create_dir_all(&ids).map_err(|e| Error::io(&ids, e))?;
    let id = format!("{:016x}", rand::random::<u64>());
    let temp = ids.join(format!(".{name}.{id}"));
    write_atomic(&temp, id.as_bytes())?;
    // Processes of a cluster may race here: a link never replaces an
    // existing file, so the first one's identity is everyone's.
    let linked = std::fs::hard_link(&temp, &file);
    let _ = std::fs::remove_file(&temp);
    match linked {
        Ok(()) => Ok(id),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let text = std::fs::read_to_string(&file).map_err(|e| Error::io(&file, e))?;
            Ok(text.trim().to_string())
        }
        Err(e) => Err(Error::io(&file, e)),
    }
}
