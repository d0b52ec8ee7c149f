//! `TcrApiClient`: typed, signed calls to the TCR API 2019-09-24 over reqwest, with a shared
//! token-bucket rate limit, bounded jittered retries (throttling, internal errors, transport) and a
//! per-call timeout. Retries and finished calls (by action and result) are exposed for metrics.
//! It holds no secret: each call takes the caller's [`ApiCredential`], and nothing here logs or
//! formats a SecretKey.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::errors::RetryCause;
use super::models::*;
use super::ratelimit::RateLimiter;
use super::signer::{sign, SigningInput};
use super::{ApiCredential, ApiError, InstanceToken, PagingModes, TokenType};
use crate::clock::SharedClock;
use crate::config::TcrConfig;

/// API version of TCR enterprise.
pub const API_VERSION: &str = "2019-09-24";
/// Credential-scope service.
pub const SERVICE: &str = "tcr";
/// Region used when none is configured (where `DescribeInstances` with `AllRegion` is sent).
pub const DEFAULT_REGION: &str = "ap-guangzhou";

/// How failed calls are retried.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// Backoff before the second attempt; doubles each time, with jitter (50–100 %).
    pub base_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_millis(200),
        }
    }
}

/// Retries made so far, by cause (shared by all clones of a client).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetryCounts {
    pub throttled: u64,
    pub internal: u64,
    pub transport: u64,
}

impl RetryCounts {
    pub fn total(&self) -> u64 {
        self.throttled + self.internal + self.transport
    }
}

type RetryObserver = Arc<dyn Fn(&str, RetryCause) + Send + Sync>;
type CallObserver = Arc<dyn Fn(&str, &str) + Send + Sync>;

struct Shared {
    http: reqwest::Client,
    limiter: RateLimiter,
    retries: [AtomicU64; 3],
    observer: RwLock<Option<RetryObserver>>,
    calls: RwLock<Option<CallObserver>>,
    /// `Offset` as each listing action was last seen to read it.
    paging: PagingModes,
}

/// Client of the TCR cloud API. Cheap to clone; clones share the HTTP pool, the rate limiter
/// and the retry counters.
#[derive(Clone)]
pub struct TcrApiClient {
    endpoint: url::Url,
    host: String,
    region: String,
    timeout: Duration,
    clock: SharedClock,
    policy: RetryPolicy,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for TcrApiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcrApiClient")
            .field("endpoint", &self.endpoint.as_str())
            .field("region", &self.region)
            .field("qps", &self.shared.limiter.qps())
            .finish_non_exhaustive()
    }
}

impl TcrApiClient {
    /// A client of `endpoint_url` (e.g. `https://tcr.tencentcloudapi.com`) in `region`
    /// (empty: [`DEFAULT_REGION`]), at most `qps` calls per second, `timeout` per attempt.
    pub fn new(
        endpoint_url: &str,
        region: &str,
        qps: u32,
        timeout: Duration,
        clock: SharedClock,
    ) -> Result<Self, ApiError> {
        Self::with_http(
            endpoint_url,
            region,
            qps,
            timeout,
            clock,
            reqwest::Client::builder(),
        )
    }

    /// A client from the `tcr` configuration section (endpoint, region, QPS, timeout, CA file).
    pub fn from_config(cfg: &TcrConfig, clock: SharedClock) -> Result<Self, ApiError> {
        let mut builder = reqwest::Client::builder();
        if let Some(path) = &cfg.ca_file {
            let pem = std::fs::read(path).map_err(|e| {
                ApiError::Transport(format!("reading tcr.ca_file {}: {e}", path.display()))
            })?;
            let cert = reqwest::Certificate::from_pem(&pem)
                .map_err(|e| ApiError::Transport(format!("tcr.ca_file {}: {e}", path.display())))?;
            builder = builder.add_root_certificate(cert);
        }
        Self::with_http(
            &cfg.api_endpoint,
            &cfg.region,
            cfg.api_qps,
            Duration::from_secs(cfg.api_timeout_secs.max(1)),
            clock,
            builder,
        )
    }

