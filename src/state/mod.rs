//! State the replicas share: one small key-value surface (get, set with expiry, set-if-absent,
//! delete, counters) over Redis when `[state] redis_url` is set, and nothing at all otherwise.
//!
//! The store is an accelerator and a coordinator, never a dependency: every caller keeps its own
//! in-process memory and uses it whenever the store answers [`Unshared`]. A store that fails (an
//! error or no answer within `timeout_ms`) is counted (`tcr_adapter_state_store_errors_total`),
//! marked down and left alone for a short back-off, so requests do not queue behind a dead store;
//! the first call after the back-off tries again, and the first success marks it up.
//!
//! Nothing secret is written: keys and values are digests, repository names, credential
//! fingerprints (SHA-256) and counters. The URL itself may carry a password; it is never logged.

mod redis_store;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::sync::broadcast;

use crate::clock::SharedClock;
use crate::config::StateConfig;
use redis_store::RedisStore;

/// Why a call was answered from the replica's own memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unshared {
    /// No store is configured: one replica, in-process state.
    Local,
    /// The store is configured but did not answer (counted and shown in `/readyz`).
    Down,
}

/// What a store call gives back.
pub type Shared<T> = Result<T, Unshared>;

/// The shared store, or its absence. Cheap to clone.
#[derive(Clone)]
pub struct StateStore {
    inner: Arc<Inner>,
}

struct Inner {
    backend: Option<Arc<RedisStore>>,
    /// One listener per channel subscribed to ([`StateStore::subscribe`]).
    channels: dashmap::DashMap<String, Arc<broadcast::Sender<String>>>,
    prefix: String,
    health: Mutex<Health>,
    metrics: StateMetrics,
    /// The time written into shared entries (claim and offer ages, heartbeats).
    clock: SharedClock,
}

#[derive(Default)]
struct Health {
    /// Set while the store is considered down: when to try it again.
    retry_at: Option<Instant>,
    backoff: Duration,
    last_error: Option<String>,
}

/// `tcr_adapter_state_store_errors_total` and `tcr_adapter_state_store_up`.
#[derive(Clone)]
pub struct StateMetrics {
    pub errors: prometheus::IntCounter,
    pub up: prometheus::IntGauge,
}

impl StateMetrics {
    pub fn new(registry: &prometheus::Registry) -> Self {
        let errors = prometheus::IntCounter::new(
            "tcr_adapter_state_store_errors_total",
            "Calls to the shared state store (Redis) that failed or timed out; the replica used its own memory instead",
        )
        .expect("valid metric");
        let up = prometheus::IntGauge::new(
            "tcr_adapter_state_store_up",
            "1 when the shared state store answers, 0 when it is down (replica memory in use), -1 when none is configured",
        )
        .expect("valid metric");
        let _ = registry.register(Box::new(errors.clone()));
        let _ = registry.register(Box::new(up.clone()));
        StateMetrics { errors, up }
    }
}

/// First and longest pause before a down store is tried again.
const BACKOFF_MIN: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

impl StateStore {
    /// No store: every call answers [`Unshared::Local`].
    pub fn local(registry: &prometheus::Registry) -> Self {
        Self::build(None, "tcr-adapter".into(), StateMetrics::new(registry))
    }

