//! `netobs audit`: is each overlay network's traffic really protected? What
//! Docker says (the network's options), what the kernel holds (IPsec
//! policies and states per remote tunnel endpoint), and what the wire shows
//! (the agent's flows: plaintext VXLAN, ESP each way, ESP sequence numbers)
//! in one report.
pub mod esp;
pub mod finding;
pub mod ipsec;
mod options;
pub mod xfrm;

use std::{collections::BTreeSet, io, net::IpAddr};

use serde::{Deserialize, Serialize};

use crate::{
    api::{Alert, AlertKind, DataPath, LabelledFlow, NetworkStatus, Policy, PortSource},
    inventory::{Inventory, Network, ENCRYPTED_OPTION},
};
use esp::EspPeer;
use finding::*;
pub use finding::{Finding, Severity};
use ipsec::PeerCheck;
use netobs_common::DEFAULT_DATA_PATH_PORT;
use xfrm::Xfrm;

/// Docker rotates the swarm's IPsec keys every 12 hours.
pub const KEY_ROTATION_SECS: f64 = 12.0 * 3600.0;
/// How late a rotation may be before it counts as missed: the manager
/// distributes new keys to every node, which takes a moment.
const ROTATION_SLACK_SECS: f64 = 3600.0;
/// Plaintext counts when seen this recently: a leak that was fixed stops
/// being a finding five minutes later, without restarting the agent.
pub const RECENT_SECS: f64 = 300.0;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NetworkReport {
    pub name: String,
    pub vnis: Vec<u32>,
    pub encrypted: bool,
    pub ingress: bool,
    /// The requirement (`--require-encryption`) covers it.
    pub required: bool,
    pub status: NetworkStatus,
    /// One per remote tunnel endpoint of an encrypted network.
    pub peers: Vec<PeerCheck>,
    /// Plaintext VXLAN seen in the last five minutes: packets, the service
    /// pairs of the flows ("client -> web"), and the services involved.
    pub plaintext_packets: u64,
    pub plaintext_pairs: Vec<String>,
    pub plaintext_services: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub data_path_port: u16,
    pub data_path_port_from: PortSource,
    /// The requirement applied, as `--require-encryption` takes it.
    pub require_encryption: String,
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

/// What the agent says of itself (from `/api/v1/summary`).
#[derive(Debug, Clone, Default)]
pub struct AgentView {
    /// The ports it classifies as VXLAN, and where they came from.
    pub data_path: DataPath,
    /// Its `--require-encryption`.
    pub require_encryption: Policy,
}

/// What went into a report.
pub struct Inputs<'a> {
    pub inv: &'a Inventory,
    /// The agent's flows now, and one read earlier (`dt` seconds before).
    pub flows: &'a [LabelledFlow],
    pub flows_before: &'a [LabelledFlow],
    /// The agent's active alerts (`/api/v1/alerts`).
    pub alerts: &'a [Alert],
    pub dt: f64,
    /// The kernel's IPsec view, or why it could not be read.
    pub xfrm: Result<&'a Xfrm, &'a io::Error>,
    /// This node's own addresses (its tunnel endpoints among them).
    pub local_addrs: &'a BTreeSet<IpAddr>,
    pub agent: &'a AgentView,
    /// `netobs audit --data-path-port`, if given.
    pub data_path_port: Option<u16>,
    /// `netobs audit --require-encryption`, if given.
    pub require_encryption: Option<&'a Policy>,
    /// Unix seconds, for the age of SAs, SPIs and plaintext.
    pub now: f64,
}

/// What the agent serves that the audit reads: its documents, two reads
/// `dt` seconds apart for the flows.
pub struct AgentDocs<'a> {
    pub inv: &'a Inventory,
    pub flows: &'a [LabelledFlow],
    pub flows_before: &'a [LabelledFlow],
    pub alerts: &'a [Alert],
    pub dt: f64,
    pub summary: &'a crate::api::Summary,
}

/// The audit of the node this runs on: the agent's documents judged
/// against this network namespace's IPsec state and addresses (read now).
/// The agent serves it (`/api/v1/audit`, what `audit --cluster` asks);
/// `netobs audit` runs it beside its agent, with its overrides.
pub fn of_this_node(
    docs: &AgentDocs,
    data_path_port: Option<u16>,
    require_encryption: Option<&Policy>,
) -> Report {
    let x = xfrm::read();
    let view = AgentView {
        data_path: docs.summary.data_path.clone(),
        require_encryption: docs.summary.require_encryption.clone(),
    };
    audit(&Inputs {
        inv: docs.inv,
        flows: docs.flows,
        flows_before: docs.flows_before,
        alerts: docs.alerts,
        dt: docs.dt,
        xfrm: x.as_ref(),
        local_addrs: &crate::host::local_addrs(),
        agent: &view,
        data_path_port,
        require_encryption,
        now: crate::flows::unix_now(),
    })
}

