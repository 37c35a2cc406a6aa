//! `netobs doctor`: the overlay failures Swarm operators fight, named from
//! what the agent already counts. Decided here, in userspace, from each
//! read: no kernel work beyond the flags every TCP flow already carries.
//!
//! - The data path one way: VXLAN leaves for a peer node, inner TCP
//!   connections to it get no answer, and nothing comes back from it.
//! - Misdirected VXLAN: sent to another node than the one running the task
//!   it is for (a stale forwarding entry), for longer than a task takes to
//!   move.
//! - TCP per service pair: connections whose SYN got no answer, resets.
//! - Fragmented VXLAN: the underlay's MTU below the overlay's + 50 (the
//!   one kernel addition: a first fragment is keyed as a flow of its own,
//!   marked `ENCAP_FRAGMENT`, decided where the parser already looks at the
//!   fragment bits; nothing else pays for it).
//!
//! Not checked (said in every answer): ICMP too-big from beyond this node,
//! broken checksum offload, the kernel's drops with their reason.
pub mod kinds;

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    net::IpAddr,
};

use crate::{
    api::{HealthFinding, HealthKind, OverlayHealth, PairHealth, PeerHealth, Severity},
    inventory::{Inventory, MTU_OPTION},
    poll::{Misdirected, PeerGrowth, Read},
};
use netobs_common::{Class, Direction};

/// The window of the per-peer figures: long enough for a few connection
/// attempts and their retries, short enough that a fixed firewall clears
/// within a minute.
pub const WINDOW_SECS: f64 = 30.0;
/// A misdirection must last this long: a task that moved has its old
/// forwarding entries replaced within a second or two.
pub const MISDIRECTED_GRACE_SECS: f64 = 10.0;
/// TCP findings cover this much: a failure an hour ago is history (the
/// metrics keep it), not a finding.
pub const RECENT_SECS: f64 = 300.0;
/// Service pairs kept with their totals before quiet ones are dropped.
const MAX_PAIRS: usize = 4096;
/// Reads without a misdirected packet for this long end a misdirection.
const MISDIRECTED_GAP_SECS: f64 = 5.0;
/// Misdirections remembered at once.
const MAX_MISDIRECTED: usize = 256;

pub const NOT_CHECKED: [&str; 3] = [
    "path MTU beyond this node (ICMP fragmentation-needed and packet-too-big quoting overlay \
     traffic): not watched yet",
    "checksum offload (inner checksums arriving wrong): not verified yet",
    "kernel drops of overlay packets by reason (skb:kfree_skb): not traced yet",
];

/// (network, client, server): for a reset, the side that sent it first.
type Pair = (String, String, String);
/// One read's connect failures and resets per pair.
type PairGrowth = Vec<(Pair, u64, u64)>;
/// (network, peer node, egress) -> fragmented VXLAN packets and the
/// interface they crossed.
type Fragments = BTreeMap<(String, String, bool), (u64, u32)>;

/// The default MTU of an overlay network (Docker's, for a 1500-byte
/// underlay).
const DEFAULT_OVERLAY_MTU: u32 = 1450;
/// What VXLAN adds: outer IPv4, UDP, VXLAN and the inner Ethernet header.
const VXLAN_OVERHEAD: u32 = 50;

struct Misdirection {
    first: f64,
    last: f64,
    packets: u64,
    seen: Misdirected,
}

pub struct Doctor {
    /// The data-path ports, for the findings' text.
    ports: Vec<u16>,
    started: f64,
    /// Each read's per-peer growth over the window.
    window: VecDeque<(f64, HashMap<IpAddr, PeerGrowth>)>,
    last_out: HashMap<IpAddr, f64>,
    last_in: HashMap<IpAddr, f64>,
    /// (network, client, server) -> (connect failures, resets sent by the
    /// first named side), since the agent started...
    pairs: BTreeMap<Pair, (u64, u64)>,
    /// ... and each read's, over the last `RECENT_SECS`.
    recent: VecDeque<(f64, PairGrowth)>,
    /// (network, task, node it went to).
    misdirected: HashMap<(String, String, IpAddr), Misdirection>,
    /// Each read's fragmented VXLAN, over the window.
    fragments: VecDeque<(f64, Fragments)>,
}

