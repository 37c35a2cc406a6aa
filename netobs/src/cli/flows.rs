//! `netobs flows`: the running agent's flow table, once or every second, as
//! a table or as JSON for scripts.
use std::{collections::HashMap, net::SocketAddr, process::ExitCode, time::Duration};

use anyhow::{Context, Result};
use clap::Args;
use serde_json::Value;

use super::{client, render::human_bytes};
use crate::agent::DEFAULT_METRICS_ADDR;

#[derive(Debug, Args)]
pub struct FlowsArgs {
    /// The agent's --metrics-addr
    #[arg(long, value_name = "ADDR", default_value = DEFAULT_METRICS_ADDR)]
    agent: SocketAddr,
    /// One JSON document per refresh
    #[arg(long)]
    json: bool,
    /// Refresh every second until interrupted
    #[arg(long)]
    watch: bool,
}

/// Who: the service, else the address.
fn who(f: &Value, service: &str, addr: &str) -> String {
    match f["labels"][service].as_str() {
        Some(s) if !s.is_empty() && s != "unknown" => s.to_owned(),
        _ => f[addr].as_str().unwrap_or("-").to_owned(),
    }
}

fn key(f: &Value) -> String {
    format!(
        "{}|{}|{}|{}|{}|{}|{}",
        f["direction"],
        f["class"],
        f["outer_src"],
        f["outer_dst"],
        f["vni"],
        f["spi"],
        f["inner_src"]
    ) + &format!(
        "|{}|{}|{}",
        f["inner_dst"], f["inner_sport"], f["inner_dport"]
    )
}

fn table(flows: &[Value], prev: &HashMap<String, (u64, u64)>, dt: f64) -> String {
    let mut out = format!(
        "{:<12} {:>8} {:<10} {:<14} {:<24} {:<24} {:>9} {:>10} {:>10} {:>10}\n",
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
    for f in flows {
        let class = f["class"].as_str().unwrap_or("?");
        let mark = match (class, f["labels"]["encrypted"].as_str()) {
            ("esp", _) => "ESP",
            ("vxlan", Some("true")) => "PLAIN!!",
            ("vxlan", _) => "PLAIN",
            _ => class,
        };
        let id = f["vni"]
            .as_u64()
            .map(|v| v.to_string())
            .or_else(|| f["spi"].as_u64().map(|s| format!("{s:#x}")));
        let (p, b) = (
            f["packets"].as_u64().unwrap_or(0),
            f["bytes"].as_u64().unwrap_or(0),
        );
        let (pp, pb) = prev.get(&key(f)).copied().unwrap_or((p, b));
        let rate = |now: u64, before: u64| {
            if dt > 0.0 {
                (now.saturating_sub(before)) as f64 / dt
            } else {
                0.0
            }
        };
        let net = f["labels"]["network"]
            .as_str()
            .filter(|n| !n.is_empty())
            .unwrap_or("-");
        out.push_str(&format!(
            "{:<12} {:>8} {:<10} {:<14} {:<24} {:<24} {:>9.0} {:>10} {:>10} {:>10}\n",
            net,
            id.unwrap_or_else(|| "-".into()),
            mark,
            f["labels"]["peer_node"].as_str().unwrap_or("-"),
            who(f, "src_service", "inner_src"),
            who(f, "dst_service", "inner_dst"),
            rate(p, pp),
            human_bytes(rate(b, pb) as u64),
            p,
            human_bytes(b),
        ));
    }
    out
}

pub fn flows(args: FlowsArgs) -> Result<ExitCode> {
    let mut prev: HashMap<String, (u64, u64)> = HashMap::new();
    loop {
        let body = client::get(args.agent, "/api/v1/flows")?;
        let flows: Vec<Value> =
            serde_json::from_str(&body).context("the agent's flow list is not JSON")?;
        if args.json {
            println!("{}", serde_json::to_string(&flows)?);
        } else {
            print!(
                "{}",
                table(&flows, &prev, if args.watch { 1.0 } else { 0.0 })
            );
        }
        if !args.watch {
            return Ok(ExitCode::SUCCESS);
        }
        prev = flows
            .iter()
            .map(|f| {
                (
                    key(f),
                    (
                        f["packets"].as_u64().unwrap_or(0),
                        f["bytes"].as_u64().unwrap_or(0),
                    ),
                )
            })
            .collect();
        std::thread::sleep(Duration::from_secs(1));
        if !args.json {
            println!();
        }
    }
}
