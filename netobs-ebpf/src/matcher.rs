//! Pattern search in payload bytes: Shift-And over the patterns packed into
//! 64-bit words (`netobs_common::Matcher`). The Aho-Corasick automaton it
//! replaced looked up its next state with the state it was in, so each
//! payload byte waited for the load of the last one (about 3 ns a byte,
//! whatever the instructions: making the lookup half as many instructions
//! changed nothing); here a byte's masks are loaded by the byte alone, and
//! what carries over is a shift, an or and an and.
use core::ptr::{read_unaligned, read_volatile};

use netobs_common::{MATCHER_WORDS, MAX_PATTERNS, PAYLOAD_SCAN_LEN};

use crate::{maps::patterns, packet::Packet};

/// Where the scan reads the payload: 8 bytes at a time, or single bytes,
/// each read checked (`None` ends the scan).
pub trait Bytes {
    /// Bytes `i..i + 8`, byte `i + k` in bits `8 * k..`.
    fn word(&self, i: usize) -> Option<u64>;
    fn byte(&self, i: usize) -> Option<u8>;
}

/// A payload copied out of the packet.
impl Bytes for [u8; PAYLOAD_SCAN_LEN] {
    #[inline(always)]
    fn word(&self, i: usize) -> Option<u64> {
        if i + 8 > PAYLOAD_SCAN_LEN {
            return None;
        }
        // SAFETY: 8 bytes within the array, checked above.
        let raw = unsafe { read_unaligned(self.as_ptr().add(i) as *const u64) };
        Some(u64::from_le(raw))
    }

    #[inline(always)]
    fn byte(&self, i: usize) -> Option<u8> {
        self.get(i).copied()
    }
}

/// A payload read where it lies in the packet, for one that is linear: no
/// helper call and no copy.
pub struct InPacket<'a, P> {
    pub pkt: &'a P,
    pub off: usize,
}

impl<P: Packet> Bytes for InPacket<'_, P> {
    #[inline(always)]
    fn word(&self, i: usize) -> Option<u64> {
        self.pkt
            .at::<8>(self.off + i)
            .map(|h| u64::from_le(h.raw64(0)))
    }

    #[inline(always)]
    fn byte(&self, i: usize) -> Option<u8> {
        self.pkt.at::<1>(self.off + i).map(|h| h.u8(0))
    }
}

/// Words of patterns in use (0 without patterns).
#[inline(always)]
pub fn words() -> usize {
    // SAFETY: as in `scan`.
    unsafe { read_volatile(&raw const (*patterns()).words) as usize }
}

/// Bit mask of the patterns found in the first `n` (at most
/// `PAYLOAD_SCAN_LEN`) bytes of `bytes`.
///
/// The words not in use are tested per byte rather than given a loop of
/// their own per word count: with one loop per count, the benchmark's
/// one-word case measured 15-33 ns slower. The payload is read 8 bytes at
/// a time: one load, one loop test and one index step for 8 bytes, where
/// a loop over bytes spent more on those than on the matching itself.
#[inline(always)]
pub fn scan<B: Bytes>(bytes: &B, n: usize) -> u32 {
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
        let Some(block) = bytes.word(8 * b) else {
            break;
        };
        for k in 0..8 {
            step((block >> (8 * k)) as u8);
        }
    }
    // The last n % 8 bytes: the end of the payload's last 8 bytes read as
    // one word (a read and a bounds check per byte cost the benchmark's
    // 39-byte payload a fifth of its scan); byte by byte only when the
    // whole payload is shorter.
    let rest = n % 8;
    if n >= 8 {
        if rest > 0 {
            // Opaque to LLVM, which would otherwise read `end - 8` off a
            // pointer checked as `end`: a negative offset, which the
            // verifier refuses.
            if let Some(last) = bytes.word(core::hint::black_box(n - 8)) {
                let mut tail = last >> (8 * (8 - rest));
                for k in 0..7 {
                    if k >= rest {
                        break;
                    }
                    step(tail as u8);
                    tail >>= 8;
                }
            }
        }
    } else {
        for i in 0..7 {
            if i >= n {
                break;
            }
            let Some(c) = bytes.byte(i) else {
                break;
            };
            step(c);
        }
    }
    // Whether any pattern ended: one test a word, and most payloads hold
    // none; only then which.
    let mut any = 0;
    for (w, &bits) in seen.iter().enumerate() {
        if w < words {
            any |= bits & unsafe { read_volatile(&raw const (*m).ends[w]) };
        }
    }
    if any == 0 {
        return 0;
    }
    // A copy made here, whole: indexing `seen` itself by a value from the
    // record kept it in memory from the start, zeroed by a call to memset.
    let at = core::hint::black_box(seen);
    let mut found = 0;
    for (p, bit) in (0..MAX_PATTERNS).zip(0u32..) {
        let (end, word) = unsafe {
            (
                read_volatile(&raw const (*m).pattern_end[p]),
                read_volatile(&raw const (*m).pattern_word[p]) as usize,
            )
        };
        if at[word % MATCHER_WORDS] & end != 0 {
            found |= 1 << bit;
        }
    }
    found
}
