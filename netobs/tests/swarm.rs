//! End to end on a real two-node swarm: netobs on the manager's and on the
//! worker's underlay, each asking its own engine; a client service on the
//! manager calls a web service on the worker over an overlay network. The
//! metrics must name the network, its VNI, that it is not encrypted, and the
//! two services, with exactly the requests sent; a real Prometheus with the
//! shipped rules must raise the unencrypted-traffic alert; and when the
//! manager's engine stops and starts again, counting never stops and the
//! labels come back.
use std::{
    io::{BufRead, BufReader},
    net::{Ipv4Addr, SocketAddr},
    path::Path,
    process::Stdio,
    time::{Duration, Instant},
};

use netobs_tests::{
    dashboards,
    esp::{kernel_has_esp, EspInjector, EspSa, NEXT_HEADER_IPV4},
    lab::Process,
    netns::Netns,
    packets::{self, Net},
    prom::metric,
    require_root,
    swarm::{TwoNodeSwarm, MANAGER_ADDR, MANAGER_DEV, WORKER_ADDR, WORKER_DEV},
    tmp::TempPath,
    traffic::{http_get, udp_send},
};

const REQUESTS: usize = 7;
const METRICS: &str = "127.0.0.1:9477";

/// A netobs command (`flows`, `services`, `audit`) against the agent of the
/// node `ns` is.
fn ask_agent(ns: &Netns, args: &[&str]) -> std::io::Result<std::process::Output> {
    ns.command(env!("CARGO_BIN_EXE_netobs"))
        .args(args)
        .args(["--agent", METRICS])
        .output()
}

fn metrics_addr() -> SocketAddr {
    METRICS.parse().expect("address")
}

