//! `cargo xtask fixtures`: the inventory tests read Docker API answers from
//! `netobs/tests/fixtures/docker/{manager,worker}`. This captures them anew
//! from a real two-node swarm: a plain and an encrypted overlay network, a
//! web service on the worker and a client on the manager.
use anyhow::Result;
use netobs_tests::swarm::{capture_api, TwoNodeSwarm};

use crate::root;

pub fn run() -> Result<()> {
    let swarm = TwoNodeSwarm::new()?;
    swarm.network("backend", false)?;
    swarm.network("secure", true)?;
    swarm.service(
        "web",
        &["backend"],
        "worker",
        &["httpd", "-f", "-p", "80", "-h", "/www"],
    )?;
    swarm.wait_running("web", 1)?;
    swarm.service("client", &["backend"], "manager", &["sleep", "3600"])?;
    swarm.wait_running("client", 1)?;
    let dir = root().join("netobs/tests/fixtures/docker");
    let _ = std::fs::remove_dir_all(&dir);
    capture_api(&swarm.manager, &dir.join("manager"))?;
    capture_api(&swarm.worker, &dir.join("worker"))?;
    eprintln!("fixtures written to {}", dir.display());
    Ok(())
}
