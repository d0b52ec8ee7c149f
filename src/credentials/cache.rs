//! The two credential caches: temporary instance tokens per SecretId, and positive validations
//! of registry credentials. Both are O(1) map lookups on the hot path and run at most ONE fetch
//! per key at a time: late arrivals wait for the fetch in flight and share its outcome, success
//! or failure. Secrets are only ever stored as SHA-256 digests (or inside the fetched
//! credential itself); nothing here logs.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use dashmap::DashMap;

use super::{CredentialError, UpstreamCredential};
use crate::tencentcloud::{ApiCredential, InstanceToken};

/// How long a positive registry-credential validation is trusted, milliseconds.
pub const VALIDATION_TTL_MS: i64 = 120_000;
/// Refresh a temporary token this long before it expires at most (10% of its life if shorter).
pub const REFRESH_MARGIN_MS: i64 = 300_000;
/// A cached token is still handed out while the cloud is unavailable, unless it expires within this.
const STALE_GUARD_MS: i64 = 10_000;
/// Above this many keys, entries without a usable value are pruned.
const MAX_SLOTS: usize = 10_000;

type Hash = [u8; 32];

fn digest(tag: &str, a: &str, b: &str) -> Hash {
    let mut h = openssl::sha::Sha256::new();
    h.update(tag.as_bytes());
    h.update(&[0]);
    h.update(a.as_bytes());
    h.update(&[0]);
    h.update(b.as_bytes());
    h.finish()
}

/// One key's cached value plus its single-flight gate.
struct Slot<V> {
    value: RwLock<Option<V>>,
    flight: tokio::sync::Mutex<()>,
    /// Bumped when a fetch finishes; lets waiters notice a fetch completed while they waited.
    generation: AtomicU64,
    /// The last fetch's failure, with the digest of the secret it was for.
    last_error: Mutex<Option<(Hash, CredentialError)>>,
}

impl<V: Clone> Slot<V> {
    fn new() -> Self {
        Slot {
            value: RwLock::new(None),
            flight: tokio::sync::Mutex::new(()),
            generation: AtomicU64::new(0),
            last_error: Mutex::new(None),
        }
    }

    fn read<T>(&self, f: impl FnOnce(&V) -> Option<T>) -> Option<T> {
        let guard = self.value.read().unwrap_or_else(|p| p.into_inner());
        guard.as_ref().and_then(f)
    }

