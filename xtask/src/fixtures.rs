//! `cargo xtask fixtures`: the inventory tests read Docker API answers from
//! `netobs/tests/fixtures/docker/{manager,worker}`. This captures them anew
//! from a real two-node swarm: a plain and an encrypted overlay network, a
//! web service on the worker and a client on the manager.
use anyhow::Result;
use netobs_tests::swarm::{capture_api, TwoNodeSwarm, IMAGE};

use crate::root;

pub fn run() -> Result<()> {
    let swarm = TwoNodeSwarm::new()?;
    let m = &swarm.manager;
    m.docker(&[
        "network",
        "create",
        "--driver",
        "overlay",
        "--attachable",
        "backend",
    ])?;
    m.docker(&[
        "network",
        "create",
        "--driver",
        "overlay",
        "--attachable",
        "--opt",
        "encrypted",
        "secure",
    ])?;
    for (name, role, cmd) in [
        (
            "web",
            "worker",
            vec!["httpd", "-f", "-p", "80", "-h", "/www"],
        ),
        ("client", "manager", vec!["sleep", "3600"]),
    ] {
        let constraint = format!("node.role=={role}");
        let mut a = vec![
            "service",
            "create",
            "--detach",
            "--name",
            name,
            "--network",
            "backend",
        ];
        a.extend([
            "--endpoint-mode",
            "dnsrr",
            "--constraint",
            &constraint,
            IMAGE,
        ]);
        a.extend(cmd);
        m.docker(&a)?;
        swarm.wait_running(name, 1)?;
    }
    let dir = root().join("netobs/tests/fixtures/docker");
    let _ = std::fs::remove_dir_all(&dir);
    capture_api(&swarm.manager, &dir.join("manager"))?;
    capture_api(&swarm.worker, &dir.join("worker"))?;
    eprintln!("fixtures written to {}", dir.display());
    Ok(())
}
