//! Cache of the upstream realm's bearer tokens, keyed by (credential, scope). A token is reused
//! until `issued_at + expires_in − margin`; the clock is injected so tests can move time. The
//! cache holds the ready `Authorization: Bearer …` value, so a hit costs no formatting, parsing
//! or allocation beyond the `HeaderValue` clone (a reference-count bump).

use dashmap::DashMap;
use reqwest::header::HeaderValue;
use serde::Deserialize;

use crate::clock::SharedClock;

/// Seconds before expiry at which a cached token is no longer handed out.
const MARGIN_SECS: i64 = 30;

/// Cache key: the username, a hash of the password (never the password itself) and the
/// space-joined scope.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TokenKey {
    pub username: String,
    pub password_hash: [u8; 32],
    pub scope: String,
}

#[derive(Clone)]
struct Cached {
    /// `Bearer <token>`, marked sensitive.
    header: HeaderValue,
    valid_until_secs: i64,
}

/// The realm's answer (`token` or `access_token`, `expires_in`, RFC 3339 `issued_at`).
#[derive(Debug, Deserialize)]
pub struct TokenResponse {
    #[serde(default)]
    pub token: String,
    #[serde(default)]
    pub access_token: String,
    #[serde(default)]
    pub expires_in: Option<i64>,
    #[serde(default)]
    pub issued_at: Option<String>,
}

impl TokenResponse {
    pub fn bearer(&self) -> Option<&str> {
        if !self.token.is_empty() {
            Some(&self.token)
        } else if !self.access_token.is_empty() {
            Some(&self.access_token)
        } else {
            None
        }
    }
}

pub struct TokenCache {
    entries: DashMap<TokenKey, Cached>,
    clock: SharedClock,
}

impl TokenCache {
    pub fn new(clock: SharedClock) -> Self {
        TokenCache {
            entries: DashMap::new(),
            clock,
        }
    }

    /// The cached `Authorization` value for `key`, if still valid.
    pub fn get(&self, key: &TokenKey) -> Option<HeaderValue> {
        let now = self.clock.now_secs();
        let hit = self.entries.get(key).and_then(|c| {
            if c.valid_until_secs > now {
                Some(c.header.clone())
            } else {
                None
            }
        });
        if hit.is_none() {
            self.entries
                .remove_if(key, |_, c| c.valid_until_secs <= now);
        }
        hit
    }

    pub fn invalidate(&self, key: &TokenKey) {
        self.entries.remove(key);
    }

    /// Store a realm answer; returns its `Authorization` value (`None`: no token, or one that
    /// cannot be a header value). Tokens too short-lived to cache are returned but not stored.
    pub fn put(&self, key: TokenKey, resp: &TokenResponse) -> Option<HeaderValue> {
        let header = bearer_header(resp.bearer()?)?;
        let now = self.clock.now_secs();
        let issued = resp
            .issued_at
            .as_deref()
            .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
            .map(|t| t.timestamp())
            .filter(|t| (*t - now).abs() < 24 * 3600)
            .unwrap_or(now);
        let expires_in = resp.expires_in.filter(|e| *e > 0).unwrap_or(60);
        let margin = MARGIN_SECS.min(expires_in / 4);
        let valid_until_secs = issued + expires_in - margin;
        if valid_until_secs > now {
            if self.entries.len() > 10_000 {
                self.entries.retain(|_, c| c.valid_until_secs > now);
            }
            self.entries.insert(
                key,
                Cached {
                    header: header.clone(),
                    valid_until_secs,
                },
            );
        }
        Some(header)
    }
}

/// `Bearer <token>` as a sensitive header value.
fn bearer_header(token: &str) -> Option<HeaderValue> {
    let mut v = HeaderValue::from_str(&format!("Bearer {token}")).ok()?;
    v.set_sensitive(true);
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    #[test]
    fn expires_with_margin() {
        let clock = ManualClock::new(1_700_000_000_000);
        let cache = TokenCache::new(clock.clone());
        let key = TokenKey {
            username: "u".into(),
            password_hash: [0; 32],
            scope: "s".into(),
        };
        let resp = TokenResponse {
            token: String::new(),
            access_token: "t".into(),
            expires_in: Some(300),
            issued_at: Some("2023-11-14T22:13:20Z".into()),
        };
        let bearer = HeaderValue::from_static("Bearer t");
        assert_eq!(cache.put(key.clone(), &resp), Some(bearer.clone()));
        assert_eq!(cache.get(&key), Some(bearer.clone()));
        assert!(cache.get(&key).unwrap().is_sensitive());
        clock.advance_secs(269);
        assert_eq!(cache.get(&key), Some(bearer));
        clock.advance_secs(2);
        assert_eq!(cache.get(&key), None);
    }
}
