//! Loss between nodes, measured: the VXLAN a peer's agent counted leaving
//! that node against what this node's agent counted arriving, flow by flow.
//!
//! Each agent judges what was sent *to* it, so a node pair is measured by
//! one agent only (the receiver's) however many agents or managers run: no
//! double counting. A flow is compared once it has gone quiet (no packet
//! for `SETTLE_SECS` at the sender): nothing of it can still be on the way,
//! so sent - received is loss, not packets in flight, and no clock is
//! compared across nodes. A flow that resumes is compared again on its
//! next pause, by its growth since. What cannot be judged is counted, never
//! guessed: a flow older than either agent, or one that either kernel's
//! table evicted while it ran (its count started over).
//!
//! Limits: a flow that never pauses for `SETTLE_SECS` (one long stream) is
//! judged only when it pauses or ends; the peer's agent must be reachable
//! from this node (`--metrics-addr` beyond loopback, the same port and
//! token on every node).
use std::{
    collections::{HashMap, HashSet},
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::{Duration, Instant},
};

use netobs_common::{Class, Direction, FlowKey, FlowStats, ENCAP_FRAGMENT};
use tokio::sync::watch;

use crate::{
    api::{Answer, FlowId, LossHealth, SettledFlow, SettledFlows},
    client::{self, Agent, Member},
    doctor::{window::Window, RECENT_SECS},
    export::http::ApiState,
    flows::addr,
};

/// A flow is settled once its last packet is this old at the sender.
pub const SETTLE_SECS: f64 = 3.0;
/// Settled flows are offered to peers for this long after their last
/// packet: several checks see each.
pub const OFFERED_SECS: f64 = 60.0;
/// This node keeps its own flows earlier and longer than it offers them,
/// so that a flow settled at the sender is in this node's list too: its
/// last packet arrived a moment later, and the list is up to a read (1 s)
/// old when the checker compares.
const KEPT_FROM_SECS: f64 = SETTLE_SECS - 2.0;
const KEPT_UNTIL_SECS: f64 = OFFERED_SECS + 5.0;
/// Settled flows listed per read; past it they are counted as omitted.
pub const MAX_SETTLED: usize = 65_536;
/// How often each peer's agent is asked.
pub const CHECK_EVERY: Duration = Duration::from_secs(10);
/// How long a peer's agent has to answer.
const PEER_TIMEOUT: Duration = Duration::from_secs(3);
/// Slack for "began after the agents started" and "no eviction during it".
const MARGIN_SECS: f64 = 2.0;
/// Peers asked at most (past it, a flood of spoofed sources).
const MAX_PEERS: usize = 256;
/// Flows remembered with what was last compared of them.
const MAX_LEDGER: usize = 262_144;

/// The VXLAN flows of one read that have gone quiet.
#[derive(Debug, Default)]
pub struct Collector {
    pub flows: Vec<SettledFlow>,
    pub omitted: u64,
}

impl Collector {
    /// Keeps `k` if it is a VXLAN flow with an inner flow (not a fragment)
    /// whose last packet is between `KEPT_FROM_SECS` and `KEPT_UNTIL_SECS`
    /// old at `now_ns` (the monotonic clock, as the reader hands `v` on).
    #[inline]
    pub fn offer(&mut self, k: &FlowKey, v: &FlowStats, now_ns: u64) {
        if k.class != Class::Vxlan as u8 || k.encap == ENCAP_FRAGMENT || k.inner_family == 0 {
            return;
        }
        let idle = now_ns.saturating_sub(v.last_seen_ns) as f64 / 1e9;
        if !(KEPT_FROM_SECS..=KEPT_UNTIL_SECS).contains(&idle) {
            return;
        }
        if self.flows.len() >= MAX_SETTLED {
            self.omitted += 1;
            return;
        }
        let (Some(outer_src), Some(outer_dst), Some(inner_src), Some(inner_dst)) = (
            addr(k.outer_family, &k.outer_src),
            addr(k.outer_family, &k.outer_dst),
            addr(k.inner_family, &k.inner_src),
            addr(k.inner_family, &k.inner_dst),
        ) else {
            return;
        };
        self.flows.push(SettledFlow {
            direction: Direction::from_u8(k.direction).unwrap_or(Direction::Ingress),
            outer_src,
            outer_dst,
            vni: k.vni_or_spi,
            inner_proto: k.inner_proto,
            inner_src,
            inner_dst,
            inner_sport: k.inner_sport,
            inner_dport: k.inner_dport,
            packets: v.packets,
            age_secs: now_ns.saturating_sub(v.first_seen_ns) as f64 / 1e9,
            idle_secs: idle,
        });
    }
}

