//! What two processes say when they connect: who they are, which link the
//! connection is, and every setting that must agree across the cluster;
//! authenticated with an HMAC over both sides' fresh nonces.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// The first bytes of every acceptor's greeting; anything else listening on
/// a peer's address is not a keyflow process.
pub const MAGIC: &[u8; 16] = b"keyflow-mesh/v1\n";

/// A nonce's length in bytes.
pub const NONCE: usize = 32;

/// Which of the two connections between a pair of processes this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Channel {
    /// timely's data and progress traffic.
    Data,
    /// keyflow's own: the start barrier, then heartbeats.
    Control,
}

/// One side's introduction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The sender's process index.
    pub process: usize,
    /// Which link this connection becomes.
    pub channel: Channel,
    /// Everything that must agree, as `(flag, value)` in a fixed order.
    pub settings: Vec<(String, String)>,
}

/// The acceptor's answer to a hello.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Verdict {
    /// Accepted.
    Ok,
    /// The settings differ; the text names the first difference.
    Mismatch(String),
    /// Not accepted for another reason (a wrong secret, a bad index).
    Denied(String),
}

/// Fresh random bytes for one handshake.
pub fn nonce() -> [u8; NONCE] {
    use rand::RngCore;
    let mut bytes = [0u8; NONCE];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    bytes
}

/// The MAC of `parts` under `secret`, for the side named by `role` (so that
/// one side's MAC can never be replayed as the other's).
pub fn mac(secret: &[u8], role: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(role);
    for part in parts {
        mac.update(&(part.len() as u64).to_be_bytes());
        mac.update(part);
    }
    mac.finalize().into_bytes().to_vec()
}

/// Checks `tag` against the MAC of `parts` in constant time.
pub fn verify(secret: &[u8], role: &[u8], parts: &[&[u8]], tag: &[u8]) -> bool {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(role);
    for part in parts {
        mac.update(&(part.len() as u64).to_be_bytes());
        mac.update(part);
    }
    mac.verify_slice(tag).is_ok()
}

fn show(flag: &str, value: Option<&str>) -> String {
    match value {
        None => format!("no {flag}"),
        Some("") => format!("`{flag}`"),
        Some(v) => format!("`{flag} {v}`"),
    }
}

/// Names the first setting in which `theirs` (process `them`) differs from
/// `mine` (process `me`), or `None` when they agree.
pub fn first_difference(
    me: usize,
    mine: &[(String, String)],
    them: usize,
    theirs: &[(String, String)],
) -> Option<String> {
    let find = |list: &[(String, String)], key: &str| {
        list.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
    };
    let keys = mine
        .iter()
        .chain(theirs)
        .map(|(k, _)| k.as_str())
        .collect::<Vec<_>>();
    for key in keys {
        let (a, b) = (find(mine, key), find(theirs, key));
        if a != b {
            return Some(format!(
                "process {them} was started with {} but process {me} with {}",
                show(key, b.as_deref()),
                show(key, a.as_deref())
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_first_difference_is_named() {
        let a = s(&[("--workers", "2"), ("--window", "10m"), ("--out", "")]);
        let b = s(&[("--workers", "2"), ("--window", "5m")]);
        assert_eq!(first_difference(0, &a, 1, &a), None);
        assert_eq!(
            first_difference(0, &a, 1, &b).unwrap(),
            "process 1 was started with `--window 5m` but process 0 with `--window 10m`"
        );
        let c = s(&[("--workers", "2"), ("--window", "10m")]);
        assert_eq!(
            first_difference(0, &a, 1, &c).unwrap(),
            "process 1 was started with no --out but process 0 with `--out`"
        );
    }

    #[test]
    fn a_mac_checks_only_under_the_same_secret_and_role() {
        let tag = mac(b"k", b"dial", &[b"a", b"b"]);
        assert!(verify(b"k", b"dial", &[b"a", b"b"], &tag));
        assert!(!verify(b"other", b"dial", &[b"a", b"b"], &tag));
        assert!(!verify(b"k", b"accept", &[b"a", b"b"], &tag));
        assert!(!verify(b"k", b"dial", &[b"ab", b""], &tag));
    }
}
