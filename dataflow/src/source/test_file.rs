//! Files for the source tests.

use std::path::PathBuf;

/// A file of a test, removed with its directory when dropped, also when
/// the test fails.
pub(crate) struct Temp(PathBuf);

impl std::ops::Deref for Temp {
    type Target = PathBuf;
    fn deref(&self) -> &PathBuf {
        &self.0
    }
}

impl Drop for Temp {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
        if let Some(dir) = self.0.parent() {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// A file named `name` holding `bytes`, in a directory of its own: tests
/// run in parallel, and one removing a shared directory could pull it from
/// under another's write. Names must differ between tests.
pub(crate) fn temp(name: &str, bytes: &[u8]) -> Temp {
    let dir = std::env::temp_dir().join(format!("keyflow-test-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    Temp(path)
}
