//! The standard lab: two hosts joined by a veth pair (the underlay) and a
//! kernel VXLAN device on each (the overlay), all static: fixed MACs and
//! neighbours, no IPv6 chatter, so every packet on the wire is one a test
//! sent. Used by the integration tests and by `cargo xtask demo`.
use anyhow::{Context, Result};

use crate::{link, netns::Netns};

pub const UNDERLAY_DEV_A: &str = "nv-a";
pub const UNDERLAY_DEV_B: &str = "nv-b";
pub const OVERLAY_DEV: &str = "vx0";
pub const UNDERLAY_A: &str = "10.200.0.1";
pub const UNDERLAY_B: &str = "10.200.0.2";
pub const OVERLAY_A: &str = "10.201.0.1";
pub const OVERLAY_B: &str = "10.201.0.2";
const MAC_UNDERLAY_A: &str = "02:00:0a:c8:00:01";
const MAC_UNDERLAY_B: &str = "02:00:0a:c8:00:02";
const MAC_OVERLAY_A: &str = "02:00:0a:c9:00:01";
const MAC_OVERLAY_B: &str = "02:00:0a:c9:00:02";

#[derive(Debug, Clone, Copy)]
pub struct LabConfig {
    pub vni: u32,
    pub port: u16,
    /// Leave TSO/GSO/GRO on (super-packets) or turn them off (one skb is one
    /// wire packet, so link counters and netobs counts compare exactly).
    pub offloads: bool,
}

impl Default for LabConfig {
    fn default() -> Self {
        LabConfig {
            vni: 4097,
            port: 4789,
            offloads: false,
        }
    }
}

pub struct TwoHostLab {
    pub config: LabConfig,
    // Declared last: dropped after everything that lives inside them.
    pub a: Netns,
    pub b: Netns,
}

impl TwoHostLab {
    pub fn new(config: LabConfig) -> Result<TwoHostLab> {
        let lab = TwoHostLab {
            config,
            a: Netns::new("a")?,
            b: Netns::new("b")?,
        };
        lab.build().context("building the two-host lab")?;
        Ok(lab)
    }

    fn build(&self) -> Result<()> {
        let c = self.config;
        link::veth_pair(&self.a, UNDERLAY_DEV_A, &self.b, UNDERLAY_DEV_B)?;
        let hosts = [
            (
                &self.a,
                UNDERLAY_DEV_A,
                UNDERLAY_A,
                UNDERLAY_B,
                MAC_UNDERLAY_A,
                MAC_UNDERLAY_B,
                OVERLAY_A,
                OVERLAY_B,
                MAC_OVERLAY_A,
                MAC_OVERLAY_B,
            ),
            (
                &self.b,
                UNDERLAY_DEV_B,
                UNDERLAY_B,
                UNDERLAY_A,
                MAC_UNDERLAY_B,
                MAC_UNDERLAY_A,
                OVERLAY_B,
                OVERLAY_A,
                MAC_OVERLAY_B,
                MAC_OVERLAY_A,
            ),
        ];
        for (ns, dev, local, remote, mac, peer_mac, ov_local, ov_remote, ov_mac, ov_peer_mac) in
            hosts
        {
            // No router solicitations or MLD reports: only test traffic.
            ns.exec(&["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"])?;
            ns.exec(&["sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"])?;
            ns.ip(&["link", "set", dev, "address", mac])?;
            link::add_addr(ns, dev, &format!("{local}/24"))?;
            link::set_up(ns, dev)?;
            ns.ip(&[
                "neigh",
                "replace",
                remote,
                "lladdr",
                peer_mac,
                "dev",
                dev,
                "nud",
                "permanent",
            ])?;
            link::vxlan(ns, OVERLAY_DEV, c.vni, local, remote, c.port, dev)?;
            ns.ip(&["link", "set", OVERLAY_DEV, "address", ov_mac])?;
            link::add_addr(ns, OVERLAY_DEV, &format!("{ov_local}/24"))?;
            link::set_up(ns, OVERLAY_DEV)?;
            ns.ip(&[
                "neigh",
                "replace",
                ov_remote,
                "lladdr",
                ov_peer_mac,
                "dev",
                OVERLAY_DEV,
                "nud",
                "permanent",
            ])?;
            for d in [dev, OVERLAY_DEV] {
                link::set_offloads(ns, d, c.offloads)?;
            }
        }
        Ok(())
    }

    /// `(namespace, underlay device)` of host A, where netobs usually runs.
    pub fn host_a(&self) -> (&Netns, &'static str) {
        (&self.a, UNDERLAY_DEV_A)
    }

    pub fn host_b(&self) -> (&Netns, &'static str) {
        (&self.b, UNDERLAY_DEV_B)
    }
}

/// A program the test started (netobs, a server), killed on drop.
pub struct Process {
    child: Option<std::process::Child>,
}

impl Process {
    pub fn spawn(mut cmd: std::process::Command) -> Result<Process> {
        let child = cmd.spawn().with_context(|| format!("starting {cmd:?}"))?;
        Ok(Process { child: Some(child) })
    }

    /// The running child, for its pipes.
    pub fn child_mut(&mut self) -> &mut std::process::Child {
        self.child
            .as_mut()
            .expect("a Process holds its child until stopped")
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Sends `signal` and waits for the exit, collecting piped output.
    pub fn stop(mut self, signal: i32) -> Result<std::process::Output> {
        let child = self.child.take().context("process already stopped")?;
        // SAFETY: signalling our own child, which has not been reaped.
        unsafe { libc::kill(child.id() as i32, signal) };
        child.wait_with_output().context("waiting for the process")
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
