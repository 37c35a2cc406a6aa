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
//! - UDP gossip one way: datagrams to 7946 leave for a peer and none come
//!   back (counted per peer by the classifier where it already has the UDP
//!   ports; TCP never pays).
//! - The kernel's drops of overlay-path packets with their reason, from
//!   the drop tracer (`skb:kfree_skb`): it runs only on drops.
//!
//! - Broken checksum offload: inner TCP SYNs arriving in VXLAN whose
//!   checksum is wrong, or was never filled in on a real wire (the
//!   classifier sums SYNs only, on ingress only).
//!
//! Not checked (said in every answer): ICMP too-big from beyond this node.
pub mod kinds;
pub(crate) mod window;

use std::{
    collections::{BTreeMap, HashMap},
    net::IpAddr,
    sync::Arc,
};

use crate::{
    api::{
        ChecksumHealth, DropHealth, DropTraffic, GossipHealth, HealthFinding, HealthKind,
        OverlayHealth, PairHealth, PeerHealth, Severity,
    },
    host::IfaceInfo,
    inventory::{Inventory, MTU_OPTION},
    loss::LossReport,
    poll::{Misdirected, PeerGrowth, Read},
    underlay::{ChecksumGrowth, DropGrowth, GossipGrowth},
};
use netobs_common::{Class, Direction};
use window::Window;

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

pub const NOT_CHECKED: [&str; 1] = [
    "path MTU beyond this node (ICMP fragmentation-needed and packet-too-big quoting overlay \
     traffic): not watched yet (fragments are)",
];
/// Drivers that legitimately deliver checksums never filled in: the
/// sender is on the same host (another namespace, the VM's host), which
/// hands the packet over with its checksum still to be done.
pub const SAME_HOST_DRIVERS: [&str; 5] = ["veth", "netkit", "tun", "virtio_net", "xen-netfront"];
/// UDP gossip sent to a peer in the window before its silence means
/// anything: memberlist probes each peer every second or two, so a blocked
/// port leaves tens; a node that went away is declared dead and no longer
/// probed within seconds.
pub const GOSSIP_MIN_OUT: u64 = 10;
/// Loss from a peer becomes a finding at this many packets in the recent
/// window, and this share of those sent.
pub const LOSS_MIN_PACKETS: u64 = 10;
pub const LOSS_MIN_PERCENT: u64 = 1;
/// Drop keys remembered with their totals.
const MAX_DROP_TOTALS: usize = 4096;

/// (network, client, server): for a reset, the side that sent it first.
type Pair = (String, String, String);
/// One read's connect failures and resets per pair.
type PairGrowth = Vec<(Pair, u64, u64)>;
/// (network, peer node, egress) -> fragmented VXLAN packets and the
/// interface they crossed.
type Fragments = BTreeMap<(String, String, bool), (u64, u32)>;
/// (peer, egress, traffic, reason).
type DropWhat = (IpAddr, bool, DropTraffic, String);

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
    window: Window<HashMap<IpAddr, PeerGrowth>>,
    last_out: HashMap<IpAddr, f64>,
    last_in: HashMap<IpAddr, f64>,
    /// (network, client, server) -> (connect failures, resets sent by the
    /// first named side), since the agent started...
    pairs: BTreeMap<Pair, (u64, u64)>,
    /// ... and each read's, over the last `RECENT_SECS`.
    recent: Window<PairGrowth>,
    /// (network, task, node it went to).
    misdirected: HashMap<(String, String, IpAddr), Misdirection>,
    /// Each read's fragmented VXLAN, over the window.
    fragments: Window<Fragments>,
    /// Each read's UDP gossip per peer, over the window.
    gossip: Window<HashMap<IpAddr, GossipGrowth>>,
    gossip_last_in: HashMap<IpAddr, f64>,
    /// Each read's kernel drops, over the window...
    drops: Window<Vec<DropGrowth>>,
    /// ... and since the agent started, with the peer's name.
    drop_totals: BTreeMap<DropWhat, (String, u64)>,
    drops_unavailable: Option<String>,
    /// Each read's inner SYN checksums by (peer, ifindex), over the window.
    checksums: Window<HashMap<(IpAddr, u32), ChecksumGrowth>>,
    /// The loss checker's latest figures.
    loss: Arc<LossReport>,
}