/// What `/api/v1/settled` answers a peer: this node's egress flows settled
/// long enough, to `to` if given.
pub fn offered(all: &SettledFlows, to: Option<IpAddr>) -> SettledFlows {
    SettledFlows {
        uptime_secs: all.uptime_secs,
        evicted_secs_ago: all.evicted_secs_ago,
        omitted: all.omitted,
        flows: all
            .flows
            .iter()
            .filter(|f| {
                f.direction == Direction::Egress
                    && (SETTLE_SECS..=OFFERED_SECS).contains(&f.idle_secs)
                    && to.is_none_or(|t| f.outer_dst == t)
            })
            .cloned()
            .collect(),
    }
}

/// What was last compared of one flow.
struct Compared {
    sent: u64,
    received: u64,
    at: f64,
}

/// One peer's figures since this agent started.
#[derive(Debug, Clone, Default)]
struct PeerTotals {
    name: String,
    agent: String,
    /// When it was last asked (a node that left is forgotten).
    asked_at: f64,
    checked: u64,
    lost: u64,
    unverified_flows: u64,
}

/// This node's own view for one check: its settled ingress flows and how
/// long its agent and table have been trustworthy.
pub struct Here<'a> {
    /// This node's addresses: only what was sent to them is compared.
    pub addrs: &'a HashSet<IpAddr>,
    pub received: &'a HashMap<FlowId, u64>,
    pub uptime_secs: f64,
    pub evicted_secs_ago: Option<f64>,
}

/// One check's (peer, packets checked, packets lost).
type CheckFigures = Vec<(IpAddr, u64, u64)>;

/// Every flow compared so far, and what each peer lost.
pub struct Ledger {
    compared: HashMap<FlowId, Compared>,
    peers: HashMap<IpAddr, PeerTotals>,
    /// Each check's figures, over the recent window.
    recent: Window<CheckFigures>,
}

impl Default for Ledger {
    fn default() -> Ledger {
        Ledger {
            compared: HashMap::new(),
            peers: HashMap::new(),
            recent: Window::new(RECENT_SECS),
        }
    }
}

