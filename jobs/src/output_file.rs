//! Writing a whole output file at once: replaced atomically when it is a
//! regular file, written straight through when it is a device, a pipe or a
//! socket (`/dev/stdout`, `/dev/null`, a FIFO).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use keyflow_dataflow::{Error, Result};

/// Tells apart the temporary files of one process (several sinks and days
/// may be written at once).
static NEXT_TMP: AtomicU64 = AtomicU64::new(0);

/// The temporary files being written now, so that a process stopped by a
/// signal can remove them before it exits.
static IN_FLIGHT: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

fn in_flight() -> std::sync::MutexGuard<'static, Vec<PathBuf>> {
    IN_FLIGHT.lock().unwrap_or_else(|p| p.into_inner())
}

/// Removes the temporary files of writes still in progress. A process that
/// is about to exit early (on SIGINT or SIGTERM) calls this so that no
/// `.NAME.tmp-PID-N` file is left behind; the outputs themselves keep their
/// previous content.
pub fn remove_temporary_files() {
    for tmp in in_flight().drain(..) {
        let _ = std::fs::remove_file(tmp);
    }
}

/// Writes `bytes` as the whole content of `path`.
///
/// A regular file (or a missing one) is replaced atomically: the bytes go to
/// a temporary file beside it with a name unique to this process and call
/// (`.NAME.tmp-PID-N`), which is fsynced and renamed over `path`, and the
/// directory is then fsynced where the platform allows. A reader sees the
/// old file or the new one, never a part, and the temporary file is removed
/// whenever a step fails. A symbolic link is followed, so the file it
/// points to is replaced and the link stays.
///
/// Anything else that exists at `path` (a character device, a FIFO, a
/// socket) is opened and written directly: it cannot be renamed over, and
/// fsync fails on it with `EINVAL`.
///
/// # Examples
/// ```
/// use keyflow_jobs::output_file::write_whole_file;
/// let dir = std::env::temp_dir().join(format!("keyflow-doc-out-{}", std::process::id()));
/// std::fs::create_dir_all(&dir)?;
/// let path = dir.join("out.txt");
/// write_whole_file(&path, b"one\n")?;
/// write_whole_file(&path, b"two\n")?;
/// assert_eq!(std::fs::read_to_string(&path)?, "two\n");
/// assert_eq!(std::fs::read_dir(&dir)?.count(), 1, "no temporary file is left");
/// write_whole_file(std::path::Path::new("/dev/null"), b"discarded")?;
/// std::fs::remove_dir_all(&dir)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn write_whole_file(path: &Path, bytes: &[u8]) -> Result<()> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => Err(Error::Config(format!(
            "output {} is a directory, not a file",
            path.display()
        ))),
        Ok(meta) if !meta.is_file() => write_through(path, bytes),
        _ => {
            let target = match std::fs::symlink_metadata(path) {
                Ok(meta) if meta.file_type().is_symlink() => {
                    std::fs::canonicalize(path).map_err(|e| Error::io(path, e))?
                }
                _ => path.to_path_buf(),
            };
            replace(&target, bytes)
        }
    }
}

fn write_through(path: &Path, bytes: &[u8]) -> Result<()> {
    OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)
        .and_then(|mut file| {
            file.write_all(bytes)?;
            file.flush()
        })
        .map_err(|e| Error::io(path, e))
}

fn replace(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) => dir.to_path_buf(),
        None => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| Error::Config(format!("output {} does not name a file", path.display())))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}-{}",
        name.to_string_lossy(),
        std::process::id(),
        NEXT_TMP.fetch_add(1, Ordering::Relaxed)
    ));
    in_flight().push(tmp.clone());
    let written = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .and_then(|mut file| {
            file.write_all(bytes)?;
            file.sync_all()
        })
        .and_then(|()| std::fs::rename(&tmp, path));
    in_flight().retain(|p| *p != tmp);
    if let Err(e) = written {
        // Nothing else refers to the temporary file; removing it can only
        // fail if it was never created.
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io(path, e));
    }
    // The rename is durable once the directory is; not every platform lets a
    // directory be opened for that, so this is best effort.
    if let Ok(d) = File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn replaces_regular_files_and_leaves_no_temporary_file() {
        let dir = tempdir("replace");
        let path = dir.join("out");
        write_whole_file(&path, b"first").unwrap();
        write_whole_file(&path, b"second").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second");
        assert_eq!(entries(&dir), ["out"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_failed_step_removes_the_temporary_file() {
        let dir = tempdir("fail");
        let path = dir.join("out");
        std::fs::create_dir_all(path.join("inside")).unwrap();
        let err = write_whole_file(&path, b"x").unwrap_err().to_string();
        assert!(err.contains("is a directory"), "{err}");
        // Past that check, renaming a file over a non-empty directory fails
        // after the temporary file was written.
        assert!(replace(&path, b"x").is_err());
        assert_eq!(entries(&dir), ["out"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn follows_symbolic_links_and_keeps_them() {
        let dir = tempdir("link");
        let real = dir.join("real");
        std::fs::write(&real, "old").unwrap();
        let link = dir.join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        write_whole_file(&link, b"new").unwrap();
        assert!(std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(std::fs::read_to_string(&real).unwrap(), "new");
        assert_eq!(entries(&dir), ["link", "real"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn writes_devices_directly() {
        write_whole_file(Path::new("/dev/null"), b"gone").unwrap();
    }

    #[test]
    fn writes_fifos_directly() {
        let dir = tempdir("fifo");
        let fifo = dir.join("fifo");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        let reader = {
            let fifo = fifo.clone();
            std::thread::spawn(move || std::fs::read(fifo).unwrap())
        };
        write_whole_file(&fifo, b"through the pipe").unwrap();
        assert_eq!(reader.join().unwrap(), b"through the pipe");
        assert_eq!(entries(&dir), ["fifo"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn tempdir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("keyflow-output-file-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
