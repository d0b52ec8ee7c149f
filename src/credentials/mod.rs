//! Credential translation: what a client presented (Tencent Cloud API keys or TCR registry
//! credentials) becomes the Basic credential the adapter uses against TCR's own token realm.
//!
//! - `AKID…` + key → `CreateInstanceToken` (temp). The result is cached per SecretId (bound to a
//!   hash of the key, so a wrong key never reuses a good one's token), refreshed ahead of expiry
//!   and fetched by ONE call however many requests wait for it.
//! - anything else → checked once against TCR's realm through a [`RegistryCredentialValidator`]
//!   (positive results cached briefly, keyed by a hash, never the plain secret) and used as it is.
//!
//! This module owns no HTTP surface and never logs or prints a secret: errors name the kind of
//! credential and what failed, never the password or key.

mod cache;
pub mod failures;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::clock::SharedClock;
use crate::config::Secret;
use crate::discovery::{DiscoveryError, InstanceLocator};
use crate::tencentcloud::{ApiCredential, ApiError, InstanceToken, TcrApiClient, TokenType};
use failures::FailureGuard;

pub use cache::{InstanceTokenCache, ValidationCache};

/// Boxed future used by the object-safe traits of this module.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What the client presented, parsed at the edge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientSecret {
    /// Tencent Cloud API keys (the Basic username starts with `AKID`).
    ApiKeys(ApiCredential),
    /// TCR registry credentials (long-term instance token, `tcr$` service account, ...).
    Registry { username: String, password: Secret },
}

impl ClientSecret {
    /// What identifies the caller in messages: the SecretId or the registry username.
    pub fn id(&self) -> &str {
        match self {
            ClientSecret::ApiKeys(k) => &k.secret_id,
            ClientSecret::Registry { username, .. } => username,
        }
    }

    /// Classify Basic credentials. `None` when the username is empty (no credentials at all).
    pub fn from_basic(username: &str, password: &str) -> Option<ClientSecret> {
        if username.is_empty() {
            return None;
        }
        Some(if username.starts_with("AKID") {
            ClientSecret::ApiKeys(ApiCredential {
                secret_id: username.to_string(),
                secret_key: Secret::new(password),
            })
        } else {
            ClientSecret::Registry {
                username: username.to_string(),
                password: Secret::new(password),
            }
        })
    }

    /// `"api-keys"` or `"registry"`.
    pub fn kind(&self) -> &'static str {
        match self {
            ClientSecret::ApiKeys(_) => KIND_API_KEYS,
            ClientSecret::Registry { .. } => KIND_REGISTRY,
        }
    }

    /// The user-visible name of the credential: the SecretId or the registry username.
    pub fn account(&self) -> &str {
        match self {
            ClientSecret::ApiKeys(k) => &k.secret_id,
            ClientSecret::Registry { username, .. } => username,
        }
    }
}

pub const KIND_API_KEYS: &str = "api-keys";
pub const KIND_REGISTRY: &str = "registry";
pub const KIND_ANONYMOUS: &str = "anonymous";

/// Basic credentials to use against TCR's own token realm.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct UpstreamCredential {
    pub username: String,
    pub password: Secret,
}

/// Who the caller is, after translation.
#[derive(Clone, Debug)]
pub struct ClientIdentity {
    /// `None` = anonymous.
    pub upstream: Option<UpstreamCredential>,
    /// The caller's API keys, when it presented some (used to create namespaces as the caller).
    pub api_keys: Option<ApiCredential>,
    /// `"api-keys"` | `"registry"` | `"anonymous"`.
    pub kind: &'static str,
}

impl ClientIdentity {
    pub fn anonymous() -> Self {
        ClientIdentity {
            upstream: None,
            api_keys: None,
            kind: KIND_ANONYMOUS,
        }
    }

    pub fn is_anonymous(&self) -> bool {
        self.upstream.is_none()
    }

    /// The upstream username (UIN for API keys), `""` when anonymous.
    pub fn subject(&self) -> &str {
        self.upstream.as_ref().map_or("", |u| u.username.as_str())
    }
}