impl Ledger {
    /// Compares what `peer`'s agent says it sent here with what arrived.
    pub fn account(
        &mut self,
        peer: IpAddr,
        name: &str,
        sent: &SettledFlows,
        here: &Here,
        now: f64,
    ) -> (u64, u64) {
        let (mut checked, mut lost, mut unverified) = (0u64, 0u64, 0u64);
        let evicted_within = |age: f64| {
            [sent.evicted_secs_ago, here.evicted_secs_ago]
                .iter()
                .flatten()
                .any(|ago| *ago <= age + MARGIN_SECS)
        };
        for f in sent
            .flows
            .iter()
            .filter(|f| f.outer_src == peer && here.addrs.contains(&f.outer_dst))
        {
            let id = f.id();
            let received = here.received.get(&id).copied();
            // Counted from its first packet at both ends, and neither table
            // started it over since.
            let whole = f.age_secs + MARGIN_SECS < here.uptime_secs.min(sent.uptime_secs)
                && !evicted_within(f.age_secs);
            match self.compared.get_mut(&id) {
                Some(c) => {
                    let since = now - c.at;
                    c.at = now;
                    let r = received.unwrap_or(0);
                    if evicted_within(since) || f.packets < c.sent || r < c.received {
                        // A count started over: compare from here on.
                        if f.packets != c.sent || r != c.received {
                            unverified += 1;
                        }
                        (c.sent, c.received) = (f.packets, r);
                        continue;
                    }
                    let (ds, dr) = (f.packets - c.sent, r - c.received);
                    checked += ds;
                    lost += ds.saturating_sub(dr);
                    (c.sent, c.received) = (f.packets, r);
                }
                None => {
                    if self.compared.len() >= MAX_LEDGER {
                        unverified += 1;
                        continue;
                    }
                    let r = received.unwrap_or(0);
                    if whole {
                        checked += f.packets;
                        lost += f.packets.saturating_sub(r);
                    } else {
                        unverified += 1;
                    }
                    self.compared.insert(
                        id,
                        Compared {
                            sent: f.packets,
                            received: r,
                            at: now,
                        },
                    );
                }
            }
        }
        let t = self.peers.entry(peer).or_default();
        t.name = name.to_owned();
        t.agent = "ok".into();
        t.asked_at = now;
        t.checked += checked;
        t.lost += lost;
        t.unverified_flows += unverified;
        (checked, lost)
    }

    /// A peer's agent that gave nothing this time, with the status word.
    pub fn unanswered(&mut self, peer: IpAddr, name: &str, status: &str, now: f64) {
        let t = self.peers.entry(peer).or_default();
        t.name = name.to_owned();
        t.agent = status.to_owned();
        t.asked_at = now;
    }

    /// Ends one check at `now`: remembers its figures for the recent
    /// window and forgets flows no peer offered for a while.
    pub fn end_check(&mut self, now: f64, this_check: CheckFigures) {
        self.recent.push(now, this_check);
        self.compared
            .retain(|_, c| now - c.at <= KEPT_UNTIL_SECS + 2.0 * CHECK_EVERY.as_secs_f64());
        // A peer no longer exchanging VXLAN with this node (it left the
        // swarm, or went quiet) is not asked: forget it after the window.
        self.peers.retain(|_, t| now - t.asked_at < RECENT_SECS);
    }

    pub fn report(&self) -> Vec<LossHealth> {
        let mut recent: HashMap<IpAddr, (u64, u64)> = HashMap::new();
        for check in self.recent.values() {
            for (peer, c, l) in check {
                let e = recent.entry(*peer).or_default();
                e.0 += c;
                e.1 += l;
            }
        }
        let mut out: Vec<LossHealth> = self
            .peers
            .iter()
            .map(|(addr, t)| {
                let (recent_checked, recent_lost) = recent.get(addr).copied().unwrap_or_default();
                LossHealth {
                    peer: t.name.clone(),
                    addr: *addr,
                    agent: t.agent.clone(),
                    checked: t.checked,
                    lost: t.lost,
                    recent_checked,
                    recent_lost,
                    unverified_flows: t.unverified_flows,
                }
            })
            .collect();
        out.sort_by_key(|l| l.addr);
        out
    }
}

/// What the checker found, for the exporter (metrics) and the doctor.
#[derive(Debug, Clone, Default)]
pub struct LossReport {
    /// None: loss is not measured, and why.
    pub off: Option<String>,
    pub peers: Vec<LossHealth>,
}

/// Where peers' agents are asked.
pub struct CheckerConfig {
    /// This agent's own port: every node's agent serves on it.
    pub port: u16,
    pub token: Option<crate::token::Token>,
}

