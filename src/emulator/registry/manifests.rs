//! Manifests (GET/HEAD/PUT/DELETE by tag or digest, exact bytes kept), tags list and `_catalog`
//! with `n`/`last` pagination and a relative `Link`, and the referrers API.
//!
//! PUT checks: body ≤ 4 MiB (413), valid JSON, digest match when pushed by digest, referenced
//! config/layers linked in the repository and index children present as manifests
//! (`MANIFEST_BLOB_UNKNOWN` otherwise); a dangling `subject` is accepted.

use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt;
use serde_json::{json, Value};

use super::auth::{authorize, authorize_catalog, Action};
use super::blobs::parse_digest;
use super::{query_get, storage_error, too_large, HandlerResult, State};
use crate::emulator::http::content_length;
use crate::emulator::storage::ManifestMeta;
use crate::oci::{media, Digest, ErrorCode, OciError, Reference, RepoName, MAX_MANIFEST_BYTES};

fn manifest_unknown(r: &str) -> OciError {
    OciError::new(ErrorCode::ManifestUnknown, format!("manifest {r} unknown"))
}

/// Resolve a reference for reads/deletes. Invalid tags are simply unknown (404); a malformed
/// digest is `DIGEST_INVALID`.
fn resolve(state: &State, repo: &RepoName, r: &str) -> Result<Digest, OciError> {
    match Reference::parse(r) {
        Ok(Reference::Digest(d)) => Ok(d),
        Ok(Reference::Tag(t)) => state
            .storage
            .resolve_tag(repo.as_str(), t.as_str())
            .ok_or_else(|| manifest_unknown(r)),
        Err(_) if r.contains(':') => Err(OciError::new(
            ErrorCode::DigestInvalid,
            format!("invalid digest {r}"),
        )),
        Err(_) => Err(manifest_unknown(r)),
    }
}

/// `GET|HEAD /v2/<name>/manifests/<reference>`.
pub(crate) async fn get(
    req: &HttpRequest,
    state: &State,
    repo: &RepoName,
    r: &str,
) -> HandlerResult {
    authorize(req, state, repo, Action::Pull)?;
    let d = resolve(state, repo, r)?;
    let meta = state
        .storage
        .manifest_meta(repo.as_str(), &d)
        .ok_or_else(|| manifest_unknown(r))?;
    let bytes = tokio::fs::read(state.storage.blob_file(&d))
        .await
        .map_err(|_| manifest_unknown(r))?;
    let mut resp = HttpResponse::Ok();
    resp.insert_header(("Docker-Content-Digest", d.as_str()))
        .insert_header(("ETag", format!("\"{d}\"")))
        .content_type(meta.media_type.as_str());
    Ok(resp.body(bytes))
}

/// Read a manifest body, at most [`MAX_MANIFEST_BYTES`].
async fn read_body(
    req: &HttpRequest,
    mut payload: web::Payload,
    state: &State,
) -> Result<Vec<u8>, OciError> {
    let limit = MAX_MANIFEST_BYTES as u64;
    let too_big =
        || too_large("manifest").with_status(actix_web::http::StatusCode::PAYLOAD_TOO_LARGE);
    if let Some(n) = content_length(req) {
        if n > limit || state.faults.body_too_large(n) {
            return Err(too_big());
        }
    }
    let mut body = Vec::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk
            .map_err(|e| OciError::new(ErrorCode::ManifestInvalid, format!("reading body: {e}")))?;
        body.extend_from_slice(&chunk);
        if body.len() as u64 > limit || state.faults.body_too_large(body.len() as u64) {
            return Err(too_big());
        }
    }
    Ok(body)
}

fn descriptor_digest(v: &Value) -> Option<&str> {
    v.get("digest").and_then(Value::as_str)
}

fn blob_unknown(d: &str) -> OciError {
    OciError::new(
        ErrorCode::ManifestBlobUnknown,
        format!("manifest references unknown blob {d}"),
    )
    .with_detail(json!({ "digest": d }))
}

