//! `netobs audit`: is each overlay network's traffic really protected? What
//! Docker says (the network's options), what the kernel holds (IPsec
//! policies and states per peer node), and what the wire shows (the agent's
//! flows: plaintext VXLAN, ESP each way, ESP sequence numbers) in one report.
pub mod finding;
pub mod xfrm;

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
};

use serde::Serialize;
use serde_json::Value;

use crate::{
    export::alerts,
    inventory::{Inventory, Network, ENCRYPTED_OPTION},
};
use finding::*;
pub use finding::{Finding, Severity};
use netobs_common::DEFAULT_DATA_PATH_PORT;
use xfrm::Xfrm;

/// Docker rotates the swarm's IPsec keys every 12 hours.
pub const KEY_ROTATION_SECS: f64 = 12.0 * 3600.0;
/// How late a rotation may be before it counts as missed: the manager
/// distributes new keys to every node, which takes a moment.
const ROTATION_SLACK_SECS: f64 = 3600.0;
/// An ESP flow seen this recently is still in use.
const ACTIVE_SECS: f64 = 60.0;
const IPPROTO_UDP: u8 = 17;
const IPPROTO_ESP: u8 = 50;

#[derive(Debug, Clone, Serialize)]
pub struct PeerCheck {
    pub peer: String,
    pub ip: IpAddr,
    /// An outbound IPsec policy for the data-path port to this peer.
    pub policy: bool,
    /// The port that policy covers, when it covers another one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy_port: Option<u16>,
    pub state_out: bool,
    pub state_in: bool,
    /// Age of the newest outbound SA to this peer: below 12 hours while
    /// key rotation works.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub newest_sa_age_secs: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct NetworkReport {
    pub name: String,
    pub vnis: Vec<u32>,
    pub encrypted: bool,
    pub ingress: bool,
    /// `protected`, `not_encrypted`, `broken` (encryption promised, not
    /// delivered) or `unchecked` (encrypted, but the kernel's IPsec state
    /// could not be read).
    pub status: &'static str,
    pub peers: Vec<PeerCheck>,
    pub plaintext_packets: u64,
    pub plaintext_services: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct EspPeer {
    pub peer: String,
    pub packets_out: u64,
    pub packets_in: u64,
    /// The last ESP each way (Unix seconds).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_out: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_in: Option<f64>,
    /// Per SPI seen: highest sequence number and its growth per second
    /// between the two reads.
    pub spis: Vec<EspSpi>,
}

#[derive(Debug, Clone, Serialize)]
pub struct EspSpi {
    pub spi: String,
    pub direction: String,
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

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub data_path_port: u16,
    /// `flag` (this command's), `agent` (the agent's --data-path-port),
    /// `swarm` or `default`.
    pub data_path_port_from: &'static str,
    pub networks: Vec<NetworkReport>,
    pub esp: Vec<EspPeer>,
    pub findings: Vec<Finding>,
}

impl Report {
    /// 0: everything protected as required; 1: findings.
    pub fn exit_code(&self) -> u8 {
        u8::from(
            self.findings
                .iter()
                .any(|f| f.severity >= Severity::Warning),
        )
    }
}

/// What went into a report.
pub struct Inputs<'a> {
    pub inv: &'a Inventory,
    /// The agent's flows now, and one read earlier (`dt` seconds before).
    pub flows: &'a [Value],
    pub flows_before: &'a [Value],
    /// The agent's active alerts (`/api/v1/alerts`).
    pub alerts: &'a [Value],
    pub dt: f64,
    /// The kernel's IPsec view, or why it could not be read.
    pub xfrm: Result<&'a Xfrm, String>,
    /// `netobs audit --data-path-port`, if given.
    pub data_path_port: Option<u16>,
    /// The port the agent classifies as VXLAN and where it came from
    /// (`flag`, `swarm`, `default`), if the agent says.
    pub agent_data_path: Option<(u16, String)>,
    /// Unix seconds, for the age of SAs and SPIs.
    pub now: f64,
}

/// An option Docker ignores that was meant to be `encrypted`.
fn mistyped_encrypted(key: &str) -> bool {
    if key == ENCRYPTED_OPTION {
        return false;
    }
    let k = key.to_ascii_lowercase();
    k == ENCRYPTED_OPTION
        || [
            "encrypt",
            "encryption",
            "crypt",
            "crypted",
            "ipsec",
            "secure",
            "encrypt=true",
        ]
        .contains(&k.as_str())
        || distance(&k, ENCRYPTED_OPTION) <= 2
}

/// Levenshtein distance, for short option names.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

fn own_addr(inv: &Inventory) -> Option<IpAddr> {
    inv.swarm.as_ref().and_then(|s| s.node_addr)
}

