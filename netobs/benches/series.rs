//! How many series one agent exports for a busy swarm, and how big its
//! scrape is: 5 nodes, 5 overlay networks, 50 services (10 a network, a
//! task of each on every node), every service calling every other one on
//! its network over HTTP, each call crossing to another node. This node
//! sees each pair once as the client's node and once as the server's, in
//! both directions: the most any one agent exports for that swarm.
//!
//! Run by `cargo xtask bench`; writes `$NETOBS_BENCH_DIR/series.json`.
use std::{collections::BTreeMap, net::IpAddr};

use netobs::{
    datapath::{testrun::RunPacket, Datapath, Options},
    inventory::{Endpoint, EndpointKind, Inventory, Network, Node, SwarmState},
};
use netobs_common::Direction;
use netobs_tests::packets::{self, Net};
use serde_json::json;

#[path = "support/agent.rs"]
mod agent;
use agent::Agent;

const NODES: u8 = 5;
const NETWORKS: u8 = 5;
const SERVICES_PER_NETWORK: u8 = 10;
/// What one Prometheus server is taken to carry: a round figure for a
/// server of 16-32 GiB (Prometheus's head block costs a few KiB a series).
const SERIES_PER_PROMETHEUS: f64 = 1_000_000.0;
const SCRAPE_INTERVAL_S: f64 = 15.0;

fn node_addr(n: u8) -> IpAddr {
    IpAddr::from([192, 0, 2, n + 1])
}

/// Service `s` of network `net`, its task on node `n`.
fn task_addr(net: u8, s: u8, n: u8) -> IpAddr {
    IpAddr::from([10, net, s, n + 2])
}

fn inventory() -> Inventory {
    let mut inv = Inventory {
        docker_up: true,
        swarm: Some(SwarmState {
            node_id: "n0".into(),
            node_addr: Some(node_addr(0)),
            hostname: "node0".into(),
            manager: true,
            data_path_port: Some(4789),
        }),
        nodes: (0..NODES)
            .map(|n| Node {
                id: format!("n{n}"),
                hostname: format!("node{n}"),
                role: if n == 0 { "manager" } else { "worker" }.into(),
                addr: Some(node_addr(n)),
            })
            .collect(),
        ..Inventory::default()
    };
    for net in 0..NETWORKS {
        inv.networks.push(Network {
            id: format!("net{net}"),
            name: format!("net{net}"),
            vnis: vec![4097 + u32::from(net)],
            encrypted: false,
            ingress: false,
            options: BTreeMap::new(),
            subnets: vec![format!("10.{net}.0.0/16")],
            peers: Vec::new(),
        });
        for s in 0..SERVICES_PER_NETWORK {
            for n in 0..NODES {
                inv.endpoints.push(Endpoint {
                    network_id: format!("net{net}"),
                    ip: task_addr(net, s, n),
                    kind: EndpointKind::Task,
                    service: Some(format!("svc{net}-{s}")),
                    task: Some(format!("svc{net}-{s}.{n}")),
                    container: None,
                    node_ip: Some(node_addr(n)),
                    state: Some("running".into()),
                });
            }
        }
    }
    inv
}

