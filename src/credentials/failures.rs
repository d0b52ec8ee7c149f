//! Bad credentials are cheap. A credential TCR or the cloud API refused is remembered for a
//! short while (by a SHA-256 of its kind, id and secret: never the secret), so repeating it costs
//! no call; concurrent identical lookups already share one call (the caches' single flight).
//! Credentials that have never been accepted spend their own small budget of upstream checks,
//! separate from the cloud API's rate limit, so a flood of random keys cannot crowd out the
//! calls of callers whose credentials are known good.
//!
//! With a shared store (`[state] redis_url`) the refusals, the proven credentials and the budget
//! are the fleet's, not one replica's: a key refused by one replica is answered from memory by
//! every other, and a flood spread over N replicas spends one budget, not N. The store holds the
//! fingerprint and the kind of refusal only (never the id or the secret: the message is rebuilt
//! from what the caller presented). Without the store, or while it is down, each replica keeps
//! its own memory as before.

use std::sync::Mutex;
use std::time::Duration;

use dashmap::DashMap;
use serde::{Deserialize, Serialize};

use super::CredentialError;
use crate::state::{StateStore, Unshared};

/// How long a refusal is remembered, milliseconds.
pub const REMEMBER_MS: i64 = 30_000;
/// Remembered refusals kept at most (expired ones are pruned first, then all).
const MAX_REMEMBERED: usize = 10_000;

pub type Hash = [u8; 32];

/// The fingerprint of a credential: SHA-256 over its kind, id and secret.
pub fn fingerprint(kind: &str, id: &str, secret: &str) -> Hash {
    let mut h = openssl::sha::Sha256::new();
    for part in [kind, id, secret] {
        h.update(part.as_bytes());
        h.update(&[0]);
    }
    h.finish()
}

/// The refusal memory and the budget of unproven checks.
pub struct FailureGuard {
    remembered: DashMap<Hash, (i64, CredentialError)>,
    /// Credentials accepted before: their checks (refreshes) never spend the budget.
    proven: DashMap<Hash, ()>,
    bucket: Mutex<Bucket>,
    /// `tcr_adapter_credential_failures_total{result}`: `rejected` (a call said no),
    /// `remembered` (answered from memory, no call), `over_budget` (refused without a call).
    outcomes: prometheus::IntCounterVec,
    /// The fleet's memory, when replicas share one.
    store: Option<StateStore>,
}

/// A refusal as the shared store keeps it: its kind and the cloud's words, no identifiers.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind")]
enum Stored {
    UnknownSecretId,
    BadSignature,
    NotPermitted { action: String },
    ApiRejected { why: String },
    ApiKeysUnsupported,
    BadRegistryPassword { why: String },
}

impl Stored {
    fn of(err: &CredentialError) -> Option<Stored> {
        Some(match err {
            CredentialError::UnknownSecretId { .. } => Stored::UnknownSecretId,
            CredentialError::BadSignature { .. } => Stored::BadSignature,
            CredentialError::NotPermitted { action, .. } => Stored::NotPermitted {
                action: action.clone(),
            },
            CredentialError::ApiRejected { why, .. } => Stored::ApiRejected { why: why.clone() },
            CredentialError::ApiKeysUnsupported => Stored::ApiKeysUnsupported,
            CredentialError::BadRegistryPassword { why, .. } => {
                Stored::BadRegistryPassword { why: why.clone() }
            }
            _ => return None,
        })
    }

    /// The refusal again, for the caller who presented `id` (a SecretId or a username).
    fn error_for(self, id: &str) -> CredentialError {
        let secret_id = id.to_string();
        match self {
            Stored::UnknownSecretId => CredentialError::UnknownSecretId { secret_id },
            Stored::BadSignature => CredentialError::BadSignature { secret_id },
            Stored::NotPermitted { action } => CredentialError::NotPermitted { secret_id, action },
            Stored::ApiRejected { why } => CredentialError::ApiRejected { secret_id, why },
            Stored::ApiKeysUnsupported => CredentialError::ApiKeysUnsupported,
            Stored::BadRegistryPassword { why } => CredentialError::BadRegistryPassword {
                username: secret_id,
                why,
            },
        }
    }
}

/// How long a proven credential is remembered in the shared store.
const PROVEN_TTL: Duration = Duration::from_secs(24 * 3600);

