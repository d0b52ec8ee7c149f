//! Blob GET (streamed from disk, `Range` → 206 / 416), HEAD (from metadata: the file is never
//! opened) and DELETE (unlink → 202).

use actix_web::body::SizedStream;
use actix_web::http::{Method, StatusCode};
use actix_web::{HttpRequest, HttpResponse};
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_util::io::ReaderStream;

use super::auth::{authorize, Action};
use super::{HandlerResult, State};
use crate::oci::{Digest, ErrorCode, OciError, RepoName};

pub(crate) fn parse_digest(s: &str) -> Result<Digest, OciError> {
    Digest::parse(s).map_err(|e| OciError::new(ErrorCode::DigestInvalid, e.to_string()))
}

fn blob_unknown(d: &str) -> OciError {
    OciError::new(
        ErrorCode::BlobUnknown,
        format!("blob {d} unknown to registry"),
    )
}

/// Parse `Range: bytes=a-b | a- | -n` against `size`: `Ok(None)` = no (usable) range header,
/// `Err(())` = unsatisfiable.
fn parse_range(header: Option<&str>, size: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(h) = header else { return Ok(None) };
    let Some(spec) = h.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None); // multiple ranges: serve the whole blob
    }
    let (a, b) = spec.split_once('-').ok_or(())?;
    let (start, end) = match (a.trim(), b.trim()) {
        ("", n) => {
            let n: u64 = n.parse().map_err(|_| ())?;
            if n == 0 {
                return Err(());
            }
            (size.saturating_sub(n), size.checked_sub(1).ok_or(())?)
        }
        (s, "") => (s.parse().map_err(|_| ())?, size.checked_sub(1).ok_or(())?),
        (s, e) => {
            let s: u64 = s.parse().map_err(|_| ())?;
            let e: u64 = e.parse().map_err(|_| ())?;
            (s, e.min(size.saturating_sub(1)))
        }
    };
    if start >= size || start > end {
        return Err(());
    }
    Ok(Some((start, end)))
}

/// `GET|HEAD /v2/<name>/blobs/<digest>`.
pub(crate) async fn get(
    req: &HttpRequest,
    state: &State,
    repo: &RepoName,
    digest: &str,
) -> HandlerResult {
    authorize(req, state, repo, Action::Pull)?;
    let d = parse_digest(digest)?;
    let size = state
        .storage
        .blob_in_repo(repo.as_str(), &d)
        .await
        .ok_or_else(|| blob_unknown(digest))?;
    if let Some(presigner) = &state.presigner {
        if state.cfg.blob_redirects {
            let url = presigner.url(req.method().as_str(), &d, state.clock.now_secs());
            return Ok(HttpResponse::TemporaryRedirect()
                .insert_header(("Location", url))
                .finish());
        }
    }
    serve_blob_file(req, state, &d, size).await
}

/// The bytes of blob `d` (`size` bytes on disk), honouring `Range`: shared by the registry and
/// the object-storage listener. A HEAD gets the same headers and no body, and reads nothing.
pub(crate) async fn serve_blob_file(
    req: &HttpRequest,
    state: &State,
    d: &Digest,
    size: u64,
) -> HandlerResult {
    let digest = d.as_str();
    let range = req.headers().get("range").and_then(|v| v.to_str().ok());
    let (status, start, end) = match parse_range(range, size) {
        Ok(Some((s, e))) => (StatusCode::PARTIAL_CONTENT, s, e),
        Ok(None) => (StatusCode::OK, 0, size.saturating_sub(1)),
        Err(()) => {
            return Err(OciError::new(
                ErrorCode::RangeInvalid,
                format!("requested range not satisfiable (blob holds {size} bytes)"),
            )
            .with_header(
                actix_web::http::header::CONTENT_RANGE,
                &format!("bytes */{size}"),
            ))
        }
    };
    let len = if size == 0 { 0 } else { end - start + 1 };
    let mut resp = HttpResponse::build(status);
    resp.insert_header(("Docker-Content-Digest", d.as_str()))
        .insert_header(("Accept-Ranges", "bytes"))
        .insert_header(("ETag", format!("\"{d}\"")))
        .insert_header(("Cache-Control", "max-age=31536000"))
        .content_type("application/octet-stream");
    if status == StatusCode::PARTIAL_CONTENT {
        resp.insert_header(("Content-Range", format!("bytes {start}-{end}/{size}")));
    }
    if req.method() == Method::HEAD {
        // The headers only: a sized body that yields nothing gives the right Content-Length
        // (the HTTP layer sends no body for HEAD) without opening, let alone reading, the file.
        let nothing = futures_util::stream::empty::<Result<Bytes, std::io::Error>>();
        return Ok(resp.body(SizedStream::new(len, nothing)));
    }
    let mut file = tokio::fs::File::open(state.storage.blob_file(d))
        .await
        .map_err(|_| blob_unknown(digest))?;
    if start > 0 {
        file.seek(std::io::SeekFrom::Start(start))
            .await
            .map_err(|e| OciError::new(ErrorCode::Unknown, e.to_string()))?;
    }
    let read = state.metrics.blob_file_read_bytes.clone();
    let stream = ReaderStream::with_capacity(file.take(len), 64 * 1024).inspect(move |chunk| {
        if let Ok(c) = chunk {
            read.inc_by(c.len() as u64);
        }
    });
    Ok(resp.body(SizedStream::new(len, stream)))
}

/// `DELETE /v2/<name>/blobs/<digest>`: unlink from this repository → 202.
pub(crate) async fn delete(
    req: &HttpRequest,
    state: &State,
    repo: &RepoName,
    digest: &str,
) -> HandlerResult {
    authorize(req, state, repo, Action::Delete)?;
    let d = parse_digest(digest)?;
    if state
        .storage
        .unlink_blob(repo.as_str(), &d)
        .map_err(super::storage_error)?
    {
        Ok(HttpResponse::Accepted().finish())
    } else {
        Err(blob_unknown(digest))
    }
}

#[cfg(test)]
mod tests {
    use super::parse_range;

    #[test]
    fn ranges() {
        assert_eq!(parse_range(None, 10), Ok(None));
        assert_eq!(parse_range(Some("bytes=0-4"), 10), Ok(Some((0, 4))));
        assert_eq!(parse_range(Some("bytes=5-"), 10), Ok(Some((5, 9))));
        assert_eq!(parse_range(Some("bytes=-3"), 10), Ok(Some((7, 9))));
        assert_eq!(parse_range(Some("bytes=8-100"), 10), Ok(Some((8, 9))));
        assert_eq!(parse_range(Some("bytes=10-"), 10), Err(()));
        assert_eq!(parse_range(Some("bytes=5-2"), 10), Err(()));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 2000, failure_persistence: None, ..Default::default() })]
        /// Any `Range` header: no panic, and a usable range lies inside the blob.
        #[test]
        fn any_range_header_is_parsed_or_refused(h in "(bytes=)?[0-9 ,-]{0,40}|.{0,40}", size in 0u64..1_000_000) {
            if let Ok(Some((start, end))) = parse_range(Some(&h), size) {
                proptest::prop_assert!(start <= end && end < size, "{h} over {size}: {start}-{end}");
            }
        }
    }
}