/// `PUT /v2/<name>/manifests/<reference>`.
pub(crate) async fn put(
    req: &HttpRequest,
    payload: web::Payload,
    state: &State,
    repo: &RepoName,
    r: &str,
) -> HandlerResult {
    authorize(req, state, repo, Action::Push)?;
    let reference = parse_put_reference(r)?;
    let body = read_body(req, payload, state).await?;
    let doc = parse_manifest_json(&body)?;
    let digest = Digest::sha256_of(&body);
    check_pushed_digest(&reference, &digest)?;
    let media_type = manifest_media_type(req, &doc);
    let refs_size = check_references(state, repo, &doc, &media_type).await?;
    let meta = manifest_meta(state, &doc, media_type, body.len() as u64, refs_size)?;
    let subject = meta.subject.clone();
    let tag = match &reference {
        Reference::Tag(t) => Some(t.as_str()),
        Reference::Digest(_) => None,
    };
    state
        .storage
        .put_manifest(repo.as_str(), &digest, &body, meta, tag)
        .map_err(storage_error)?;
    Ok(put_created(repo, &digest, subject))
}

/// The PUT reference: a malformed digest is `DIGEST_INVALID`, a malformed tag `TAG_INVALID`.
fn parse_put_reference(r: &str) -> Result<Reference, OciError> {
    Reference::parse(r).map_err(|e| match r.contains(':') {
        true => OciError::new(ErrorCode::DigestInvalid, e.to_string()),
        false => OciError::new(ErrorCode::TagInvalid, e.to_string()),
    })
}

/// The body as a JSON object (`MANIFEST_INVALID` otherwise).
fn parse_manifest_json(body: &[u8]) -> Result<Value, OciError> {
    let doc: Value = serde_json::from_slice(body)
        .map_err(|e| OciError::new(ErrorCode::ManifestInvalid, format!("invalid JSON: {e}")))?;
    if !doc.is_object() {
        return Err(OciError::new(
            ErrorCode::ManifestInvalid,
            "manifest must be a JSON object",
        ));
    }
    Ok(doc)
}

/// Pushed by digest: the body must hash to it.
fn check_pushed_digest(reference: &Reference, digest: &Digest) -> Result<(), OciError> {
    if let Reference::Digest(d) = reference {
        if d != digest {
            return Err(OciError::new(
                ErrorCode::DigestInvalid,
                format!("manifest digest {digest} does not match {d}"),
            ));
        }
    }
    Ok(())
}

/// The media type: the `Content-Type` header (unless octet-stream), else the body's
/// `mediaType`, else OCI index or manifest by shape.
fn manifest_media_type(req: &HttpRequest, doc: &Value) -> String {
    let header_type = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or("").trim().to_string())
        .filter(|v| !v.is_empty() && v != "application/octet-stream");
    let body_type = doc
        .get("mediaType")
        .and_then(Value::as_str)
        .map(str::to_string);
    header_type.or(body_type).unwrap_or_else(|| {
        if doc.get("manifests").is_some() {
            media::OCI_INDEX.to_string()
        } else {
            media::OCI_MANIFEST.to_string()
        }
    })
}

/// Check that what the manifest references is there (schema 1 is not looked into); returns the
/// total size of the references.
async fn check_references(
    state: &State,
    repo: &RepoName,
    doc: &Value,
    media_type: &str,
) -> Result<u64, OciError> {
    let is_schema1 =
        media_type == media::DOCKER_SCHEMA1 || media_type == media::DOCKER_SCHEMA1_SIGNED;
    if is_schema1 {
        return Ok(0);
    }
    let mut refs_size = 0u64;
    check_blob_references(state, repo, doc, &mut refs_size).await?;
    check_child_manifests(state, repo, doc, &mut refs_size)?;
    Ok(refs_size)
}

