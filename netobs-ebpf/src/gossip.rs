//! UDP gossip (memberlist on 7946) per peer address and direction. Swarm
//! falls back to TCP when UDP gossip is blocked, so the cluster looks
//! healthy while every UDP probe is lost: the agent sees it as datagrams
//! leaving for a peer and none coming back. Gossip is a few packets a
//! second per peer: a shared hash map with atomic adds is enough.
use core::ptr::write_volatile;

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
    // loop the verifier walks byte by byte. Volatile stores: the verifier
    // wants stack accesses aligned, and LLVM, allowed misaligned accesses
    // (`.cargo/config.toml`), would merge two words into one 8-byte store
    // at a 4-byte boundary.
    let p = peer.as_ptr() as *const u32;
    let mut words = [0u32; 5];
    let w = words.as_mut_ptr();
    // SAFETY: the addresses are 8-aligned in FlowKey (asserted in common);
    // four words are 16 bytes, written into the five-word array.
    unsafe {
        for i in 0..4 {
            write_volatile(w.add(i), *p.add(i));
        }
        // family, direction, padding (little-endian BPF).
        write_volatile(
            w.add(4),
            u32::from(key.outer_family) | (direction as u32) << 8,
        );
    }
    // SAFETY: GossipKey is 20 bytes of plain integers, 4-aligned, the
    // layout of these five words.
    let g = unsafe { &*(words.as_ptr() as *const GossipKey) };
    tally::add(&GOSSIP, g, Counter { packets, bytes });
}
