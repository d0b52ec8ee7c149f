//! Classification of cloud API errors: which codes are worth a retry, and the plain-words
//! explanation a person can act on. Messages never contain a SecretKey (only a SecretId prefix).

use super::ApiError;

/// Why a call was retried; labels of the retry counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RetryCause {
    /// `RequestLimitExceeded*`.
    Throttled,
    /// `InternalError*`.
    Internal,
    /// No answer (connect error, timeout, unreadable body).
    Transport,
}

impl RetryCause {
    pub const ALL: [RetryCause; 3] = [
        RetryCause::Throttled,
        RetryCause::Internal,
        RetryCause::Transport,
    ];

    /// Metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            RetryCause::Throttled => "throttled",
            RetryCause::Internal => "internal",
            RetryCause::Transport => "transport",
        }
    }
}

impl ApiError {
    /// Whether retrying the same call may succeed, and why.
    pub fn retry_cause(&self) -> Option<RetryCause> {
        match self {
            ApiError::Transport(_) => Some(RetryCause::Transport),
            ApiError::Api { code, .. } if code.starts_with("RequestLimitExceeded") => {
                Some(RetryCause::Throttled)
            }
            ApiError::Api { code, .. } if code.starts_with("InternalError") => {
                Some(RetryCause::Internal)
            }
            ApiError::Api { .. } => None,
        }
    }

    /// The TencentCloud `RequestId`, if the API answered.
    pub fn request_id(&self) -> Option<&str> {
        match self {
            ApiError::Api { request_id, .. } => Some(request_id),
            ApiError::Transport(_) => None,
        }
    }

    /// Whether the error says the resource already exists (namespace/repository conflict).
    pub fn is_conflict(&self) -> bool {
        self.code().is_some_and(|c| {
            c.ends_with("ResourceConflict")
                || c.ends_with("ErrorConflict")
                || c.ends_with("ErrNamespaceExist")
        })
    }

    /// Whether the error says the resource does not exist.
    pub fn is_not_found(&self) -> bool {
        self.code()
            .is_some_and(|c| c.starts_with("ResourceNotFound"))
    }

    /// A plain-words explanation without call context (see [`ApiError::humanize_with`]).
    pub fn humanize(&self) -> String {
        self.humanize_with("this action", "")
    }

    /// A plain-words explanation, naming the `action` called and a prefix of the `secret_id` used.
    /// Never includes a secret key.
    pub fn humanize_with(&self, action: &str, secret_id: &str) -> String {
        let (code, message, request_id) = match self {
            ApiError::Transport(e) => {
                return format!("the TencentCloud API could not be reached ({e}); check tcr.api_endpoint and the network")
            }
            ApiError::Api { code, message, request_id } => (code.as_str(), message.as_str(), request_id.as_str()),
        };
        let id: String = secret_id.chars().take(8).collect();
        let plain = match code {
            "AuthFailure.SecretIdNotFound" | "AuthFailure.InvalidSecretId" => {
                if id.is_empty() {
                    "the SecretId does not exist (check the key in the CAM console)".to_string()
                } else {
                    format!("the SecretId {id}… does not exist (check the key in the CAM console)")
                }
            }
            "AuthFailure.SignatureFailure" => "the SecretKey does not match the SecretId".to_string(),
            "AuthFailure.SignatureExpire" => {
                "the request timestamp is more than 5 minutes away from TencentCloud's clock: fix this host's clock (NTP)".to_string()
            }
            "AuthFailure.InvalidAuthorization" => "the request signature is malformed (a bug: please report it)".to_string(),
            "AuthFailure.TokenFailure" => "the temporary credential token is invalid or expired".to_string(),
            "AuthFailure.UnauthorizedOperation" | "UnauthorizedOperation" | "OperationDenied"
            | "FailedOperation.ErrorTcrUnauthorized" => {
                format!("this key may not call {action} (CAM policy): grant tcr:{action} to the key's user")
            }
            c if c.starts_with("UnauthorizedOperation") => {
                format!("this key may not call {action} (CAM policy): grant tcr:{action} to the key's user")
            }
            c if c.starts_with("LimitExceeded") || c.contains("Quota") => {
                "namespace quota reached: delete unused namespaces or upgrade the TCR instance".to_string()
            }
            c if c.starts_with("ResourceNotFound") => {
                "instance not found (or the resource it names): check tcr.registry_id and tcr.region".to_string()
            }
            c if c.starts_with("RequestLimitExceeded") => {
                "throttled by TencentCloud (request rate too high): lower tcr.api_qps".to_string()
            }
            c if c.starts_with("InternalError") => "TencentCloud had an internal error; try again later".to_string(),
            "InvalidAction" | "NoSuchVersion" => format!("the API endpoint does not know {action} (is tcr.api_endpoint a TCR API endpoint?)"),
            c if self.is_conflict() => format!("already exists ({c})"),
            _ => message.to_string(),
        };
        format!("{plain} [{code}: {message}; RequestId {request_id}]")
    }
}

