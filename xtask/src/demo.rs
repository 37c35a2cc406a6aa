//! `cargo xtask demo`: builds netobs, sets up the two-host lab and watches
//! host A's underlay while HTTP, UDP and ESP cross it, the way an operator
//! would run `ngrep` on a node, except continuously and at line rate.
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
    traffic::{http_request, udp_send, HttpServer},
};

use crate::{build, root};

#[derive(Args)]
pub struct DemoArgs {
    /// How long to generate traffic
    #[arg(long, default_value_t = 20)]
    pub seconds: u64,
    /// tc or xdp
    #[arg(long, default_value = "tc")]
    pub mode: String,
}

pub fn run(args: &DemoArgs) -> Result<()> {
    let object = build::ebpf(false)?;
    crate::cmd::run(build::userspace_cargo(&object).args(["build", "-p", "netobs"]))?;
    let netobs = root().join("target/debug/netobs");
    netobs_tests::netns::cleanup_stale();

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
    let mut cmd: Command = ns_a.command(&netobs.to_string_lossy());
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
    let inner = &packets::udp(&Net::containers(), 5000, 6000, b"encrypted overlay payload")[14..];
    let node_a: Ipv4Addr = lab::UNDERLAY_A.parse()?;
    let paths = [
        "/",
        "/api/users?id=7",
        "/login?user=alice&password=hunter2",
        "/health",
    ];
    let start = Instant::now();
    let mut seq = 0u32;
    while start.elapsed() < Duration::from_secs(args.seconds) {
        for (i, path) in paths.iter().enumerate() {
            let method = if i == 2 { "POST" } else { "GET" };
            http_request(ns_a, server_addr, method, path).context("HTTP over the overlay")?;
        }
        udp_send(ns_a, format!("{}:9999", lab::OVERLAY_B).parse()?, 10, 300)?;
        for _ in 0..5 {
            seq += 1;
            injector.send_esp(node_a, &sa.seal(seq, inner, NEXT_HEADER_IPV4)?)?;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let out = agent.stop(libc::SIGINT)?;
    if !out.status.success() {
        anyhow::bail!("netobs exited with {}", out.status);
    }
    eprintln!("\n== demo done: the lab is removed ==");
    Ok(())
}