fn start_agent(ns: &Netns, dev: &str, docker_host: &str) -> Process {
    let mut cmd = ns.command(env!("CARGO_BIN_EXE_netobs"));
    cmd.args([
        "run",
        "--iface",
        dev,
        "--docker-host",
        docker_host,
        "--require-encryption",
        "all",
        "--metrics-addr",
        METRICS,
        "--interval",
        "5",
        "--resync",
        "5",
        "--pattern",
        "GET /",
    ])
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

fn scrape(ns: &Netns) -> String {
    http_get(ns, metrics_addr(), "/metrics").unwrap_or_default()
}

/// Polls until `pred` holds for the scraped metrics, or panics with `what`.
fn wait_metrics(ns: &Netns, what: &str, secs: u64, pred: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let text = scrape(ns);
        if pred(&text) {
            return text;
        }
        if Instant::now() > deadline {
            let interesting: Vec<&str> = text
                .lines()
                .filter(|l| {
                    l.contains("http_requests")
                        || l.contains("overlay_packets")
                        || l.contains("docker_up")
                })
                .collect();
            panic!(
                "timed out waiting for {what}; metrics:\n{}",
                interesting.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn requests(text: &str) -> f64 {
    metric(
        text,
        "netobs_http_requests_total",
        &[
            ("network", "backend"),
            ("src_service", "client"),
            ("dst_service", "web"),
            ("method", "GET"),
        ],
    )
    .unwrap_or(0.0)
}

fn start_prometheus(ns: &Netns, dir: &Path) -> Process {
    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("../dashboards/netobs.rules.yml");
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\nscrape_configs:\n  - job_name: netobs\n    static_configs:\n      - targets: ['{METRICS}']\n",
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
    .arg("--web.listen-address=127.0.0.1:9090")
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    Process::spawn(cmd).expect("starting prometheus (apt-get install prometheus)")
}

/// Every dashboard target and alert expression through the real Prometheus:
/// each must evaluate, every metric it reads must have series, and every
/// panel must show data (rates need two scrapes of the new series, so this
/// waits for them).
fn every_shipped_expression_returns_data(ns: &Netns, prom: SocketAddr) {
    let query = |e: &str| -> serde_json::Value {
        let path = format!("/api/v1/query?query={}", dashboards::urlencode(e));
        let body = http_get(ns, prom, &path).unwrap_or_default();
        serde_json::from_str(&body).unwrap_or(serde_json::Value::Null)
    };
    let exprs = dashboards::expressions().expect("the shipped expressions");
    let deadline = Instant::now() + Duration::from_secs(60);
    for (at, raw) in &exprs {
        let e = dashboards::substitute(raw);
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
}

#[test]
fn swarm_flows_are_labelled_exported_and_alerted() {
    require_root!();
    let swarm = TwoNodeSwarm::new().expect("two-node swarm");
    let m = &swarm.manager;
    swarm.network("backend", false).expect("network");
    // Promised encryption this kernel cannot give (no ESP support): no task
    // on it, but its plaintext counter must read 0, not "no data".
    swarm.network("secure", true).expect("encrypted network");
    // A typo Docker accepts silently: this network is not encrypted.
    m.docker(&[
        "network",
        "create",
        "--driver",
        "overlay",
        "--opt",
        "encryption",
        "typo",
    ])
    .expect("mistyped network");
    // Tasks on `secure` on both nodes, so that each is the other's peer
    // there (and Docker should have set up IPsec between them).
    swarm
        .service("vault", &["secure"], "worker", &["sleep", "3600"])
        .expect("vault service");
    let vni = m
        .docker(&[
            "network",
            "inspect",
            "backend",
            "--format",
            "{{index .Options \"com.docker.network.driver.overlay.vxlanid_list\"}}",
        ])
        .expect("vni");
    swarm
        .service(
            "web",
            &["backend"],
            "worker",
            &["httpd", "-f", "-p", "80", "-h", "/www"],
        )
        .expect("web service");
    swarm.wait_running("web", 1).expect("web running");

    let agent_m = start_agent(&swarm.ns_manager, MANAGER_DEV, &m.host());
    let agent_w = start_agent(&swarm.ns_worker, WORKER_DEV, &swarm.worker.host());
    wait_metrics(&swarm.ns_manager, "the manager's agent", 60, |t| {
        metric(t, "netobs_docker_up", &[]) == Some(1.0)
    });
    wait_metrics(&swarm.ns_worker, "the worker's agent", 60, |t| {
        metric(t, "netobs_docker_up", &[]) == Some(1.0)
    });

    // Real overlay traffic on the manager's wire, for `netobs replay` to
    // decode independently of the agents.
    let pcap = TempPath::new("swarm.pcap");
    let capture = pcap.path();
    let mut tcpdump = swarm.ns_manager.command("tcpdump");
    tcpdump
        .args(["-i", MANAGER_DEV, "-U", "-s", "0", "-w"])
        .arg(capture)
        .stderr(Stdio::null());
    let tcpdump = Process::spawn(tcpdump).expect("tcpdump (apt-get install tcpdump)");
    // The client waits until its own address is in the agents' inventory
    // (events plus a resync), then makes exactly REQUESTS requests.
    let script = format!("sleep 8; for i in $(seq {REQUESTS}); do wget -q -O /dev/null http://web/index.html; done; sleep 3600");
    swarm
        .service(
            "client",
            &["backend", "secure"],
            "manager",
            &["sh", "-c", &script],
        )
        .expect("client service");

    for (ns, side) in [(&swarm.ns_manager, "manager"), (&swarm.ns_worker, "worker")] {
        let text = wait_metrics(
            ns,
            &format!("{REQUESTS} requests seen from the {side}"),
            90,
            |t| requests(t) >= REQUESTS as f64,
        );
        assert_eq!(
            requests(&text),
            REQUESTS as f64,
            "{side}: exactly the requests sent"
        );
        let overlay = metric(
            &text,
            "netobs_overlay_packets_total",
            &[
                ("network", "backend"),
                ("vni", &vni),
                ("encrypted", "false"),
                ("class", "vxlan"),
            ],
        );
        assert!(
            overlay.is_some_and(|v| v > 0.0),
            "{side}: overlay packets labelled with network, VNI, encryption"
        );
        assert_eq!(
            metric(
                &text,
                "netobs_network_info",
                &[
                    ("network", "backend"),
                    ("vni", &vni),
                    ("encrypted", "false")
                ]
            ),
            Some(1.0),
            "{side}"
        );
        assert_eq!(
            metric(
                &text,
                "netobs_alert_active",
                &[("kind", "unencrypted_overlay"), ("network", "backend")]
            ),
            Some(1.0),
            "{side}: policy violation raised"
        );
        let responses = metric(
            &text,
            "netobs_http_responses_total",
            &[
                ("network", "backend"),
                ("src_service", "client"),
                ("dst_service", "web"),
                ("code_class", "2xx"),
            ],
        );
        assert_eq!(
            responses,
            Some(REQUESTS as f64),
            "{side}: responses labelled from the asking side"
        );
    }

    // The capture of the manager's wire, replayed through the same programs:
    // what tcpdump reads in it, and the requests the client made.
    std::thread::sleep(Duration::from_secs(1));
    let _ = tcpdump.stop(libc::SIGINT);
    let replay = std::process::Command::new(env!("CARGO_BIN_EXE_netobs"))
        .args(["replay", "--json"])
        .arg(capture)
        .output()
        .expect("netobs replay");
    let tcpdump_count = |filter: &str| -> u64 {
        let out = std::process::Command::new("tcpdump")
            .args(["--count", "-r"])
            .arg(capture)
            .arg(filter)
            .output()
            .expect("tcpdump --count");
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    let (all, vxlan) = (tcpdump_count(""), tcpdump_count("udp dst port 4789"));
    // The VNI is the high three bytes of the VXLAN header's second word.
    let on_backend = tcpdump_count(&format!("udp dst port 4789 and (udp[12:4] >> 8) = {vni}"));
    assert!(
        replay.status.success(),
        "{}",
        String::from_utf8_lossy(&replay.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&replay.stdout).expect("replay JSON");
    eprintln!("replayed the manager's capture: {all} packets, {vxlan} VXLAN");
    assert!(vxlan > 0, "the capture holds the overlay traffic");
    assert_eq!(r["packets"], all, "{r}");
    assert_eq!(r["classes"]["vxlan"], vxlan, "as tcpdump reads it: {r}");
    assert_eq!(r["classes"]["malformed"], 0, "{r}");
    assert_eq!(r["http"]["requests"], REQUESTS, "{r}");
    assert_eq!(r["vnis"][&vni], on_backend, "{r}");
    assert!(on_backend > 0, "the requests went over backend");

    // `netobs services web` from both sides: what `drill tasks.web` would
    // say, and the requests that reached the task.
    for (ns, side) in [(&swarm.ns_manager, "manager"), (&swarm.ns_worker, "worker")] {
        let out = ask_agent(ns, &["services", "web", "--json"]).expect("netobs services");
        assert!(
            out.status.success(),
            "{side}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("services JSON");
        let web = &v[0];
        assert_eq!(web["name"], "web", "{side}: {v}");
        assert_eq!(web["endpoint_mode"], "dnsrr", "{side}: {v}");
        assert_eq!(web["networks"][0]["name"], "backend", "{side}: {v}");
        let tasks = web["tasks"].as_array().expect("tasks");
        assert_eq!(tasks.len(), 1, "{side}: {v}");
        assert_eq!(tasks[0]["state"], "running");
        assert!(
            tasks[0]["received"]["packets"].as_u64().unwrap_or(0) > 0,
            "{side}: the requests reached the task: {v}"
        );
    }

    // `netobs audit` on the manager: what Docker says, what the kernel holds
    // and what the wire shows, per network. `secure` is protected where the
    // kernel has ESP; here it has none, so Docker's policy has no states.
    let esp = kernel_has_esp();
    let secure_expected = if esp { "protected" } else { "broken" };
    let deadline = Instant::now() + Duration::from_secs(90);
    let audit = loop {
        let out = ask_agent(&swarm.ns_manager, &["audit", "--json"]).expect("netobs audit");
        assert_eq!(
            out.status.code(),
            Some(1),
            "findings exit 1: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("audit JSON");
        let no_state = v["findings"].as_array().is_some_and(|f| {
            f.iter()
                .any(|f| f["network"] == "secure" && f["kind"] == "ipsec_no_state")
        });
        let secure = v["networks"]
            .as_array()
            .and_then(|n| n.iter().find(|n| n["name"] == "secure"))
            .map(|n| n["status"] == secure_expected);
        if secure == Some(true) && no_state != esp {
            break v;
        }
        assert!(
            Instant::now() < deadline,
            "the audit never found secure {secure_expected}: {v}"
        );
        std::thread::sleep(Duration::from_secs(2));
    };
    let has = |network: &str, kind: &str| {
        audit["findings"].as_array().is_some_and(|f| {
            f.iter()
                .any(|f| f["network"] == network && f["kind"] == kind)
        })
    };
    assert!(has("backend", "not_encrypted"), "{audit}");
    assert!(has("typo", "mistyped_option"), "{audit}");
    assert!(has("typo", "not_encrypted"), "{audit}");
    assert!(has("ingress", "ingress_plaintext"), "{audit}");
    let status = |name: &str| {
        audit["networks"]
            .as_array()
            .and_then(|n| n.iter().find(|n| n["name"] == name))
            .map(|n| n["status"].clone())
    };
    assert_eq!(status("secure"), Some(secure_expected.into()), "{audit}");
    assert_eq!(status("backend"), Some("not_encrypted".into()), "{audit}");
    assert_eq!(audit["data_path_port"], 4789);
    // The text report: one line per network first, readable at a glance.
    let out = ask_agent(
        &swarm.ns_manager,
        &["audit", "--require-encryption", "backend,secure"],
    )
    .expect("netobs audit");
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    let line = |name: &str| {
        text.lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_default()
            .to_owned()
    };
    assert!(
        line("secure").contains(if esp { "protected" } else { "BROKEN" }),
        "{text}"
    );
    assert!(line("backend").contains("NOT ENCRYPTED"), "{text}");
    assert!(line("backend").contains("client -> web"), "{text}");
    assert!(
        line("ingress").contains("not encrypted (not required)"),
        "{text}"
    );
    assert!(
        text.contains("\n  peer ") && text.contains("policy yes"),
        "Docker's policy towards the worker: {text}"
    );
    println!("{text}");

    // `netobs flows` against the running agent: services by name, plaintext
    // marked.
    let out = ask_agent(&swarm.ns_manager, &["flows", "--json"]).expect("netobs flows");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let flows: serde_json::Value = serde_json::from_slice(&out.stdout).expect("flows JSON");
    let labelled = flows.as_array().expect("a list").iter().any(|f| {
        f["labels"]["network"] == "backend"
            && f["labels"]["src_service"] == "client"
            && f["labels"]["dst_service"] == "web"
    });
    assert!(labelled, "no client -> web flow on backend: {flows}");
    let out = ask_agent(&swarm.ns_manager, &["flows"]).expect("netobs flows");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines().any(|l| l.contains("backend")
            && l.contains("PLAIN")
            && l.contains("client:")
            && l.contains("web:80")),
        "each connection with its ports: {text}"
    );

    // A real Prometheus, the shipped rules, the agent on the manager.
    let prom_tmp = TempPath::new("prometheus");
    let prom_dir = prom_tmp.path();
    std::fs::create_dir_all(prom_dir).expect("prometheus dir");
    let prom = start_prometheus(&swarm.ns_manager, prom_dir);
    let prom_addr: SocketAddr = "127.0.0.1:9090".parse().expect("address");
    // Real ESP (AES-GCM, RFC 4106) from the worker: the ESP panels need it.
    let injector = EspInjector::new(&swarm.ns_worker).expect("ESP injector");
    let sa = EspSa::new(0x5eed_0001, [0x24; 16], [1, 2, 3, 4]);
    let inner = &packets::udp(&Net::containers(), 5000, 6000, b"sealed")[14..];
    let manager_ip: Ipv4Addr = MANAGER_ADDR.parse().expect("address");
    let deadline = Instant::now() + Duration::from_secs(60);
    let alerts = loop {
        let body = http_get(&swarm.ns_manager, prom_addr, "/api/v1/alerts").unwrap_or_default();
        if body.contains("NetobsUnencryptedOverlay") {
            break body;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus raised no NetobsUnencryptedOverlay alert: {body}"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(alerts.contains("\"network\":\"backend\""), "{alerts}");
    for seq in 1..=20 {
        injector
            .send_esp(
                manager_ip,
                &sa.seal(seq, inner, NEXT_HEADER_IPV4).expect("seal"),
            )
            .expect("ESP");
    }
    every_shipped_expression_returns_data(&swarm.ns_manager, prom_addr);
    drop(prom);

    // `netobs audit` on the worker, which cannot read the swarm's settings,
    // while ESP leaves it for the manager and none comes back (what a
    // firewall dropping protocol 50 looks like), on an SA 2 h from its
    // sequence-number wrap.
    let busy = EspSa::new(0x5eed_0002, [0x42; 16], [5, 6, 7, 8]);
    let stop = std::sync::atomic::AtomicBool::new(false);
    let worker_audit = std::thread::scope(|scope| {
        scope.spawn(|| {
            let mut seq = u32::MAX - 2_000_000;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok(p) = busy.seal(seq, inner, NEXT_HEADER_IPV4) {
                    let _ = injector.send_esp(manager_ip, &p);
                }
                seq = seq.wrapping_add(1);
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        std::thread::sleep(Duration::from_secs(2));
        let out = ask_agent(&swarm.ns_worker, &["audit", "--json"]);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        out
    })
    .expect("netobs audit on the worker");
    assert_eq!(
        worker_audit.status.code(),
        Some(1),
        "findings exit 1: {}",
        String::from_utf8_lossy(&worker_audit.stderr)
    );
    let audit: serde_json::Value =
        serde_json::from_slice(&worker_audit.stdout).expect("audit JSON");
    let found = |kind: &str| {
        audit["findings"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|f| f["kind"] == kind)
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(audit["data_path_port_from"], "default", "{audit}");
    assert_eq!(
        found("ipsec_no_state")
            .iter()
            .any(|f| f["network"] == "secure"),
        !esp,
        "the worker sees secure's IPsec states as the manager does: {audit}"
    );
    assert_eq!(found("esp_one_way").len(), 1, "{audit}");
    assert_eq!(found("esp_sequence_wrap").len(), 1, "{audit}");
    let spi = audit["esp"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|p| p["spis"].as_array().into_iter().flatten())
        .find(|s| s["spi"] == "0x5eed0002" && s["direction"] == "egress")
        .cloned()
        .unwrap_or_default();
    let rate = spi["seq_per_sec"].as_f64().unwrap_or(0.0);
    assert!(rate > 10.0 && rate <= 250.0, "about 200/s at most: {spi}");
    assert!(
        spi["wraps_in_secs"]
            .as_f64()
            .is_some_and(|w| w < netobs::audit::KEY_ROTATION_SECS),
        "{spi}"
    );

    // The manager's engine goes away: counting goes on, docker_up says so.
    let before = scrape(&swarm.ns_manager);
    let other = |t: &str| metric(t, "netobs_packets_total", &[("class", "other")]).unwrap_or(0.0);
    let mut manager = swarm;
    manager
        .manager
        .stop_daemon()
        .expect("stopping the manager's engine");
    wait_metrics(&manager.ns_manager, "docker_up 0", 60, |t| {
        metric(t, "netobs_docker_up", &[]) == Some(0.0)
    });
    udp_send(
        &manager.ns_manager,
        format!("{WORKER_ADDR}:9").parse().expect("addr"),
        25,
        100,
    )
    .expect("UDP");
    wait_metrics(
        &manager.ns_manager,
        "counting while the engine is down",
        30,
        |t| other(t) >= other(&before) + 25.0,
    );
    // ... and comes back: labels return, the restarted client is labelled again.
    manager
        .manager
        .start_daemon()
        .expect("restarting the manager's engine");
    wait_metrics(&manager.ns_manager, "docker_up 1", 90, |t| {
        metric(t, "netobs_docker_up", &[]) == Some(1.0)
    });
    // Right after a restart the engine's view of remote tasks is still
    // converging (its requests may be counted `unknown`, as they should).
    // Once the inventory knows both services again, a new client task's
    // requests are labelled again.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let inv =
            http_get(&manager.ns_manager, metrics_addr(), "/api/v1/inventory").unwrap_or_default();
        if inv.contains("\"service\":\"web\"") && inv.contains("\"service\":\"client\"") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the inventory never knew web and client again: {inv}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let before = requests(&scrape(&manager.ns_manager));
    manager
        .manager
        .docker(&["service", "update", "--detach", "--force", "client"])
        .expect("restarting the client");
    wait_metrics(
        &manager.ns_manager,
        "labelled requests after the restart",
        120,
        |t| requests(t) > before,
    );

    let out = agent_m.stop(libc::SIGTERM).expect("stopping netobs");
    assert!(
        out.status.success(),
        "netobs on the manager exited with {}",
        out.status
    );
    let out = agent_w.stop(libc::SIGTERM).expect("stopping netobs");
    assert!(
        out.status.success(),
        "netobs on the worker exited with {}",
        out.status
    );
}
