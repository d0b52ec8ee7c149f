//! Header hygiene and rewriting between the client and the upstream: hop-by-hop headers,
//! `Authorization`/`Host` never forwarded, repeated `Accept` lines merged, the `digest` and
//! `from` query parameters normalised, and upstream `Location`/`Link` mapped back to the
//! adapter's public URL with the client's repository names (queries kept: they carry the
//! upstream's upload state, which is how the adapter stays stateless).

use actix_web::http::header::HeaderMap as ActixHeaders;
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use super::route::Endpoint;
use crate::namespaces::NamespaceProvisioner;
use crate::oci::{Digest, ErrorCode, OciError, RepoName};

/// Headers that describe one connection, never forwarded either way.
pub fn is_hop_by_hop(name: &str) -> bool {
    matches!(
        name,
        "connection"
            | "keep-alive"
            | "transfer-encoding"
            | "te"
            | "trailer"
            | "trailers"
            | "upgrade"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
    ) || name.starts_with("proxy-")
}

/// Client request headers → upstream headers. `Content-Length` is kept (so a sized body is not
/// sent chunked); `Accept` lines are merged into one.
pub fn request_headers(client: &ActixHeaders) -> HeaderMap {
    let mut out = HeaderMap::new();
    let mut accept: Vec<&str> = Vec::new();
    // Headers named in `Connection` are hop-by-hop too (RFC 9110 §7.6.1).
    let listed: Vec<String> = client
        .get_all("connection")
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|n| n.trim().to_ascii_lowercase())
        .collect();
    for (name, value) in client.iter() {
        let n = name.as_str();
        if is_hop_by_hop(n)
            || listed.iter().any(|l| l == n)
            || matches!(
                n,
                "host" | "authorization" | "expect" | "accept-encoding" | "cookie"
            )
        {
            continue;
        }
        if n == "accept" {
            if let Ok(v) = value.to_str() {
                accept.push(v.trim());
            }
            continue;
        }
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(n.as_bytes()),
            HeaderValue::from_bytes(value.as_bytes()),
        ) {
            out.append(n, v);
        }
    }
    let accept: Vec<&str> = accept.into_iter().filter(|a| !a.is_empty()).collect();
    if !accept.is_empty() {
        if let Ok(v) = HeaderValue::from_str(&accept.join(", ")) {
            out.insert(reqwest::header::ACCEPT, v);
        }
    }
    // Never let the upstream compress: blob sizes and digests must survive untouched.
    out.insert(
        reqwest::header::ACCEPT_ENCODING,
        HeaderValue::from_static("identity"),
    );
    out
}

const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// The client's query as sent upstream: `digest` validated and percent-encoded, `from`
/// (mount source) renamed to its upstream name, everything else verbatim (upload state).
/// Returns the query and the parsed mount source in client names.
pub fn upstream_query(
    query: &str,
    namespaces: &NamespaceProvisioner,
) -> Result<(String, Option<RepoName>), OciError> {
    let mut from = None;
    let mut parts = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let value = || {
            percent_decode_str(&v.replace('+', " "))
                .decode_utf8_lossy()
                .into_owned()
        };
        match k {
            "digest" | "mount" => {
                let d = Digest::parse(value().trim())
                    .map_err(|e| OciError::new(ErrorCode::DigestInvalid, e.to_string()))?;
                parts.push(format!(
                    "{k}={}",
                    utf8_percent_encode(d.as_str(), QUERY_VALUE)
                ));
            }
            "from" => {
                let repo = RepoName::parse(&value())
                    .map_err(|e| OciError::new(ErrorCode::NameInvalid, e.to_string()))?;
                let up = namespaces.to_upstream(&repo);
                parts.push(format!(
                    "from={}",
                    utf8_percent_encode(up.as_str(), QUERY_VALUE)
                ));
                from = Some(repo);
            }
            _ => parts.push(pair.to_string()),
        }
    }
    Ok((parts.join("&"), from))
}

/// Split `http://host:port/path?query` or `/path?query` into (origin, path, query).
fn split_url(url: &str) -> (Option<&str>, &str, Option<&str>) {
    let (origin, rest) = match url.find("://") {
        Some(i) => {
            let after = &url[i + 3..];
            let end = after.find('/').map(|p| i + 3 + p).unwrap_or(url.len());
            (Some(&url[..end]), &url[end..])
        }
        None => (None, url),
    };
    let (path, query) = match rest.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (rest, None),
    };
    (origin, path, query)
}

/// Rename the repository of a `/v2/<name>/...` path back to the client's name.
fn client_path(path: &str, namespaces: &NamespaceProvisioner) -> Option<String> {
    let tail = path.strip_prefix("/v2/")?;
    let decoded = percent_decode_str(tail).decode_utf8().ok()?;
    let endpoint = Endpoint::parse(&decoded).ok()?;
    match endpoint.name() {
        Some(name) => {
            let client = namespaces.to_client(name);
            Some(format!("/v2/{client}{}", &decoded[name.as_str().len()..]))
        }
        None => Some(path.to_string()),
    }
}

/// Rewrite an upstream `Location`: same-origin (or relative) `/v2/` URLs become
/// `<public_base>/v2/<client name>/...?<query>`; other hosts (a 307 to object storage) are
/// relayed untouched.
pub fn location(
    value: &str,
    upstream_base: &str,
    public_base: &str,
    namespaces: &NamespaceProvisioner,
) -> String {
    let (origin, path, query) = split_url(value);
    if let Some(o) = origin {
        if !o.eq_ignore_ascii_case(upstream_base) {
            // Elsewhere (object storage): as signed, but never with a user:password in it.
            return without_userinfo(value);
        }
    }
    let Some(path) = client_path(path, namespaces) else {
        return value.to_string();
    };
    match query {
        Some(q) => format!("{public_base}{path}?{q}"),
        None => format!("{public_base}{path}"),
    }
}

