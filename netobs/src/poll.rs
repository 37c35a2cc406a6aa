//! One read of the kernel's maps, once a second: the flow table is streamed
//! a batch at a time through growth tracking, labelling and the snapshot
//! builder, so the agent's memory does not scale with a copy of the table.
//! The read is handed on as it is: `export` turns it into metrics, alerts
//! and the API's documents.
//!
//! Flows are grouped by their labels before anything else sees them: a
//! million flows between a handful of services make a handful of groups.
use std::{
    collections::{hash_map::Entry, BTreeMap, HashMap},
    net::IpAddr,
};

use anyhow::Result;
use netobs_common::{Class, Direction, FlowKey};

use crate::{
    datapath::Datapath,
    flows::{
        addr,
        aggregate::{Aggregator, Growth},
        label::{FlowLabels, LabelRefs, Labeler, OTHER},
        Clock, Snapshot, SnapshotBuilder,
    },
    inventory::Inventory,
    underlay::{Tracker, Underlay},
};

/// Flows the API and the printed table show: the busiest since the last
/// read, then the largest. Metrics and totals cover every flow.
pub const SHOWN_FLOWS: usize = 1000;

/// An interface being watched: counter slot, name, index.
pub type Iface = (u32, String, u32);

/// Flows that share every label of every metric they feed.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct GroupKey<'a> {
    labels: LabelRefs<'a>,
    class: u8,
    direction: u8,
    /// For `netobs_vxlan_from_unknown_peer_packets_total{iface}`.
    ifindex: u32,
}

/// What the flows of one group add up to in one read.
pub struct Group {
    pub labels: FlowLabels,
    pub class: Class,
    pub direction: Direction,
    pub ifindex: u32,
    /// Packets in the table now (for the printed summary).
    pub packets: u64,
    pub growth: Growth,
}

/// The groups of one read, at most `limit` of them: past it (a flood of
/// outer addresses that are no node) every new group folds into one whose
/// labels are all `other`, as metric series fold.
struct Groups<'a> {
    index: HashMap<GroupKey<'a>, usize>,
    list: Vec<Group>,
    limit: usize,
    folded: Option<usize>,
}

impl<'a> Groups<'a> {
    fn slot(&mut self, key: GroupKey<'a>) -> usize {
        if let Some(&i) = self.index.get(&key) {
            return i;
        }
        let class = Class::from_u8(key.class).unwrap_or(Class::Other);
        let direction = Direction::from_u8(key.direction).unwrap_or(Direction::Ingress);
        let new = |labels| Group {
            labels,
            class,
            direction,
            ifindex: key.ifindex,
            packets: 0,
            growth: Growth::default(),
        };
        if self.index.len() >= self.limit {
            if let Some(i) = self.folded {
                return i;
            }
            let other = FlowLabels {
                network: OTHER.into(),
                vni: OTHER.into(),
                encrypted: key.labels.encrypted,
                peer_node: OTHER.into(),
                src_service: OTHER.into(),
                dst_service: OTHER.into(),
                peer_known: true,
            };
            self.list.push(new(other));
            self.folded = Some(self.list.len() - 1);
            return self.list.len() - 1;
        }
        self.list.push(new(key.labels.to_owned()));
        let i = self.list.len() - 1;
        match self.index.entry(key) {
            Entry::Vacant(v) => {
                v.insert(i);
            }
            Entry::Occupied(_) => unreachable!("looked up above"),
        }
        i
    }
}

/// VXLAN with one peer node (an outer address) in one read.
#[derive(Debug, Clone, Default)]
pub struct PeerGrowth {
    pub name: String,
    pub packets_out: u64,
    pub packets_in: u64,
    pub connect_failures: u64,
}

/// VXLAN for a task sent to another node than the one running it.
#[derive(Debug, Clone)]
pub struct Misdirected {
    pub network: String,
    /// The task's name, else its service's, else its address.
    pub task: String,
    pub task_node: IpAddr,
    pub task_node_name: String,
    pub sent_to: IpAddr,
    pub sent_to_name: String,
    pub packets: u64,
}

/// Peers and misdirections kept apart in one read: past these (a flood of
/// outer addresses that are no node) the rest is not tracked.
const MAX_PEERS: usize = 256;
const MAX_MISDIRECTED: usize = 256;

/// What one read produced.
pub struct Read {
    pub snapshot: Snapshot,
    /// The labels of `snapshot.flows`, in the same order.
    pub labels: Vec<FlowLabels>,
    pub groups: Vec<Group>,
    /// Growth of each per-interface counter since the last read, indexed
    /// like the counters map.
    pub counter_growth: Vec<netobs_common::Counter>,
    /// VXLAN per peer address, this read's growth.
    pub peers: HashMap<IpAddr, PeerGrowth>,
    /// Misdirected VXLAN of this read, by network, task address and the
    /// node it was sent to.
    pub misdirected: Vec<Misdirected>,
    /// Gossip and the kernel's drops per peer, this read's growth.
    pub underlay: Underlay,
    /// VXLAN flows gone quiet: what loss between nodes is measured on.
    pub settled: crate::loss::Collector,
}

/// The agent's state between reads: each flow as last read.
pub struct Poller {
    agg: Aggregator,
    max_groups: usize,
    underlay: Tracker,
}

