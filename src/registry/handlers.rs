//! The `/v2/` handler: parse the path into an [`Endpoint`], authorize the access it needs, make
//! sure the namespace exists on writes, forward to the upstream with streamed bodies, and turn
//! the upstream's answer into the client's (rewritten headers, streamed body, reads of absent
//! things as 404; anonymous reads TCR refuses as a 401 challenge). Thin by design: parsing lives
//! in `route`, header work in `rewrite`, body plumbing in `body`, the upstream protocol in
//! `crate::upstream`.

use actix_web::body::SizedStream;
use actix_web::http::{Method, StatusCode};
use actix_web::{web, HttpMessage, HttpRequest, HttpResponse};
use percent_encoding::percent_decode_str;
use reqwest::header::{HeaderMap, HeaderValue, CONTENT_LENGTH};

use super::body::{self, bridge_stream, drive};
use super::route::Endpoint;
use super::{cloud, rewrite, RegistryFront, RouteInfo};
use crate::auth::AuthService;
use crate::oci::{Digest, ErrorCode, OciError, Reference, MAX_MANIFEST_BYTES};
use crate::upstream::{error_message, BasicAuth, Forward, ForwardBody, ReplayBody};

/// Largest JSON list (tags, catalog) or error body the adapter reads to rewrite it.
const SMALL_BODY_LIMIT: usize = 4 * 1024 * 1024;

