//! Ring-buffer records from the kernel: new plaintext flows and HTTP
//! requests. The kernel rate-limits them and counts what it drops.
use std::mem::size_of;

use aya::maps::{MapData, RingBuf};
use netobs_common::{Event, SNIPPET_LEN};

use super::{names, Datapath, DatapathError};

impl Datapath {
    /// Takes the ring buffer out of the datapath so one task can drain it.
    pub fn take_events(&mut self) -> Result<RingBuf<MapData>, DatapathError> {
        let map = self
            .ebpf_mut()
            .take_map(names::EVENTS)
            .ok_or(DatapathError::Missing {
                kind: "map",
                name: names::EVENTS,
            })?;
        RingBuf::try_from(map).map_err(|source| DatapathError::Map {
            name: names::EVENTS,
            source,
        })
    }
}

/// Decodes one ring-buffer record; `None` for a record of the wrong size
/// (an object built from other sources).
pub fn decode(bytes: &[u8]) -> Option<Event> {
    if bytes.len() < size_of::<Event>() {
        return None;
    }
    // SAFETY: length checked; Event is plain old data, any bytes are valid.
    let event = unsafe { std::ptr::read_unaligned(bytes.as_ptr() as *const Event) };
    Some(event)
}

/// How much of a request's target leaves the agent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum CapturePaths {
    /// The path without its query (cut in the kernel), with path segments
    /// that look like credentials replaced by `<redacted>`.
    #[default]
    Redacted,
    /// The request target as sent, query included.
    Full,
}

/// The exported part of the request line, as text.
pub fn snippet(event: &Event, paths: CapturePaths) -> String {
    let n = (event.snippet_len as usize).min(SNIPPET_LEN);
    let line = String::from_utf8_lossy(&event.snippet[..n]).into_owned();
    match paths {
        CapturePaths::Full => line,
        CapturePaths::Redacted => redact(&line),
    }
}

/// Segments after which the next one is a credential: `/token/XYZ`.
const CREDENTIAL_WORDS: &[&str] = &[
    "token",
    "tokens",
    "access_token",
    "apikey",
    "api_key",
    "api-key",
    "key",
    "keys",
    "secret",
    "secrets",
    "password",
    "passwd",
    "pwd",
    "auth",
    "session",
    "sessionid",
    "jsessionid",
    "sid",
    "signature",
    "sig",
    "credential",
    "credentials",
    "bearer",
];

const REDACTED: &str = "<redacted>";

fn is_credential_word(s: &str) -> bool {
    CREDENTIAL_WORDS.iter().any(|w| s.eq_ignore_ascii_case(w))
}

/// Long runs of letters mixed with digits (API keys, hex digests, UUIDs,
/// base64), and JWTs: what a token in a path looks like.
fn looks_secret(seg: &str) -> bool {
    let token_chars = seg
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || b"-_.~+=%".contains(&c));
    let jwt = seg.starts_with("eyJ") && seg.len() >= 20;
    let mixed = seg.len() >= 16
        && seg.bytes().any(|c| c.is_ascii_alphabetic())
        && seg.bytes().any(|c| c.is_ascii_digit());
    token_chars && (jwt || mixed)
}

/// `METHOD /a/b` with credential-like segments (and `;name=value` path
/// parameters naming a credential) replaced, and no query or fragment.
pub fn redact(line: &str) -> String {
    let Some((method, target)) = line.split_once(' ') else {
        return line.to_owned();
    };
    let target = target.split(['?', '#']).next().unwrap_or_default();
    let mut out = Vec::new();
    let mut after_word = false;
    for seg in target.split('/') {
        let (name, params) = match seg.split_once(';') {
            Some((n, p)) => (n, Some(p)),
            None => (seg, None),
        };
        let mut s = if !name.is_empty() && (after_word || looks_secret(name)) {
            REDACTED.to_owned()
        } else {
            name.to_owned()
        };
        if let Some(params) = params {
            for p in params.split(';') {
                s.push(';');
                match p.split_once('=') {
                    Some((k, _)) if is_credential_word(k) => {
                        s.push_str(k);
                        s.push('=');
                        s.push_str(REDACTED);
                    }
                    _ => s.push_str(p),
                }
            }
        }
        after_word = is_credential_word(name);
        out.push(s);
    }
    format!("{method} {}", out.join("/"))
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn credentials_in_paths_are_redacted() {
        for (line, want) in [
            ("GET /index.html", "GET /index.html"),
            ("GET /api/orders/12345", "GET /api/orders/12345"),
            ("GET /api/token/s3cr3tv4lu3", "GET /api/token/<redacted>"),
            (
                "GET /v1/objects/9f86d081884c7d659a2feaa0c55ad015",
                "GET /v1/objects/<redacted>",
            ),
            (
                "POST /hooks/eyJhbGciOiJIUzI1NiJ9.e30.sig",
                "POST /hooks/<redacted>",
            ),
            (
                "GET /app;jsessionid=ABC123;lang=en/page",
                "GET /app;jsessionid=<redacted>;lang=en/page",
            ),
            ("GET /Password/hunter2/x", "GET /Password/<redacted>/x"),
            ("GET /users/alice/profile", "GET /users/alice/profile"),
            ("GET", "GET"),
            ("GET /search?q=secret#frag", "GET /search"),
        ] {
            assert_eq!(redact(line), want, "{line}");
        }
    }
}