    fn store(&self, v: V) {
        *self.value.write().unwrap_or_else(|p| p.into_inner()) = Some(v);
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = None;
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    fn fail(&self, hash: Hash, err: CredentialError) {
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some((hash, err));
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// The failure of a fetch that finished after `since`, for the same secret.
    fn failure_since(&self, since: u64, hash: &Hash) -> Option<CredentialError> {
        if self.generation.load(Ordering::Acquire) == since {
            return None;
        }
        let guard = self.last_error.lock().unwrap_or_else(|p| p.into_inner());
        match guard.as_ref() {
            Some((h, e)) if h == hash => Some(e.clone()),
            _ => None,
        }
    }
}

/// Get the slot for `key`, creating it; prunes the map when it grows past [`MAX_SLOTS`].
fn slot_for<K, V>(
    map: &DashMap<K, Arc<Slot<V>>>,
    key: &K,
    alive: impl Fn(&V) -> bool,
) -> Arc<Slot<V>>
where
    K: std::hash::Hash + Eq + Clone,
    V: Clone,
{
    if let Some(s) = map.get(key) {
        return s.clone();
    }
    if map.len() >= MAX_SLOTS {
        map.retain(|_, s| Arc::strong_count(s) > 1 || s.read(|v| alive(v).then_some(())).is_some());
    }
    map.entry(key.clone())
        .or_insert_with(|| Arc::new(Slot::new()))
        .clone()
}

#[derive(Clone)]
struct CachedToken {
    key_hash: Hash,
    cred: UpstreamCredential,
    exp_ms: i64,
    refresh_at_ms: i64,
}

/// Temporary registry credentials obtained with `CreateInstanceToken`, per SecretId.
pub struct InstanceTokenCache {
    slots: DashMap<String, Arc<Slot<CachedToken>>>,
    /// `tcr_adapter_instance_tokens_total{result}`: `issued` (first for a key), `refreshed`,
    /// `stale` (refresh failed, cached one used), `failed`.
    outcomes: prometheus::IntCounterVec,
}

impl Default for InstanceTokenCache {
    fn default() -> Self {
        InstanceTokenCache {
            slots: DashMap::new(),
            outcomes: prometheus::IntCounterVec::new(
                prometheus::Opts::new(
                    "tcr_adapter_instance_tokens_total",
                    "Temporary instance tokens obtained with CreateInstanceToken, by result",
                ),
                &["result"],
            )
            .expect("valid metric"),
        }
    }
}

impl InstanceTokenCache {
    pub fn new() -> Self {
        Self::default()
    }

    /// The outcome counter, to register on the adapter's `/metrics`.
    pub fn outcomes(&self) -> &prometheus::IntCounterVec {
        &self.outcomes
    }

    fn count(&self, result: &str) {
        self.outcomes.with_label_values(&[result]).inc();
    }

    /// The cached credential for `keys`, or the result of `fetch` (one in flight per SecretId).
    /// A cached credential is refreshed once `now` passes `exp - min(5 min, 10% of its life)`;
    /// if the refresh fails because the cloud is busy or down, the old one is used while it is
    /// still valid.
    pub async fn get_or_refresh<F, Fut>(
        &self,
        keys: &ApiCredential,
        now_ms: i64,
        fetch: F,
    ) -> Result<UpstreamCredential, CredentialError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<InstanceToken, CredentialError>>,
    {
        let hash = digest("api-keys", &keys.secret_id, keys.secret_key.expose());
        let slot = slot_for(&self.slots, &keys.secret_id, |c: &CachedToken| {
            c.exp_ms > now_ms
        });
        let fresh = |c: &CachedToken| {
            (c.key_hash == hash && now_ms < c.refresh_at_ms).then(|| c.cred.clone())
        };
        if let Some(cred) = slot.read(fresh) {
            return Ok(cred);
        }
        let seen = slot.generation.load(Ordering::Acquire);
        let _flight = slot.flight.lock().await;
        if let Some(cred) = slot.read(fresh) {
            return Ok(cred);
        }
        if let Some(err) = slot.failure_since(seen, &hash) {
            return Err(err);
        }
        let had = slot.read(|c| Some(c.key_hash == hash)).unwrap_or(false);
        match fetch().await {
            Ok(tok) => {
                self.count(if had { "refreshed" } else { "issued" });
                let life = (tok.exp_ms - now_ms).max(0);
                let margin = REFRESH_MARGIN_MS.min(life / 10);
                let cred = UpstreamCredential {
                    username: tok.username,
                    password: tok.token,
                };
                slot.store(CachedToken {
                    key_hash: hash,
                    cred: cred.clone(),
                    exp_ms: tok.exp_ms,
                    refresh_at_ms: tok.exp_ms - margin,
                });
                Ok(cred)
            }
            Err(err) => {
                let stale = slot.read(|c| {
                    (c.key_hash == hash && now_ms < c.exp_ms - STALE_GUARD_MS)
                        .then(|| c.cred.clone())
                });
                if let (false, Some(cred)) = (err.is_rejection(), stale) {
                    self.count("stale");
                    tracing::warn!(error = %err, "refreshing a temporary instance token failed; using the cached one");
                    return Ok(cred);
                }
                self.count("failed");
                slot.fail(hash, err.clone());
                if slot.read(|_| Some(())).is_none() {
                    self.slots
                        .remove_if(&keys.secret_id, |_, s| Arc::ptr_eq(s, &slot));
                }
                Err(err)
            }
        }
    }

    /// Number of SecretIds with a slot (for tests and metrics).
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }
}

/// Registry credentials that TCR accepted recently, keyed by a digest of user and password.
pub struct ValidationCache {
    ttl_ms: i64,
    slots: DashMap<Hash, Arc<Slot<i64>>>,
}

impl ValidationCache {
    pub fn new(ttl_ms: i64) -> Self {
        ValidationCache {
            ttl_ms,
            slots: DashMap::new(),
        }
    }

