//! What an operator deploys with: the swarm stack file (checked by the
//! docker CLI itself), the systemd unit (by systemd-analyze), shell
//! completions and the man page generated from the command line's
//! definition, and the image of deploy/Dockerfile running the agent as the
//! stack file does.
use std::{
    net::SocketAddr,
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use netobs_tests::{
    link, netns::Netns, prom::metric, require_root, swarm::DockerNode, tmp::TempPath,
    traffic::http_get, traffic::udp_send,
};

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

fn netobs(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_netobs"))
        .args(args)
        .output()
        .expect("running netobs");
    assert!(out.status.success(), "netobs {args:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every subcommand, from the command line's own definition.
fn subcommands() -> Vec<String> {
    use clap::CommandFactory;
    netobs::cli::Cli::command()
        .get_subcommands()
        .map(|c| c.get_name().to_owned())
        .filter(|n| n != "help")
        .collect()
}

#[test]
fn the_stack_file_is_valid_and_grants_no_more_than_needed() {
    let out = Command::new("docker")
        .args(["stack", "config", "-c"])
        .arg(root().join("deploy/netobs-stack.yml"))
        .env("NETOBS_IFACE", "eth0")
        .env("GRAFANA_ADMIN_PASSWORD", "test")
        .current_dir(root())
        .output()
        .expect("running docker (apt-get install docker.io)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "docker stack config: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The agent's service, as docker resolved it.
    let agent = text
        .split("\n  prometheus:")
        .next()
        .expect("services in order");
    for want in [
        "mode: global",
        "- ALL",
        "- BPF",
        "- NET_ADMIN",
        "- PERFMON",
        "read_only: true",
        "target: /var/run/docker.sock",
        "- eth0",
        "- --api-token-file",
        "- /run/secrets/netobs_api_token",
        "source: netobs_api_token",
    ] {
        assert!(agent.contains(want), "{want:?} missing from:\n{agent}");
    }
    let added = agent
        .split("cap_add:")
        .nth(1)
        .and_then(|s| s.split(':').next())
        .unwrap_or_default();
    assert_eq!(
        added.matches("- ").count(),
        3,
        "only three capabilities: {added}"
    );
}

#[test]
fn the_systemd_unit_verifies() {
    let unit = std::fs::read_to_string(root().join("deploy/netobs.service")).expect("unit");
    assert!(unit.contains("CapabilityBoundingSet=CAP_BPF CAP_NET_ADMIN CAP_PERFMON"));
    // Verified against the binary just built, where the unit expects the
    // installed one.
    let tmp = TempPath::new("unit");
    let dir = tmp.path();
    std::fs::create_dir_all(dir).expect("temp dir");
    let path = dir.join("netobs.service");
    std::fs::write(
        &path,
        unit.replace("/usr/local/bin/netobs", env!("CARGO_BIN_EXE_netobs")),
    )
    .expect("unit copy");
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()
        .expect("systemd-analyze");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && err.trim().is_empty(), "{err}");
}

#[test]
fn completions_and_man_page_cover_every_command() {
    let subs = subcommands();
    assert!(
        subs.len() >= 8 && subs.iter().any(|s| s == "audit"),
        "{subs:?}"
    );
    for shell in ["bash", "zsh", "fish"] {
        let script = netobs(&["completions", shell]);
        for sub in &subs {
            assert!(script.contains(sub), "{shell} completion lacks {sub}");
        }
    }
    let man = netobs(&["man"]);
    assert!(man.starts_with(".ie") || man.starts_with(".TH"), "roff");
    for sub in &subs {
        assert!(
            man.contains(&format!(".TH netobs-{sub} 1")),
            "man page lacks netobs-{sub}"
        );
    }
}

/// The root of an image with nothing but the C library `binary` links
/// against, as a tarball: a glibc base that needs no registry.
fn glibc_base(binary: &str, tar: &Path) {
    let ldd = Command::new("ldd").arg(binary).output().expect("ldd");
    let libs: Vec<String> = String::from_utf8_lossy(&ldd.stdout)
        .split_whitespace()
        .filter(|w| w.starts_with('/'))
        .map(|w| w.trim_start_matches('/').to_owned())
        .collect();
    assert!(libs.iter().any(|l| l.contains("libc.so")), "{libs:?}");
    // -h: store the files behind /lib's symlinks under the names the
    // dynamic linker looks for.
    let out = Command::new("tar")
        .args(["-C", "/", "-h", "-cf"])
        .arg(tar)
        .args(&libs)
        .output()
        .expect("tar");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_image_runs_the_agent_with_only_its_three_capabilities() {
    require_root!();
    let host = Netns::new("image").expect("namespace");
    let peer = Netns::new("image-peer").expect("namespace");
    link::veth_pair(&host, "img0", &peer, "img1").expect("veth");
    // Only the packets the test sends: no IPv6, no ARP (below).
    for (ns, dev, addr, mac) in [
        (&host, "img0", "10.231.0.1/24", "02:00:0a:e7:00:01"),
        (&peer, "img1", "10.231.0.2/24", "02:00:0a:e7:00:02"),
    ] {
        ns.exec(&["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"])
            .expect("sysctl");
        ns.ip(&["link", "set", dev, "address", mac]).expect("mac");
        link::add_addr(ns, dev, addr).expect("address");
        link::set_up(ns, dev).expect("up");
    }
    // Both ways: the peer's ICMP "port unreachable" must not ARP either.
    for (ns, dev, other, mac) in [
        (&host, "img0", "10.231.0.2", "02:00:0a:e7:00:02"),
        (&peer, "img1", "10.231.0.1", "02:00:0a:e7:00:01"),
    ] {
        ns.ip(&[
            "neigh",
            "replace",
            other,
            "lladdr",
            mac,
            "dev",
            dev,
            "nud",
            "permanent",
        ])
        .expect("neighbour");
    }

    let node = DockerNode::start(&host, "image").expect("dockerd");
    let tmp = TempPath::new("image");
    let dir = tmp.path();
    let context = dir.join("context");
    std::fs::create_dir_all(context.join("target/release")).expect("build context");
    let binary = env!("CARGO_BIN_EXE_netobs");
    std::fs::copy(binary, context.join("target/release/netobs")).expect("binary");
    let base = dir.join("base.tar");
    glibc_base(binary, &base);
    node.docker(&["import", &base.to_string_lossy(), "netobs-base:test"])
        .expect("docker import");
    let dockerfile = root().join("deploy/Dockerfile");
    let built = node.docker(&[
        "build",
        "-q",
        "-f",
        &dockerfile.to_string_lossy(),
        "--build-arg",
        "BASE=netobs-base:test",
        "-t",
        "netobs:test",
        &context.to_string_lossy(),
    ]);
    built.expect("docker build -f deploy/Dockerfile");

    // As the stack file runs it: host network, every capability dropped
    // but three, or, on an engine that does not know CAP_BPF, SYS_ADMIN
    // in place of BPF and PERFMON (as the stack file says).
    let run = |caps: &[&str]| {
        let mut args = vec!["run", "-d", "--name", "netobs-agent", "--network", "host"];
        args.extend(["--cap-drop", "ALL"]);
        for c in caps {
            args.extend(["--cap-add", c]);
        }
        args.extend(["netobs:test", "run", "--no-docker", "--iface", "img0"]);
        node.docker(&args)
    };
    let kept = match run(&["BPF", "NET_ADMIN", "PERFMON"]) {
        Ok(_) => "CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON",
        Err(e) if e.to_string().contains("unknown capability") => {
            eprintln!("this engine does not know CAP_BPF: SYS_ADMIN in its place ({e:#})");
            let _ = node.docker(&["rm", "-f", "netobs-agent"]);
            run(&["SYS_ADMIN", "NET_ADMIN"]).expect("docker run");
            "CAP_NET_ADMIN, CAP_SYS_ADMIN"
        }
        Err(e) => panic!("docker run: {e:#}"),
    };
    let metrics: SocketAddr = "127.0.0.1:9477".parse().expect("address");
    let egress = |text: &str| {
        metric(
            text,
            "netobs_packets_total",
            &[
                ("iface", "img0"),
                ("direction", "egress"),
                ("class", "other"),
            ],
        )
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let logs = || {
        Command::new("docker")
            .args(["-H", &node.host(), "logs", "netobs-agent"])
            .output()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout).into_owned()
                    + &String::from_utf8_lossy(&o.stderr)
            })
            .unwrap_or_default()
    };
    loop {
        let scrape = http_get(&host, metrics, "/metrics");
        if scrape
            .as_ref()
            .is_ok_and(|t| t.contains("netobs_build_info"))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the agent in the image never served metrics ({scrape:?}): {}",
            logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    udp_send(&host, "10.231.0.2:9".parse().expect("address"), 25, 100).expect("UDP");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let seen = egress(&http_get(&host, metrics, "/metrics").unwrap_or_default());
        if seen == Some(25.0) {
            break;
        }
        assert!(Instant::now() < deadline, "egress other: {seen:?}, 25 sent");
        std::thread::sleep(Duration::from_millis(200));
    }
    node.docker(&["stop", "netobs-agent"]).expect("docker stop");
    let code = node
        .docker(&["inspect", "-f", "{{.State.ExitCode}}", "netobs-agent"])
        .expect("docker inspect");
    let all = logs();
    assert_eq!(code, "0", "SIGTERM is a clean stop: {all}");

    assert!(
        all.contains(&format!("capabilities: kept {kept}, dropped the rest")),
        "{all}"
    );
    assert!(all.contains("detached"), "{all}");
}
