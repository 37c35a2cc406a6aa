//! Live cost on real VXLAN traffic between two namespaces (iperf3 TCP sent
//! from host A, UDP with 64-byte payloads arriving at A, and HTTP requests
//! from A on a connection each), side by side
//! in the same run: nothing attached, netobs in TC mode, netobs in XDP
//! mode, the benchmark baselines (`netobs-ebpf/src/bench.rs`: the
//! do-nothing program, one that only reads the packet's first two cache
//! lines, one per-CPU counter, issue #10's naive classifier), `tcpdump -w
//! /dev/null`, `ngrep HTTP`. Observers are alternated run by run; medians
//! are reported.
//!
//! Kernel cost comes from bpf_stats: a program's run time per packet. On
//! TC the do-nothing classifier is attached beside the observer's programs
//! in the same run; on XDP a program is alone on the hook, so "empty xdp"
//! is a row of its own (the statistics themselves cost tens of ns per
//! run, in every figure).
//! The sniffers' CPU is their process time: it leaves out the kernel's copy
//! of every packet to their socket, which the machine's busy time per
//! packet (every CPU, compared with no observer) includes. Run by
//! `cargo xtask bench`; writes `$NETOBS_BENCH_DIR/live.json`.
use std::{
    collections::BTreeMap, fs::File, os::fd::AsRawFd, process::Stdio, sync::mpsc, time::Duration,
};

use netobs::{
    api::RunReport,
    datapath::{attach::BaselineProgram, names, Datapath, Options},
};
use netobs_tests::{
    lab::{self, LabConfig, Process, TwoHostLab},
    link,
    netns::Netns,
    traffic,
};
use serde_json::{json, Value};

#[path = "support/bpf_stats.rs"]
mod bpf_stats;

const SECONDS: u64 = 4;
const RUNS: usize = 3;
const OBSERVERS: [&str; 11] = [
    "none",
    "netobs tc",
    "netobs xdp",
    "empty xdp",
    "touch xdp",
    "counter tc",
    "counter xdp",
    "naive tc",
    "naive xdp",
    "tcpdump -w /dev/null",
    "ngrep HTTP",
];

/// What the two hosts carry during a sample.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Workload {
    /// iperf3 TCP from A.
    Tcp,
    /// iperf3 UDP with 64-byte payloads, arriving at A.
    Udp,
    /// HTTP requests from A, one connection each (the lab's server closes
    /// it), from four threads: every request is an HTTP event and every
    /// connection a new flow.
    Http,
}

impl Workload {
    const ALL: [Workload; 3] = [Workload::Tcp, Workload::Udp, Workload::Http];

    fn name(self) -> &'static str {
        match self {
            Workload::Tcp => "TCP",
            Workload::Udp => "UDP 64 B",
            Workload::Http => "HTTP",
        }
    }

    /// HTTP runs only against netobs and the empty program: it is there for
    /// the cost of events, which the other observers do not have.
    fn wants(self, observer: &str) -> bool {
        self != Workload::Http
            || ["none", "netobs tc", "netobs xdp", "empty xdp"].contains(&observer)
    }
}

/// Port of the lab's HTTP server on host B.
const HTTP_PORT: u16 = 8080;

