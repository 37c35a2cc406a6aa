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
