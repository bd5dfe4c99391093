//! API keys as the config stores them: SHA-256 digests (`sha256:<64 hex digits>`), never the
//! keys themselves. A presented key is hashed and compared with every stored digest in constant
//! time, so neither the key nor how much of it matched shows in the time taken.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

const PREFIX: &str = "sha256:";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct KeyHash([u8; 32]);

impl KeyHash {
    /// The digest of a key, as `lookout hash-key` prints it and config stores it.
    pub(crate) fn of(key: &[u8]) -> KeyHash {
        KeyHash(Sha256::digest(key).into())
    }

    /// Parses `sha256:<64 hex digits>`.
    pub(crate) fn parse(text: &str) -> Result<KeyHash, String> {
        let hex_digits = text.strip_prefix(PREFIX).ok_or_else(|| {
            format!("an API key is stored as `{PREFIX}<64 hex digits>` (see `lookout hash-key`)")
        })?;
        let mut digest = [0; 32];
        hex::decode_to_slice(hex_digits, &mut digest)
            .map_err(|e| format!("`{hex_digits}` is not a SHA-256 digest in hex: {e}"))?;
        Ok(KeyHash(digest))
    }
}

impl std::fmt::Display for KeyHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{PREFIX}{}", hex::encode(self.0))
    }
}

/// Which of `stored` the presented key hashes to. Every digest is compared, whatever matched.
pub(crate) fn find(stored: &[KeyHash], presented: &[u8]) -> Option<usize> {
    let digest = KeyHash::of(presented);
    let mut found = None;
    for (index, candidate) in stored.iter().enumerate() {
        if bool::from(candidate.0.ct_eq(&digest.0)) {
            found = Some(index);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_round_trip_and_keys_are_found_by_them() {
        let hash = KeyHash::of(b"demo-key");
        let text = hash.to_string();
        assert!(text.starts_with("sha256:") && text.len() == 7 + 64);
        assert_eq!(KeyHash::parse(&text), Ok(hash));
        let stored = [KeyHash::of(b"other"), hash];
        assert_eq!(find(&stored, b"demo-key"), Some(1));
        assert_eq!(find(&stored, b"demo-kez"), None);
    }

    #[test]
    fn malformed_digests_say_what_is_expected() {
        assert!(KeyHash::parse("demo-key")
            .unwrap_err()
            .contains("sha256:<64 hex digits>"));
        assert!(KeyHash::parse("sha256:abc")
            .unwrap_err()
            .contains("not a SHA-256 digest"));
    }
}