/// `ANY /v2/{tail}`.
pub async fn dispatch(
    req: HttpRequest,
    payload: web::Payload,
    front: web::Data<RegistryFront>,
    auth: web::Data<AuthService>,
) -> Result<HttpResponse, OciError> {
    let raw = req.path().strip_prefix("/v2").unwrap_or("");
    let raw = raw.strip_prefix('/').unwrap_or(raw);
    let tail = percent_decode_str(raw)
        .decode_utf8()
        .map_err(|_| OciError::new(ErrorCode::NameInvalid, "path is not UTF-8"))?;
    let endpoint = Endpoint::parse(&tail).map_err(|e| match e.code {
        // A reference that cannot be a tag names no manifest: reads of it are 404 (like
        // distribution, whose routes do not match it); only a PUT is told the tag is invalid.
        ErrorCode::TagInvalid if req.method() != Method::PUT => {
            OciError::new(ErrorCode::ManifestUnknown, e.message).with_status(StatusCode::NOT_FOUND)
        }
        _ => e,
    })?;
    let method = req.method().clone();
    req.extensions_mut().insert(RouteInfo {
        route: endpoint.label(),
        repository: endpoint.name().map(|n| n.to_string()).unwrap_or_default(),
    });
    let (query, from) = rewrite::upstream_query(req.query_string(), &front.namespaces)?;
    let mount_from = match (&endpoint, &method) {
        (Endpoint::UploadStart { .. }, &Method::POST) => from,
        _ => None,
    };
    let needed = endpoint.needed(&method, mount_from.as_ref());
    let base = crate::auth::request_base(req.headers(), &front.public_base, front.trust_forwarded);
    let grant = auth
        .authorize(&req, &needed)
        .await
        .map_err(|e| crate::auth::challenge_on(e, &front.public_base, &base))?;
    check_method(&endpoint, &method)?;
    if endpoint == Endpoint::Base {
        return Ok(HttpResponse::Ok()
            .content_type("application/json")
            .body("{}"));
    }
    let caller_keys = grant.identity.api_keys.as_ref();
    if let (Endpoint::Catalog, &Method::GET, Some(keys)) = (&endpoint, &method, caller_keys) {
        return cloud::catalog(&front, keys, req.query_string()).await;
    }

    let upstream_name = endpoint.name().map(|n| front.namespaces.to_upstream(n));
    if let (Endpoint::Manifest { reference, .. }, &Method::DELETE, Some(up)) =
        (&endpoint, &method, &upstream_name)
    {
        let keys = caller_keys.or(front.provisioner_keys.as_ref());
        if let (Reference::Tag(tag), Some(keys)) = (reference, keys) {
            return cloud::delete_tag(&front, keys, up, tag.as_str()).await;
        }
    }
    let writes = matches!(
        (&endpoint, &method),
        (Endpoint::UploadStart { .. }, &Method::POST) | (Endpoint::Manifest { .. }, &Method::PUT)
    );
    if let (true, Some(up)) = (writes, &upstream_name) {
        front
            .namespaces
            .ensure(up.namespace(), grant.identity.api_keys.as_ref())
            .await?;
    }
    let scopes = match (&upstream_name, &method) {
        (None, _) => vec!["registry:catalog:*".to_string()],
        (Some(up), &Method::DELETE) => vec![format!("repository:{up}:*")],
        (Some(up), _) => {
            let mut s = vec![format!("repository:{up}:pull,push")];
            if let Some(f) = &mount_from {
                let f = front.namespaces.to_upstream(f);
                if &f != up {
                    s.push(format!("repository:{f}:pull"));
                }
            }
            s
        }
    };
    let path = endpoint
        .upstream_path(upstream_name.as_ref())
        .with_query(&query);
    let mut headers = rewrite::request_headers(req.headers());
    let credential = grant.identity.upstream.as_ref().map(|c| BasicAuth {
        username: c.username.clone(),
        password: c.password.clone(),
    });
    let request = |headers: HeaderMap, body: ForwardBody, method: Method| Forward {
        method: reqwest::Method::from_bytes(method.as_str().as_bytes())
            .unwrap_or(reqwest::Method::GET),
        path: path.clone(),
        headers,
        body,
        scopes: scopes.clone(),
        credential: credential.clone(),
        route: endpoint.label(),
    };

    let mut pump = None;
    let body = if matches!(method, Method::GET | Method::HEAD | Method::DELETE) {
        headers.remove(CONTENT_LENGTH);
        headers.remove(reqwest::header::CONTENT_TYPE);
        ForwardBody::Empty
    } else if matches!(endpoint, Endpoint::Manifest { .. }) {
        let declared = content_length(&req);
        if declared.is_some_and(|n| n > MAX_MANIFEST_BYTES as u64) {
            return Err(body::too_large(MAX_MANIFEST_BYTES));
        }
        let bytes =
            body::collect_limited(payload, MAX_MANIFEST_BYTES, &front.metrics.bytes_in).await?;
        headers.insert(CONTENT_LENGTH, HeaderValue::from(bytes.len()));
        ForwardBody::Bytes(bytes)
    } else if has_body(&req) {
        let (stream, p) =
            bridge_stream(bytes::Bytes::new(), payload, front.metrics.bytes_in.clone());
        pump = Some(p);
        match front.replay_cap {
            0 => ForwardBody::Stream(reqwest::Body::wrap_stream(stream)),
            cap => ForwardBody::Replayable(ReplayBody::new(stream, cap)),
        }
    } else {
        headers.insert(CONTENT_LENGTH, HeaderValue::from(0));
        ForwardBody::Empty
    };
    let replay = match &body {
        ForwardBody::Empty => Some(ForwardBody::Empty),
        ForwardBody::Bytes(b) => Some(ForwardBody::Bytes(b.clone())),
        ForwardBody::Replayable(r) => Some(ForwardBody::Replayable(r.clone())),
        ForwardBody::Stream(_) => None,
    };
    let fwd = request(headers.clone(), body, method.clone());
    let mut resp = match pump {
        Some(pump) => drive(front.upstream.send(fwd), pump).await?,
        None => front.upstream.send(fwd).await?,
    };

    let status = resp.status();
    if (status.is_client_error() || status.is_server_error()) && !Endpoint::is_read(&method) {
        // A write into a namespace TCR does not have: forget it, and create it (once) when
        // there are keys to do so; without keys, say which keys are needed.
        let failure = Failure::read(resp).await;
        let (Some(up), true) = (&upstream_name, failure.missing_namespace()) else {
            return Err(failure.into_oci(&endpoint, &method));
        };
        let ns = up.namespace();
        front.namespaces.invalidate(ns);
        if caller_keys.is_none() && front.provisioner_keys.is_none() {
            return Err(front.namespaces.keys_needed_error(ns));
        }
        let still_replayable = |b: &ForwardBody| match b {
            ForwardBody::Replayable(r) => r.can_replay(),
            _ => true,
        };
        let Some(body) = replay.filter(still_replayable) else {
            return Err(failure.into_oci(&endpoint, &method));
        };
        tracing::info!(
            namespace = ns,
            "namespace missing upstream: ensuring it again"
        );
        front.namespaces.ensure(ns, caller_keys).await?;
        resp = front
            .upstream
            .send(request(headers.clone(), body, method.clone()))
            .await?;
    }
    let resp = super::redirect::resolve(&front, &endpoint, &method, &headers, resp).await?;
    let status = resp.status();
    if status.is_client_error() || status.is_server_error() {
        let failure = Failure::read(resp).await;
        // An anonymous read TCR refuses (a private or missing namespace): challenge the client
        // so that it logs in, instead of calling the thing absent.
        if grant.identity.is_anonymous()
            && Endpoint::is_read(&method)
            && matches!(status.as_u16(), 401 | 403)
        {
            let err = auth.unauthorized(
                &needed,
                None,
                format!("authentication required: {}", failure.message),
            );
            return Err(crate::auth::challenge_on(err, &front.public_base, &base));
        }
        return Err(failure.into_oci(&endpoint, &method));
    }
    let mut out = HttpResponse::build(
        StatusCode::from_u16(status.as_u16()).unwrap_or(StatusCode::BAD_GATEWAY),
    );
    copy_headers(&front, &base, resp.headers(), &mut out);

    // Manifests must always carry their digest (Harbor compares it to skip identical images).
    let is_manifest_read = matches!(endpoint, Endpoint::Manifest { .. })
        && (method == Method::GET || method == Method::HEAD)
        && status.is_success();
    if is_manifest_read && !resp.headers().contains_key("docker-content-digest") {
        let resp = if method == Method::HEAD {
            front
                .upstream
                .send(request(headers.clone(), ForwardBody::Empty, Method::GET))
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
        if method == Method::HEAD {
            let len = bytes.len() as u64;
            return Ok(out.body(SizedStream::new(
                len,
                futures_util::stream::empty::<Result<bytes::Bytes, std::io::Error>>(),
            )));
        }
        front.metrics.bytes_out.inc_by(bytes.len() as u64);
        return Ok(out.body(bytes));
    }

    if method == Method::GET && matches!(endpoint, Endpoint::Tags { .. } | Endpoint::Catalog) {
        let bytes = body::read_limited(resp, SMALL_BODY_LIMIT)
            .await
            .map_err(|e| OciError::new(ErrorCode::Unavailable, e))?;
        let bytes = rename_list(&front, &endpoint, bytes);
        front.metrics.bytes_out.inc_by(bytes.len() as u64);
        return Ok(out.body(bytes));
    }

    // The header, not `content_length()`: for HEAD the latter is the (empty) body's size.
    let length = resp
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .or_else(|| {
            (method != Method::HEAD)
                .then(|| resp.content_length())
                .flatten()
        });
    if method == Method::HEAD {
        let empty = futures_util::stream::empty::<Result<bytes::Bytes, std::io::Error>>();
        return Ok(match length {
            Some(n) => out.body(SizedStream::new(n, empty)),
            None => out.finish(),
        });
    }
    let stream = body::response_stream(resp, front.metrics.bytes_out.clone());
    Ok(match length {
        Some(n) => out.body(SizedStream::new(n, stream)),
        None => out.streaming(stream),
    })
}

/// `ANY /v2` (no trailing slash): the base endpoint.
pub async fn dispatch_base(
    req: HttpRequest,
    front: web::Data<RegistryFront>,
    auth: web::Data<AuthService>,
) -> Result<HttpResponse, OciError> {
    req.extensions_mut().insert(RouteInfo {
        route: "base",
        repository: String::new(),
    });
    let base = crate::auth::request_base(req.headers(), &front.public_base, front.trust_forwarded);
    auth.authorize(&req, &[])
        .await
        .map_err(|e| crate::auth::challenge_on(e, &front.public_base, &base))?;
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .body("{}"))
}

