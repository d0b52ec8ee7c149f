//! An upstream 4xx/5xx read once and turned into the client's error: reads of things absent
//! upstream as 404 with the endpoint's OCI code, OCI bodies passed through, an upstream 401 on a
//! write as a 403, and the "namespace missing" refusal recognised.

use actix_web::http::{Method, StatusCode};

use super::body;
use super::route::Endpoint;
use crate::oci::{ErrorCode, OciError};
use crate::upstream::error_message;

/// An upstream 4xx/5xx, read (its body is small or cut).
pub struct Failure {
    status: reqwest::StatusCode,
    retry_after: Option<String>,
    pub message: String,
    parsed: Option<serde_json::Value>,
    upstream_code: Option<String>,
}

impl Failure {
    pub async fn read(resp: reqwest::Response) -> Failure {
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let bytes = body::read_limited(resp, 64 * 1024)
            .await
            .unwrap_or_default();
        let parsed: Option<serde_json::Value> = serde_json::from_slice(&bytes).ok();
        let upstream_code = parsed
            .as_ref()
            .and_then(|v| v["errors"][0]["code"].as_str().map(str::to_string));
        Failure {
            status,
            retry_after,
            message: error_message(&bytes),
            parsed,
            upstream_code,
        }
    }

    /// Whether a write was refused because its namespace does not exist upstream: TCR (like
    /// Harbor) answers `401 "project <ns> not found"`; a registry may say `404 NAME_UNKNOWN`.
    pub fn missing_namespace(&self) -> bool {
        let m = self.message.to_ascii_lowercase();
        let says = (m.contains("project") || m.contains("namespace")) && m.contains("not found");
        match self.status.as_u16() {
            404 => self.upstream_code.as_deref() == Some("NAME_UNKNOWN") || says,
            401 | 403 => says,
            _ => false,
        }
    }

    /// The client's error. Reads of things in a namespace that does not exist upstream
    /// (401/403/404) become 404 with the OCI code of the endpoint; OCI error bodies are passed
    /// through verbatim; an upstream 401 on a write is a 403 (the client's own token was valid;
    /// TCR refused the translated credential).
    pub fn into_oci(self, endpoint: &Endpoint, method: &Method) -> OciError {
        let Failure {
            status,
            retry_after,
            message,
            parsed,
            upstream_code,
        } = self;
        if Endpoint::is_read(method) && matches!(status.as_u16(), 401 | 403 | 404) {
            let code = match endpoint {
                Endpoint::Manifest { .. } => ErrorCode::ManifestUnknown,
                Endpoint::Blob { .. } => ErrorCode::BlobUnknown,
                Endpoint::Upload { .. } => ErrorCode::BlobUploadUnknown,
                _ => ErrorCode::NameUnknown,
            };
            let code = match (status.as_u16(), upstream_code.as_deref()) {
                (404, Some("NAME_UNKNOWN")) => ErrorCode::NameUnknown,
                _ => code,
            };
            let message = if message.is_empty() {
                format!("{} not found upstream", endpoint.label())
            } else {
                message
            };
            return OciError::new(code, message).with_status(StatusCode::NOT_FOUND);
        }
        if status.as_u16() == 401 || (status.as_u16() == 403 && upstream_code.is_none()) {
            return OciError::new(
                ErrorCode::Denied,
                format!("TCR refused this request for the translated credential: {message}"),
            );
        }
        let http_status = StatusCode::from_u16(status.as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
        let code = code_of(upstream_code.as_deref(), status.as_u16());
        let mut err = OciError::new(code, message).with_status(http_status);
        if let Some(v) = parsed
            .as_ref()
            .and_then(|v| v["errors"][0].get("detail"))
            .cloned()
        {
            err = err.with_detail(v);
        }
        if let Some(ra) = retry_after {
            err = err.with_header(actix_web::http::header::RETRY_AFTER, &ra);
        }
        err
    }
}

/// Map an upstream OCI code string back to ours (unknown codes by status).
fn code_of(code: Option<&str>, status: u16) -> ErrorCode {
    use ErrorCode::*;
    if let Some(c) = code.and_then(ErrorCode::from_wire) {
        return c;
    }
    match status {
        429 => TooManyRequests,
        416 => RangeInvalid,
        413 => ManifestInvalid,
        502..=504 => Unavailable,
        400..=499 => Denied,
        _ => Unknown,
    }
}