/// How an API error is rendered to a registry client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiErrorClass {
    /// Keys, signature, CAM permission, quota: the caller must change something. 403.
    Denied,
    /// Throttled, internal error or unreachable (after the client's retries). 503 + Retry-After.
    Unavailable,
    /// The instance is missing or not running: configuration or the console. 503.
    Instance,
    /// The resource named does not exist. 404.
    NotFound,
    /// Anything else. 500.
    Other,
}

/// Classify an API error for the HTTP edge.
pub fn classify(e: &ApiError) -> ApiErrorClass {
    let Some(code) = e.code() else {
        return ApiErrorClass::Unavailable;
    };
    if code.starts_with("RequestLimitExceeded") || code.starts_with("InternalError") {
        ApiErrorClass::Unavailable
    } else if code.starts_with("AuthFailure")
        || code.starts_with("UnauthorizedOperation")
        || code.starts_with("OperationDenied")
        || code == "FailedOperation.ErrorTcrUnauthorized"
        || code.starts_with("LimitExceeded")
        || code.contains("Quota")
        || code.starts_with("InvalidParameter")
    {
        ApiErrorClass::Denied
    } else if code.starts_with("ResourceUnavailable") || code.starts_with("ResourceInsufficient") {
        ApiErrorClass::Instance
    } else if e.is_not_found() {
        ApiErrorClass::NotFound
    } else {
        ApiErrorClass::Other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(code: &str) -> ApiError {
        ApiError::Api {
            code: code.into(),
            message: "msg".into(),
            request_id: "rid".into(),
        }
    }

    #[test]
    fn humanized_messages_say_what_to_do() {
        let m = api("AuthFailure.SecretIdNotFound")
            .humanize_with("CreateNamespace", "AKIDabcdefghijkl");
        assert!(
            m.starts_with(
                "the SecretId AKIDabcd… does not exist (check the key in the CAM console)"
            ),
            "{m}"
        );
        assert!(!m.contains("efghijkl"));
        assert!(api("AuthFailure.SignatureFailure")
            .humanize()
            .contains("the SecretKey does not match the SecretId"));
        assert!(api("AuthFailure.SignatureExpire")
            .humanize()
            .contains("clock"));
        assert!(api("AuthFailure.UnauthorizedOperation")
            .humanize_with("CreateNamespace", "")
            .contains("this key may not call CreateNamespace (CAM policy)"));
        assert!(api("UnauthorizedOperation")
            .humanize_with("DeleteImage", "")
            .contains("may not call DeleteImage"));
        assert!(api("LimitExceeded.ErrNamespaceMaxLimit")
            .humanize()
            .contains("namespace quota reached"));
        assert!(api("ResourceNotFound.TcrResourceNotFound")
            .humanize()
            .contains("instance not found"));
        assert!(api("RequestLimitExceeded").humanize().contains("throttled"));
        assert!(ApiError::Transport("connect refused".into())
            .humanize()
            .contains("could not be reached"));
    }

    #[test]
    fn retry_classification() {
        assert_eq!(
            api("RequestLimitExceeded.UinLimitExceeded").retry_cause(),
            Some(RetryCause::Throttled)
        );
        assert_eq!(
            api("InternalError.DbError").retry_cause(),
            Some(RetryCause::Internal)
        );
        assert_eq!(
            ApiError::Transport("x".into()).retry_cause(),
            Some(RetryCause::Transport)
        );
        assert_eq!(api("AuthFailure.SignatureFailure").retry_cause(), None);
        assert!(api("FailedOperation.ErrorTcrResourceConflict").is_conflict());
        assert!(api("ResourceNotFound").is_not_found());
    }
}
