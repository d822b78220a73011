//! The working directory of a benchmark that writes files: given with
//! `--dir` and kept, or a temporary one removed however the run ends.

use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

/// Removes the temporary directory however the run ends.
pub(super) struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The directory of `keyflow bench NAME`, created: `given` (checked with
/// [`check_dir`] against `own`), or a new temporary one, removed when the
/// returned guard drops.
pub(super) fn work_dir(
    given: Option<&Path>,
    name: &str,
    own: &[&str],
) -> anyhow::Result<(PathBuf, Option<RemoveOnDrop>)> {
    let (dir, guard) = match given {
        Some(dir) => {
            check_dir(dir, name, own)?;
            (dir.to_path_buf(), None)
        }
        None => {
            let dir =
                std::env::temp_dir().join(format!("keyflow-bench-{name}-{}", std::process::id()));
            (dir.clone(), Some(RemoveOnDrop(dir)))
        }
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("--dir {}", dir.display()))?;
    Ok((dir, guard))
}

/// Writes `path` to disk, untimed, so that the next timed run does not pay
/// for the kernel writing back what the last one left in the page cache:
/// a run that ends sooner would otherwise leave the next one more to
/// write back.
pub(super) fn settle(path: &Path) -> anyhow::Result<()> {
    File::open(path)?.sync_all()?;
    Ok(())
}

/// Refuses a `--dir` that holds anything but the files `own` of `keyflow
/// bench NAME` (and their files in progress), which it would overwrite.
pub(super) fn check_dir(dir: &Path, name: &str, own: &[&str]) -> anyhow::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => anyhow::bail!("--dir {}: {e}", dir.display()),
        Ok(entries) => entries,
    };
    for entry in entries {
        let file = entry?.file_name().to_string_lossy().into_owned();
        let mine = own
            .iter()
            .any(|f| file == *f || file.starts_with(&format!(".{f}.")));
        anyhow::ensure!(
            mine,
            "--dir {}: holds {file}, which this benchmark did not write; give a new or empty \
             directory, or one of an earlier `bench {name}` (it rewrites {})",
            dir.display(),
            own.join(", ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const OWN: [&str; 2] = ["events.csv", "job.csv"];

    #[test]
    fn a_dir_with_other_files_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        check_dir(&dir.path().join("new"), "sliding", &OWN).unwrap();
        std::fs::write(dir.path().join("events.csv"), "old").unwrap();
        std::fs::write(dir.path().join(".job.csv.inprogress-1-0"), "half").unwrap();
        check_dir(dir.path(), "sliding", &OWN).unwrap();
        std::fs::write(dir.path().join("precious.csv"), "mine").unwrap();
        let message = check_dir(dir.path(), "sliding", &OWN)
            .unwrap_err()
            .to_string();
        assert!(message.contains("holds precious.csv"), "{message}");
        assert!(message.contains("bench sliding"), "{message}");
        let file = dir.path().join("precious.csv");
        assert!(check_dir(&file, "sliding", &OWN).is_err());
    }

    #[test]
    fn a_temporary_dir_is_removed_when_its_guard_drops() {
        let (dir, guard) = work_dir(None, "dir-test", &OWN).unwrap();
        assert!(dir.is_dir());
        std::fs::write(dir.join("events.csv"), "x").unwrap();
        drop(guard);
        assert!(!dir.exists());
    }
}
