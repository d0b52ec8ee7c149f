//! Chunks held back (`wan.dedup` without `wan.pipeline`). A chunked upload — Harbor 2.9's copy
//! by chunk: `PATCH`es with `Content-Range`, the last chunk in the final `PUT ?digest=` — names
//! its blob only at the end, so its chunks cannot be told from a blob TCR has elsewhere while
//! they arrive. They are held in the spool instead of being sent on (the session stays TCR's: it
//! was opened by the relayed `POST`, and its `Location` is answered back unchanged); the final
//! `PUT` checks the digest, then mounts the blob from a repository known to hold it (the
//! caller's credential; TCR decides) or, failing that, sends the held bytes to TCR's session in
//! one `PUT`. A status `GET` is answered from what is held; a `DELETE` drops it and is relayed.
//! A restart loses what was held: the client's final `PUT` then fails its digest check at TCR
//! and the client uploads again.

use actix_web::http::{Method, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};

use super::spool::Spool;
use super::{check_range, session_answer};
use crate::auth::Grant;
use crate::oci::{Digest, ErrorCode, OciError, RepoName};
use crate::registry::request::Route;
use crate::registry::route::Endpoint;
use crate::registry::wan::answers::{created, Intercept};
use crate::registry::wan::calls::{credential_of, Caller, Calls};
use crate::registry::wan::dedup;
use crate::registry::RegistryFront;

/// The step: a request on an upload session whose chunks are (or are about to be) held here.
pub async fn intercept(
    (front, spool): (&web::Data<RegistryFront>, &Spool),
    route: &Route,
    grant: &Grant,
    req: &HttpRequest,
    payload: web::Payload,
) -> Result<Intercept, OciError> {
    let (Some(up), Endpoint::Upload { name, id }) = (route.upstream.as_ref(), &route.endpoint)
    else {
        return Ok(Intercept::Pass(payload));
    };
    let held = spool.holds(id);
    let answer = match route.method {
        Method::PATCH => {
            let session = spool.adopt(id, up)?;
            let mut s = session.lock().await;
            check_range(req, s.size)?;
            spool.receive(&mut s, payload).await?;
            let resp = session_answer(StatusCode::ACCEPTED, route, name, id, s.size);
            with_query(resp, route)
        }
        Method::GET if held => {
            let s = spool.get(id, up)?;
            let size = s.lock().await.size;
            with_query(
                session_answer(StatusCode::NO_CONTENT, route, name, id, size),
                route,
            )
        }
        Method::DELETE if held => {
            let s = spool.get(id, up)?;
            spool.discard(id, &mut *s.lock().await).await;
            return Ok(Intercept::Pass(payload));
        }
        Method::PUT if held => {
            let place = Place {
                front,
                spool,
                route,
                grant,
                name,
                up,
                id,
            };
            place.finish(req, payload).await?
        }
        _ => return Ok(Intercept::Pass(payload)),
    };
    Ok(Intercept::Answered(answer))
}

/// The session's `Location` keeps TCR's query (its upload state), as the client sent it.
fn with_query(mut resp: HttpResponse, route: &Route) -> HttpResponse {
    let Some(loc) = resp
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
    else {
        return resp;
    };
    let query = query_without_digest(&route.query);
    if !query.is_empty() {
        if let Ok(v) = format!("{loc}?{query}").parse() {
            resp.headers_mut()
                .insert(actix_web::http::header::LOCATION, v);
        }
    }
    resp
}

/// The raw query without its `digest=` pairs.
fn query_without_digest(query: &str) -> String {
    query
        .split('&')
        .filter(|p| !p.is_empty() && !p.starts_with("digest="))
        .collect::<Vec<_>>()
        .join("&")
}

/// A held session's final `PUT`.
struct Place<'a> {
    front: &'a web::Data<RegistryFront>,
    spool: &'a Spool,
    route: &'a Route,
    grant: &'a Grant,
    name: &'a RepoName,
    up: &'a RepoName,
    id: &'a str,
}

impl Place<'_> {
    /// The last bytes held too, the digest checked, then a mount or one upload of it all.
    async fn finish(
        &self,
        req: &HttpRequest,
        payload: web::Payload,
    ) -> Result<HttpResponse, OciError> {
        let digest = self.route.upload_digest().ok_or_else(|| {
            OciError::new(ErrorCode::DigestInvalid, "digest query parameter required")
        })?;
        let session = self.spool.get(self.id, self.up)?;
        let mut s = session.lock().await;
        check_range(req, s.size)?;
        self.spool.receive(&mut s, payload).await?;
        let size = s.size;
        let (file, reservation) = match self.spool.seal(self.id, &mut s, &digest).await {
            Ok(sealed) => sealed,
            Err(e) => {
                self.cancel_upstream();
                return Err(e);
            }
        };
        drop(s);
        let _uploading = crate::registry::wan::upload_mark(self.front, self.route).await;
        let result = if dedup::mount_known(self.front, self.grant, self.up, &digest).await {
            if let Some(index) = &self.front.wan.index {
                index.metrics().bytes_saved.inc_by(size);
            }
            self.cancel_upstream();
            Ok(())
        } else {
            self.send(&file, &digest, size).await
        };
        let _ = tokio::fs::remove_file(&file).await;
        self.spool.release(reservation);
        result?;
        Ok(created(self.route, self.name, &digest))
    }

    /// The held bytes to TCR's session, in one `PUT ?digest=`.
    async fn send(
        &self,
        file: &std::path::Path,
        digest: &Digest,
        size: u64,
    ) -> Result<(), OciError> {
        let caller = Caller::of(self.grant);
        let calls = Calls::new(self.front, caller.credential);
        let body = match tokio::fs::File::open(file).await {
            Ok(f) => {
                let stream = tokio_util::io::ReaderStream::with_capacity(f, 256 * 1024);
                reqwest::Body::wrap_stream(stream)
            }
            Err(e) => {
                return Err(OciError::new(
                    ErrorCode::Unavailable,
                    format!("the held chunks are gone: {e}"),
                )
                .with_status(StatusCode::SERVICE_UNAVAILABLE))
            }
        };
        let location = self.location();
        calls
            .complete(self.up, &location, digest, body, size)
            .await
            .map_err(|e| {
                OciError::new(ErrorCode::Unavailable, e).with_status(StatusCode::BAD_GATEWAY)
            })?;
        if let Some(index) = &self.front.wan.index {
            index.uploaded(digest, self.up).await;
            index
                .pushed(caller.owner.as_deref(), self.up.namespace())
                .await;
        }
        Ok(())
    }

    /// TCR's session: its path in `up` and its state.
    fn location(&self) -> String {
        format!(
            "/v2/{}/blobs/uploads/{}?{}",
            self.up,
            self.id,
            query_without_digest(&self.route.query)
        )
    }

    /// Cancel TCR's session in the background (nothing will be sent to it).
    fn cancel_upstream(&self) {
        let (front, up, location) = ((*self.front).clone(), self.up.clone(), self.location());
        let credential = credential_of(self.grant);
        actix_web::rt::spawn(async move {
            Calls::new(&front, credential).cancel(&up, &location).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_leaves_the_query_and_the_state_stays() {
        assert_eq!(
            query_without_digest("_state=a%3D&digest=sha256%3Aab"),
            "_state=a%3D"
        );
        assert_eq!(query_without_digest("digest=sha256:ab"), "");
        assert_eq!(query_without_digest(""), "");
    }
}
