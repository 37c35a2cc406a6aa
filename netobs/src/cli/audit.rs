//! `netobs audit`: one report on whether each overlay network is really
//! protected. Exit status 0: all protected as required; 1: findings; 2: the
//! audit could not run.
use std::{fmt::Write, process::ExitCode, time::Duration};

use anyhow::Result;
use clap::Args;

use super::{client, cluster};
use crate::{
    api::{
        AlertsEndpoint, AuditEndpoint, FlowsEndpoint, InventoryEndpoint, NetworkStatus, Policy,
        PortSource, SummaryEndpoint,
    },
    audit::{self, Report, Severity},
};

#[derive(Debug, Args)]
pub struct AuditArgs {
    #[command(flatten)]
    agent: client::AgentArgs,
    #[command(flatten)]
    cluster: cluster::ClusterArgs,
    /// One JSON document
    #[arg(long)]
    json: bool,
    /// The swarm's data-path port, when neither this node nor the agent can
    /// read it (a worker)
    #[arg(long, value_name = "PORT", conflicts_with = "cluster")]
    data_path_port: Option<u16>,
    /// Networks that must be encrypted: `all` or NET[,NET...]; unencrypted
    /// networks outside it are reported, not findings [default: the
    /// agent's --require-encryption, else all]
    #[arg(long, value_name = "POLICY", conflicts_with = "cluster")]
    require_encryption: Option<Policy>,
}

/// Two reads of the flows this far apart give ESP sequence-number rates.
const SAMPLE: Duration = Duration::from_secs(2);

fn report(args: &AuditArgs) -> Result<Report> {
    let agent = args.agent.agent()?;
    let inv = client::fetch::<InventoryEndpoint>(&agent)?;
    if !inv.docker_up {
        anyhow::bail!(
            "the agent at {} cannot reach its Docker engine, so there are no networks to audit",
            agent
        );
    }
    let before = client::fetch::<FlowsEndpoint>(&agent)?.flows;
    std::thread::sleep(SAMPLE);
    let now = client::fetch::<FlowsEndpoint>(&agent)?.flows;
    let summary = client::fetch::<SummaryEndpoint>(&agent)?;
    let alerts = client::fetch::<AlertsEndpoint>(&agent)?.alerts;
    let docs = audit::AgentDocs {
        inv: &inv,
        flows: &now,
        flows_before: &before,
        alerts: &alerts,
        dt: SAMPLE.as_secs_f64(),
        summary: &summary,
    };
    Ok(audit::of_this_node(
        &docs,
        args.data_path_port,
        args.require_encryption.as_ref(),
    ))
}

