//! The flow table at 100k and 1M flows: filling it (and past it: evictions
//! must be counted), reading it, the agent's per-read work (growth, labels,
//! metrics), its memory, and the size and time of a /metrics scrape.
//!
//! Run by `cargo xtask bench`; writes `$NETOBS_BENCH_DIR/scale.json`.
use std::time::Instant;

use netobs::{
    datapath::{testrun::RunPacket, Datapath, Options},
    export::metrics::{self, Metrics},
    flows::{aggregate::Aggregator, label::Labeler, Clock, Flow, Snapshot},
    inventory::Inventory,
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
    println!("| flows | fill s | evicted | read ms (batched) | read ms (one by one) | agent read+label+export ms | peak RSS MiB | /metrics render ms | /metrics KiB |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
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
        let raw = dp.flows_batched().expect("batch lookup");
        let read_batched = ms(t);
        let read_single = if table <= 100_000 {
            let t = Instant::now();
            let n = dp.flows_one_by_one().expect("one by one").len();
            assert!(n > 0);
            Some(ms(t))
        } else {
            None
        };

        // What the agent does with one read: growth, labels, series.
        let inv = Inventory::default();
        let mut agg = Aggregator::default();
        let mut m = Metrics::new(10_000).expect("registry");
        let t = Instant::now();
        let raw2 = dp.flows_batched().expect("batch lookup");
        let labeler = Labeler::new(&inv);
        for (k, v, g) in agg.flows(&raw2) {
            let f = Flow::from_raw(k, v, &[], Clock::Unix);
            let l = labeler.label(&f);
            m.inc(
                &metrics::OVERLAY_PACKETS,
                &[
                    &l.network,
                    &l.vni,
                    l.encrypted,
                    f.class,
                    f.direction,
                    &l.peer_node,
                ],
                g.packets,
            );
        }
        let snap = Snapshot::build(
            &dp.counters().expect("counters"),
            &[(1, "lo".into(), 1)],
            raw2,
            &dp.stats().expect("stats"),
            &[],
            Clock::Unix,
        );
        let agent_ms = ms(t);
        let evicted = snap.health.flow_evictions;
        let t = Instant::now();
        let text = m.render();
        let render = ms(t);
        let peak = rss_kib("VmHWM:") as f64 / 1024.0;
        println!(
            "| {table} | {fill:.1} | {evicted} | {read_batched:.0} | {} | {agent_ms:.0} | {peak:.0} | {render:.2} | {:.1} |",
            read_single.map_or("-".into(), |v| format!("{v:.0}")),
            text.len() as f64 / 1024.0
        );
        assert_eq!(
            raw.len() as u64 + evicted,
            total,
            "every flow is in the table or counted as evicted"
        );
        rows.push(json!({
            "flows": table, "inserted": total, "fill_s": fill, "evicted": evicted,
            "read_batched_ms": read_batched, "read_one_by_one_ms": read_single,
            "agent_poll_ms": agent_ms, "peak_rss_mib": peak, "metrics_render_ms": render,
            "metrics_bytes": text.len(),
        }));
        drop(snap);
        drop(agg);
    }
    let dir = std::env::var("NETOBS_BENCH_DIR").unwrap_or_else(|_| "target/bench".into());
    let _ = std::fs::create_dir_all(&dir);
    std::fs::write(
        format!("{dir}/scale.json"),
        serde_json::to_string_pretty(&json!({"rows": rows})).unwrap_or_default(),
    )
    .expect("writing scale.json");
}
