//! Client of TCR's data plane (or any token-auth registry): learns the upstream's auth challenge,
//! fetches and caches bearer tokens per (credential, scope) from its realm (concurrent misses of
//! one key share ONE fetch), sends requests with
//! bounded retries. It forwards what it is given and knows nothing of the adapter's own tokens,
//! names or HTTP server; bodies pass through as streams and are never collected here.

mod basic;
pub mod challenge;
mod grants;
mod metrics;
mod path;
mod realm;
mod replay;
mod retry;
mod storage;
pub mod tls_diag;
mod tokens;
mod validator;

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_LENGTH, RETRY_AFTER};
use reqwest::{Method, StatusCode};

use crate::clock::SharedClock;
use crate::config::Secret;
use crate::oci::{ErrorCode, OciError};

pub use challenge::Challenge;
pub use grants::permits;
pub use metrics::UpstreamMetrics;
pub use path::{UnsafeSegment, UpstreamPath};
pub use replay::ReplayBody;
pub use retry::{retryable_status, RetryBudget};
pub use tokens::{TokenCache, TokenKey, TokenResponse};
pub use validator::RealmValidator;

/// Basic credentials presented to the upstream realm (username = UIN, password = instance token).
#[derive(Clone, Debug)]
pub struct BasicAuth {
    pub username: String,
    pub password: Secret,
}

impl BasicAuth {
    pub(crate) fn header(&self) -> HeaderValue {
        use base64::Engine;
        let raw = format!("{}:{}", self.username, self.password.expose());
        let mut v = HeaderValue::from_str(&format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        ))
        .unwrap_or_else(|_| HeaderValue::from_static(""));
        v.set_sensitive(true);
        v
    }
}

/// Why the upstream could not be used.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// No HTTP answer (connect, TLS, timeout, reset).
    #[error("the upstream registry {url} could not be reached: {reason}")]
    Unreachable { url: String, reason: String },
    /// The upstream realm refused the credential.
    #[error("the upstream registry's token service {realm} refused the credential of {username}: {message}")]
    CredentialRejected {
        realm: String,
        username: String,
        message: String,
    },
    /// The realm answered something unusable.
    #[error("the upstream registry's token service {url} answered {status}: {message}")]
    Realm {
        url: String,
        status: u16,
        message: String,
    },
}

/// The client's error names the problem, never TCR's internal URL, the realm or the socket
/// error: those go to the log (with the request's `X-Request-Id` on the access line).
impl From<UpstreamError> for OciError {
    fn from(e: UpstreamError) -> Self {
        tracing::warn!(error = %e, "upstream request failed");
        let gateway = actix_web::http::StatusCode::BAD_GATEWAY;
        match &e {
            UpstreamError::Unreachable { .. } => OciError::new(
                ErrorCode::Unavailable,
                "TCR could not be reached (connection, TLS or timeout); the adapter's log has the cause",
            )
            .with_status(gateway),
            UpstreamError::CredentialRejected { message, .. } => OciError::new(
                ErrorCode::Denied,
                format!(
                    "TCR's token service refused the translated credential: {}",
                    crate::oci::clip(message)
                ),
            ),
            UpstreamError::Realm { status, .. } => OciError::new(
                ErrorCode::Unavailable,
                format!("TCR's token service answered {status}; the adapter's log has the details"),
            )
            .with_status(gateway),
        }
    }
}

/// A request body for the upstream.
pub enum ForwardBody {
    /// No body (GET/HEAD/DELETE, or an empty POST): replayable.
    Empty,
    /// A small buffered body (manifests ≤ 4 MiB): replayable.
    Bytes(Bytes),
    /// A streamed body, sent once; `Content-Length` is set by the caller's headers when known.
    Stream(reqwest::Body),
    /// A streamed body that can be sent again while TCR has read no more than its replay cap.
    Replayable(ReplayBody),
}

/// One request to forward.
pub struct Forward {
    pub method: Method,
    /// `/v2/...?query`, already in upstream names, built segment by segment.
    pub path: UpstreamPath,
    /// End-to-end headers to send (hop-by-hop, Host and Authorization already removed).
    pub headers: HeaderMap,
    pub body: ForwardBody,
    /// Token scopes the request needs upstream (empty for `/v2/`).
    pub scopes: Vec<String>,
    /// `None`: anonymous (no credential; a Bearer upstream gets an anonymous realm token).
    pub credential: Option<BasicAuth>,
    /// Metrics label.
    pub route: &'static str,
}

/// Bounded retry policy for idempotent bodyless requests.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    pub attempts: u32,
    pub base: Duration,
    pub max_wait: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 4,
            base: Duration::from_millis(100),
            max_wait: Duration::from_secs(5),
        }
    }
}

