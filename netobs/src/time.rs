//! Wall-clock time, for every layer (the inventory's sync time, flow and
//! alert times): a leaf module, so that nothing imports the model for it.
use std::time::{SystemTime, UNIX_EPOCH};

/// Wall-clock time in Unix seconds, the unit of every timestamp the API
/// serves.
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// `CLOCK_MONOTONIC` in nanoseconds: the clock the flows' first and last
/// packet times are read in.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// `CLOCK_MONOTONIC` in seconds, for windows that a step of the wall clock
/// must not stretch.
pub fn monotonic_secs() -> f64 {
    monotonic_ns() as f64 / 1e9
}