impl Doctor {
    pub fn new(ports: Vec<u16>, now: f64) -> Doctor {
        Doctor {
            ports,
            started: now,
            window: Window::new(WINDOW_SECS),
            last_out: HashMap::new(),
            last_in: HashMap::new(),
            pairs: BTreeMap::new(),
            recent: Window::new(RECENT_SECS),
            fragments: Window::new(WINDOW_SECS),
            misdirected: HashMap::new(),
            gossip: Window::new(WINDOW_SECS),
            gossip_last_in: HashMap::new(),
            drops: Window::new(WINDOW_SECS),
            drop_totals: BTreeMap::new(),
            drops_unavailable: None,
            checksums: Window::new(WINDOW_SECS),
            loss: Arc::default(),
        }
    }

    /// Takes in one read at `now` (seconds of the monotonic clock: a step
    /// of the wall clock must not stretch or empty the windows); the health
    /// as of it.
    /// `iface` describes a watched interface by index; `inv` gives the
    /// networks' own MTU.
    pub fn observe(
        &mut self,
        read: &Read,
        loss: &Arc<LossReport>,
        now: f64,
        iface: &dyn Fn(u32) -> Option<IfaceInfo>,
        inv: &Inventory,
    ) -> OverlayHealth {
        self.loss = loss.clone();
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
        self.fragments.push(now, frags);
        for (addr, p) in &read.peers {
            if p.packets_out > 0 {
                self.last_out.insert(*addr, now);
            }
            if p.packets_in > 0 {
                self.last_in.insert(*addr, now);
            }
        }
        self.window.push(now, read.peers.clone());
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
        self.recent.push(now, this_read);
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
        self.observe_underlay(read, now);
        // Bounded: a peer silent for the recent window is forgotten (a flood
        // of spoofed sources must not grow these), and past MAX_PAIRS the
        // pairs with nothing recent go.
        self.last_out.retain(|_, t| now - *t <= RECENT_SECS);
        self.last_in.retain(|_, t| now - *t <= RECENT_SECS);
        if self.pairs.len() > MAX_PAIRS {
            let recent: std::collections::HashSet<&Pair> = self
                .recent
                .values()
                .flat_map(|r| r.iter().map(|(k, _, _)| k))
                .collect();
            self.pairs.retain(|k, _| recent.contains(k));
        }
        self.health(now, iface, inv)
    }

    fn observe_underlay(&mut self, read: &Read, now: f64) {
        let u = &read.underlay;
        for (addr, g) in &u.gossip {
            if g.packets_in > 0 {
                self.gossip_last_in.insert(*addr, now);
            }
        }
        self.gossip.push(now, u.gossip.clone());
        self.gossip_last_in.retain(|_, t| now - *t <= RECENT_SECS);
        for d in &u.drops {
            let key = (
                d.peer,
                d.direction == Direction::Egress,
                d.traffic,
                d.reason.clone(),
            );
            if self.drop_totals.len() >= MAX_DROP_TOTALS && !self.drop_totals.contains_key(&key) {
                continue;
            }
            let e = self
                .drop_totals
                .entry(key)
                .or_insert_with(|| (d.name.clone(), 0));
            e.1 += d.packets;
        }
        self.drops.push(now, u.drops.clone());
        self.drops_unavailable = u.drops_unavailable.clone();
        self.checksums.push(now, u.checksums.clone());
    }

