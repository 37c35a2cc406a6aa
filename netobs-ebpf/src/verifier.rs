//! Code that exists for the verifier's sake.
//!
//! The verifier walks every path through a program and can only merge two
//! paths when what it knows about their registers agrees. Header chains of
//! different lengths (IPv6 extension headers, IP options, VLAN tags) leave
//! offsets with different known ranges, so the paths never merge and their
//! number multiplies from one header to the next until the program is "too
//! large". Passing an offset through a map makes the verifier forget its
//! range; one bound check afterwards gives every path the same state again.
use core::ptr::{read_volatile, write_volatile};

use crate::maps::SCRATCH;

/// Offsets past this are not headers anyone sends; it also keeps
/// `offset + header` well under the verifier's 64 KiB packet-offset limit.
pub const MAX_OFFSET: usize = 0x3fff;

/// `off` with its history forgotten, or `None` if it is beyond `MAX_OFFSET`.
#[inline(always)]
pub fn widen(off: usize) -> Option<usize> {
    let s = SCRATCH.get_ptr_mut(0)?;
    // SAFETY: per-CPU scratch value; volatile so the round trip stays.
    let off = unsafe {
        write_volatile(&raw mut (*s).offset, off as u32);
        read_volatile(&raw const (*s).offset) as usize
    };
    if off > MAX_OFFSET {
        return None;
    }
    Some(off)
}

/// `v` with its history forgotten: paths that computed it differently look
/// alike to the verifier from here on.
#[inline(always)]
pub fn forget(v: u32) -> u32 {
    let Some(s) = SCRATCH.get_ptr_mut(0) else {
        return v;
    };
    // SAFETY: per-CPU scratch value; volatile so the round trip stays.
    unsafe {
        write_volatile(&raw mut (*s).index, v);
        read_volatile(&raw const (*s).index)
    }
}
