//! Running the loaded programs on packets we hand them (BPF_PROG_TEST_RUN):
//! how `replay` reads captures, how the tests check classification and how
//! the benchmarks time the datapath. Same programs, same maps as `run`.
use std::time::Duration;

use aya::programs::{TestRun, TestRunOptions};
use netobs_common::{
    Counter, Direction, CLASS_COUNT, REPLAY_CB_LEN, REPLAY_CB_TS_HI, REPLAY_CB_TS_LO,
};

use super::{attach::BaselineProgram, names, Datapath, DatapathError};

/// Bytes of a packet handed to the kernel. BPF_PROG_TEST_RUN takes at most a
/// page minus skb overhead; every header the parser reads fits well within
/// this, and the real length travels separately.
pub const MAX_RUN_DATA: usize = 2048;
/// The kernel refuses skb test runs shorter than an Ethernet header.
const MIN_RUN_DATA: usize = 14;
/// Enough for Ethernet, two VLAN tags and a full IPv6 header.
const PADDED_RUN_DATA: usize = 128;

// Offsets in the kernel's `struct __sk_buff` (uapi/linux/bpf.h); the test run
// accepts only a few fields and insists every other byte is zero.
const SKB_CTX_SIZE: usize = 192;
const SKB_CB: usize = 48;
const SKB_GSO_SEGS: usize = 164;

/// One packet as a capture or a test describes it.
#[derive(Debug, Clone, Copy)]
pub struct RunPacket<'a> {
    pub data: &'a [u8],
    /// Length on the wire (the capture's original length).
    pub wire_len: u32,
    /// Nanoseconds since the epoch (replay only).
    pub timestamp_ns: u64,
    /// GSO segments this buffer stands for (0 or 1: one packet).
    pub gso_segs: u32,
}

impl<'a> RunPacket<'a> {
    pub fn new(data: &'a [u8]) -> RunPacket<'a> {
        RunPacket {
            data,
            wire_len: data.len() as u32,
            timestamp_ns: 0,
            gso_segs: 0,
        }
    }
}

fn put_u32(ctx: &mut [u8], off: usize, v: u32) {
    ctx[off..off + 4].copy_from_slice(&v.to_ne_bytes());
}

fn skb_ctx(p: &RunPacket<'_>) -> [u8; SKB_CTX_SIZE] {
    let mut ctx = [0u8; SKB_CTX_SIZE];
    put_u32(&mut ctx, SKB_CB + 4 * REPLAY_CB_LEN, p.wire_len);
    put_u32(
        &mut ctx,
        SKB_CB + 4 * REPLAY_CB_TS_LO,
        p.timestamp_ns as u32,
    );
    put_u32(
        &mut ctx,
        SKB_CB + 4 * REPLAY_CB_TS_HI,
        (p.timestamp_ns >> 32) as u32,
    );
    put_u32(&mut ctx, SKB_GSO_SEGS, p.gso_segs);
    ctx
}

/// The outcome of one test run.
#[derive(Debug, Clone, Copy)]
pub struct RunResult {
    pub return_value: u32,
    /// Kernel-measured time per run.
    pub duration: Duration,
}

impl Datapath {
    /// Runs the TC program of `direction` on `packet`, `repeat` times.
    pub fn run_tc(
        &mut self,
        direction: Direction,
        packet: &RunPacket<'_>,
        repeat: u32,
    ) -> Result<RunResult, DatapathError> {
        let name = match direction {
            Direction::Ingress => names::TC_INGRESS,
            Direction::Egress => names::TC_EGRESS,
        };
        self.run_skb(name, packet, repeat)
    }

    fn run_skb(
        &mut self,
        name: &'static str,
        packet: &RunPacket<'_>,
        repeat: u32,
    ) -> Result<RunResult, DatapathError> {
        let mut data = [0u8; MAX_RUN_DATA];
        let n = packet.data.len().min(MAX_RUN_DATA);
        data[..n].copy_from_slice(&packet.data[..n]);
        // Short frames are padded to what the kernel accepts; the program
        // judges them by wire_len and still sees them as truncated.
        let n = n.max(MIN_RUN_DATA);
        let ctx = skb_ctx(packet);
        let replay = self.replay;
        let prog = self.classifier_loaded(name)?;
        let run = |prog: &mut aya::programs::SchedClassifier, len: usize| {
            prog.test_run(TestRunOptions {
                data_in: Some(&data[..len]),
                ctx_in: Some(&ctx),
                repeat: repeat.max(1),
                ..TestRunOptions::default()
            })
        };
        let r = match run(prog, n) {
            // The kernel refuses an skb whose network header is cut short. In
            // replay the program judges the packet by its original length
            // (in cb), never by the padding, so pad and run it anyway.
            Err(aya::programs::ProgramError::SyscallError(e))
                if replay
                    && e.io_error.raw_os_error() == Some(libc::EINVAL)
                    && n < PADDED_RUN_DATA =>
            {
                run(prog, PADDED_RUN_DATA)
            }
            r => r,
        }
        .map_err(|source| DatapathError::Program { name, source })?;
        Ok(RunResult {
            return_value: r.return_value,
            duration: r.duration,
        })
    }

    /// Runs the XDP program on `data`, `repeat` times.
    pub fn run_xdp(&mut self, data: &[u8], repeat: u32) -> Result<RunResult, DatapathError> {
        self.run_xdp_named(names::XDP, data, repeat)
    }

    /// Runs the do-nothing program of the same hook (XDP or TC) on the same
    /// packet: the benchmarks' baseline.
    pub fn run_empty(
        &mut self,
        xdp: bool,
        packet: &RunPacket<'_>,
        repeat: u32,
    ) -> Result<RunResult, DatapathError> {
        let empty = if xdp {
            BaselineProgram::Xdp
        } else {
            BaselineProgram::Tc
        };
        self.run_baseline(empty, packet, repeat)
    }

    /// Runs one of the benchmarks' baselines (`BaselineProgram`) on `packet`.
    pub fn run_baseline(
        &mut self,
        baseline: BaselineProgram,
        packet: &RunPacket<'_>,
        repeat: u32,
    ) -> Result<RunResult, DatapathError> {
        if baseline.is_tc() {
            self.run_skb(baseline.program(), packet, repeat)
        } else {
            self.run_xdp_named(baseline.program(), packet.data, repeat)
        }
    }

    /// What the counter and naive baselines counted since load, by
    /// `Class` (the counter counts as `Class::Other`), summed over CPUs.
    pub fn baseline_counts(&self) -> Result<Vec<Counter>, DatapathError> {
        self.summed_counters(names::BENCH_COUNTS, CLASS_COUNT)
    }

    fn run_xdp_named(
        &mut self,
        name: &'static str,
        data: &[u8],
        repeat: u32,
    ) -> Result<RunResult, DatapathError> {
        let prog = self.xdp_named(name)?;
        let opts = TestRunOptions {
            data_in: Some(&data[..data.len().min(MAX_RUN_DATA)]),
            repeat: repeat.max(1),
            ..TestRunOptions::default()
        };
        let r = prog
            .test_run(opts)
            .map_err(|source| DatapathError::Program { name, source })?;
        Ok(RunResult {
            return_value: r.return_value,
            duration: r.duration,
        })
    }
}
