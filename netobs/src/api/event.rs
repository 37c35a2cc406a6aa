//! One line of `netobs run --events --json`.
use serde::{Deserialize, Serialize};

use super::{Flow, FlowLabels};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// The first packet of a plaintext VXLAN flow.
    NewPlaintextFlow,
    /// An HTTP request line seen in clear.
    HttpRequest,
}

/// A rare event from the kernel's ring, labelled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlowEvent {
    pub event: EventKind,
    /// Unix seconds.
    pub time: f64,
    /// The flow's key (its counts are the flow table's business).
    pub flow: Flow,
    pub labels: FlowLabels,
    /// HTTP only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// HTTP only: the request line, redacted per `--capture-paths`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
    /// The request line was longer than the kernel copies.
    #[serde(default)]
    pub truncated: bool,
}