/// The data-path port and where it came from. The agent's own choice
/// counts when it was told or read the swarm; its default is only a guess,
/// and the inventory may know better.
fn data_path_port(i: &Inputs) -> (u16, PortSource) {
    let first = i.agent.data_path.ports.first();
    let agent = match i.agent.data_path.from {
        PortSource::Flag | PortSource::Agent => first.map(|p| (*p, PortSource::Agent)),
        PortSource::Swarm => first.map(|p| (*p, PortSource::Swarm)),
        PortSource::Default => None,
    };
    let swarm = i
        .inv
        .swarm
        .as_ref()
        .and_then(|s| s.data_path_port)
        .map(|p| (p, PortSource::Swarm));
    i.data_path_port
        .map(|p| (p, PortSource::Flag))
        .or(agent)
        .or(swarm)
        .unwrap_or((DEFAULT_DATA_PATH_PORT, PortSource::Default))
}

/// The requirement: this command's, else the agent's, else every network
/// (finding unencrypted overlays is what an audit is for).
fn requirement(i: &Inputs) -> Policy {
    if let Some(p) = i.require_encryption {
        return p.clone();
    }
    match &i.agent.require_encryption {
        Policy::None => Policy::All,
        p => p.clone(),
    }
}

pub fn audit(i: &Inputs) -> Report {
    let mut findings = Vec::new();
    let (port, from) = data_path_port(i);
    let agent_ports = &i.agent.data_path.ports;
    if !agent_ports.is_empty() && !agent_ports.contains(&port) {
        findings.push(Finding::new(
            &AGENT_PORT_MISMATCH,
            None,
            None,
            format!(
                "the data path uses UDP {port} ({from}) but the agent classifies {:?} as VXLAN: \
                 plaintext on {port} is invisible to it; restart it with --data-path-port {port}",
                agent_ports
            ),
        ));
    }
    let xfrm_unsupported = match &i.xfrm {
        Err(e) if e.raw_os_error() == Some(libc::EPROTONOSUPPORT) => {
            findings.push(Finding::new(
                &IPSEC_UNSUPPORTED,
                None,
                None,
                "this kernel has no IPsec (xfrm) netlink interface: Docker cannot encrypt \
                 overlay traffic here"
                    .into(),
            ));
            true
        }
        Err(e) => {
            findings.push(Finding::new(
                &IPSEC_UNREADABLE,
                None,
                None,
                format!(
                    "cannot read the kernel's IPsec policies and states ({e}){}",
                    if e.kind() == io::ErrorKind::PermissionDenied {
                        ": run as root"
                    } else {
                        ""
                    }
                ),
            ));
            false
        }
        Ok(_) => false,
    };
    let policy = requirement(i);
    let mut networks: Vec<NetworkReport> = i
        .inv
        .networks
        .iter()
        .map(|net| {
            network(
                i,
                net,
                port,
                from,
                policy.requires(&net.name),
                xfrm_unsupported,
                &mut findings,
            )
        })
        .collect();
    networks.sort_by(|a, b| a.name.cmp(&b.name));
    let esp = esp::peers(i, &mut findings);
    findings.sort_by_key(|f| std::cmp::Reverse(f.severity));
    Report {
        data_path_port: port,
        data_path_port_from: from,
        require_encryption: policy.to_string(),
        networks,
        esp,
        findings,
    }
}

/// Plaintext VXLAN seen lately on a network, from the flows and from the
/// agent's alert (which covers every flow, while the API lists only the
/// busiest).
fn plaintext(i: &Inputs, name: &str) -> (u64, Vec<String>, Vec<String>) {
    let recent = |last_seen: f64| i.now - last_seen < RECENT_SECS;
    let plain: Vec<&LabelledFlow> = i
        .flows
        .iter()
        .filter(|f| {
            f.flow.class == crate::api::Class::Vxlan
                && f.labels.network == name
                && recent(f.flow.last_seen)
        })
        .collect();
    let mut packets: u64 = plain.iter().map(|f| f.flow.packets).sum();
    let pairs: BTreeSet<String> = plain
        .iter()
        .map(|f| format!("{} -> {}", f.labels.src_service, f.labels.dst_service))
        .collect();
    let mut services: BTreeSet<String> = plain
        .iter()
        .flat_map(|f| [f.labels.src_service.clone(), f.labels.dst_service.clone()])
        .collect();
    for a in i.alerts.iter().filter(|a| {
        a.kind == AlertKind::PlaintextOnEncryptedNetwork && a.network == name && recent(a.last_seen)
    }) {
        packets = packets.max(a.packets);
        services.extend(a.services.iter().cloned());
    }
    (
        packets,
        pairs.into_iter().collect(),
        services.into_iter().collect(),
    )
}

