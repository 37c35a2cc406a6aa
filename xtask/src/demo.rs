//! `cargo xtask demo`: builds netobs, starts a real two-node swarm (two
//! engines in two namespaces) with a plain and an `--opt encrypted` overlay
//! network, a web service on the worker and clients on the manager, and runs
//! `netobs run` on the manager's underlay: live flows with network and
//! service names, HTTP in clear, encryption alerts, then `netobs flows` and
//! `netobs audit` against it. Real ESP (AES-GCM) from the worker shows how
//! encrypted traffic is counted. `--plain` runs the
//! same without Docker, on two namespaces and a kernel VXLAN device.
use std::{
    net::{Ipv4Addr, SocketAddr},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use clap::Args;
use netobs_tests::{
    esp::{EspInjector, EspSa, NEXT_HEADER_IPV4},
    lab::{self, LabConfig, Process, TwoHostLab},
    packets::{self, Net},
    swarm::{TwoNodeSwarm, MANAGER_ADDR, MANAGER_DEV},
    traffic::{http_request, udp_send, HttpServer},
};

use crate::{build, root};

#[derive(Args)]
pub struct DemoArgs {
    /// How long to watch
    #[arg(long, default_value_t = 30)]
    pub seconds: u64,
    /// tc or xdp
    #[arg(long, default_value = "tc")]
    pub mode: String,
    /// No Docker: two namespaces and a kernel VXLAN device only
    #[arg(long)]
    pub plain: bool,
}

fn netobs_binary() -> Result<String> {
    let object = build::ebpf(false)?;
    crate::cmd::run(build::userspace_cargo(&object).args(["build", "-p", "netobs"]))?;
    Ok(root()
        .join("target/debug/netobs")
        .to_string_lossy()
        .into_owned())
}

pub fn run(args: &DemoArgs) -> Result<()> {
    let netobs = netobs_binary()?;
    netobs_tests::netns::cleanup_stale();
    netobs_tests::swarm::cleanup_stale();
    if args.plain {
        plain(args, &netobs)
    } else {
        swarm(args, &netobs)
    }
}

fn esp_packets(sa: &EspSa, seq: &mut u32, n: u32) -> Result<Vec<Vec<u8>>> {
    let inner = &packets::udp(&Net::containers(), 5000, 6000, b"encrypted overlay payload")[14..];
    (0..n)
        .map(|_| {
            *seq += 1;
            sa.seal(*seq, inner, NEXT_HEADER_IPV4)
        })
        .collect()
}

fn swarm(args: &DemoArgs, netobs: &str) -> Result<()> {
    eprintln!("\n== starting a two-node swarm (manager {MANAGER_ADDR}, worker) in namespaces ==");
    let swarm = TwoNodeSwarm::new().context("starting the demo swarm")?;
    swarm.network("backend", false)?;
    swarm.network("secure", true)?;
    swarm.service(
        "web",
        &["backend", "secure"],
        "worker",
        &["httpd", "-f", "-p", "80", "-h", "/www"],
    )?;
    let loop_get =
        "while true; do wget -q -O /dev/null 'http://web/index.html?session=abc123'; sleep 1; done";
    swarm.service("shop", &["backend"], "manager", &["sh", "-c", loop_get])?;
    swarm.service("billing", &["secure"], "manager", &["sh", "-c", loop_get])?;
    swarm.wait_running("web", 1)?;

    eprintln!("== netobs run --iface {MANAGER_DEV} on the manager; Ctrl-C to stop early ==\n");
    let mut cmd: Command = swarm.ns_manager.command(netobs);
    cmd.args([
        "run",
        "--iface",
        MANAGER_DEV,
        "--mode",
        &args.mode,
        "--interval",
        "5",
        "--events",
    ])
    .args([
        "--docker-host",
        &swarm.manager.host(),
        "--require-encryption",
        "all",
    ]);
    let agent = Process::spawn(cmd)?;
    let injector = EspInjector::new(&swarm.ns_worker)?;
    let sa = EspSa::new(0x0d0c_0001, [0x11; 16], [1, 2, 3, 4]);
    let node: Ipv4Addr = MANAGER_ADDR.parse()?;
    let mut seq = 0;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(args.seconds) {
        for p in esp_packets(&sa, &mut seq, 3)? {
            injector.send_esp(node, &p)?;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    // What an operator asks the running agent next: the flows by service,
    // and whether each network is really protected (exit 1: findings).
    for (what, argv) in [
        ("the flow table", &["flows"][..]),
        ("the encryption audit", &["audit"][..]),
    ] {
        eprintln!("\n== netobs {} on the manager: {what} ==\n", argv.join(" "));
        let out = swarm.ns_manager.command(netobs).args(argv).output()?;
        print!("{}", String::from_utf8_lossy(&out.stdout));
        eprint!("{}", String::from_utf8_lossy(&out.stderr));
    }
    let out = agent.stop(libc::SIGINT)?;
    anyhow::ensure!(out.status.success(), "netobs exited with {}", out.status);
    eprintln!("\n== demo done: stopping the swarm and removing the namespaces ==");
    Ok(())
}

fn plain(args: &DemoArgs, netobs: &str) -> Result<()> {
    eprintln!(
        "\n== lab: host A {} <-veth-> host B {}, VXLAN VNI 4097 on port 4789 ==",
        lab::UNDERLAY_A,
        lab::UNDERLAY_B
    );
    let lab = TwoHostLab::new(LabConfig::default())?;
    let server_addr: SocketAddr = format!("{}:80", lab::OVERLAY_B).parse()?;
    let _server = HttpServer::start(&lab.b, server_addr)?;
    let injector = EspInjector::new(&lab.b)?;
    let (ns_a, dev_a) = lab.host_a();
    eprintln!("== netobs run --iface {dev_a} (inside host A), Ctrl-C to stop early ==\n");
    let mut cmd: Command = ns_a.command(netobs);
    cmd.args([
        "run",
        "--no-docker",
        "--iface",
        dev_a,
        "--mode",
        &args.mode,
        "--interval",
        "5",
        "--events",
        "--pattern",
        "password",
    ]);
    let agent = Process::spawn(cmd)?;
    std::thread::sleep(Duration::from_secs(1));
    let sa = EspSa::new(0x0d0c_0001, [0x11; 16], [1, 2, 3, 4]);
    let node_a: Ipv4Addr = lab::UNDERLAY_A.parse()?;
    let paths = [
        "/",
        "/api/users?id=7",
        "/login?user=alice&password=hunter2",
        "/health",
    ];
    let start = Instant::now();
    let mut seq = 0;
    while start.elapsed() < Duration::from_secs(args.seconds) {
        for (i, path) in paths.iter().enumerate() {
            let method = if i == 2 { "POST" } else { "GET" };
            http_request(ns_a, server_addr, method, path).context("HTTP over the overlay")?;
        }
        udp_send(ns_a, format!("{}:9999", lab::OVERLAY_B).parse()?, 10, 300)?;
        for p in esp_packets(&sa, &mut seq, 5)? {
            injector.send_esp(node_a, &p)?;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let out = agent.stop(libc::SIGINT)?;
    anyhow::ensure!(out.status.success(), "netobs exited with {}", out.status);
    eprintln!("\n== demo done: the lab is removed ==");
    Ok(())
}
