//! Zeroing and copying records without `memset`/`memcpy`.
//!
//! LLVM's BPF backend turns a plain zero-init or struct copy into a call to a
//! byte-loop `memset`/`memcpy`, which the verifier then walks byte by byte on
//! every path: enough of them make a program "too large", and each call runs
//! a byte loop (10-15 ns on the pattern path). Volatile word stores stay
//! word stores. `cargo xtask build` fails when a program calls one.
use core::ptr::{read_volatile, write_volatile};

use netobs_common::{FAMILY_IPV4, FAMILY_NONE};

/// Zeroes `*p`.
///
/// # Safety
/// `p` must be valid for writes of `T`, whose size is a multiple of 4.
#[inline(always)]
pub unsafe fn zero<T>(p: *mut T) {
    let w = p as *mut u32;
    for i in 0..core::mem::size_of::<T>() / 4 {
        // SAFETY: within *p, per the contract.
        unsafe { write_volatile(w.add(i), 0) };
    }
}

/// Copies `*src` to `*dst`.
///
/// # Safety
/// Both must be valid and 4-byte aligned for `T`, whose size is a multiple
/// of 4.
#[inline(always)]
pub unsafe fn copy<T>(dst: *mut T, src: *const T) {
    let d = dst as *mut u32;
    let s = src as *const u32;
    for i in 0..core::mem::size_of::<T>() / 4 {
        // SAFETY: within both objects, per the contract.
        unsafe { write_volatile(d.add(i), read_volatile(s.add(i))) };
    }
}

/// Whether two keys are equal.
///
/// The first word holds interface, direction, class and both address
/// families; when it is equal, the words an address family leaves zero
/// (the last 12 bytes of an IPv4 address, the whole inner tuple of ESP) are
/// zero in both keys, so only the others are compared: 7 of 11 words for
/// VXLAN over IPv4, 4 for ESP. Differences are OR-ed together: one branch
/// per family, not one per word.
///
/// # Safety
/// `a` must be valid for reads of a FlowKey (8-aligned, as `b`).
#[inline(always)]
pub unsafe fn same_key(a: *const netobs_common::FlowKey, b: &netobs_common::FlowKey) -> bool {
    let x = a as *const u64;
    let y = b.quads();
    // SAFETY: every index is within both keys (11 words).
    let d = |i: usize| unsafe { read_volatile(x.add(i)) } ^ y[i];
    // Word 0: ifindex, direction, class, families; 1 and 3: the first half
    // of each outer address; 5: VNI or SPI, protocol, encapsulation.
    let mut diff = d(0) | d(1) | d(3) | d(5);
    if b.outer_family != FAMILY_IPV4 {
        diff |= d(2) | d(4);
    }
    if b.inner_family != FAMILY_NONE {
        // 6 and 8: the first half of each inner address; 10: the ports.
        diff |= d(6) | d(8) | d(10);
        if b.inner_family != FAMILY_IPV4 {
            diff |= d(7) | d(9);
        }
    }
    diff == 0
}

/// Zeroes `*p` a 64-bit word at a time.
///
/// # Safety
/// `p` must be valid for writes of `T` and 8-aligned; `T`'s size is a
/// multiple of 8.
#[inline(always)]
pub unsafe fn zero64<T>(p: *mut T) {
    let w = p as *mut u64;
    for i in 0..core::mem::size_of::<T>() / 8 {
        // SAFETY: within *p, per the contract.
        unsafe { write_volatile(w.add(i), 0) };
    }
}
