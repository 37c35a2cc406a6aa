//! The agent's JSON API: every type it serves, deriving both `Serialize`
//! and `Deserialize`, so the server and every client (`flows`, `top`,
//! `services`, `audit`) share one contract. A renamed field breaks the build
//! or a typed test, never a client's reading in silence.
//!
//! Every document is an object `{"api_version": N, "data": ...}`; a client
//! checks the version before reading the data, so an agent of another
//! version is named as such rather than misread.
mod cluster;
mod enums;
mod event;
mod flow;
mod health;
mod loss;
mod policy;
mod totals;

pub use cluster::{Answer, ClusterView, NodeAnswer};
pub use enums::{Encryption, NetworkStatus, PortSource, Severity};
pub use event::{EventKind, FlowEvent};
pub use flow::{tcp, Flow, FlowLabels, FlowList, LabelledFlow};
pub use health::{
    ChecksumHealth, DropHealth, DropTraffic, GossipHealth, HealthFinding, HealthKind,
    OverlayHealth, PairHealth, PeerHealth,
};
pub use loss::{FlowId, LossHealth, SettledFlow, SettledFlows};
pub use netobs_common::{Class, Direction};
pub use policy::Policy;
pub use totals::{
    Alert, AlertKind, AlertList, AlertRaised, ClassCounts, Count, DataPath, Health, HttpTotals,
    InterfaceCounts, RunReport, Summary, Totals,
};

use serde::{de::DeserializeOwned, Deserialize, Serialize};

pub use crate::inventory::Inventory;

/// Bumped on any change a client of the previous version would misread.
pub const VERSION: u32 = 1;

/// One document of the API: its version and its data. (Not flattened:
/// serde cannot read integer-keyed maps, the totals' VNIs, back through a
/// flattened struct.)
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Doc<T> {
    pub api_version: u32,
    pub data: T,
}

impl<T> Doc<T> {
    pub fn new(body: T) -> Doc<T> {
        Doc {
            api_version: VERSION,
            data: body,
        }
    }
}

/// An endpoint: where it is served and what it serves.
pub trait Endpoint {
    const PATH: &'static str;
    type Body: Serialize + DeserializeOwned;
}

