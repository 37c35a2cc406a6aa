//! `netobs flows`: the running agent's flow table, once or every second, as
//! a table or as JSON for scripts.
use std::{collections::HashMap, process::ExitCode, time::Duration};

use anyhow::Result;
use clap::Args;

use super::{
    client, cluster,
    render::human_bytes,
    table::{Rates, Row},
};
use crate::api::{Answer, ClusterView, Direction, Doc, FlowId, FlowList, FlowsEndpoint};

#[derive(Debug, Args)]
pub struct FlowsArgs {
    #[command(flatten)]
    agent: client::AgentArgs,
    #[command(flatten)]
    cluster: cluster::ClusterArgs,
    /// One JSON document per refresh
    #[arg(long)]
    json: bool,
    /// Refresh every second until interrupted
    #[arg(long, conflicts_with = "cluster")]
    watch: bool,
}

fn table(rows: &[Row]) -> String {
    let mut out = format!(
        "{:<12} {:>8} {:<8} {:<14} {:<24} {:<24} {:>9} {:>10} {:>10} {:>10}  last request\n",
        "network",
        "vni/spi",
        "class",
        "peer",
        "source",
        "destination",
        "pkt/s",
        "B/s",
        "packets",
        "bytes"
    );
    for r in rows {
        out.push_str(&format!(
            "{:<12} {:>8} {:<8} {:<14} {:<24} {:<24} {:>9.0} {:>10} {:>10} {:>10}  {}\n",
            r.network,
            r.id,
            r.mark.label(),
            r.peer,
            r.src,
            r.dst,
            r.pps,
            human_bytes(r.bps as u64),
            r.packets,
            human_bytes(r.bytes),
            r.last_request,
        ));
    }
    out
}

/// `--cluster`: one table of every node's flows, a column naming the node
/// that saw each (totals: rates need two reads).
fn flows_cluster(args: &FlowsArgs) -> Result<ExitCode> {
    let members = match cluster::members_or_exit(&args.agent, &args.cluster) {
        Ok(m) => m,
        Err(code) => return Ok(code),
    };
    let view = cluster::ask::<FlowsEndpoint>(&members);
    if args.json {
        println!("{}", serde_json::to_string(&view)?);
    } else {
        let mut out = String::new();
        for n in &view.nodes {
            let Answer::Ok { data } = &n.answer else {
                continue;
            };
            let rows = Rates::default().rows(&data.flows);
            for (i, line) in table(&rows).lines().enumerate() {
                match (i, out.is_empty()) {
                    (0, true) => out.push_str(&format!("{:<24} {line}\n", "node")),
                    (0, false) => {}
                    _ => out.push_str(&format!("{:<24} {line}\n", n.node)),
                }
            }
        }
        out.push_str(&both_ends(&view));
        out.push_str(&cluster::unanswered_lines(&view));
        print!("{out}");
    }
    Ok(ExitCode::from(cluster::exit_code(&view, |_| 0)))
}

/// The flows one node's agent saw leave and another's saw arrive, joined
/// into one row with both counts.
fn both_ends(view: &ClusterView<FlowList>) -> String {
    let answered: Vec<(&str, &FlowList)> = view
        .nodes
        .iter()
        .filter_map(|n| match &n.answer {
            Answer::Ok { data } => Some((n.node.as_str(), data)),
            _ => None,
        })
        .collect();
    let mut arrived: HashMap<FlowId, (&str, u64)> = HashMap::new();
    for (node, list) in &answered {
        for f in list
            .flows
            .iter()
            .filter(|f| f.flow.direction == Direction::Ingress)
        {
            if let Some(id) = f.flow.wire_id() {
                arrived.insert(id, (node, f.flow.packets));
            }
        }
    }
    let mut rows = Vec::new();
    for (node, list) in &answered {
        for lf in list
            .flows
            .iter()
            .filter(|f| f.flow.direction == Direction::Egress)
        {
            let Some((to, received)) = lf.flow.wire_id().and_then(|id| arrived.get(&id)) else {
                continue;
            };
            let row = &Rates::default().rows(std::slice::from_ref(lf))[0];
            rows.push(format!(
                "{:<24} {:<24} {:<12} {:<24} {:<24} {:>10} {:>10}\n",
                node, to, row.network, row.src, row.dst, lf.flow.packets, received
            ));
        }
    }
    if rows.is_empty() {
        return String::new();
    }
    rows.sort();
    format!(
        "\nflows seen at both ends: sent (the sender's hook) and received (the receiver's), \
         read moments apart, so a busy flow differs by what is on the way; loss is measured \
         on flows gone quiet (netobs doctor --cluster)\n{:<24} {:<24} {:<12} {:<24} {:<24} {:>10} {:>10}\n{}",
        "from",
        "to",
        "network",
        "source",
        "destination",
        "sent",
        "received",
        rows.concat()
    )
}

pub fn flows(args: FlowsArgs) -> Result<ExitCode> {
    if args.cluster.cluster {
        return flows_cluster(&args);
    }
    let agent = args.agent.agent()?;
    let mut rates = Rates::default();
    loop {
        let list = client::fetch::<FlowsEndpoint>(&agent)?;
        let rows = rates.rows(&list.flows);
        if args.json {
            println!("{}", serde_json::to_string(&Doc::new(&list))?);
        } else {
            print!("{}", table(&rows));
        }
        if !args.watch {
            return Ok(ExitCode::SUCCESS);
        }
        std::thread::sleep(Duration::from_secs(1));
        if !args.json {
            println!();
        }
    }
}