impl Doctor {
    pub fn new(ports: Vec<u16>, now: f64) -> Doctor {
        Doctor {
            ports,
            started: now,
            window: VecDeque::new(),
            last_out: HashMap::new(),
            last_in: HashMap::new(),
            pairs: BTreeMap::new(),
            recent: VecDeque::new(),
            fragments: VecDeque::new(),
            misdirected: HashMap::new(),
        }
    }

    /// Takes in one read at `now` (seconds of the monotonic clock: a step
    /// of the wall clock must not stretch or empty the windows); the health
    /// as of it.
    /// `mtu` gives a watched interface's name and MTU by index; `inv` the
    /// networks' own MTU.
    pub fn observe(
        &mut self,
        read: &Read,
        now: f64,
        mtu: &dyn Fn(u32) -> Option<(String, u32)>,
        inv: &Inventory,
    ) -> OverlayHealth {
        let mut frags = Fragments::new();
        for g in read.groups.iter().filter(|g| g.growth.outer_fragments > 0) {
            let e = frags
                .entry((
                    g.labels.network.clone(),
                    g.labels.peer_node.clone(),
                    g.direction == Direction::Egress,
                ))
                .or_insert((0, g.ifindex));
            e.0 += g.growth.outer_fragments;
        }
        self.fragments.push_back((now, frags));
        while self
            .fragments
            .front()
            .is_some_and(|(t, _)| now - t > WINDOW_SECS)
        {
            self.fragments.pop_front();
        }
        for (addr, p) in &read.peers {
            if p.packets_out > 0 {
                self.last_out.insert(*addr, now);
            }
            if p.packets_in > 0 {
                self.last_in.insert(*addr, now);
            }
        }
        self.window.push_back((now, read.peers.clone()));
        while self
            .window
            .front()
            .is_some_and(|(t, _)| now - t >= WINDOW_SECS)
        {
            self.window.pop_front();
        }
        let mut this_read = Vec::new();
        for g in read.groups.iter().filter(|g| g.class == Class::Vxlan) {
            let (f, r) = (g.growth.tcp_connect_failures, g.growth.tcp_resets);
            if f + r == 0 {
                continue;
            }
            let l = &g.labels;
            let key = (
                l.network.clone(),
                l.src_service.clone(),
                l.dst_service.clone(),
            );
            let e = self.pairs.entry(key.clone()).or_default();
            e.0 += f;
            e.1 += r;
            this_read.push((key, f, r));
        }
        self.recent.push_back((now, this_read));
        while self
            .recent
            .front()
            .is_some_and(|(t, _)| now - t > RECENT_SECS)
        {
            self.recent.pop_front();
        }
        for m in &read.misdirected {
            let key = (m.network.clone(), m.task.clone(), m.sent_to);
            if self.misdirected.len() >= MAX_MISDIRECTED && !self.misdirected.contains_key(&key) {
                continue;
            }
            let e = self.misdirected.entry(key).or_insert_with(|| Misdirection {
                first: now,
                last: now,
                packets: 0,
                seen: m.clone(),
            });
            // A pause starts it over: two brief misdirections (tasks moving
            // one after the other) do not add up to one that lasts.
            if now - e.last > MISDIRECTED_GAP_SECS {
                e.first = now;
                e.packets = 0;
            }
            e.last = now;
            e.packets += m.packets;
            e.seen = m.clone();
        }
        self.misdirected.retain(|_, m| now - m.last <= WINDOW_SECS);
        // Bounded: a peer silent for the recent window is forgotten (a flood
        // of spoofed sources must not grow these), and past MAX_PAIRS the
        // pairs with nothing recent go.
        self.last_out.retain(|_, t| now - *t <= RECENT_SECS);
        self.last_in.retain(|_, t| now - *t <= RECENT_SECS);
        if self.pairs.len() > MAX_PAIRS {
            let recent: std::collections::HashSet<&Pair> = self
                .recent
                .iter()
                .flat_map(|(_, r)| r.iter().map(|(k, _, _)| k))
                .collect();
            self.pairs.retain(|k, _| recent.contains(k));
        }
        self.health(now, mtu, inv)
    }

