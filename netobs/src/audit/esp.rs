//! What the wire shows of ESP, per peer node and SPI: traffic each way, the
//! sequence number's rate and its wrap, and whether SPIs change as key
//! rotation should make them. Only ESP with swarm nodes counts: a site VPN
//! on the same host is not Docker's business.
use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
};

use serde::{Deserialize, Serialize};

use crate::api::{Class, Direction, Flow, LabelledFlow};

use super::{
    finding::{Finding, ESP_ONE_WAY, ESP_SEQUENCE_WRAP, ESP_SPI_NOT_ROTATED},
    Inputs, KEY_ROTATION_SECS, ROTATION_SLACK_SECS,
};

/// An ESP flow seen this recently is still in use.
pub const ACTIVE_SECS: f64 = 60.0;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EspPeer {
    pub peer: String,
    pub packets_out: u64,
    pub packets_in: u64,
    /// The last ESP each way (Unix seconds).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_out: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_in: Option<f64>,
    /// ESP carried in UDP 4500 (NAT-T) rather than as IP protocol 50.
    pub in_udp: bool,
    /// Per SPI seen: highest sequence number and its growth per second
    /// between the two reads.
    pub spis: Vec<EspSpi>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EspSpi {
    pub spi: String,
    pub direction: Direction,
    pub seq: u64,
    pub seq_per_sec: f64,
    /// Since the agent first saw this SPI (a lower bound of its age).
    pub age_secs: f64,
    /// Seconds until the 32-bit sequence number wraps at this rate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wraps_in_secs: Option<f64>,
    /// Seen in the last minute.
    pub active: bool,
}

/// The address at the other end of a flow.
fn far_end(f: &Flow) -> Option<IpAddr> {
    match f.direction {
        Direction::Egress => f.outer_dst,
        Direction::Ingress => f.outer_src,
    }
    .map(|ip| ip.to_canonical())
}

pub fn peers(i: &Inputs, findings: &mut Vec<Finding>) -> Vec<EspPeer> {
    let nodes: BTreeSet<IpAddr> = i.inv.node_addresses().collect();
    let swarm_esp = |f: &&LabelledFlow| {
        f.flow.class == Class::Esp && far_end(&f.flow).is_some_and(|a| nodes.contains(&a))
    };
    // The sequence number and the time of the last packet, one read
    // earlier: the rate between two packets' own times does not depend on
    // how often the agent refreshes its flows.
    let before = |spi: Option<u32>, dir: Direction| {
        i.flows_before
            .iter()
            .map(|f| &f.flow)
            .filter(|f| f.class == Class::Esp && f.spi == spi && f.direction == dir)
            .map(|f| (u64::from(f.esp_seq.unwrap_or(0)), f.last_seen))
            .max_by_key(|(seq, _)| *seq)
    };
    let mut by: BTreeMap<String, EspPeer> = BTreeMap::new();
    for lf in i.flows.iter().filter(swarm_esp) {
        let f = &lf.flow;
        let peer = lf.labels.peer_node.clone();
        let e = by.entry(peer.clone()).or_insert_with(|| EspPeer {
            peer,
            packets_out: 0,
            packets_in: 0,
            last_out: None,
            last_in: None,
            in_udp: false,
            spis: Vec::new(),
        });
        let egress = f.direction == Direction::Egress;
        let last = f.last_seen;
        let (packets, latest) = if egress {
            (&mut e.packets_out, &mut e.last_out)
        } else {
            (&mut e.packets_in, &mut e.last_in)
        };
        *packets += f.packets;
        *latest = Some(latest.map_or(last, |a| a.max(last)));
        e.in_udp |= egress && f.esp_in_udp == Some(true);
        let seq = u64::from(f.esp_seq.unwrap_or(0));
        let rate = match before(f.spi, f.direction) {
            Some((b, then)) if seq > b => {
                let dt = if last > then { last - then } else { i.dt };
                if dt > 0.0 {
                    (seq - b) as f64 / dt
                } else {
                    0.0
                }
            }
            _ => 0.0,
        };
        let wraps = (rate > 0.0)
            .then(|| (u64::from(u32::MAX) - seq.min(u64::from(u32::MAX))) as f64 / rate);
        let spi = format!("{:#010x}", f.spi.unwrap_or(0));
        let age = (i.now - f.first_seen).max(0.0);
        // The SA is replaced at the next rotation: a wrap after that is no
        // harm.
        let until_rotation = (KEY_ROTATION_SECS - age).max(0.0);
        if let Some(w) = wraps.filter(|w| *w < until_rotation) {
            findings.push(Finding::new(
                &ESP_SEQUENCE_WRAP,
                None,
                Some(&e.peer),
                format!(
                    "SPI {spi} ({}) wraps its 32-bit sequence number in {:.1} h, before the next \
                     key rotation (in at most {:.1} h): the pair's traffic stops then",
                    f.direction,
                    w / 3600.0,
                    until_rotation / 3600.0
                ),
            ));
        }
        e.spis.push(EspSpi {
            spi,
            direction: f.direction,
            seq,
            seq_per_sec: rate,
            age_secs: age,
            wraps_in_secs: wraps,
            active: i.now - f.last_seen < ACTIVE_SECS,
        });
    }
    for e in by.values() {
        rotation(e, findings);
        one_way(e, i.now, findings);
    }
    by.into_values().collect()
}

/// Each rotation brings a new SPI each way; the newest one in use should
/// be younger than the rotation interval.
fn rotation(e: &EspPeer, findings: &mut Vec<Finding>) {
    for dir in [Direction::Egress, Direction::Ingress] {
        let newest = e
            .spis
            .iter()
            .filter(|s| s.direction == dir && s.active)
            .min_by(|a, b| a.age_secs.total_cmp(&b.age_secs));
        if let Some(s) = newest.filter(|s| s.age_secs > KEY_ROTATION_SECS + ROTATION_SLACK_SECS) {
            findings.push(Finding::new(
                &ESP_SPI_NOT_ROTATED,
                None,
                Some(&e.peer),
                format!(
                    "{dir} ESP with {} has used SPI {} for {:.1} h: Docker rotates keys every \
                     12 h and each rotation brings a new SPI, so rotation has stopped",
                    e.peer,
                    s.spi,
                    s.age_secs / 3600.0
                ),
            ));
        }
    }
}

/// One way now, not over the agent's lifetime: a firewall rule added
/// after hours of good traffic must show too.
fn one_way(e: &EspPeer, now: f64, findings: &mut Vec<Finding>) {
    let out_active = e.last_out.is_some_and(|t| now - t < ACTIVE_SECS);
    let back_lately = match (e.last_out, e.last_in) {
        (Some(o), Some(n)) => o - n < ACTIVE_SECS,
        _ => false,
    };
    if !out_active || back_lately {
        return;
    }
    findings.push(Finding::new(
        &ESP_ONE_WAY,
        None,
        Some(&e.peer),
        format!(
            "ESP leaves for {} ({} packets) but none {}: something between the nodes drops {} \
             and the encrypted networks do not work (unless all traffic to it is one-way UDP)",
            e.peer,
            e.packets_out,
            if e.packets_in == 0 {
                "comes back".to_owned()
            } else {
                format!("has come back for over {ACTIVE_SECS:.0} s")
            },
            if e.in_udp {
                "UDP port 4500"
            } else {
                "IP protocol 50"
            }
        ),
    ));
}
