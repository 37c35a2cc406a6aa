//! The flow table at 100k and 1M flows: filling it (and past it: evictions
//! must be counted), reading it, the agent's per-read work (growth, labels,
//! metrics), its memory, and the size and time of a /metrics scrape.
//!
//! Run by `cargo xtask bench`; writes `$NETOBS_BENCH_DIR/scale.json`.
use std::time::Instant;

use netobs::{
    datapath::{names, testrun::RunPacket, Datapath, Options},
    inventory::Inventory,
};
use netobs_common::Direction;
use netobs_tests::packets::{self, Net};
use serde_json::json;

#[path = "support/agent.rs"]
mod agent;
use agent::Agent;

/// Inner IPv4 source and UDP source port of `packets::vxlan(udp(...))`.
const INNER_SRC: usize = 14 + 20 + 8 + 8 + 14 + 12;
const INNER_SPORT: usize = 14 + 20 + 8 + 8 + 14 + 20;

fn rss_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

const MIB: f64 = 1024.0 * 1024.0;

/// Kernel memory of each of netobs's maps now loaded (one datapath at a
/// time), by name, as the kernel accounts it (bpftool's bytes_memlock).
fn map_memory() -> std::collections::BTreeMap<String, u64> {
    let out = std::process::Command::new("bpftool")
        .args(["map", "show", "--json"])
        .output()
        .expect("bpftool");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let mut m = std::collections::BTreeMap::new();
    for map in v.as_array().into_iter().flatten() {
        let name = map["name"].as_str().unwrap_or_default();
        if names::ALL_MAPS.contains(&name) {
            *m.entry(name.to_owned()).or_default() += map["bytes_memlock"].as_u64().unwrap_or(0);
        }
    }
    m
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    if !netobs_tests::privilege::require_root("bench scale") {
        return;
    }
    let mut rows = Vec::new();
    let default_memory = {
        let _dp = Datapath::load(&Options::default()).expect("loading the datapath");
        map_memory()
    };
    println!(
        "kernel memory of the maps at the default sizes: {:.1} MiB, of which the flow cache {:.1} MiB\n",
        default_memory.values().sum::<u64>() as f64 / MIB,
        default_memory.get("FLOW_CACHE").copied().unwrap_or(0) as f64 / MIB
    );
    println!("| flows | fill s | evicted | read ms (batched) | read ms (one by one) | agent first read ms | agent next read ms | agent peak RSS MiB | RSS before MiB | /metrics render ms | /metrics KiB |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for table in [100_000u32, 1_000_000] {
        let opts = Options {
            flow_table_size: table,
            new_flow_events: false,
            http_events: false,
            ..Options::default()
        };
        let mut dp = Datapath::load(&opts).expect("loading the datapath (root needed)");
        dp.register_interface(1).expect("lo");
        let inner = packets::udp(&Net::containers(), 1, 53, b"q");
        let mut pkt = packets::vxlan(&Net::nodes(), 4789, 4097, &inner);
        // 10% more flows than the table holds: the excess must be evicted.
        let total = table as u64 + table as u64 / 10;
        let t = Instant::now();
        for i in 0..total {
            pkt[INNER_SRC + 2] = (i >> 24) as u8;
            pkt[INNER_SRC + 3] = (i >> 16) as u8;
            pkt[INNER_SPORT..INNER_SPORT + 2].copy_from_slice(&(i as u16).to_be_bytes());
            dp.run_tc(Direction::Ingress, &RunPacket::new(&pkt), 1)
                .expect("tc run");
        }
        let fill = t.elapsed().as_secs_f64();

        let t = Instant::now();
        let mut read_batched_n = 0usize;
        let answered = dp
            .flows_batched(|keys, _| read_batched_n += keys.len())
            .expect("batch lookup");
        assert!(answered, "the kernel answers batch lookups");
        let read_batched = ms(t);
        let read_single = if table <= 100_000 {
            let t = Instant::now();
            let n = dp.flows_one_by_one().expect("one by one").len();
            assert!(n > 0);
            Some(ms(t))
        } else {
            None
        };

        // The agent's own reads, with its peak memory from here on: the
        // first read sees every flow grow, the second is the steady state.
        let _ = std::fs::write("/proc/self/clear_refs", "5");
        let rss_before = rss_kib("VmRSS:") as f64 / 1024.0;
        let mut agent = Agent::new(Inventory::default());
        let t = Instant::now();
        let first = agent.read(&dp);
        let agent_ms = ms(t);
        drop(first);
        let t = Instant::now();
        let read = agent.read(&dp);
        let steady_ms = ms(t);
        let snap = read.snapshot;
        let evicted = snap.health.flow_evictions;
        let memory = map_memory();
        // Flows still in a cache slot whose table entry was evicted are
        // read too.
        assert!(snap.totals.flows >= read_batched_n);
        assert_eq!(agent.poller.tracked_flows(), snap.totals.flows);
        let stats = dp.stats().expect("stats");
        let reinserted = stats[netobs_common::Stat::FlowsReinserted as usize];
        let m = agent.exporter.metrics();
        let t = Instant::now();
        let text = m.render();
        let render = ms(t);
        let peak = rss_kib("VmHWM:") as f64 / 1024.0;
        println!(
            "| {table} | {fill:.1} | {evicted} | {read_batched:.0} | {} | {agent_ms:.0} | {steady_ms:.0} | {peak:.0} | {rss_before:.0} | {render:.2} | {:.1} |",
            read_single.map_or("-".into(), |v| format!("{v:.0}")),
            text.len() as f64 / 1024.0
        );
        assert_eq!(
            read_batched_n as u64 + evicted,
            total + reinserted,
            "every insert is in the table or counted as evicted"
        );
        println!(
            "  kernel memory of the maps at {table} flows: {:.1} MiB, of which the flow cache {:.1} MiB",
            memory.values().sum::<u64>() as f64 / MIB,
            memory.get("FLOW_CACHE").copied().unwrap_or(0) as f64 / MIB
        );
        rows.push(json!({
            "flows": table, "inserted": total, "fill_s": fill, "evicted": evicted,
            "read_batched_ms": read_batched, "read_one_by_one_ms": read_single,
            "agent_poll_ms": agent_ms, "agent_steady_poll_ms": steady_ms,
            "peak_rss_mib": peak, "rss_before_agent_mib": rss_before, "metrics_render_ms": render,
            "metrics_bytes": text.len(),
            "map_bytes": memory,
        }));
        drop(snap);
        drop(agent);
    }
    let dir = std::env::var("NETOBS_BENCH_DIR").unwrap_or_else(|_| "target/bench".into());
    let _ = std::fs::create_dir_all(&dir);
    std::fs::write(
        format!("{dir}/scale.json"),
        serde_json::to_string_pretty(&json!({"rows": rows, "default_map_bytes": default_memory}))
            .unwrap_or_default(),
    )
    .expect("writing scale.json");
}
