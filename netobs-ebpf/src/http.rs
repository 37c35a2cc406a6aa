//! HTTP/1.x at the start of a TCP payload: a request line (standard method
//! and a space) or a status line (`HTTP/1.x NNN`).
use netobs_common::{HttpMethod, HTTP_STATUS_CLASSES, SNIPPET_LEN};

/// Bit `c - 'A'` is set for each letter that can open a request line (a
/// method's first letter) or a status line (`H`), from the one list of
/// methods.
const FIRST_LETTERS: u32 = {
    let mut mask = 1 << (b'H' - b'A');
    let mut i = 0;
    while i < HttpMethod::ALL.len() {
        mask |= 1 << (HttpMethod::ALL[i].name().as_bytes()[0] - b'A');
        i += 1;
    }
    mask
};

/// Whether a payload opening with `b` can be HTTP at all: one shift and
/// test, so that the other segments never read the head or compare it.
#[inline(always)]
pub fn may_open_http(b: u8) -> bool {
    let i = b.wrapping_sub(b'A') as u32;
    i < 32 && (FIRST_LETTERS >> i) & 1 != 0
}

/// What each method's request line opens with (its name and a space) as
/// `(bytes, mask)` over a payload's first 8 bytes read as one word, in
/// `HttpMethod::ALL`'s order: a method is recognised by one and and one
/// compare, where comparing byte by byte took a branch and a register per
/// byte. Built from the one list of methods.
const OPENINGS: [(u64, u64); HttpMethod::ALL.len()] = {
    let mut out = [(0, 0); HttpMethod::ALL.len()];
    let mut i = 0;
    while i < HttpMethod::ALL.len() {
        out[i] = opening(HttpMethod::ALL[i].name().as_bytes(), b' ');
        i += 1;
    }
    out
};

/// `text` and then `last` (at most 8 bytes in all) as `(bytes, mask)`.
const fn opening(text: &[u8], last: u8) -> (u64, u64) {
    let (mut bytes, mut mask) = ([0u8; 8], [0u8; 8]);
    let mut i = 0;
    while i < text.len() {
        bytes[i] = text[i];
        mask[i] = 0xff;
        i += 1;
    }
    bytes[i] = last;
    mask[i] = 0xff;
    (u64::from_ne_bytes(bytes), u64::from_ne_bytes(mask))
}

/// `HTTP/1.` opens a status line.
const STATUS_LINE: (u64, u64) = opening(b"HTTP/1", b'.');

/// The method whose name and trailing space open a payload whose first 8
/// bytes are `head` (as read: memory order).
#[inline(always)]
pub fn request_method(head: u64) -> Option<HttpMethod> {
    for (i, &(bytes, mask)) in OPENINGS.iter().enumerate() {
        if head & mask == bytes {
            return Some(HttpMethod::ALL[i]);
        }
    }
    None
}

/// Whether `head` (as in `request_method`) opens a status line.
#[inline(always)]
pub fn is_response(head: u64) -> bool {
    head & STATUS_LINE.1 == STATUS_LINE.0
}

/// Status class index from `HTTP/1.x NNN` (`head` is the first 8 bytes as
/// in `request_method`, `tail` the next 4): 1..=5 for 1xx..5xx, 0 when the status is not three
/// digits in that range.
#[inline(always)]
pub fn status_class(head: u64, tail: [u8; 4]) -> usize {
    let digit = |c: u8| c.is_ascii_digit();
    if !digit(head.to_ne_bytes()[7])
        || tail[0] != b' '
        || !digit(tail[1])
        || !digit(tail[2])
        || !digit(tail[3])
    {
        return 0;
    }
    let class = (tail[1] - b'0') as usize;
    if (1..HTTP_STATUS_CLASSES).contains(&class) {
        class
    } else {
        0
    }
}

/// Length of the request-line prefix safe to export: method, space, target
/// up to (not including) `?`, `#` (unless `full`), the space before the
/// version, CR or LF. The flag says whether anything was cut off.
#[inline(always)]
pub fn redacted_len<const N: usize>(line: &[u8; N], n: usize, full: bool) -> (usize, bool) {
    let mut spaces = 0;
    for (i, &c) in line.iter().enumerate().take(SNIPPET_LEN) {
        if i >= n {
            return (i, false);
        }
        if c == b' ' {
            spaces += 1;
            if spaces == 2 {
                return (i, false);
            }
        }
        if !full && (c == b'?' || c == b'#') {
            return (i, true);
        }
        if c == b'\r' || c == b'\n' {
            return (i, false);
        }
    }
    (SNIPPET_LEN.min(N), true)
}
