//! Bad credentials are cheap. A credential TCR or the cloud API refused is remembered for a
//! short while (by a SHA-256 of its kind, id and secret: never the secret), so repeating it costs
//! no call; concurrent identical lookups already share one call (the caches' single flight).
//! Credentials that have never been accepted spend their own small budget of upstream checks,
//! separate from the cloud API's rate limit, so a flood of random keys cannot crowd out the
//! calls of callers whose credentials are known good.

use std::sync::Mutex;

use dashmap::DashMap;

use super::CredentialError;

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
}

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
        }
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
        if self.remembered.len() >= MAX_REMEMBERED {
            self.remembered.retain(|_, e| e.0 > now_ms);
            if self.remembered.len() >= MAX_REMEMBERED {
                self.remembered.clear();
            }
        }
        self.remembered
            .insert(hash, (now_ms.saturating_add(REMEMBER_MS), err.clone()));
    }

    /// The credential was accepted: its later checks are free of the budget.
    pub fn accepted(&self, hash: Hash) {
        self.remembered.remove(&hash);
        if self.proven.len() >= MAX_REMEMBERED {
            self.proven.clear();
        }
        self.proven.insert(hash, ());
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
