//! From what the API returned to an `Inventory`: pure, so the tests can feed
//! it JSON captured from real engines.
use std::collections::BTreeMap;

use bollard::models::{
    ContainerSummary, LocalNodeState, NetworkInspect, Node as ApiNode, Service, ServiceInfo, Swarm,
    SystemInfo, Task, TaskState,
};

use super::{
    parse_ip, Endpoint, EndpointKind, Inventory, Network, Node, Peer, SwarmState, ENCRYPTED_OPTION,
    VXLAN_ID_OPTION,
};

pub type RawNetwork = NetworkInspect;

/// Everything one sync read from the engine. The manager-only parts are
/// `None` on a worker.
#[derive(Debug, Default, Clone)]
pub struct Raw {
    pub info: SystemInfo,
    /// Overlay networks, inspected with `verbose=true`.
    pub networks: Vec<RawNetwork>,
    pub containers: Vec<ContainerSummary>,
    pub services: Option<Vec<Service>>,
    pub nodes: Option<Vec<ApiNode>>,
    pub swarm: Option<Swarm>,
    /// Manager only: every task, with its state.
    pub tasks: Option<Vec<Task>>,
}

const SERVICE_LABEL: &str = "com.docker.swarm.service.name";
const TASK_LABEL: &str = "com.docker.swarm.task.name";

impl Inventory {
    pub fn from_raw(raw: &Raw, synced_at: f64) -> Inventory {
        let mut inv = Inventory {
            docker_up: true,
            swarm: swarm_state(raw),
            synced_at,
            ..Inventory::default()
        };
        for n in &raw.networks {
            if n.driver.as_deref() != Some("overlay") {
                continue;
            }
            let Some(id) = n.id.clone() else { continue };
            inv.networks.push(network(n, &id));
            network_endpoints(n, &id, &mut inv.endpoints);
        }
        for c in &raw.containers {
            container_endpoints(c, &inv.networks, &mut inv.endpoints);
        }
        for s in raw.services.iter().flatten() {
            service_vips(s, &mut inv.endpoints);
        }
        task_states(raw, &mut inv.endpoints);
        inv.nodes = raw.nodes.iter().flatten().filter_map(node).collect();
        inv.tasks = tasks(raw, &inv.nodes);
        inv.endpoints
            .sort_by(|a, b| (&a.network_id, a.ip).cmp(&(&b.network_id, b.ip)));
        inv
    }
}

fn swarm_state(raw: &Raw) -> Option<SwarmState> {
    let s = raw.info.swarm.as_ref()?;
    if s.local_node_state != Some(LocalNodeState::ACTIVE) {
        return None;
    }
    let port = raw
        .swarm
        .as_ref()
        .and_then(|w| w.data_path_port)
        .or_else(|| s.cluster.as_ref().and_then(|c| c.data_path_port))
        .and_then(|p| u16::try_from(p).ok())
        .filter(|p| *p != 0);
    Some(SwarmState {
        node_id: s.node_id.clone().unwrap_or_default(),
        node_addr: s.node_addr.as_deref().and_then(parse_ip),
        hostname: raw.info.name.clone().unwrap_or_default(),
        manager: s.control_available.unwrap_or(false),
        data_path_port: port,
    })
}

fn network(n: &NetworkInspect, id: &str) -> Network {
    let options: BTreeMap<String, String> =
        n.options.clone().unwrap_or_default().into_iter().collect();
    let vnis = options
        .get(VXLAN_ID_OPTION)
        .map(|v| v.split(',').filter_map(|s| s.trim().parse().ok()).collect())
        .unwrap_or_default();
    Network {
        id: id.to_owned(),
        name: n.name.clone().unwrap_or_else(|| id.to_owned()),
        vnis,
        // The overlay driver turns IPsec on when the option is present,
        // whatever its value.
        encrypted: options.contains_key(ENCRYPTED_OPTION),
        ingress: n.ingress.unwrap_or(false),
        subnets: n
            .ipam
            .iter()
            .flat_map(|i| i.config.iter().flatten())
            .filter_map(|c| c.subnet.clone())
            .collect(),
        peers: n
            .peers
            .iter()
            .flatten()
            .map(|p| Peer {
                name: p.name.clone().unwrap_or_default(),
                ip: p.ip.as_deref().and_then(parse_ip),
            })
            .collect(),
        options,
    }
}

