//! Step 1 of the `/v2/` pipeline and what follows from it: the request parsed into typed values
//! ([`Route`]: endpoint, method, upstream query and names, the access needed), then the caller
//! authorized for exactly that access, and the namespace ensured before a first write.

use actix_web::http::{Method, StatusCode};
use actix_web::{HttpMessage, HttpRequest};
use percent_encoding::percent_decode_str;

use super::route::Endpoint;
use super::{rewrite, RegistryFront, RouteInfo};
use crate::auth::{Access, AuthService, Grant};
use crate::oci::{Digest, ErrorCode, OciError, RepoName};

/// A `/v2/` request parsed into typed values, in client and upstream names.
pub struct Route {
    pub endpoint: Endpoint,
    pub method: Method,
    /// The query for the upstream (`digest`, `mount` and `from` parsed and re-encoded).
    pub query: String,
    /// The source of a cross-repository mount (client name).
    pub mount_from: Option<RepoName>,
    /// The repository in upstream names (rename map applied).
    pub upstream: Option<RepoName>,
    /// The access the caller's token must grant.
    pub needed: Vec<Access>,
    /// The adapter's public URL for this request (forwarded headers when trusted).
    pub base: String,
    pub public_base: String,
}

impl Route {
    /// Step 1: the decoded path as an [`Endpoint`] (anything else is refused here), the query
    /// parsed, the access needed.
    pub fn parse(req: &HttpRequest, front: &RegistryFront) -> Result<Route, OciError> {
        let raw = req.path().strip_prefix("/v2").unwrap_or("");
        let raw = raw.strip_prefix('/').unwrap_or(raw);
        let tail = percent_decode_str(raw)
            .decode_utf8()
            .map_err(|_| OciError::new(ErrorCode::NameInvalid, "path is not UTF-8"))?;
        let method = req.method().clone();
        let endpoint = Endpoint::parse(&tail).map_err(|e| match e.code {
            // A reference that cannot be a tag names no manifest: reads of it are 404 (like
            // distribution, whose routes do not match it); only a PUT is told the tag is invalid.
            ErrorCode::TagInvalid if method != Method::PUT => {
                OciError::new(ErrorCode::ManifestUnknown, e.message)
                    .with_status(StatusCode::NOT_FOUND)
            }
            _ => e,
        })?;
        req.extensions_mut().insert(RouteInfo {
            route: endpoint.label(),
            repository: endpoint.name().map(|n| n.to_string()).unwrap_or_default(),
        });
        let (query, from) = rewrite::upstream_query(req.query_string(), &front.namespaces)?;
        let mount_from = match (&endpoint, &method) {
            (Endpoint::UploadStart { .. }, &Method::POST) => from,
            _ => None,
        };
        Ok(Route {
            needed: endpoint.needed(&method, mount_from.as_ref()),
            upstream: endpoint.name().map(|n| front.namespaces.to_upstream(n)),
            base: crate::auth::request_base(
                req.headers(),
                &front.public_base,
                front.trust_forwarded,
            ),
            public_base: front.public_base.clone(),
            endpoint,
            method,
            query,
            mount_from,
        })
    }

    /// Steps 2–4: identify the caller, apply the namespace policy and authorize the scope.
    pub async fn authorize(
        &self,
        req: &HttpRequest,
        auth: &AuthService,
    ) -> Result<Grant, OciError> {
        let grant = auth
            .authorize(req, &self.needed)
            .await
            .map_err(|e| crate::auth::challenge_on(e, &self.public_base, &self.base))?;
        check_method(&self.endpoint, &self.method)?;
        Ok(grant)
    }

    /// The digest a monolithic or final upload `PUT` names (`?digest=`).
    pub fn upload_digest(&self) -> Option<Digest> {
        if !matches!(self.endpoint, Endpoint::Upload { .. }) || self.method != Method::PUT {
            return None;
        }
        url::form_urlencoded::parse(self.query.as_bytes())
            .find(|(k, _)| k == "digest")
            .and_then(|(_, v)| Digest::parse(&v).ok())
    }

    /// An upload start the client will fill itself: `POST …/blobs/uploads/` without a mount or a
    /// monolithic `?digest=`.
    pub fn is_plain_upload_start(&self) -> bool {
        matches!(self.endpoint, Endpoint::UploadStart { .. })
            && self.method == Method::POST
            && url::form_urlencoded::parse(self.query.as_bytes())
                .all(|(k, _)| k != "digest" && k != "mount")
    }

    /// Before the first write into a namespace (an upload start, a manifest PUT): make sure it
    /// exists upstream.
    pub async fn ensure_namespace(
        &self,
        front: &RegistryFront,
        grant: &Grant,
    ) -> Result<(), OciError> {
        let writes = matches!(
            (&self.endpoint, &self.method),
            (Endpoint::UploadStart { .. }, &Method::POST)
                | (Endpoint::Manifest { .. }, &Method::PUT)
        );
        match (writes, &self.upstream) {
            (true, Some(up)) => {
                front
                    .namespaces
                    .ensure(up.namespace(), &grant.identity)
                    .await
            }
            _ => Ok(()),
        }
    }
}

/// The request's `Content-Length`, when it names one.
pub fn content_length(req: &HttpRequest) -> Option<u64> {
    req.headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
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