fn check_method(endpoint: &Endpoint, method: &Method) -> Result<(), OciError> {
    let ok = match endpoint {
        Endpoint::Base | Endpoint::Catalog | Endpoint::Tags { .. } | Endpoint::Referrers { .. } => {
            matches!(*method, Method::GET | Method::HEAD)
        }
        Endpoint::Manifest { .. } => {
            matches!(
                *method,
                Method::GET | Method::HEAD | Method::PUT | Method::DELETE
            )
        }
        Endpoint::Blob { .. } => matches!(*method, Method::GET | Method::HEAD | Method::DELETE),
        Endpoint::UploadStart { .. } => *method == Method::POST,
        Endpoint::Upload { .. } => {
            matches!(
                *method,
                Method::GET | Method::PATCH | Method::PUT | Method::DELETE
            )
        }
    };
    if ok {
        Ok(())
    } else {
        Err(OciError::new(
            ErrorCode::Unsupported,
            format!("{method} is not supported on this endpoint"),
        ))
    }
}

fn content_length(req: &HttpRequest) -> Option<u64> {
    req.headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

/// Whether the client sends a body: a non-zero `Content-Length` or chunked encoding.
fn has_body(req: &HttpRequest) -> bool {
    match content_length(req) {
        Some(n) => n > 0,
        None => req
            .headers()
            .get("transfer-encoding")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked")),
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

/// An upstream 4xx/5xx, read (its body is small or cut).
struct Failure {
    status: reqwest::StatusCode,
    retry_after: Option<String>,
    message: String,
    parsed: Option<serde_json::Value>,
    upstream_code: Option<String>,
}

impl Failure {
    async fn read(resp: reqwest::Response) -> Failure {
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
    fn missing_namespace(&self) -> bool {
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
    fn into_oci(self, endpoint: &Endpoint, method: &Method) -> OciError {
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