/// `scheme://user:pass@host/...` → `scheme://host/...`.
fn without_userinfo(url: &str) -> String {
    let Some(i) = url.find("://") else {
        return url.to_string();
    };
    let authority_end = url[i + 3..].find('/').map_or(url.len(), |p| i + 3 + p);
    match url[i + 3..authority_end].rfind('@') {
        Some(at) => format!("{}{}", &url[..i + 3], &url[i + 3 + at + 1..]),
        None => url.to_string(),
    }
}

/// Rewrite an upstream `Link: <url>; rel="next"` into a **relative** link on the adapter
/// (Harbor 1.x appends the link to its endpoint, so only relative links work for it). The
/// catalog's `last=` is renamed to the client's name.
pub fn link(value: &str, upstream_base: &str, namespaces: &NamespaceProvisioner) -> String {
    let (Some(start), Some(end)) = (value.find('<'), value.find('>')) else {
        return value.to_string();
    };
    if end < start {
        return value.to_string();
    }
    let url = &value[start + 1..end];
    let (origin, path, query) = split_url(url);
    if let Some(o) = origin {
        if !o.eq_ignore_ascii_case(upstream_base) {
            return value.to_string();
        }
    }
    let Some(path) = client_path(path, namespaces) else {
        return value.to_string();
    };
    let query = query.map(|q| {
        q.split('&')
            .map(|pair| match pair.split_once('=') {
                Some(("last", v)) if path == "/v2/_catalog" => {
                    let raw = percent_decode_str(v).decode_utf8_lossy().into_owned();
                    match RepoName::parse(&raw) {
                        Ok(r) => format!(
                            "last={}",
                            utf8_percent_encode(namespaces.to_client(&r).as_str(), QUERY_VALUE)
                        ),
                        Err(_) => pair.to_string(),
                    }
                }
                _ => pair.to_string(),
            })
            .collect::<Vec<_>>()
            .join("&")
    });
    let url = match query {
        Some(q) => format!("{path}?{q}"),
        None => path,
    };
    format!("{}<{url}>{}", &value[..start], &value[end + 1..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::NamespacesConfig;

    fn ns() -> NamespaceProvisioner {
        let mut cfg = NamespacesConfig::default();
        cfg.map.insert("harbor".into(), "tcr-ns".into());
        NamespaceProvisioner::new(&cfg)
    }

    #[test]
    fn accept_lines_are_merged_and_secrets_dropped() {
        let mut h = ActixHeaders::new();
        use actix_web::http::header::{HeaderName as N, HeaderValue as V};
        h.append(N::from_static("accept"), V::from_static("a/1"));
        h.append(N::from_static("accept"), V::from_static("b/2"));
        h.append(N::from_static("authorization"), V::from_static("Bearer x"));
        h.append(N::from_static("connection"), V::from_static("keep-alive"));
        h.append(N::from_static("content-length"), V::from_static("12"));
        let out = request_headers(&h);
        assert_eq!(out.get("accept").unwrap(), "a/1, b/2");
        assert!(out.get("authorization").is_none());
        assert!(out.get("connection").is_none());
        assert_eq!(out.get("content-length").unwrap(), "12");
    }

    #[test]
    fn queries() {
        let d = format!("sha256:{}", "a".repeat(64));
        let enc = format!("sha256%3A{}", "a".repeat(64));
        let (q, _) = upstream_query(&format!("_state=x%2By&digest={d}"), &ns()).unwrap();
        assert_eq!(q, format!("_state=x%2By&digest={enc}"));
        let (q, _) = upstream_query(&format!("digest={enc}"), &ns()).unwrap();
        assert_eq!(q, format!("digest={enc}"));
        let (q, from) = upstream_query(&format!("mount={d}&from=harbor/app"), &ns()).unwrap();
        assert_eq!(q, format!("mount={enc}&from=tcr-ns%2Fapp"));
        assert_eq!(from.unwrap().as_str(), "harbor/app");
        assert!(upstream_query("digest=nope", &ns()).is_err());
    }

    #[test]
    fn locations_and_links() {
        let up = "http://10.0.0.1:5001";
        assert_eq!(
            location(
                "http://10.0.0.1:5001/v2/tcr-ns/app/blobs/uploads/u-1?_state=abc",
                up,
                "http://adapter:5000",
                &ns()
            ),
            "http://adapter:5000/v2/harbor/app/blobs/uploads/u-1?_state=abc"
        );
        assert_eq!(
            location("/v2/tcr-ns/app/blobs/uploads/u-1", up, "http://a", &ns()),
            "http://a/v2/harbor/app/blobs/uploads/u-1"
        );
        assert_eq!(
            location("https://s3.example/bucket/x?sig=1", up, "http://a", &ns()),
            "https://s3.example/bucket/x?sig=1"
        );
        assert_eq!(
            location("https://u:p@cos.example/b/x?q=a@b", up, "http://a", &ns()),
            "https://cos.example/b/x?q=a@b"
        );
        assert_eq!(
            link(
                "<http://10.0.0.1:5001/v2/_catalog?last=tcr-ns%2Fapp&n=2>; rel=\"next\"",
                up,
                &ns()
            ),
            "</v2/_catalog?last=harbor%2Fapp&n=2>; rel=\"next\""
        );
        assert_eq!(
            link(
                "</v2/tcr-ns/app/tags/list?n=1&last=a>; rel=\"next\"",
                up,
                &ns()
            ),
            "</v2/harbor/app/tags/list?n=1&last=a>; rel=\"next\""
        );
    }
}
