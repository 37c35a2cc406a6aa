//! Files and directories a test makes under the temporary directory,
//! removed when the test ends, pass or fail.
use std::path::{Path, PathBuf};

pub struct TempPath(PathBuf);

impl TempPath {
    /// `$TMPDIR/netobs-{name}-{pid}`, not created: the test makes it a file
    /// or a directory.
    pub fn new(name: &str) -> TempPath {
        TempPath(std::env::temp_dir().join(format!("netobs-{name}-{}", std::process::id())))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        if self.0.is_dir() {
            let _ = std::fs::remove_dir_all(&self.0);
        } else {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}