    /// Inner SYN checksums per peer and interface over the window, and the
    /// broken-offload findings: any wrong checksum; checksums never filled
    /// in where only a wire can have brought them.
    fn checksums(
        &self,
        iface: &dyn Fn(u32) -> Option<IfaceInfo>,
        findings: &mut Vec<HealthFinding>,
    ) -> Vec<ChecksumHealth> {
        let mut sums: BTreeMap<(IpAddr, u32), ChecksumGrowth> = BTreeMap::new();
        for read in self.checksums.values() {
            for (k, c) in read {
                let e = sums.entry(*k).or_insert_with(|| ChecksumGrowth {
                    name: c.name.clone(),
                    ..ChecksumGrowth::default()
                });
                e.ok += c.ok;
                e.partial += c.partial;
                e.bad += c.bad;
            }
        }
        let mut out = Vec::new();
        for ((addr, ifindex), c) in sums {
            let info = iface(ifindex).unwrap_or_else(|| IfaceInfo {
                name: format!("ifindex {ifindex}"),
                ..IfaceInfo::default()
            });
            let same_host = info
                .driver
                .as_deref()
                .is_some_and(|d| SAME_HOST_DRIVERS.contains(&d));
            let wire_partial = if same_host { 0 } else { c.partial };
            let checked = c.ok + c.partial + c.bad;
            if c.bad + wire_partial > 0 {
                let onoff = |v: Option<bool>| match v {
                    Some(true) => "on",
                    Some(false) => "off",
                    None => "unknown",
                };
                let what = match (c.bad, wire_partial) {
                    (0, p) => format!("{p} never filled in"),
                    (b, 0) => format!("{b} wrong"),
                    (b, p) => format!("{b} wrong and {p} never filled in"),
                };
                findings.push(HealthFinding {
                    kind: HealthKind::ChecksumOffload,
                    severity: HealthKind::ChecksumOffload.severity(),
                    peer: Some(c.name.clone()),
                    network: None,
                    services: None,
                    message: format!(
                        "of {checked} inner TCP SYNs that arrived in VXLAN from {} ({addr}) on \
                         {} (driver {}, rx-checksumming {}) in the last {WINDOW_SECS:.0} s, the \
                         checksums of {what}: the receiving tasks drop them, so connections \
                         hang. Broken checksum offload on the way (moby#41775): on {}, turn it \
                         off on the underlay interface (`ethtool -K IF tx-checksum-ip-generic \
                         off`), or fix the NIC or virtual switch in between",
                        c.name,
                        info.name,
                        info.driver.as_deref().unwrap_or("unknown"),
                        onoff(info.rx_checksum),
                        c.name
                    ),
                });
            }
            out.push(ChecksumHealth {
                peer: c.name,
                addr,
                iface: info.name,
                driver: info.driver,
                ok: c.ok,
                partial: c.partial,
                bad: c.bad,
            });
        }
        out
    }

    /// UDP gossip per peer over the window, and the one-way findings.
    fn gossip(
        &self,
        now: f64,
        to_unix: f64,
        findings: &mut Vec<HealthFinding>,
    ) -> Vec<GossipHealth> {
        let mut sums: BTreeMap<IpAddr, GossipHealth> = BTreeMap::new();
        for peers in self.gossip.values() {
            for (addr, g) in peers {
                let e = sums.entry(*addr).or_insert_with(|| GossipHealth {
                    peer: g.name.clone(),
                    addr: *addr,
                    packets_out: 0,
                    packets_in: 0,
                    last_in: self.gossip_last_in.get(addr).map(|t| t + to_unix),
                });
                e.packets_out += g.packets_out;
                e.packets_in += g.packets_in;
            }
        }
        let watched = now - self.started >= WINDOW_SECS;
        for g in sums.values() {
            if watched && g.packets_out >= GOSSIP_MIN_OUT && g.packets_in == 0 {
                let since = match g.last_in {
                    Some(t) => format!("since {:.0} s ago", now - (t - to_unix)),
                    None => "since the agent started".to_owned(),
                };
                findings.push(HealthFinding {
                    kind: HealthKind::GossipUdpOneWay,
                    severity: HealthKind::GossipUdpOneWay.severity(),
                    peer: Some(g.peer.clone()),
                    network: None,
                    services: None,
                    message: format!(
                        "UDP gossip leaves for {} ({}) on port {} ({} datagrams in the last \
                         {WINDOW_SECS:.0} s) and none has come back from it {since}: UDP {} is \
                         dropped from {} to this node (firewall, security group); the overlay's \
                         state no longer reaches this node. Open UDP {} both ways between all \
                         nodes",
                        g.peer,
                        g.addr,
                        netobs_common::GOSSIP_PORT,
                        g.packets_out,
                        netobs_common::GOSSIP_PORT,
                        g.peer,
                        netobs_common::GOSSIP_PORT
                    ),
                });
            }
        }
        sums.into_values().collect()
    }

