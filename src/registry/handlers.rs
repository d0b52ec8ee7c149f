//! The `/v2/` handler: the request pipeline every request takes, one named step each —
//! parse the route into typed values → identify the caller, apply the namespace policy and
//! authorize the scope (`crate::auth`) → answer locally what the cloud API answers better
//! (catalog, tag deletes) → make sure the namespace exists before a first write → plan the
//! upstream call ([`Plan`]) → send it with the retry policy → follow or relay a redirect →
//! shape the response ([`respond`]). The Harbor API front takes the same steps with its own
//! typed names (`crate::harbor_api`).

use actix_web::http::{Method, StatusCode};
use actix_web::{web, HttpMessage, HttpRequest, HttpResponse};
use percent_encoding::percent_decode_str;

use super::plan::Plan;
use super::route::Endpoint;
use super::{cloud, dedup, respond, rewrite, RegistryFront, RouteInfo};
use crate::auth::{Access, AuthService, Grant};
use crate::oci::{Digest, ErrorCode, OciError, Reference, RepoName};

/// `ANY /v2/{tail}`.
pub async fn dispatch(
    req: HttpRequest,
    payload: web::Payload,
    front: web::Data<RegistryFront>,
    auth: web::Data<AuthService>,
) -> Result<HttpResponse, OciError> {
    let route = Route::parse(&req, &front)?;
    let grant = route.authorize(&req, &auth).await?;
    if let Some(answer) = answer_locally(&route, &front, &grant).await? {
        return Ok(answer);
    }
    route.ensure_namespace(&front, &grant).await?;
    let mut plan = Plan::new(&req, payload, &route, &front, &grant).await?;
    let _in_flight = route.mark_upload(&front);
    let resp = plan.send(&front, &route, &grant).await?;
    let resp =
        super::redirect::resolve(&front, &route.endpoint, &route.method, &plan.headers, resp)
            .await?;
    respond::shape(&front, &auth, &route, &grant, &plan, resp).await
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
    Ok(empty_json())
}

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
    fn parse(req: &HttpRequest, front: &RegistryFront) -> Result<Route, OciError> {
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
    async fn authorize(&self, req: &HttpRequest, auth: &AuthService) -> Result<Grant, OciError> {
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

    /// While an upload's last `PUT` is in flight, a HEAD for the same blob elsewhere waits for
    /// it and then mounts instead of sending the same bytes again.
    fn mark_upload(&self, front: &RegistryFront) -> Option<dedup::UploadMark> {
        let index = front.dedup.as_ref()?;
        Some(index.uploading(&self.upload_digest()?, self.upstream.as_ref()?))
    }

    /// Before the first write into a namespace (an upload start, a manifest PUT): make sure it
    /// exists upstream.
    async fn ensure_namespace(&self, front: &RegistryFront, grant: &Grant) -> Result<(), OciError> {
        let writes = matches!(
            (&self.endpoint, &self.method),
            (Endpoint::UploadStart { .. }, &Method::POST)
                | (Endpoint::Manifest { .. }, &Method::PUT)
        );
        match (writes, &self.upstream) {
            (true, Some(up)) => {
                front
                    .namespaces
                    .ensure(up.namespace(), grant.identity.api_keys.as_ref())
                    .await
            }
            _ => Ok(()),
        }
    }
}

/// The routes answered without forwarding: the base endpoint, the catalog from the cloud API
/// (callers with API keys), and tag deletes through `DeleteImage` (keys of the caller or the
/// provisioner).
async fn answer_locally(
    route: &Route,
    front: &RegistryFront,
    grant: &Grant,
) -> Result<Option<HttpResponse>, OciError> {
    let caller_keys = grant.identity.api_keys.as_ref();
    match (&route.endpoint, &route.method, &route.upstream) {
        (Endpoint::Base, _, _) => Ok(Some(empty_json())),
        (Endpoint::Blob { digest, .. }, &Method::HEAD, _) => {
            Ok(dedup::answer_head(front, route, grant, digest).await)
        }
        (Endpoint::Catalog, &Method::GET, _) => match caller_keys {
            Some(keys) => cloud::catalog(front, keys, &route.query).await.map(Some),
            None => Ok(None),
        },
        (Endpoint::Manifest { reference, .. }, &Method::DELETE, Some(up)) => {
            let keys = caller_keys.or(front.provisioner_keys.as_ref());
            match (reference, keys) {
                (Reference::Tag(tag), Some(keys)) => {
                    cloud::delete_tag(front, keys, up, tag.as_str())
                        .await
                        .map(Some)
                }
                _ => Ok(None),
            }
        }
        _ => Ok(None),
    }
}

fn empty_json() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body("{}")
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
