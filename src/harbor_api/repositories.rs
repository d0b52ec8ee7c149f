//! `/api/repositories`: Harbor's v1 repository API over TCR. Listing (`?project_id=`, the pull
//! direction) and tags come from the cloud API (`DescribeRepositories`, `DescribeImages`); a tag
//! deletion (Harbor's deletion replication, `DELETE /api/repositories/<repo>/tags/<ref>`) goes
//! through `DeleteImage` — with the caller's API keys, or the provisioner's for a registry
//! credential TCR's realm grants `delete` there — or, for a digest or without keys, through the
//! data plane by digest with the caller's credential. TCR's refusals are passed on (403
//! `DENIED` with TCR's message), never turned into "not found". `<repo>` keeps its slashes;
//! names go through the rename map both ways.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};

use super::caller::{self, Anonymous};
use super::HarborFront;
use crate::credentials::ClientIdentity;
use crate::oci::{Digest, ErrorCode, OciError, Reference, RepoName};
use crate::tencentcloud::ApiCredential;
use crate::upstream::{error_message, permits, BasicAuth, Forward, ForwardBody, UpstreamPath};

/// `GET /api/repositories?project_id=<id>`.
pub async fn list(
    req: HttpRequest,
    front: web::Data<HarborFront>,
) -> Result<HttpResponse, OciError> {
    let project_id = url::form_urlencoded::parse(req.query_string().as_bytes())
        .find(|(k, _)| k == "project_id")
        .map(|(_, v)| v.into_owned());
    let identity = caller::identify(&req, &front, Anonymous::Refused).await?;
    let keys = caller::api_keys(&identity, &front)
        .ok_or_else(|| caller::keys_needed("listing repositories"))?;
    let id: i64 = project_id
        .as_deref()
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| bad_request("project_id=<number> is required"))?;
    let namespaces = front.namespaces.list_namespaces(keys, None).await?;
    let ns = namespaces
        .iter()
        .find(|n| n.namespace_id == id && front.namespaces.is_listed(&n.name))
        .ok_or_else(|| not_found(ErrorCode::NameUnknown, format!("project {id} not found")))?;
    let repos = front
        .namespaces
        .list_repositories_in(keys, &ns.name)
        .await?;
    let items: Vec<Value> = repos
        .iter()
        .enumerate()
        .map(|(i, r)| {
            json!({
                "id": i + 1,
                "name": front.namespaces.name_to_client(&r.name),
                "project_id": id,
                "description": r.brief_description,
                "creation_time": r.creation_time,
                "update_time": r.update_time,
            })
        })
        .collect();
    Ok(HttpResponse::Ok()
        .insert_header(("X-Total-Count", items.len().to_string()))
        .json(items))
}

/// 404 for a path under `/api/repositories/` that names no endpoint.
fn no_such_endpoint(path: &str) -> OciError {
    not_found(
        ErrorCode::NameUnknown,
        format!(
            "no such endpoint: /api/repositories/{}",
            super::names::excerpt(path)
        ),
    )
}