/// A token bucket: `burst` checks at once, `per_sec` more each second.
struct Bucket {
    tokens: f64,
    burst: f64,
    per_sec: f64,
    last_ms: i64,
}

impl FailureGuard {
    /// `per_sec` unproven checks a second on average, `burst` at once.
    pub fn new(per_sec: f64, burst: u32) -> Self {
        let outcomes = prometheus::IntCounterVec::new(
            prometheus::Opts::new(
                "tcr_adapter_credential_failures_total",
                "Credentials refused, by how: rejected (an upstream call said no), remembered \
                 (a recent refusal repeated, no call), over_budget (unproven credential checks \
                 over their budget, no call)",
            ),
            &["result"],
        )
        .expect("valid metric");
        for r in ["rejected", "remembered", "over_budget"] {
            outcomes.with_label_values(&[r]);
        }
        FailureGuard {
            remembered: DashMap::new(),
            proven: DashMap::new(),
            bucket: Mutex::new(Bucket {
                tokens: f64::from(burst),
                burst: f64::from(burst.max(1)),
                per_sec: per_sec.max(0.1),
                last_ms: i64::MIN,
            }),
            outcomes,
            store: None,
        }
    }

    /// Share the memory and the budget with the other replicas through `store`.
    pub fn with_store(mut self, store: StateStore) -> Self {
        self.store = store.is_shared().then_some(store);
        self
    }

    pub fn outcomes(&self) -> &prometheus::IntCounterVec {
        &self.outcomes
    }

    /// The refusal remembered for `hash`, if still fresh.
    pub fn recall(&self, hash: &Hash, now_ms: i64) -> Option<CredentialError> {
        let hit = self
            .remembered
            .get(hash)
            .filter(|e| e.0 > now_ms)
            .map(|e| e.1.clone());
        if hit.is_some() {
            self.outcomes.with_label_values(&["remembered"]).inc();
        }
        hit
    }

    /// Remember `err` for `hash` when it refuses the credential itself (not an outage).
    pub fn remember(&self, hash: Hash, err: &CredentialError, now_ms: i64) {
        if !err.is_rejection() {
            return;
        }
        self.outcomes.with_label_values(&["rejected"]).inc();
        self.keep(hash, err, now_ms);
    }

    /// Remember a refusal the fleet already counted (no `rejected` count here).
    pub fn remember_quietly(&self, hash: Hash, err: &CredentialError, now_ms: i64) {
        if err.is_rejection() {
            self.keep(hash, err, now_ms);
        }
    }

    fn keep(&self, hash: Hash, err: &CredentialError, now_ms: i64) {
        self.proven.remove(&hash);
        if self.remembered.len() >= MAX_REMEMBERED {
            self.remembered.retain(|_, e| e.0 > now_ms);
            if self.remembered.len() >= MAX_REMEMBERED {
                self.remembered.clear();
            }
        }
        self.remembered
            .insert(hash, (now_ms.saturating_add(REMEMBER_MS), err.clone()));
    }

    /// The credential was accepted: its later checks are free of the budget. `true` when it
    /// was not known proven here before (the fleet is told then, not at every request).
    pub fn accepted(&self, hash: Hash) -> bool {
        self.remembered.remove(&hash);
        if self.proven.len() >= MAX_REMEMBERED {
            self.proven.clear();
        }
        self.proven.insert(hash, ()).is_none()
    }

    /// Whether `hash` was accepted here (or proven anywhere) and not refused since.
    pub fn is_proven(&self, hash: &Hash) -> bool {
        self.proven.contains_key(hash)
    }

    /// Before an upstream check of `hash`: free for a proven credential, else one unit of the
    /// budget.
    pub fn before_check(&self, hash: &Hash, now_ms: i64) -> Result<(), CredentialError> {
        if self.proven.contains_key(hash) {
            return Ok(());
        }
        self.spend(now_ms)
    }

    /// Spend one unproven check, or refuse with [`CredentialError::Busy`].
    pub fn spend(&self, now_ms: i64) -> Result<(), CredentialError> {
        let mut b = self.bucket.lock().unwrap_or_else(|p| p.into_inner());
        if b.last_ms != i64::MIN {
            let elapsed = (now_ms - b.last_ms).max(0) as f64 / 1000.0;
            b.tokens = (b.tokens + elapsed * b.per_sec).min(b.burst);
        }
        b.last_ms = now_ms;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            return Ok(());
        }
        drop(b);
        self.outcomes.with_label_values(&["over_budget"]).inc();
        Err(CredentialError::Busy)
    }
}

