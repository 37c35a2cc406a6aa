//! Privileged tests fail loudly in CI and skip visibly elsewhere.

/// Effective capabilities the lab needs: CAP_NET_ADMIN (12), CAP_SYS_ADMIN
/// (21), CAP_BPF (39).
const NEEDED: [(u32, &str); 3] = [
    (12, "CAP_NET_ADMIN"),
    (21, "CAP_SYS_ADMIN"),
    (39, "CAP_BPF"),
];

fn effective_caps() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .unwrap_or(0)
}

/// The capabilities this process lacks, by name.
pub fn missing_caps() -> Vec<&'static str> {
    let caps = effective_caps();
    NEEDED
        .iter()
        .filter(|(bit, _)| caps & (1u64 << bit) == 0)
        .map(|(_, name)| *name)
        .collect()
}

/// True if `test` can run. Without the privileges: panics when `CI=true`
/// (a skipped test must never pass as green in CI), otherwise prints a
/// visible SKIPPED line and returns false.
pub fn require_root(test: &str) -> bool {
    let missing = missing_caps();
    if missing.is_empty() {
        return true;
    }
    let msg = format!("{test}: needs root ({})", missing.join(", "));
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{msg}; CI must run privileged tests");
    }
    // Straight to the file descriptor: libtest captures eprintln! of a
    // passing test, and a skip must be visible.
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED {msg}");
    false
}

/// Returns from the calling test when it cannot run; see [`require_root`].
#[macro_export]
macro_rules! require_root {
    () => {
        if !$crate::privilege::require_root(module_path!()) {
            return;
        }
    };
}