/// Starts the checker: every `CHECK_EVERY`, asks each peer's agent what it
/// sent here and compares. Runs in a thread of its own (the client is
/// blocking) until `stop`.
pub fn spawn_checker(
    cfg: CheckerConfig,
    api: watch::Receiver<Arc<ApiState>>,
    stop: watch::Receiver<bool>,
) -> watch::Receiver<Arc<LossReport>> {
    let (tx, rx) = watch::channel(Arc::new(LossReport::default()));
    std::thread::spawn(move || {
        let started = Instant::now();
        let mut ledger = Ledger::default();
        loop {
            // Sleep in short steps so that a stop is seen within a second.
            let wake = Instant::now() + CHECK_EVERY;
            while Instant::now() < wake {
                if *stop.borrow() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(500));
            }
            let state = api.borrow().clone();
            check(&cfg, &state, started.elapsed().as_secs_f64(), &mut ledger);
            let report = LossReport {
                off: None,
                peers: ledger.report(),
            };
            if tx.send(Arc::new(report)).is_err() {
                return;
            }
        }
    });
    rx
}

/// One check of every peer this node exchanges VXLAN with.
fn check(cfg: &CheckerConfig, state: &ApiState, uptime: f64, ledger: &mut Ledger) {
    let now = crate::time::monotonic_secs();
    let mine = &state.settled;
    let me = state.inventory.swarm.as_ref().and_then(|s| s.node_addr);
    let mut my_addrs: HashSet<IpAddr> = me.into_iter().collect();
    let mut received: HashMap<FlowId, u64> = HashMap::new();
    let mut peers: Vec<IpAddr> = Vec::new();
    for f in mine
        .flows
        .iter()
        .filter(|f| f.direction == Direction::Ingress)
    {
        *received.entry(f.id()).or_default() += f.packets;
        my_addrs.insert(f.outer_dst);
        peers.push(f.outer_src);
    }
    peers.extend(state.health.peers.iter().map(|p| p.addr));
    // Only nodes of this swarm run agents to ask: VXLAN from any other
    // address (spoofed, or an exposed port) has its own finding.
    let nodes: HashSet<IpAddr> = state.inventory.node_addresses().collect();
    peers.retain(|p| !my_addrs.contains(p) && nodes.contains(&p.to_canonical()));
    peers.sort();
    peers.dedup();
    peers.truncate(MAX_PEERS);
    let members: Vec<Member> = peers
        .iter()
        .map(|p| Member {
            node: state.inventory.node_name(*p),
            agent: Agent {
                addr: SocketAddr::new(*p, cfg.port),
                token: cfg.token.clone(),
                timeout: Some(PEER_TIMEOUT),
            },
        })
        .collect();
    let query = me.map(|a| format!("to={a}"));
    let view = client::ask_each(&members, |a| {
        client::fetch_query::<crate::api::SettledEndpoint>(a, query.as_deref())
    });
    let here = Here {
        addrs: &my_addrs,
        received: &received,
        uptime_secs: uptime,
        evicted_secs_ago: mine.evicted_secs_ago,
    };
    let mut this_check = Vec::new();
    for (peer, n) in peers.iter().zip(&view.nodes) {
        match &n.answer {
            Answer::Ok { data } => {
                let (c, l) = ledger.account(*peer, &n.node, data, &here, now);
                this_check.push((*peer, c, l));
            }
            other => ledger.unanswered(*peer, &n.node, other.status(), now),
        }
    }
    ledger.end_check(now, this_check);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(sport: u16, packets: u64, age: f64) -> SettledFlow {
        SettledFlow {
            direction: Direction::Egress,
            outer_src: [192, 0, 2, 1].into(),
            outer_dst: [192, 0, 2, 2].into(),
            vni: 4097,
            inner_proto: 17,
            inner_src: [10, 0, 0, 2].into(),
            inner_dst: [10, 0, 0, 3].into(),
            inner_sport: sport,
            inner_dport: 53,
            packets,
            age_secs: age,
            idle_secs: 5.0,
        }
    }

    fn sent(flows: Vec<SettledFlow>) -> SettledFlows {
        SettledFlows {
            uptime_secs: 1000.0,
            evicted_secs_ago: None,
            omitted: 0,
            flows,
        }
    }

    const PEER: [u8; 4] = [192, 0, 2, 1];

    /// This node: the flows' outer destination.
    fn me() -> HashSet<IpAddr> {
        HashSet::from([IpAddr::from([192, 0, 2, 2])])
    }

    fn here<'a>(addrs: &'a HashSet<IpAddr>, received: &'a HashMap<FlowId, u64>) -> Here<'a> {
        Here {
            addrs,
            received,
            uptime_secs: 500.0,
            evicted_secs_ago: None,
        }
    }

    #[test]
    fn loss_is_what_was_sent_and_did_not_arrive_counted_once() {
        let mut l = Ledger::default();
        let a = flow(1, 100, 20.0);
        let b = flow(2, 50, 20.0);
        let mut received = HashMap::from([(a.id(), 90u64), (b.id(), 50)]);
        let me = me();
        let s = sent(vec![a.clone(), b.clone()]);
        assert_eq!(
            l.account(PEER.into(), "m", &s, &here(&me, &received), 1.0),
            (150, 10)
        );
        // Offered again by the next check: nothing new.
        assert_eq!(
            l.account(PEER.into(), "m", &s, &here(&me, &received), 11.0),
            (0, 0)
        );
        // a resumed and paused again: 20 more sent, 15 more arrived.
        received.insert(a.id(), 105);
        let s = sent(vec![flow(1, 120, 40.0), b]);
        assert_eq!(
            l.account(PEER.into(), "m", &s, &here(&me, &received), 21.0),
            (20, 5)
        );
        let r = l.report();
        assert_eq!(
            (r[0].checked, r[0].lost, r[0].unverified_flows),
            (170, 15, 0)
        );
    }

    #[test]
    fn flows_that_cannot_be_judged_are_counted_not_guessed() {
        let mut l = Ledger::default();
        // Older than this agent; and one begun after an eviction here.
        let old = flow(1, 100, 600.0);
        let evicted = flow(2, 10, 5.0);
        let none = HashMap::new();
        let me = me();
        let after_eviction = Here {
            evicted_secs_ago: Some(3.0),
            ..here(&me, &none)
        };
        assert_eq!(
            l.account(
                PEER.into(),
                "m",
                &sent(vec![old, evicted]),
                &after_eviction,
                1.0
            ),
            (0, 0)
        );
        assert_eq!(l.report()[0].unverified_flows, 2);
        // Nothing of a whole flow arrived: all of it lost.
        let gone = flow(3, 7, 5.0);
        assert_eq!(
            l.account(PEER.into(), "m", &sent(vec![gone]), &here(&me, &none), 2.0),
            (7, 7)
        );
    }

    #[test]
    fn only_settled_egress_to_the_asker_is_offered() {
        let mut all = sent(vec![flow(1, 1, 9.0), flow(2, 1, 9.0), flow(3, 1, 9.0)]);
        all.flows[1].idle_secs = 2.5;
        all.flows[2].direction = Direction::Ingress;
        let to_b = offered(&all, Some([192, 0, 2, 2].into()));
        assert_eq!(to_b.flows.len(), 1);
        assert_eq!(to_b.flows[0].inner_sport, 1);
        assert!(offered(&all, Some([192, 0, 2, 9].into())).flows.is_empty());
    }

    #[test]
    fn what_went_to_another_node_is_not_compared() {
        let mut l = Ledger::default();
        let mut elsewhere = flow(1, 100, 20.0);
        elsewhere.outer_dst = [192, 0, 2, 3].into();
        let none = HashMap::new();
        let me = me();
        assert_eq!(
            l.account(
                PEER.into(),
                "m",
                &sent(vec![elsewhere]),
                &here(&me, &none),
                1.0
            ),
            (0, 0)
        );
        assert_eq!(l.report()[0].unverified_flows, 0);
    }
}
