//! The `/v2/` handler: the request pipeline every request takes, one named step each —
//! parse the route into typed values → identify the caller, apply the namespace policy and
//! authorize the scope (`crate::auth`) → answer locally what the cloud API answers better
//! (catalog, tag deletes) → make sure the namespace exists before a first write → plan the
//! upstream call ([`Plan`]) → send it with the retry policy → follow or relay a redirect →
//! shape the response ([`respond`]). The WAN room ([`wan`]) is called at its named steps: a blob
//! HEAD it may answer, `before_send`, the `upload_mark` of an upload in flight (taken
//! before a streamed chunked upload is ended), `stream_chunks`, the manifest's `commit_point`,
//! and `after_send` with TCR's answer. The Harbor API front takes the same steps with its own
//! typed names (`crate::harbor_api`).

use actix_web::http::Method;
use actix_web::{web, HttpMessage, HttpRequest, HttpResponse};

use super::plan::Plan;
use super::request::Route;
use super::route::Endpoint;
use super::wan::{self, Intercept};
use super::{cloud, respond, RegistryFront, RouteInfo};
use crate::auth::{AuthService, Grant};
use crate::oci::{ErrorCode, OciError, Reference, RepoName};
use crate::upstream::{permits, BasicAuth};

/// `ANY /v2/{tail}`.
pub async fn dispatch(
    req: HttpRequest,
    payload: web::Payload,
    front: web::Data<RegistryFront>,
    auth: web::Data<AuthService>,
) -> Result<HttpResponse, OciError> {
    let mut route = Route::parse(&req, &front)?;
    let grant = route.authorize(&req, &auth).await?;
    let payload = match wan::elsewhere(&front, &route, &req, payload).await? {
        Intercept::Answered(answer) => return Ok(answer),
        Intercept::Pass(payload) => payload,
    };
    if let Some(answer) = answer_locally(&route, &front, &grant).await? {
        return Ok(answer);
    }
    let payload = match wan::before_send(&front, &route, &grant, &req, payload).await? {
        Intercept::Answered(answer) => return Ok(answer),
        Intercept::Pass(payload) => payload,
    };
    let _in_flight = wan::upload_mark(&front, &route).await;
    let payload = match wan::stream_chunks(&front, &mut route, &grant, &req, payload).await? {
        Intercept::Answered(answer) => return Ok(answer),
        Intercept::Pass(payload) => payload,
    };
    route.ensure_namespace(&front, &grant).await?;
    let mut plan = Plan::new(&req, payload, &route, &front, &grant).await?;
    wan::commit_point(&front, &route, plan.manifest.as_deref()).await?;
    let resp = plan.send(&front, &route, &grant).await?;
    let resp =
        super::redirect::resolve(&front, &route.endpoint, &route.method, &plan.headers, resp)
            .await?;
    wan::after_send(&front, &route, &grant, plan.manifest.as_deref(), &resp).await;
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

/// The routes answered without forwarding: the base endpoint, the catalog from the cloud API
/// (callers with API keys), and tag deletes through `DeleteImage` (with the caller's keys, or
/// the provisioner's once TCR's realm granted the caller `delete` there: [`delete_tag`]).
async fn answer_locally(
    route: &Route,
    front: &web::Data<RegistryFront>,
    grant: &Grant,
) -> Result<Option<HttpResponse>, OciError> {
    let caller_keys = grant.identity.api_keys.as_ref();
    match (&route.endpoint, &route.method, &route.upstream) {
        (Endpoint::Base, _, _) => Ok(Some(empty_json())),
        (Endpoint::Blob { digest, name }, &Method::HEAD, Some(up)) => {
            Ok(wan::head(front, name, up, grant, digest).await)
        }
        (Endpoint::Catalog, &Method::GET, _) => match caller_keys {
            Some(keys) => cloud::catalog(front, keys, &route.query).await.map(Some),
            None => Ok(None),
        },
        (
            Endpoint::Manifest {
                reference: Reference::Tag(tag),
                name,
            },
            &Method::DELETE,
            Some(up),
        ) => delete_tag(front, grant, name, up, tag.as_str()).await,
        _ => Ok(None),
    }
}

/// `DELETE /v2/<name>/manifests/<tag>` through `DeleteImage`: with the caller's own API keys
/// (CAM decides); for a registry-credential caller with the provisioner's keys only when TCR's
/// own token realm, asked with the caller's credential, grants it `delete` on the repository —
/// else `403 DENIED` with what TCR granted, and no cloud API call. Without a grant to read
/// (no provisioner keys, an anonymous caller, an upstream without a token realm or whose token
/// has no readable `access` claim) the request is forwarded with the caller's credential and
/// TCR answers it.
async fn delete_tag(
    front: &web::Data<RegistryFront>,
    grant: &Grant,
    name: &RepoName,
    up: &RepoName,
    tag: &str,
) -> Result<Option<HttpResponse>, OciError> {
    if let Some(keys) = grant.identity.api_keys.as_ref() {
        return cloud::delete_tag(front, keys, up, tag).await.map(Some);
    }
    let (Some(keys), Some(cred)) = (front.provisioner_keys.as_ref(), upstream_basic(grant)) else {
        return Ok(None);
    };
    match front
        .upstream
        .granted_actions(&cred, up.as_str(), "delete")
        .await?
    {
        None => Ok(None),
        Some(granted) if permits(&granted, "delete") => {
            cloud::delete_tag(front, keys, up, tag).await.map(Some)
        }
        Some(granted) => Err(delete_not_granted(name, &cred.username, &granted)),
    }
}

/// TCR's refusal of a delete, as the adapter passes it on: `403 DENIED` naming what TCR's realm
/// granted instead.
fn delete_not_granted(name: &RepoName, username: &str, granted: &[String]) -> OciError {
    let granted = if granted.is_empty() {
        "nothing".to_string()
    } else {
        granted.join(",")
    };
    OciError::new(
        ErrorCode::Denied,
        format!(
            "unauthorized to access repository: {name}, action: delete (TCR's token service \
             granted {username} {granted} when asked for delete); nothing was deleted"
        ),
    )
}

/// The caller's registry credential upstream (`None`: anonymous).
fn upstream_basic(grant: &Grant) -> Option<BasicAuth> {
    grant.identity.upstream.as_ref().map(|c| BasicAuth {
        username: c.username.clone(),
        password: c.password.clone(),
    })
}

fn empty_json() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body("{}")
}
