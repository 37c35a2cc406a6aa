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

/// The method whose name and trailing space open `b`.
#[inline(always)]
pub fn request_method(b: &[u8; 8]) -> Option<HttpMethod> {
    let m = match [b[0], b[1], b[2], b[3]] {
        [b'G', b'E', b'T', b' '] => HttpMethod::Get,
        [b'P', b'U', b'T', b' '] => HttpMethod::Put,
        [b'H', b'E', b'A', b'D'] if b[4] == b' ' => HttpMethod::Head,
        [b'P', b'O', b'S', b'T'] if b[4] == b' ' => HttpMethod::Post,
        [b'P', b'A', b'T', b'C'] if b[4] == b'H' && b[5] == b' ' => HttpMethod::Patch,
        [b'T', b'R', b'A', b'C'] if b[4] == b'E' && b[5] == b' ' => HttpMethod::Trace,
        [b'D', b'E', b'L', b'E'] if [b[4], b[5], b[6]] == *b"TE " => HttpMethod::Delete,
        [b'O', b'P', b'T', b'I'] if [b[4], b[5], b[6], b[7]] == *b"ONS " => HttpMethod::Options,
        [b'C', b'O', b'N', b'N'] if [b[4], b[5], b[6], b[7]] == *b"ECT " => HttpMethod::Connect,
        _ => return None,
    };
    Some(m)
}

/// `HTTP/1.` opens a status line.
#[inline(always)]
pub fn is_response(b: &[u8; 8]) -> bool {
    [b[0], b[1], b[2], b[3], b[4], b[5], b[6]] == *b"HTTP/1."
}

/// Status class index from `HTTP/1.x NNN` (`head` is the first 8 bytes,
/// `tail` the next 4): 1..=5 for 1xx..5xx, 0 when the status is not three
/// digits in that range.
#[inline(always)]
pub fn status_class(head: &[u8; 8], tail: [u8; 4]) -> usize {
    let digit = |c: u8| c.is_ascii_digit();
    if !digit(head[7]) || tail[0] != b' ' || !digit(tail[1]) || !digit(tail[2]) || !digit(tail[3]) {
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
