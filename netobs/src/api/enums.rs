//! The API's enumerations: snake_case on the wire, the same word in
//! `Display` (and in metric labels where one is used as a label).
use std::fmt;

use serde::{Deserialize, Serialize};

/// What a network promises, as the `encrypted` label of metrics and flows
/// says it: `true`, `false`, or `unknown` for a VNI no network claims.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Encryption {
    #[serde(rename = "true")]
    Encrypted,
    #[serde(rename = "false")]
    Plain,
    #[serde(rename = "unknown")]
    Unknown,
}

impl Encryption {
    pub fn label(self) -> &'static str {
        match self {
            Encryption::Encrypted => "true",
            Encryption::Plain => "false",
            Encryption::Unknown => "unknown",
        }
    }
}

/// Where the data-path port came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PortSource {
    /// `--data-path-port` given to this command.
    Flag,
    /// The agent's `--data-path-port` (as the audit reports it).
    Agent,
    /// Read from the swarm (a manager can).
    Swarm,
    /// Docker's default, 4789: nobody said otherwise.
    Default,
}

impl PortSource {
    pub fn name(self) -> &'static str {
        match self {
            PortSource::Flag => "flag",
            PortSource::Agent => "agent",
            PortSource::Swarm => "swarm",
            PortSource::Default => "default",
        }
    }
}

/// An overlay network's protection, as the audit judges it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NetworkStatus {
    Protected,
    NotEncrypted,
    /// Encryption promised, not delivered.
    Broken,
    /// Encrypted, but the kernel's IPsec state could not be read.
    Unchecked,
}

impl NetworkStatus {
    pub fn name(self) -> &'static str {
        match self {
            NetworkStatus::Protected => "protected",
            NetworkStatus::NotEncrypted => "not_encrypted",
            NetworkStatus::Broken => "broken",
            NetworkStatus::Unchecked => "unchecked",
        }
    }
}

/// How bad an alert or a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    pub fn name(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

macro_rules! display_by_name {
    ($($t:ty => $f:ident),*) => {$(
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.$f())
            }
        }
    )*};
}

display_by_name!(Encryption => label, PortSource => name, NetworkStatus => name, Severity => name);