fn text(r: &Report) -> String {
    let mut out = String::new();
    if r.networks.is_empty() {
        let _ = writeln!(
            out,
            "no overlay networks on this node (is it part of a swarm, with tasks on overlay \
             networks?)"
        );
    }
    for n in &r.networks {
        let vnis: Vec<String> = n.vnis.iter().map(u32::to_string).collect();
        let status = match n.status {
            NetworkStatus::Protected if n.peers.is_empty() => "protected (no remote peers)",
            NetworkStatus::Protected => "protected",
            NetworkStatus::Broken => "BROKEN: encrypted but not protected",
            NetworkStatus::Unchecked => "encrypted, IPsec not checked (run as root)",
            NetworkStatus::NotEncrypted if !n.required => "not encrypted (not required)",
            NetworkStatus::NotEncrypted if n.ingress => "NOT ENCRYPTED (ingress)",
            NetworkStatus::NotEncrypted => "NOT ENCRYPTED",
        };
        let seen = if n.plaintext_pairs.is_empty() {
            &n.plaintext_services
        } else {
            &n.plaintext_pairs
        };
        let _ = writeln!(
            out,
            "{:<16} vni {:<10} {status}{}",
            n.name,
            vnis.join(","),
            if n.plaintext_packets > 0 {
                format!("; plaintext seen: {}", seen.join(", "))
            } else {
                String::new()
            }
        );
        for p in &n.peers {
            let yes = |b: bool| if b { "yes" } else { "NO" };
            let _ = writeln!(
                out,
                "  peer {} {}: policy {}{}, SA out {}, SA in {}{}",
                p.peer,
                p.ip,
                yes(p.policy),
                p.policy_port
                    .map(|port| format!(" (covers UDP {port} only)"))
                    .unwrap_or_default(),
                yes(p.state_out),
                yes(p.state_in),
                p.newest_sa_age_secs
                    .map(|a| format!(", newest SA {:.1} h old", a / 3600.0))
                    .unwrap_or_default()
            );
        }
    }
    let _ = writeln!(
        out,
        "data-path port {} ({})",
        r.data_path_port,
        match r.data_path_port_from {
            PortSource::Flag => "from --data-path-port",
            PortSource::Agent => "from the agent's --data-path-port",
            PortSource::Swarm => "from the swarm",
            PortSource::Default =>
                "Docker's default: the swarm's own needs a manager; give --data-path-port if it differs",
        }
    );
    for e in &r.esp {
        let _ = writeln!(
            out,
            "ESP with {}: {} packets out, {} in",
            e.peer, e.packets_out, e.packets_in
        );
        for s in &e.spis {
            let mut d = format!(
                "  SPI {} {} seq {}, seen for {:.1} h",
                s.spi,
                s.direction,
                s.seq,
                s.age_secs / 3600.0
            );
            if s.seq_per_sec > 0.0 {
                let _ = write!(d, ", +{:.0}/s", s.seq_per_sec);
                if let Some(w) = s.wraps_in_secs {
                    let _ = write!(d, ", wraps in {:.1} h", w / 3600.0);
                }
            }
            if !s.active {
                d.push_str(", idle");
            }
            let _ = writeln!(out, "{d}");
        }
    }
    let _ = writeln!(
        out,
        "required: {}",
        match r.require_encryption.as_str() {
            "all" => "every network encrypted",
            other => other,
        }
    );
    let to_fix = r
        .findings
        .iter()
        .filter(|f| f.severity >= Severity::Warning)
        .count();
    if to_fix == 0 {
        let _ = writeln!(
            out,
            "no findings: every overlay network is protected as required"
        );
    }
    if !r.findings.is_empty() {
        let _ = writeln!(out, "findings:");
        for f in &r.findings {
            let at = f.network.as_deref().or(f.peer.as_deref()).unwrap_or("-");
            let _ = writeln!(out, "  {:<8} {at}: {}", f.severity.name(), f.message);
        }
    }
    out
}

/// `--cluster`: each node's agent judges its own node (`/api/v1/audit`:
/// the IPsec state is where the agent runs), with its own settings.
fn audit_cluster(args: &AuditArgs) -> Result<ExitCode> {
    let members = match cluster::members_or_exit(&args.agent, &args.cluster) {
        Ok(m) => m,
        Err(code) => return Ok(code),
    };
    let view = cluster::ask::<AuditEndpoint>(&members);
    cluster::show(&view, args.json, text, Report::exit_code)
}

pub fn audit(args: AuditArgs) -> Result<ExitCode> {
    if args.cluster.cluster {
        return audit_cluster(&args);
    }
    let r = match report(&args) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("netobs: error: {e:#}");
            return Ok(ExitCode::from(2));
        }
    };
    if args.json {
        println!("{}", serde_json::to_string(&r)?);
    } else {
        print!("{}", text(&r));
    }
    Ok(ExitCode::from(r.exit_code()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_without_overlay_networks_says_so() {
        let r = Report {
            data_path_port: 4789,
            data_path_port_from: PortSource::Default,
            require_encryption: "all".into(),
            networks: Vec::new(),
            esp: Vec::new(),
            findings: Vec::new(),
        };
        let t = text(&r);
        assert!(t.starts_with("no overlay networks on this node"), "{t}");
        assert_eq!(r.exit_code(), 0);
    }
}
