//! UDP gossip (memberlist on 7946) per peer address and direction. Swarm
//! falls back to TCP when UDP gossip is blocked, so the cluster looks
//! healthy while every UDP probe is lost: the agent sees it as datagrams
//! leaving for a peer and none coming back. Gossip is a few packets a
//! second per peer: a shared hash map with atomic adds is enough.
use aya_ebpf::bindings::BPF_NOEXIST;
use netobs_common::{Counter, Direction, FlowKey, GossipKey};

use crate::{maps::GOSSIP, record::add64};

/// `-EEXIST` from a `BPF_NOEXIST` insert.
const EEXIST: i32 = -17;

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
    if add(g, packets, bytes) {
        return;
    }
    let fresh = Counter { packets, bytes };
    match GOSSIP.insert(g, fresh, BPF_NOEXIST as u64) {
        Ok(()) => {}
        // Another CPU inserted it first.
        Err(EEXIST) => {
            add(g, packets, bytes);
        }
        // Full: counted in the agent's overflow key (the all-zero key).
        Err(_) => {
            let zero = [0u32; 5];
            // SAFETY: as above.
            add(
                unsafe { &*(zero.as_ptr() as *const GossipKey) },
                packets,
                bytes,
            );
        }
    }
}

#[inline(always)]
fn add(g: &GossipKey, packets: u64, bytes: u64) -> bool {
    match GOSSIP.get_ptr_mut(g) {
        Some(c) => {
            // SAFETY: a value of the shared map; other CPUs add too.
            unsafe {
                add64(&raw mut (*c).packets, packets);
                add64(&raw mut (*c).bytes, bytes);
            }
            true
        }
        None => false,
    }
}
