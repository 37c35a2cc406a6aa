//! What the audit can find: the one list of finding kinds, with their
//! severity and meaning (the README's table is generated from it).
use serde::{Deserialize, Serialize};

pub use crate::api::Severity;

/// A kind of finding: a stable name for scripts, how bad it is, what it
/// means.
#[derive(Debug)]
pub struct Kind {
    pub name: &'static str,
    pub severity: Severity,
    pub meaning: &'static str,
}

macro_rules! kinds {
    ($($id:ident $name:literal $sev:ident $meaning:literal;)*) => {
        $(pub const $id: Kind = Kind {
            name: $name,
            severity: Severity::$sev,
            meaning: $meaning,
        };)*
        /// Every kind, in the README's order.
        pub const KINDS: &[Kind] = &[$($id),*];
    };
}

kinds! {
    NOT_ENCRYPTED "not_encrypted" Warning
        "the network has no `encrypted` option: its traffic crosses the wire in clear (with the services seen, if any); info only where `--require-encryption` does not cover it";
    INGRESS_PLAINTEXT "ingress_plaintext" Warning
        "the swarm's `ingress` network carries published-port traffic in clear unless recreated with `--opt encrypted`; info only where `--require-encryption` does not cover it";
    MISTYPED_OPTION "mistyped_option" Warning
        "an option that looks like a mistyped `encrypted` (`encrypt`, `encryption`, `Encrypted`, `encrpyted`, ...), which Docker accepts and ignores";
    ENCRYPTED_FALSE "encrypted_false" Info
        "`encrypted=false` still encrypts: Docker reads the option's presence";
    IPSEC_MISSING "ipsec_missing" Critical
        "an encrypted network with a remote peer, and neither IPsec policy nor state for it";
    IPSEC_NO_STATE "ipsec_no_state" Critical
        "a policy sends the data path to a peer through ESP but the SAs are missing: that traffic is dropped (what a kernel without ESP support shows)";
    IPSEC_NO_POLICY "ipsec_no_policy" Critical
        "SAs but no policy: the data path to that peer leaves in clear";
    IPSEC_WRONG_PORT "ipsec_wrong_port" Critical
        "the policy covers another UDP port than the data-path port (a swarm created with `--data-path-port`): VXLAN leaks in clear";
    DATA_PATH_PORT_UNKNOWN "data_path_port_unknown" Warning
        "this node cannot read the swarm's data-path port (a worker) and Docker's policy covers another one than the default: give `--data-path-port` to know whether VXLAN leaks";
    AGENT_PORT_MISMATCH "agent_port_mismatch" Warning
        "the agent does not classify the swarm's data-path port as VXLAN: plaintext on it is invisible (restart the agent with `--data-path-port`)";
    PLAINTEXT_ON_ENCRYPTED "plaintext_on_encrypted" Critical
        "the agent saw plaintext VXLAN on a network marked encrypted";
    ESP_ONE_WAY "esp_one_way" Critical
        "ESP leaves for a peer and none has come back for 60 s: something between the nodes drops IP protocol 50";
    ESP_SEQUENCE_WRAP "esp_sequence_wrap" Warning
        "at the measured rate an SPI's 32-bit sequence number wraps before the 12 h key rotation, and the pair's traffic stops";
    IPSEC_KEY_NOT_ROTATED "ipsec_key_not_rotated" Warning
        "the newest SA to a peer is over 13 h old: key rotation has stopped";
    ESP_SPI_NOT_ROTATED "esp_spi_not_rotated" Warning
        "the wire has used the same SPI to or from a peer for over 13 h: key rotation has stopped";
    IPSEC_UNREADABLE "ipsec_unreadable" Warning
        "the audit could not read the kernel's IPsec policies and states (run it as root); encrypted networks are `unchecked`";
    IPSEC_UNSUPPORTED "ipsec_unsupported" Critical
        "the kernel has no IPsec (xfrm) netlink interface: Docker cannot encrypt, so no encrypted network with remote peers is protected";
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Finding {
    pub severity: Severity,
    /// A stable name for scripts: one of [`KINDS`].
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    pub message: String,
}

impl Finding {
    /// Reported, but not required to be fixed: exit status 0.
    pub fn info(mut self) -> Self {
        self.severity = Severity::Info;
        self
    }

    pub fn new(kind: &Kind, network: Option<&str>, peer: Option<&str>, message: String) -> Self {
        Finding {
            severity: kind.severity,
            kind: kind.name.to_owned(),
            network: network.map(str::to_owned),
            peer: peer.map(str::to_owned),
            message,
        }
    }
}

/// The README's table of finding kinds.
pub fn reference_table() -> String {
    let mut out = String::from("| kind | severity | what it means |\n|---|---|---|\n");
    for k in KINDS {
        out.push_str(&format!(
            "| `{}` | {} | {} |\n",
            k.name,
            k.severity.name(),
            k.meaning
        ));
    }
    out
}
