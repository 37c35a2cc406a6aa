//! `netobs audit`: one report on whether each overlay network is really
//! protected. Exit status 0: all protected as required; 1: findings; 2: the
//! audit could not run.
use std::{fmt::Write, net::SocketAddr, process::ExitCode, time::Duration};

use anyhow::{Context, Result};
use clap::Args;
use serde_json::Value;

use super::client;
use crate::{
    agent::DEFAULT_METRICS_ADDR,
    audit::{self, xfrm, Inputs, Report},
    inventory::Inventory,
};

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// The agent's --metrics-addr
    #[arg(long, value_name = "ADDR", default_value = DEFAULT_METRICS_ADDR)]
    agent: SocketAddr,
    /// One JSON document
    #[arg(long)]
    json: bool,
    /// The swarm's data-path port, when the agent cannot read it (a worker)
    #[arg(long, value_name = "PORT")]
    data_path_port: Option<u16>,
}

/// Two reads of the flows this far apart give ESP sequence-number rates.
const SAMPLE: Duration = Duration::from_secs(2);

fn report(args: &AuditArgs) -> Result<Report> {
    let inv: Inventory = serde_json::from_str(&client::get(args.agent, "/api/v1/inventory")?)
        .context("the agent's inventory is not what this netobs reads")?;
    if !inv.docker_up {
        anyhow::bail!(
            "the agent at {} cannot reach its Docker engine, so there are no networks to audit",
            args.agent
        );
    }
    let flows = |_: ()| -> Result<Vec<Value>> {
        serde_json::from_str(&client::get(args.agent, "/api/v1/flows")?)
            .context("the agent's flow list is not JSON")
    };
    let before = flows(())?;
    std::thread::sleep(SAMPLE);
    let now = flows(())?;
    let summary: Value = serde_json::from_str(&client::get(args.agent, "/api/v1/summary")?)
        .context("the agent's summary is not JSON")?;
    let agent_data_path = summary["data_path_ports"][0]
        .as_u64()
        .and_then(|p| u16::try_from(p).ok())
        .zip(summary["data_path_port_from"].as_str().map(str::to_owned));
    let alerts: Vec<Value> = serde_json::from_str(&client::get(args.agent, "/api/v1/alerts")?)
        .context("the agent's alerts are not JSON")?;
    let x = xfrm::read();
    Ok(audit::audit(&Inputs {
        inv: &inv,
        flows: &now,
        flows_before: &before,
        alerts: &alerts,
        dt: SAMPLE.as_secs_f64(),
        xfrm: x.as_ref().map_err(|e| e.to_string()),
        data_path_port: args.data_path_port,
        agent_data_path,
        now: crate::flows::unix_now(),
    }))
}

fn text(r: &Report) -> String {
    let mut out = String::new();
    for n in &r.networks {
        let vnis: Vec<String> = n.vnis.iter().map(u32::to_string).collect();
        let status = match n.status {
            "protected" => "protected",
            "broken" => "BROKEN: encrypted but not protected",
            "unchecked" => "encrypted, IPsec not checked (run as root)",
            _ if n.ingress => "NOT ENCRYPTED (ingress)",
            _ => "NOT ENCRYPTED",
        };
        let _ = writeln!(
            out,
            "{:<16} vni {:<10} {status}{}",
            n.name,
            vnis.join(","),
            if n.plaintext_packets > 0 {
                format!("; plaintext seen: {}", n.plaintext_services.join(", "))
            } else {
                String::new()
            }
        );
    }
    let _ = writeln!(
        out,
        "data-path port {} ({})",
        r.data_path_port,
        match r.data_path_port_from {
            "flag" => "from --data-path-port",
            "agent" => "from the agent's --data-path-port",
            "swarm" => "from the swarm",
            _ => "Docker's default: the swarm's own needs a manager; give --data-path-port if it differs",
        }
    );
    for e in &r.esp {
        let _ = writeln!(
            out,
            "ESP with {}: {} packets out, {} in, SPIs {}",
            e.peer,
            e.packets_out,
            e.packets_in,
            e.spis
                .iter()
                .map(|s| {
                    let mut d = format!("{} {} seq {}", s.spi, s.direction, s.seq);
                    if s.seq_per_sec > 0.0 {
                        let _ = write!(d, " (+{:.0}/s", s.seq_per_sec);
                        if let Some(w) = s.wraps_in_secs {
                            let _ = write!(d, ", wraps in {:.1} h", w / 3600.0);
                        }
                        d.push(')');
                    }
                    d
                })
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if r.findings.is_empty() {
        let _ = writeln!(out, "no findings: every overlay network is protected");
    } else {
        let _ = writeln!(out, "findings:");
        for f in &r.findings {
            let at = f.network.as_deref().or(f.peer.as_deref()).unwrap_or("-");
            let _ = writeln!(
                out,
                "  {:<8} {at}: {}",
                format!("{:?}", f.severity).to_lowercase(),
                f.message
            );
        }
    }
    out
}

pub fn audit(args: AuditArgs) -> Result<ExitCode> {
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
