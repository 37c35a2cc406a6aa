//! `--require-encryption`: which networks must be encrypted. Travels in
//! the API as the flag takes it (`""`, `all`, or `NET,NET`).
use std::{collections::BTreeSet, fmt, str::FromStr};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Policy {
    /// No requirement beyond what networks promise themselves.
    #[default]
    None,
    /// Every overlay network must be encrypted.
    All,
    /// These networks must be.
    Networks(BTreeSet<String>),
}

impl FromStr for Policy {
    type Err = String;
    fn from_str(s: &str) -> Result<Policy, String> {
        match s.trim() {
            "" => Ok(Policy::None),
            "all" => Ok(Policy::All),
            list => {
                let nets: BTreeSet<String> = list
                    .split(',')
                    .map(|n| n.trim().to_owned())
                    .filter(|n| !n.is_empty())
                    .collect();
                if nets.is_empty() {
                    return Err("give `all` or a comma-separated list of network names".into());
                }
                Ok(Policy::Networks(nets))
            }
        }
    }
}

impl fmt::Display for Policy {
    /// As `--require-encryption` takes it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Policy::None => Ok(()),
            Policy::All => f.write_str("all"),
            Policy::Networks(n) => {
                let names: Vec<&str> = n.iter().map(String::as_str).collect();
                f.write_str(&names.join(","))
            }
        }
    }
}

impl Policy {
    pub fn requires(&self, network: &str) -> bool {
        match self {
            Policy::None => false,
            Policy::All => true,
            Policy::Networks(n) => n.contains(network),
        }
    }
}

impl Serialize for Policy {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Policy {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Policy, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}
