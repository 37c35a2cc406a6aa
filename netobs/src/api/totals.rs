//! Totals, in the one shape that `run --json`, `replay --json` and
//! `/api/v1/summary` all serialize, and the agent's alerts.
use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::{Class, Policy, PortSource, Severity};

/// Packets and bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Count {
    pub packets: u64,
    pub bytes: u64,
}

impl std::ops::AddAssign for Count {
    fn add_assign(&mut self, o: Count) {
        self.packets += o.packets;
        self.bytes += o.bytes;
    }
}

/// Counts per class.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassCounts {
    pub other: Count,
    pub vxlan: Count,
    pub esp: Count,
    pub malformed: Count,
}

impl ClassCounts {
    pub fn get(&self, class: Class) -> Count {
        match class {
            Class::Other => self.other,
            Class::Vxlan => self.vxlan,
            Class::Esp => self.esp,
            Class::Malformed => self.malformed,
        }
    }

    pub fn get_mut(&mut self, class: Class) -> &mut Count {
        match class {
            Class::Other => &mut self.other,
            Class::Vxlan => &mut self.vxlan,
            Class::Esp => &mut self.esp,
            Class::Malformed => &mut self.malformed,
        }
    }

    pub fn total(&self) -> Count {
        let mut t = Count::default();
        for c in Class::ALL {
            t += self.get(c);
        }
        t
    }
}

impl std::ops::AddAssign for ClassCounts {
    fn add_assign(&mut self, o: ClassCounts) {
        for c in Class::ALL {
            *self.get_mut(c) += o.get(c);
        }
    }
}

/// Counts of one watched interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterfaceCounts {
    pub iface: String,
    pub ifindex: u32,
    pub ingress: ClassCounts,
    pub egress: ClassCounts,
}

/// Health of the datapath: losses are counted, never silent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    pub flows_created: u64,
    pub flow_insert_failed: u64,
    /// Entries the kernel's LRU table dropped to make room (a flow whose
    /// cache slot lives on comes back with the slot's counts).
    pub flow_evictions: u64,
    /// Flow-cache slots flushed into the shared table to make room for
    /// another flow.
    pub cache_flushes: u64,
    /// Packets counted straight into the shared table because the agent was
    /// reading when their slot was taken.
    pub cache_bypassed: u64,
    pub events_sent: u64,
    pub events_rate_limited: u64,
    pub events_ring_full: u64,
}

impl Health {
    pub fn events_dropped(&self) -> u64 {
        self.events_rate_limited + self.events_ring_full
    }
}

/// HTTP seen in clear, over every flow.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpTotals {
    pub requests: u64,
    pub responses: u64,
    /// Requests by method, methods seen only.
    pub methods: BTreeMap<String, u64>,
}

/// What every packet and flow counted adds up to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    /// Per watched interface and direction.
    pub interfaces: Vec<InterfaceCounts>,
    /// Every interface and direction together.
    pub classes: ClassCounts,
    /// Packets per VNI, from VXLAN flows.
    pub vnis: BTreeMap<u32, u64>,
    pub http: HttpTotals,
    /// Matches per `--pattern`, patterns seen only.
    pub patterns: BTreeMap<String, u64>,
    /// Flows in the table (and in cache slots only).
    pub flow_count: usize,
    pub health: Health,
}

/// The data-path port(s) the agent classifies as VXLAN.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataPath {
    pub ports: Vec<u16>,
    pub from: PortSource,
}

impl Default for DataPath {
    fn default() -> DataPath {
        DataPath {
            ports: Vec::new(),
            from: PortSource::Default,
        }
    }
}

/// `/api/v1/summary`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub totals: Totals,
    /// Active alerts.
    pub alerts: usize,
    pub docker_up: bool,
    pub data_path: DataPath,
    /// The agent's `--require-encryption`.
    pub require_encryption: Policy,
}

/// One line of `run --json`: the totals, once per interval and once at
/// exit (`final`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunReport {
    #[serde(rename = "final")]
    pub last: bool,
    pub docker_up: bool,
    pub totals: Totals,
}

/// What an alert is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// VXLAN in clear on a network created with `--opt encrypted`.
    PlaintextOnEncryptedNetwork,
    /// VXLAN in clear on a network `--require-encryption` covers.
    UnencryptedOverlay,
}

impl AlertKind {
    pub fn name(self) -> &'static str {
        match self {
            AlertKind::PlaintextOnEncryptedNetwork => "plaintext_on_encrypted_network",
            AlertKind::UnencryptedOverlay => "unencrypted_overlay",
        }
    }

    pub fn severity(self) -> Severity {
        match self {
            AlertKind::PlaintextOnEncryptedNetwork => Severity::Critical,
            AlertKind::UnencryptedOverlay => Severity::Warning,
        }
    }
}

impl std::fmt::Display for AlertKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// An encryption alert raised by the agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub kind: AlertKind,
    pub severity: Severity,
    pub network: String,
    pub vni: String,
    pub peer_nodes: BTreeSet<String>,
    pub services: BTreeSet<String>,
    /// Unix seconds.
    pub first_seen: f64,
    pub last_seen: f64,
    /// Plaintext counted since the alert was raised.
    pub packets: u64,
    pub bytes: u64,
}

/// The line `netobs run` logs on stderr when an alert is raised, and as a
/// reminder while it goes on: `{"alert": {...}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertRaised {
    pub alert: Alert,
}

/// `/api/v1/alerts`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AlertList {
    pub alerts: Vec<Alert>,
}
