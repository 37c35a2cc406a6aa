//! The service view: what an operator gets today by breaking into an overlay
//! with a debug container and running `drill <service>` and
//! `drill tasks.<service>`, from the inventory instead, without touching the
//! network.
use std::net::IpAddr;

use serde::Serialize;

use super::{EndpointKind, Inventory};

#[derive(Debug, Clone, Serialize)]
pub struct ServiceView {
    pub name: String,
    /// `vip` when the service has a virtual IP on some network, else
    /// `dnsrr` (DNS round robin over the task addresses).
    pub endpoint_mode: &'static str,
    pub networks: Vec<ServiceNetwork>,
    pub tasks: Vec<TaskView>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ServiceNetwork {
    pub name: String,
    pub encrypted: bool,
    /// What `drill <service>` answers on this network in VIP mode.
    pub vip: Option<IpAddr>,
}

/// A task attached to one network: what `drill tasks.<service>` lists.
#[derive(Debug, Clone, Serialize)]
pub struct TaskView {
    pub task: String,
    pub network: String,
    pub ip: IpAddr,
    /// Hostname where the engine tells it, else the node's address.
    pub node: String,
    /// Tasks appear in the engine's network view once attached and running.
    pub state: &'static str,
}

/// Every service the inventory knows (or the one named), sorted by name.
pub fn services(inv: &Inventory, only: Option<&str>) -> Vec<ServiceView> {
    let net_name = |id: &str| {
        inv.networks
            .iter()
            .find(|n| n.id == id)
            .map(|n| (n.name.clone(), n.encrypted))
    };
    let node = |ip: Option<IpAddr>| ip.map_or_else(|| "-".to_owned(), |ip| inv.node_name(ip));
    let mut names: Vec<&str> = inv
        .endpoints
        .iter()
        .filter(|e| matches!(e.kind, EndpointKind::Task | EndpointKind::Vip))
        .filter_map(|e| e.service.as_deref())
        .filter(|s| only.is_none_or(|o| o == *s))
        .collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .map(|name| {
            let mine: Vec<_> = inv
                .endpoints
                .iter()
                .filter(|e| e.service.as_deref() == Some(name))
                .collect();
            let mut net_ids: Vec<&str> = mine.iter().map(|e| e.network_id.as_str()).collect();
            net_ids.sort();
            net_ids.dedup();
            let networks: Vec<ServiceNetwork> = net_ids
                .iter()
                .filter_map(|id| {
                    let (name, encrypted) = net_name(id)?;
                    let vip = mine
                        .iter()
                        .find(|e| e.network_id == *id && e.kind == EndpointKind::Vip)
                        .map(|e| e.ip);
                    Some(ServiceNetwork {
                        name,
                        encrypted,
                        vip,
                    })
                })
                .collect();
            let mut tasks: Vec<TaskView> = mine
                .iter()
                .filter(|e| e.kind == EndpointKind::Task)
                .map(|e| TaskView {
                    task: e.task.clone().unwrap_or_else(|| "-".into()),
                    network: net_name(&e.network_id).map_or_else(|| "?".into(), |n| n.0),
                    ip: e.ip,
                    node: node(e.node_ip),
                    state: "running",
                })
                .collect();
            tasks.sort_by(|a, b| (&a.task, &a.network).cmp(&(&b.task, &b.network)));
            ServiceView {
                name: name.to_owned(),
                endpoint_mode: if networks.iter().any(|n| n.vip.is_some()) {
                    "vip"
                } else {
                    "dnsrr"
                },
                networks,
                tasks,
            }
        })
        .collect()
}