    /// This store with `clock` as the time of what it writes (before it is shared: a store
    /// already cloned keeps the system clock).
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.clock = clock;
        }
        self
    }

    /// Milliseconds since the epoch by the store's clock: the time of entries other replicas
    /// read (claim and offer ages, heartbeats).
    pub fn now_ms(&self) -> i64 {
        self.inner.clock.now_ms()
    }

    /// The store `cfg` names (in-process when `redis_url` is empty). Connecting is lazy: a store
    /// that is not there yet at start is simply down until it answers.
    pub fn from_config(cfg: &StateConfig, registry: &prometheus::Registry) -> Result<Self, String> {
        let metrics = StateMetrics::new(registry);
        if cfg.redis_url.is_empty() {
            return Ok(Self::build(None, cfg.key_prefix.clone(), metrics));
        }
        let backend = RedisStore::new(
            cfg.redis_url.expose(),
            Duration::from_millis(cfg.timeout_ms),
        )?;
        Ok(Self::build(
            Some(Arc::new(backend)),
            cfg.key_prefix.clone(),
            metrics,
        ))
    }

    fn build(backend: Option<Arc<RedisStore>>, prefix: String, metrics: StateMetrics) -> Self {
        metrics.up.set(if backend.is_some() { 1 } else { -1 });
        StateStore {
            inner: Arc::new(Inner {
                backend,
                channels: dashmap::DashMap::new(),
                prefix,
                health: Mutex::new(Health::default()),
                metrics,
                clock: crate::clock::system(),
            }),
        }
    }

    /// Whether a store is configured at all.
    pub fn is_shared(&self) -> bool {
        self.inner.backend.is_some()
    }

    /// The full key for `parts` (joined with `:` under the configured prefix).
    pub fn key(&self, parts: &[&str]) -> String {
        let mut k = self.inner.prefix.clone();
        for p in parts {
            k.push(':');
            k.push_str(p);
        }
        k
    }

    /// The value at `key`, if any.
    pub async fn get(&self, key: &str) -> Shared<Option<Vec<u8>>> {
        let b = self.backend()?;
        self.settle(b.get(key).await)
    }

    /// Store `value` at `key` for `ttl`.
    pub async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> Shared<()> {
        let b = self.backend()?;
        self.settle(b.set(key, value, ttl).await)
    }

    /// Store `value` at `key` for `ttl` only if nothing is there; true when this call stored it
    /// (a distributed single flight: exactly one caller wins until the key expires or is freed).
    pub async fn set_if_absent(&self, key: &str, value: &[u8], ttl: Duration) -> Shared<bool> {
        let b = self.backend()?;
        self.settle(b.set_nx(key, value, ttl).await)
    }

    /// Delete `key` only if it still holds `value` (a claim is freed only by its owner).
    pub async fn delete_if(&self, key: &str, value: &[u8]) -> Shared<bool> {
        let b = self.backend()?;
        self.settle(b.del_if(key, value).await)
    }

    /// Delete `key`.
    pub async fn delete(&self, key: &str) -> Shared<()> {
        let b = self.backend()?;
        self.settle(b.del(key).await)
    }

    /// Add one to the counter at `key` (created with `ttl`); the new value.
    pub async fn incr(&self, key: &str, ttl: Duration) -> Shared<i64> {
        let b = self.backend()?;
        self.settle(b.incr(key, ttl).await)
    }

    /// Add `member` to the ordered set at `key` (ordered by `score`, the first score kept), at
    /// most `cap` members (the first and the newest stay), the set expiring `ttl` after the last
    /// add.
    pub async fn set_add(
        &self,
        key: &str,
        member: &str,
        score: i64,
        cap: usize,
        ttl: Duration,
    ) -> Shared<()> {
        let b = self.backend()?;
        self.settle(b.set_add(key, member, score, cap, ttl).await)
    }

    /// The members of the ordered set at `key`, lowest score first.
    pub async fn set_members(&self, key: &str) -> Shared<Vec<String>> {
        let b = self.backend()?;
        self.settle(b.set_members(key).await)
    }

    /// Run a Lua `script` (one round trip, atomic) over `keys` with `args`; its integer answer.
    pub async fn script(&self, script: &str, keys: &[&str], args: &[&str]) -> Shared<i64> {
        let b = self.backend()?;
        self.settle(b.script(script, keys, args).await)
    }

    /// The members of the ordered set at `set` and the values at `keys`, in one round trip.
    pub async fn members_and_values(
        &self,
        set: &str,
        keys: &[&str],
    ) -> Shared<(Vec<String>, Vec<Option<Vec<u8>>>)> {
        let b = self.backend()?;
        self.settle(b.members_and_values(set, keys).await)
    }

    /// Push `value` at the head of the list at `key`, keeping its first `cap` entries (the
    /// newest), the list expiring `ttl` after the last push.
    pub async fn list_push(&self, key: &str, value: &str, cap: usize, ttl: Duration) -> Shared<()> {
        let b = self.backend()?;
        self.settle(b.list_push(key, value, cap, ttl).await)
    }

    /// The entries of the list at `key`, newest first.
    pub async fn list_all(&self, key: &str) -> Shared<Vec<String>> {
        let b = self.backend()?;
        self.settle(b.list_all(key).await)
    }

    /// Remove `member` from the ordered set at `key`.
    pub async fn set_remove(&self, key: &str, member: &str) -> Shared<()> {
        let b = self.backend()?;
        self.settle(b.set_remove(key, member).await)
    }

    /// A heartbeat of `member` in the ordered set at `key` (scored `now_ms`); the members that beat
    /// within `alive`, oldest first (the set itself expires `alive` after the last beat).
    pub async fn beat(
        &self,
        key: &str,
        member: &str,
        now_ms: i64,
        alive: Duration,
    ) -> Shared<Vec<String>> {
        let b = self.backend()?;
        self.settle(b.beat(key, member, now_ms, alive).await)
    }

    /// What is published on `channel` (a full key, see [`Self::key`]) from now on, as the store
    /// delivers it: best effort (nothing while the store is away; a listener that falls behind
    /// is told it lagged), so a caller still looks for itself now and then. `None` without a
    /// store. One connection per channel serves every receiver of this process; it reconnects
    /// after a loss and ends when the store is dropped.
    pub fn subscribe(&self, channel: &str) -> Option<broadcast::Receiver<String>> {
        let backend = self.inner.backend.clone()?;
        let entry = self
            .inner
            .channels
            .entry(channel.to_string())
            .or_insert_with(|| {
                let tx = Arc::new(broadcast::channel(256).0);
                let out = Arc::downgrade(&tx);
                let channel = channel.to_string();
                tokio::spawn(async move {
                    while out.strong_count() > 0 {
                        if backend.listen(&channel, &out).await.is_ok() {
                            return;
                        }
                        tokio::time::sleep(BACKOFF_MIN).await;
                    }
                });
                tx
            });
        Some(entry.subscribe())
    }

    /// One round trip to the store (for `check` and tests).
    pub async fn ping(&self) -> Shared<()> {
        let b = self.inner.backend.as_ref().ok_or(Unshared::Local)?;
        self.settle(b.ping().await)
    }

    /// `/readyz` and `check`: which store, and whether it answers. The store never makes the
    /// adapter unready: without it replicas fall back to their own memory.
    pub fn status(&self) -> Value {
        match &self.inner.backend {
            None => json!("in-process (no [state] redis_url)"),
            Some(_) => {
                let h = self.inner.health.lock().unwrap_or_else(|p| p.into_inner());
                match (&h.retry_at, &h.last_error) {
                    (Some(_), Some(e)) => json!(format!(
                        "degraded: redis unreachable ({e}); each replica uses its own memory"
                    )),
                    _ => json!("ok (redis)"),
                }
            }
        }
    }

    /// The backend, unless none is configured or it is backing off after a failure.
    fn backend(&self) -> Shared<&RedisStore> {
        let b = self.inner.backend.as_ref().ok_or(Unshared::Local)?;
        let h = self.inner.health.lock().unwrap_or_else(|p| p.into_inner());
        match h.retry_at {
            Some(at) if Instant::now() < at => Err(Unshared::Down),
            _ => Ok(b),
        }
    }

    /// Book the outcome of one call: a success marks the store up, a failure counts, marks it
    /// down and doubles the back-off.
    fn settle<T>(&self, r: Result<T, String>) -> Shared<T> {
        let mut h = self.inner.health.lock().unwrap_or_else(|p| p.into_inner());
        match r {
            Ok(v) => {
                if h.retry_at.take().is_some() {
                    tracing::info!("state store: redis answers again; shared state resumed");
                }
                h.backoff = Duration::ZERO;
                self.inner.metrics.up.set(1);
                Ok(v)
            }
            Err(e) => {
                self.inner.metrics.errors.inc();
                self.inner.metrics.up.set(0);
                if h.retry_at.is_none() {
                    tracing::warn!(error = %e, "state store: redis failed; this replica uses its own memory until it answers");
                }
                h.backoff = (h.backoff * 2).clamp(BACKOFF_MIN, BACKOFF_MAX);
                h.retry_at = Some(Instant::now() + h.backoff);
                h.last_error = Some(e);
                Err(Unshared::Down)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn without_a_store_every_call_is_local_and_nothing_is_counted() {
        let reg = prometheus::Registry::new();
        let s = StateStore::local(&reg);
        assert!(!s.is_shared());
        assert_eq!(s.get("k").await, Err(Unshared::Local));
        assert_eq!(
            s.set_if_absent("k", b"v", Duration::from_secs(1)).await,
            Err(Unshared::Local)
        );
        assert_eq!(s.inner.metrics.errors.get(), 0);
        assert_eq!(s.inner.metrics.up.get(), -1);
        assert_eq!(s.key(&["claim", "a"]), "tcr-adapter:claim:a");
    }

    #[tokio::test]
    async fn a_store_that_is_not_there_is_counted_then_skipped_while_backing_off() {
        let reg = prometheus::Registry::new();
        // A port nothing listens on (bound, then released).
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let cfg = StateConfig {
            redis_url: crate::config::Secret::new(format!("redis://127.0.0.1:{port}/0")),
            timeout_ms: 200,
            ..StateConfig::default()
        };
        let s = StateStore::from_config(&cfg, &reg).unwrap();
        assert_eq!(s.get("k").await, Err(Unshared::Down));
        assert_eq!(s.inner.metrics.errors.get(), 1);
        assert_eq!(s.inner.metrics.up.get(), 0);
        // Backing off: answered at once from memory, not counted again.
        assert_eq!(s.get("k").await, Err(Unshared::Down));
        assert_eq!(s.inner.metrics.errors.get(), 1);
        assert!(s.status().as_str().unwrap().starts_with("degraded"));
    }
}
