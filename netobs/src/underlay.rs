//! What happens beside the overlay's flows on the underlay, per peer: UDP
//! gossip each way, the kernel's drops of overlay-path packets, and the
//! inner checksums of the SYNs that arrive, as their growth since the last
//! read. The kernel's maps only grow; the last values
//! are kept here, at most one per map entry.
use std::{
    collections::{BTreeSet, HashMap},
    net::IpAddr,
};

use netobs_common::{ChecksumKey, Direction, DropKey, GossipKey, CSUM_BAD, CSUM_PARTIAL};

use crate::{
    api::DropTraffic,
    datapath::{Datapath, DatapathError},
    flows::{addr, label::Labeler},
};

/// UDP gossip with one peer address in one read.
#[derive(Debug, Clone, Default)]
pub struct GossipGrowth {
    pub name: String,
    pub packets_out: u64,
    pub packets_in: u64,
}

/// Overlay-path packets the kernel dropped in one read, for one peer, way,
/// kind and reason.
#[derive(Debug, Clone)]
pub struct DropGrowth {
    pub peer: IpAddr,
    pub name: String,
    pub direction: Direction,
    pub traffic: DropTraffic,
    pub reason: String,
    pub packets: u64,
}

/// Inner TCP SYNs from one peer on one interface in one read, by checksum
/// verdict.
#[derive(Debug, Clone, Default)]
pub struct ChecksumGrowth {
    pub name: String,
    pub ok: u64,
    /// Never filled in: the pseudo-header's sum, left for a NIC.
    pub partial: u64,
    pub bad: u64,
}

/// One read's growth.
#[derive(Debug, Clone, Default)]
pub struct Underlay {
    pub gossip: HashMap<IpAddr, GossipGrowth>,
    pub drops: Vec<DropGrowth>,
    /// By (peer, ifindex).
    pub checksums: HashMap<(IpAddr, u32), ChecksumGrowth>,
    /// Gossip datagrams, checksums and drops the kernel could not key (its maps full).
    pub untracked: u64,
    /// Why the kernel's drops are not traced, when they are not.
    pub drops_unavailable: Option<String>,
}

#[derive(Default)]
pub struct Tracker {
    gossip: HashMap<GossipKey, u64>,
    drops: HashMap<DropKey, u64>,
    checksums: HashMap<ChecksumKey, u64>,
}

/// Growth of a counter that only grows while the programs stay loaded; a
/// smaller value is a new load.
fn growth(last: Option<u64>, now: u64) -> u64 {
    match last {
        Some(l) if now >= l => now - l,
        _ => now,
    }
}

impl Tracker {
    pub fn read(&mut self, dp: &Datapath, labeler: &Labeler) -> Result<Underlay, DatapathError> {
        let mut out = Underlay::default();
        for (k, v) in dp.gossip()? {
            let g = growth(self.gossip.insert(k, v.packets), v.packets);
            if g == 0 {
                continue;
            }
            if k == GossipKey::default() {
                out.untracked += g;
                continue;
            }
            let Some(peer) = addr(k.family, &k.peer) else {
                continue;
            };
            let e = out.gossip.entry(peer).or_insert_with(|| GossipGrowth {
                name: labeler.node_name(peer),
                ..GossipGrowth::default()
            });
            if k.direction == Direction::Egress as u8 {
                e.packets_out += g;
            } else {
                e.packets_in += g;
            }
        }
        let reasons = match dp.drop_view() {
            Ok(r) => Some(r),
            Err(why) => {
                out.drops_unavailable = Some(why.to_owned());
                None
            }
        };
        let mut local: Option<BTreeSet<IpAddr>> = None;
        for (k, v) in dp.drops()? {
            let g = growth(self.drops.insert(k, v), v);
            if g == 0 {
                continue;
            }
            if k == DropKey::default() {
                out.untracked += g;
                continue;
            }
            let (Some(src), Some(dst), Some(traffic)) = (
                addr(k.family, &k.src),
                addr(k.family, &k.dst),
                DropTraffic::from_u8(k.traffic),
            ) else {
                continue;
            };
            // Sent from here: the peer is the destination. Looked up only
            // when something was dropped.
            let local = local.get_or_insert_with(crate::host::local_addrs);
            let (peer, direction) = if local.contains(&src) {
                (dst, Direction::Egress)
            } else {
                (src, Direction::Ingress)
            };
            out.drops.push(DropGrowth {
                peer,
                name: labeler.node_name(peer),
                direction,
                traffic,
                reason: reasons.map_or_else(|| k.reason.to_string(), |r| r.name(k.reason)),
                packets: g,
            });
        }
        for (k, v) in dp.checksums()? {
            let g = growth(self.checksums.insert(k, v), v);
            if g == 0 {
                continue;
            }
            if k == ChecksumKey::default() {
                out.untracked += g;
                continue;
            }
            let Some(peer) = addr(k.family, &k.peer) else {
                continue;
            };
            let e = out
                .checksums
                .entry((peer, k.ifindex))
                .or_insert_with(|| ChecksumGrowth {
                    name: labeler.node_name(peer),
                    ..ChecksumGrowth::default()
                });
            match k.verdict {
                CSUM_PARTIAL => e.partial += g,
                CSUM_BAD => e.bad += g,
                _ => e.ok += g,
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::growth;

    #[test]
    fn growth_restarts_with_a_new_load() {
        assert_eq!(growth(None, 5), 5);
        assert_eq!(growth(Some(5), 9), 4);
        assert_eq!(growth(Some(9), 2), 2);
    }
}