    fn with_http(
        endpoint_url: &str,
        region: &str,
        qps: u32,
        timeout: Duration,
        clock: SharedClock,
        builder: reqwest::ClientBuilder,
    ) -> Result<Self, ApiError> {
        let endpoint = url::Url::parse(endpoint_url).map_err(|e| {
            ApiError::Transport(format!("invalid cloud API endpoint {endpoint_url:?}: {e}"))
        })?;
        let host = match (endpoint.host_str(), endpoint.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_string(),
            (None, _) => {
                return Err(ApiError::Transport(format!(
                    "cloud API endpoint {endpoint_url:?} has no host"
                )))
            }
        };
        let http = builder
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| ApiError::Transport(format!("building the HTTP client: {e}")))?;
        Ok(TcrApiClient {
            endpoint,
            host,
            region: if region.is_empty() {
                DEFAULT_REGION.to_string()
            } else {
                region.to_string()
            },
            timeout,
            clock,
            policy: RetryPolicy::default(),
            shared: Arc::new(Shared {
                http,
                limiter: RateLimiter::new(qps),
                retries: Default::default(),
                observer: RwLock::new(None),
                calls: RwLock::new(None),
                paging: PagingModes::default(),
            }),
        })
    }

    /// The same client for another region (shares pool, limiter and counters).
    pub fn with_region(&self, region: &str) -> Self {
        let mut c = self.clone();
        c.region = if region.is_empty() {
            DEFAULT_REGION.to_string()
        } else {
            region.to_string()
        };
        c
    }

    /// The same client with another retry policy.
    pub fn with_retry_policy(&self, policy: RetryPolicy) -> Self {
        let mut c = self.clone();
        c.policy = policy;
        c
    }

    /// Call `observer(action, cause)` before every retry (e.g. to count it in metrics).
    pub fn set_retry_observer(&self, observer: impl Fn(&str, RetryCause) + Send + Sync + 'static) {
        *self
            .shared
            .observer
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(observer));
    }

    /// Call `observer(action, result)` once per call when it ends (after its retries), with
    /// `result` = `ok`, the API error code (`AuthFailure.SignatureFailure`, …) or `transport`.
    pub fn set_call_observer(&self, observer: impl Fn(&str, &str) + Send + Sync + 'static) {
        *self.shared.calls.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(observer));
    }

    fn observe_call<T>(&self, action: &str, result: &Result<T, ApiError>) {
        let observer = self
            .shared
            .calls
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Some(f) = observer {
            let label = match result {
                Ok(_) => "ok",
                Err(ApiError::Api { code, .. }) => code.as_str(),
                Err(ApiError::Transport(_)) => "transport",
            };
            f(action, label);
        }
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    /// How each listing action was seen to read `Offset` (noted by the pager, logged when new).
    pub fn paging(&self) -> &PagingModes {
        &self.shared.paging
    }

    pub fn endpoint(&self) -> &str {
        self.endpoint.as_str()
    }

    /// The shared HTTP client (its pool and TLS settings), for reachability probes.
    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.shared.http
    }

    /// Retries made so far by this client and its clones.
    pub fn retries_total(&self) -> RetryCounts {
        let r = &self.shared.retries;
        RetryCounts {
            throttled: r[0].load(Ordering::Relaxed),
            internal: r[1].load(Ordering::Relaxed),
            transport: r[2].load(Ordering::Relaxed),
        }
    }

    fn count_retry(&self, action: &str, cause: RetryCause) {
        let i = RetryCause::ALL
            .iter()
            .position(|c| *c == cause)
            .unwrap_or(0);
        self.shared.retries[i].fetch_add(1, Ordering::Relaxed);
        let observer = self
            .shared
            .observer
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Some(f) = observer {
            f(action, cause);
        }
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let full = self
            .policy
            .base_delay
            .saturating_mul(1u32 << (attempt - 1).min(10));
        full.mul_f64(0.5 + rand::random::<f64>() * 0.5)
    }

    /// The wait before retrying after `cause`. TencentCloud limits calls per second: a
    /// throttled call retried within the same second is throttled again, so throttling waits
    /// at least a second (plus up to half a second of jitter, so that callers throttled
    /// together do not come back together).
    fn backoff_for(&self, cause: RetryCause, attempt: u32) -> Duration {
        let wait = self.backoff(attempt);
        match cause {
            RetryCause::Throttled => wait.max(
                Duration::from_secs(1) + Duration::from_millis(500).mul_f64(rand::random::<f64>()),
            ),
            _ => wait,
        }
    }

    /// Call `action` with `request`, retrying what is worth retrying.
    pub async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        cred: &ApiCredential,
        action: &str,
        request: &Req,
    ) -> Result<Resp, ApiError> {
        let result = self.call_with_retries(cred, action, request).await;
        self.observe_call(action, &result);
        result
    }

    async fn call_with_retries<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        cred: &ApiCredential,
        action: &str,
        request: &Req,
    ) -> Result<Resp, ApiError> {
        let body = serde_json::to_vec(request)
            .map_err(|e| ApiError::Transport(format!("encoding {action}: {e}")))?;
        let mut attempt = 1;
        loop {
            self.shared.limiter.acquire().await;
            let result =
                match tokio::time::timeout(self.timeout, self.send_once(cred, action, &body)).await
                {
                    Ok(r) => r,
                    Err(_) => Err(ApiError::Transport(format!(
                        "{action} timed out after {:?}",
                        self.timeout
                    ))),
                };
            match result {
                Ok(v) => return Ok(v),
                Err(e) => match e.retry_cause() {
                    Some(cause) if attempt < self.policy.max_attempts.max(1) => {
                        tracing::debug!(action, attempt, cause = cause.as_str(), error = %e, "retrying cloud API call");
                        self.count_retry(action, cause);
                        tokio::time::sleep(self.backoff_for(cause, attempt)).await;
                        attempt += 1;
                    }
                    _ => return Err(e),
                },
            }
        }
    }

    async fn send_once<Resp: DeserializeOwned>(
        &self,
        cred: &ApiCredential,
        action: &str,
        body: &[u8],
    ) -> Result<Resp, ApiError> {
        let timestamp = self.clock.now_secs();
        let content_type = "application/json";
        let headers = [
            ("content-type", content_type),
            ("host", self.host.as_str()),
            ("x-tc-action", action),
        ];
        let signature = sign(
            cred.secret_key.expose(),
            &SigningInput {
                method: "POST",
                canonical_uri: "/",
                canonical_query: "",
                headers: &headers,
                payload: body,
                service: SERVICE,
                timestamp,
            },
        );
        let response = self
            .shared
            .http
            .post(self.endpoint.clone())
            .header("Authorization", signature.authorization(&cred.secret_id))
            .header("Content-Type", content_type)
            .header("Host", &self.host)
            .header("X-TC-Action", action)
            .header("X-TC-Version", API_VERSION)
            .header("X-TC-Timestamp", timestamp.to_string())
            .header("X-TC-Region", &self.region)
            .header("X-TC-Language", "en-US")
            .body(body.to_vec())
            .send()
            .await
            .map_err(|e| ApiError::Transport(format!("{action}: {}", without_url(e))))?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(|e| {
            ApiError::Transport(format!("{action}: reading the answer: {}", without_url(e)))
        })?;
        if status != reqwest::StatusCode::OK {
            return Err(ApiError::Transport(format!(
                "{action}: HTTP {status} from the cloud API"
            )));
        }
        parse_envelope(action, &bytes)
    }

    /// `DescribeInstances`, optionally filtered by `RegistryName`, in this region or all.
    pub async fn describe_instances(
        &self,
        cred: &ApiCredential,
        registry_name_filter: Option<&str>,
        all_region: bool,
    ) -> Result<Vec<Registry>, ApiError> {
        let req = DescribeInstancesRequest {
            filters: registry_name_filter.map(|n| {
                vec![Filter {
                    name: "RegistryName".into(),
                    values: vec![n.to_string()],
                }]
            }),
            all_region: Some(all_region),
            limit: Some(100),
            ..Default::default()
        };
        let r: DescribeInstancesResponse = self.call(cred, "DescribeInstances", &req).await?;
        Ok(r.registries)
    }

    /// `CreateInstanceToken`: a registry credential (username = UIN, password = token).
    pub async fn create_instance_token(
        &self,
        cred: &ApiCredential,
        registry_id: &str,
        token_type: TokenType,
    ) -> Result<InstanceToken, ApiError> {
        let req = CreateInstanceTokenRequest {
            registry_id: registry_id.into(),
            token_type: token_type.as_str().into(),
            desc: None,
        };
        let r: CreateInstanceTokenResponse = self.call(cred, "CreateInstanceToken", &req).await?;
        Ok(InstanceToken {
            username: r.username,
            token: r.token,
            exp_ms: r.exp_time,
        })
    }

    /// `CreateNamespace`. A conflict is an error here; see [`ApiError::is_conflict`].
    pub async fn create_namespace(
        &self,
        cred: &ApiCredential,
        registry_id: &str,
        name: &str,
        is_public: bool,
    ) -> Result<(), ApiError> {
        let req = CreateNamespaceRequest {
            registry_id: registry_id.into(),
            namespace_name: name.into(),
            is_public,
        };
        self.call::<_, Empty>(cred, "CreateNamespace", &req)
            .await
            .map(|_| ())
    }

    /// `DescribeNamespaces`. `name_filter` is a substring match on TCR: compare names exactly.
    pub async fn describe_namespaces(
        &self,
        cred: &ApiCredential,
        registry_id: &str,
        name_filter: Option<&str>,
        limit: i64,
        offset: i64,
    ) -> Result<DescribeNamespacesResponse, ApiError> {
        let req = DescribeNamespacesRequest {
            registry_id: registry_id.into(),
            namespace_name: name_filter.map(str::to_string),
            limit: Some(limit),
            offset: Some(offset),
        };
        self.call(cred, "DescribeNamespaces", &req).await
    }

    /// `DeleteNamespace`.
    pub async fn delete_namespace(
        &self,
        cred: &ApiCredential,
        registry_id: &str,
        name: &str,
    ) -> Result<(), ApiError> {
        let req = NamespaceRef {
            registry_id: registry_id.into(),
            namespace_name: name.into(),
        };
        self.call::<_, Empty>(cred, "DeleteNamespace", &req)
            .await
            .map(|_| ())
    }

    /// `CreateRepository` (`repository` without the namespace).
    pub async fn create_repository(
        &self,
        cred: &ApiCredential,
        registry_id: &str,
        namespace: &str,
        repository: &str,
    ) -> Result<(), ApiError> {
        let req = CreateRepositoryRequest {
            registry_id: registry_id.into(),
            namespace_name: namespace.into(),
            repository_name: repository.into(),
            brief_description: None,
            description: None,
        };
        self.call::<_, Empty>(cred, "CreateRepository", &req)
            .await
            .map(|_| ())
    }

    /// `DescribeRepositories`; returned names are namespace-prefixed.
    pub async fn describe_repositories(
        &self,
        cred: &ApiCredential,
        registry_id: &str,
        namespace: Option<&str>,
        repo_filter: Option<&str>,
        limit: i64,
        offset: i64,
    ) -> Result<DescribeRepositoriesResponse, ApiError> {
        let req = DescribeRepositoriesRequest {
            registry_id: registry_id.into(),
            namespace_name: namespace.map(str::to_string),
            repository_name: repo_filter.map(str::to_string),
            limit: Some(limit),
            offset: Some(offset),
        };
        self.call(cred, "DescribeRepositories", &req).await
    }

    /// `DescribeImages` of `namespace/repository` (`repository` without the namespace).
    pub async fn describe_images(
        &self,
        cred: &ApiCredential,
        registry_id: &str,
        namespace: &str,
        repository: &str,
        limit: i64,
        offset: i64,
    ) -> Result<DescribeImagesResponse, ApiError> {
        let req = DescribeImagesRequest {
            registry_id: registry_id.into(),
            namespace_name: namespace.into(),
            repository_name: repository.into(),
            limit: Some(limit),
            offset: Some(offset),
        };
        self.call(cred, "DescribeImages", &req).await
    }

    /// `DeleteImage`: delete the tag `image_version`.
    pub async fn delete_image(
        &self,
        cred: &ApiCredential,
        registry_id: &str,
        namespace: &str,
        repository: &str,
        image_version: &str,
    ) -> Result<(), ApiError> {
        let req = DeleteImageRequest {
            registry_id: registry_id.into(),
            namespace_name: namespace.into(),
            repository_name: repository.into(),
            image_version: image_version.into(),
        };
        self.call::<_, Empty>(cred, "DeleteImage", &req)
            .await
            .map(|_| ())
    }
}

