//! TCR answers blob GET/HEAD with a redirect to object storage (a short-lived signed COS URL).
//! `relay`: the client gets the redirect (its `Location` is left as TCR signed it: the signature
//! is the storage's own, not one of the adapter's credentials). `follow`: the adapter fetches the
//! URL itself, without `Authorization`, and the client gets the bytes as if TCR had served them,
//! `Docker-Content-Digest` included.

use actix_web::http::{Method, StatusCode};
use reqwest::header::{HeaderMap, HeaderValue, LOCATION};

use super::route::Endpoint;
use super::RegistryFront;
use crate::config::RedirectMode;
use crate::oci::{ErrorCode, OciError};

/// Request headers worth sending to storage: the ones that shape a blob read.
const STORAGE_HEADERS: [&str; 4] = ["range", "if-range", "if-none-match", "if-modified-since"];

/// The upstream answer the client should get: `resp` itself, or (following a redirect of a
/// blob read) storage's answer.
pub async fn resolve(
    front: &RegistryFront,
    endpoint: &Endpoint,
    method: &Method,
    request_headers: &HeaderMap,
    resp: reqwest::Response,
) -> Result<reqwest::Response, OciError> {
    let Endpoint::Blob { digest, .. } = endpoint else {
        return Ok(resp);
    };
    let redirected = matches!(resp.status().as_u16(), 301 | 302 | 303 | 307 | 308);
    let read = *method == Method::GET || *method == Method::HEAD;
    if !(redirected && read && front.redirects == RedirectMode::Follow) {
        return Ok(resp);
    }
    let Some(location) = resp.headers().get(LOCATION).and_then(|v| v.to_str().ok()) else {
        return Ok(resp);
    };
    let location = location.to_string();
    drop(resp);
    let mut headers = HeaderMap::new();
    for name in STORAGE_HEADERS {
        if let Some(v) = request_headers.get(name) {
            headers.insert(name, v.clone());
        }
    }
    let storage_method =
        reqwest::Method::from_bytes(method.as_str().as_bytes()).unwrap_or(reqwest::Method::GET);
    let mut answer = front
        .upstream
        .fetch_redirect(storage_method, &location, headers)
        .await?;
    let status = answer.status();
    if status.is_client_error() || status.is_server_error() {
        return Err(storage_failure(answer).await);
    }
    if let Ok(v) = HeaderValue::from_str(digest.as_str()) {
        answer.headers_mut().insert("docker-content-digest", v);
    }
    Ok(answer)
}

/// Storage refused: absent is the blob's absence; anything else (an expired or refused URL,
/// a storage outage) is the upstream failing, in the words storage used.
async fn storage_failure(resp: reqwest::Response) -> OciError {
    let status = resp.status();
    let body = resp.bytes().await.unwrap_or_default();
    let text = String::from_utf8_lossy(&body[..body.len().min(512)]).to_string();
    let tag = |t: &str| {
        let open = format!("<{t}>");
        let start = text.find(&open)? + open.len();
        let end = text[start..].find(&format!("</{t}>"))? + start;
        Some(text[start..end].to_string())
    };
    let reason = match (tag("Code"), tag("Message")) {
        (Some(c), Some(m)) => format!("{c}: {m}"),
        (Some(c), None) => c,
        _ => text.lines().next().unwrap_or("").to_string(),
    };
    if status == reqwest::StatusCode::NOT_FOUND {
        return OciError::new(
            ErrorCode::BlobUnknown,
            format!("object storage does not hold the blob ({reason})"),
        );
    }
    OciError::new(
        ErrorCode::Unavailable,
        format!(
            "TCR redirected the blob to object storage, which answered {}: {reason}",
            status.as_u16()
        ),
    )
    .with_status(StatusCode::BAD_GATEWAY)
}
