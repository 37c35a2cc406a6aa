//! What an operator deploys with: the swarm stack file (checked by the
//! docker CLI itself), the systemd unit (by systemd-analyze), shell
//! completions and the man page generated from the command line's
//! definition.
use std::{path::Path, process::Command};

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

const SUBCOMMANDS: [&str; 5] = ["run", "replay", "flows", "top", "services"];

#[test]
fn the_stack_file_is_valid_and_grants_no_more_than_needed() {
    let out = Command::new("docker")
        .args(["stack", "config", "-c"])
        .arg(root().join("deploy/netobs-stack.yml"))
        .env("NETOBS_IFACE", "eth0")
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
    let dir = std::env::temp_dir().join(format!("netobs-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
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
    let _ = std::fs::remove_dir_all(&dir);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && err.trim().is_empty(), "{err}");
}

#[test]
fn completions_and_man_page_cover_every_command() {
    for shell in ["bash", "zsh", "fish"] {
        let script = netobs(&["completions", shell]);
        for sub in SUBCOMMANDS {
            assert!(script.contains(sub), "{shell} completion lacks {sub}");
        }
    }
    let man = netobs(&["man"]);
    assert!(man.starts_with(".ie") || man.starts_with(".TH"), "roff");
    for sub in SUBCOMMANDS {
        assert!(
            man.contains(&format!(".TH netobs-{sub} 1")),
            "man page lacks netobs-{sub}"
        );
    }
}