fn network(
    i: &Inputs,
    net: &Network,
    port: u16,
    from: PortSource,
    required: bool,
    xfrm_unsupported: bool,
    findings: &mut Vec<Finding>,
) -> NetworkReport {
    let name = net.name.as_str();
    options(net, findings);
    let (plaintext_packets, plaintext_pairs, plaintext_services) = plaintext(i, name);
    let seen = if plaintext_pairs.is_empty() {
        plaintext_services.join(", ")
    } else {
        plaintext_pairs.join(", ")
    };
    let mut broken = false;
    let remote = if net.encrypted {
        ipsec::remote_endpoints(net, i.inv, i.local_addrs)
    } else {
        BTreeSet::new()
    };
    let peers: Vec<PeerCheck> = match &i.xfrm {
        Ok(x) => remote
            .iter()
            .map(|ip| ipsec::check(i.inv, *ip, x, port, i.now))
            .collect(),
        Err(_) => Vec::new(),
    };
    if xfrm_unsupported && !remote.is_empty() {
        broken = true;
    }
    for p in &peers {
        broken |= judge_peer(name, p, port, from, findings);
    }
    if net.encrypted && plaintext_packets > 0 {
        broken = true;
        findings.push(Finding::new(
            &PLAINTEXT_ON_ENCRYPTED,
            Some(name),
            None,
            format!(
                "{plaintext_packets} packets of plaintext VXLAN on this encrypted network in the \
                 last {} min ({seen})",
                RECENT_SECS / 60.0
            ),
        ));
    }
    if !net.encrypted {
        let f = if net.ingress {
            Finding::new(
                &INGRESS_PLAINTEXT,
                Some(name),
                None,
                "the ingress network carries published-port traffic unencrypted (recreate it \
                 with --opt encrypted)"
                    .to_owned(),
            )
        } else {
            Finding::new(
                &NOT_ENCRYPTED,
                Some(name),
                None,
                format!(
                    "not encrypted: its traffic crosses the wire in clear{}",
                    if plaintext_packets > 0 {
                        format!(" ({plaintext_packets} packets seen lately: {seen})")
                    } else {
                        String::new()
                    }
                ),
            )
        };
        findings.push(if required { f } else { f.info() });
    }
    NetworkReport {
        name: name.to_owned(),
        vnis: net.vnis.clone(),
        encrypted: net.encrypted,
        ingress: net.ingress,
        required,
        status: match (net.encrypted, broken, i.xfrm.is_ok()) {
            (false, _, _) => NetworkStatus::NotEncrypted,
            (true, true, _) => NetworkStatus::Broken,
            (true, false, true) => NetworkStatus::Protected,
            // Never "protected" without having looked at the kernel.
            (true, false, false) => NetworkStatus::Unchecked,
        },
        peers,
        plaintext_packets,
        plaintext_pairs,
        plaintext_services,
    }
}

/// Options Docker accepts and ignores, and what `encrypted=false` means.
fn options(net: &Network, findings: &mut Vec<Finding>) {
    let name = net.name.as_str();
    for (k, v) in &net.options {
        if options::mistyped_encrypted(k) {
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
}

/// Findings on one remote endpoint's IPsec; true when the network's
/// traffic to it is not protected.
fn judge_peer(
    name: &str,
    p: &PeerCheck,
    port: u16,
    from: PortSource,
    findings: &mut Vec<Finding>,
) -> bool {
    if let Some(age) = p
        .newest_sa_age_secs
        .filter(|a| *a > KEY_ROTATION_SECS + ROTATION_SLACK_SECS)
    {
        findings.push(Finding::new(
            &IPSEC_KEY_NOT_ROTATED,
            Some(name),
            Some(&p.peer),
            format!(
                "the newest IPsec SA to {} ({}) is {:.1} h old: Docker rotates keys every 12 h, \
                 so rotation has stopped (can this node reach a manager?)",
                p.peer,
                p.ip,
                age / 3600.0
            ),
        ));
    }
    let (kind, msg) = match (p.policy, p.state_out, p.state_in, p.policy_port) {
        (true, true, true, _) => return false,
        (false, _, _, Some(other)) if from == PortSource::Default => {
            findings.push(Finding::new(
                &DATA_PATH_PORT_UNKNOWN,
                Some(name),
                Some(&p.peer),
                format!(
                    "Docker's IPsec policy to {} covers UDP {other}, not {port} (Docker's \
                     default; this node cannot read the swarm's port): if the swarm uses \
                     {other}, give --data-path-port {other} to the agent and the audit; if it \
                     uses {port}, VXLAN to {} leaves in clear",
                    p.ip, p.peer
                ),
            ));
            return false;
        }
        (false, _, _, Some(other)) => (
            &IPSEC_WRONG_PORT,
            format!(
                "the IPsec policy to {} ({}) covers UDP {other}, the data path uses {port}: \
                 VXLAN leaves in clear",
                p.peer, p.ip
            ),
        ),
        (false, false, false, None) => (
            &IPSEC_MISSING,
            format!(
                "no IPsec policy or state for {} ({}): Docker could not set up encryption; \
                 traffic to it is not encrypted",
                p.peer, p.ip
            ),
        ),
        (true, _, _, _) => (
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
        (false, _, _, None) => (
            &IPSEC_NO_POLICY,
            format!(
                "IPsec states for {} ({}) but no policy sending the data path through them: \
                 traffic is not encrypted",
                p.peer, p.ip
            ),
        ),
    };
    findings.push(Finding::new(kind, Some(name), Some(&p.peer), msg));
    true
}
