//! Flows as the terminal shows them, from the agent's API: one row model for
//! `netobs flows` and `netobs top`, rates from two successive reads.
use std::{collections::HashMap, net::IpAddr, time::Instant};

use crate::{
    api::{Class, Encryption, LabelledFlow},
    flows::{label::UNKNOWN, SortKey},
};

/// How a flow's protection looks on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mark {
    /// VXLAN on a network that does not promise encryption.
    Plain,
    /// VXLAN on a network marked encrypted: the promise is broken.
    PlainOnEncrypted,
    Esp,
    Other,
}

impl Mark {
    pub fn label(self) -> &'static str {
        match self {
            Mark::Plain => "PLAIN",
            Mark::PlainOnEncrypted => "PLAIN!!",
            Mark::Esp => "ESP",
            Mark::Other => "other",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Row {
    /// The node that saw it (the cluster view; empty for one agent).
    pub node: String,
    pub network: String,
    /// VNI, or SPI in hex for ESP.
    pub id: String,
    pub mark: Mark,
    pub peer: String,
    pub src: String,
    pub dst: String,
    pub pps: f64,
    pub bps: f64,
    pub rps: f64,
    pub packets: u64,
    pub bytes: u64,
    pub requests: u64,
    pub last_request: String,
    /// Unix seconds of its last packet.
    pub last_seen: f64,
    /// Its service pair, client first (the connection's two flows share it).
    pub pair: Pair,
    /// The connection it belongs to: both directions share it.
    pub conn: Conn,
    pub state: State,
}

/// What a flow's connection is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// TCP that has not ended, or another protocol.
    Open,
    /// TCP on which a FIN or a reset was seen: finished, not idle.
    Finished,
}

impl State {
    pub fn label(self) -> &'static str {
        match self {
            State::Open => "open",
            State::Finished => "finished",
        }
    }
}

/// Who called whom: the client's name and the server's with its port.
/// Flows without inner ends (ESP) pair with their peer node and SPI.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Pair {
    pub client: String,
    pub server: String,
}

/// One connection: its VNI or SPI and its two ends, in a fixed order.
pub type Conn = (u32, Option<(IpAddr, u16)>, Option<(IpAddr, u16)>);

/// Who: the service, else the address; with the port, which tells one
/// connection between two services from the next.
fn who(service: &str, addr: Option<IpAddr>, port: Option<u16>) -> String {
    let name = match service {
        "" | UNKNOWN => addr.map_or_else(|| "-".to_owned(), |a| a.to_string()),
        s => s.to_owned(),
    };
    match port {
        Some(p) => format!("{name}:{p}"),
        None => name,
    }
}

impl Mark {
    pub fn of(f: &LabelledFlow) -> Mark {
        match (f.flow.class, f.labels.encrypted) {
            (Class::Esp, _) => Mark::Esp,
            (Class::Vxlan, Encryption::Encrypted) => Mark::PlainOnEncrypted,
            (Class::Vxlan, _) => Mark::Plain,
            _ => Mark::Other,
        }
    }
}

/// A flow's identity across reads.
type Identity = (u32, Option<IpAddr>, Option<IpAddr>, SortKey);

/// Packets, bytes and requests of a flow at the last read.
type Counts = (u64, u64, u64);

/// Turns successive flow lists into rows with rates.
#[derive(Default)]
pub struct Rates {
    prev: HashMap<Identity, Counts>,
    at: Option<Instant>,
    /// The agent's clock at the last read: its latest packet (Unix
    /// seconds, as flows carry them; one `Rates` per agent).
    latest: Option<f64>,
}

impl Rates {
    pub fn rows(&mut self, flows: &[LabelledFlow]) -> Vec<Row> {
        let now = Instant::now();
        let dt = self.at.map_or(0.0, |t| now.duration_since(t).as_secs_f64());
        let mut next = HashMap::with_capacity(flows.len());
        let rows = flows
            .iter()
            .map(|lf| {
                let (f, l) = (&lf.flow, &lf.labels);
                let (p, b, r) = (f.packets, f.bytes, f.requests());
                // The interface and outer ends tell apart the same inner
                // flow seen twice.
                let k = (f.ifindex, f.outer_src, f.outer_dst, f.sort_key());
                // A flow new since the last read grew from nothing if it
                // began after that read (short connections start and end
                // between two reads); one that had only been outside the
                // busiest listed has no known growth.
                let began_since = self.latest.is_some_and(|t| f.first_seen > t);
                let unseen = if began_since { (0, 0, 0) } else { (p, b, r) };
                let (pp, pb, pr) = self.prev.get(&k).copied().unwrap_or(unseen);
                next.insert(k, (p, b, r));
                let rate = |now: u64, before: u64| {
                    if dt > 0.0 {
                        now.saturating_sub(before) as f64 / dt
                    } else {
                        0.0
                    }
                };
                let src_end = f.inner_src.zip(f.inner_sport);
                let dst_end = f.inner_dst.zip(f.inner_dport);
                let id = f.vni.or(f.spi).unwrap_or(0);
                Row {
                    node: String::new(),
                    network: if l.network.is_empty() {
                        "-".to_owned()
                    } else {
                        l.network.clone()
                    },
                    id: f
                        .vni
                        .map(|v| v.to_string())
                        .or_else(|| f.spi.map(|s| format!("{s:#x}")))
                        .unwrap_or_else(|| "-".into()),
                    mark: Mark::of(lf),
                    peer: l.peer_node.clone(),
                    src: who(&l.src_service, f.inner_src, f.inner_sport),
                    dst: who(&l.dst_service, f.inner_dst, f.inner_dport),
                    pps: rate(p, pp),
                    bps: rate(b, pb),
                    rps: rate(r, pr),
                    packets: p,
                    bytes: b,
                    requests: r,
                    last_request: lf.last_request.clone().unwrap_or_default(),
                    last_seen: f.last_seen,
                    pair: pair(lf),
                    conn: (id, src_end.min(dst_end), src_end.max(dst_end)),
                    state: if f.tcp_ended() {
                        State::Finished
                    } else {
                        State::Open
                    },
                }
            })
            .collect();
        self.prev = next;
        self.at = Some(now);
        self.latest = flows
            .iter()
            .map(|f| f.flow.last_seen)
            .max_by(f64::total_cmp)
            .or(self.latest);
        rows
    }
}