/// IPsec towards each remote peer of an encrypted network.
fn peers(net: &Network, inv: &Inventory, x: &Xfrm, port: u16, now: f64) -> Vec<PeerCheck> {
    let me = own_addr(inv);
    net.peers
        .iter()
        .filter_map(|p| p.ip)
        .filter(|ip| Some(*ip) != me)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .map(|ip| {
            let towards: Vec<_> = x
                .policies
                .iter()
                .filter(|pol| pol.dst == ip && pol.dir == 1 && pol.proto == IPPROTO_UDP)
                .collect();
            let covering = towards.iter().any(|pol| pol.dport == port);
            PeerCheck {
                peer: inv.node_name(ip),
                ip,
                policy: covering,
                policy_port: (!covering)
                    .then(|| towards.first().map(|pol| pol.dport))
                    .flatten(),
                state_out: x
                    .states
                    .iter()
                    .any(|s| s.dst == ip && s.proto == IPPROTO_ESP),
                state_in: x
                    .states
                    .iter()
                    .any(|s| s.src == ip && s.proto == IPPROTO_ESP),
                newest_sa_age_secs: x
                    .states
                    .iter()
                    .filter(|s| s.dst == ip && s.proto == IPPROTO_ESP)
                    .map(|s| (now - s.add_time as f64).max(0.0))
                    .reduce(f64::min),
            }
        })
        .collect()
}

