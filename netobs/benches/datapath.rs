//! Per-packet cost of the kernel programs, through BPF_PROG_TEST_RUN with a
//! large repeat count, against a do-nothing program on the same hook and the
//! same packet, alternated in the same run. Medians of several runs. Then
//! the same for two programs that do less (`netobs-ebpf/src/bench.rs`): one
//! per-CPU counter, and issue #10's naive classifier, on the packets the
//! targets name.
//!
//! Run by `cargo xtask bench`; writes `$NETOBS_BENCH_DIR/datapath.json`.
//! Runs without the kernel's run-time statistics (`bpf_stats.rs`), unless
//! `NETOBS_BENCH_TIMED=1` asks for them: then every run is timed by the
//! kernel, as live, and nothing of a program overlaps with the test loop.
use std::time::Duration;

use netobs::datapath::{attach::BaselineProgram, testrun::RunPacket, Datapath, Options};
use netobs_common::Direction;
use netobs_tests::packets::{self, Net};
use serde_json::json;

#[path = "support/bpf_stats.rs"]
mod bpf_stats;

const REPEAT: u32 = 1_000_000;
/// Runs per cell (`NETOBS_BENCH_RUNS` overrides).
const RUNS: usize = 7;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn ns(d: Duration) -> f64 {
    d.as_secs_f64() * 1e9
}

/// Which load a row runs on (its index in `loads`).
#[derive(Clone, Copy, PartialEq)]
enum Load {
    Plain,
    /// 8 user patterns.
    Patterns,
    /// Without the fixed-offset parser (`fast_parse`): the general
    /// parser's cost, beside the fast path's in the same run.
    General,
}

impl Load {
    const ALL: [Load; 3] = [Load::Plain, Load::Patterns, Load::General];

    fn options(self) -> Options {
        // No events: the ring would fill and the cost of a full ring is not
        // the cost of a packet.
        let no_events = Options {
            http_events: false,
            new_flow_events: false,
            ..Options::default()
        };
        match self {
            Load::Plain => no_events,
            Load::Patterns => Options {
                patterns: [
                    "password",
                    "token=",
                    "Authorization",
                    "SELECT ",
                    "secret",
                    "BEGIN RSA",
                    "api_key",
                    "zzzz",
                ]
                .iter()
                .map(|p| p.as_bytes().to_vec())
                .collect(),
                ..no_events
            },
            Load::General => Options {
                fast_path: false,
                ..no_events
            },
        }
    }
}

/// One datapath per `Load`, in `Load::ALL`'s order, from `object` (another
/// build) or the embedded one.
fn loads(object: Option<&[u8]>) -> Vec<Datapath> {
    Load::ALL
        .iter()
        .map(|load| {
            let opts = load.options();
            let mut dp = match object {
                Some(o) => Datapath::load_object(&opts, o).expect("loading NETOBS_BENCH_AB"),
                None => Datapath::load(&opts).expect("loading the datapath (root needed)"),
            };
            dp.register_interface(1).expect("lo");
            dp
        })
        .collect()
}

