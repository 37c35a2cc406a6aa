//! `--cluster`: the same command asked of every node's agent at once. Run
//! on a manager, it finds the agents through the swarm's node list (each
//! node's address, at the local agent's port, with the same token), or
//! takes them from `--agents`; it asks them concurrently, each within the
//! timeout, and keeps every answer with the node it came from. A node whose
//! agent gives nothing is named with the reason, and the command's exit
//! status says the view is partial.
use std::{collections::HashMap, net::ToSocketAddrs, time::Duration};

use anyhow::{bail, Result};
use clap::Args;

pub use crate::client::{ask, ask_each, Member};
use crate::{
    api::{Answer, ClusterView, InventoryEndpoint},
    client::{self, Agent},
};

/// Exit status of a cluster view in which some node's agent gave nothing.
pub const EXIT_PARTIAL: u8 = 3;

#[derive(Debug, Clone, Args)]
pub struct ClusterArgs {
    /// Ask every node's agent (found through this manager's node list) and
    /// show their answers together, each with its node
    #[arg(long)]
    pub cluster: bool,
    /// The agents to ask instead of the node list, HOST:PORT[,HOST:PORT...]
    #[arg(
        long,
        value_name = "HOST:PORT",
        value_delimiter = ',',
        requires = "cluster"
    )]
    pub agents: Vec<String>,
    /// Seconds each agent has to connect and to answer
    #[arg(long, value_name = "SECS", default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=300), requires = "cluster")]
    pub timeout: u64,
}

/// The agents of the cluster view: `--agents`, else every node of the local
/// agent's swarm (its own node through `local`).
pub fn members(local: &Agent, args: &ClusterArgs) -> Result<Vec<Member>> {
    let timeout = Some(Duration::from_secs(args.timeout));
    if !args.agents.is_empty() {
        return args
            .agents
            .iter()
            .map(|given| {
                let addr = given
                    .to_socket_addrs()
                    .ok()
                    .and_then(|mut a| a.next())
                    .ok_or_else(|| anyhow::anyhow!("--agents: cannot resolve {given:?}"))?;
                Ok(Member {
                    node: given.clone(),
                    agent: Agent {
                        addr,
                        token: local.token.clone(),
                        timeout,
                    },
                })
            })
            .collect();
    }
    let inv = client::fetch::<InventoryEndpoint>(local)?;
    let me = inv.swarm.as_ref().and_then(|s| s.node_addr);
    let nodes: Vec<_> = inv
        .nodes
        .iter()
        .filter_map(|n| Some((n.hostname.as_str(), n.addr?)))
        .collect();
    if nodes.is_empty() {
        bail!(
            "the agent at {local} knows no swarm nodes (only a manager's engine lists them): \
             run this on a manager, or name the agents with --agents HOST:PORT,..."
        );
    }
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (h, _) in &nodes {
        *seen.entry(h).or_default() += 1;
    }
    Ok(nodes
        .iter()
        .map(|(host, addr)| {
            // Two nodes with one hostname (clones of one image) are told
            // apart by address.
            let node = match (host.is_empty(), seen.get(host).copied().unwrap_or(0) > 1) {
                (true, _) => addr.to_string(),
                (false, true) => format!("{host}@{addr}"),
                (false, false) => (*host).to_owned(),
            };
            let agent = if Some(*addr) == me {
                Agent {
                    timeout,
                    ..local.clone()
                }
            } else {
                Agent {
                    addr: (*addr, local.addr.port()).into(),
                    token: local.token.clone(),
                    timeout,
                }
            };
            Member { node, agent }
        })
        .collect())
}

/// One line per node that gave nothing, for the end of a text view.
pub fn unanswered_lines<T>(view: &ClusterView<T>) -> String {
    let mut out = String::new();
    for n in &view.nodes {
        let error = match &n.answer {
            Answer::Ok { .. } => continue,
            Answer::Down { error }
            | Answer::Slow { error }
            | Answer::Refused { error }
            | Answer::Incompatible { error }
            | Answer::Failed { error } => error,
        };
        out.push_str(&format!("{}: {}: {error}\n", n.node, n.answer.status()));
    }
    let missing = view.unanswered();
    if missing > 0 {
        out.push_str(&format!(
            "partial view: {missing} of {} nodes did not answer\n",
            view.nodes.len()
        ));
    }
    out
}

/// The members of the cluster view asked for, or the one line why not.
pub fn members_or_exit(
    agent: &super::client::AgentArgs,
    args: &ClusterArgs,
) -> std::result::Result<Vec<Member>, std::process::ExitCode> {
    agent
        .agent()
        .and_then(|local| members(&local, args))
        .map_err(|e| {
            eprintln!("netobs: error: {e:#}");
            std::process::ExitCode::from(2)
        })
}

/// Each node's data as `f` renders it under a header naming the node, then
/// the nodes that gave nothing.
pub fn text<T>(view: &ClusterView<T>, f: impl Fn(&T) -> String) -> String {
    let mut out = String::new();
    for n in &view.nodes {
        if let Answer::Ok { data } = &n.answer {
            out.push_str(&format!("== {} ({}) ==\n", n.node, n.agent));
            out.push_str(&f(data));
        }
    }
    out.push_str(&unanswered_lines(view));
    out
}

/// Prints a view of one document per node (one JSON document, or each
/// node's `text` under its name) and returns its exit status (`each`: a
/// node's own).
pub fn show<T: serde::Serialize>(
    view: &ClusterView<T>,
    json: bool,
    text: impl Fn(&T) -> String,
    each: impl Fn(&T) -> u8,
) -> Result<std::process::ExitCode> {
    if json {
        println!("{}", serde_json::to_string(view)?);
    } else {
        print!("{}", self::text(view, text));
    }
    Ok(std::process::ExitCode::from(exit_code(view, each)))
}

/// The exit status of a view: partial, else the worst of the answers'.
pub fn exit_code<T>(view: &ClusterView<T>, each: impl Fn(&T) -> u8) -> u8 {
    if view.unanswered() > 0 {
        return EXIT_PARTIAL;
    }
    view.nodes
        .iter()
        .filter_map(|n| match &n.answer {
            Answer::Ok { data } => Some(each(data)),
            _ => None,
        })
        .max()
        .unwrap_or(0)
}
