//! Request helpers both emulator listeners' routes share (the registry and the chart repository
//! mounted on it): Basic credentials and the declared body length. Lower than both, so the chart
//! repository does not reach into the registry for them.

use actix_web::HttpRequest;
use base64::Engine;

/// `(user, password)` of a `Basic` `Authorization` header, when well-formed.
pub(crate) fn basic_credentials(req: &HttpRequest) -> Option<(String, String)> {
    let v = req.headers().get("authorization")?.to_str().ok()?;
    let (scheme, rest) = v.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()?;
    let s = String::from_utf8(raw).ok()?;
    let (u, p) = s.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

/// Declared `Content-Length` of the request, when valid.
pub(crate) fn content_length(req: &HttpRequest) -> Option<u64> {
    req.headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}
