//! The one model: raw kernel records turned into flows and totals that the
//! CLI prints and (later) the exporter serves. Inventory labels join here.
pub mod aggregate;
mod flow;
pub mod label;

pub use flow::{Clock, Flow, FlowKeyView};

use std::collections::BTreeMap;

use netobs_common::{
    counter_index, Class, Counter, Direction, FlowKey, FlowStats, HttpMethod, Stat, CLASS_COUNT,
    STAT_COUNT,
};
use serde::Serialize;

/// Packets and bytes of one class.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Count {
    pub packets: u64,
    pub bytes: u64,
}

impl From<Counter> for Count {
    fn from(c: Counter) -> Count {
        Count {
            packets: c.packets,
            bytes: c.bytes,
        }
    }
}

impl std::ops::AddAssign for Count {
    fn add_assign(&mut self, o: Count) {
        self.packets += o.packets;
        self.bytes += o.bytes;
    }
}

/// Per-class counts, in `Class` order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClassCounts(pub [Count; CLASS_COUNT]);

impl ClassCounts {
    pub fn get(&self, class: Class) -> Count {
        self.0[class as usize]
    }

    pub fn total(&self) -> Count {
        let mut t = Count::default();
        for c in self.0 {
            t += c;
        }
        t
    }
}

impl std::ops::AddAssign for ClassCounts {
    fn add_assign(&mut self, o: ClassCounts) {
        for (a, b) in self.0.iter_mut().zip(o.0) {
            *a += b;
        }
    }
}

impl Serialize for ClassCounts {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(CLASS_COUNT))?;
        for class in Class::ALL {
            m.serialize_entry(class.name(), &self.get(class))?;
        }
        m.end()
    }
}

/// Counts of one watched interface.
#[derive(Debug, Clone, Serialize)]
pub struct InterfaceCounts {
    pub iface: String,
    pub ifindex: u32,
    pub ingress: ClassCounts,
    pub egress: ClassCounts,
}

/// Health of the datapath: losses are counted, never silent.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Health {
    pub flows_created: u64,
    pub flow_insert_failed: u64,
    /// Flows the kernel's LRU table dropped to make room.
    pub flow_evictions: u64,
    pub events_sent: u64,
    pub events_rate_limited: u64,
    pub events_ring_full: u64,
}

impl Health {
    /// `live_flows` entries are in the table now; created ones not there
    /// were evicted (the agent never deletes entries itself).
    pub fn from_stats(stats: &[u64; STAT_COUNT], live_flows: usize) -> Health {
        let created = stats[Stat::FlowsCreated as usize];
        Health {
            flows_created: created,
            flow_insert_failed: stats[Stat::FlowInsertFailed as usize],
            flow_evictions: created.saturating_sub(live_flows as u64),
            events_sent: stats[Stat::EventsSent as usize],
            events_rate_limited: stats[Stat::EventsRateLimited as usize],
            events_ring_full: stats[Stat::EventsRingFull as usize],
        }
    }

    pub fn events_dropped(&self) -> u64 {
        self.events_rate_limited + self.events_ring_full
    }
}

/// Everything the datapath knows at one moment.
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    pub interfaces: Vec<InterfaceCounts>,
    pub flows: Vec<Flow>,
    pub health: Health,
}

impl Snapshot {
    /// Builds a snapshot from raw map contents. `ifaces` maps counter slots
    /// to interface names and indexes.
    pub fn build(
        counters: &[Counter],
        ifaces: &[(u32, String, u32)],
        raw_flows: Vec<(FlowKey, FlowStats)>,
        stats: &[u64; STAT_COUNT],
        patterns: &[String],
        clock: Clock,
    ) -> Snapshot {
        let class_counts = |slot: u32, dir: Direction| {
            let mut cc = ClassCounts::default();
            for class in Class::ALL {
                if let Some(c) = counters.get(counter_index(slot, dir, class) as usize) {
                    cc.0[class as usize] = (*c).into();
                }
            }
            cc
        };
        let interfaces = ifaces
            .iter()
            .map(|(slot, name, ifindex)| InterfaceCounts {
                iface: name.clone(),
                ifindex: *ifindex,
                ingress: class_counts(*slot, Direction::Ingress),
                egress: class_counts(*slot, Direction::Egress),
            })
            .collect();
        let live = raw_flows.len();
        let mut flows: Vec<Flow> = raw_flows
            .into_iter()
            .map(|(k, v)| Flow::from_raw(&k, &v, patterns, clock))
            .collect();
        flows.sort_by(|a, b| {
            b.bytes
                .cmp(&a.bytes)
                .then_with(|| a.sort_key().cmp(&b.sort_key()))
        });
        Snapshot {
            interfaces,
            flows,
            health: Health::from_stats(stats, live),
        }
    }

    /// Per-class counts over every interface and both directions.
    pub fn classes(&self) -> ClassCounts {
        let mut t = ClassCounts::default();
        for i in &self.interfaces {
            t += i.ingress;
            t += i.egress;
        }
        t
    }

    /// Packets per VNI, from VXLAN flows.
    pub fn vnis(&self) -> BTreeMap<u32, u64> {
        let mut m = BTreeMap::new();
        for f in &self.flows {
            if let Some(vni) = f.vni {
                *m.entry(vni).or_insert(0) += f.packets;
            }
        }
        m
    }

    pub fn http_requests(&self) -> u64 {
        self.flows
            .iter()
            .map(|f| f.http_requests.values().sum::<u64>())
            .sum()
    }

    pub fn http_responses(&self) -> u64 {
        self.flows
            .iter()
            .map(|f| f.http_responses.values().sum::<u64>())
            .sum()
    }

    pub fn http_by_method(&self) -> BTreeMap<&'static str, u64> {
        let mut m = BTreeMap::new();
        for f in &self.flows {
            for (k, v) in &f.http_requests {
                *m.entry(*k).or_insert(0) += v;
            }
        }
        m
    }

    pub fn pattern_hits(&self) -> BTreeMap<String, u64> {
        let mut m = BTreeMap::new();
        for f in &self.flows {
            for (k, v) in &f.pattern_hits {
                *m.entry(k.clone()).or_insert(0) += v;
            }
        }
        m
    }
}

/// Method name for an event or a flow slot.
pub fn method_name(v: u8) -> &'static str {
    HttpMethod::from_u8(v).map_or("?", HttpMethod::name)
}
