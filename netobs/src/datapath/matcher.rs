//! Compiles user patterns into the table the kernel scans with: an
//! Aho-Corasick automaton expanded to a full transition table, so the kernel
//! does exactly one lookup per payload byte and never backtracks.
use std::collections::VecDeque;

use netobs_common::{MatcherEntry, MAX_MATCHER_STATES, MAX_PATTERNS, MAX_PATTERN_LEN};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PatternError {
    #[error("at most {MAX_PATTERNS} patterns can be searched, {0} were given")]
    TooMany(usize),
    #[error("pattern {0:?} is empty")]
    Empty(String),
    #[error("pattern {0:?} is {1} bytes long; at most {MAX_PATTERN_LEN} are searched")]
    TooLong(String, usize),
}

/// Checks the patterns and builds the table (`states * 256` entries).
pub fn compile(patterns: &[Vec<u8>]) -> Result<Vec<MatcherEntry>, PatternError> {
    if patterns.len() > MAX_PATTERNS {
        return Err(PatternError::TooMany(patterns.len()));
    }
    for p in patterns {
        let shown = String::from_utf8_lossy(p).into_owned();
        if p.is_empty() {
            return Err(PatternError::Empty(shown));
        }
        if p.len() > MAX_PATTERN_LEN {
            return Err(PatternError::TooLong(shown, p.len()));
        }
    }
    // Trie: goto_[state][byte], 0 = no edge (the root is never a target).
    let mut goto_: Vec<[u16; 256]> = vec![[0; 256]];
    let mut out: Vec<u16> = vec![0];
    for (i, p) in patterns.iter().enumerate() {
        let mut s = 0usize;
        for &b in p {
            let next = goto_[s][b as usize];
            s = if next != 0 {
                next as usize
            } else {
                goto_.push([0; 256]);
                out.push(0);
                let n = goto_.len() - 1;
                goto_[s][b as usize] = n as u16;
                n
            };
        }
        out[s] |= 1 << i;
    }
    debug_assert!(goto_.len() <= MAX_MATCHER_STATES);
    // Breadth-first: fail links, then the full table delta[s][b].
    let states = goto_.len();
    let mut fail = vec![0usize; states];
    let mut delta = vec![[0u16; 256]; states];
    let mut queue = VecDeque::new();
    for b in 0..256 {
        let t = goto_[0][b] as usize;
        delta[0][b] = t as u16;
        if t != 0 {
            queue.push_back(t);
        }
    }
    while let Some(s) = queue.pop_front() {
        out[s] |= out[fail[s]];
        for b in 0..256 {
            let t = goto_[s][b] as usize;
            if t != 0 {
                fail[t] = delta[fail[s]][b] as usize;
                delta[s][b] = t as u16;
                queue.push_back(t);
            } else {
                delta[s][b] = delta[fail[s]][b];
            }
        }
    }
    let mut table = Vec::with_capacity(states * 256);
    for row in &delta {
        for &next in row {
            table.push(next as u32 | (out[next as usize] as u32) << 16);
        }
    }
    Ok(table)
}

/// What the kernel computes with the table, for tests and for replaying a
/// table against known payloads.
pub fn scan(table: &[MatcherEntry], payload: &[u8]) -> u32 {
    let mut state = 0u32;
    let mut found = 0u32;
    for &b in payload {
        let Some(&e) = table.get((state * 256 + b as u32) as usize) else {
            break;
        };
        found |= e >> 16;
        state = e & 0xffff;
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(patterns: &[Vec<u8>], payload: &[u8]) -> u32 {
        let mut m = 0;
        for (i, p) in patterns.iter().enumerate() {
            if payload.windows(p.len()).any(|w| w == p.as_slice()) {
                m |= 1 << i;
            }
        }
        m
    }

    #[test]
    fn agrees_with_naive_search() {
        let patterns: Vec<Vec<u8>> = ["HTTP", "TP/1", "password", "pass", "aaab", "ab", "x"]
            .iter()
            .map(|s| s.as_bytes().to_vec())
            .collect();
        let table = compile(&patterns).expect("valid patterns");
        let payloads: [&[u8]; 6] = [
            b"GET / HTTP/1.1\r\nHost: x\r\n",
            b"user=bob&password=hunter2",
            b"aaaaab",
            b"nothing here",
            b"",
            b"paspass",
        ];
        for p in payloads {
            assert_eq!(scan(&table, p), naive(&patterns, p), "payload {p:?}");
        }
    }

    #[test]
    fn pseudo_random_payloads_agree() {
        let patterns: Vec<Vec<u8>> = vec![b"abc".to_vec(), b"bca".to_vec(), b"cc".to_vec()];
        let table = compile(&patterns).expect("valid patterns");
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..2000 {
            let payload: Vec<u8> = (0..40)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    b"abc"[(x % 3) as usize]
                })
                .collect();
            assert_eq!(scan(&table, &payload), naive(&patterns, &payload));
        }
    }

    #[test]
    fn rejects_bad_patterns() {
        assert_eq!(compile(&[vec![]]), Err(PatternError::Empty(String::new())));
        assert!(matches!(
            compile(&[vec![b'a'; 33]]),
            Err(PatternError::TooLong(_, 33))
        ));
        assert_eq!(
            compile(&vec![b"a".to_vec(); 9]),
            Err(PatternError::TooMany(9))
        );
    }

    #[test]
    fn full_set_fits_the_kernel_table() {
        let patterns: Vec<Vec<u8>> = (0..MAX_PATTERNS as u8)
            .map(|i| vec![b'a' + i; 32])
            .collect();
        let table = compile(&patterns).expect("valid patterns");
        assert!(table.len() <= netobs_common::MATCHER_ENTRIES);
    }
}