/// Why a registry credential could not be validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValidationFailure {
    /// TCR refused the credential (answer 401).
    Rejected(String),
    /// TCR could not be asked (answer 503): the credential may be fine.
    Unavailable(String),
}

/// Checks Basic credentials against TCR's token realm. Implemented by the upstream module.
pub trait RegistryCredentialValidator: Send + Sync {
    /// `Ok(())` when TCR accepts the credential; `Err(why)` otherwise (no secret in `why`).
    fn validate<'a>(
        &'a self,
        cred: &'a UpstreamCredential,
    ) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>>;

    /// Like [`Self::validate`], telling a refusal from an unreachable realm. The default treats
    /// every failure of `validate` as a refusal; override it so that an outage becomes a 503
    /// instead of a 401.
    fn validate_detailed<'a>(
        &'a self,
        cred: &'a UpstreamCredential,
    ) -> BoxFuture<'a, Result<(), ValidationFailure>> {
        Box::pin(async move {
            self.validate(cred)
                .await
                .map_err(ValidationFailure::Rejected)
        })
    }
}

/// Exchanges API keys for a temporary registry credential (`CreateInstanceToken`).
/// [`TcrApiClient`] implements it; tests may provide their own.
pub trait InstanceTokenIssuer: Send + Sync {
    fn issue<'a>(
        &'a self,
        cred: &'a ApiCredential,
        registry_id: &'a str,
    ) -> BoxFuture<'a, Result<InstanceToken, ApiError>>;
}

impl InstanceTokenIssuer for TcrApiClient {
    fn issue<'a>(
        &'a self,
        cred: &'a ApiCredential,
        registry_id: &'a str,
    ) -> BoxFuture<'a, Result<InstanceToken, ApiError>> {
        Box::pin(self.create_instance_token(cred, registry_id, TokenType::Temp))
    }
}

/// Why a credential could not be translated. `Display` names the kind of credential tried and
/// what failed, never the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    #[error("Tencent Cloud API keys {secret_id}: SecretId not found")]
    UnknownSecretId { secret_id: String },
    #[error("Tencent Cloud API keys {secret_id}: signature check failed (wrong SecretKey?)")]
    BadSignature { secret_id: String },
    #[error("Tencent Cloud API keys {secret_id}: not permitted to call {action} (check the key's CAM policy)")]
    NotPermitted { secret_id: String, action: String },
    #[error("Tencent Cloud API keys {secret_id}: rejected by the cloud API: {why}")]
    ApiRejected { secret_id: String, why: String },
    #[error(
        "Tencent Cloud API keys are not accepted: this adapter has no cloud API client configured"
    )]
    ApiKeysUnsupported,
    #[error("TCR registry credentials for user {username:?}: rejected by TCR: {why}")]
    BadRegistryPassword { username: String, why: String },
    #[error("Tencent Cloud API throttled the request (RequestLimitExceeded); retry shortly")]
    Throttled,
    /// Too many never-accepted credentials are being checked: refused without an upstream call.
    #[error("too many unrecognised credentials are being checked right now; retry shortly")]
    Busy,
    /// The cloud API or TCR's realm could not be reached; `why` says which.
    #[error("cannot check the credentials right now: {why}")]
    Unavailable { why: String },
}

impl CredentialError {
    /// True when the caller's credential itself was refused (answer 401), as opposed to the
    /// cloud being busy or unreachable.
    pub fn is_rejection(&self) -> bool {
        !matches!(
            self,
            CredentialError::Throttled
                | CredentialError::Busy
                | CredentialError::Unavailable { .. }
        )
    }

    /// Classify a failure to find the instance the keys are exchanged against.
    pub fn from_discovery(secret_id: &str, err: &DiscoveryError) -> Self {
        match err {
            DiscoveryError::Api(_, api) => match Self::from_api(secret_id, api) {
                CredentialError::NotPermitted { secret_id, .. } => CredentialError::NotPermitted {
                    secret_id,
                    action: "DescribeInstances".into(),
                },
                other => other,
            },
            DiscoveryError::NotFound { .. } => CredentialError::ApiRejected {
                secret_id: mask_secret_id(secret_id),
                why: err.to_string(),
            },
            DiscoveryError::NotRunning { .. } | DiscoveryError::InvalidUrl(_) => {
                CredentialError::Unavailable {
                    why: err.to_string(),
                }
            }
        }
    }