fn kinds() -> Vec<(&'static str, Vec<u8>, Load)> {
    let http = packets::tcp(
        &Net::containers(),
        40000,
        80,
        b"GET /api/orders HTTP/1.1\r\nHost: web\r\n\r\n",
    );
    let tcp = packets::tcp(&Net::containers(), 40000, 5432, &[0x51; 100]);
    let mut malformed = packets::vxlan(&Net::nodes(), 4789, 4097, &tcp);
    malformed[14] = 0x44;
    vec![
        (
            "plain TCP (not overlay)",
            packets::tcp(&Net::nodes(), 40000, 443, &[0x17; 100]),
            Load::Plain,
        ),
        (
            "VXLAN, inner TCP",
            packets::vxlan(&Net::nodes(), 4789, 4097, &tcp),
            Load::Plain,
        ),
        (
            "VXLAN, inner TCP, general parser",
            packets::vxlan(&Net::nodes(), 4789, 4097, &tcp),
            Load::General,
        ),
        (
            "VXLAN, inner HTTP request",
            packets::vxlan(&Net::nodes(), 4789, 4097, &http),
            Load::Plain,
        ),
        (
            "VXLAN, HTTP + 8 patterns",
            packets::vxlan(&Net::nodes(), 4789, 4097, &http),
            Load::Patterns,
        ),
        // The doctor's kernel checks: a SYN's inner checksum is summed on
        // ingress; gossip is counted per peer in a hash map.
        (
            "VXLAN, inner TCP SYN (checksum)",
            packets::vxlan(
                &Net::nodes(),
                4789,
                4097,
                &packets::tcp_syn(&Net::containers(), 40000, 80),
            ),
            Load::Plain,
        ),
        (
            "UDP DNS (not overlay)",
            packets::udp(&Net::nodes(), 40000, 53, &[0x42; 60]),
            Load::Plain,
        ),
        (
            "UDP gossip 7946 (not overlay)",
            packets::udp(&Net::nodes(), 7946, 7946, &[0x42; 60]),
            Load::Plain,
        ),
        ("ESP", packets::esp(&Net::nodes(), 0xc0ffee, 1), Load::Plain),
        ("malformed", malformed, Load::Plain),
    ]
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    if !netobs_tests::privilege::require_root("bench datapath") {
        return;
    }
    let timed = std::env::var("NETOBS_BENCH_TIMED").is_ok_and(|v| v == "1");
    let (_on, _off) = if timed {
        println!("Each run timed by the kernel (bpf_stats on, NETOBS_BENCH_TIMED=1).\n");
        (Some(bpf_stats::On::new()), None)
    } else {
        (None, Some(bpf_stats::Off::new()))
    };
    let mut dps = loads(None);
    // NETOBS_BENCH_AB=path/to/other.bpf.o: another build of the kernel
    // programs (same records), run alternated with this one and reported
    // beside it: a change's effect, without the drift between two runs.
    let ab_object = std::env::var_os("NETOBS_BENCH_AB").map(|p| {
        let bytes = std::fs::read(&p).expect("reading NETOBS_BENCH_AB");
        // The ELF parser wants 8-aligned data.
        let mut words = vec![0u64; bytes.len().div_ceil(8)];
        // SAFETY: words spans at least bytes.len() bytes.
        unsafe {
            std::ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                words.as_mut_ptr() as *mut u8,
                bytes.len(),
            )
        };
        (words, bytes.len())
    });
    let mut ab = ab_object.as_ref().map(|(words, len)| {
        // SAFETY: the first len bytes of words are the file.
        let object = unsafe { std::slice::from_raw_parts(words.as_ptr() as *const u8, *len) };
        loads(Some(object))
    });

    // `cargo bench --bench datapath -- WORD` measures only the packets
    // whose name holds WORD (for quick comparisons while changing code).
    let only: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let runs: usize = std::env::var("NETOBS_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(RUNS);
    let mut rows = Vec::new();
    if ab.is_some() {
        println!("| packet | hook | netobs ns/pkt | empty ns/pkt | overhead ns | A/B object overhead ns | A/B minus this, paired ns |");
        println!("|---|---|---:|---:|---:|---:|---:|");
    } else {
        println!("| packet | hook | netobs ns/pkt | empty ns/pkt | overhead ns |");
        println!("|---|---|---:|---:|---:|");
    }
    for (name, pkt, load) in kinds() {
        if only.as_ref().is_some_and(|w| !name.contains(w.as_str())) {
            continue;
        }
        let d = &mut dps[load as usize];
        let run = RunPacket::new(&pkt);
        let time = |d: &mut Datapath, xdp: bool| {
            ns(if xdp {
                d.run_xdp(&pkt, REPEAT).expect("xdp run").duration
            } else {
                d.run_tc(Direction::Ingress, &run, REPEAT)
                    .expect("tc run")
                    .duration
            })
        };
        for xdp in [false, true] {
            let (mut full, mut empty, mut diff, mut ab_diff, mut paired) =
                (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for _ in 0..runs {
                let e = ns(d.run_empty(xdp, &run, REPEAT).expect("empty run").duration);
                let f = time(d, xdp);
                full.push(f);
                empty.push(e);
                diff.push(f - e);
                if let Some(others) = ab.as_mut() {
                    let other = time(&mut others[load as usize], xdp);
                    ab_diff.push(other - e);
                    // Paired with the run just before it: drift cancels.
                    paired.push(other - f);
                }
            }
            let (f, e, o) = (median(full), median(empty), median(diff));
            let hook = if xdp { "xdp" } else { "tc" };
            if ab.is_some() {
                println!(
                    "| {name} | {hook} | {f:.1} | {e:.1} | {o:.1} | {:.1} | {:+.1} |",
                    median(ab_diff),
                    median(paired)
                );
            } else {
                println!("| {name} | {hook} | {f:.1} | {e:.1} | {o:.1} |");
            }
            rows.push(json!({"packet": name, "hook": hook, "netobs_ns": f, "empty_ns": e, "overhead_ns": o}));
        }
    }
    let baselines = baselines(&mut dps[Load::Plain as usize], only.as_deref(), runs);
    // The do-nothing programs' runs were counted: statistics were on
    // (another process holds them), and every figure above is a timed run.
    let timed = timed
        || bpf_stats::totals("bench_tc_empty").1 > 0
        || bpf_stats::totals("bench_xdp_empty").1 > 0;
    if timed {
        eprintln!("These runs were timed by the kernel (bpf_stats on): figures of another kind than untimed runs'.");
    }
    let dir = std::env::var("NETOBS_BENCH_DIR").unwrap_or_else(|_| "target/bench".into());
    let _ = std::fs::create_dir_all(&dir);
    let out = json!({"repeat": REPEAT, "runs": runs, "runs_timed": timed, "statistic": "median", "rows": rows, "baselines": baselines});
    std::fs::write(
        format!("{dir}/datapath.json"),
        serde_json::to_string_pretty(&out).unwrap_or_default(),
    )
    .expect("writing datapath.json");
}

/// The counter's and the naive classifier's overhead over the empty program
/// (median of alternated runs), on the packets the targets name: what the
/// targets ask of netobs, next to what doing less costs.
fn baselines(dp: &mut Datapath, only: Option<&str>, runs: usize) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    let wanted: Vec<_> = kinds()
        .into_iter()
        .filter(|(name, _, load)| {
            *load == Load::Plain
                && ["plain TCP (not overlay)", "VXLAN, inner TCP", "ESP"].contains(name)
                && only.is_none_or(|w| name.contains(w))
        })
        .collect();
    if wanted.is_empty() {
        return out;
    }
    println!("\n| packet | hook | counter overhead ns | naive classifier overhead ns |");
    println!("|---|---|---:|---:|");
    for (name, pkt, _) in wanted {
        let run = RunPacket::new(&pkt);
        for (hook, empty, counter, naive) in [
            (
                "tc",
                BaselineProgram::Tc,
                BaselineProgram::TcCounter,
                BaselineProgram::TcNaive,
            ),
            (
                "xdp",
                BaselineProgram::Xdp,
                BaselineProgram::XdpCounter,
                BaselineProgram::XdpNaive,
            ),
        ] {
            let mut time = |b| {
                ns(dp
                    .run_baseline(b, &run, REPEAT)
                    .expect("baseline run")
                    .duration)
            };
            let (mut c, mut n) = (Vec::new(), Vec::new());
            for _ in 0..runs {
                let e = time(empty);
                c.push(time(counter) - e);
                n.push(time(naive) - e);
            }
            let (c, n) = (median(c), median(n));
            println!("| {name} | {hook} | {c:.1} | {n:.1} |");
            out.push(json!({"packet": name, "hook": hook, "counter_overhead_ns": c, "naive_overhead_ns": n}));
        }
    }
    out
}
