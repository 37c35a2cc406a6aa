//! Encryption alerts raised by the agent itself: plaintext VXLAN on a
//! network marked encrypted (always), and plaintext VXLAN on a network the
//! `--require-encryption` policy covers. One structured line when an alert is
//! raised and a reminder every `REMIND` while it goes on, never one per
//! packet; `/api/v1/alerts` lists them all.
use std::collections::{BTreeMap, BTreeSet};

use crate::{
    api::Encryption,
    flows::{aggregate::Growth, label::FlowLabels},
};

const REMIND_SECS: f64 = 600.0;

pub use crate::api::{Alert, AlertKind, Policy};

/// An active alert, and when it was last logged.
#[derive(Debug)]
struct Active {
    alert: Alert,
    last_logged: f64,
}

#[derive(Debug, Default)]
pub struct Alerts {
    policy: Policy,
    active: BTreeMap<(AlertKind, String), Active>,
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
        let kind = if l.encrypted == Encryption::Encrypted {
            AlertKind::PlaintextOnEncryptedNetwork
        } else if self.policy.requires(&l.network) {
            AlertKind::UnencryptedOverlay
        } else {
            return Vec::new();
        };
        let a = self
            .active
            .entry((kind, l.network.clone()))
            .or_insert_with(|| Active {
                alert: Alert {
                    kind,
                    severity: kind.severity(),
                    network: l.network.clone(),
                    vni: l.vni.clone(),
                    peer_nodes: BTreeSet::new(),
                    services: BTreeSet::new(),
                    first_seen: now,
                    last_seen: now,
                    packets: 0,
                    bytes: 0,
                },
                last_logged: f64::NEG_INFINITY,
            });
        let alert = &mut a.alert;
        alert.peer_nodes.insert(l.peer_node.clone());
        for s in [&l.src_service, &l.dst_service] {
            if !s.is_empty() {
                alert.services.insert(s.clone());
            }
        }
        alert.last_seen = now;
        alert.packets += g.packets;
        alert.bytes += g.bytes;
        if now - a.last_logged >= REMIND_SECS {
            a.last_logged = now;
            return vec![a.alert.clone()];
        }
        Vec::new()
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    pub fn list(&self) -> Vec<Alert> {
        self.active.values().map(|a| a.alert.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(network: &str, encrypted: Encryption) -> FlowLabels {
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
        assert_eq!(
            a.observe(&labels("secure", Encryption::Encrypted), &g, 0.0)
                .len(),
            1
        );
        assert!(a
            .observe(&labels("secure", Encryption::Encrypted), &g, 1.0)
            .is_empty());
        assert_eq!(
            a.observe(
                &labels("secure", Encryption::Encrypted),
                &g,
                1.0 + REMIND_SECS
            )
            .len(),
            1,
            "a reminder"
        );
        assert!(
            a.observe(&labels("open", Encryption::Plain), &g, 2.0)
                .is_empty(),
            "no policy, no alert"
        );
        let list = a.list();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].packets, 15);
        assert_eq!(list[0].kind, AlertKind::PlaintextOnEncryptedNetwork);
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
            a.observe(&labels("backend", Encryption::Plain), &g, 0.0)[0].kind,
            AlertKind::UnencryptedOverlay
        );
        assert!(a
            .observe(&labels("metrics", Encryption::Plain), &g, 0.0)
            .is_empty());
        assert_eq!("all".parse::<Policy>(), Ok(Policy::All));
        assert!(",".parse::<Policy>().is_err());
    }
}
