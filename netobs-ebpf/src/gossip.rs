//! UDP gossip (memberlist on 7946) per peer address and direction. Swarm
//! falls back to TCP when UDP gossip is blocked, so the cluster looks
//! healthy while every UDP probe is lost: the agent sees it as datagrams
//! leaving for a peer and none coming back. Gossip is a few packets a
//! second per peer: a shared hash map with atomic adds is enough.
use netobs_common::{Counter, Direction, FlowKey, GossipKey};

use crate::{maps::GOSSIP, tally};

/// Counts one gossip datagram; `key` holds the outer addresses.
#[inline(always)]
pub fn count(key: &FlowKey, direction: Direction, packets: u64, bytes: u64) {
    let peer = if direction == Direction::Ingress {
        &key.outer_src
    } else {
        &key.outer_dst
    };
    // Word by word: a struct literal with a 16-byte array becomes a byte
    // loop the verifier walks byte by byte.
    let p = peer.as_ptr() as *const u32;
    // SAFETY: the addresses are 8-aligned in FlowKey (asserted in common);
    // four words are 16 bytes.
    let words: [u32; 5] = unsafe {
        [
            *p,
            *p.add(1),
            *p.add(2),
            *p.add(3),
            // family, direction, padding (little-endian BPF).
            u32::from(key.outer_family) | (direction as u32) << 8,
        ]
    };
    // SAFETY: GossipKey is 20 bytes of plain integers, 4-aligned, the
    // layout of these five words.
    let g = unsafe { &*(words.as_ptr() as *const GossipKey) };
    tally::add(&GOSSIP, g, Counter { packets, bytes });
}