/// Whether a flow runs from the client to the server: it carries requests,
/// else it carries no responses and leaves from the higher port (clients
/// call from ephemeral ports).
fn from_client(f: &crate::api::Flow) -> bool {
    if f.requests() > 0 {
        return true;
    }
    if !f.http_responses.is_empty() {
        return false;
    }
    match (f.inner_sport, f.inner_dport) {
        (Some(s), Some(d)) => s >= d,
        _ => true,
    }
}

fn pair(lf: &LabelledFlow) -> Pair {
    let (f, l) = (&lf.flow, &lf.labels);
    if f.inner_src.is_none() {
        // ESP (one SA a direction) and outer fragments: the peer node and
        // the SPI or VNI.
        let id = match (f.spi, f.vni) {
            (Some(spi), _) => format!("spi {spi:#x}"),
            (_, Some(vni)) => format!("vni {vni}"),
            _ => String::new(),
        };
        return Pair {
            client: "-".into(),
            server: format!("{} {id}", l.peer_node).trim_end().to_owned(),
        };
    }
    let src = (l.src_service.as_str(), f.inner_src, f.inner_sport);
    let dst = (l.dst_service.as_str(), f.inner_dst, f.inner_dport);
    let (client, server) = if from_client(f) {
        (src, dst)
    } else {
        (dst, src)
    };
    Pair {
        client: who(client.0, client.1, None),
        server: who(server.0, server.1, server.2),
    }
}

/// The connections between two services on a network, as `top` shows them
/// by default: one row for many short connections.
#[derive(Debug, Clone)]
pub struct Group {
    pub node: String,
    pub network: String,
    pub mark: Mark,
    pub pair: Pair,
    pub open: usize,
    pub finished: usize,
    pub pps: f64,
    pub bps: f64,
    pub rps: f64,
    pub packets: u64,
    pub bytes: u64,
    pub requests: u64,
    /// The most recent request line among its flows.
    pub last_request: String,
    /// Indexes of its flows in the rows it was made from.
    pub rows: Vec<usize>,
}