fn run(dp: &mut Datapath, dir: Direction, outer: &Net, vni: u32, inner: &[u8]) {
    dp.run_tc(
        dir,
        &RunPacket::new(&packets::vxlan(outer, 4789, vni, inner)),
        1,
    )
    .expect("tc run");
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    if !netobs_tests::privilege::require_root("bench series") {
        return;
    }
    let mut dp = Datapath::load(&Options::default()).expect("loading the datapath");
    dp.register_interface(1).expect("lo");
    let me = node_addr(0);
    let mut calls = 0u64;
    for net in 0..NETWORKS {
        let vni = 4097 + u32::from(net);
        for a in 0..SERVICES_PER_NETWORK {
            for b in (0..SERVICES_PER_NETWORK).filter(|b| *b != a) {
                // a's task here calls b's task on another node, and b's
                // task here is called by a's on another node.
                let other = 1 + (a + b) % (NODES - 1);
                let remote = node_addr(other);
                for (client, server, dir_out) in [
                    (task_addr(net, a, 0), task_addr(net, b, other), true),
                    (task_addr(net, a, other), task_addr(net, b, 0), false),
                ] {
                    let sport = 40_000 + u16::from(a) * 100 + u16::from(b);
                    let inner = Net {
                        src: client,
                        dst: server,
                        vlans: 0,
                    };
                    let (req_outer, req_dir, resp_dir) = if dir_out {
                        (
                            Net {
                                src: me,
                                dst: remote,
                                vlans: 0,
                            },
                            Direction::Egress,
                            Direction::Ingress,
                        )
                    } else {
                        (
                            Net {
                                src: remote,
                                dst: me,
                                vlans: 0,
                            },
                            Direction::Ingress,
                            Direction::Egress,
                        )
                    };
                    run(
                        &mut dp,
                        req_dir,
                        &req_outer,
                        vni,
                        &packets::tcp_syn(&inner, sport, 80),
                    );
                    let req = b"GET /api HTTP/1.1\r\nHost: svc\r\n\r\n";
                    run(
                        &mut dp,
                        req_dir,
                        &req_outer,
                        vni,
                        &packets::tcp(&inner, sport, 80, req),
                    );
                    let resp = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
                    run(
                        &mut dp,
                        resp_dir,
                        &req_outer.reversed(),
                        vni,
                        &packets::tcp(&inner.reversed(), 80, sport, resp),
                    );
                    calls += 1;
                }
            }
        }
    }

    let mut agent = Agent::new(inventory());
    for _ in 0..2 {
        agent.read(&dp);
    }
    let text = agent.exporter.metrics().render();
    let mut by_family: BTreeMap<String, u64> = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let family = line.split(['{', ' ']).next().unwrap_or_default();
        *by_family.entry(family.to_owned()).or_default() += 1;
    }
    let series: u64 = by_family.values().sum();
    let nodes_per_prometheus = (SERIES_PER_PROMETHEUS / series as f64).floor();
    println!(
        "{NODES} nodes, {NETWORKS} networks, {} services, {calls} HTTP calls seen by this node",
        NETWORKS * SERVICES_PER_NETWORK
    );
    println!(
        "series one agent exports: {series}; a scrape is {:.1} KiB; {:.0} samples/s at a {SCRAPE_INTERVAL_S} s interval",
        text.len() as f64 / 1024.0,
        series as f64 / SCRAPE_INTERVAL_S
    );
    println!(
        "one Prometheus at {SERIES_PER_PROMETHEUS} series carries {nodes_per_prometheus} such nodes"
    );
    println!("| metric | series |\n|---|---:|");
    let mut largest: Vec<_> = by_family.iter().collect();
    largest.sort_by_key(|(_, n)| std::cmp::Reverse(**n));
    for (family, n) in largest.iter().take(8) {
        println!("| {family} | {n} |");
    }
    let dir = std::env::var("NETOBS_BENCH_DIR").unwrap_or_else(|_| "target/bench".into());
    let _ = std::fs::create_dir_all(&dir);
    std::fs::write(
        format!("{dir}/series.json"),
        serde_json::to_string_pretty(&json!({
            "nodes": NODES, "networks": NETWORKS,
            "services": NETWORKS * SERVICES_PER_NETWORK, "calls": calls,
            "series": series, "scrape_bytes": text.len(),
            "samples_per_s": series as f64 / SCRAPE_INTERVAL_S,
            "series_per_prometheus": SERIES_PER_PROMETHEUS,
            "nodes_per_prometheus": nodes_per_prometheus,
            "by_metric": by_family,
        }))
        .unwrap_or_default(),
    )
    .expect("writing series.json");
}