/// The config and layers must be blobs linked in the repository (foreign layers excepted);
/// their sizes are added to `size`.
async fn check_blob_references(
    state: &State,
    repo: &RepoName,
    doc: &Value,
    size: &mut u64,
) -> Result<(), OciError> {
    let config = doc.get("config").into_iter();
    let layers = doc
        .get("layers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten();
    for desc in config.chain(layers) {
        *size += desc.get("size").and_then(Value::as_u64).unwrap_or(0);
        if desc.get("urls").is_some() {
            continue; // foreign layer
        }
        let d = parse_digest(required_descriptor_digest(desc)?)?;
        if state
            .storage
            .blob_in_repo(repo.as_str(), &d)
            .await
            .is_none()
        {
            return Err(blob_unknown(d.as_str()));
        }
    }
    Ok(())
}

/// An index's children must be manifests in the repository; their sizes are added to `size`.
fn check_child_manifests(
    state: &State,
    repo: &RepoName,
    doc: &Value,
    size: &mut u64,
) -> Result<(), OciError> {
    for child in doc
        .get("manifests")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        *size += child.get("size").and_then(Value::as_u64).unwrap_or(0);
        let d = parse_digest(required_descriptor_digest(child)?)?;
        if state.storage.manifest_meta(repo.as_str(), &d).is_none() {
            return Err(blob_unknown(d.as_str()));
        }
    }
    Ok(())
}

fn required_descriptor_digest(desc: &Value) -> Result<&str, OciError> {
    descriptor_digest(desc)
        .ok_or_else(|| OciError::new(ErrorCode::ManifestInvalid, "descriptor without digest"))
}

/// What is stored beside the manifest's bytes (a malformed `subject` digest is refused).
fn manifest_meta(
    state: &State,
    doc: &Value,
    media_type: String,
    size: u64,
    refs_size: u64,
) -> Result<ManifestMeta, OciError> {
    let subject = doc
        .get("subject")
        .and_then(descriptor_digest)
        .map(|s| parse_digest(s).map(|d| d.to_string()))
        .transpose()?;
    let artifact_type = doc
        .get("artifactType")
        .and_then(Value::as_str)
        .or_else(|| {
            doc.get("config")
                .and_then(|c| c.get("mediaType"))
                .and_then(Value::as_str)
        })
        .map(str::to_string);
    Ok(ManifestMeta {
        media_type,
        size,
        refs_size,
        subject,
        artifact_type,
        annotations: doc.get("annotations").filter(|a| a.is_object()).cloned(),
        created_ms: state.clock.now_ms(),
    })
}

/// `201 Created` with `Location`, `Docker-Content-Digest` and `OCI-Subject` when there is one.
fn put_created(repo: &RepoName, digest: &Digest, subject: Option<String>) -> HttpResponse {
    let mut resp = HttpResponse::Created();
    resp.insert_header(("Location", format!("/v2/{repo}/manifests/{digest}")))
        .insert_header(("Docker-Content-Digest", digest.as_str()))
        .insert_header(("Content-Length", "0"));
    if let Some(s) = subject {
        resp.insert_header(("OCI-Subject", s));
    }
    resp.finish()
}

/// `DELETE /v2/<name>/manifests/<reference>`: untag (tag) or delete with its tags (digest).
pub(crate) async fn delete(
    req: &HttpRequest,
    state: &State,
    repo: &RepoName,
    r: &str,
) -> HandlerResult {
    authorize(req, state, repo, Action::Delete)?;
    match Reference::parse(r) {
        Ok(Reference::Tag(t)) => state
            .storage
            .delete_tag(repo.as_str(), t.as_str())
            .await
            .map_err(|_| manifest_unknown(r))?,
        Ok(Reference::Digest(d)) => {
            if !state
                .storage
                .delete_manifest(repo.as_str(), &d)
                .map_err(storage_error)?
            {
                return Err(manifest_unknown(r));
            }
        }
        Err(_) => {
            return Err(resolve(state, repo, r)
                .err()
                .unwrap_or_else(|| manifest_unknown(r)))
        }
    }
    Ok(HttpResponse::Accepted().finish())
}

