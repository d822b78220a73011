//! One run at a time for each process index of a checkpoint directory.

use std::collections::HashMap;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{ErrorKind, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, Weak};

use crate::error::{Error, Result};

/// Held while a run uses a checkpoint directory as process `P`: an
/// advisory lock (`flock`) on `DIR/lock-p<P>`, which the kernel drops when
/// the process ends, however it ends (`kill -9` too). A second run that
/// would write the same parts is refused at its start, rather than cutting
/// the first run's output back under it. Within one process, every handle
/// to one directory and index shares one lock, so a caller that checks the
/// directory before its run can hold it through the run.
///
/// ```
/// use keyflow_dataflow::checkpoint::lock;
///
/// let dir = std::env::temp_dir().join(format!("keyflow-lock-doc-{}", std::process::id()));
/// let held = lock(&dir, 0)?;
/// let again = lock(&dir, 0)?; // the same process: shared
/// let other = lock(&dir, 1)?; // another process index: its own lock
/// drop((held, again, other));
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct DirLock {
    _file: Arc<File>,
}

/// The locks this process holds, by lock file; an entry whose lock was
/// dropped no longer upgrades and is replaced on the next call.
static HELD: Mutex<Option<HashMap<PathBuf, Weak<File>>>> = Mutex::new(None);

/// Takes the lock of process `process` in `dir` (made if missing), or
/// fails naming the directory when another run holds it. A file system
/// that cannot lock files is used unlocked, with a warning.
pub fn lock(dir: &Path, process: usize) -> Result<DirLock> {
    super::not_a_file(dir)?;
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let path = dir.join(format!("lock-p{process}"));
    let key = std::fs::canonicalize(dir)
        .map_err(|e| Error::io(dir, e))?
        .join(format!("lock-p{process}"));
    let mut held = HELD.lock().unwrap_or_else(PoisonError::into_inner);
    let held = held.get_or_insert_with(HashMap::new);
    if let Some(file) = held.get(&key).and_then(Weak::upgrade) {
        return Ok(DirLock { _file: file });
    }
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| Error::io(&path, e))?;
    match file.try_lock() {
        Ok(()) => {
            // Who holds it, for the message of a run refused; the lock
            // itself does not depend on it.
            let _ = file
                .set_len(0)
                .and_then(|()| writeln!(file, "pid {}", std::process::id()));
        }
        Err(TryLockError::WouldBlock) => {
            let mut owner = String::new();
            let _ = file.read_to_string(&mut owner);
            let owner = owner.trim();
            let by = if owner.is_empty() {
                String::new()
            } else {
                format!(" ({owner})")
            };
            return Err(Error::Checkpoint {
                path: dir.to_path_buf(),
                reason: format!(
                    "in use by another run as process {process}{by}; wait for it to end, \
                     or give this run another --checkpoint-dir"
                ),
            });
        }
        Err(TryLockError::Error(e)) if e.kind() == ErrorKind::Unsupported => {
            tracing::warn!(
                "{}: this file system cannot lock files, so nothing stops two runs \
                 from sharing this checkpoint directory",
                path.display()
            );
        }
        Err(TryLockError::Error(e)) => return Err(Error::io(&path, e)),
    }
    let file = Arc::new(file);
    held.insert(key, Arc::downgrade(&file));
    Ok(DirLock { _file: file })
}

/// Checks that every other process of a cluster holds its lock in `dir`,
/// as each does from before it joins the mesh: a process that wrote its
/// parts into a directory of its own would leave every epoch incomplete,
/// and the directories growing, for as long as the job runs. Call it once
/// the mesh has formed. A lock this file system cannot test counts as held.
///
/// ```
/// use keyflow_dataflow::checkpoint::{check_shared, lock};
///
/// let dir = std::env::temp_dir().join(format!("keyflow-shared-doc-{}", std::process::id()));
/// let (_p0, _p1) = (lock(&dir, 0)?, lock(&dir, 1)?);
/// check_shared(&dir, 0, 2)?;
/// assert!(check_shared(&dir, 0, 3).is_err()); // no process 2 here
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn check_shared(dir: &Path, process: usize, processes: usize) -> Result<()> {
    for other in (0..processes).filter(|&p| p != process) {
        let path = dir.join(format!("lock-p{other}"));
        let held = match File::open(&path) {
            // Taken only if nobody holds it; dropping the file lets it go.
            Ok(file) => match file.try_lock() {
                Ok(()) => false,
                Err(TryLockError::WouldBlock) => true,
                Err(TryLockError::Error(e)) if e.kind() == ErrorKind::Unsupported => true,
                Err(TryLockError::Error(e)) => return Err(Error::io(&path, e)),
            },
            Err(e) if e.kind() == ErrorKind::NotFound => false,
            Err(e) => return Err(Error::io(&path, e)),
        };
        if !held {
            return Err(Error::Checkpoint {
                path: dir.to_path_buf(),
                reason: format!(
                    "process {other} of the cluster does not use this directory; every \
                     process must share one checkpoint directory (one machine, or one file \
                     system shared by the hosts), or no checkpoint ever completes"
                ),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("keyflow-lock-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn another_open_file_is_refused_until_the_lock_is_dropped() {
        let dir = dir("refused");
        let held = lock(&dir, 0).unwrap();
        // What a second process would do: its own open file, its own lock.
        let file = File::open(dir.join("lock-p0")).unwrap();
        assert!(matches!(file.try_lock(), Err(TryLockError::WouldBlock)));
        drop(held);
        file.try_lock().unwrap();
        let err = lock(&dir, 0).unwrap_err().to_string();
        assert!(err.contains("in use by another run as process 0"), "{err}");
        assert!(
            err.contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        drop(file);
        lock(&dir, 0).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_cluster_shares_the_directory_only_when_every_lock_is_held() {
        let dir = dir("cluster");
        let p0 = lock(&dir, 0).unwrap();
        let err = check_shared(&dir, 0, 2).unwrap_err().to_string();
        assert!(
            err.contains("process 1 of the cluster does not use"),
            "{err}"
        );
        // A lock file left by an earlier run, but nobody holding it.
        drop(lock(&dir, 1).unwrap());
        assert!(check_shared(&dir, 0, 2).is_err());
        let p1 = lock(&dir, 1).unwrap();
        check_shared(&dir, 0, 2).unwrap();
        check_shared(&dir, 1, 2).unwrap();
        drop((p0, p1));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn handles_in_one_process_share_the_lock() {
        let dir = dir("shared");
        let first = lock(&dir, 2).unwrap();
        let second = lock(&dir.join("..").join(dir.file_name().unwrap()), 2).unwrap();
        drop(first);
        let file = File::open(dir.join("lock-p2")).unwrap();
        assert!(matches!(file.try_lock(), Err(TryLockError::WouldBlock)));
        drop(second);
        file.try_lock().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
