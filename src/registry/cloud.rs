//! The `/v2/` answers that come from TCR's cloud API rather than its data plane: the catalog
//! (`DescribeRepositories`: TCR's data plane lists nothing for ordinary users) for callers that
//! hold API keys, and tag deletion (`DeleteImage`: TCR refuses `DELETE …/manifests/<tag>`).
//! Plus the public base URL of a request (`X-Forwarded-*` when trusted) and the challenge's realm
//! moved onto it.

use actix_web::http::header::{HeaderMap as ActixHeaders, HeaderValue};
use actix_web::HttpResponse;
use percent_encoding::percent_decode_str;

use super::RegistryFront;
use crate::oci::{ErrorCode, OciError, RepoName};
use crate::tencentcloud::ApiCredential;

/// `GET /v2/_catalog?n=&last=` from `DescribeRepositories` with the caller's keys: client names,
/// sorted, with a relative `Link: </v2/_catalog?last=…&n=…>; rel="next"` when more follow.
pub async fn catalog(
    front: &RegistryFront,
    keys: &ApiCredential,
    query: &str,
) -> Result<HttpResponse, OciError> {
    let mut n = None;
    let mut last = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = percent_decode_str(&v.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned();
        match k {
            "n" if !v.is_empty() => {
                n = Some(v.trim().parse::<usize>().map_err(|_| {
                    OciError::new(
                        ErrorCode::PaginationNumberInvalid,
                        format!("n={v:?} is not a non-negative integer"),
                    )
                })?)
            }
            "last" if !v.is_empty() => last = Some(v),
            _ => {}
        }
    }
    let page = front.namespaces.catalog(keys, n, last.as_deref()).await?;
    let mut out = HttpResponse::Ok();
    out.content_type("application/json");
    if let Some(next) = &page.next {
        out.insert_header(("Link", format!("<{next}>; rel=\"next\"")));
    }
    let body = serde_json::json!({ "repositories": page.repositories });
    Ok(out.body(body.to_string()))
}

/// `DELETE /v2/<name>/manifests/<tag>` through `DeleteImage`: 202, the manifest stays by digest.
pub async fn delete_tag(
    front: &RegistryFront,
    keys: &ApiCredential,
    upstream: &RepoName,
    tag: &str,
) -> Result<HttpResponse, OciError> {
    front.namespaces.delete_tag(keys, upstream, tag).await?;
    Ok(HttpResponse::Accepted().finish())
}

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
