//! Which capabilities the agent needs, and a clear line when one is missing
//! (the kernel's own answer is a bare "Operation not permitted").
//!
//! Loading and attaching programs needs CAP_BPF and CAP_NET_ADMIN; reading
//! program statistics and the pointers some helpers hand out needs
//! CAP_PERFMON. CAP_SYS_ADMIN (root) implies all three on kernels before
//! 5.8, which had no CAP_BPF.
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
