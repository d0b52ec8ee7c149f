//! Client of the TencentCloud API 3.0 for TCR (version 2019-09-24): TC3-HMAC-SHA256 signing,
//! typed requests and responses, error classification, rate limiting and retries.
//! It knows nothing of registries or HTTP servers.
//!
//! - [`signer`] — TC3-HMAC-SHA256 (also used by the emulator to verify requests)
//! - [`client`] — [`TcrApiClient`], typed calls with rate limit, retries and timeouts
//! - [`models`] — requests and responses with TencentCloud's field names
//! - [`errors`] — retry classification and plain-words explanations of error codes
//! - [`pager`] — every listing (`DescribeNamespaces`, `DescribeRepositories`, `DescribeImages`),
//!   whatever `Offset` means to the endpoint ([`PagingMode`])

pub mod client;
pub mod errors;
pub mod models;
pub mod pager;
pub mod ratelimit;
pub mod signer;

pub use client::{RetryCounts, RetryPolicy, TcrApiClient, API_VERSION};
pub use errors::RetryCause;

use crate::config::Secret;

/// `AKIDabcd…`: the part of a SecretId that may appear in logs and messages.
pub fn secret_id_prefix(secret_id: &str) -> String {
    let p: String = secret_id.chars().take(8).collect();
    format!("{p}…")
}

impl ApiCredential {
    pub fn new(secret_id: impl Into<String>, secret_key: impl Into<String>) -> Self {
        ApiCredential {
            secret_id: secret_id.into(),
            secret_key: Secret::new(secret_key),
        }
    }
}

/// Tencent Cloud API keys.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ApiCredential {
    pub secret_id: String,
    pub secret_key: Secret,
}

impl std::hash::Hash for Secret {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.expose().hash(state)
    }
}

/// `TokenType` of `CreateInstanceToken`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenType {
    Temp,
    LongTerm,
}

impl TokenType {
    /// The API's spelling: `temp` or `longterm`.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenType::Temp => "temp",
            TokenType::LongTerm => "longterm",
        }
    }
}

/// What `Offset` means to an endpoint, as told from its answers (docs/tcr-contract.md: the
/// documentation says page numbers, Harbor's TCR provider pages namespaces from 0, Terraform
/// passes item offsets).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PagingMode {
    /// A number of items to skip.
    Items,
    /// A page index: 0 is the first page, 1 the second.
    PageFromZero,
    /// A page number: 1 is the first page (and 0 too).
    PageFromOne,
}

impl PagingMode {
    /// The words `check` and the log use.
    pub fn as_str(self) -> &'static str {
        match self {
            PagingMode::Items => "item offset",
            PagingMode::PageFromZero => "page index from 0",
            PagingMode::PageFromOne => "page number from 1",
        }
    }
}

impl std::fmt::Display for PagingMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How each listing action was last seen to read `Offset` (shared by a client's clones).
#[derive(Debug, Default)]
pub struct PagingModes(std::sync::RwLock<std::collections::BTreeMap<String, PagingMode>>);

impl PagingModes {
    /// Note how `action` read `Offset` at `endpoint`; logged when new or changed. Returns
    /// whether it changed.
    pub fn note(&self, action: &str, mode: PagingMode, endpoint: &str) -> bool {
        let mut map = self.0.write().unwrap_or_else(|e| e.into_inner());
        let changed = map.insert(action.to_string(), mode) != Some(mode);
        if changed {
            tracing::info!(
                action,
                paging = mode.as_str(),
                endpoint,
                "cloud API paging: Offset is read as a {mode}"
            );
        }
        changed
    }

    /// How `action` was last seen to read `Offset` (`None`: never seen past one page).
    pub fn get(&self, action: &str) -> Option<PagingMode> {
        self.0
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(action)
            .copied()
    }
}

/// A registry credential returned by `CreateInstanceToken`.
#[derive(Clone, Debug)]
pub struct InstanceToken {
    pub username: String,
    pub token: Secret,
    /// Expiry in milliseconds since the epoch.
    pub exp_ms: i64,
}

/// Why a cloud API call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    /// The API answered with an error envelope.
    #[error("{message} ({code}, RequestId {request_id})")]
    Api {
        code: String,
        message: String,
        request_id: String,
    },
    /// The call did not get an answer (connect, timeout, bad JSON).
    #[error("cloud API unreachable: {0}")]
    Transport(String),
}

impl ApiError {
    /// The TencentCloud error code, if the API answered.
    pub fn code(&self) -> Option<&str> {
        match self {
            ApiError::Api { code, .. } => Some(code),
            ApiError::Transport(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_of_a_credential_never_shows_the_key() {
        let c = ApiCredential::new("AKIDexample", "verySecretKeyValue");
        let d = format!("{c:?}");
        assert!(d.contains("AKIDexample"), "{d}");
        assert!(!d.contains("verySecretKeyValue"), "{d}");
        let t = InstanceToken {
            username: "1".into(),
            token: Secret::new("tok-secret"),
            exp_ms: 0,
        };
        assert!(!format!("{t:?}").contains("tok-secret"));
    }

    #[test]
    fn secret_id_prefix_is_short() {
        assert_eq!(secret_id_prefix("AKIDabcdefghijkl"), "AKIDabcd…");
    }
}
