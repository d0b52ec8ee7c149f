//! The edge of authentication: reading the `Authorization` header into a typed value, building
//! the `WWW-Authenticate: Bearer …` challenge (never Basic: Harbor 1.8–1.10 only speaks Bearer)
//! and the 401 / 429 / 503 errors that carry it.

use actix_web::http::header::{self, HeaderName};
use actix_web::HttpRequest;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use super::{scope, Access};
use crate::credentials::{ClientSecret, CredentialError};
use crate::oci::{ErrorCode, OciError};

/// What the client sent in `Authorization`.
pub enum Presented<'a> {
    /// No credentials (or Basic with an empty username).
    Nothing,
    /// `Bearer <token>`.
    Bearer(&'a str),
    /// `Basic base64(user:password)`.
    Basic(ClientSecret),
    /// Something unreadable; the reason, without the secret.
    Malformed(&'static str),
}

/// Parse the request's `Authorization` header.
pub fn presented(req: &HttpRequest) -> Presented<'_> {
    let Some(value) = req.headers().get(header::AUTHORIZATION) else {
        return Presented::Nothing;
    };
    let Ok(value) = value.to_str() else {
        return Presented::Malformed("Authorization header is not ASCII");
    };
    let (scheme, rest) = value.trim().split_once(' ').unwrap_or((value, ""));
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        if rest.is_empty() {
            return Presented::Malformed("empty Bearer token");
        }
        Presented::Bearer(rest)
    } else if scheme.eq_ignore_ascii_case("basic") {
        parse_basic(rest)
    } else {
        Presented::Malformed(
            "unsupported Authorization scheme (use Basic on /service/token, then Bearer)",
        )
    }
}

fn parse_basic(b64: &str) -> Presented<'static> {
    let Ok(raw) = STANDARD.decode(b64) else {
        return Presented::Malformed("Basic credentials are not valid base64");
    };
    let Ok(text) = String::from_utf8(raw) else {
        return Presented::Malformed("Basic credentials are not UTF-8");
    };
    let (user, password) = text.split_once(':').unwrap_or((&text, ""));
    match ClientSecret::from_basic(user, password) {
        Some(s) => Presented::Basic(s),
        None => Presented::Nothing,
    }
}

/// Quote-safe rendering of scopes for a challenge parameter.
fn scope_param(needed: &[Access]) -> String {
    scope::render_all(needed).replace(['"', '\\'], "")
}

/// `Bearer realm="…",service="…"[,scope="…"][,error="…"]`.
pub fn bearer_challenge(
    realm: &str,
    service: &str,
    needed: &[Access],
    error: Option<&str>,
) -> String {
    let mut out = format!("Bearer realm=\"{realm}\",service=\"{service}\"");
    if !needed.is_empty() {
        out.push_str(",scope=\"");
        out.push_str(&scope_param(needed));
        out.push('"');
    }
    if let Some(e) = error {
        out.push_str(",error=\"");
        out.push_str(e);
        out.push('"');
    }
    out
}

/// A 401 `UNAUTHORIZED` with the challenge and the distribution-style `detail` listing what was
/// needed.
pub fn unauthorized(challenge: String, needed: &[Access], message: impl Into<String>) -> OciError {
    let detail: Vec<serde_json::Value> = needed
        .iter()
        .flat_map(|a| {
            a.actions
                .iter()
                .map(move |act| serde_json::json!({"Type": a.kind, "Name": a.name, "Action": act}))
        })
        .collect();
    let err = OciError::new(ErrorCode::Unauthorized, message)
        .with_header(HeaderName::from_static("www-authenticate"), &challenge);
    if detail.is_empty() {
        err
    } else {
        err.with_detail(serde_json::Value::Array(detail))
    }
}

/// The HTTP error for a credential that could not be translated: 401 with the challenge when the
/// credential itself was refused, 429 when the cloud throttles, 503 when it is unreachable.
pub fn credential_failure(challenge: String, needed: &[Access], err: &CredentialError) -> OciError {
    match err {
        CredentialError::Throttled | CredentialError::Busy => {
            OciError::new(ErrorCode::TooManyRequests, err.to_string())
                .with_header(header::RETRY_AFTER, "2")
        }
        CredentialError::Unavailable { .. } => {
            OciError::new(ErrorCode::Unavailable, err.to_string())
                .with_header(header::RETRY_AFTER, "5")
        }
        _ => unauthorized(challenge, needed, err.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenge_lists_all_scopes_and_the_error() {
        let needed = [
            Access::repository("a/b", &["pull", "push"]),
            Access::repository("c/d", &["pull"]),
        ];
        assert_eq!(
            bearer_challenge(
                "http://x/service/token",
                "svc",
                &needed,
                Some("insufficient_scope")
            ),
            r#"Bearer realm="http://x/service/token",service="svc",scope="repository:a/b:pull,push repository:c/d:pull",error="insufficient_scope""#
        );
        assert_eq!(
            bearer_challenge("r", "s", &[], None),
            r#"Bearer realm="r",service="s""#
        );
    }

    #[test]
    fn basic_parsing() {
        let b = |s: &str| parse_basic(&STANDARD.encode(s));
        assert!(matches!(
            b("AKIDx:key"),
            Presented::Basic(ClientSecret::ApiKeys(_))
        ));
        assert!(matches!(
            b("u:p:with:colons"),
            Presented::Basic(ClientSecret::Registry { .. })
        ));
        assert!(matches!(b(":"), Presented::Nothing));
        assert!(matches!(parse_basic("%%%"), Presented::Malformed(_)));
    }
}