/// Requests answered from host A in `SECONDS`, four connections at a time.
fn http_load(ns: &Netns) -> u64 {
    let to: std::net::SocketAddr = format!("{}:{HTTP_PORT}", lab::OVERLAY_B)
        .parse()
        .expect("address");
    let end = std::time::Instant::now() + Duration::from_secs(SECONDS);
    std::thread::scope(|s| {
        let threads: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(move || {
                    ns.run_in(move || {
                        let mut answered = 0u64;
                        while std::time::Instant::now() < end {
                            if traffic::http_request_here(to, "GET", "/api/orders")
                                .is_ok_and(|status| status == 200)
                            {
                                answered += 1;
                            }
                        }
                        answered
                    })
                    .unwrap_or(0)
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap_or(0)).sum()
    })
}

fn ticks(pid: u32) -> u64 {
    let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    // Fields after the command name (which may contain spaces).
    let rest = s.rsplit(')').next().unwrap_or_default();
    let f: Vec<&str> = rest.split_whitespace().collect();
    let get = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    get(11) + get(12)
}

/// Busy clock ticks of the whole machine (every CPU, user, system, irq,
/// softirq): what an observer costs including the kernel's work for it,
/// such as copying each packet to a sniffer's socket.
fn machine_ticks() -> u64 {
    let Ok(s) = std::fs::read_to_string("/proc/stat") else {
        return 0;
    };
    let Some(cpu) = s.lines().find(|l| l.starts_with("cpu ")) else {
        return 0;
    };
    let f: Vec<u64> = cpu
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal
    [0, 1, 2, 5, 6, 7].iter().filter_map(|&i| f.get(i)).sum()
}

fn tick_ns() -> f64 {
    // SAFETY: sysconf has no preconditions.
    1e9 / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

/// Whether `name` is wanted: `var` unset, or a comma-separated list that
/// holds it.
fn listed(var: &str, name: &str) -> bool {
    std::env::var(var).map_or(true, |l| l.split(',').any(|x| x == name))
}

/// The do-nothing classifier on `dev` inside `ns`, held by a thread.
struct Baseline {
    stop: mpsc::Sender<()>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Baseline {
    fn attach(ns: &Netns, dev: &str, program: BaselineProgram) -> Baseline {
        let file = File::open(ns.path()).expect("namespace");
        let dev = dev.to_owned();
        let (ready_tx, ready) = mpsc::channel();
        let (stop, stop_rx) = mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            // SAFETY: a valid namespace fd; affects this thread only.
            assert_eq!(
                unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) },
                0,
                "setns"
            );
            let mut dp = Datapath::load(&Options::default()).expect("loading the baseline");
            let att = dp
                .attach_baseline(&dev, program)
                .expect("attaching the baseline");
            let _ = ready_tx.send(());
            let _ = stop_rx.recv();
            drop(att);
        });
        ready.recv().expect("baseline attached");
        Baseline {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Baseline {
    fn drop(&mut self) {
        let _ = self.stop.send(());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Sample {
    mbps: f64,
    /// HTTP: requests answered per second.
    requests_per_sec: Option<f64>,
    pps: f64,
    cpu_ns_per_pkt: Option<f64>,
    /// The observer's CPU time over the sample, in % of one core.
    cpu_pct: Option<f64>,
    /// Busy time of the whole machine per packet.
    machine_ns_per_pkt: f64,
    /// Run time per packet of the observer's programs (bpf_stats): netobs's
    /// or a baseline's; and of the do-nothing program beside them.
    program_ns: Option<f64>,
    empty_ns: Option<f64>,
    /// How often the observer's programs ran, per second.
    program_runs: Option<f64>,
    missed: Option<i64>,
}

fn observe(lab: &TwoHostLab, observer: &str, workload: Workload) -> Sample {
    let (ns, dev) = lab.host_a();
    let netobs_mode = match observer {
        "netobs tc" => Some("tc"),
        "netobs xdp" => Some("xdp"),
        _ => None,
    };
    let start = quiet_link(ns, dev);
    let mut proc = match observer {
        "none" => None,
        "tcpdump -w /dev/null" => {
            let mut c = ns.command("tcpdump");
            c.args(["-i", dev, "-w", "/dev/null", "-s", "0"])
                .stdout(Stdio::null())
                .stderr(Stdio::piped());
            Some(Process::spawn(c).expect("tcpdump"))
        }
        "ngrep HTTP" => {
            let mut c = ns.command("ngrep");
            c.args(["-q", "-d", dev, "HTTP"])
                .stdout(Stdio::null())
                .stderr(Stdio::piped());
            Some(Process::spawn(c).expect("ngrep"))
        }
        _ => {
            let mut c = ns.command(env!("CARGO_BIN_EXE_netobs"));
            c.args([
                "run",
                "--no-docker",
                "--iface",
                dev,
                "--mode",
                netobs_mode.unwrap_or("tc"),
                "--json",
                "--interval",
                "3600",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
            Some(Process::spawn(c).expect("netobs"))
        }
    };
    if netobs_mode.is_some() {
        wait_attached(ns);
    }
    std::thread::sleep(WARMUP);
    // Whose run time is whose: netobs's TC programs against the empty
    // classifier beside them; its XDP program against the empty XDP
    // program, alone on the hook in its own runs.
    let baseline_program = match observer {
        "netobs tc" => Some(BaselineProgram::Tc),
        "empty xdp" => Some(BaselineProgram::Xdp),
        "touch xdp" => Some(BaselineProgram::XdpTouch),
        "counter tc" => Some(BaselineProgram::TcCounter),
        "counter xdp" => Some(BaselineProgram::XdpCounter),
        "naive tc" => Some(BaselineProgram::TcNaive),
        "naive xdp" => Some(BaselineProgram::XdpNaive),
        _ => None,
    };
    let mut baseline = baseline_program.map(|program| Baseline::attach(ns, dev, program));
    // The observer's own program, and the do-nothing one beside it (TC) or
    // alone on the hook ("empty xdp").
    let mine = match (observer, baseline_program) {
        ("netobs tc", _) => "netobs_tc_",
        ("netobs xdp", _) => "netobs_xdp",
        (_, Some(BaselineProgram::Tc | BaselineProgram::Xdp)) | (_, None) => "-",
        (_, Some(b)) => b.program(),
    };
    let empty = match baseline_program {
        Some(b) if b.is_tc() => names::BENCH_TC_EMPTY,
        Some(BaselineProgram::Xdp) => names::BENCH_XDP_EMPTY,
        _ => "-",
    };
    let pid = proc.as_ref().and_then(|p| p.pid());
    let cpu0 = pid.map(ticks).unwrap_or(0);
    let machine0 = machine_ticks();
    let wall = std::time::Instant::now();
    let (nt0, nc0) = bpf_stats::totals(mine);
    let (et0, ec0) = bpf_stats::totals(empty);
    let link0 = link::stats(ns, dev).expect("link stats");
    let mut requests = None;
    let bps = if workload == Workload::Http {
        requests = Some(http_load(ns));
        None
    } else {
        let udp = workload == Workload::Udp;
        let mut args = vec![
            "-c".to_owned(),
            lab::OVERLAY_B.to_owned(),
            "-t".to_owned(),
            SECONDS.to_string(),
            "-J".to_owned(),
        ];
        if udp {
            // Reversed: the datagrams arrive at host A, where both hooks
            // are. Sent from A, only iperf3's control connection came back
            // through XDP, a few packets a second on cold caches, and its
            // figure was theirs, not the stream's.
            args.extend(["-u", "-l", "64", "-b", "60M", "-R"].map(String::from));
        }
        let out = ns.command("iperf3").args(&args).output().expect("iperf3");
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        if udp {
            v["end"]["sum"]["bits_per_second"].as_f64()
        } else {
            v["end"]["sum_received"]["bits_per_second"].as_f64()
        }
    };
    let link1 = link::stats(ns, dev).expect("link stats");
    let (nt1, nc1) = bpf_stats::totals(mine);
    let (et1, ec1) = bpf_stats::totals(empty);
    let cpu1 = pid.map(ticks).unwrap_or(0);
    let machine1 = machine_ticks();
    let wall = wall.elapsed().as_secs_f64();
    let packets = (link1.rx_packets + link1.tx_packets) - (link0.rx_packets + link0.tx_packets);
    // HTTP has no iperf3 to say: the link's bytes, both ways.
    let bps = bps.unwrap_or(
        ((link1.rx_bytes + link1.tx_bytes) - (link0.rx_bytes + link0.tx_bytes)) as f64 * 8.0
            / SECONDS as f64,
    );
    let program_ns = (nc1 > nc0).then(|| (nt1 - nt0) as f64 / (nc1 - nc0) as f64);
    let empty_ns = (ec1 > ec0).then(|| (et1 - et0) as f64 / (ec1 - ec0) as f64);
    let program_runs = (nc1 > nc0).then(|| (nc1 - nc0) as f64 / wall);
    drop(baseline.take());
    let mut missed = None;
    if let Some(p) = proc.take() {
        let out = p.stop(libc::SIGINT).expect("stopping the observer");
        let text = String::from_utf8_lossy(&out.stdout);
        let err = String::from_utf8_lossy(&out.stderr);
        if netobs_mode.is_some() {
            // The lab carries only benchmark traffic: everything the link
            // carried since before the agent started is what it must have
            // counted.
            if let Some(last) = text.lines().rfind(|l| l.starts_with('{')) {
                let report: RunReport =
                    serde_json::from_str(last).expect("netobs run --json's last line");
                let iface = &report.totals.interfaces[0];
                let (seen_in, seen_out) = (iface.ingress.total(), iface.egress.total());
                let end = link::stats(ns, dev).expect("link stats");
                let rx = (end.rx_packets - start.rx_packets) as i64 - seen_in.packets as i64;
                let tx = (end.tx_packets - start.tx_packets) as i64 - seen_out.packets as i64;
                if rx != 0 || tx != 0 {
                    eprintln!("{observer}: missed {rx} received, {tx} sent");
                }
                missed = Some(rx + tx);
            }
        } else if let Some(l) = err.lines().find(|l| l.contains("dropped by kernel")) {
            missed = l.split_whitespace().next().and_then(|n| n.parse().ok());
        }
    }
    let cpu = pid.map(|_| (cpu1 - cpu0) as f64 * tick_ns() / packets.max(1) as f64);
    Sample {
        mbps: bps / 1e6,
        requests_per_sec: requests.map(|n| n as f64 / SECONDS as f64),
        pps: packets as f64 / SECONDS as f64,
        cpu_ns_per_pkt: cpu,
        cpu_pct: pid.map(|_| (cpu1 - cpu0) as f64 * tick_ns() / 1e9 / wall * 100.0),
        machine_ns_per_pkt: (machine1 - machine0) as f64 * tick_ns() / packets.max(1) as f64,
        program_ns,
        empty_ns,
        program_runs,
        missed,
    }
}

/// The link's counters once it has carried nothing for half a second: the
/// lab carries only the benchmark's traffic, but the last sample's
/// connections may still be closing when iperf3 has returned. Counted from
/// before such packets passed, with the agent attached after them, they
/// showed as netobs missing them (1 received and 1 sent, in one TCP sample
/// on 2026-12-03).
fn quiet_link(ns: &Netns, dev: &str) -> link::LinkStats {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut last = link::stats(ns, dev).expect("link stats");
    loop {
        std::thread::sleep(Duration::from_millis(500));
        let now = link::stats(ns, dev).expect("link stats");
        if now == last || std::time::Instant::now() > deadline {
            return now;
        }
        last = now;
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    if !netobs_tests::privilege::require_root("bench live") {
        return;
    }
    let _stats = bpf_stats::On::new();
    let lab = TwoHostLab::new(LabConfig::default()).expect("lab");
    let mut server = lab.b.command("iperf3");
    server
        .args(["-s", "-B", lab::OVERLAY_B])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let _server = Process::spawn(server).expect("iperf3 server");
    let _http = traffic::HttpServer::start(
        &lab.b,
        format!("{}:{HTTP_PORT}", lab::OVERLAY_B)
            .parse()
            .expect("address"),
    )
    .expect("HTTP server");
    std::thread::sleep(Duration::from_millis(500));
    // NETOBS_BENCH_OBSERVERS="none,netobs tc": only these (while working
    // on one of them).
    let observers: Vec<&str> = OBSERVERS
        .iter()
        .copied()
        .filter(|o| listed("NETOBS_BENCH_OBSERVERS", o))
        .collect();
    // NETOBS_BENCH_WORKLOADS="HTTP": only these workloads, by name.
    let workloads: Vec<Workload> = Workload::ALL
        .into_iter()
        .filter(|w| listed("NETOBS_BENCH_WORKLOADS", w.name()))
        .collect();
    let mut samples: BTreeMap<(Workload, &str), Vec<Sample>> = BTreeMap::new();
    for run in 0..RUNS {
        for &w in &workloads {
            // Alternate the order run by run so drift does not favour one.
            let mut order: Vec<&str> = observers.iter().copied().filter(|o| w.wants(o)).collect();
            if run % 2 == 1 {
                order.reverse();
            }
            for o in order {
                samples.entry((w, o)).or_default().push(observe(&lab, o, w));
            }
        }
    }
    let mut rows = Vec::new();
    let idle = agent_idle(&lab);
    println!("| workload | observer | Mbit/s | packets/s | HTTP requests/s | machine CPU ns/pkt | observer CPU ns/pkt | observer CPU % of a core | program ns/pkt (bpf_stats) | empty program ns/pkt | program runs/s | missed |");
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for workload in Workload::ALL {
        for o in OBSERVERS {
            let Some(v) = samples.get(&(workload, o)) else {
                continue;
            };
            let mbps = median(v.iter().map(|s| s.mbps).collect());
            let pps = median(v.iter().map(|s| s.pps).collect());
            let cpu: Vec<f64> = v.iter().filter_map(|s| s.cpu_ns_per_pkt).collect();
            let some = |f: &dyn Fn(&Sample) -> Option<f64>| {
                let x: Vec<f64> = v.iter().filter_map(f).collect();
                (!x.is_empty()).then(|| median(x))
            };
            let prog = some(&|s| s.program_ns);
            let empty = some(&|s| s.empty_ns);
            let runs = some(&|s| s.program_runs);
            let requests = some(&|s| s.requests_per_sec);
            let missed: Vec<i64> = v.iter().filter_map(|s| s.missed).collect();
            let cpu = (!cpu.is_empty()).then(|| median(cpu));
            let pct: Vec<f64> = v.iter().filter_map(|s| s.cpu_pct).collect();
            let pct = (!pct.is_empty()).then(|| median(pct));
            let machine = median(v.iter().map(|s| s.machine_ns_per_pkt).collect());
            let missed_max = missed.iter().copied().max();
            let w = workload.name();
            let f = |x: Option<f64>| x.map_or("-".into(), |v| format!("{v:.0}"));
            println!(
                "| {w} | {o} | {mbps:.0} | {pps:.0} | {} | {machine:.0} | {} | {} | {} | {} | {} | {} |",
                f(requests),
                f(cpu),
                pct.map_or("-".into(), |v| format!("{v:.1}")),
                f(prog),
                f(empty),
                f(runs),
                missed_max.map_or("-".into(), |m| m.to_string())
            );
            rows.push(json!({"workload": w, "observer": o, "mbps": mbps, "pps": pps, "http_requests_per_sec": requests, "observer_cpu_ns_per_packet": cpu, "observer_cpu_pct": pct, "machine_cpu_ns_per_packet": machine, "program_ns_per_packet": prog, "empty_ns_per_packet": empty, "program_runs_per_sec": runs, "missed_max": missed_max}));
        }
    }
    let dir = std::env::var("NETOBS_BENCH_DIR").unwrap_or_else(|_| "target/bench".into());
    let _ = std::fs::create_dir_all(&dir);
    std::fs::write(
        format!("{dir}/live.json"),
        serde_json::to_string_pretty(
            &json!({"seconds": SECONDS, "runs": RUNS, "agent_idle_cpu_pct": idle, "rows": rows}),
        )
        .unwrap_or_default(),
    )
    .expect("writing live.json");
    println!(
        "\nagent at idle (no traffic, {IDLE_SECONDS} s, after a {} ms start): {idle:.2}% of one core",
        WARMUP.as_millis()
    );
}

/// Until the agent answers on its API, which it serves only once its
/// programs are attached. A fixed wait was not enough: on a slow hour the
/// verifier alone took longer, and the packets before the attach were
/// counted as missed (tens of thousands of a TCP run, in both modes).
fn wait_attached(ns: &Netns) {
    let api = netobs::agent::DEFAULT_METRICS_ADDR
        .parse()
        .expect("address");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while netobs_tests::traffic::http_get(ns, api, "/api/v1/summary").is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the agent did not come up in 60 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

const IDLE_SECONDS: u64 = 10;
const WARMUP: Duration = Duration::from_millis(1500);

/// The agent's CPU with nothing to see, in % of one core.
fn agent_idle(lab: &TwoHostLab) -> f64 {
    let (ns, dev) = lab.host_a();
    let mut c = ns.command(env!("CARGO_BIN_EXE_netobs"));
    c.args(["run", "--no-docker", "--iface", dev, "--interval", "3600"])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let p = Process::spawn(c).expect("netobs");
    wait_attached(ns);
    std::thread::sleep(WARMUP);
    let pid = p.pid().expect("agent pid");
    let t0 = ticks(pid);
    std::thread::sleep(Duration::from_secs(IDLE_SECONDS));
    let t1 = ticks(pid);
    let _ = p.stop(libc::SIGINT);
    (t1 - t0) as f64 * tick_ns() / 1e9 / IDLE_SECONDS as f64 * 100.0
}