/// `GET /api/repositories/<repo>/tags`.
pub async fn tags(
    req: HttpRequest,
    path: web::Path<String>,
    front: web::Data<HarborFront>,
) -> Result<HttpResponse, OciError> {
    let identity = caller::identify(&req, &front, Anonymous::Refused).await?;
    let repo = path
        .strip_suffix("/tags")
        .ok_or_else(|| no_such_endpoint(&path))?;
    let upstream = admitted(&front, repo)?;
    let keys =
        caller::api_keys(&identity, &front).ok_or_else(|| caller::keys_needed("listing tags"))?;
    let images = front.namespaces.list_images(keys, &upstream).await?;
    let items: Vec<Value> = images
        .iter()
        .map(|i| {
            json!({
                "name": i.image_version,
                "digest": i.digest,
                "size": i.size,
                "created": i.update_time,
                "labels": [],
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(items))
}

/// `DELETE /api/repositories/<repo>/tags/<ref>` (`<ref>` a tag, or a digest for an untagged
/// artifact from Harbor 2.x).
pub async fn delete_tag(
    req: HttpRequest,
    path: web::Path<String>,
    front: web::Data<HarborFront>,
) -> Result<HttpResponse, OciError> {
    let identity = caller::identify(&req, &front, Anonymous::Refused).await?;
    let (repo, reference) = path
        .rsplit_once("/tags/")
        .ok_or_else(|| no_such_endpoint(&path))?;
    let upstream = admitted(&front, repo)?;
    let reference = Reference::parse(reference).map_err(|_| {
        bad_request(format!(
            "{} is neither a tag nor a digest",
            super::names::excerpt(reference)
        ))
    })?;
    match (&reference, delete_keys(&front, &identity, &upstream).await?) {
        (Reference::Tag(tag), Some(keys)) => {
            front
                .namespaces
                .delete_tag(keys, &upstream, tag.as_str())
                .await?
        }
        (Reference::Tag(tag), None) => {
            let digest = resolve_digest(&front, &identity, &upstream, tag.as_str()).await?;
            delete_manifest(&front, &identity, &upstream, &digest).await?
        }
        (Reference::Digest(d), _) => delete_manifest(&front, &identity, &upstream, d).await?,
    }
    Ok(HttpResponse::Ok().finish())
}

/// The API keys a tag deletion through `DeleteImage` runs with: the caller's own (CAM
/// decides); the provisioner's for a registry credential only when TCR's own realm, asked with
/// that credential, grants it `delete` on `repo` (else TCR's refusal, and no cloud API call);
/// `None` — the data plane with the caller's credential — when there is no grant to read.
async fn delete_keys<'a>(
    front: &'a HarborFront,
    identity: &'a ClientIdentity,
    repo: &RepoName,
) -> Result<Option<&'a ApiCredential>, OciError> {
    if let Some(keys) = identity.api_keys.as_ref() {
        return Ok(Some(keys));
    }
    let (Some(keys), Some(cred)) = (
        front.namespaces.fallback_keys(),
        caller::upstream_basic(identity),
    ) else {
        return Ok(None);
    };
    match front
        .upstream
        .granted_actions(&cred, repo.as_str(), "delete")
        .await?
    {
        Some(granted) if !permits(&granted, "delete") => {
            let granted = if granted.is_empty() {
                "nothing".to_string()
            } else {
                granted.join(",")
            };
            Err(OciError::new(
                ErrorCode::Denied,
                format!(
                    "unauthorized to access repository: {}, action: delete (TCR's token service \
                     granted {} {granted} when asked for delete); nothing was deleted",
                    front.namespaces.to_client(repo),
                    cred.username
                ),
            ))
        }
        Some(_) => Ok(Some(keys)),
        None => Ok(None),
    }
}

/// The client's repository, typed, through the policy gate; its upstream name.
fn admitted(front: &HarborFront, s: &str) -> Result<RepoName, OciError> {
    let repo = RepoName::parse(s).map_err(|_| {
        OciError::new(
            ErrorCode::NameInvalid,
            format!(
                "invalid repository name {}: components are [a-z0-9] runs joined by '.', '_', \
                 '__' or '-', separated by '/'",
                super::names::excerpt(s)
            ),
        )
        .with_status(StatusCode::BAD_REQUEST)
    })?;
    front.namespaces.admit(repo.namespace())?;
    Ok(front.namespaces.to_upstream(&repo))
}

fn bad_request(message: impl Into<String>) -> OciError {
    OciError::new(ErrorCode::NameInvalid, message).with_status(StatusCode::BAD_REQUEST)
}

fn not_found(code: ErrorCode, message: impl Into<String>) -> OciError {
    OciError::new(code, message).with_status(StatusCode::NOT_FOUND)
}

/// A `/v2/` request on the data plane with the caller's credential (bearer negotiated upstream).
fn data_plane(
    identity: &ClientIdentity,
    method: reqwest::Method,
    repo: &RepoName,
    reference: &str,
) -> Forward {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::ACCEPT,
        reqwest::header::HeaderValue::from_static(
            "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, \
             application/vnd.docker.distribution.manifest.list.v2+json, \
             application/vnd.docker.distribution.manifest.v2+json",
        ),
    );
    Forward {
        method,
        path: UpstreamPath::root()
            .lit("v2")
            .repo(repo)
            .lit("manifests")
            .push(reference)
            .expect("a validated tag or digest is one segment"),
        headers,
        body: ForwardBody::Empty,
        scopes: vec![format!("repository:{repo}:*")],
        credential: identity.upstream.as_ref().map(|c| BasicAuth {
            username: c.username.clone(),
            password: c.password.clone(),
        }),
        route: "manifest",
    }
}

async fn resolve_digest(
    front: &HarborFront,
    identity: &ClientIdentity,
    repo: &RepoName,
    tag: &str,
) -> Result<Digest, OciError> {
    // A GET, not a HEAD: a refusal's body carries TCR's message, which is passed on.
    let resp = front
        .upstream
        .send(data_plane(identity, reqwest::Method::GET, repo, tag))
        .await?;
    let status = resp.status().as_u16();
    if !resp.status().is_success() {
        let body = crate::registry::body::read_limited(resp, 64 * 1024)
            .await
            .unwrap_or_default();
        let message = error_message(&body);
        let says_missing = message.contains("not found");
        return Err(match status {
            401 | 403 if !says_missing => OciError::new(
                ErrorCode::Denied,
                format!("TCR refused to read the tag before deleting it: {message}"),
            ),
            401 | 403 | 404 => not_found(
                ErrorCode::ManifestUnknown,
                format!(
                    "tag {tag:?} of {} not found",
                    front.namespaces.to_client(repo)
                ),
            ),
            s => OciError::new(
                ErrorCode::Unavailable,
                format!("TCR answered {s} to reading the tag: {message}"),
            )
            .with_status(StatusCode::BAD_GATEWAY),
        });
    }
    resp.headers()
        .get("docker-content-digest")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| Digest::parse(v).ok())
        .ok_or_else(|| {
            OciError::new(
                ErrorCode::Unavailable,
                "TCR did not say the manifest's digest",
            )
            .with_status(StatusCode::BAD_GATEWAY)
        })
}

async fn delete_manifest(
    front: &HarborFront,
    identity: &ClientIdentity,
    repo: &RepoName,
    digest: &Digest,
) -> Result<(), OciError> {
    let resp = front
        .upstream
        .send(data_plane(
            identity,
            reqwest::Method::DELETE,
            repo,
            digest.as_str(),
        ))
        .await?;
    let status = resp.status().as_u16();
    if (200..300).contains(&status) {
        return Ok(());
    }
    let body = crate::registry::body::read_limited(resp, 64 * 1024)
        .await
        .unwrap_or_default();
    let message = error_message(&body);
    Err(match status {
        404 => not_found(
            ErrorCode::ManifestUnknown,
            format!(
                "{}@{digest} not found: {message}",
                front.namespaces.to_client(repo)
            ),
        ),
        401 | 403 => OciError::new(
            ErrorCode::Denied,
            format!("TCR refused the deletion: {message}"),
        ),
        s => OciError::new(
            ErrorCode::Unavailable,
            format!("TCR answered {s}: {message}"),
        )
        .with_status(StatusCode::BAD_GATEWAY),
    })
}