    /// `Ok` when `cred` was accepted within the TTL, else the result of `validate` (one in flight
    /// per credential).
    pub async fn check<F, Fut>(
        &self,
        cred: &UpstreamCredential,
        now_ms: i64,
        validate: F,
    ) -> Result<(), CredentialError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<(), CredentialError>>,
    {
        let hash = digest("registry", &cred.username, cred.password.expose());
        let slot = slot_for(&self.slots, &hash, |until: &i64| *until > now_ms);
        let valid = |until: &i64| (now_ms < *until).then_some(());
        if slot.read(valid).is_some() {
            return Ok(());
        }
        let seen = slot.generation.load(Ordering::Acquire);
        let _flight = slot.flight.lock().await;
        if slot.read(valid).is_some() {
            return Ok(());
        }
        if let Some(err) = slot.failure_since(seen, &hash) {
            return Err(err);
        }
        match validate().await {
            Ok(()) => {
                slot.store(now_ms + self.ttl_ms);
                Ok(())
            }
            Err(err) => {
                slot.fail(hash, err.clone());
                self.slots.remove_if(&hash, |_, s| Arc::ptr_eq(s, &slot));
                Err(err)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;
    use std::sync::atomic::AtomicUsize;

    fn keys(key: &str) -> ApiCredential {
        ApiCredential {
            secret_id: "AKIDtest".into(),
            secret_key: Secret::new(key),
        }
    }

    fn token(exp_ms: i64, n: usize) -> InstanceToken {
        InstanceToken {
            username: "100".into(),
            token: Secret::new(format!("tok{n}")),
            exp_ms,
        }
    }

    #[tokio::test]
    async fn a_wrong_key_never_reuses_the_cached_token_of_the_right_one() {
        let cache = InstanceTokenCache::new();
        let good = cache
            .get_or_refresh(&keys("good"), 0, || async { Ok(token(3_600_000, 1)) })
            .await
            .unwrap();
        assert_eq!(good.password.expose(), "tok1");
        let bad = cache
            .get_or_refresh(&keys("bad"), 1, || async {
                Err(CredentialError::BadSignature {
                    secret_id: "AKIDtest".into(),
                })
            })
            .await;
        assert!(matches!(bad, Err(CredentialError::BadSignature { .. })));
    }

    #[tokio::test]
    async fn refreshes_within_the_margin_and_keeps_the_old_token_when_the_cloud_is_down() {
        let cache = InstanceTokenCache::new();
        let calls = AtomicUsize::new(0);
        let fetch = |exp| {
            let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
            async move { Ok(token(exp, n)) }
        };
        // 1 h token: margin 5 min.
        cache
            .get_or_refresh(&keys("k"), 0, || fetch(3_600_000))
            .await
            .unwrap();
        cache
            .get_or_refresh(&keys("k"), 3_200_000, || fetch(0))
            .await
            .unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        let down = cache
            .get_or_refresh(&keys("k"), 3_400_000, || async {
                Err(CredentialError::Unavailable { why: "down".into() })
            })
            .await
            .unwrap();
        assert_eq!(down.password.expose(), "tok1");
        let new = cache
            .get_or_refresh(&keys("k"), 3_400_001, || fetch(7_200_000))
            .await
            .unwrap();
        assert_eq!(new.password.expose(), "tok2");
        let count = |r: &str| cache.outcomes().with_label_values(&[r]).get();
        assert_eq!(
            (
                count("issued"),
                count("stale"),
                count("refreshed"),
                count("failed")
            ),
            (1, 1, 1, 0)
        );
    }

    #[tokio::test]
    async fn validation_failures_are_not_cached() {
        let cache = ValidationCache::new(1000);
        let cred = UpstreamCredential {
            username: "u".into(),
            password: Secret::new("p"),
        };
        let no = || async {
            Err(CredentialError::BadRegistryPassword {
                username: "u".into(),
                why: "x".into(),
            })
        };
        assert!(cache.check(&cred, 0, no).await.is_err());
        assert!(cache.check(&cred, 0, || async { Ok(()) }).await.is_ok());
        assert!(cache.check(&cred, 999, no).await.is_ok());
        assert!(cache.check(&cred, 1000, no).await.is_err());
    }
}
