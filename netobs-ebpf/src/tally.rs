//! Counting in a shared hash map keyed by something rare (a peer and a
//! direction, a drop reason, a checksum verdict): add to the key's value,
//! insert the key when it is new, and when the map is full add to the
//! all-zero key the agent seeded, so nothing is lost silently. The maps are
//! shared between CPUs: adds are atomic.
use aya_ebpf::{bindings::BPF_NOEXIST, maps::HashMap};
use netobs_common::Counter;

use core::mem::MaybeUninit;

use crate::{mem, record::add64};

/// `-EEXIST` from a `BPF_NOEXIST` insert.
const EEXIST: i32 = -17;

/// A value that counts.
pub trait Tally: Copy {
    /// Adds `by` to `*p`, atomically.
    fn add_to(p: *mut Self, by: &Self);
}

impl Tally for u64 {
    #[inline(always)]
    fn add_to(p: *mut u64, by: &u64) {
        add64(p, *by);
    }
}

impl Tally for Counter {
    #[inline(always)]
    fn add_to(p: *mut Counter, by: &Counter) {
        // SAFETY: a value of a shared map.
        unsafe {
            add64(&raw mut (*p).packets, by.packets);
            add64(&raw mut (*p).bytes, by.bytes);
        }
    }
}

/// Adds `v` to `key`'s count in `map`; to the all-zero key's when the map
/// has no room for `key`. `K`'s size must be a multiple of 4.
#[inline(always)]
pub fn add<K, V: Tally>(map: &HashMap<K, V>, key: &K, v: V) {
    if let Some(p) = map.get_ptr_mut(key) {
        V::add_to(p, &v);
        return;
    }
    match map.insert(key, v, BPF_NOEXIST as u64) {
        Ok(()) => {}
        // Another CPU inserted it first.
        Err(EEXIST) => {
            if let Some(p) = map.get_ptr_mut(key) {
                V::add_to(p, &v);
            }
        }
        Err(_) => {
            // Zeroed here only: building it on every call cost 10-15 ns
            // (measured); word stores, never a memset call.
            let mut zero = MaybeUninit::<K>::uninit();
            // SAFETY: word stores over the whole key; every key type is
            // plain integers whose size is a multiple of 4 (asserted in
            // common).
            let zero = unsafe {
                mem::zero(zero.as_mut_ptr());
                zero.assume_init_ref()
            };
            if let Some(p) = map.get_ptr_mut(zero) {
                V::add_to(p, &v);
            }
        }
    }
}
