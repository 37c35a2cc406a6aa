//! Which capabilities the agent needs, and a clear line when one is missing
//! (the kernel's own answer is a bare "Operation not permitted").
//!
//! Loading and attaching programs needs CAP_BPF and CAP_NET_ADMIN; reading
//! program statistics and the pointers some helpers hand out needs
//! CAP_PERFMON. CAP_SYS_ADMIN (root) implies all three on kernels before
//! 5.8, which had no CAP_BPF.
//!
//! Once attached, the agent keeps those three (a clsact fallback is
//! removed with CAP_NET_ADMIN on exit) and drops every other capability,
//! the bounding set included: a parser of hostile traffic should not be
//! able to read every file or load kernel modules.
const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

fn effective() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
    u64::from_str_radix(hex.trim(), 16).ok()
}

/// The capabilities netobs needs that this process lacks, by name.
pub fn missing() -> Vec<&'static str> {
    let Some(caps) = effective() else {
        return Vec::new();
    };
    let has = |bit: u32| caps & (1u64 << bit) != 0;
    let mut out = Vec::new();
    if !has(CAP_BPF) && !has(CAP_SYS_ADMIN) {
        out.push("CAP_BPF");
    }
    if !has(CAP_NET_ADMIN) {
        out.push("CAP_NET_ADMIN");
    }
    if !has(CAP_PERFMON) && !has(CAP_SYS_ADMIN) {
        out.push("CAP_PERFMON");
    }
    out
}

#[derive(Debug, thiserror::Error)]
#[error(
    "netobs needs {needed}; this process lacks {}: run it as root or grant them \
     (e.g. `setcap cap_bpf,cap_net_admin,cap_perfmon+ep $(command -v netobs)`)",
    .missing.join(", ")
)]
pub struct MissingCapabilities {
    pub needed: &'static str,
    pub missing: Vec<&'static str>,
}

/// Fails with one line naming what is missing.
pub fn check() -> Result<(), MissingCapabilities> {
    let missing = missing();
    if missing.is_empty() {
        return Ok(());
    }
    Err(MissingCapabilities {
        needed: "CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON",
        missing,
    })
}

/// Capabilities the agent keeps after attaching.
const KEEP: [caps::Capability; 3] = [
    caps::Capability::CAP_BPF,
    caps::Capability::CAP_NET_ADMIN,
    caps::Capability::CAP_PERFMON,
];

/// How long an idle blocking thread of the agent's runtime lives.
pub const THREAD_KEEP_ALIVE: std::time::Duration = std::time::Duration::from_millis(200);

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").map_or(1, |d| d.count())
}

/// Drops every capability but `KEEP` from this thread, once it is the
/// process's only one (capsets are per thread; threads started later
/// inherit the reduced sets). Returns the names of the capabilities kept.
pub fn drop_extra() -> Result<Vec<String>, caps::errors::CapsError> {
    use caps::{CapSet, Capability, CapsHashSet};
    let deadline = std::time::Instant::now() + 10 * THREAD_KEEP_ALIVE;
    while threads() > 1 && std::time::Instant::now() < deadline {
        std::thread::sleep(THREAD_KEEP_ALIVE / 10);
    }
    let others = threads().saturating_sub(1);
    if others > 0 {
        log::warn!("{others} other threads keep their capabilities: they started before the drop");
    }
    let supported = caps::runtime::procfs_all_supported(None).unwrap_or_else(|_| caps::all());
    let mut keep: CapsHashSet = KEEP
        .iter()
        .copied()
        .filter(|c| supported.contains(c))
        .collect();
    let have = caps::read(None, CapSet::Permitted)?;
    // CAP_SYS_ADMIN stands in for CAP_BPF and CAP_PERFMON where the kernel
    // (before 5.8) or the container engine (Docker engines that refuse
    // "unknown capability: CAP_BPF") could not grant them: every later
    // bpf() call, a map read included, needs one of the two.
    if [Capability::CAP_BPF, Capability::CAP_PERFMON]
        .iter()
        .any(|c| !have.contains(c))
    {
        keep.insert(Capability::CAP_SYS_ADMIN);
    }
    let keep: CapsHashSet = keep.intersection(&have).copied().collect();
    // The bounding set first: dropping from it takes CAP_SETPCAP, which
    // goes with the rest just after.
    if caps::has_cap(None, CapSet::Effective, Capability::CAP_SETPCAP).unwrap_or(false) {
        for c in supported.iter().filter(|c| !keep.contains(c)) {
            caps::drop(None, CapSet::Bounding, *c)?;
        }
    }
    caps::clear(None, CapSet::Ambient)?;
    caps::clear(None, CapSet::Inheritable)?;
    caps::set(None, CapSet::Effective, &keep)?;
    caps::set(None, CapSet::Permitted, &keep)?;
    let mut names: Vec<String> = keep.iter().map(|c| c.to_string()).collect();
    names.sort();
    Ok(names)
}
