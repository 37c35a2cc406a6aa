//! What Docker says about a network: its options, and the ones that look
//! like a mistyped `encrypted`, which Docker accepts and ignores.
use crate::inventory::ENCRYPTED_OPTION;

/// An option Docker ignores that was meant to be `encrypted`.
pub fn mistyped_encrypted(key: &str) -> bool {
    if key == ENCRYPTED_OPTION {
        return false;
    }
    let k = key.to_ascii_lowercase();
    k == ENCRYPTED_OPTION
        || [
            "encrypt",
            "encryption",
            "crypt",
            "crypted",
            "ipsec",
            "secure",
            "encrypt=true",
        ]
        .contains(&k.as_str())
        || distance(&k, ENCRYPTED_OPTION) <= 2
}

/// Levenshtein distance, for short option names.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mistyped_encrypted_options_are_recognised() {
        for k in [
            "encrypt",
            "encryption",
            "Encrypted",
            "ENCRYPTED",
            "encrpyted",
            "encryptd",
        ] {
            assert!(mistyped_encrypted(k), "{k}");
        }
        for k in [
            "encrypted",
            "com.docker.network.driver.overlay.vxlanid_list",
            "mtu",
        ] {
            assert!(!mistyped_encrypted(k), "{k}");
        }
    }
}