    /// Classify a `CreateInstanceToken` failure.
    pub fn from_api(secret_id: &str, err: &ApiError) -> Self {
        let secret_id = mask_secret_id(secret_id);
        let code = match err {
            ApiError::Transport(why) => {
                return CredentialError::Unavailable {
                    why: format!("Tencent Cloud API unreachable: {why}"),
                }
            }
            ApiError::Api { code, .. } => code.as_str(),
        };
        match code {
            "AuthFailure.SecretIdNotFound" => CredentialError::UnknownSecretId { secret_id },
            "AuthFailure.SignatureFailure" => CredentialError::BadSignature { secret_id },
            c if c.starts_with("AuthFailure.UnauthorizedOperation")
                || c.starts_with("UnauthorizedOperation") =>
            {
                CredentialError::NotPermitted {
                    secret_id,
                    action: "CreateInstanceToken".into(),
                }
            }
            c if c.starts_with("RequestLimitExceeded") => CredentialError::Throttled,
            c if c.starts_with("InternalError") || c == "ResourceUnavailable" => {
                CredentialError::Unavailable {
                    why: format!("Tencent Cloud API: {err}"),
                }
            }
            _ => CredentialError::ApiRejected {
                secret_id,
                why: err.to_string(),
            },
        }
    }
}

/// A SecretId shortened for messages (it is an identifier, but there is no need to echo it all).
fn mask_secret_id(id: &str) -> String {
    let keep: String = id.chars().take(8).collect();
    if keep.len() < id.len() {
        format!("{keep}…")
    } else {
        keep
    }
}

/// How API keys become a registry credential.
enum Exchange {
    /// No cloud API: API keys are refused.
    Unsupported,
    /// `CreateInstanceToken` through `issuer` against a known instance id ("" = unknown).
    Fixed {
        issuer: Arc<dyn InstanceTokenIssuer>,
        registry_id: String,
    },
    /// `CreateInstanceToken` against the instance the shared locator finds (in its region).
    Located(Arc<InstanceLocator>),
}

/// Translates [`ClientSecret`]s into [`ClientIdentity`]s, with caches and single flight.
pub struct CredentialResolver {
    exchange: Exchange,
    tokens: InstanceTokenCache,
    validations: ValidationCache,
    validator: Arc<dyn RegistryCredentialValidator>,
    failures: FailureGuard,
    clock: SharedClock,
}

/// Checks of never-accepted credentials: this many at once, then this many a second.
const UNPROVEN_BURST: u32 = 20;
const UNPROVEN_PER_SEC: f64 = 2.0;

impl CredentialResolver {
    /// Register the resolver's metrics (instance-token and failure outcomes) on `registry`.
    pub fn register(&self, registry: &prometheus::Registry) -> prometheus::Result<()> {
        registry.register(Box::new(self.tokens.outcomes().clone()))?;
        registry.register(Box::new(self.failures.outcomes().clone()))
    }

    /// Set the budget of checks for credentials never accepted before (default: 20 at once,
    /// 2 a second).
    pub fn with_failure_budget(mut self, per_sec: f64, burst: u32) -> Self {
        self.failures = FailureGuard::new(per_sec, burst);
        self
    }

    /// Share refusals, proven credentials and the budget of unproven checks with the other
    /// replicas (see [`failures`]).
    pub fn with_state(mut self, store: crate::state::StateStore) -> Self {
        self.failures =
            std::mem::replace(&mut self.failures, FailureGuard::new(1.0, 1)).with_store(store);
        self
    }