    /// The fragmentation findings: one per network and peer node.
    fn fragmentation(
        &self,
        mtu: &dyn Fn(u32) -> Option<(String, u32)>,
        inv: &Inventory,
        findings: &mut Vec<HealthFinding>,
    ) {
        let mut sums: BTreeMap<(&str, &str), (u64, u64, u32)> = BTreeMap::new();
        for (_, frags) in &self.fragments {
            for ((network, peer, egress), (n, ifindex)) in frags {
                let e = sums.entry((network, peer)).or_insert((0, 0, *ifindex));
                if *egress {
                    e.0 += n;
                } else {
                    e.1 += n;
                }
            }
        }
        for ((network, peer), (out, inn, ifindex)) in sums {
            let net_mtu = inv
                .network_by_name(network)
                .and_then(|n| n.options.get(MTU_OPTION))
                .and_then(|m| m.trim().parse().ok())
                .unwrap_or(DEFAULT_OVERLAY_MTU);
            // This node's interface is named only when it is the one too
            // small; fragments that only arrive may come from the peer's.
            let underlay = match mtu(ifindex).filter(|(_, m)| *m < net_mtu + VXLAN_OVERHEAD) {
                Some((name, m)) => format!(
                    "the underlay's MTU ({name}: {m}) is below the network's ({net_mtu}) + \
                     {VXLAN_OVERHEAD}; create it with --opt {MTU_OPTION}={} (or raise the \
                     underlay's MTU)",
                    m.saturating_sub(VXLAN_OVERHEAD)
                ),
                None => format!(
                    "the MTU of {peer}'s underlay or of the path is below the network's \
                     ({net_mtu}) + {VXLAN_OVERHEAD}; lower the network's ({MTU_OPTION}) or raise \
                     the underlay's"
                ),
            };
            findings.push(HealthFinding {
                kind: HealthKind::MtuFragmentation,
                severity: HealthKind::MtuFragmentation.severity(),
                peer: Some(peer.to_owned()),
                network: Some(network.to_owned()),
                services: None,
                message: format!(
                    "VXLAN on {network} with {peer} travels as IP fragments ({out} packets out, \
                     {inn} in, in the last {WINDOW_SECS:.0} s): {underlay}"
                ),
            });
        }
    }