    /// The kernel's drops: recent and since the start, one finding per
    /// peer, way, kind and reason dropped in the window.
    fn drops(&self, findings: &mut Vec<HealthFinding>) -> Vec<DropHealth> {
        let mut recent: BTreeMap<DropWhat, u64> = BTreeMap::new();
        for read in self.drops.values() {
            for d in read {
                let key = (
                    d.peer,
                    d.direction == Direction::Egress,
                    d.traffic,
                    d.reason.clone(),
                );
                *recent.entry(key).or_default() += d.packets;
            }
        }
        let mut out = Vec::new();
        for ((addr, egress, traffic, reason), (name, total)) in &self.drop_totals {
            let key = (*addr, *egress, *traffic, reason.clone());
            let n = recent.get(&key).copied().unwrap_or_default();
            out.push(DropHealth {
                peer: name.clone(),
                addr: *addr,
                direction: if *egress {
                    Direction::Egress
                } else {
                    Direction::Ingress
                },
                traffic: *traffic,
                reason: reason.clone(),
                recent: n,
                total: *total,
            });
            if n == 0 {
                continue;
            }
            let what = match traffic {
                DropTraffic::Vxlan => format!(
                    "VXLAN (UDP {})",
                    self.ports
                        .iter()
                        .map(u16::to_string)
                        .collect::<Vec<_>>()
                        .join(",")
                ),
                DropTraffic::Esp => "ESP".to_owned(),
                DropTraffic::Gossip => format!("gossip (UDP {})", netobs_common::GOSSIP_PORT),
            };
            let way = if *egress { "to" } else { "from" };
            findings.push(HealthFinding {
                kind: HealthKind::KernelDrops,
                severity: HealthKind::KernelDrops.severity(),
                peer: Some(name.clone()),
                network: None,
                services: None,
                message: format!(
                    "this node's kernel dropped {n} {what} packets {way} {name} ({addr}) in the \
                     last {WINDOW_SECS:.0} s, reason {reason}: {}",
                    drop_advice(reason)
                ),
            });
        }
        out
    }

