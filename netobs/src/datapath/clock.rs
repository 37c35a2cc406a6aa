//! Flow times. The kernel programs stamp flows with the kernel's tick count
//! (jiffies): reading it costs a variable load, where even the coarse clock
//! costs about 10 ns a packet on the machines measured. This turns ticks
//! into `CLOCK_MONOTONIC` nanoseconds, the model's unit: a probe program,
//! run through BPF_PROG_TEST_RUN, reads both at once; two tick edges some
//! 50 ms apart give the tick's length to a microsecond, and the kernel's
//! tick count follows the monotonic clock (it is advanced from it), so one
//! calibration serves the agent's life. Ticks are a few milliseconds: so
//! was the coarse clock's resolution.
use std::time::{Duration, Instant};

use aya::{maps::Array, programs::TestRun};

use super::{map_ref, names, Datapath, DatapathError};

/// Ticks to `CLOCK_MONOTONIC` nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TickClock {
    ref_ns: u64,
    ref_ticks: u64,
    tick_ns: f64,
    /// How much earlier than the tick's real start `ns` may place it: the
    /// time between the probes that saw the edge.
    error_ns: u64,
}

/// Kernel tick rates (CONFIG_HZ) in use; a measured rate within 2% of one
/// is taken as exactly that.
const KNOWN_HZ: [f64; 5] = [100.0, 250.0, 300.0, 1000.0, 1200.0];
/// Between the two edges: long enough for a 2% bound at 100 Hz.
const SPAN: Duration = Duration::from_millis(50);
/// A tick edge comes within one tick (10 ms at 100 Hz); past this something
/// is wrong (a tickless kernel that stopped counting?).
const EDGE_WAIT: Duration = Duration::from_secs(1);
/// Probes this close bracket an edge well enough (a probe is a test run,
/// tens of microseconds).
const EDGE_GOOD_NS: u64 = 200_000;
/// Edges tried at most for one closely bracketed (a tick each).
const EDGE_TRIES: usize = 25;

impl TickClock {
    /// The monotonic nanoseconds of tick count `ticks` (0 stays 0: unset).
    pub fn ns(&self, ticks: u64) -> u64 {
        if ticks == 0 {
            return 0;
        }
        let d = (ticks as i128 - self.ref_ticks as i128) as f64 * self.tick_ns;
        (self.ref_ns as i128 + d as i128).max(0) as u64
    }

    /// The length of a tick, in nanoseconds.
    pub fn tick_ns(&self) -> f64 {
        self.tick_ns
    }

    /// `ns` gives the start of a tick, never later than it was, and at most
    /// this much earlier.
    pub fn error_ns(&self) -> u64 {
        self.error_ns
    }
}

impl Datapath {
    /// (monotonic ns, ticks), read together in the kernel.
    fn probe_clock(&mut self) -> Result<(u64, u64), DatapathError> {
        let name = names::CLOCK_PROBE;
        let prog = self.classifier_loaded(name)?;
        // The smallest frame a TC test run takes.
        let frame = [0u8; 14];
        prog.test_run(aya::programs::TestRunOptions {
            data_in: Some(&frame),
            repeat: 1,
            ..Default::default()
        })
        .map_err(|source| DatapathError::Program { name, source })?;
        let map: Array<_, [u64; 2]> = map_ref(self.ebpf(), names::CLOCK)?;
        let [ns, ticks] = map.get(&0, 0).map_err(|source| DatapathError::Map {
            name: names::CLOCK,
            source,
        })?;
        Ok((ns, ticks))
    }

    /// A tick edge seen between two probes close together: a thread
    /// preempted between its probes (a busy machine) sees the edge only to
    /// within the preemption, so edges are taken again, the closest pair
    /// kept.
    fn tick_edge(&mut self) -> Result<(u64, u64, u64), DatapathError> {
        let mut best = self.one_tick_edge()?;
        for _ in 0..EDGE_TRIES {
            if best.2 - best.1 <= EDGE_GOOD_NS {
                break;
            }
            let e = self.one_tick_edge()?;
            if e.2 - e.1 < best.2 - best.1 {
                best = e;
            }
        }
        Ok(best)
    }

    /// A tick edge: the new tick count, and the times of the last probe
    /// before it and the first after it.
    fn one_tick_edge(&mut self) -> Result<(u64, u64, u64), DatapathError> {
        let (mut before, start) = self.probe_clock()?;
        let deadline = Instant::now() + EDGE_WAIT;
        loop {
            let (ns, ticks) = self.probe_clock()?;
            if ticks != start {
                return Ok((ticks, before, ns));
            }
            before = ns;
            if Instant::now() > deadline {
                return Err(DatapathError::Clock);
            }
        }
    }

    /// Measures the tick; about 50 ms plus two ticks.
    pub(crate) fn calibrate_clock(&mut self) -> Result<TickClock, DatapathError> {
        let (j1, t1, after1) = self.tick_edge()?;
        std::thread::sleep(SPAN);
        let (j2, t2, after2) = self.tick_edge()?;
        if j2 <= j1 || t2 <= t1 {
            return Err(DatapathError::Clock);
        }
        // Each edge lies between its two probes; the earlier bound makes
        // stamps never late.
        let error_ns = (after1 - t1).max(after2 - t2);
        let mut tick_ns = (t2 - t1) as f64 / (j2 - j1) as f64;
        let hz = 1e9 / tick_ns;
        if let Some(known) = KNOWN_HZ.iter().find(|k| (hz - *k).abs() / *k < 0.02) {
            tick_ns = 1e9 / known;
        }
        Ok(TickClock {
            ref_ns: t1,
            ref_ticks: j1,
            tick_ns,
            error_ns,
        })
    }

    /// How flow times read from the maps become nanoseconds: `None` in
    /// replay, where they are the capture's own.
    pub fn tick_clock(&self) -> Option<TickClock> {
        self.tick_clock
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_become_nanoseconds_from_the_reference() {
        let c = TickClock {
            ref_ns: 1_000_000_000,
            ref_ticks: 5000,
            tick_ns: 4_000_000.0,
            error_ns: 0,
        };
        assert_eq!(c.ns(5000), 1_000_000_000);
        assert_eq!(c.ns(5250), 2_000_000_000);
        assert_eq!(c.ns(4750), 0);
        assert_eq!(c.ns(4000), 0, "before boot is clamped, not wrapped");
        assert_eq!(c.ns(0), 0, "unset stays unset");
    }
}