    fn health(
        &self,
        now: f64,
        mtu: &dyn Fn(u32) -> Option<(String, u32)>,
        inv: &Inventory,
    ) -> OverlayHealth {
        // Times are kept on the monotonic clock and shown as Unix seconds.
        let to_unix = crate::time::unix_now() - now;
        let mut sums: BTreeMap<IpAddr, PeerHealth> = BTreeMap::new();
        for (_, peers) in &self.window {
            for (addr, p) in peers {
                let e = sums.entry(*addr).or_insert_with(|| PeerHealth {
                    peer: p.name.clone(),
                    addr: *addr,
                    packets_out: 0,
                    packets_in: 0,
                    connect_failures: 0,
                    last_out: self.last_out.get(addr).map(|t| t + to_unix),
                    last_in: self.last_in.get(addr).map(|t| t + to_unix),
                });
                e.packets_out += p.packets_out;
                e.packets_in += p.packets_in;
                e.connect_failures += p.connect_failures;
            }
        }
        let mut findings = Vec::new();
        self.fragmentation(mtu, inv, &mut findings);
        let port = self
            .ports
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(",");
        // A whole window must have been watched: right after the agent
        // starts, silence from a peer means nothing yet.
        let watched = now - self.started >= WINDOW_SECS;
        for p in sums.values() {
            // Two unanswered connections at least: one SYN to a task that
            // is being stopped is no verdict on the data path.
            if watched && p.packets_out > 0 && p.packets_in == 0 && p.connect_failures >= 2 {
                let since = match p.last_in {
                    Some(t) => format!("since {:.0} s ago", now - (t - to_unix)),
                    None => "since the agent started".to_owned(),
                };
                findings.push(HealthFinding {
                    kind: HealthKind::DataPathOneWay,
                    severity: HealthKind::DataPathOneWay.severity(),
                    peer: Some(p.peer.clone()),
                    network: None,
                    services: None,
                    message: format!(
                        "VXLAN leaves for {} ({}) on UDP {port} ({} packets and {} TCP \
                         connections unanswered in the last {WINDOW_SECS:.0} s) and nothing has \
                         come back from it {since}: UDP {port} is dropped on the way or at {} \
                         (or every task this node talks to there is silent); open it both ways \
                         between all nodes",
                        p.peer, p.addr, p.packets_out, p.connect_failures, p.peer
                    ),
                });
            }
        }
        for m in self.misdirected.values() {
            if m.last - m.first < MISDIRECTED_GRACE_SECS {
                continue;
            }
            let s = &m.seen;
            findings.push(HealthFinding {
                kind: HealthKind::VxlanMisdirected,
                severity: HealthKind::VxlanMisdirected.severity(),
                peer: Some(s.sent_to_name.clone()),
                network: Some(s.network.clone()),
                services: None,
                message: format!(
                    "VXLAN for task {} on network {} goes to {} ({}) but the task runs on {} \
                     ({}): {} packets over {:.0} s; a stale forwarding entry in the overlay \
                     (`bridge fdb show` in its namespace); restart the task or re-create the \
                     node's attachment",
                    s.task,
                    s.network,
                    s.sent_to_name,
                    s.sent_to,
                    s.task_node_name,
                    s.task_node,
                    m.packets,
                    m.last - m.first
                ),
            });
        }
        let mut recent: BTreeMap<&Pair, (u64, u64)> = BTreeMap::new();
        for (_, read) in &self.recent {
            for (key, f, r) in read {
                let e = recent.entry(key).or_default();
                e.0 += f;
                e.1 += r;
            }
        }
        let pairs: Vec<PairHealth> = self
            .pairs
            .iter()
            .map(|(key, (f, r))| {
                let (rf, rr) = recent.get(key).copied().unwrap_or_default();
                PairHealth {
                    network: key.0.clone(),
                    src_service: key.1.clone(),
                    dst_service: key.2.clone(),
                    connect_failures: *f,
                    resets: *r,
                    recent_connect_failures: rf,
                    recent_resets: rr,
                }
            })
            .collect();
        for p in &pairs {
            let services = format!("{} -> {}", p.src_service, p.dst_service);
            if p.recent_connect_failures > 0 {
                findings.push(HealthFinding {
                    kind: HealthKind::TcpConnectFailures,
                    severity: HealthKind::TcpConnectFailures.severity(),
                    peer: None,
                    network: Some(p.network.clone()),
                    services: Some(services.clone()),
                    message: format!(
                        "{} TCP connections {services} on {} got no answer (or only a reset) \
                         in the last {:.0} min: is {} up, listening and not filtered?",
                        p.recent_connect_failures,
                        p.network,
                        RECENT_SECS / 60.0,
                        p.dst_service
                    ),
                });
            }
            if p.recent_resets > 0 {
                findings.push(HealthFinding {
                    kind: HealthKind::TcpResets,
                    severity: HealthKind::TcpResets.severity(),
                    peer: None,
                    network: Some(p.network.clone()),
                    services: Some(services.clone()),
                    message: format!(
                        "{} TCP connections on {} reset by {} (towards {}) in the last {:.0} min",
                        p.recent_resets,
                        p.network,
                        p.src_service,
                        p.dst_service,
                        RECENT_SECS / 60.0
                    ),
                });
            }
        }
        findings.sort_by(|a, b| b.severity.cmp(&a.severity).then(a.kind.cmp(&b.kind)));
        OverlayHealth {
            window_secs: WINDOW_SECS as u64,
            peers: sums.into_values().collect(),
            pairs,
            findings,
            not_checked: NOT_CHECKED.iter().map(|s| (*s).to_owned()).collect(),
        }
    }
}

/// Exit status of `netobs doctor`: 1 when a finding needs acting on.
pub fn exit_code(h: &OverlayHealth) -> u8 {
    u8::from(h.findings.iter().any(|f| f.severity >= Severity::Warning))
}