macro_rules! endpoints {
    ($($(#[$doc:meta])* $name:ident $path:literal => $body:ty;)*) => {
        $($(#[$doc])* pub struct $name;
        impl Endpoint for $name {
            const PATH: &'static str = $path;
            type Body = $body;
        })*
        /// Every endpoint's path, for the server's "not found" answer.
        pub const PATHS: &[&str] = &[$($path),*];
    };
}

endpoints! {
    /// The busiest flows with their labels.
    FlowsEndpoint "/api/v1/flows" => FlowList;
    /// Networks, services, tasks and nodes as the engine tells them.
    InventoryEndpoint "/api/v1/inventory" => Inventory;
    /// The agent's active encryption alerts.
    AlertsEndpoint "/api/v1/alerts" => AlertList;
    /// Totals, the data-path port and the agent's requirement.
    SummaryEndpoint "/api/v1/summary" => Summary;
    /// Overlay health: the data path per peer, TCP per service pair.
    HealthEndpoint "/api/v1/health" => OverlayHealth;
    /// The encryption audit of the agent's node, judged when asked (the
    /// kernel's IPsec state read then).
    AuditEndpoint "/api/v1/audit" => crate::audit::Report;
    /// The VXLAN this node sent in flows that went quiet, for its peers'
    /// agents to measure loss (`?to=ADDR`: only what went to ADDR).
    SettledEndpoint "/api/v1/settled" => SettledFlows;
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn round_trip<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(v: T) {
        let text = serde_json::to_string(&Doc::new(&v)).expect("serializes");
        let back: Doc<T> = serde_json::from_str(&text).expect("reads back");
        assert_eq!(back.api_version, VERSION);
        assert_eq!(back.data, v, "{text}");
    }

    #[test]
    fn every_document_reads_back_as_written() {
        let mut totals = Totals {
            vnis: BTreeMap::from([(4097, 10), (4098, 5)]),
            flow_count: 3,
            ..Totals::default()
        };
        totals.classes.vxlan = Count {
            packets: 15,
            bytes: 1500,
        };
        totals.http.methods.insert("GET".into(), 2);
        round_trip(Summary {
            totals: totals.clone(),
            alerts: 1,
            docker_up: true,
            data_path: DataPath {
                ports: vec![7789],
                from: PortSource::Swarm,
            },
            require_encryption: "backend,secure".parse().expect("policy"),
        });
        round_trip(RunReport {
            last: true,
            docker_up: false,
            totals,
        });
        round_trip(AlertList {
            alerts: vec![Alert {
                kind: AlertKind::PlaintextOnEncryptedNetwork,
                severity: Severity::Critical,
                network: "secure".into(),
                vni: "4098".into(),
                peer_nodes: ["n2".to_owned()].into(),
                services: ["web".to_owned()].into(),
                first_seen: 1.5,
                last_seen: 2.5,
                packets: 7,
                bytes: 700,
            }],
        });
        let addr = |s: &str| s.parse::<std::net::IpAddr>().expect("address");
        round_trip(SettledFlows {
            uptime_secs: 12.5,
            evicted_secs_ago: Some(3.0),
            omitted: 1,
            flows: vec![SettledFlow {
                direction: Direction::Egress,
                outer_src: addr("192.0.2.1"),
                outer_dst: addr("192.0.2.2"),
                vni: 4097,
                inner_proto: 6,
                inner_src: addr("10.0.0.2"),
                inner_dst: addr("fd00::3"),
                inner_sport: 40000,
                inner_dport: 80,
                packets: 9,
                age_secs: 7.0,
                idle_secs: 4.0,
            }],
        });
        round_trip(OverlayHealth {
            loss: vec![LossHealth {
                peer: "n2".into(),
                addr: addr("192.0.2.2"),
                agent: "down".into(),
                checked: 100,
                lost: 3,
                recent_checked: 10,
                recent_lost: 1,
                unverified_flows: 2,
            }],
            ..OverlayHealth::default()
        });
    }

    /// A cluster view reads back as written, each answer tagged with its
    /// status word, the data of the flows (flattened) included.
    #[test]
    fn a_cluster_view_reads_back_with_each_status() {
        let answers: Vec<Answer<FlowList>> = vec![
            Answer::Ok {
                data: FlowList::default(),
            },
            Answer::Down { error: "d".into() },
            Answer::Slow { error: "s".into() },
            Answer::Refused { error: "r".into() },
            Answer::Incompatible { error: "i".into() },
            Answer::Failed { error: "f".into() },
        ];
        let view = ClusterView {
            nodes: answers
                .into_iter()
                .map(|answer| NodeAnswer {
                    node: "n".into(),
                    agent: "10.0.0.1:9477".into(),
                    answer,
                })
                .collect(),
        };
        let text = serde_json::to_string(&view).expect("serializes");
        for word in ["ok", "down", "slow", "refused", "incompatible", "failed"] {
            assert!(text.contains(&format!("\"status\":\"{word}\"")), "{text}");
        }
        let back: ClusterView<FlowList> = serde_json::from_str(&text).expect("reads back");
        let statuses: Vec<_> = back.nodes.iter().map(|n| n.answer.status()).collect();
        assert_eq!(
            statuses,
            ["ok", "down", "slow", "refused", "incompatible", "failed"]
        );
        assert_eq!(back.unanswered(), 5);
    }

    #[test]
    fn enums_travel_as_their_names() {
        let names = |v: serde_json::Value| v.to_string();
        assert_eq!(names(serde_json::json!(Class::Vxlan)), "\"vxlan\"");
        assert_eq!(names(serde_json::json!(Direction::Egress)), "\"egress\"");
        // The same word as the metrics' `encrypted` label.
        for e in [
            Encryption::Encrypted,
            Encryption::Plain,
            Encryption::Unknown,
        ] {
            assert_eq!(names(serde_json::json!(e)), format!("\"{}\"", e.label()));
        }
        for p in [
            PortSource::Flag,
            PortSource::Agent,
            PortSource::Swarm,
            PortSource::Default,
        ] {
            assert_eq!(names(serde_json::json!(p)), format!("\"{p}\""));
        }
        for s in [
            NetworkStatus::Protected,
            NetworkStatus::NotEncrypted,
            NetworkStatus::Broken,
            NetworkStatus::Unchecked,
        ] {
            assert_eq!(names(serde_json::json!(s)), format!("\"{s}\""));
        }
        assert_eq!(
            names(serde_json::json!(AlertKind::UnencryptedOverlay)),
            "\"unencrypted_overlay\""
        );
        assert_eq!(names(serde_json::json!(Policy::All)), "\"all\"");
    }
}
