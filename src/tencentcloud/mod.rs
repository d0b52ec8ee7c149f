//! Client of the TencentCloud API 3.0 for TCR (version 2019-09-24): TC3-HMAC-SHA256 signing,
//! typed requests and responses, error classification, rate limiting and retries.
//! It knows nothing of registries or HTTP servers.
//!
//! INTERFACE STUB: the signatures below are the contract other modules code against; the bodies
//! are filled in by the tencentcloud work.

use crate::config::Secret;

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
