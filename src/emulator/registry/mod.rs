//! The emulator's data plane: an OCI distribution v1.1 registry plus a Harbor-style token realm
//! (`/service/token`), mounted on its own listener. One tail route `/v2/{tail}` is parsed into a
//! typed [`Route`] and dispatched to thin handlers in `blobs`, `uploads` and `manifests`;
//! authorization and tokens live in `auth`. Handlers call `Storage`; storage never sees HTTP.
//! Every response carries `Docker-Distribution-API-Version` and is counted in `/metrics`; request
//! and response bodies go through the WAN model ([`super::wan`]: byte counters, bandwidth cap).

mod auth;
mod blobs;
mod manifests;
mod uploads;

pub(crate) use blobs::serve_blob_file;

use actix_web::dev::Service;
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};

use super::storage::StorageError;
use super::EmulatorState;
use crate::oci::{ErrorCode, OciError, RepoName};

pub(crate) type State = web::Data<EmulatorState>;
pub(crate) type HandlerResult = Result<HttpResponse, OciError>;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("")
            .wrap_fn(|mut req, srv| {
                let route = route_label(req.path());
                let method = req.method().to_string();
                let state = req.app_data::<State>().cloned();
                if let Some(s) = &state {
                    s.journal
                        .record(req.method().as_str(), &req.uri().to_string());
                    super::wan::meter_request(&mut req, s, route);
                }
                let fut = srv.call(req);
                async move {
                    let mut res = fut.await?;
                    res.headers_mut().insert(
                        HeaderName::from_static("docker-distribution-api-version"),
                        HeaderValue::from_static("registry/2.0"),
                    );
                    let Some(s) = state else {
                        return Ok(res.map_into_boxed_body());
                    };
                    s.metrics
                        .registry_request(route, &method, res.status().as_u16());
                    Ok(super::wan::meter_response(res, &s, route))
                }
            })
            .route("/metrics", web::get().to(metrics))
            .route("/service/token", web::get().to(auth::token))
            .route("/v2", web::route().to(dispatch))
            .route("/v2/{tail:.*}", web::route().to(dispatch))
            .configure(super::charts::configure),
    );
}

async fn metrics(state: State) -> HttpResponse {
    crate::telemetry::metrics_response(&state.metrics.registry)
}

/// Low-cardinality route label for metrics.
fn route_label(path: &str) -> &'static str {
    if path == "/metrics" {
        "metrics"
    } else if path.starts_with("/api/chartrepo/") {
        "chart_api"
    } else if path.starts_with("/chartrepo/") {
        "chart_repo"
    } else if path.starts_with("/service/token") {
        "token"
    } else if path == "/v2" || path == "/v2/" {
        "base"
    } else if !path.starts_with("/v2/") {
        "other"
    } else if path == "/v2/_catalog" {
        "catalog"
    } else if path.ends_with("/tags/list") {
        "tags"
    } else if path.contains("/manifests/") {
        "manifest"
    } else if path.contains("/blobs/uploads") {
        "upload"
    } else if path.contains("/blobs/") {
        "blob"
    } else if path.contains("/referrers/") {
        "referrers"
    } else {
        "other"
    }
}

/// A parsed `/v2/...` request path.
#[derive(Debug, PartialEq)]
pub(crate) enum Route {
    Base,
    Catalog,
    Tags(RepoName),
    Manifest(RepoName, String),
    UploadStart(RepoName),
    Upload(RepoName, String),
    Blob(RepoName, String),
    Referrers(RepoName, String),
}

fn name(s: &str) -> Result<RepoName, OciError> {
    RepoName::parse(s).map_err(|e| OciError::new(ErrorCode::NameInvalid, e.to_string()))
}

/// Split the tail after `/v2/` into a route. Names may contain slashes, so each marker is
/// searched from the right and the part after it must be a single path segment.
pub(crate) fn parse_route(tail: &str) -> Result<Route, OciError> {
    let single = |rest: &str| !rest.is_empty() && !rest.contains('/');
    if tail.is_empty() {
        return Ok(Route::Base);
    }
    if tail == "_catalog" {
        return Ok(Route::Catalog);
    }
    if let Some(n) = tail.strip_suffix("/tags/list") {
        return Ok(Route::Tags(name(n)?));
    }
    if let Some((n, r)) = tail.rsplit_once("/manifests/") {
        if single(r) {
            return Ok(Route::Manifest(name(n)?, r.to_string()));
        }
    }
    for suffix in ["/blobs/uploads", "/blobs/uploads/"] {
        if let Some(n) = tail.strip_suffix(suffix) {
            return Ok(Route::UploadStart(name(n)?));
        }
    }
    if let Some((n, id)) = tail.rsplit_once("/blobs/uploads/") {
        if single(id) {
            return Ok(Route::Upload(name(n)?, id.to_string()));
        }
    }
    if let Some((n, d)) = tail.rsplit_once("/blobs/") {
        if single(d) {
            return Ok(Route::Blob(name(n)?, d.to_string()));
        }
    }
    if let Some((n, d)) = tail.rsplit_once("/referrers/") {
        if single(d) {
            return Ok(Route::Referrers(name(n)?, d.to_string()));
        }
    }
    Err(OciError::new(
        ErrorCode::NameUnknown,
        format!("no such endpoint: /v2/{tail}"),
    ))
}

fn unsupported(method: &Method) -> OciError {
    OciError::new(
        ErrorCode::Unsupported,
        format!("method {method} not allowed here"),
    )
}

