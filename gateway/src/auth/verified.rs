//! Tokens a provider has already verified, so that a client's next requests with the same token
//! skip the signature check (an RSA verification costs several times the whole rest of a
//! proxied request). Keyed by the SHA-256 of the token's text: only a token identical to the
//! byte can hit. An entry is used until the token expires (`exp` plus the leeway), for at most
//! [`MAX_AGE`], and only while the provider's key set is the one it was verified with: a JWKS
//! fetch that changes the keys makes every earlier entry stale.

use super::jwt::Claims;
use moka::sync::Cache;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// However long a token lives, it is verified again after this.
const MAX_AGE: Duration = Duration::from_secs(300);

pub(crate) struct VerifiedTokens {
    cache: Cache<[u8; 32], Verified>,
}

#[derive(Clone)]
struct Verified {
    claims: Arc<Claims>,
    /// When the token expires, on the monotonic clock.
    until: Instant,
    /// The key set's generation it was verified against.
    keys: u64,
}

impl std::fmt::Debug for VerifiedTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifiedTokens")
            .field("entries", &self.cache.entry_count())
            .finish()
    }
}

impl VerifiedTokens {
    pub(crate) fn new(capacity: u64) -> Self {
        VerifiedTokens {
            cache: Cache::builder()
                .max_capacity(capacity)
                .time_to_live(MAX_AGE)
                .build(),
        }
    }

    /// The claims of `token`, when it was verified against key set `keys` and has not expired.
    pub(crate) fn get(&self, token: &str, keys: u64) -> Option<Arc<Claims>> {
        let digest = digest(token);
        let entry = self.cache.get(&digest)?;
        if entry.keys == keys && entry.until > Instant::now() {
            return Some(entry.claims);
        }
        self.cache.invalidate(&digest);
        None
    }

    /// Remembers a token that was just verified; `leeway` is the provider's, in seconds.
    pub(crate) fn insert(&self, token: &str, claims: Arc<Claims>, keys: u64, leeway: u64) {
        let Some(exp) = claims.get("exp").and_then(serde_json::Value::as_u64) else {
            return;
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let Some(left) = (exp + leeway).checked_sub(now) else {
            return;
        };
        let until = Instant::now() + Duration::from_secs(left);
        self.cache.insert(digest(token), Verified { claims, until, keys });
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(exp: u64) -> Arc<Claims> {
        let value = json!({"sub": "alice", "exp": exp});
        Arc::new(value.as_object().cloned().unwrap_or_default())
    }

    fn now() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs()
    }

    #[test]
    fn a_token_is_remembered_until_it_expires_and_only_for_its_key_set() {
        let verified = VerifiedTokens::new(100);
        verified.insert("a.b.c", claims(now() + 60), 1, 0);
        assert!(verified.get("a.b.c", 1).is_some());
        assert!(verified.get("a.b.d", 1).is_none(), "another token");
        assert!(verified.get("a.b.c", 2).is_none(), "the keys changed since");
        assert!(verified.get("a.b.c", 1).is_none(), "a stale entry is dropped");

        verified.insert("old", claims(now() - 10), 1, 5);
        assert!(verified.get("old", 1).is_none(), "expired beyond the leeway");
        verified.insert("leeway", claims(now() - 10), 1, 30);
        assert!(verified.get("leeway", 1).is_some(), "expired within the leeway");
    }
}
