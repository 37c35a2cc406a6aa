//! How every client command names its agent on the command line; the
//! talking is `crate::client`'s.
use std::{net::SocketAddr, path::PathBuf};

use anyhow::Result;
use clap::Args;

pub use crate::client::{fetch, Agent, Failure};
use crate::{agent::DEFAULT_METRICS_ADDR, token::Token};

/// How every client command reaches its agent.
#[derive(Debug, Clone, Args)]
pub struct AgentArgs {
    /// The agent's --metrics-addr
    #[arg(long, value_name = "ADDR", default_value = DEFAULT_METRICS_ADDR)]
    pub agent: SocketAddr,
    /// The agent's --api-token-file (needed when it serves beyond loopback)
    #[arg(long, value_name = "FILE")]
    pub api_token_file: Option<PathBuf>,
}

impl AgentArgs {
    pub fn agent(&self) -> Result<Agent> {
        Ok(Agent {
            addr: self.agent,
            token: self.token()?,
            timeout: None,
        })
    }

    pub fn token(&self) -> Result<Option<Token>> {
        self.api_token_file
            .as_deref()
            .map(Token::from_file)
            .transpose()
            .map_err(anyhow::Error::msg)
    }
}
