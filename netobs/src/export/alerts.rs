//! Encryption alerts raised by the agent itself: plaintext VXLAN on a
//! network marked encrypted (always), and plaintext VXLAN on a network the
//! `--require-encryption` policy covers. One structured line when an alert is
//! raised and a reminder every `REMIND` while it goes on, never one per
//! packet; `/api/v1/alerts` lists them all.
use std::{
    collections::{BTreeMap, BTreeSet, HashSet},
    str::FromStr,
};

use serde::Serialize;

use crate::flows::{aggregate::Growth, label::FlowLabels};

const REMIND_SECS: f64 = 600.0;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Policy {
    /// No requirement beyond what networks promise themselves.
    #[default]
    None,
    /// Every overlay network must be encrypted.
    All,
    /// These networks must be.
    Networks(HashSet<String>),
}

impl FromStr for Policy {
    type Err = String;
    fn from_str(s: &str) -> Result<Policy, String> {
        match s.trim() {
            "" => Ok(Policy::None),
            "all" => Ok(Policy::All),
            list => {
                let nets: HashSet<String> = list
                    .split(',')
                    .map(|n| n.trim().to_owned())
                    .filter(|n| !n.is_empty())
                    .collect();
                if nets.is_empty() {
                    return Err("give `all` or a comma-separated list of network names".into());
                }
                Ok(Policy::Networks(nets))
            }
        }
    }
}

impl std::fmt::Display for Policy {
    /// As `--require-encryption` takes it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Policy::None => Ok(()),
            Policy::All => f.write_str("all"),
            Policy::Networks(n) => {
                let mut names: Vec<&str> = n.iter().map(String::as_str).collect();
                names.sort_unstable();
                f.write_str(&names.join(","))
            }
        }
    }
}

impl Policy {
    pub fn requires(&self, network: &str) -> bool {
        match self {
            Policy::None => false,
            Policy::All => true,
            Policy::Networks(n) => n.contains(network),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Alert {
    pub kind: &'static str,
    pub severity: &'static str,
    pub network: String,
    pub vni: String,
    pub peer_nodes: BTreeSet<String>,
    pub services: BTreeSet<String>,
    pub first_seen: f64,
    pub last_seen: f64,
    pub packets: u64,
    pub bytes: u64,
    #[serde(skip)]
    last_logged: f64,
}

pub const PLAINTEXT_ON_ENCRYPTED: &str = "plaintext_on_encrypted_network";
pub const UNENCRYPTED_OVERLAY: &str = "unencrypted_overlay";

#[derive(Debug, Default)]
pub struct Alerts {
    policy: Policy,
    active: BTreeMap<(&'static str, String), Alert>,
}

impl Alerts {
    pub fn new(policy: Policy) -> Alerts {
        Alerts {
            policy,
            active: BTreeMap::new(),
        }
    }

    /// Takes in one plaintext VXLAN flow's growth; returns the alerts that
    /// should be logged now (newly raised, or due a reminder).
    pub fn observe(&mut self, l: &FlowLabels, g: &Growth, now: f64) -> Vec<Alert> {
        let mut out = Vec::new();
        let mut kinds = Vec::new();
        if l.encrypted == "true" {
            kinds.push((PLAINTEXT_ON_ENCRYPTED, "critical"));
        } else if self.policy.requires(&l.network) {
            kinds.push((UNENCRYPTED_OVERLAY, "warning"));
        }
        for (kind, severity) in kinds {
            let a = self
                .active
                .entry((kind, l.network.clone()))
                .or_insert_with(|| Alert {
                    kind,
                    severity,
                    network: l.network.clone(),
                    vni: l.vni.clone(),
                    peer_nodes: BTreeSet::new(),
                    services: BTreeSet::new(),
                    first_seen: now,
                    last_seen: now,
                    packets: 0,
                    bytes: 0,
                    last_logged: f64::NEG_INFINITY,
                });
            a.peer_nodes.insert(l.peer_node.clone());
            for s in [&l.src_service, &l.dst_service] {
                if !s.is_empty() {
                    a.services.insert(s.clone());
                }
            }
            a.last_seen = now;
            a.packets += g.packets;
            a.bytes += g.bytes;
            if now - a.last_logged >= REMIND_SECS {
                a.last_logged = now;
                out.push(a.clone());
            }
        }
        out
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    pub fn list(&self) -> Vec<Alert> {
        self.active.values().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(network: &str, encrypted: &'static str) -> FlowLabels {
        FlowLabels {
            network: network.into(),
            vni: "4097".into(),
            encrypted,
            peer_node: "n2".into(),
            src_service: "client".into(),
            dst_service: "web".into(),
            peer_known: true,
        }
    }

    #[test]
    fn one_line_per_alert_not_per_packet() {
        let mut a = Alerts::new(Policy::None);
        let g = Growth {
            packets: 5,
            bytes: 500,
            ..Growth::default()
        };
        assert_eq!(a.observe(&labels("secure", "true"), &g, 0.0).len(), 1);
        assert!(a.observe(&labels("secure", "true"), &g, 1.0).is_empty());
        assert_eq!(
            a.observe(&labels("secure", "true"), &g, 1.0 + REMIND_SECS)
                .len(),
            1,
            "a reminder"
        );
        assert!(
            a.observe(&labels("open", "false"), &g, 2.0).is_empty(),
            "no policy, no alert"
        );
        let list = a.list();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].packets, 15);
        assert_eq!(list[0].kind, PLAINTEXT_ON_ENCRYPTED);
    }

    #[test]
    fn policy_names_networks() {
        let p: Policy = "backend, frontend".parse().expect("policy");
        let mut a = Alerts::new(p);
        let g = Growth {
            packets: 1,
            ..Growth::default()
        };
        assert_eq!(
            a.observe(&labels("backend", "false"), &g, 0.0)[0].kind,
            UNENCRYPTED_OVERLAY
        );
        assert!(a.observe(&labels("metrics", "false"), &g, 0.0).is_empty());
        assert_eq!("all".parse::<Policy>(), Ok(Policy::All));
        assert!(",".parse::<Policy>().is_err());
    }
}