async fn dispatch(req: HttpRequest, payload: web::Payload, state: State) -> HandlerResult {
    state.faults.delay().await;
    if state.faults.registry_fail() {
        return Err(OciError::new(
            ErrorCode::Unavailable,
            "injected failure (emulator fault knob)",
        ));
    }
    let tail = req.match_info().get("tail").unwrap_or("");
    let route = parse_route(tail)?;
    let m = req.method().clone();
    let head = m == Method::HEAD;
    match route {
        Route::Base => auth::base(&req, &state),
        Route::Catalog if m == Method::GET => manifests::catalog(&req, &state).await,
        Route::Tags(n) if m == Method::GET => manifests::tags(&req, &state, &n).await,
        Route::Manifest(n, r) if m == Method::GET || head => {
            manifests::get(&req, &state, &n, &r).await
        }
        Route::Manifest(n, r) if m == Method::PUT => {
            manifests::put(&req, payload, &state, &n, &r).await
        }
        Route::Manifest(n, r) if m == Method::DELETE => {
            manifests::delete(&req, &state, &n, &r).await
        }
        Route::Referrers(n, d) if m == Method::GET => {
            manifests::referrers(&req, &state, &n, &d).await
        }
        Route::Blob(n, d) if m == Method::GET || head => blobs::get(&req, &state, &n, &d).await,
        Route::Blob(n, d) if m == Method::DELETE => blobs::delete(&req, &state, &n, &d).await,
        Route::UploadStart(n) if m == Method::POST => {
            uploads::start(&req, payload, &state, &n).await
        }
        Route::Upload(n, id) if m == Method::GET => uploads::status(&req, &state, &n, &id).await,
        Route::Upload(n, id) if m == Method::PATCH || m == Method::PUT => {
            uploads::write(&req, payload, &state, &n, &id).await
        }
        Route::Upload(n, id) if m == Method::DELETE => uploads::cancel(&req, &state, &n, &id).await,
        _ => Err(unsupported(&m)),
    }
}

/// Map a storage failure to the OCI error a client sees.
pub(crate) fn storage_error(e: StorageError) -> OciError {
    match e {
        StorageError::NotFound(what) => {
            OciError::new(ErrorCode::BlobUploadUnknown, format!("{what} not found"))
        }
        StorageError::Io(msg) => {
            tracing::error!(error = %msg, "emulator storage failure");
            OciError::new(ErrorCode::Unknown, "storage failure")
        }
        StorageError::DigestMismatch { computed } => OciError::new(
            ErrorCode::DigestInvalid,
            format!("provided digest did not match uploaded content (computed {computed})"),
        ),
        StorageError::TooLarge => too_large("request body"),
        StorageError::BodyAborted(msg) => OciError::new(
            ErrorCode::BlobUploadInvalid,
            format!("request body aborted: {msg}"),
        )
        .with_status(StatusCode::BAD_REQUEST),
        StorageError::OutOfOrder { size } => OciError::new(
            ErrorCode::RangeInvalid,
            format!("chunk out of order: the upload holds {size} bytes"),
        )
        .with_header(HeaderName::from_static("range"), &range_value(size)),
    }
}

pub(crate) fn too_large(what: &str) -> OciError {
    OciError::new(ErrorCode::SizeInvalid, format!("{what} is too large"))
        .with_status(StatusCode::PAYLOAD_TOO_LARGE)
}

/// `Range` header value of an upload holding `size` bytes (`0-0` when empty, as distribution).
pub(crate) fn range_value(size: u64) -> String {
    format!("0-{}", size.saturating_sub(1))
}

/// Query parameters as (key, value) pairs, keeping repeats.
pub(crate) fn query_pairs(req: &HttpRequest) -> Vec<(String, String)> {
    url::form_urlencoded::parse(req.query_string().as_bytes())
        .into_owned()
        .collect()
}

pub(crate) fn query_get(req: &HttpRequest, key: &str) -> Option<String> {
    query_pairs(req)
        .into_iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_split_on_the_last_marker() {
        let d = format!("sha256:{}", "a".repeat(64));
        assert_eq!(parse_route("").unwrap(), Route::Base);
        assert_eq!(parse_route("_catalog").unwrap(), Route::Catalog);
        assert!(
            matches!(parse_route("a/b/tags/list").unwrap(), Route::Tags(n) if n.as_str() == "a/b")
        );
        assert!(
            matches!(parse_route("a/b/c/manifests/v1").unwrap(), Route::Manifest(n, r) if n.as_str() == "a/b/c" && r == "v1")
        );
        assert!(matches!(
            parse_route("a/b/blobs/uploads/").unwrap(),
            Route::UploadStart(_)
        ));
        assert!(
            matches!(parse_route("a/b/blobs/uploads/x-1").unwrap(), Route::Upload(_, id) if id == "x-1")
        );
        assert!(
            matches!(parse_route(&format!("a/blobs/{d}")).unwrap(), Route::Blob(n, _) if n.as_str() == "a")
        );
        assert!(matches!(
            parse_route(&format!("a/referrers/{d}")).unwrap(),
            Route::Referrers(..)
        ));
        assert_eq!(
            parse_route("A/manifests/x").unwrap_err().code,
            ErrorCode::NameInvalid
        );
        assert_eq!(
            parse_route("a/whatever").unwrap_err().code,
            ErrorCode::NameUnknown
        );
    }
}
