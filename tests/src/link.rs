//! Links inside test namespaces, through iproute2 and ethtool.
use anyhow::{Context, Result};

use crate::netns::Netns;

/// A veth pair with one end in each namespace.
pub fn veth_pair(a: &Netns, name_a: &str, b: &Netns, name_b: &str) -> Result<()> {
    crate::netns::run(std::process::Command::new("ip").args([
        "link",
        "add",
        name_a,
        "netns",
        a.name(),
        "type",
        "veth",
        "peer",
        "name",
        name_b,
        "netns",
        b.name(),
    ]))?;
    Ok(())
}

pub fn add_addr(ns: &Netns, dev: &str, cidr: &str) -> Result<()> {
    ns.ip(&["addr", "add", cidr, "dev", dev, "nodad"])
        .map(drop)
        .or_else(|_| {
            // IPv4 addresses take no `nodad`.
            ns.ip(&["addr", "add", cidr, "dev", dev]).map(drop)
        })
}

pub fn set_up(ns: &Netns, dev: &str) -> Result<()> {
    ns.ip(&["link", "set", dev, "up"]).map(drop)
}

pub fn set_mtu(ns: &Netns, dev: &str, mtu: u32) -> Result<()> {
    ns.ip(&["link", "set", dev, "mtu", &mtu.to_string()])
        .map(drop)
}

/// A kernel VXLAN device with a fixed remote: no learning, no multicast.
pub fn vxlan(
    ns: &Netns,
    dev: &str,
    vni: u32,
    local: &str,
    remote: &str,
    port: u16,
    underlay: &str,
) -> Result<()> {
    ns.ip(&[
        "link",
        "add",
        dev,
        "type",
        "vxlan",
        "id",
        &vni.to_string(),
        "local",
        local,
        "remote",
        remote,
        "dstport",
        &port.to_string(),
        "dev",
        underlay,
        "nolearning",
    ])
    .map(drop)
}

/// Turns segmentation and receive offloads on or off, so that one skb is
/// one wire packet (off) or super-packets appear (on).
pub fn set_offloads(ns: &Netns, dev: &str, on: bool) -> Result<()> {
    let v = if on { "on" } else { "off" };
    ns.exec(&[
        "ethtool", "-K", dev, "tso", v, "gso", v, "gro", v, "tx", v, "rx", v,
    ])
    .map(drop)
    .with_context(|| format!("setting offloads on {dev} (apt-get install ethtool)"))
}

/// Interface counters as the kernel keeps them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkStats {
    pub rx_packets: u64,
    pub tx_packets: u64,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
}

pub fn stats(ns: &Netns, dev: &str) -> Result<LinkStats> {
    let out = ns.ip(&["-s", "-j", "link", "show", "dev", dev])?;
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("parsing `ip -j -s link`")?;
    let s = &v[0]["stats64"];
    let get = |dir: &str, what: &str| s[dir][what].as_u64().context("missing link statistic");
    Ok(LinkStats {
        rx_packets: get("rx", "packets")?,
        tx_packets: get("tx", "packets")?,
        rx_bytes: get("rx", "bytes")?,
        tx_bytes: get("tx", "bytes")?,
    })
}

pub fn ifindex(ns: &Netns, dev: &str) -> Result<u32> {
    let out = ns.ip(&["-j", "link", "show", "dev", dev])?;
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("parsing `ip -j link`")?;
    v[0]["ifindex"]
        .as_u64()
        .map(|i| i as u32)
        .context("no ifindex")
}
