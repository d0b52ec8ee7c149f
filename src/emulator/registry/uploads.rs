//! Blob uploads: POST (session, monolithic `?digest=`, or cross-repository `?mount=&from=`),
//! PATCH (chunked with `Content-Range: <start>-<end>`, or streamed without it), PUT `?digest=`
//! (final chunk + commit), GET status (204), DELETE (cancel). Bodies stream to disk.
//!
//! Mount policy: the blob must be linked in `from` and the caller must be able to pull `from`;
//! otherwise (unknown blob, no `from`) a new session is opened (202), as the spec allows.

use actix_web::{web, HttpRequest, HttpResponse};

use super::auth::{authorize, authorize_also, can_pull, Action};
use super::blobs::parse_digest;
use super::{query_get, range_value, storage_error, too_large, HandlerResult, State};
use crate::emulator::http::content_length;
use crate::oci::{ErrorCode, OciError, RepoName};

fn location(repo: &RepoName, id: &str) -> String {
    format!("/v2/{repo}/blobs/uploads/{id}")
}

fn session_response(
    status: actix_web::http::StatusCode,
    repo: &RepoName,
    id: &str,
    size: u64,
) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header(("Location", location(repo, id)))
        .insert_header(("Docker-Upload-UUID", id))
        .insert_header(("Range", range_value(size)))
        .insert_header(("Content-Length", "0"))
        .finish()
}

fn created(repo: &RepoName, digest: &str) -> HttpResponse {
    HttpResponse::Created()
        .insert_header(("Location", format!("/v2/{repo}/blobs/{digest}")))
        .insert_header(("Docker-Content-Digest", digest))
        .insert_header(("Content-Length", "0"))
        .finish()
}

fn check_declared_size(req: &HttpRequest, state: &State) -> Result<(), OciError> {
    match content_length(req) {
        Some(n) if state.faults.body_too_large(n) => Err(too_large("request body")),
        _ => Ok(()),
    }
}

fn upload_unknown(id: &str) -> OciError {
    OciError::new(ErrorCode::BlobUploadUnknown, format!("upload {id} unknown"))
}

/// The session `id`, which must belong to `repo`.
async fn session(state: &State, repo: &RepoName, id: &str) -> Result<u64, OciError> {
    match state.storage.upload_info(id).await {
        Some(info) if info.repo == repo.as_str() => Ok(info.size),
        _ => Err(upload_unknown(id)),
    }
}

/// `POST /v2/<name>/blobs/uploads/`.
pub(crate) async fn start(
    req: &HttpRequest,
    payload: web::Payload,
    state: &State,
    repo: &RepoName,
) -> HandlerResult {
    let from_scope = query_get(req, "mount")
        .and(query_get(req, "from"))
        .and_then(|f| RepoName::parse(&f).ok())
        .filter(|f| f != repo)
        .map(|f| format!("repository:{f}:pull"));
    authorize_also(req, state, repo, Action::Push, from_scope.as_deref())?;
    if let Some(mount) = query_get(req, "mount") {
        let d = parse_digest(&mount)?;
        if let Some(from) = query_get(req, "from").and_then(|f| RepoName::parse(&f).ok()) {
            if can_pull(req, state, &from)
                && state
                    .storage
                    .blob_in_repo(from.as_str(), &d)
                    .await
                    .is_some()
            {
                state
                    .storage
                    .link_blob(repo.as_str(), &d)
                    .map_err(storage_error)?;
                return Ok(created(repo, d.as_str()));
            }
        }
    } else if let Some(digest) = query_get(req, "digest") {
        let d = parse_digest(&digest)?;
        check_declared_size(req, state)?;
        state
            .storage
            .put_blob(repo.as_str(), &d, payload, state.cfg.faults.max_body_bytes)
            .await
            .map_err(storage_error)?;
        return Ok(created(repo, d.as_str()));
    }
    let id = state
        .storage
        .new_upload(repo.as_str())
        .map_err(storage_error)?;
    Ok(session_response(
        actix_web::http::StatusCode::ACCEPTED,
        repo,
        &id,
        0,
    ))
}

/// `GET <location>`: 204 with the bytes received so far.
pub(crate) async fn status(
    req: &HttpRequest,
    state: &State,
    repo: &RepoName,
    id: &str,
) -> HandlerResult {
    authorize(req, state, repo, Action::Pull)?;
    let size = session(state, repo, id).await?;
    Ok(session_response(
        actix_web::http::StatusCode::NO_CONTENT,
        repo,
        id,
        size,
    ))
}

/// Append the request body to the session, honouring `Content-Range` when sent.
async fn append(
    req: &HttpRequest,
    payload: web::Payload,
    state: &State,
    repo: &RepoName,
    id: &str,
) -> Result<u64, OciError> {
    check_declared_size(req, state)?;
    let size = session(state, repo, id).await?;
    let range = crate::oci::content_range(req.headers())?;
    let start = match range {
        Some((a, b)) => {
            if a != size {
                return Err(
                    storage_error(crate::emulator::storage::StorageError::OutOfOrder { size })
                        .with_header(actix_web::http::header::LOCATION, &location(repo, id)),
                );
            }
            if let Some(n) = content_length(req) {
                if n != b - a + 1 {
                    return Err(OciError::new(
                        ErrorCode::SizeInvalid,
                        format!("Content-Length {n} does not match Content-Range {a}-{b}"),
                    ));
                }
            }
            Some(a)
        }
        None => None,
    };
    state
        .storage
        .append_upload(id, start, payload, state.cfg.faults.max_body_bytes)
        .await
        .map_err(|e| match e {
            crate::emulator::storage::StorageError::NotFound(_) => upload_unknown(id),
            e => storage_error(e),
        })
}

/// `PATCH <location>`: a chunk (with `Content-Range`) or a streamed append; `PUT
/// <location>?digest=<d>`: an optional last chunk, then verify and publish.
pub(crate) async fn write(
    req: &HttpRequest,
    payload: web::Payload,
    state: &State,
    repo: &RepoName,
    id: &str,
) -> HandlerResult {
    authorize(req, state, repo, Action::Push)?;
    let last = match *req.method() {
        actix_web::http::Method::PUT => Some(final_digest(req)?),
        _ => None,
    };
    let size = append(req, payload, state, repo, id).await?;
    let Some(d) = last else {
        let accepted = actix_web::http::StatusCode::ACCEPTED;
        return Ok(session_response(accepted, repo, id, size));
    };
    state
        .storage
        .commit_upload(id, &d)
        .await
        .map_err(|e| match e {
            crate::emulator::storage::StorageError::NotFound(_) => upload_unknown(id),
            e => storage_error(e),
        })?;
    Ok(created(repo, d.as_str()))
}

/// The digest a final `PUT` names.
fn final_digest(req: &HttpRequest) -> Result<crate::oci::Digest, OciError> {
    let digest = query_get(req, "digest").ok_or_else(|| {
        OciError::new(ErrorCode::DigestInvalid, "digest query parameter required")
    })?;
    parse_digest(&digest)
}

/// `DELETE <location>`: cancel → 204.
pub(crate) async fn cancel(
    req: &HttpRequest,
    state: &State,
    repo: &RepoName,
    id: &str,
) -> HandlerResult {
    authorize(req, state, repo, Action::Push)?;
    session(state, repo, id).await?;
    state.storage.cancel_upload(id).await;
    Ok(HttpResponse::NoContent().finish())
}
