//! Zeroing and copying records without `memset`/`memcpy`.
//!
//! LLVM's BPF backend turns a plain zero-init or struct copy into a call to a
//! byte-loop `memset`/`memcpy`, which the verifier then walks byte by byte on
//! every path: enough of them make a program "too large". Volatile word
//! stores stay word stores.
use core::ptr::{read_volatile, write_volatile};

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

/// Whether two keys are equal: one branch, not one per word.
///
/// # Safety
/// `a` must be valid for reads of a FlowKey (8-aligned, as `b`).
#[inline(always)]
pub unsafe fn same_key(a: *const netobs_common::FlowKey, b: &netobs_common::FlowKey) -> bool {
    let x = a as *const u64;
    let y = b.quads();
    let mut diff = 0u64;
    for (i, w) in y.iter().enumerate() {
        // SAFETY: within both keys.
        diff |= unsafe { read_volatile(x.add(i)) } ^ *w;
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