pub struct UpstreamClient {
    base: String,
    pub(crate) http: reqwest::Client,
    challenge: RwLock<Option<Challenge>>,
    tokens: TokenCache,
    /// One gate per (credential, scope) whose token is being fetched: late arrivals wait for
    /// the fetch in flight and read its result from `tokens`.
    fetching: dashmap::DashMap<TokenKey, Arc<tokio::sync::Mutex<()>>>,
    pub metrics: UpstreamMetrics,
    retry: RetryPolicy,
    budget: RetryBudget,
}

impl UpstreamClient {
    /// `base` is the data plane URL (`https://x.tencentcloudcr.com`). Redirects are never
    /// followed and bodies are never decompressed.
    pub fn new(
        base: &str,
        connect_timeout: Duration,
        ca_pem: Option<&[u8]>,
        clock: SharedClock,
        metrics: UpstreamMetrics,
    ) -> Result<Self, String> {
        let mut b = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(connect_timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .user_agent(concat!("tcr-adapter/", env!("CARGO_PKG_VERSION")));
        if let Some(pem) = ca_pem {
            let cert = reqwest::Certificate::from_pem(pem).map_err(|e| e.to_string())?;
            b = b.add_root_certificate(cert);
        }
        let http = b.build().map_err(|e| e.to_string())?;
        tls_diag::remember_trust(base, ca_pem);
        Ok(UpstreamClient {
            base: base.trim_end_matches('/').to_string(),
            http,
            challenge: RwLock::new(None),
            tokens: TokenCache::new(clock),
            fetching: dashmap::DashMap::new(),
            metrics,
            retry: RetryPolicy::default(),
            budget: RetryBudget::new(0.2, 10, Duration::from_secs(10)),
        })
    }

    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Retries allowed as `ratio` of the requests of a 10 s window plus `min_per_sec`.
    pub fn with_budget(mut self, ratio: f64, min_per_sec: u32) -> Self {
        self.budget = RetryBudget::new(ratio, min_per_sec, Duration::from_secs(10));
        self
    }

    /// Whether a failed attempt may be retried (counts the retry, or the give-up and its cause).
    fn may_retry(
        &self,
        cause: &str,
        body_replayable: Result<(), &'static str>,
        attempt: u32,
    ) -> bool {
        let verdict = match body_replayable {
            Err(why) => Err(why),
            Ok(()) if attempt >= self.retry.attempts => Err("attempts"),
            Ok(()) if !self.budget.withdraw() => Err("budget"),
            Ok(()) => Ok(()),
        };
        match verdict {
            Ok(()) => {
                self.metrics.retries.with_label_values(&[cause]).inc();
                true
            }
            Err(why) => {
                self.metrics.giveups.with_label_values(&[why]).inc();
                tracing::debug!(cause, why, attempt, "upstream failure not retried");
                false
            }
        }
    }

    /// The upstream base URL, no trailing slash.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Readiness: `GET /v2/` answers (any status but a 5xx) right now. Never cached.
    pub async fn probe(&self) -> Result<(), UpstreamError> {
        let url = format!("{}/v2/", self.base);
        let resp = self
            .http
            .get(&url)
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .map_err(|e| unreachable(&url, &e))?;
        if resp.status().is_server_error() {
            return Err(UpstreamError::Unreachable {
                url,
                reason: format!("GET /v2/ answered {}", resp.status()),
            });
        }
        Ok(())
    }

    /// Cache key; anonymous tokens are keyed by an empty username and an all-zero hash.
    fn key(cred: Option<&BasicAuth>, scopes: &[String]) -> TokenKey {
        TokenKey {
            username: cred.map_or_else(String::new, |c| c.username.clone()),
            password_hash: cred.map_or([0; 32], |c| {
                openssl::sha::sha256(c.password.expose().as_bytes())
            }),
            scope: scopes.join(" "),
        }
    }

    /// The `Authorization` value for a credential (`None`: anonymous, which still gets an
    /// anonymous realm token from a Bearer upstream) and scope; `fresh` bypasses the cache.
    async fn authorization(
        &self,
        cred: Option<&BasicAuth>,
        scopes: &[String],
        fresh: bool,
    ) -> Result<Option<HeaderValue>, UpstreamError> {
        match self.challenge().await? {
            Challenge::None => Ok(None),
            Challenge::Basic => Ok(cred.map(BasicAuth::header)),
            Challenge::Bearer { realm, service } => {
                let key = Self::key(cred, scopes);
                if fresh {
                    self.tokens.invalidate(&key);
                }
                match self.tokens.get(&key) {
                    Some(v) => {
                        self.metrics.token_hit.inc();
                        Ok(Some(v))
                    }
                    None => self
                        .fetch_once(&realm, &service, cred, scopes, key)
                        .await
                        .map(Some),
                }
            }
        }
    }

    /// Fetch the realm token for `cred` and `scopes` now, in the background, unless it is
    /// cached: a request that needs it later finds it in the cache, or joins the fetch in
    /// flight (single flight per key). Tokens stay in this process. Nothing to do for an
    /// upstream without a bearer realm.
    pub fn prefetch(self: &Arc<Self>, cred: Option<BasicAuth>, scopes: Vec<String>) {
        if matches!(
            self.challenge
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .as_ref(),
            Some(Challenge::Bearer { .. })
        ) && self
            .tokens
            .get(&Self::key(cred.as_ref(), &scopes))
            .is_some()
        {
            return;
        }
        let me = self.clone();
        tokio::spawn(async move {
            if let Err(e) = me.authorization(cred.as_ref(), &scopes, false).await {
                tracing::debug!(error = %e, "realm token prefetch failed");
            }
        });
    }

    /// The token for `key` after a cache miss: ONE realm request per key at a time; callers
    /// that arrive while it runs wait and take its result from the cache (or fetch themselves
    /// when it failed or was too short-lived to cache).
    async fn fetch_once(
        &self,
        realm: &str,
        service: &str,
        cred: Option<&BasicAuth>,
        scopes: &[String],
        key: TokenKey,
    ) -> Result<HeaderValue, UpstreamError> {
        let gate = self
            .fetching
            .entry(key.clone())
            .or_insert_with(|| Arc::new(tokio::sync::Mutex::new(())))
            .clone();
        let turn = gate.lock().await;
        let result = match self.tokens.get(&key) {
            Some(v) => {
                self.metrics.token_hit.inc();
                Ok(v)
            }
            None => {
                self.metrics.token_miss.inc();
                self.fetch_token_as(realm, service, cred, scopes)
                    .await
                    .and_then(|resp| {
                        self.tokens
                            .put(key.clone(), &resp)
                            .ok_or_else(|| UpstreamError::Realm {
                                url: realm.to_string(),
                                status: 200,
                                message: "token is not a valid header value".into(),
                            })
                    })
            }
        };
        drop(turn);
        // The map holds keys in flight only: the last one through drops the gate.
        self.fetching.remove_if(&key, |_, g| {
            Arc::ptr_eq(g, &gate) && Arc::strong_count(g) <= 2
        });
        result
    }

    /// Send a request: authorize it; retry on 429/502/503/504 and connection failures whenever
    /// the body can be sent again (none, buffered, or streamed within its replay cap), within
    /// the attempts and the retry budget; refresh the token once on a 401.
    pub async fn send(&self, mut f: Forward) -> Result<reqwest::Response, UpstreamError> {
        let url = format!("{}{}", self.base, f.path);
        self.budget.deposit();
        let mut body = AttemptBody::new(std::mem::replace(&mut f.body, ForwardBody::Empty));
        let mut auth = self
            .authorization(f.credential.as_ref(), &f.scopes, false)
            .await?;
        let mut refreshed = false;
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let req = self.attempt_request(&f, &url, auth.as_ref(), &mut body);
            let resp = match self.timed_send((f.route, &f.path), &f.method, req).await {
                Ok(r) => r,
                Err(e) => {
                    if self.may_retry("network", body.replayable(), attempt) {
                        tokio::time::sleep(self.backoff(attempt, None)).await;
                        continue;
                    }
                    return Err(unreachable(&url, &e));
                }
            };
            // An anonymous 401 means "not public": a new anonymous token would not help.
            let credentialed = f.credential.is_some() && auth.is_some();
            if resp.status() == StatusCode::UNAUTHORIZED
                && body.replayable().is_ok()
                && !refreshed
                && credentialed
            {
                refreshed = true;
                self.metrics
                    .retries
                    .with_label_values(&["unauthorized"])
                    .inc();
                auth = self
                    .authorization(f.credential.as_ref(), &f.scopes, true)
                    .await?;
                continue;
            }
            if let Some(wait) = self.status_retry_wait(&resp, body.replayable(), attempt) {
                drop(resp);
                tokio::time::sleep(wait).await;
                continue;
            }
            return Ok(resp);
        }
    }