/// The fleet's side of the guard; each falls back to the replica's memory above.
impl FailureGuard {
    fn key(store: &StateStore, what: &str, hash: &Hash) -> String {
        store.key(&["cred", what, &hex::encode(hash)])
    }

    /// A refusal another replica (or this one) remembered for `hash`; `id` is what the caller
    /// presented (SecretId or username), used to word the error.
    pub async fn recall_shared(&self, hash: &Hash, id: &str) -> Option<CredentialError> {
        let store = self.store.as_ref()?;
        let raw = store.get(&Self::key(store, "refused", hash)).await.ok()??;
        let stored: Stored = serde_json::from_slice(&raw).ok()?;
        self.outcomes.with_label_values(&["remembered"]).inc();
        Some(stored.error_for(id))
    }

    /// Tell the fleet (after [`Self::remember`]).
    pub async fn remember_shared(&self, hash: &Hash, err: &CredentialError) {
        let (Some(store), Some(stored)) = (self.store.as_ref(), Stored::of(err)) else {
            return;
        };
        let Ok(raw) = serde_json::to_vec(&stored) else {
            return;
        };
        let ttl = Duration::from_millis(REMEMBER_MS as u64);
        let _ = store
            .set(&Self::key(store, "refused", hash), &raw, ttl)
            .await;
    }

    /// Tell the fleet the credential was accepted (after [`Self::accepted`]).
    pub async fn accepted_shared(&self, hash: &Hash) {
        let Some(store) = self.store.as_ref() else {
            return;
        };
        let _ = store.delete(&Self::key(store, "refused", hash)).await;
        let _ = store
            .set(&Self::key(store, "proven", hash), b"1", PROVEN_TTL)
            .await;
    }

    /// [`Self::before_check`] for the fleet: proven anywhere is free; otherwise the shared
    /// budget (a one-second window of `burst` checks across all replicas). The replica's own
    /// bucket decides when there is no store or it does not answer.
    pub async fn before_check_shared(
        &self,
        hash: &Hash,
        now_ms: i64,
    ) -> Result<(), CredentialError> {
        if self.proven.contains_key(hash) {
            return Ok(());
        }
        let Some(store) = self.store.as_ref() else {
            return self.spend(now_ms);
        };
        match store.get(&Self::key(store, "proven", hash)).await {
            Ok(Some(_)) => {
                self.proven.insert(*hash, ());
                return Ok(());
            }
            Ok(None) => {}
            Err(_) => return self.spend(now_ms),
        }
        let window = (now_ms.div_euclid(1000)).to_string();
        let burst = self.bucket.lock().unwrap_or_else(|p| p.into_inner()).burst;
        match store
            .incr(
                &store.key(&["cred", "budget", &window]),
                Duration::from_secs(2),
            )
            .await
        {
            Ok(n) if (n as f64) <= burst => Ok(()),
            Ok(_) => {
                self.outcomes.with_label_values(&["over_budget"]).inc();
                Err(CredentialError::Busy)
            }
            Err(Unshared::Local | Unshared::Down) => self.spend(now_ms),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused() -> CredentialError {
        CredentialError::BadSignature {
            secret_id: "AKIDx".into(),
        }
    }

    #[test]
    fn refusals_are_remembered_briefly_and_outages_not_at_all() {
        let g = FailureGuard::new(1.0, 2);
        let h = [7u8; 32];
        g.remember(h, &refused(), 0);
        assert_eq!(g.recall(&h, 1), Some(refused()));
        assert_eq!(g.recall(&h, REMEMBER_MS + 1), None);
        let h2 = [8u8; 32];
        g.remember(h2, &CredentialError::Throttled, 0);
        assert_eq!(g.recall(&h2, 1), None);
    }

    #[test]
    fn the_budget_refills_with_time() {
        let g = FailureGuard::new(2.0, 2);
        assert!(g.spend(0).is_ok());
        assert!(g.spend(0).is_ok());
        assert_eq!(g.spend(0), Err(CredentialError::Busy));
        assert!(g.spend(500).is_ok());
        assert_eq!(g.spend(500), Err(CredentialError::Busy));
        assert_eq!(g.outcomes.with_label_values(&["over_budget"]).get(), 2);
    }
}
