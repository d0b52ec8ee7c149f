//! Who calls the Harbor API: pre-emptive HTTP Basic of either kind (API keys → instance token, as
//! for `/v2/`; registry credentials validated and passed on), or nobody where anonymous reads are
//! allowed; and which API keys act for the caller in the cloud API.

use actix_web::http::header::WWW_AUTHENTICATE;
use actix_web::http::StatusCode;
use actix_web::HttpRequest;

use super::HarborFront;
use crate::auth::{presented, Presented};
use crate::credentials::{ClientIdentity, CredentialError};
use crate::oci::{ErrorCode, OciError};
use crate::tencentcloud::ApiCredential;
use crate::upstream::BasicAuth;

/// Whether a call may be made without credentials.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Anonymous {
    Allowed,
    Refused,
}

/// Translate the caller's credentials (cached by the resolver).
pub async fn identify(
    req: &HttpRequest,
    front: &HarborFront,
    anonymous: Anonymous,
) -> Result<ClientIdentity, OciError> {
    match presented(req) {
        Presented::Basic(secret) => front
            .resolver
            .resolve(&secret)
            .await
            .map_err(credential_error),
        Presented::Nothing if anonymous == Anonymous::Allowed => Ok(ClientIdentity::anonymous()),
        Presented::Nothing => Err(unauthorized(
            "authentication required: send Basic credentials (TencentCloud SecretId/SecretKey, or \
             TCR registry credentials)",
        )),
        Presented::Bearer(_) => Err(unauthorized(
            "the Harbor API takes Basic credentials, not a Bearer token",
        )),
        Presented::Malformed(why) => Err(unauthorized(why)),
    }
}

/// A 401 with a Basic challenge.
pub fn unauthorized(message: impl Into<String>) -> OciError {
    OciError::new(ErrorCode::Unauthorized, message)
        .with_header(WWW_AUTHENTICATE, "Basic realm=\"tcr-adapter\"")
}

fn credential_error(e: CredentialError) -> OciError {
    match &e {
        CredentialError::Throttled | CredentialError::Busy => {
            OciError::new(ErrorCode::TooManyRequests, e.to_string())
                .with_header(actix_web::http::header::RETRY_AFTER, "2")
        }
        CredentialError::Unavailable { .. } => OciError::new(ErrorCode::Unavailable, e.to_string()),
        _ => unauthorized(e.to_string()),
    }
}

/// The caller's upstream credential for TCR's chart repository (Basic).
pub fn upstream_basic(identity: &ClientIdentity) -> Option<BasicAuth> {
    identity.upstream.as_ref().map(|c| BasicAuth {
        username: c.username.clone(),
        password: c.password.clone(),
    })
}

/// The API keys that act for the caller: its own, else the configured provisioner keys.
pub fn api_keys<'a>(
    identity: &'a ClientIdentity,
    front: &'a HarborFront,
) -> Option<&'a ApiCredential> {
    identity
        .api_keys
        .as_ref()
        .or_else(|| front.namespaces.fallback_keys())
}

/// The error for a listing that needs the cloud API when no keys can act for the caller.
pub fn keys_needed(what: &str) -> OciError {
    OciError::new(
        ErrorCode::Denied,
        format!(
            "{what} needs TencentCloud API keys: configure the Harbor endpoint with a \
             SecretId/SecretKey pair, or set tcr.secret_id and tcr.secret_key in the adapter"
        ),
    )
    .with_status(StatusCode::FORBIDDEN)
}
