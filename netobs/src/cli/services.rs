//! `netobs services [NAME]`: each service's networks, endpoint mode, VIPs
//! and tasks (IP, node, state) with the live traffic to and from each task:
//! the answers of `drill <service>` and `drill tasks.<service>` from inside
//! the overlay, without a debug container.
use std::{fmt::Write, net::IpAddr, process::ExitCode};

use anyhow::{bail, Result};
use clap::Args;
use serde::Serialize;

use super::{client, cluster, render::human_bytes};
use crate::{
    api::{Flow, FlowsEndpoint, InventoryEndpoint},
    inventory::services::{services as views, ServiceView, TaskView},
};

#[derive(Debug, Args)]
pub struct ServicesArgs {
    /// Only this service
    name: Option<String>,
    #[command(flatten)]
    agent: client::AgentArgs,
    #[command(flatten)]
    cluster: cluster::ClusterArgs,
    /// One JSON document
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Default, Clone, Copy, Serialize)]
struct Traffic {
    packets: u64,
    bytes: u64,
}

#[derive(Debug, Serialize)]
struct Task {
    #[serde(flatten)]
    task: TaskView,
    /// Overlay traffic from the task's address, in the agent's flows.
    sent: Traffic,
    /// Overlay traffic to the task's address.
    received: Traffic,
}

#[derive(Debug, Serialize)]
struct Service {
    name: String,
    endpoint_mode: &'static str,
    networks: Vec<crate::inventory::services::ServiceNetwork>,
    tasks: Vec<Task>,
}

fn with_traffic(v: ServiceView, flows: &[&Flow]) -> Service {
    let sum = |end: &dyn Fn(&Flow) -> bool| {
        flows
            .iter()
            .filter(|f| end(f))
            .fold(Traffic::default(), |t, f| Traffic {
                packets: t.packets + f.packets,
                bytes: t.bytes + f.bytes,
            })
    };
    Service {
        name: v.name,
        endpoint_mode: v.endpoint_mode,
        networks: v.networks,
        tasks: v
            .tasks
            .into_iter()
            .map(|t| {
                // A task without an address has no traffic of its own.
                let to_or_from = |inner: fn(&Flow) -> Option<IpAddr>| match t.ip {
                    Some(ip) => sum(&|f| inner(f) == Some(ip)),
                    None => Traffic::default(),
                };
                Task {
                    sent: to_or_from(|f| f.inner_src),
                    received: to_or_from(|f| f.inner_dst),
                    task: t,
                }
            })
            .collect(),
    }
}

fn text(services: &[Service]) -> String {
    let mut out = String::new();
    for s in services {
        let _ = writeln!(out, "{} ({})", s.name, s.endpoint_mode);
        for n in &s.networks {
            let _ = writeln!(
                out,
                "  network {} ({}), vip {}",
                n.name,
                if n.encrypted { "encrypted" } else { "plain" },
                n.vip.map_or_else(|| "-".into(), |v| v.to_string())
            );
        }
        let _ = writeln!(
            out,
            "  {:<34} {:<12} {:<16} {:<14} {:<8} {:>20} {:>20}",
            "task", "network", "ip", "node", "state", "sent", "received"
        );
        let t = |t: Traffic| format!("{} pkts {}", t.packets, human_bytes(t.bytes));
        for task in &s.tasks {
            let v = &task.task;
            let _ = writeln!(
                out,
                "  {:<34} {:<12} {:<16} {:<14} {:<8} {:>20} {:>20}",
                v.task,
                v.network,
                v.ip.map_or_else(|| "-".to_owned(), |ip| ip.to_string()),
                v.node,
                v.state,
                t(task.sent),
                t(task.received)
            );
        }
    }
    out
}

/// The services one agent sees, with their traffic.
fn read(agent: &client::Agent, name: Option<&str>) -> Result<Vec<Service>, client::Failure> {
    let inv = client::fetch::<InventoryEndpoint>(agent)?;
    let list = client::fetch::<FlowsEndpoint>(agent)?;
    let flows: Vec<&Flow> = list.flows.iter().map(|f| &f.flow).collect();
    Ok(views(&inv, name)
        .into_iter()
        .map(|v| with_traffic(v, &flows))
        .collect())
}

/// `--cluster`: each node's view of the services, under its name.
fn services_cluster(args: &ServicesArgs) -> Result<ExitCode> {
    let members = match cluster::members_or_exit(&args.agent, &args.cluster) {
        Ok(m) => m,
        Err(code) => return Ok(code),
    };
    let view = cluster::ask_each(&members, |a| read(a, args.name.as_deref()));
    cluster::show(&view, args.json, |list| text(list), |_| 0)
}

pub fn services(args: ServicesArgs) -> Result<ExitCode> {
    if args.cluster.cluster {
        return services_cluster(&args);
    }
    let agent = args.agent.agent()?;
    let list = read(&agent, args.name.as_deref())?;
    if let (Some(name), true) = (&args.name, list.is_empty()) {
        bail!(
            "no service {name:?} in the agent's inventory (a node sees the services on the \
             networks it takes part in; ask the agent on a manager to see them all)"
        );
    }
    if args.json {
        println!("{}", serde_json::to_string(&list)?);
    } else if list.is_empty() {
        println!("no services on this node's overlay networks");
    } else {
        print!("{}", text(&list));
    }
    Ok(ExitCode::SUCCESS)
}
