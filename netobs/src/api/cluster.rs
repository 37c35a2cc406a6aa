//! The cluster view: one answer per node, each naming the node it came
//! from and whether its agent gave it. Built by the client (`--cluster`)
//! from the agents' own documents; no agent serves it.
use serde::{Deserialize, Serialize};

/// Everything one cluster command gathered.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterView<T> {
    pub nodes: Vec<NodeAnswer<T>>,
}

impl<T> ClusterView<T> {
    /// Nodes whose agent gave no document.
    pub fn unanswered(&self) -> usize {
        self.nodes
            .iter()
            .filter(|n| !matches!(n.answer, Answer::Ok { .. }))
            .count()
    }
}

/// One node's answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeAnswer<T> {
    /// The node's hostname as the swarm's node list gives it (with its
    /// address when two nodes share a hostname), or the agent's address
    /// as given with `--agents`.
    pub node: String,
    /// Where its agent was asked.
    pub agent: String,
    pub answer: Answer<T>,
}

/// What a node's agent said, or why it said nothing.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Answer<T> {
    Ok {
        data: T,
    },
    /// Nothing answers: no agent there, or the node is unreachable.
    Down {
        error: String,
    },
    /// It did not answer within the view's timeout.
    Slow {
        error: String,
    },
    /// It wants another token.
    Refused {
        error: String,
    },
    /// It speaks another version of the API.
    Incompatible {
        error: String,
    },
    /// Its answer could not be read.
    Failed {
        error: String,
    },
}

impl<T> Answer<T> {
    /// The status word, as JSON carries it.
    pub fn status(&self) -> &'static str {
        match self {
            Answer::Ok { .. } => "ok",
            Answer::Down { .. } => "down",
            Answer::Slow { .. } => "slow",
            Answer::Refused { .. } => "refused",
            Answer::Incompatible { .. } => "incompatible",
            Answer::Failed { .. } => "failed",
        }
    }
}
