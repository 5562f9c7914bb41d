//! Tokens whose signature was checked. A client sends the same token with every call until
//! it expires; checking its signature again each time (an Ed25519 or RSA verification, a
//! tenth of a command's CPU) tells nothing new. A token seen before is taken as verified
//! if the key that verified it is still in the issuer's key set, so a key the issuer
//! withdrew stops its tokens at once. The claims are checked again on every call, against
//! the clock of that call: an expired token is refused from the cache as from the wire.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::Value;

use super::jwks::{KeySet, VerifyingKey};

/// Tokens kept at most; a full cache first drops the expired ones, then starts over.
const CAPACITY: usize = 10_000;

/// Tokens longer than this are verified every time (a token is a few hundred bytes).
const LONGEST_KEPT: usize = 4096;

/// The tokens verified so far and the claims they carry.
#[derive(Debug, Default)]
pub struct VerifiedTokens {
    entries: Mutex<HashMap<Box<str>, Entry>>,
}

#[derive(Debug)]
struct Entry {
    key: VerifyingKey,
    claims: Arc<Value>,
    /// `exp` in seconds; a token without one is refused on every call, so kept least.
    expires: i64,
}

impl VerifiedTokens {
    /// The claims of `token` if its signature was checked by a key `keys` still holds.
    pub fn claims(&self, token: &str, keys: &KeySet) -> Option<Arc<Value>> {
        let entries = self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let entry = entries.get(token)?;
        (keys.find(entry.key.kid.as_deref(), entry.key.algorithm) == Some(&entry.key))
            .then(|| Arc::clone(&entry.claims))
    }

    /// Keeps `token`, whose signature `key` verified, with its `claims`; `now` in seconds.
    pub fn keep(&self, token: &str, key: &VerifyingKey, claims: Arc<Value>, now: i64) {
        if token.len() > LONGEST_KEPT {
            return;
        }
        let expires = claims.get("exp").and_then(Value::as_i64).unwrap_or(i64::MIN);
        let mut entries = self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if entries.len() >= CAPACITY && !entries.contains_key(token) {
            entries.retain(|_, entry| entry.expires >= now);
            if entries.len() >= CAPACITY {
                entries.clear();
            }
        }
        entries.insert(
            token.into(),
            Entry {
                key: key.clone(),
                claims,
                expires,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn key(kid: &str, byte: u8) -> VerifyingKey {
        VerifyingKey::ed25519(kid, &[byte; 32])
    }

    fn set(keys: &[VerifyingKey]) -> KeySet {
        KeySet::new(keys.to_vec())
    }

    #[test]
    fn a_kept_token_is_found_while_its_key_is_in_the_set() {
        let tokens = VerifiedTokens::default();
        let claims = Arc::new(json!({"sub": "coach-1", "exp": 100}));
        tokens.keep("a.b.c", &key("k1", 1), Arc::clone(&claims), 50);
        assert_eq!(tokens.claims("a.b.c", &set(&[key("k1", 1)])), Some(claims));
        assert_eq!(tokens.claims("a.b.d", &set(&[key("k1", 1)])), None);
        // The key withdrawn, or replaced by another under the same id: verified again.
        assert_eq!(tokens.claims("a.b.c", &set(&[key("k2", 1)])), None);
        assert_eq!(tokens.claims("a.b.c", &set(&[key("k1", 2)])), None);
    }

    #[test]
    fn a_full_cache_drops_expired_tokens_first() {
        let tokens = VerifiedTokens::default();
        let keys = set(&[key("k1", 1)]);
        tokens.keep("live", &key("k1", 1), Arc::new(json!({"exp": 1_000})), 0);
        for index in 1..CAPACITY {
            tokens.keep(&format!("old-{index}"), &key("k1", 1), Arc::new(json!({"exp": 10})), 0);
        }
        tokens.keep("new", &key("k1", 1), Arc::new(json!({"exp": 1_000})), 500);
        assert!(tokens.claims("live", &keys).is_some());
        assert!(tokens.claims("new", &keys).is_some());
        assert!(tokens.claims("old-1", &keys).is_none());
    }

    #[test]
    fn overlong_tokens_are_not_kept() {
        let tokens = VerifiedTokens::default();
        let long = "x".repeat(LONGEST_KEPT + 1);
        tokens.keep(&long, &key("k1", 1), Arc::new(json!({"exp": 10})), 0);
        assert!(tokens.claims(&long, &set(&[key("k1", 1)])).is_none());
    }
}
