//! `--pin DIR`: the maps that hold counts live on bpffs, so an agent that
//! restarts (upgraded, killed, rescheduled) picks up the counters where the
//! last one left them instead of starting from zero.
use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use aya::{maps::Array, Ebpf};
use netobs_common::MAX_IFINDEX;

use super::{map_ref, names, DatapathError};

/// `statfs` magic of a bpf filesystem.
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

/// The maps pinned, each under its own name in `dir` (created if needed).
pub fn paths(dir: &Path) -> Result<Vec<(&'static str, PathBuf)>, DatapathError> {
    let fail = |reason: String| DatapathError::Pin {
        dir: dir.to_owned(),
        reason,
    };
    std::fs::create_dir_all(dir).map_err(|e| fail(e.to_string()))?;
    let c = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes())
        .map_err(|_| fail("the path has a NUL byte".into()))?;
    // SAFETY: a valid C string and an out-pointer to a zeroed statfs.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return Err(fail(std::io::Error::last_os_error().to_string()));
    }
    if st.f_type as i64 != BPF_FS_MAGIC {
        return Err(fail("not a bpf filesystem".into()));
    }
    Ok([
        names::COUNTERS,
        names::STATS,
        names::FLOWS,
        names::FLOW_CACHE,
        // Shared so that every program on the pinned maps sees the reader.
        names::CACHE_CTL,
        names::IFACE_SLOTS,
    ]
    .into_iter()
    .map(|n| (n, dir.join(n)))
    .collect())
}

/// The interface slots a previous agent registered.
pub fn slots(ebpf: &Ebpf) -> Result<BTreeMap<u32, u32>, DatapathError> {
    let map: Array<_, u32> = map_ref(ebpf, names::IFACE_SLOTS)?;
    let mut out = BTreeMap::new();
    for ifindex in 0..MAX_IFINDEX {
        match map.get(&ifindex, 0) {
            Ok(0) => {}
            Ok(slot) => {
                out.insert(ifindex, slot);
            }
            Err(source) => {
                return Err(DatapathError::Map {
                    name: names::IFACE_SLOTS,
                    source,
                })
            }
        }
    }
    Ok(out)
}