fn u64_of(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

pub fn audit(i: &Inputs) -> Report {
    let mut findings = Vec::new();
    // The agent's own choice counts when it was told or read the swarm; a
    // default is only a guess, and the inventory may know better.
    let agent = match &i.agent_data_path {
        Some((p, from)) if from == "flag" => Some((*p, "agent")),
        Some((p, from)) if from == "swarm" => Some((*p, "swarm")),
        _ => None,
    };
    let swarm = i
        .inv
        .swarm
        .as_ref()
        .and_then(|s| s.data_path_port)
        .map(|p| (p, "swarm"));
    let (port, from) = i
        .data_path_port
        .map(|p| (p, "flag"))
        .or(agent)
        .or(swarm)
        .unwrap_or((DEFAULT_DATA_PATH_PORT, "default"));
    if let Err(e) = &i.xfrm {
        findings.push(Finding::new(
            &IPSEC_UNREADABLE,
            None,
            None,
            format!("cannot read the kernel's IPsec policies and states ({e}): run as root"),
        ));
    }
    let mut networks = Vec::new();
    for net in &i.inv.networks {
        let name = net.name.as_str();
        for (k, v) in &net.options {
            if mistyped_encrypted(k) {
                findings.push(Finding::new(
                    &MISTYPED_OPTION,
                    Some(name),
                    None,
                    format!(
                        "option {k:?} looks like a mistyped \"encrypted\": Docker ignores it{}",
                        if net.encrypted {
                            ""
                        } else {
                            ", the network is not encrypted"
                        }
                    ),
                ));
            }
            if k == ENCRYPTED_OPTION && v.eq_ignore_ascii_case("false") {
                findings.push(Finding::new(
                    &ENCRYPTED_FALSE,
                    Some(name),
                    None,
                    "encrypted=false still encrypts: Docker reads the option's presence, not its \
                     value"
                        .into(),
                ));
            }
        }
        let plain: Vec<&Value> = i
            .flows
            .iter()
            .filter(|f| f["class"] == "vxlan" && f["labels"]["network"] == name)
            .collect();
        let mut plaintext_packets: u64 = plain.iter().map(|f| u64_of(&f["packets"])).sum();
        let mut plaintext_services: Vec<String> = plain
            .iter()
            .map(|f| {
                format!(
                    "{} -> {}",
                    f["labels"]["src_service"].as_str().unwrap_or("?"),
                    f["labels"]["dst_service"].as_str().unwrap_or("?")
                )
            })
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        // The API lists only the busiest flows; the agent's alert covers
        // every flow, so a small leak among big flows is not missed.
        if let Some(a) = i
            .alerts
            .iter()
            .find(|a| a["kind"] == alerts::PLAINTEXT_ON_ENCRYPTED && a["network"] == name)
        {
            if u64_of(&a["packets"]) > plaintext_packets {
                plaintext_packets = u64_of(&a["packets"]);
                plaintext_services = a["services"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect();
            }
        }
        let mut broken = false;
        let peer_checks = match (&i.xfrm, net.encrypted) {
            (Ok(x), true) => peers(net, i.inv, x, port, i.now),
            _ => Vec::new(),
        };
        for p in &peer_checks {
            if let Some(age) = p
                .newest_sa_age_secs
                .filter(|a| *a > KEY_ROTATION_SECS + ROTATION_SLACK_SECS)
            {
                findings.push(Finding::new(
                    &IPSEC_KEY_NOT_ROTATED,
                    Some(name),
                    Some(&p.peer),
                    format!(
                        "the newest IPsec SA to {} ({}) is {:.1} h old: Docker rotates keys \
                         every 12 h, so rotation has stopped (can this node reach a manager?)",
                        p.peer,
                        p.ip,
                        age / 3600.0
                    ),
                ));
            }
            let (kind, msg) = match (p.policy, p.state_out, p.state_in, p.policy_port) {
                (true, true, true, _) => continue,
                (false, _, _, Some(other)) => (
                    &IPSEC_WRONG_PORT,
                    format!(
                        "the IPsec policy to {} covers UDP port {other}, the data path uses \
                         {port}: VXLAN leaves in clear",
                        p.ip
                    ),
                ),
                (false, false, false, None) => (
                    &IPSEC_MISSING,
                    format!(
                        "no IPsec policy or state for peer {} ({}): Docker could not set up \
                         encryption (a kernel without ESP support?); traffic to it is not \
                         encrypted",
                        p.peer, p.ip
                    ),
                ),
                (true, false, _, _) | (true, _, false, _) => (
                    &IPSEC_NO_STATE,
                    format!(
                        "an IPsec policy for {} ({}) but no {}: its traffic is dropped{}",
                        p.peer,
                        p.ip,
                        match (p.state_out, p.state_in) {
                            (false, false) => "state either way",
                            (true, _) => "inbound state",
                            _ => "outbound state",
                        },
                        if p.state_out || p.state_in {
                            ""
                        } else {
                            " (does this kernel support ESP? `ip xfrm state` lists none)"
                        }
                    ),
                ),
                _ => (
                    &IPSEC_NO_POLICY,
                    format!(
                        "IPsec states for {} but no policy sending the data path through them: \
                         traffic is not encrypted",
                        p.ip
                    ),
                ),
            };
            broken = true;
            findings.push(Finding::new(kind, Some(name), Some(&p.peer), msg));
        }
        if net.encrypted && plaintext_packets > 0 {
            broken = true;
            findings.push(Finding::new(
                &PLAINTEXT_ON_ENCRYPTED,
                Some(name),
                None,
                format!(
                    "{plaintext_packets} packets of plaintext VXLAN on this encrypted network ({})",
                    plaintext_services.join(", ")
                ),
            ));
        }
        if !net.encrypted {
            let (kind, msg) = if net.ingress {
                (
                    &INGRESS_PLAINTEXT,
                    "the ingress network carries published-port traffic unencrypted (recreate \
                     it with --opt encrypted)"
                        .to_owned(),
                )
            } else {
                (
                    &NOT_ENCRYPTED,
                    format!(
                        "not encrypted: its traffic crosses the wire in clear{}",
                        if plaintext_packets > 0 {
                            format!(
                                " ({plaintext_packets} packets seen: {})",
                                plaintext_services.join(", ")
                            )
                        } else {
                            String::new()
                        }
                    ),
                )
            };
            findings.push(Finding::new(kind, Some(name), None, msg));
        }
        networks.push(NetworkReport {
            name: name.to_owned(),
            vnis: net.vnis.clone(),
            encrypted: net.encrypted,
            ingress: net.ingress,
            status: match (net.encrypted, broken, i.xfrm.is_ok()) {
                (false, _, _) => "not_encrypted",
                (true, true, _) => "broken",
                (true, false, true) => "protected",
                // Never "protected" without having looked at the kernel.
                (true, false, false) => "unchecked",
            },
            peers: peer_checks,
            plaintext_packets,
            plaintext_services,
        });
    }
    networks.sort_by(|a, b| a.name.cmp(&b.name));
    let esp = esp_peers(i, &mut findings);
    findings.sort_by_key(|f| std::cmp::Reverse(f.severity));
    Report {
        data_path_port: port,
        data_path_port_from: from,
        networks,
        esp,
        findings,
    }
}

/// ESP each way per peer, and each SPI's sequence number against its wrap.
fn esp_peers(i: &Inputs, findings: &mut Vec<Finding>) -> Vec<EspPeer> {
    let mut by: BTreeMap<String, EspPeer> = BTreeMap::new();
    // The sequence number and the time of the last packet, one read
    // earlier: the rate between two packets' own times does not depend on
    // how often the agent refreshes its flows.
    let before = |spi: &Value, dir: &Value| {
        i.flows_before
            .iter()
            .filter(|f| f["class"] == "esp" && &f["spi"] == spi && &f["direction"] == dir)
            .map(|f| (u64_of(&f["esp_seq"]), f["last_seen"].as_f64()))
            .max_by_key(|(seq, _)| *seq)
    };
    for f in i.flows.iter().filter(|f| f["class"] == "esp") {
        let peer = f["labels"]["peer_node"].as_str().unwrap_or("?").to_owned();
        let e = by.entry(peer.clone()).or_insert_with(|| EspPeer {
            peer,
            packets_out: 0,
            packets_in: 0,
            last_out: None,
            last_in: None,
            spis: Vec::new(),
        });
        let last = f["last_seen"].as_f64();
        let (packets, latest) = if f["direction"] == "egress" {
            (&mut e.packets_out, &mut e.last_out)
        } else {
            (&mut e.packets_in, &mut e.last_in)
        };
        *packets += u64_of(&f["packets"]);
        *latest = match (*latest, last) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        let seq = u64_of(&f["esp_seq"]);
        let rate = match before(&f["spi"], &f["direction"]) {
            Some((b, then)) if seq > b => {
                let dt = match (then, f["last_seen"].as_f64()) {
                    (Some(t0), Some(t1)) if t1 > t0 => t1 - t0,
                    _ => i.dt,
                };
                if dt > 0.0 {
                    (seq - b) as f64 / dt
                } else {
                    0.0
                }
            }
            _ => 0.0,
        };
        let wraps =
            (rate > 0.0).then(|| (u32::MAX as u64 - seq.min(u32::MAX as u64)) as f64 / rate);
        let spi = format!("{:#010x}", u64_of(&f["spi"]));
        if let Some(w) = wraps.filter(|w| *w < KEY_ROTATION_SECS) {
            findings.push(Finding::new(
                &ESP_SEQUENCE_WRAP,
                None,
                Some(&e.peer),
                format!(
                    "SPI {spi} ({}) wraps its 32-bit sequence number in {:.1} h, before the 12 h \
                     key rotation: the pair's traffic stops then",
                    f["direction"].as_str().unwrap_or("?"),
                    w / 3600.0
                ),
            ));
        }
        let seen = |k: &str| f[k].as_f64().unwrap_or(i.now);
        e.spis.push(EspSpi {
            spi,
            direction: f["direction"].as_str().unwrap_or("?").to_owned(),
            seq,
            seq_per_sec: rate,
            age_secs: (i.now - seen("first_seen")).max(0.0),
            wraps_in_secs: wraps,
            active: i.now - seen("last_seen") < ACTIVE_SECS,
        });
    }
    for e in by.values() {
        // Each rotation brings a new SPI each way; the newest one in use
        // should be younger than the rotation interval.
        for dir in ["egress", "ingress"] {
            let newest = e
                .spis
                .iter()
                .filter(|s| s.direction == dir && s.active)
                .min_by(|a, b| a.age_secs.total_cmp(&b.age_secs));
            if let Some(s) = newest.filter(|s| s.age_secs > KEY_ROTATION_SECS + ROTATION_SLACK_SECS)
            {
                findings.push(Finding::new(
                    &ESP_SPI_NOT_ROTATED,
                    None,
                    Some(&e.peer),
                    format!(
                        "{dir} ESP with {} has used SPI {} for {:.1} h: Docker rotates keys \
                         every 12 h and each rotation brings a new SPI, so rotation has stopped",
                        e.peer,
                        s.spi,
                        s.age_secs / 3600.0
                    ),
                ));
            }
        }
        // One way now, not over the agent's lifetime: a firewall rule added
        // after hours of good traffic must show too.
        let out_active = e.last_out.is_some_and(|t| i.now - t < ACTIVE_SECS);
        let back_lately = match (e.last_out, e.last_in) {
            (Some(o), Some(n)) => o - n < ACTIVE_SECS,
            _ => false,
        };
        if out_active && !back_lately {
            findings.push(Finding::new(
                &ESP_ONE_WAY,
                None,
                Some(&e.peer),
                format!(
                    "ESP leaves for {} ({} packets) but none {}: something between the nodes \
                     drops IP protocol 50 and the encrypted networks do not work (unless all \
                     traffic to it is one-way UDP)",
                    e.peer,
                    e.packets_out,
                    if e.packets_in == 0 {
                        "comes back".to_owned()
                    } else {
                        format!("has come back for over {ACTIVE_SECS:.0} s")
                    }
                ),
            ));
        }
    }
    by.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mistyped_encrypted_options_are_recognised() {
        for k in [
            "encrypt",
            "encryption",
            "Encrypted",
            "ENCRYPTED",
            "encrpyted",
            "encryptd",
        ] {
            assert!(mistyped_encrypted(k), "{k}");
        }
        for k in [
            "encrypted",
            "com.docker.network.driver.overlay.vxlanid_list",
            "mtu",
        ] {
            assert!(!mistyped_encrypted(k), "{k}");
        }
    }
}
