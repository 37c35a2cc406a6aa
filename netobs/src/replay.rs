//! `replay`: every packet of a capture through the same loaded programs, then
//! the same map reading and flow model as `run`.
use std::path::Path;

use netobs_common::Direction;
use serde::{Deserialize, Serialize};

use crate::{
    api::{Flow, Totals},
    capture::{Capture, CaptureError, Skipped, Way},
    datapath::{testrun::RunPacket, Datapath, DatapathError, Options},
    flows::{Clock, Snapshot},
};

/// BPF_PROG_TEST_RUN runs on the loopback device unless told otherwise.
const REPLAY_IFINDEX: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error(transparent)]
    Capture(#[from] CaptureError),
    #[error(transparent)]
    Datapath(#[from] DatapathError),
    #[error(transparent)]
    Privileges(#[from] crate::privileges::MissingCapabilities),
}

/// What `replay --json` prints: the totals in the shape `run --json` and
/// the API's summary use, and every flow.
#[derive(Debug, Serialize, Deserialize)]
pub struct ReplayReport {
    pub file: String,
    /// Records run through the programs (skipped ones excluded).
    pub packets: u64,
    pub skipped: Skipped,
    /// Why reading stopped early (a truncated or damaged file): the counts
    /// cover every record before the damage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub damaged: Option<String>,
    pub totals: Totals,
    pub flows: Vec<Flow>,
}

pub fn replay(path: &Path, mut opts: Options) -> Result<ReplayReport, ReplayError> {
    // Open the capture first: a bad path is the likeliest mistake and must
    // not wait on (or be hidden behind) a privilege error.
    let mut capture = Capture::open(path)?;
    crate::privileges::check()?;
    opts.replay = true;
    // Events have nobody to read them in replay.
    opts.new_flow_events = false;
    opts.http_events = false;
    let mut dp = Datapath::load(&opts)?;
    dp.register_interface(REPLAY_IFINDEX)?;
    let mut packets = 0u64;
    let mut damaged = None;
    while let Some(frame) = capture.next_frame() {
        // A capture cut short (tcpdump killed mid-write) still holds good
        // records: count them, and say where it broke.
        let frame = match frame {
            Ok(f) => f,
            Err(e) => {
                damaged = Some(e.to_string());
                break;
            }
        };
        let direction = match frame.way {
            Way::Outbound => Direction::Egress,
            Way::Inbound | Way::Unknown => Direction::Ingress,
        };
        let pkt = RunPacket {
            data: &frame.data,
            wire_len: frame.wire_len,
            timestamp_ns: frame.timestamp_ns,
            gso_segs: 0,
        };
        dp.run_tc(direction, &pkt, 1)?;
        packets += 1;
    }
    let mut flows = Vec::new();
    let read = dp.for_each_flow(|k, v| flows.push((*k, *v)))?;
    let snapshot = Snapshot::build(
        &dp.counters()?,
        &[(1, "replay".to_owned(), REPLAY_IFINDEX)],
        flows,
        read.table_entries,
        &dp.stats()?,
        dp.patterns(),
        Clock::Unix,
    );
    let mut r = report(path, packets, capture.skipped, &snapshot);
    r.damaged = damaged;
    Ok(r)
}

fn report(path: &Path, packets: u64, skipped: Skipped, s: &Snapshot) -> ReplayReport {
    ReplayReport {
        file: path.display().to_string(),
        packets,
        skipped,
        damaged: None,
        totals: s.totals(),
        flows: s.flows.clone(),
    }
}
