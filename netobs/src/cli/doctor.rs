//! `netobs doctor`: the overlay's health as the agent sees it. Exit status
//! 0: healthy; 1: findings to act on; 2: could not run.
use std::{fmt::Write, process::ExitCode};

use anyhow::Result;
use clap::Args;

use super::{client, cluster};
use crate::{
    api::{HealthEndpoint, OverlayHealth},
    doctor,
};

#[derive(Debug, Args)]
pub struct DoctorArgs {
    #[command(flatten)]
    agent: client::AgentArgs,
    #[command(flatten)]
    cluster: cluster::ClusterArgs,
    /// One JSON document
    #[arg(long)]
    json: bool,
    /// Only this peer node (its name or address)
    #[arg(long, value_name = "NODE")]
    peer: Option<String>,
    /// Only service pairs with this service at either end
    #[arg(long, value_name = "NAME")]
    service: Option<String>,
}

/// Keeps what `--peer` and `--service` ask for.
fn only(mut h: OverlayHealth, args: &DoctorArgs) -> OverlayHealth {
    if let Some(p) = &args.peer {
        h.peers.retain(|x| &x.peer == p || x.addr.to_string() == *p);
        h.gossip
            .retain(|x| &x.peer == p || x.addr.to_string() == *p);
        h.drops.retain(|x| &x.peer == p || x.addr.to_string() == *p);
        h.checksums
            .retain(|x| &x.peer == p || x.addr.to_string() == *p);
        h.loss.retain(|x| &x.peer == p || x.addr.to_string() == *p);
        // Findings name a peer as the peers list does: given an address,
        // keep its name's findings too.
        let names: Vec<String> = h
            .peers
            .iter()
            .map(|x| x.peer.clone())
            .chain(h.gossip.iter().map(|x| x.peer.clone()))
            .chain(h.drops.iter().map(|x| x.peer.clone()))
            .collect();
        h.findings.retain(|f| {
            f.peer
                .as_ref()
                .is_some_and(|fp| fp == p || names.contains(fp))
        });
        h.pairs.clear();
    }
    if let Some(s) = &args.service {
        h.pairs
            .retain(|x| &x.src_service == s || &x.dst_service == s);
        h.peers.clear();
        h.gossip.clear();
        h.drops.clear();
        h.checksums.clear();
        h.loss.clear();
        h.findings.retain(|f| {
            f.services
                .as_deref()
                .is_some_and(|pair| pair.split(" -> ").any(|x| x == s))
        });
    }
    h
}

fn text(h: &OverlayHealth) -> String {
    let mut out = String::new();
    for p in &h.peers {
        let _ = writeln!(
            out,
            "peer {} ({}): VXLAN out {} packets, in {}; {} TCP connections unanswered (last {} s)",
            p.peer, p.addr, p.packets_out, p.packets_in, p.connect_failures, h.window_secs
        );
    }
    for g in &h.gossip {
        let _ = writeln!(
            out,
            "peer {} ({}): UDP gossip out {} datagrams, in {} (last {} s)",
            g.peer, g.addr, g.packets_out, g.packets_in, h.window_secs
        );
    }
    for d in &h.drops {
        let way = match d.direction {
            netobs_common::Direction::Egress => "to",
            netobs_common::Direction::Ingress => "from",
        };
        let _ = writeln!(
            out,
            "peer {} ({}): {} packets {way} it dropped by the kernel, reason {}: {} in the last \
             {} s, {} since the agent started",
            d.peer, d.addr, d.traffic, d.reason, d.recent, h.window_secs, d.total
        );
    }
    for l in &h.loss {
        let _ = writeln!(
            out,
            "peer {} ({}): VXLAN it sent here in flows that went quiet: {} lost of {} (last {:.0} \
             min), {} of {} since the agent started; {} flows not judged; its agent: {}",
            l.peer,
            l.addr,
            l.recent_lost,
            l.recent_checked,
            doctor::RECENT_SECS / 60.0,
            l.lost,
            l.checked,
            l.unverified_flows,
            l.agent
        );
    }
    for c in &h.checksums {
        let _ = writeln!(
            out,
            "peer {} ({}): inner SYNs on {} ({}): checksums {} ok, {} never filled in, {} wrong \
             (last {} s)",
            c.peer,
            c.addr,
            c.iface,
            c.driver.as_deref().unwrap_or("driver unknown"),
            c.ok,
            c.partial,
            c.bad,
            h.window_secs
        );
    }
    for p in &h.pairs {
        let _ = writeln!(
            out,
            "{}: {} -> {}: {} connect failures, {} resets in the last {} min ({} and {} since \
             the agent started)",
            p.network,
            p.src_service,
            p.dst_service,
            p.recent_connect_failures,
            p.recent_resets,
            doctor::RECENT_SECS as u64 / 60,
            p.connect_failures,
            p.resets
        );
    }
    for n in &h.not_checked {
        let _ = writeln!(out, "not checked: {n}");
    }
    if doctor::exit_code(h) == 0 {
        let _ = writeln!(out, "no findings to act on: the overlay looks healthy");
    }
    if !h.findings.is_empty() {
        let _ = writeln!(out, "findings:");
        for f in &h.findings {
            let _ = writeln!(out, "  {:<8} {:<20} {}", f.severity, f.kind, f.message);
        }
    }
    out
}

/// `--cluster`: every node's health, each under its name.
fn doctor_cluster(args: &DoctorArgs) -> Result<ExitCode> {
    let members = match cluster::members_or_exit(&args.agent, &args.cluster) {
        Ok(m) => m,
        Err(code) => return Ok(code),
    };
    let mut view = cluster::ask::<HealthEndpoint>(&members);
    for n in &mut view.nodes {
        if let crate::api::Answer::Ok { data } = &mut n.answer {
            *data = only(std::mem::take(data), args);
        }
    }
    cluster::show(&view, args.json, text, doctor::exit_code)
}

pub fn doctor(args: DoctorArgs) -> Result<ExitCode> {
    if args.cluster.cluster {
        return doctor_cluster(&args);
    }
    let h = match args
        .agent
        .agent()
        .and_then(|a| Ok(client::fetch::<HealthEndpoint>(&a)?))
    {
        Ok(h) => only(h, &args),
        Err(e) => {
            eprintln!("netobs: error: {e:#}");
            return Ok(ExitCode::from(2));
        }
    };
    if args.json {
        println!("{}", serde_json::to_string(&h)?);
    } else {
        print!("{}", text(&h));
    }
    Ok(ExitCode::from(doctor::exit_code(&h)))
}
