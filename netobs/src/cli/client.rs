//! Talking to a running agent's API: a plain HTTP/1.1 GET over loopback,
//! which is all the read-only API needs.
use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    time::Duration,
};

use anyhow::{bail, Context, Result};

pub fn get(agent: SocketAddr, path: &str) -> Result<String> {
    let no_agent = || {
        format!(
            "no netobs agent answers at {agent}: start one with `netobs run --iface IF` \
             (or point --agent at its --metrics-addr)"
        )
    };
    let mut s =
        TcpStream::connect_timeout(&agent, Duration::from_secs(2)).with_context(no_agent)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {agent}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).with_context(no_agent)?;
    let text = String::from_utf8_lossy(&raw);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        bail!("the agent at {agent} sent no HTTP answer");
    };
    let status = head.lines().next().unwrap_or_default();
    if !status.contains(" 200 ") {
        bail!("the agent at {agent} answered {path} with {status:?}");
    }
    Ok(body.to_owned())
}