    /// The fragmentation findings: one per network and peer node.
    fn fragmentation(
        &self,
        iface: &dyn Fn(u32) -> Option<IfaceInfo>,
        inv: &Inventory,
        findings: &mut Vec<HealthFinding>,
    ) {
        let mut sums: BTreeMap<(&str, &str), (u64, u64, u32)> = BTreeMap::new();
        for frags in self.fragments.values() {
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
            let small = iface(ifindex)
                .and_then(|i| Some((i.name, i.mtu?)))
                .filter(|(_, m)| *m < net_mtu + VXLAN_OVERHEAD);
            let underlay = match small {
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
        iface: &dyn Fn(u32) -> Option<IfaceInfo>,
        inv: &Inventory,
    ) -> OverlayHealth {
        // Times are kept on the monotonic clock and shown as Unix seconds.
        let to_unix = crate::time::unix_now() - now;
        let mut sums: BTreeMap<IpAddr, PeerHealth> = BTreeMap::new();
        for peers in self.window.values() {
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
        self.fragmentation(iface, inv, &mut findings);
        let gossip = self.gossip(now, to_unix, &mut findings);
        let drops = self.drops(&mut findings);
        let checksums = self.checksums(iface, &mut findings);
        self.loss_findings(&mut findings);
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
        for read in self.recent.values() {
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
        let mut not_checked: Vec<String> = NOT_CHECKED.iter().map(|s| (*s).to_owned()).collect();
        if let Some(why) = &self.drops_unavailable {
            not_checked.push(format!(
                "kernel drops of overlay packets by reason: unavailable: {why}"
            ));
        }
        if let Some(why) = &self.loss.off {
            not_checked.push(format!("loss between nodes: {why}"));
        }
        for l in self.loss.peers.iter().filter(|l| l.agent != "ok") {
            not_checked.push(format!(
                "loss from {} ({}): its agent gave nothing ({}) at the last check",
                l.peer, l.addr, l.agent
            ));
        }
        OverlayHealth {
            window_secs: WINDOW_SECS as u64,
            peers: sums.into_values().collect(),
            gossip,
            drops,
            checksums,
            pairs,
            loss: self.loss.peers.clone(),
            findings,
            not_checked,
        }
    }

    /// One finding per peer whose VXLAN lost at least `LOSS_MIN_PACKETS`
    /// and `LOSS_MIN_PERCENT` on the way here over the recent window.
    fn loss_findings(&self, findings: &mut Vec<HealthFinding>) {
        for l in &self.loss.peers {
            if l.recent_lost < LOSS_MIN_PACKETS
                || l.recent_lost * 100 < l.recent_checked * LOSS_MIN_PERCENT
            {
                continue;
            }
            findings.push(HealthFinding {
                kind: HealthKind::OverlayLoss,
                severity: HealthKind::OverlayLoss.severity(),
                peer: Some(l.peer.clone()),
                network: None,
                services: None,
                message: format!(
                    "{} of {} VXLAN packets that {} ({})'s agent counted leaving for this node \
                     in the last {:.0} min never arrived ({:.1}%): check both nodes' interfaces \
                     (`ip -s link`, `ethtool -S`), rate limits and the links between",
                    l.recent_lost,
                    l.recent_checked,
                    l.peer,
                    l.addr,
                    RECENT_SECS / 60.0,
                    l.recent_lost as f64 * 100.0 / l.recent_checked.max(1) as f64
                ),
            });
        }
    }
}

/// What a drop reason usually means on an overlay's path, and what to do.
fn drop_advice(reason: &str) -> &'static str {
    match reason {
        "NETFILTER_DROP" => {
            "a firewall rule on this node (iptables or nftables) drops them; allow the port \
             from and to the swarm's nodes"
        }
        "NO_SOCKET" => {
            "nothing listens on the port here: the overlay is not (yet) on this node, or the \
             nodes disagree on the data-path port"
        }
        "PKT_TOO_BIG" => {
            "larger than the path allows: lower the network's MTU \
             (com.docker.network.driver.mtu) to the underlay's - 50"
        }
        r if r.starts_with("XFRM") => {
            "an IPsec policy or state refused them: an encrypted overlay whose keys or policies \
             disagree between the nodes (`ip xfrm state`, `ip xfrm policy`)"
        }
        r if r.starts_with("VXLAN") => {
            "the VXLAN device refused them (unknown VNI, bad header, or no entry for the \
             source): the network is not attached on this node, or its entries are stale"
        }
        r if r.contains("QDISC") || r.contains("BACKLOG") || r.contains("RING") => {
            "a queue was full: this node or its interface is overloaded"
        }
        _ => "see the kernel's enum skb_drop_reason for this reason",
    }
}

/// Exit status of `netobs doctor`: 1 when a finding needs acting on.
pub fn exit_code(h: &OverlayHealth) -> u8 {
    u8::from(h.findings.iter().any(|f| f.severity >= Severity::Warning))
}
