//! `replay`: every packet of a capture through the same loaded programs, then
//! the same map reading and flow model as `run`.
use std::{collections::BTreeMap, path::Path};

use netobs_common::{Class, Direction};
use serde::Serialize;

use crate::{
    capture::{Capture, CaptureError, Skipped, Way},
    datapath::{testrun::RunPacket, Datapath, DatapathError, Options},
    flows::{ClassCounts, Clock, Flow, Health, Snapshot},
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

#[derive(Debug, Serialize)]
pub struct HttpSummary {
    pub requests: u64,
    pub responses: u64,
    pub methods: BTreeMap<&'static str, u64>,
}

/// What `replay --json` prints.
#[derive(Debug, Serialize)]
pub struct ReplayReport {
    pub file: String,
    /// Records run through the programs (skipped ones excluded).
    pub packets: u64,
    pub skipped: Skipped,
    /// Packets per class.
    pub classes: BTreeMap<&'static str, u64>,
    /// Bytes per class (original lengths).
    pub bytes: BTreeMap<&'static str, u64>,
    /// Packets per VNI.
    pub vnis: BTreeMap<String, u64>,
    pub http: HttpSummary,
    pub patterns: BTreeMap<String, u64>,
    pub flows: Vec<Flow>,
    pub health: Health,
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
    while let Some(frame) = capture.next_frame() {
        let frame = frame?;
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
    Ok(report(path, packets, capture.skipped, &snapshot))
}

fn report(path: &Path, packets: u64, skipped: Skipped, s: &Snapshot) -> ReplayReport {
    let classes: ClassCounts = s.classes();
    ReplayReport {
        file: path.display().to_string(),
        packets,
        skipped,
        classes: Class::ALL
            .iter()
            .map(|c| (c.name(), classes.get(*c).packets))
            .collect(),
        bytes: Class::ALL
            .iter()
            .map(|c| (c.name(), classes.get(*c).bytes))
            .collect(),
        vnis: s
            .vnis()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
        http: HttpSummary {
            requests: s.http_requests(),
            responses: s.http_responses(),
            methods: s.http_by_method(),
        },
        patterns: s.pattern_hits(),
        flows: s.flows.clone(),
        health: s.health,
    }
}
