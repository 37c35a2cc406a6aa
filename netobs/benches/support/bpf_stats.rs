//! The kernel's run-time statistics for BPF programs, on or off for a
//! benchmark. Shared by `datapath.rs` and `live.rs` through `#[path]`.
//!
//! While they are on, the kernel reads its clock before and after every
//! program run, on this VM a serialising read: about 40 ns more a test run,
//! and the program can no longer overlap with the test loop around it. The
//! live bench needs them (they are its per-program figures); the test-run
//! bench must run without them, or its figures are of another kind.
// Each bench uses one of the two guards.
#![allow(dead_code)]
use std::os::fd::OwnedFd;

const SYSCTL: &str = "/proc/sys/kernel/bpf_stats_enabled";

/// Statistics on for as long as this lives, through `BPF_ENABLE_STATS`: the
/// kernel drops its file descriptor when the process ends, however it ends.
/// (The sysctl the live bench used to set stayed on after a killed run, and
/// every later test run then read 40 ns more on the empty program.)
pub struct On(OwnedFd);

impl On {
    pub fn new() -> On {
        On(aya::sys::enable_stats(aya::sys::Stats::RunTime)
            .expect("BPF_ENABLE_STATS (root needed)"))
    }
}

/// The sysctl off for as long as this lives, if it was on; back on after.
pub struct Off {
    was_on: bool,
}

impl Off {
    pub fn new() -> Off {
        let was_on = std::fs::read_to_string(SYSCTL).is_ok_and(|v| v.trim() == "1");
        if was_on {
            eprintln!("kernel.bpf_stats_enabled was 1: off for this run, back on after it");
            std::fs::write(SYSCTL, "0").expect("writing kernel.bpf_stats_enabled");
        }
        Off { was_on }
    }
}

impl Drop for Off {
    fn drop(&mut self) {
        if self.was_on {
            let _ = std::fs::write(SYSCTL, "1");
        }
    }
}

/// (run time ns, run count) the kernel keeps for loaded programs whose
/// name starts with `prefix` (it keeps a name's first 15 characters),
/// summed. Both stay 0 while statistics are off; on, whoever holds them on
/// (`On`, the sysctl `Off` switches, or another process's
/// `BPF_ENABLE_STATS`, which it cannot).
pub fn totals(prefix: &str) -> (u64, u64) {
    let prefix = &prefix[..prefix.len().min(15)];
    aya::programs::loaded_programs()
        .flatten()
        .filter(|p| p.name_as_str().is_some_and(|n| n.starts_with(prefix)))
        .fold((0, 0), |(t, c), p| {
            (t + p.run_time().as_nanos() as u64, c + p.run_count())
        })
}