/// A page of names and, when more remain, the `(n, last)` of the next request.
type Page = (Vec<String>, Option<(usize, String)>);

/// Apply `n`/`last` to a sorted list.
fn paginate(req: &HttpRequest, items: Vec<String>) -> Result<Page, OciError> {
    let n = match query_get(req, "n") {
        Some(v) => Some(v.parse::<usize>().map_err(|_| {
            OciError::new(ErrorCode::PaginationNumberInvalid, format!("invalid n={v}"))
        })?),
        None => None,
    };
    let last = query_get(req, "last");
    let mut rest: Vec<String> = match &last {
        Some(l) => items
            .into_iter()
            .filter(|i| i.as_str() > l.as_str())
            .collect(),
        None => items,
    };
    match n {
        Some(n) if rest.len() > n => {
            rest.truncate(n);
            let next = (n > 0).then(|| (n, rest[n - 1].clone()));
            Ok((rest, next))
        }
        _ => Ok((rest, None)),
    }
}

fn link(path: &str, next: &(usize, String)) -> String {
    let last: String = url::form_urlencoded::byte_serialize(next.1.as_bytes()).collect();
    format!("<{path}?n={}&last={last}>; rel=\"next\"", next.0)
}

/// `GET /v2/<name>/tags/list`.
pub(crate) async fn tags(req: &HttpRequest, state: &State, repo: &RepoName) -> HandlerResult {
    authorize(req, state, repo, Action::Pull)?;
    let all = state.storage.tags(repo.as_str()).ok_or_else(|| {
        OciError::new(
            ErrorCode::NameUnknown,
            format!("repository {repo} not known"),
        )
    })?;
    let (page, next) = paginate(req, all)?;
    let mut resp = HttpResponse::Ok();
    if let Some(n) = &next {
        resp.insert_header(("Link", link(&format!("/v2/{repo}/tags/list"), n)));
    }
    Ok(resp.json(json!({ "name": repo.as_str(), "tags": page })))
}

/// `GET /v2/_catalog`.
pub(crate) async fn catalog(req: &HttpRequest, state: &State) -> HandlerResult {
    authorize_catalog(req, state)?;
    let (page, next) = paginate(req, state.storage.repository_names())?;
    let mut resp = HttpResponse::Ok();
    if let Some(n) = &next {
        resp.insert_header(("Link", link("/v2/_catalog", n)));
    }
    Ok(resp.json(json!({ "repositories": page })))
}

/// `GET /v2/<name>/referrers/<digest>[?artifactType=..]`: always 200, an OCI index.
pub(crate) async fn referrers(
    req: &HttpRequest,
    state: &State,
    repo: &RepoName,
    d: &str,
) -> HandlerResult {
    authorize(req, state, repo, Action::Pull)?;
    let digest = parse_digest(d)?;
    let filter = query_get(req, "artifactType");
    let manifests: Vec<Value> = state
        .storage
        .referrers(repo.as_str(), &digest)
        .into_iter()
        .filter(|(_, m)| filter.is_none() || m.artifact_type == filter)
        .map(|(dg, m)| {
            let mut v = json!({ "mediaType": m.media_type, "digest": dg, "size": m.size });
            if let Some(a) = m.artifact_type {
                v["artifactType"] = Value::String(a);
            }
            if let Some(a) = m.annotations {
                v["annotations"] = a;
            }
            v
        })
        .collect();
    let mut resp = HttpResponse::Ok();
    resp.content_type(media::OCI_INDEX);
    if filter.is_some() {
        resp.insert_header(("OCI-Filters-Applied", "artifactType"));
    }
    Ok(resp.body(
        json!({ "schemaVersion": 2, "mediaType": media::OCI_INDEX, "manifests": manifests })
            .to_string(),
    ))
}