/// `rows` grouped by node, network, protection and service pair, in the
/// order each group first appears.
pub fn groups(rows: &[Row]) -> Vec<Group> {
    type Key<'a> = (&'a str, &'a str, Mark, &'a Pair);
    let mut index: HashMap<Key, usize> = HashMap::new();
    let mut out: Vec<Group> = Vec::new();
    let mut conns: Vec<HashMap<Conn, State>> = Vec::new();
    let mut last_seen: Vec<f64> = Vec::new();
    for (i, r) in rows.iter().enumerate() {
        let key = (r.node.as_str(), r.network.as_str(), r.mark, &r.pair);
        let g = *index.entry(key).or_insert_with(|| {
            out.push(Group {
                node: r.node.clone(),
                network: r.network.clone(),
                mark: r.mark,
                pair: r.pair.clone(),
                open: 0,
                finished: 0,
                pps: 0.0,
                bps: 0.0,
                rps: 0.0,
                packets: 0,
                bytes: 0,
                requests: 0,
                last_request: String::new(),
                rows: Vec::new(),
            });
            conns.push(HashMap::new());
            last_seen.push(f64::MIN);
            out.len() - 1
        });
        let group = &mut out[g];
        group.pps += r.pps;
        group.bps += r.bps;
        group.rps += r.rps;
        group.packets += r.packets;
        group.bytes += r.bytes;
        group.requests += r.requests;
        group.rows.push(i);
        if !r.last_request.is_empty() && r.last_seen >= last_seen[g] {
            last_seen[g] = r.last_seen;
            group.last_request = r.last_request.clone();
        }
        // A connection has finished once either of its flows has.
        let state = conns[g].entry(r.conn).or_insert(State::Open);
        if r.state == State::Finished {
            *state = State::Finished;
        }
    }
    for (group, conns) in out.iter_mut().zip(conns) {
        group.finished = conns.values().filter(|s| **s == State::Finished).count();
        group.open = conns.len() - group.finished;
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::api::{tcp, Direction, Flow, FlowLabels};

    /// One direction of an HTTP connection between client (10.0.0.2) and
    /// web (10.0.0.3:80), from the client's port `port`.
    fn flow(port: u16, to_server: bool, flags: u8, packets: u64) -> LabelledFlow {
        let (c, s): (IpAddr, IpAddr) = ([10, 0, 0, 2].into(), [10, 0, 0, 3].into());
        let (src, dst, sport, dport) = if to_server {
            (c, s, port, 80)
        } else {
            (s, c, 80, port)
        };
        let mut http_requests = BTreeMap::new();
        let mut http_responses = BTreeMap::new();
        if to_server {
            http_requests.insert("GET".to_owned(), 1);
        } else {
            http_responses.insert("2xx".to_owned(), 1);
        }
        LabelledFlow {
            flow: Flow {
                ifindex: 2,
                direction: if to_server {
                    Direction::Egress
                } else {
                    Direction::Ingress
                },
                class: Class::Vxlan,
                outer_src: None,
                outer_dst: None,
                vni: Some(4097),
                spi: None,
                esp_in_udp: None,
                esp_seq: None,
                inner_proto: Some(6),
                inner_src: Some(src),
                inner_dst: Some(dst),
                inner_sport: Some(sport),
                inner_dport: Some(dport),
                packets,
                bytes: packets * 100,
                first_seen: 1.0,
                last_seen: f64::from(port),
                http_requests,
                http_responses,
                pattern_hits: BTreeMap::new(),
                outer_fragments: 0,
                tcp_flags: Some(flags),
            },
            labels: FlowLabels {
                network: "backend".into(),
                vni: "4097".into(),
                encrypted: Encryption::Plain,
                peer_node: "w1".into(),
                src_service: if to_server { "client" } else { "web" }.into(),
                dst_service: if to_server { "web" } else { "client" }.into(),
                peer_known: true,
            },
            last_request: to_server.then(|| format!("GET /{port}")),
        }
    }

    #[test]
    fn connections_group_into_their_service_pair() {
        let done = tcp::SYN | tcp::ACK | tcp::FIN;
        let flows = vec![
            flow(40001, true, done, 5),
            flow(40001, false, done, 4),
            flow(40002, true, done, 5),
            flow(40002, false, tcp::SYN | tcp::ACK | tcp::RST, 3),
            // Still open; its response side not yet seen.
            flow(40003, true, tcp::SYN | tcp::ACK, 2),
        ];
        let rows = Rates::default().rows(&flows);
        let groups = groups(&rows);
        assert_eq!(groups.len(), 1, "{groups:#?}");
        let g = &groups[0];
        assert_eq!(
            g.pair,
            Pair {
                client: "client".into(),
                server: "web:80".into()
            }
        );
        assert_eq!((g.open, g.finished), (1, 2));
        assert_eq!((g.packets, g.requests), (19, 3));
        assert_eq!(g.rows, vec![0, 1, 2, 3, 4]);
        // The latest request among them (its flow was seen last).
        assert_eq!(g.last_request, "GET /40003");
        assert_eq!(rows[1].state, State::Finished);
        assert_eq!(rows[4].state, State::Open);
    }

    #[test]
    fn rates_include_requests_per_second() {
        let mut rates = Rates::default();
        rates.rows(&[flow(40001, true, tcp::SYN, 5)]);
        std::thread::sleep(std::time::Duration::from_millis(100));
        let mut later = flow(40001, true, tcp::SYN | tcp::ACK, 9);
        later.flow.http_requests.insert("GET".into(), 3);
        let rows = rates.rows(&[later]);
        assert!(
            rows[0].rps > 0.0 && rows[0].pps > rows[0].rps,
            "{:?}",
            rows[0]
        );
        assert_eq!(rows[0].requests, 3);
    }

    #[test]
    fn a_connection_begun_and_ended_between_reads_has_its_rate() {
        let mut rates = Rates::default();
        rates.rows(&[flow(40001, true, tcp::SYN, 5)]);
        std::thread::sleep(std::time::Duration::from_millis(100));
        let mut new = flow(40002, true, tcp::SYN | tcp::FIN, 4);
        new.flow.first_seen = 40_001.5;
        // Older than the last read: it was only outside the busiest listed.
        let old = flow(40003, true, tcp::SYN, 7);
        let rows = rates.rows(&[flow(40001, true, tcp::SYN, 5), new, old]);
        assert_eq!(rows[0].pps, 0.0);
        assert!(rows[1].pps > 0.0 && rows[1].rps > 0.0, "{:?}", rows[1]);
        assert_eq!(rows[2].pps, 0.0);
    }
}
