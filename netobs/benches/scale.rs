//! The flow table at 100k and 1M flows: filling it (and past it: evictions
//! must be counted), reading it, the agent's per-read work (growth, labels,
//! metrics), its memory, and the size and time of a /metrics scrape.
//!
//! Run by `cargo xtask bench`; writes `$NETOBS_BENCH_DIR/scale.json`.
use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use netobs::{
    datapath::{testrun::RunPacket, Datapath, Options},
    export::{
        alerts::{Alerts, Policy},
        metrics::Metrics,
    },
    inventory::Inventory,
    poll::{LastRequests, Poller},
};
use netobs_common::Direction;
use netobs_tests::packets::{self, Net};
use serde_json::json;

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
        let inv = Arc::new(Inventory::default());
        let ifaces = [(1, "lo".to_owned(), 1)];
        let mut poller = Poller::new(
            Metrics::new(10_000).expect("registry"),
            Alerts::new(Policy::default()),
            Duration::from_secs(300),
        );
        let t = Instant::now();
        let last = LastRequests::default();
        let first = poller.poll(&dp, &ifaces, &inv, &last).expect("first read");
        let agent_ms = ms(t);
        drop(first);
        let t = Instant::now();
        let read = poller.poll(&dp, &ifaces, &inv, &last).expect("second read");
        let steady_ms = ms(t);
        let snap = read.snapshot;
        let evicted = snap.health.flow_evictions;
        assert_eq!(snap.totals.flows, read_batched_n);
        assert_eq!(poller.tracked_flows(), read_batched_n);
        let m = &poller.metrics;
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
            total,
            "every flow is in the table or counted as evicted"
        );
        rows.push(json!({
            "flows": table, "inserted": total, "fill_s": fill, "evicted": evicted,
            "read_batched_ms": read_batched, "read_one_by_one_ms": read_single,
            "agent_poll_ms": agent_ms, "agent_steady_poll_ms": steady_ms,
            "peak_rss_mib": peak, "rss_before_agent_mib": rss_before, "metrics_render_ms": render,
            "metrics_bytes": text.len(),
        }));
        drop(snap);
        drop(poller);
    }
    let dir = std::env::var("NETOBS_BENCH_DIR").unwrap_or_else(|_| "target/bench".into());
    let _ = std::fs::create_dir_all(&dir);
    std::fs::write(
        format!("{dir}/scale.json"),
        serde_json::to_string_pretty(&json!({"rows": rows})).unwrap_or_default(),
    )
    .expect("writing scale.json");
}