/// Adds `e`, or fills in what an endpoint with the same address lacks.
fn add(endpoints: &mut Vec<Endpoint>, e: Endpoint) {
    if let Some(old) = endpoints
        .iter_mut()
        .find(|o| o.network_id == e.network_id && o.ip == e.ip)
    {
        old.service = old.service.take().or(e.service);
        old.task = old.task.take().or(e.task);
        old.container = old.container.take().or(e.container);
        old.node_ip = old.node_ip.or(e.node_ip);
        if old.kind == EndpointKind::Container && e.kind != EndpointKind::Container {
            old.kind = e.kind;
        }
        return;
    }
    endpoints.push(e);
}

/// The verbose inspect's service table (every task on the network, with the
/// node that runs it) and its local containers.
fn network_endpoints(n: &NetworkInspect, id: &str, out: &mut Vec<Endpoint>) {
    for (name, value) in n.services.iter().flatten() {
        // A malformed entry is skipped, not fatal: other services still label.
        let Ok(info) = serde_json::from_value::<ServiceInfo>(value.clone()) else {
            continue;
        };
        if let Some(vip) = info.vip.as_deref().and_then(parse_ip) {
            add(
                out,
                Endpoint {
                    network_id: id.to_owned(),
                    ip: vip,
                    kind: EndpointKind::Vip,
                    service: Some(name.clone()),
                    task: None,
                    container: None,
                    node_ip: None,
                    state: None,
                },
            );
        }
        for t in info.tasks.iter().flatten() {
            let Some(ip) = t.endpoint_ip.as_deref().and_then(parse_ip) else {
                continue;
            };
            add(
                out,
                Endpoint {
                    network_id: id.to_owned(),
                    ip,
                    kind: EndpointKind::Task,
                    service: (!name.is_empty()).then(|| name.clone()),
                    task: t.name.clone(),
                    container: None,
                    node_ip: t
                        .info
                        .as_ref()
                        .and_then(|i| i.get("Host IP"))
                        .and_then(|s| parse_ip(s)),
                    state: None,
                },
            );
        }
    }
    for (cid, c) in n.containers.iter().flatten() {
        let name = c.name.clone().unwrap_or_default();
        for addr in [&c.ipv4_address, &c.ipv6_address].into_iter().flatten() {
            let Some(ip) = parse_ip(addr) else { continue };
            let lb = cid.starts_with("lb-");
            add(
                out,
                Endpoint {
                    network_id: id.to_owned(),
                    ip,
                    kind: if lb {
                        EndpointKind::LoadBalancer
                    } else {
                        EndpointKind::Container
                    },
                    service: None,
                    task: None,
                    container: (!lb).then(|| name.clone()),
                    node_ip: None,
                    state: None,
                },
            );
        }
    }
}

/// Local containers: names and the swarm labels of their tasks.
fn container_endpoints(c: &ContainerSummary, networks: &[Network], out: &mut Vec<Endpoint>) {
    let labels = c.labels.clone().unwrap_or_default();
    let service = labels.get(SERVICE_LABEL).cloned();
    let task = labels.get(TASK_LABEL).cloned().filter(|t| !t.is_empty());
    let name = c
        .names
        .iter()
        .flatten()
        .next()
        .map(|n| n.trim_start_matches('/').to_owned());
    for (net_name, ep) in c
        .network_settings
        .iter()
        .flat_map(|s| s.networks.iter().flatten())
    {
        let Some(net) = networks
            .iter()
            .find(|n| Some(&n.id) == ep.network_id.as_ref() || &n.name == net_name)
        else {
            continue;
        };
        for addr in [&ep.ip_address, &ep.global_ipv6_address]
            .into_iter()
            .flatten()
        {
            let Some(ip) = parse_ip(addr) else { continue };
            add(
                out,
                Endpoint {
                    network_id: net.id.clone(),
                    ip,
                    kind: if service.is_some() {
                        EndpointKind::Task
                    } else {
                        EndpointKind::Container
                    },
                    service: service.clone(),
                    task: task.clone(),
                    container: name.clone(),
                    node_ip: None,
                    state: None,
                },
            );
        }
    }
}

