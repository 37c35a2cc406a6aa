//! What the swarm tests share: an agent per node, asked through its API
//! and its metrics; a real Prometheus with the shipped rules; exact counts
//! read back from a capture of the wire.
#![allow(dead_code)]

use std::{
    io::{BufRead, BufReader},
    net::SocketAddr,
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use netobs::{api::Endpoint, client};
use netobs_tests::{dashboards, lab::Process, netns::Netns, prom::metric, traffic::http_get};

/// Where each node's agent serves, inside that node's namespace.
pub const METRICS: &str = "127.0.0.1:9477";
pub const PROMETHEUS: &str = "127.0.0.1:9090";

pub fn metrics_addr() -> SocketAddr {
    METRICS.parse().expect("address")
}

/// A netobs command (`flows`, `services`, `audit`) against the agent of the
/// node `ns` is.
pub fn ask_agent(ns: &Netns, args: &[&str]) -> std::process::Output {
    ns.command(env!("CARGO_BIN_EXE_netobs"))
        .args(args)
        .args(["--agent", METRICS])
        .output()
        .expect("running netobs")
}

/// One document of the agent's API, typed (its version checked).
pub fn api<E: Endpoint>(ns: &Netns) -> E::Body {
    let body = http_get(ns, metrics_addr(), E::PATH).unwrap_or_default();
    client::parse::<E>(
        &client::Agent {
            addr: metrics_addr(),
            token: None,
            timeout: None,
        },
        &body,
    )
    .unwrap_or_else(|e| panic!("{e:#}: {body}"))
}

/// `netobs run` on `dev` in `ns`, asking the engine at `docker_host`, its
/// log on the test's stderr tagged with the device.
pub fn start_agent(ns: &Netns, dev: &str, docker_host: &str, extra: &[&str]) -> Process {
    start_agent_at(ns, dev, docker_host, METRICS, extra)
}

/// `start_agent`, serving on `addr`.
pub fn start_agent_at(
    ns: &Netns,
    dev: &str,
    docker_host: &str,
    addr: &str,
    extra: &[&str],
) -> Process {
    let mut cmd = ns.command(env!("CARGO_BIN_EXE_netobs"));
    cmd.args([
        "run",
        "--iface",
        dev,
        "--docker-host",
        docker_host,
        "--metrics-addr",
        addr,
        "--interval",
        "5",
        "--resync",
        "5",
    ])
    .args(extra)
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    let mut p = Process::spawn(cmd).expect("starting netobs");
    let stderr = p.child_mut().stderr.take().expect("stderr");
    let tag = dev.to_owned();
    std::thread::spawn(move || {
        for l in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("netobs[{tag}]: {l}");
        }
    });
    p
}

/// SIGTERM, and a clean exit.
pub fn stop_agent(agent: Process, side: &str) {
    let out = agent.stop(libc::SIGTERM).expect("stopping netobs");
    assert!(
        out.status.success(),
        "netobs on the {side} exited with {}",
        out.status
    );
}

pub fn scrape(ns: &Netns) -> String {
    http_get(ns, metrics_addr(), "/metrics").unwrap_or_default()
}

