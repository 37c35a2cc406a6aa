//! Talking to an agent's API: a plain HTTP/1.1 GET, which is all the
//! read-only API needs, with the agent's bearer token when it has one, read
//! into the API's own types; and many agents asked at once. The client
//! commands use it, and so does an agent asking its peers (loss between
//! nodes).
mod ask;

pub use ask::{ask, ask_each, Member};

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    time::Duration,
};

use serde::Deserialize;

use crate::{
    api::{self, Doc, Endpoint},
    token::Token,
};

const MAX_ANSWER: u64 = 256 << 20;

/// Where an agent answers, the token it wants, and how long it has.
#[derive(Debug, Clone)]
pub struct Agent {
    pub addr: SocketAddr,
    pub token: Option<Token>,
    /// To connect and to answer; `None`: 2 s to connect, 10 s to answer.
    pub timeout: Option<Duration>,
}

impl std::fmt::Display for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.addr.fmt(f)
    }
}

/// Why an agent gave no document: each one line, naming the agent.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// Nothing answers: no agent, or the host is down or unreachable.
    #[error("{0}")]
    Down(String),
    /// Connected, but no whole answer in time.
    #[error("{0}")]
    Slow(String),
    /// It wants another token.
    #[error("{0}")]
    Refused(String),
    /// Another version of the API.
    #[error("{0}")]
    Incompatible(String),
    /// Anything else: an answer this netobs cannot read.
    #[error("{0}")]
    Failed(String),
}

/// The body of an HTTP 200 answer to `GET path`.
pub fn get(agent: &Agent, path: &str) -> Result<String, Failure> {
    let (connect, answer) = match agent.timeout {
        Some(t) => (t, t),
        None => (Duration::from_secs(2), Duration::from_secs(10)),
    };
    let down = |e: std::io::Error| {
        Failure::Down(format!(
            "no netobs agent answers at {agent} ({e}): start one with `netobs run --iface IF` \
             (or point --agent at its --metrics-addr)"
        ))
    };
    let slow = |e: std::io::Error| {
        if matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ) {
            Failure::Slow(format!(
                "the agent at {agent} did not answer {path} within {} s",
                answer.as_secs()
            ))
        } else {
            down(e)
        }
    };
    let mut s = TcpStream::connect_timeout(&agent.addr, connect).map_err(down)?;
    s.set_read_timeout(Some(answer)).map_err(down)?;
    let auth = agent
        .token
        .as_ref()
        .map(|t| format!("Authorization: {}\r\n", t.header()))
        .unwrap_or_default();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {agent}\r\n{auth}Connection: close\r\n\r\n"
    )
    .map_err(down)?;
    // Bounded: an answer larger than any the agent sends (1,000 flows are
    // a few MiB) is not read to its end.
    let mut raw = Vec::new();
    (&mut s)
        .take(MAX_ANSWER)
        .read_to_end(&mut raw)
        .map_err(slow)?;
    if raw.len() as u64 >= MAX_ANSWER {
        return Err(Failure::Failed(format!(
            "the agent at {agent} sent more than {MAX_ANSWER} bytes for {path}"
        )));
    }
    let text = String::from_utf8_lossy(&raw);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return Err(Failure::Failed(format!(
            "the agent at {agent} sent no HTTP answer"
        )));
    };
    let status = head.lines().next().unwrap_or_default();
    if status.contains(" 401 ") {
        return Err(Failure::Refused(format!(
            "the agent at {agent} refuses this netobs: {} (give its token with \
             --api-token-file)",
            if agent.token.is_some() {
                "wrong API token"
            } else {
                "it wants an API token"
            }
        )));
    }
    if !status.contains(" 200 ") {
        return Err(Failure::Failed(format!(
            "the agent at {agent} answered {path} with {status:?}"
        )));
    }
    Ok(body.to_owned())
}

/// Reads one of the API's documents, after checking that the agent speaks
/// this version of the API.
pub fn fetch<E: Endpoint>(agent: &Agent) -> Result<E::Body, Failure> {
    parse::<E>(agent, &get(agent, E::PATH)?)
}

/// `fetch`, with a query string (`to=ADDR`).
pub fn fetch_query<E: Endpoint>(agent: &Agent, query: Option<&str>) -> Result<E::Body, Failure> {
    match query {
        Some(q) => parse::<E>(agent, &get(agent, &format!("{}?{q}", E::PATH))?),
        None => fetch::<E>(agent),
    }
}

/// The body of a document `E` sent by `agent`.
pub fn parse<E: Endpoint>(agent: &Agent, body: &str) -> Result<E::Body, Failure> {
    #[derive(Deserialize)]
    struct Version {
        api_version: Option<u32>,
    }
    match serde_json::from_str::<Version>(body) {
        Ok(Version {
            api_version: Some(api::VERSION),
        }) => {}
        Ok(Version {
            api_version: Some(v),
        }) => {
            return Err(Failure::Incompatible(format!(
                "the agent at {agent} speaks API version {v}, this netobs version {}: run the \
                 same netobs release on both sides",
                api::VERSION
            )))
        }
        _ => {
            return Err(Failure::Incompatible(format!(
                "the agent at {agent} does not say which API version it speaks (an older \
                 netobs?): run the same netobs release on both sides"
            )))
        }
    }
    let doc: Doc<E::Body> = serde_json::from_str(body).map_err(|e| {
        Failure::Failed(format!(
            "the agent's {} is not what this netobs reads: {e}",
            E::PATH
        ))
    })?;
    Ok(doc.data)
}