    /// One attempt's request: method, URL, headers, `Authorization` and the body.
    fn attempt_request(
        &self,
        f: &Forward,
        url: &str,
        auth: Option<&HeaderValue>,
        body: &mut AttemptBody,
    ) -> reqwest::RequestBuilder {
        let mut req = self
            .http
            .request(f.method.clone(), url)
            .headers(f.headers.clone());
        if let Some(a) = auth {
            req = req.header(AUTHORIZATION, a.clone());
        }
        let bodyless = f.method == Method::GET || f.method == Method::HEAD;
        match (&body.replay, body.once.take(), &body.fixed) {
            (Some(r), _, _) => req.body(r.attempt()),
            (None, Some(b), _) => req.body(b),
            (None, None, _) if bodyless => req,
            (None, None, b) => {
                let b = b.clone().unwrap_or_default();
                if !f.headers.contains_key(CONTENT_LENGTH) {
                    req = req.header(CONTENT_LENGTH, b.len());
                }
                req.body(b)
            }
        }
    }

    /// Send one attempt, observing its latency by route and status (`error` without one).
    async fn timed_send(
        &self,
        (route, path): (&'static str, &UpstreamPath),
        method: &Method,
        req: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, reqwest::Error> {
        let started = Instant::now();
        let result = req.send().await;
        let status_label = match &result {
            Ok(r) => r.status().as_u16().to_string(),
            Err(_) => "error".to_string(),
        };
        let elapsed = started.elapsed();
        self.metrics
            .latency
            .with_label_values(&[route, &status_label])
            .observe(elapsed.as_secs_f64());
        tracing::debug!(route, path = %path.path(), %method, status = %status_label, ms = elapsed.as_millis() as u64, "upstream call");
        result
    }

    /// How long to wait before retrying a retryable status, when a retry is allowed.
    fn status_retry_wait(
        &self,
        resp: &reqwest::Response,
        body_replayable: Result<(), &'static str>,
        attempt: u32,
    ) -> Option<Duration> {
        let status = resp.status();
        if retryable_status(status.as_u16())
            && self.may_retry(status.as_str(), body_replayable, attempt)
        {
            Some(self.backoff(attempt, retry_after(resp.headers())))
        } else {
            None
        }
    }

    fn backoff(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        use rand::Rng;
        let exp = self.retry.base * 2u32.saturating_pow(attempt.saturating_sub(1));
        let jitter = rand::thread_rng().gen_range(0.5..1.5);
        let wait = retry_after.unwrap_or_else(|| exp.mul_f64(jitter));
        wait.min(self.retry.max_wait)
    }
}

/// A request body across attempts: a stream sent once, fixed bytes, or a replayable stream.
struct AttemptBody {
    single_shot: bool,
    once: Option<reqwest::Body>,
    fixed: Option<Bytes>,
    replay: Option<ReplayBody>,
}

impl AttemptBody {
    fn new(body: ForwardBody) -> Self {
        let single_shot = matches!(body, ForwardBody::Stream(_));
        let (once, fixed, replay) = match body {
            ForwardBody::Stream(b) => (Some(b), None, None),
            ForwardBody::Bytes(b) => (None, Some(b), None),
            ForwardBody::Empty => (None, None, None),
            ForwardBody::Replayable(r) => (None, None, Some(r)),
        };
        AttemptBody {
            single_shot,
            once,
            fixed,
            replay,
        }
    }

    /// Whether the body can be sent again (`Err` names why not, for the give-up metric).
    fn replayable(&self) -> Result<(), &'static str> {
        match &self.replay {
            _ if self.single_shot => Err("streamed"),
            Some(r) if !r.can_replay() => Err("replay_overflow"),
            _ => Ok(()),
        }
    }
}

fn retry_after(h: &HeaderMap) -> Option<Duration> {
    let v = h.get(RETRY_AFTER)?.to_str().ok()?;
    v.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// An error with its sources (`a: b: c`), for messages a person can act on.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

pub(crate) fn unreachable(url: &str, e: &reqwest::Error) -> UpstreamError {
    let reason = error_chain(e);
    // A TLS failure gets its cause in plain words (untrusted CA, expired, wrong name).
    let reason = tls_diag::explain(url, &reason).unwrap_or(reason);
    UpstreamError::Unreachable {
        url: strip_query(url),
        reason,
    }
}

fn strip_query(url: &str) -> String {
    url.split('?').next().unwrap_or(url).to_string()
}

/// The first OCI error message of a body, or the body's first line.
pub fn error_message(body: &[u8]) -> String {
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) {
        if let Some(m) = v["errors"][0]["message"].as_str() {
            return m.to_string();
        }
        if let Some(m) = v["details"].as_str().or(v["message"].as_str()) {
            return m.to_string();
        }
    }
    String::from_utf8_lossy(&body[..body.len().min(200)])
        .lines()
        .next()
        .unwrap_or("")
        .to_string()
}

/// Shared handle.
pub type SharedUpstream = Arc<UpstreamClient>;