/// Polls until `pred` holds for the scraped metrics, or panics with `what`.
pub fn wait_metrics(ns: &Netns, what: &str, secs: u64, pred: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let text = scrape(ns);
        if pred(&text) {
            return text;
        }
        if Instant::now() > deadline {
            let interesting: Vec<&str> = text
                .lines()
                .filter(|l| l.starts_with("netobs_") && !l.contains("_bucket"))
                .collect();
            panic!(
                "timed out waiting for {what}; metrics:\n{}",
                interesting.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Polls `f` until it gives `Some`, or panics with `what` after `secs`.
pub fn wait_for<T>(what: &str, secs: u64, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The agent is up and has read its engine.
pub fn wait_docker_up(ns: &Netns, side: &str) {
    wait_metrics(ns, &format!("the {side}'s agent"), 60, |t| {
        metric(t, "netobs_docker_up", &[]) == Some(1.0)
    });
}

/// HTTP requests by method GET between two services on a network.
pub fn requests(text: &str, network: &str, src: &str, dst: &str) -> f64 {
    metric(
        text,
        "netobs_http_requests_total",
        &[
            ("network", network),
            ("src_service", src),
            ("dst_service", dst),
            ("method", "GET"),
        ],
    )
    .unwrap_or(0.0)
}

/// A real Prometheus in `ns` scraping the agent there every second, with
/// the shipped rules.
pub fn start_prometheus(ns: &Netns, dir: &Path) -> Process {
    start_prometheus_for(ns, dir, METRICS, None)
}

/// `start_prometheus`, scraping the agent at `target` with the token in
/// the file `token`.
pub fn start_prometheus_for(ns: &Netns, dir: &Path, target: &str, token: Option<&str>) -> Process {
    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("../dashboards/netobs.rules.yml");
    let auth = token
        .map(|t| format!("    authorization:\n      credentials_file: {t}\n"))
        .unwrap_or_default();
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\nscrape_configs:\n  - job_name: netobs\n{auth}    static_configs:\n      - targets: ['{target}']\n",
        rules.canonicalize().expect("rules file").display()
    );
    std::fs::write(dir.join("prometheus.yml"), config).expect("prometheus config");
    let mut cmd = ns.command("prometheus");
    cmd.arg(format!(
        "--config.file={}",
        dir.join("prometheus.yml").display()
    ))
    .arg(format!(
        "--storage.tsdb.path={}",
        dir.join("data").display()
    ))
    .arg(format!("--web.listen-address={PROMETHEUS}"))
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    Process::spawn(cmd).expect("starting prometheus (apt-get install prometheus)")
}

/// The labels of every alert `name` Prometheus has firing, once there is
/// one.
pub fn wait_firing(ns: &Netns, name: &str, secs: u64) -> Vec<serde_json::Value> {
    let prom: SocketAddr = PROMETHEUS.parse().expect("address");
    wait_for(&format!("Prometheus firing {name}"), secs, || {
        let body = http_get(ns, prom, "/api/v1/alerts").unwrap_or_default();
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        let firing: Vec<serde_json::Value> = v["data"]["alerts"]
            .as_array()?
            .iter()
            .filter(|a| a["labels"]["alertname"] == name && a["state"] == "firing")
            .map(|a| a["labels"].clone())
            .collect();
        (!firing.is_empty()).then_some(firing)
    })
}

/// Records and bytes (as on the wire, Ethernet header included) of the
/// packets in the capture at `path` that tcpdump's `filter` selects.
pub fn capture_count(path: &Path, filter: &str) -> (u64, u64) {
    let tmp = netobs_tests::tmp::TempPath::new("filtered.pcap");
    let out = Command::new("tcpdump")
        .args(["-r"])
        .arg(path)
        .arg("-w")
        .arg(tmp.path())
        .arg(filter)
        .output()
        .expect("tcpdump -r");
    assert!(
        out.status.success(),
        "tcpdump {filter}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let file = std::fs::File::open(tmp.path()).expect("filtered capture");
    let mut reader = pcap_file::pcap::PcapReader::new(file).expect("pcap");
    let (mut n, mut bytes) = (0, 0);
    while let Some(p) = reader.next_packet() {
        let p = p.expect("pcap record");
        n += 1;
        bytes += u64::from(p.orig_len);
    }
    (n, bytes)
}

/// tcpdump writing everything on `dev` in `ns` to `path` until stopped.
pub fn start_capture(ns: &Netns, dev: &str, path: &Path) -> Process {
    let mut tcpdump = ns.command("tcpdump");
    tcpdump
        .args(["-i", dev, "-U", "-s", "0", "-w"])
        .arg(path)
        .stderr(Stdio::null());
    let p = Process::spawn(tcpdump).expect("tcpdump (apt-get install tcpdump)");
    // tcpdump opens the interface a moment after it starts.
    std::thread::sleep(Duration::from_secs(1));
    p
}

/// The metrics of loss between nodes: exported only where agents reach
/// each other (`cluster.rs`).
pub const BETWEEN_NODES: [&str; 4] = [
    "netobs_overlay_loss_checked_packets_total",
    "netobs_overlay_lost_packets_total",
    "netobs_overlay_loss_unverified_flows_total",
    "netobs_peer_agent_up",
];

/// Every dashboard target and alert expression whose metrics `keep`
/// admits, through the real Prometheus at `prom`: each must evaluate,
/// every metric it reads must have series, and every panel must show data
/// (rates need two scrapes of the new series, so this waits for them).
/// Returns how many were checked.
pub fn every_shipped_expression_returns_data(
    ns: &Netns,
    prom: SocketAddr,
    keep: impl Fn(&[String]) -> bool,
) -> usize {
    let query = |e: &str| -> serde_json::Value {
        let path = format!("/api/v1/query?query={}", dashboards::urlencode(e));
        let body = http_get(ns, prom, &path).unwrap_or_default();
        serde_json::from_str(&body).unwrap_or(serde_json::Value::Null)
    };
    let exprs = dashboards::expressions().expect("the shipped expressions");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut checked = 0;
    for (at, raw) in &exprs {
        let e = dashboards::substitute(raw);
        if !keep(&dashboards::metric_names(&e)) {
            continue;
        }
        checked += 1;
        let dashboard = !at.starts_with("netobs.rules.yml");
        loop {
            let v = query(&e);
            assert_eq!(v["status"], "success", "{at}: {e}: {v}");
            let missing: Vec<String> = dashboards::metric_names(&e)
                .into_iter()
                .filter(|m| {
                    let n = query(&format!("count({{__name__=\"{m}\"}})"));
                    n["data"]["result"].as_array().is_none_or(|r| r.is_empty())
                })
                .collect();
            let empty = v["data"]["result"].as_array().is_none_or(|r| r.is_empty());
            if missing.is_empty() && !(dashboard && empty) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{at}: {e}: no series of {missing:?} or no data: {v}"
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }
    checked
}
