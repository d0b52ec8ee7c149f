//! The OCI error envelope `{"errors":[{"code","message","detail"}]}` and the one error type that
//! crosses the HTTP edge of both the adapter and the emulator's data plane.

use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde_json::json;

/// Declares [`ErrorCode`], its wire names and [`ErrorCode::ALL`] from one list, so the three
/// cannot drift apart.
macro_rules! error_codes {
    ($($variant:ident => $wire:literal,)*) => {
        /// OCI / distribution error codes with their HTTP status.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum ErrorCode {
            $($variant,)*
        }

        impl ErrorCode {
            /// Every code, in the order of the distribution spec's table.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)*];

            /// The name on the wire, e.g. `"BLOB_UNKNOWN"`.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $wire,)*
                }
            }
        }
    };
}

error_codes! {
    BlobUnknown => "BLOB_UNKNOWN",
    BlobUploadInvalid => "BLOB_UPLOAD_INVALID",
    BlobUploadUnknown => "BLOB_UPLOAD_UNKNOWN",
    DigestInvalid => "DIGEST_INVALID",
    ManifestBlobUnknown => "MANIFEST_BLOB_UNKNOWN",
    ManifestInvalid => "MANIFEST_INVALID",
    ManifestUnknown => "MANIFEST_UNKNOWN",
    NameInvalid => "NAME_INVALID",
    NameUnknown => "NAME_UNKNOWN",
    SizeInvalid => "SIZE_INVALID",
    Unauthorized => "UNAUTHORIZED",
    Denied => "DENIED",
    Unsupported => "UNSUPPORTED",
    TooManyRequests => "TOOMANYREQUESTS",
    RangeInvalid => "RANGE_INVALID",
    PaginationNumberInvalid => "PAGINATION_NUMBER_INVALID",
    TagInvalid => "TAG_INVALID",
    Unavailable => "UNAVAILABLE",
    Unknown => "UNKNOWN",
}

impl ErrorCode {
    /// The code named `code` on the wire (`"BLOB_UNKNOWN"` …), if it is one of ours.
    pub fn from_wire(code: &str) -> Option<ErrorCode> {
        Self::ALL.iter().copied().find(|c| c.as_str() == code)
    }

    pub fn status(self) -> StatusCode {
        use ErrorCode::*;
        match self {
            BlobUnknown | BlobUploadUnknown | BlobUploadInvalid | ManifestUnknown | NameUnknown => {
                StatusCode::NOT_FOUND
            }
            DigestInvalid
            | ManifestBlobUnknown
            | ManifestInvalid
            | NameInvalid
            | SizeInvalid
            | PaginationNumberInvalid
            | TagInvalid => StatusCode::BAD_REQUEST,
            Unauthorized => StatusCode::UNAUTHORIZED,
            Denied => StatusCode::FORBIDDEN,
            Unsupported => StatusCode::METHOD_NOT_ALLOWED,
            TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            RangeInvalid => StatusCode::RANGE_NOT_SATISFIABLE,
            Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Unknown => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// An error rendered as the OCI envelope. Carries the status, extra headers
/// (`WWW-Authenticate`, `Retry-After`, ...) and an optional JSON `detail`.
#[derive(Debug, Clone)]
pub struct OciError {
    pub status: StatusCode,
    pub code: ErrorCode,
    pub message: String,
    pub detail: Option<serde_json::Value>,
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl OciError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        OciError {
            status: code.status(),
            code,
            message: message.into(),
            detail: None,
            headers: Vec::new(),
        }
    }

    /// Override the status (e.g. `DENIED` rendered as 401, `UNSUPPORTED` as 400).
    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    pub fn with_detail(mut self, detail: serde_json::Value) -> Self {
        self.detail = Some(detail);
        self
    }

    pub fn with_header(mut self, name: HeaderName, value: &str) -> Self {
        if let Ok(v) = HeaderValue::from_str(value) {
            self.headers.push((name, v));
        }
        self
    }

    pub fn body(&self) -> serde_json::Value {
        let mut e = json!({"code": self.code.as_str(), "message": self.message});
        if let Some(d) = &self.detail {
            e["detail"] = d.clone();
        }
        json!({ "errors": [e] })
    }
}

impl std::fmt::Display for OciError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.code.as_str(),
            self.message
        )
    }
}

impl std::error::Error for OciError {}

impl ResponseError for OciError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut resp = HttpResponse::build(self.status);
        resp.insert_header(super::API_VERSION_HEADER);
        for (k, v) in &self.headers {
            resp.insert_header((k.clone(), v.clone()));
        }
        if (self.status == StatusCode::TOO_MANY_REQUESTS
            || self.status == StatusCode::SERVICE_UNAVAILABLE)
            && !self.headers.iter().any(|(k, _)| k == "retry-after")
        {
            resp.insert_header(("Retry-After", "1"));
        }
        resp.content_type("application/json")
            .body(self.body().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_round_trip() {
        assert_eq!(ErrorCode::ALL.len(), 19);
        for &c in ErrorCode::ALL {
            assert_eq!(ErrorCode::from_wire(c.as_str()), Some(c));
        }
        assert_eq!(ErrorCode::from_wire("NOPE"), None);
        assert_eq!(ErrorCode::ManifestUnknown.status(), StatusCode::NOT_FOUND);
    }

    #[test]
    fn the_envelope_carries_code_message_and_detail() {
        let e = OciError::new(ErrorCode::Denied, "no").with_detail(json!({"a": 1}));
        assert_eq!(
            e.body(),
            json!({"errors": [{"code": "DENIED", "message": "no", "detail": {"a": 1}}]})
        );
        let resp = OciError::new(ErrorCode::Unavailable, "later").error_response();
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(resp.headers().get("retry-after").unwrap(), "1");
    }
}
