//! Compiles user patterns into what the kernel searches payloads with:
//! Shift-And over the patterns packed into 64-bit words
//! (`netobs_common::Matcher` says how it runs; the kernel's `matcher.rs`
//! why it replaced an automaton).
use netobs_common::{Matcher, MATCHER_WORDS, MAX_PATTERNS, MAX_PATTERN_LEN, PAYLOAD_SCAN_LEN};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PatternError {
    #[error("at most {MAX_PATTERNS} patterns can be searched, {0} were given")]
    TooMany(usize),
    #[error("pattern {0:?} is empty")]
    Empty(String),
    #[error("pattern {0:?} is {1} bytes long; at most {MAX_PATTERN_LEN} are searched")]
    TooLong(String, usize),
}

/// Checks the patterns and packs them: longest first, each into the first
/// word with room (any two fit one word, so eight never need more than
/// four).
pub fn compile(patterns: &[Vec<u8>]) -> Result<Matcher, PatternError> {
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
    let mut m = Matcher::new();
    let mut used = [0usize; MATCHER_WORDS];
    let mut order: Vec<usize> = (0..patterns.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(patterns[i].len()));
    for i in order {
        let p = &patterns[i];
        // Always found: see above (and `the_fullest_set_fits`).
        let Some(w) = (0..MATCHER_WORDS).find(|&w| used[w] + p.len() <= 64) else {
            return Err(PatternError::TooMany(patterns.len()));
        };
        let first = used[w];
        for (j, &c) in p.iter().enumerate() {
            m.masks[c as usize][w] |= 1 << (first + j);
        }
        let last = 1u64 << (first + p.len() - 1);
        m.starts[w] |= 1 << first;
        m.ends[w] |= last;
        m.pattern_end[i] = last;
        m.pattern_word[i] = w as u32;
        used[w] += p.len();
        m.words = m.words.max(w as u32 + 1);
    }
    Ok(m)
}

/// What the kernel computes, the same way: the patterns found in the first
/// `PAYLOAD_SCAN_LEN` bytes of `payload`.
pub fn scan(m: &Matcher, payload: &[u8]) -> u32 {
    let words = m.words as usize;
    let mut d = [0u64; MATCHER_WORDS];
    let mut seen = [0u64; MATCHER_WORDS];
    for &c in payload.iter().take(PAYLOAD_SCAN_LEN) {
        for w in 0..words {
            d[w] = ((d[w] << 1) | m.starts[w]) & m.masks[c as usize][w];
            seen[w] |= d[w];
        }
    }
    (0..MAX_PATTERNS)
        .filter(|&p| seen[m.pattern_word[p] as usize % MATCHER_WORDS] & m.pattern_end[p] != 0)
        .fold(0, |found, p| found | 1 << p)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every pattern looked for at every position of the scanned bytes.
    fn naive(patterns: &[Vec<u8>], payload: &[u8]) -> u32 {
        let payload = &payload[..payload.len().min(PAYLOAD_SCAN_LEN)];
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

    /// xorshift64: the same pseudo-random sequence on every run.
    fn rng(seed: u64) -> impl FnMut() -> u64 {
        let mut x = seed;
        move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        }
    }

    /// Sets of every size and length (so one to four words, patterns at
    /// every offset of a word, a word's last bit used), over a small
    /// alphabet so that patterns and their prefixes occur often, planted at
    /// every offset, past the 128 scanned bytes too.
    #[test]
    fn finds_what_a_naive_search_finds() {
        let mut next = rng(0x9e37_79b9_7f4a_7c15);
        for _ in 0..3000 {
            let count = 1 + (next() % MAX_PATTERNS as u64) as usize;
            let patterns: Vec<Vec<u8>> = (0..count)
                .map(|_| {
                    let len = 1 + (next() % MAX_PATTERN_LEN as u64) as usize;
                    (0..len).map(|_| b"abc"[(next() % 3) as usize]).collect()
                })
                .collect();
            let m = compile(&patterns).expect("valid patterns");
            for _ in 0..20 {
                let len = (next() % 200) as usize;
                let mut payload: Vec<u8> =
                    (0..len).map(|_| b"abcx"[(next() % 4) as usize]).collect();
                let p = &patterns[(next() % count as u64) as usize];
                if len >= p.len() {
                    let at = (next() % (len - p.len() + 1) as u64) as usize;
                    payload[at..at + p.len()].copy_from_slice(p);
                }
                assert_eq!(
                    scan(&m, &payload),
                    naive(&patterns, &payload),
                    "patterns {patterns:?} payload {payload:?}"
                );
            }
        }
    }

    #[test]
    fn the_fullest_set_fits() {
        let patterns: Vec<Vec<u8>> = (0..MAX_PATTERNS as u8)
            .map(|i| vec![b'a' + i; MAX_PATTERN_LEN])
            .collect();
        let m = compile(&patterns).expect("valid patterns");
        assert_eq!(m.words as usize, MATCHER_WORDS);
        let payload = [b'h'; MAX_PATTERN_LEN];
        assert_eq!(scan(&m, &payload), 1 << 7);
        // Eight that fit 64 bits in all share one word (the benchmark's
        // eight are 60 bytes).
        let small: Vec<Vec<u8>> = (0..8u8).map(|i| vec![b'a' + i; 8]).collect();
        assert_eq!(compile(&small).expect("valid patterns").words, 1);
    }
}