/// reqwest errors print the URL; the endpoint is not secret, but keep messages short.
fn without_url(e: reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect error"
    } else {
        "request error"
    };
    format!("{kind}: {}", e.without_url())
}

/// Decode `{"Response":{...}}` into `Resp`, or the error envelope into [`ApiError::Api`].
pub fn parse_envelope<Resp: DeserializeOwned>(
    action: &str,
    bytes: &[u8],
) -> Result<Resp, ApiError> {
    let mut v: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::Transport(format!("{action}: the answer is not JSON: {e}")))?;
    let mut response = v
        .get_mut("Response")
        .map(serde_json::Value::take)
        .ok_or_else(|| ApiError::Transport(format!("{action}: the answer has no Response")))?;
    let request_id = response
        .get("RequestId")
        .and_then(|r| r.as_str())
        .unwrap_or_default()
        .to_string();
    if let Some(err) = response.get_mut("Error") {
        let s = |k: &str| {
            err.get(k)
                .and_then(|x| x.as_str())
                .unwrap_or_default()
                .to_string()
        };
        return Err(ApiError::Api {
            code: s("Code"),
            message: s("Message"),
            request_id,
        });
    }
    serde_json::from_value(response)
        .map_err(|e| ApiError::Transport(format!("{action}: unexpected answer: {e}")))
}