    pub fn new(
        api: Option<Arc<TcrApiClient>>,
        registry_id: String,
        validator: Arc<dyn RegistryCredentialValidator>,
        clock: SharedClock,
    ) -> Self {
        let issuer = api.map(|a| a as Arc<dyn InstanceTokenIssuer>);
        Self::with_issuer(issuer, registry_id, validator, clock)
    }

    /// Like [`Self::new`] with any [`InstanceTokenIssuer`].
    pub fn with_issuer(
        issuer: Option<Arc<dyn InstanceTokenIssuer>>,
        registry_id: String,
        validator: Arc<dyn RegistryCredentialValidator>,
        clock: SharedClock,
    ) -> Self {
        let exchange = match issuer {
            Some(issuer) => Exchange::Fixed {
                issuer,
                registry_id,
            },
            None => Exchange::Unsupported,
        };
        Self::with_exchange(exchange, validator, clock)
    }

    /// API keys are exchanged against the instance `locator` finds (configured, or looked up
    /// once and shared with the namespace provisioner).
    pub fn with_locator(
        locator: Arc<InstanceLocator>,
        validator: Arc<dyn RegistryCredentialValidator>,
        clock: SharedClock,
    ) -> Self {
        Self::with_exchange(Exchange::Located(locator), validator, clock)
    }

    fn with_exchange(
        exchange: Exchange,
        validator: Arc<dyn RegistryCredentialValidator>,
        clock: SharedClock,
    ) -> Self {
        CredentialResolver {
            exchange,
            tokens: InstanceTokenCache::new(),
            validations: ValidationCache::new(cache::VALIDATION_TTL_MS),
            validator,
            failures: FailureGuard::new(UNPROVEN_PER_SEC, UNPROVEN_BURST),
            clock,
        }
    }

    /// `CreateInstanceToken` (temp) for `keys`, against the instance.
    async fn exchange(&self, keys: &ApiCredential) -> Result<InstanceToken, CredentialError> {
        let from_api = |e: ApiError| CredentialError::from_api(&keys.secret_id, &e);
        match &self.exchange {
            Exchange::Unsupported => Err(CredentialError::ApiKeysUnsupported),
            Exchange::Fixed { registry_id, .. } if registry_id.is_empty() => {
                Err(CredentialError::Unavailable {
                    why: "the TCR instance id is unknown (set tcr.registry_id), so API keys \
                          cannot be exchanged for a registry credential"
                        .into(),
                })
            }
            Exchange::Fixed {
                issuer,
                registry_id,
            } => issuer.issue(keys, registry_id).await.map_err(from_api),
            Exchange::Located(locator) => {
                let at = locator
                    .locate(keys)
                    .await
                    .map_err(|e| CredentialError::from_discovery(&keys.secret_id, &e))?;
                at.client
                    .create_instance_token(keys, &at.info.registry_id, TokenType::Temp)
                    .await
                    .map_err(from_api)
            }
        }
    }

    /// Translate what the client presented. Cheap when cached (one map lookup and a hash), and
    /// cheap when recently refused (answered from memory, no upstream call).
    pub async fn resolve(&self, secret: &ClientSecret) -> Result<ClientIdentity, CredentialError> {
        let hash = match secret {
            ClientSecret::ApiKeys(k) => {
                failures::fingerprint("api-keys", &k.secret_id, k.secret_key.expose())
            }
            ClientSecret::Registry { username, password } => {
                failures::fingerprint("registry", username, password.expose())
            }
        };
        let now = self.clock.now_ms();
        if let Some(err) = self.failures.recall(&hash, now) {
            return Err(err);
        }
        // The fleet's memory is asked about credentials this replica has not proven: one it
        // accepted is answered from its own cache (as one adapter would), or checked upstream
        // again when that has expired — no store round trip on every request.
        if !self.failures.is_proven(&hash) {
            if let Some(err) = self.failures.recall_shared(&hash, secret.id()).await {
                // Known refused by the fleet: remember it here too, no upstream call.
                self.failures.remember_quietly(hash, &err, now);
                return Err(err);
            }
        }
        let result = self.translate(secret, &hash).await;
        match &result {
            Ok(_) => {
                if self.failures.accepted(hash) {
                    self.failures.accepted_shared(&hash).await;
                }
            }
            Err(e) => {
                self.failures.remember(hash, e, self.clock.now_ms());
                self.failures.remember_shared(&hash, e).await;
            }
        }
        result
    }

