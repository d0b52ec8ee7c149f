//! The answers the room gives a client itself, instead of relaying TCR's.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};

use crate::oci::{Digest, ErrorCode, OciError, RepoName};
use crate::registry::request::Route;

/// What the room did with a request before it would be sent to TCR.
pub enum Intercept {
    /// Answered here: nothing is sent.
    Answered(HttpResponse),
    /// Not answered: the request goes on, with its body.
    Pass(web::Payload),
}

/// The answer to a blob HEAD: the blob is there.
pub fn found(digest: &Digest, size: u64) -> HttpResponse {
    let empty = futures_util::stream::empty::<Result<bytes::Bytes, std::io::Error>>();
    HttpResponse::build(StatusCode::OK)
        .insert_header(("Docker-Content-Digest", digest.as_str()))
        .insert_header(("Content-Type", "application/octet-stream"))
        .insert_header(("Accept-Ranges", "bytes"))
        .body(actix_web::body::SizedStream::new(size, empty))
}

/// The registry's "blob unknown" answer.
pub fn absent() -> HttpResponse {
    let absent = OciError::new(ErrorCode::BlobUnknown, "blob unknown to registry")
        .with_status(StatusCode::NOT_FOUND);
    actix_web::ResponseError::error_response(&absent)
}

/// An upload completed: where the blob is now.
pub fn created(route: &Route, name: &RepoName, digest: &Digest) -> HttpResponse {
    HttpResponse::Created()
        .insert_header(("Location", blob_url(route, name, digest)))
        .insert_header(("Docker-Content-Digest", digest.as_str()))
        .finish()
}

pub fn blob_url(route: &Route, name: &RepoName, digest: &Digest) -> String {
    format!("{}/v2/{name}/blobs/{digest}", route.base)
}
