//! The public base URL of a request: `server.public_url`, or, when
//! `server.trust_forwarded_headers` is set, the scheme of `X-Forwarded-Proto` and the host of
//! `X-Forwarded-Host`. ONE function ([`request_base`]) computes it for everything a client is
//! told to reach (`Location` rewriting, the realm of every `WWW-Authenticate`, on `/v2/` and on
//! `/service/token` alike); [`challenge_on`] moves an error's realm onto it.

use actix_web::http::header::{HeaderMap as ActixHeaders, HeaderValue};

use crate::oci::OciError;

/// First value of a (possibly repeated, comma-separated) forwarding header.
fn first_value<'a>(headers: &'a ActixHeaders, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// A host[:port] safe to put into a URL (no path, userinfo, quotes or spaces).
fn plausible_host(h: &str) -> bool {
    h.len() <= 255
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'))
}

/// The base URL clients reach the adapter at, for this request: `public_base`, or with `trust`
/// the scheme of `X-Forwarded-Proto` and the host of `X-Forwarded-Host` (each falling back to
/// `public_base`'s own when absent or implausible).
pub fn request_base(headers: &ActixHeaders, public_base: &str, trust: bool) -> String {
    if !trust {
        return public_base.to_string();
    }
    let (scheme, host) = public_base
        .split_once("://")
        .unwrap_or(("http", public_base));
    let proto = first_value(headers, "x-forwarded-proto")
        .map(str::to_ascii_lowercase)
        .filter(|p| p == "http" || p == "https");
    let fwd_host = first_value(headers, "x-forwarded-host").filter(|h| plausible_host(h));
    if proto.is_none() && fwd_host.is_none() {
        return public_base.to_string();
    }
    format!(
        "{}://{}",
        proto.as_deref().unwrap_or(scheme),
        fwd_host.unwrap_or(host)
    )
}

/// Move the realm of an error's `WWW-Authenticate` from `public_base` onto `base`.
pub fn challenge_on(mut err: OciError, public_base: &str, base: &str) -> OciError {
    if public_base == base {
        return err;
    }
    let from = format!("realm=\"{public_base}/");
    let to = format!("realm=\"{base}/");
    for (name, value) in err.headers.iter_mut() {
        if name.as_str() != "www-authenticate" {
            continue;
        }
        if let Ok(v) = value.to_str() {
            if let Ok(new) = HeaderValue::from_str(&v.replacen(&from, &to, 1)) {
                *value = new;
            }
        }
    }
    err
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::ErrorCode;
    use actix_web::http::header::HeaderName;

    fn headers(pairs: &[(&'static str, &'static str)]) -> ActixHeaders {
        let mut h = ActixHeaders::new();
        for (k, v) in pairs {
            h.append(HeaderName::from_static(k), HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn forwarded_base() {
        let h = headers(&[
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "reg.example.com, proxy.internal"),
        ]);
        assert_eq!(
            request_base(&h, "http://10.0.0.1:5000", true),
            "https://reg.example.com"
        );
        assert_eq!(
            request_base(&h, "http://10.0.0.1:5000", false),
            "http://10.0.0.1:5000"
        );
        let h = headers(&[("x-forwarded-proto", "https")]);
        assert_eq!(request_base(&h, "http://a:5000", true), "https://a:5000");
        let h = headers(&[("x-forwarded-host", "evil/\"x")]);
        assert_eq!(request_base(&h, "http://a", true), "http://a");
    }

    #[test]
    fn realm_moves() {
        let e = OciError::new(ErrorCode::Unauthorized, "x").with_header(
            HeaderName::from_static("www-authenticate"),
            "Bearer realm=\"http://a:1/service/token\",service=\"s\"",
        );
        let e = challenge_on(e, "http://a:1", "https://r.example");
        assert_eq!(
            e.headers[0].1,
            "Bearer realm=\"https://r.example/service/token\",service=\"s\""
        );
    }
}
