//! Input paths as users give them: a directory stands for its files.

use std::path::{Path, PathBuf};

/// `paths` with each directory replaced by the regular files in it, not
/// hidden ones (`.name`, such as a file still being written), sorted by
/// name; files stay as given. A directory that holds no such file, or
/// cannot be read, stays as it is, so that opening it reports what is
/// wrong, naming it.
///
/// ```
/// use keyflow_dataflow::source::input_files;
/// let dir = std::env::temp_dir().join(format!("keyflow-doc-inputs-{}", std::process::id()));
/// std::fs::create_dir_all(&dir)?;
/// for name in ["b.jsonl", "a.jsonl", ".c.jsonl.inprogress"] {
///     std::fs::write(dir.join(name), "")?;
/// }
/// assert_eq!(input_files(&[dir.clone()]), vec![dir.join("a.jsonl"), dir.join("b.jsonl")]);
/// std::fs::remove_dir_all(&dir)?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn input_files(paths: &[PathBuf]) -> Vec<PathBuf> {
    let mut files = Vec::with_capacity(paths.len());
    for path in paths {
        match listed(path) {
            Some(listed) if !listed.is_empty() => files.extend(listed),
            _ => files.push(path.clone()),
        }
    }
    files
}

/// The visible regular files in `dir`, sorted, if it is a readable
/// directory.
fn listed(dir: &Path) -> Option<Vec<PathBuf>> {
    if !dir.is_dir() {
        return None;
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok())
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    Some(files)
}