impl Poller {
    /// `max_groups`: label groups kept apart in one read (the metrics'
    /// series limit); past it groups fold into `other`.
    pub fn new(max_groups: usize) -> Poller {
        Poller {
            agg: Aggregator::default(),
            max_groups,
            underlay: Tracker::default(),
        }
    }

    /// Flows whose growth is tracked between reads.
    pub fn tracked_flows(&self) -> usize {
        self.agg.len()
    }

    /// One read of the maps: the snapshot, the flows grouped by label with
    /// their growth, and the counters' growth.
    pub fn poll(&mut self, dp: &Datapath, ifaces: &[Iface], inv: &Inventory) -> Result<Read> {
        let counters = dp.counters()?;
        let clock = Clock::monotonic_now();
        let patterns = dp.patterns();
        let labeler = Labeler::new(inv);
        let mut builder = SnapshotBuilder::new(SHOWN_FLOWS, patterns, clock);
        let mut groups = Groups {
            index: HashMap::new(),
            list: Vec::new(),
            limit: self.max_groups,
            folded: None,
        };
        let agg = &mut self.agg;
        let now_ns = crate::time::monotonic_ns();
        let mut peers: HashMap<IpAddr, PeerGrowth> = HashMap::new();
        let mut misdirected: HashMap<(u32, IpAddr, IpAddr), Misdirected> = HashMap::new();
        let mut settled = crate::loss::Collector::default();
        let read = dp.for_each_flow_batch(|keys, values| {
            agg.growth_batch(keys, values, now_ns, |k, v, g| {
                settled.offer(k, v, now_ns);
                if k.class == Class::Vxlan as u8 && !g.is_zero() {
                    peer_growth(k, &g, &labeler, &mut peers, &mut misdirected);
                }
                builder.add(k, v, g.bytes);
                let i = groups.slot(GroupKey {
                    labels: labeler.label_key(k),
                    class: k.class,
                    direction: k.direction,
                    ifindex: k.ifindex,
                });
                let group = &mut groups.list[i];
                group.packets += v.packets;
                if !g.is_zero() {
                    group.growth += &g;
                }
            })
        })?;
        agg.end_read();
        // Read after the table, so that every flow created before the walk
        // is counted as created and a flow inserted during it cannot look
        // evicted.
        let stats = dp.stats()?;
        let underlay = self.underlay.read(dp, &labeler)?;
        let snapshot = builder.finish(&counters, ifaces, &stats, read.table_entries);
        let labels = snapshot.flows.iter().map(|f| labeler.label(f)).collect();
        Ok(Read {
            underlay,
            settled,
            peers,
            misdirected: misdirected.into_values().collect(),
            counter_growth: self.agg.counters(&counters),
            snapshot,
            labels,
            groups: groups.list,
        })
    }
}

/// Adds one VXLAN flow's growth to its peer's, and, sent to a node that
/// does not run the task it is for, to the misdirections.
fn peer_growth(
    k: &FlowKey,
    g: &Growth,
    labeler: &Labeler,
    peers: &mut HashMap<IpAddr, PeerGrowth>,
    misdirected: &mut HashMap<(u32, IpAddr, IpAddr), Misdirected>,
) {
    let egress = k.direction == Direction::Egress as u8;
    let outer = if egress { &k.outer_dst } else { &k.outer_src };
    let Some(peer) = addr(k.outer_family, outer) else {
        return;
    };
    if peers.len() < MAX_PEERS || peers.contains_key(&peer) {
        let p = peers.entry(peer).or_insert_with(|| PeerGrowth {
            name: labeler.node_name(peer),
            ..PeerGrowth::default()
        });
        if egress {
            p.packets_out += g.packets;
        } else {
            p.packets_in += g.packets;
        }
        p.connect_failures += g.tcp_connect_failures;
    }
    if !egress || g.packets == 0 {
        return;
    }
    let Some(inner) = addr(k.inner_family, &k.inner_dst) else {
        return;
    };
    let Some((net, e)) = labeler.endpoint(k.vni_or_spi, inner) else {
        return;
    };
    let Some(host) = e.node_ip.filter(|h| *h != peer) else {
        return;
    };
    let key = (k.vni_or_spi, inner, peer);
    if misdirected.len() >= MAX_MISDIRECTED && !misdirected.contains_key(&key) {
        return;
    }
    misdirected
        .entry(key)
        .or_insert_with(|| Misdirected {
            network: net.name.clone(),
            task: e
                .task
                .clone()
                .or_else(|| e.label().map(str::to_owned))
                .unwrap_or_else(|| inner.to_string()),
            task_node: host,
            task_node_name: labeler.node_name(host),
            sent_to: peer,
            sent_to_name: labeler.node_name(peer),
            packets: 0,
        })
        .packets += g.packets;
}

/// Table packets per (network, source, destination, class): the agent's
/// printed summary. ESP belongs to a node pair, not to a network.
pub fn summary(groups: &[Group]) -> BTreeMap<(String, String, String, &'static str), u64> {
    let mut by = BTreeMap::new();
    for g in groups {
        let l = &g.labels;
        let key = if g.class == Class::Esp {
            (
                "-".to_owned(),
                g.direction.name().to_owned(),
                format!("peer {}", l.peer_node),
                g.class.name(),
            )
        } else {
            (
                l.network.clone(),
                l.src_service.clone(),
                l.dst_service.clone(),
                g.class.name(),
            )
        };
        *by.entry(key).or_insert(0) += g.packets;
    }
    by
}
