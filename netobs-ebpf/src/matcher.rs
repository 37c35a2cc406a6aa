//! Pattern search in payload bytes: one table lookup per byte through an
//! Aho-Corasick automaton the agent compiles, so the cost does not grow with
//! the number or length of patterns.
use netobs_common::PAYLOAD_SCAN_LEN;

use crate::maps::MATCHER;

/// Bit mask of the patterns found in the first `n` bytes of `buf`.
#[inline(always)]
pub fn scan(buf: &[u8; PAYLOAD_SCAN_LEN], n: usize) -> u32 {
    let mut state: u32 = 0;
    let mut found: u32 = 0;
    for (i, &b) in buf.iter().enumerate() {
        if i >= n {
            break;
        }
        let Some(&entry) = MATCHER.get(state * 256 + b as u32) else {
            break;
        };
        found |= entry >> 16;
        state = entry & 0xffff;
    }
    found
}
