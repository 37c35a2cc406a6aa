//! A bpf filesystem of the test's own, unmounted when the test ends, pass
//! or fail (the machine's /sys/fs/bpf may not be mounted, and must not be
//! touched).
use std::{
    path::{Path, PathBuf},
    process::Command,
};

pub struct BpfFs(PathBuf);

impl BpfFs {
    /// Mounts one at `$TMPDIR/netobs-bpffs-{pid}-{name}`; panics if it cannot.
    pub fn mount_named(name: &str) -> BpfFs {
        let dir = std::env::temp_dir().join(format!("netobs-bpffs-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mount point");
        let fs = BpfFs(dir);
        let ok = Command::new("mount")
            .args(["-t", "bpf", "bpf"])
            .arg(&fs.0)
            .status()
            .expect("mount");
        assert!(ok.success(), "mounting a bpf filesystem");
        fs
    }

    pub fn mount() -> BpfFs {
        BpfFs::mount_named("test")
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for BpfFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
