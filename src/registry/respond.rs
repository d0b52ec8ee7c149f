//! The last step of the `/v2/` pipeline: TCR's answer as the client's. Failures become the
//! client's error (reads of absent things as 404, anonymous refusals as a challenge, OCI bodies
//! passed through); successes get rewritten headers (`Location`, `Link`), a manifest digest
//! when TCR left it out, client names in tag and catalog lists, and a streamed body.

use actix_web::body::SizedStream;
use actix_web::http::{Method, StatusCode};
use actix_web::HttpResponse;
use reqwest::header::CONTENT_LENGTH;

use super::body;
use super::failure::Failure;
use super::plan::Plan;
use super::request::Route;
use super::route::Endpoint;
use super::{rewrite, RegistryFront};
use crate::auth::{AuthService, Grant};
use crate::oci::{Digest, ErrorCode, OciError, MAX_MANIFEST_BYTES};
use crate::upstream::ForwardBody;

/// Largest JSON list (tags, catalog) or error body the adapter reads to rewrite it.
const SMALL_BODY_LIMIT: usize = 4 * 1024 * 1024;

/// Shape TCR's answer for the client.
pub async fn shape(
    front: &RegistryFront,
    auth: &AuthService,
    route: &Route,
    grant: &Grant,
    plan: &Plan,
    resp: reqwest::Response,
) -> Result<HttpResponse, OciError> {
    let status = resp.status();
    if status.is_client_error() || status.is_server_error() {
        return Err(refusal(auth, route, grant, resp).await);
    }
    let mut out = HttpResponse::build(
        StatusCode::from_u16(status.as_u16()).unwrap_or(StatusCode::BAD_GATEWAY),
    );
    copy_headers(front, &route.base, resp.headers(), &mut out);
    let method = &route.method;
    let is_manifest_read = matches!(route.endpoint, Endpoint::Manifest { .. })
        && (*method == Method::GET || *method == Method::HEAD);
    if is_manifest_read && !resp.headers().contains_key("docker-content-digest") {
        return with_digest(front, plan, method, resp, out).await;
    }
    if *method == Method::GET && matches!(route.endpoint, Endpoint::Tags { .. } | Endpoint::Catalog)
    {
        let bytes = body::read_limited(resp, SMALL_BODY_LIMIT)
            .await
            .map_err(|e| OciError::new(ErrorCode::Unavailable, e))?;
        let bytes = rename_list(front, &route.endpoint, bytes);
        front.metrics.bytes_out.inc_by(bytes.len() as u64);
        return Ok(out.body(bytes));
    }
    Ok(stream_body(front, method, resp, out))
}

/// An upstream 4xx/5xx as the client's error. An anonymous read TCR refuses (a private or
/// missing namespace) is a challenge, so that the client logs in instead of calling it absent.
async fn refusal(
    auth: &AuthService,
    route: &Route,
    grant: &Grant,
    resp: reqwest::Response,
) -> OciError {
    let status = resp.status();
    let failure = Failure::read(resp).await;
    if grant.identity.is_anonymous()
        && Endpoint::is_read(&route.method)
        && matches!(status.as_u16(), 401 | 403)
    {
        let err = auth.unauthorized(
            &route.needed,
            None,
            format!("authentication required: {}", failure.message),
        );
        return crate::auth::challenge_on(err, &route.public_base, &route.base);
    }
    failure.into_oci(&route.endpoint, &route.method)
}

/// Manifests must always carry their digest (Harbor compares it to skip identical images):
/// read the manifest (a GET for a HEAD) and compute it.
async fn with_digest(
    front: &RegistryFront,
    plan: &Plan,
    method: &Method,
    resp: reqwest::Response,
    mut out: actix_web::HttpResponseBuilder,
) -> Result<HttpResponse, OciError> {
    let resp = if *method == Method::HEAD {
        front
            .upstream
            .send(plan.forward(ForwardBody::Empty, &Method::GET))
            .await?
    } else {
        resp
    };
    let bytes = body::read_limited(resp, MAX_MANIFEST_BYTES)
        .await
        .map_err(|e| OciError::new(ErrorCode::Unavailable, e))?;
    out.insert_header((
        "Docker-Content-Digest",
        Digest::sha256_of(&bytes).to_string(),
    ));
    if *method == Method::HEAD {
        let len = bytes.len() as u64;
        return Ok(out.body(SizedStream::new(
            len,
            futures_util::stream::empty::<Result<bytes::Bytes, std::io::Error>>(),
        )));
    }
    front.metrics.bytes_out.inc_by(bytes.len() as u64);
    Ok(out.body(bytes))
}

/// The body streamed through with its length (none for HEAD).
fn stream_body(
    front: &RegistryFront,
    method: &Method,
    resp: reqwest::Response,
    mut out: actix_web::HttpResponseBuilder,
) -> HttpResponse {
    // The header, not `content_length()`: for HEAD the latter is the (empty) body's size.
    let length = resp
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .or_else(|| {
            (*method != Method::HEAD)
                .then(|| resp.content_length())
                .flatten()
        });
    if *method == Method::HEAD {
        let empty = futures_util::stream::empty::<Result<bytes::Bytes, std::io::Error>>();
        return match length {
            Some(n) => out.body(SizedStream::new(n, empty)),
            None => out.finish(),
        };
    }
    let stream = body::response_stream(resp, front.metrics.bytes_out.clone());
    match length {
        Some(n) => out.body(SizedStream::new(n, stream)),
        None => out.streaming(stream),
    }
}

/// Upstream response headers → client headers (rewritten `Location`/`Link`, no hop-by-hop,
/// no upstream challenge, no length: the body sets it).
fn copy_headers(
    front: &RegistryFront,
    base: &str,
    upstream: &reqwest::header::HeaderMap,
    out: &mut actix_web::HttpResponseBuilder,
) {
    for (name, value) in upstream.iter() {
        let n = name.as_str();
        if rewrite::is_hop_by_hop(n)
            || matches!(
                n,
                "content-length"
                    | "www-authenticate"
                    | "docker-distribution-api-version"
                    | "set-cookie"
                    | "date"
                    | "server"
            )
        {
            continue;
        }
        let Ok(v) = value.to_str() else { continue };
        let v = match n {
            "location" => rewrite::location(v, front.upstream.base(), base, &front.namespaces),
            "link" => rewrite::link(v, front.upstream.base(), &front.namespaces),
            _ => v.to_string(),
        };
        out.append_header((n, v));
    }
}

/// Rename repositories in a tags list (`name`) or catalog (`repositories`) to client names.
fn rename_list(front: &RegistryFront, endpoint: &Endpoint, bytes: bytes::Bytes) -> bytes::Bytes {
    let Ok(mut v) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
        return bytes;
    };
    let rename = |s: &str| match crate::oci::RepoName::parse(s) {
        Ok(r) => front.namespaces.to_client(&r).to_string(),
        Err(_) => s.to_string(),
    };
    match endpoint {
        Endpoint::Tags { name } => v["name"] = serde_json::Value::String(name.to_string()),
        _ => {
            if let Some(list) = v["repositories"].as_array_mut() {
                for r in list.iter_mut() {
                    if let Some(s) = r.as_str() {
                        *r = serde_json::Value::String(rename(s));
                    }
                }
            }
        }
    }
    serde_json::to_vec(&v).map(Into::into).unwrap_or(bytes)
}
