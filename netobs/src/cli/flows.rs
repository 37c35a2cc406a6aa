//! `netobs flows`: the running agent's flow table, once or every second, as
//! a table or as JSON for scripts.
use std::{process::ExitCode, time::Duration};

use anyhow::Result;
use clap::Args;

use super::{
    client,
    render::human_bytes,
    table::{Rates, Row},
};
use crate::api::{Doc, FlowsEndpoint};

#[derive(Debug, Args)]
pub struct FlowsArgs {
    #[command(flatten)]
    agent: client::AgentArgs,
    /// One JSON document per refresh
    #[arg(long)]
    json: bool,
    /// Refresh every second until interrupted
    #[arg(long)]
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

pub fn flows(args: FlowsArgs) -> Result<ExitCode> {
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
