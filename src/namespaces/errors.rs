//! Cloud API errors turned into OCI errors a person can act on: permission and key problems are
//! `403 DENIED`, throttling and an unreachable or unhealthy TencentCloud are `503 UNAVAILABLE`
//! with `Retry-After`. Messages carry the humanized explanation, never a SecretKey.

use actix_web::http::header::RETRY_AFTER;

use crate::oci::{ErrorCode, OciError};
use crate::tencentcloud::ApiError;

pub use crate::tencentcloud::errors::{classify, ApiErrorClass};

/// An OCI error for a failed `action`, prefixed with what the adapter was doing (`context`,
/// e.g. "creating namespace \"team-a\"") and naming a prefix of the SecretId used.
pub fn api_error_to_oci(e: &ApiError, action: &str, secret_id: &str, context: &str) -> OciError {
    let human = e.humanize_with(action, secret_id);
    let message = format!("{context}: {human}");
    match classify(e) {
        ApiErrorClass::Denied => OciError::new(ErrorCode::Denied, message),
        ApiErrorClass::Unavailable => {
            let retry = if e
                .code()
                .is_some_and(|c| c.starts_with("RequestLimitExceeded"))
            {
                "2"
            } else {
                "5"
            };
            OciError::new(ErrorCode::Unavailable, message).with_header(RETRY_AFTER, retry)
        }
        ApiErrorClass::Instance => OciError::new(
            ErrorCode::Unavailable,
            format!("{context}: the TCR instance is not available (is it running?): {human}"),
        )
        .with_header(RETRY_AFTER, "30"),
        // A missing instance looks like a missing resource; say both.
        ApiErrorClass::NotFound => OciError::new(ErrorCode::NameUnknown, message),
        ApiErrorClass::Other => OciError::new(ErrorCode::Unknown, message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(code: &str) -> ApiError {
        ApiError::Api {
            code: code.into(),
            message: "m".into(),
            request_id: "r".into(),
        }
    }

    #[test]
    fn classes() {
        let e = api_error_to_oci(
            &api("AuthFailure.SecretIdNotFound"),
            "CreateNamespace",
            "AKIDabcdefghij",
            "creating namespace \"a\"",
        );
        assert_eq!(e.status.as_u16(), 403);
        assert!(e.message.contains("the SecretId AKIDabcd… does not exist"));
        assert!(!e.message.contains("AKIDabcdefghij"));
        let e = api_error_to_oci(&api("UnauthorizedOperation"), "CreateNamespace", "", "x");
        assert!(e
            .message
            .contains("may not call CreateNamespace (CAM policy)"));
        let e = api_error_to_oci(&api("RequestLimitExceeded"), "CreateNamespace", "", "x");
        assert_eq!(e.status.as_u16(), 503);
        assert!(e.headers.iter().any(|(k, _)| k == RETRY_AFTER));
        let e = api_error_to_oci(&ApiError::Transport("down".into()), "X", "", "x");
        assert_eq!(e.status.as_u16(), 503);
        let e = api_error_to_oci(&api("LimitExceeded"), "CreateNamespace", "", "x");
        assert_eq!(e.status.as_u16(), 403);
        assert!(e.message.contains("quota"));
    }
}
