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
    /// `-` for a task in no network's view yet (see `ip`).
    pub network: String,
    /// None for a task the manager lists but no network shows yet: not in
    /// service discovery (starting, or failing its health check).
    pub ip: Option<IpAddr>,
    /// Hostname where the engine tells it, else the node's address.
    pub node: String,
    /// The task's state (`running`, `starting` while a health check has
    /// yet to pass, ...); `unknown` on a worker for other nodes' tasks.
    pub state: String,
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
        .chain(inv.tasks.iter().map(|t| t.service.as_str()))
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
                    ip: Some(e.ip),
                    node: node(e.node_ip),
                    state: e.state.clone().unwrap_or_else(|| "unknown".into()),
                })
                .collect();
            // The manager's tasks that no network shows.
            for t in inv.tasks.iter().filter(|t| t.service == name) {
                if !tasks.iter().any(|v| v.task == t.name) {
                    tasks.push(TaskView {
                        task: t.name.clone(),
                        network: "-".into(),
                        ip: None,
                        node: t.node.clone(),
                        state: t.state.clone(),
                    });
                }
            }
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
