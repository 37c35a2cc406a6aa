//! Pattern search in payload bytes: Shift-And over the patterns packed into
//! 64-bit words (`netobs_common::Matcher`). The Aho-Corasick automaton it
//! replaced looked up its next state with the state it was in, so each
//! payload byte waited for the load of the last one (about 3 ns a byte,
//! whatever the instructions: making the lookup half as many instructions
//! changed nothing); here a byte's masks are loaded by the byte alone, and
//! what carries over is a shift, an or and an and.
use core::ptr::{read_unaligned, read_volatile};

use netobs_common::{MATCHER_WORDS, MAX_PATTERNS, PAYLOAD_SCAN_LEN};

use crate::maps::patterns;

/// Bit mask of the patterns found in the first `n` bytes of `buf`.
///
/// The words not in use are tested per byte rather than given a loop of
/// their own per word count: with one loop per count, the benchmark's
/// one-word case measured 15-33 ns slower. The payload is read 8 bytes at
/// a time: one load, one loop test and one index step for 8 bytes, where
/// a loop over bytes spent more on those than on the matching itself.
#[inline(always)]
pub fn scan(buf: &[u8; PAYLOAD_SCAN_LEN], n: usize) -> u32 {
    let m = patterns();
    // SAFETY (every read below): the loader initialised the record in the
    // read-only data; indexes are a byte and constants.
    let words = unsafe { read_volatile(&raw const (*m).words) } as usize;
    let mut starts = [0u64; MATCHER_WORDS];
    for (w, start) in starts.iter_mut().enumerate() {
        if w < words {
            *start = unsafe { read_volatile(&raw const (*m).starts[w]) };
        }
    }
    let mut d = [0u64; MATCHER_WORDS];
    // Every bit `d` ever had: a pattern occurred if its last bit is among
    // them (checked once, after the walk).
    let mut seen = [0u64; MATCHER_WORDS];
    let mut step = |c: u8| {
        for w in 0..MATCHER_WORDS {
            if w < words {
                let mask = unsafe { read_volatile(&raw const (*m).masks[c as usize][w]) };
                d[w] = ((d[w] << 1) | starts[w]) & mask;
                seen[w] |= d[w];
            }
        }
    };
    let blocks = n / 8;
    for b in 0..PAYLOAD_SCAN_LEN / 8 {
        if b >= blocks {
            break;
        }
        // SAFETY: b < PAYLOAD_SCAN_LEN / 8: 8 bytes within `buf`.
        let raw = unsafe { read_unaligned(buf.as_ptr().add(8 * b) as *const u64) };
        // Byte k of the block is bits 8k.. of its little-endian value.
        let block = u64::from_le(raw);
        for k in 0..8 {
            step((block >> (8 * k)) as u8);
        }
    }
    // The last n % 8 bytes.
    for k in 0..8 {
        let i = 8 * blocks + k;
        if i >= n {
            break;
        }
        let Some(&c) = buf.get(i) else {
            break;
        };
        step(c);
    }
    let mut found = 0;
    for (p, bit) in (0..MAX_PATTERNS).zip(0u32..) {
        let (end, word) = unsafe {
            (
                read_volatile(&raw const (*m).pattern_end[p]),
                read_volatile(&raw const (*m).pattern_word[p]) as usize,
            )
        };
        // Constant indexes only: an index from the record would keep
        // `seen` in memory, zeroed by a call to a byte-loop memset.
        for (w, &bits) in seen.iter().enumerate() {
            if w == word && bits & end != 0 {
                found |= 1 << bit;
            }
        }
    }
    found
}