    async fn translate(
        &self,
        secret: &ClientSecret,
        hash: &failures::Hash,
    ) -> Result<ClientIdentity, CredentialError> {
        let budget = || self.failures.before_check_shared(hash, self.clock.now_ms());
        match secret {
            ClientSecret::ApiKeys(keys) => {
                if matches!(self.exchange, Exchange::Unsupported) {
                    return Err(CredentialError::ApiKeysUnsupported);
                }
                let upstream = self
                    .tokens
                    .get_or_refresh(keys, self.clock.now_ms(), || async {
                        budget().await?;
                        self.exchange(keys).await
                    })
                    .await?;
                Ok(ClientIdentity {
                    upstream: Some(upstream),
                    api_keys: Some(keys.clone()),
                    kind: KIND_API_KEYS,
                })
            }
            ClientSecret::Registry { username, password } => {
                let cred = UpstreamCredential {
                    username: username.clone(),
                    password: password.clone(),
                };
                self.validations
                    .check(&cred, self.clock.now_ms(), || async {
                        budget().await?;
                        self.validator
                            .validate_detailed(&cred)
                            .await
                            .map_err(|f| match f {
                                ValidationFailure::Rejected(why) => {
                                    CredentialError::BadRegistryPassword {
                                        username: username.clone(),
                                        why,
                                    }
                                }
                                ValidationFailure::Unavailable(why) => {
                                    CredentialError::Unavailable {
                                        why: format!("TCR token realm: {why}"),
                                    }
                                }
                            })
                    })
                    .await?;
                Ok(ClientIdentity {
                    upstream: Some(cred),
                    api_keys: None,
                    kind: KIND_REGISTRY,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_classified_by_username() {
        let k = ClientSecret::from_basic("AKIDabc", "key").unwrap();
        assert_eq!(k.kind(), "api-keys");
        let r = ClientSecret::from_basic("tcr$robot", "pw").unwrap();
        assert_eq!(r.kind(), "registry");
        assert!(ClientSecret::from_basic("", "").is_none());
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let k = ClientSecret::from_basic("AKIDabc", "very-secret-key").unwrap();
        let r = ClientSecret::from_basic("user", "very-secret-pw").unwrap();
        let text = format!("{k:?} {r:?}");
        assert!(!text.contains("very-secret"), "{text}");
        assert!(text.contains("<redacted>"));
    }

    #[test]
    fn api_errors_map_to_actionable_messages() {
        let api = |code: &str| ApiError::Api {
            code: code.into(),
            message: "m".into(),
            request_id: "r".into(),
        };
        let e = CredentialError::from_api("AKIDabcdefghijkl", &api("AuthFailure.SecretIdNotFound"));
        assert!(matches!(e, CredentialError::UnknownSecretId { .. }));
        assert!(e.to_string().contains("API keys"));
        assert!(e.to_string().contains("SecretId not found"));
        assert!(!e.to_string().contains("AKIDabcdefghijkl"));
        assert!(matches!(
            CredentialError::from_api("AKIDx", &api("AuthFailure.SignatureFailure")),
            CredentialError::BadSignature { .. }
        ));
        assert!(matches!(
            CredentialError::from_api("AKIDx", &api("UnauthorizedOperation")),
            CredentialError::NotPermitted { .. }
        ));
        assert!(matches!(
            CredentialError::from_api("AKIDx", &api("AuthFailure.UnauthorizedOperation")),
            CredentialError::NotPermitted { .. }
        ));
        assert_eq!(
            CredentialError::from_api("AKIDx", &api("RequestLimitExceeded")),
            CredentialError::Throttled
        );
        let t = CredentialError::from_api("AKIDx", &ApiError::Transport("refused".into()));
        assert!(!t.is_rejection());
    }
}