/// Each task endpoint's state: from the manager's task list (tasks on a
/// network are named `service.slot.id`); where there is none (a worker),
/// the local containers' state, and the remote tasks' stays unknown.
fn task_states(raw: &Raw, endpoints: &mut [Endpoint]) {
    let from_tasks: BTreeMap<&str, String> = raw
        .tasks
        .iter()
        .flatten()
        .filter_map(|t| {
            let state = t.status.as_ref()?.state?;
            Some((t.id.as_deref()?, state.to_string()))
        })
        .collect();
    // A container whose health check has yet to pass runs, but its task is
    // `starting`, as the manager would say.
    let from_containers: BTreeMap<String, String> = raw
        .containers
        .iter()
        .filter_map(|c| {
            let name = c.names.iter().flatten().next()?.trim_start_matches('/');
            let starting = c
                .status
                .as_deref()
                .is_some_and(|s| s.contains("(health: starting)"));
            let state = if starting {
                "starting".to_owned()
            } else {
                c.state?.to_string()
            };
            Some((name.to_owned(), state))
        })
        .collect();
    for e in endpoints
        .iter_mut()
        .filter(|e| e.kind == EndpointKind::Task)
    {
        let Some(task) = e.task.as_deref() else {
            continue;
        };
        let id = task.rsplit('.').next().unwrap_or(task);
        e.state = if raw.tasks.is_some() {
            from_tasks.get(id).cloned()
        } else {
            from_containers.get(task).cloned()
        };
    }
}

/// Manager only: the tasks meant to run (desired state `running`), named as
/// their containers are.
fn tasks(raw: &Raw, nodes: &[Node]) -> Vec<super::Task> {
    let service_name = |id: &str| {
        raw.services
            .iter()
            .flatten()
            .find(|s| s.id.as_deref() == Some(id))
            .and_then(|s| s.spec.as_ref()?.name.clone())
    };
    let mut out: Vec<super::Task> = raw
        .tasks
        .iter()
        .flatten()
        .filter(|t| t.desired_state == Some(TaskState::RUNNING))
        .filter_map(|t| {
            let id = t.id.clone()?;
            let service = service_name(t.service_id.as_deref()?)?;
            let node_id = t.node_id.clone().unwrap_or_default();
            let slot = t.slot.map_or_else(|| node_id.clone(), |s| s.to_string());
            Some(super::Task {
                name: format!("{service}.{slot}.{id}"),
                id,
                service,
                node: nodes
                    .iter()
                    .find(|n| n.id == node_id)
                    .map_or(node_id, |n| n.hostname.clone()),
                state: t
                    .status
                    .as_ref()
                    .and_then(|s| s.state)
                    .map_or_else(|| "unknown".to_owned(), |s| s.to_string()),
            })
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// Manager only: every service's VIP on every network.
fn service_vips(s: &Service, out: &mut Vec<Endpoint>) {
    let Some(name) = s.spec.as_ref().and_then(|sp| sp.name.clone()) else {
        return;
    };
    for v in s
        .endpoint
        .iter()
        .flat_map(|e| e.virtual_ips.iter().flatten())
    {
        let (Some(net), Some(ip)) = (v.network_id.clone(), v.addr.as_deref().and_then(parse_ip))
        else {
            continue;
        };
        add(
            out,
            Endpoint {
                network_id: net,
                ip,
                kind: EndpointKind::Vip,
                service: Some(name.clone()),
                task: None,
                container: None,
                node_ip: None,
                state: None,
            },
        );
    }
}

fn node(n: &ApiNode) -> Option<Node> {
    Some(Node {
        id: n.id.clone()?,
        hostname: n
            .description
            .as_ref()
            .and_then(|d| d.hostname.clone())
            .unwrap_or_default(),
        role: n
            .spec
            .as_ref()
            .and_then(|s| s.role.as_ref())
            .map(|r| r.to_string())
            .unwrap_or_default(),
        addr: n
            .status
            .as_ref()
            .and_then(|s| s.addr.as_deref())
            .and_then(parse_ip),
    })
}
