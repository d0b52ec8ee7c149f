//! Harbor 2.9's copy by chunk without a WAN round trip per chunk (`wan.stream_chunks`, off by
//! default: a streamed session lives in this process, so a restart or another replica costs
//! the blob's upload; without `wan.pipeline`, which spools chunks itself). Harbor sends a blob larger than
//! `REPLICATION_CHUNK_SIZE` as `POST`, one `PATCH` per chunk with `Content-Range`, and a final
//! `PUT ?digest=` carrying the last chunk. Relayed one by one, every chunk waits for TCR's
//! answer. Here the session's first `PATCH` (range `0-…`) opens **one** `PATCH` to TCR whose
//! body is a stream (chunked transfer encoding, no `Content-Range`: distribution appends it, as
//! it does for `docker push`), fed through a bounded channel; each client `PATCH` is piped into
//! it and answered `202` once its body is queued, with the range received so far and the same
//! `Location`. The final `PUT` ends the stream, waits for TCR's answer to the long `PATCH`
//! (whose `Location` carries TCR's upload state) and is relayed there with its own body: its
//! answer is TCR's, and TCR verifies the digest.
//!
//! Rules: a range that does not start where the received bytes end is `416 RANGE_INVALID` (as
//! distribution answers) and changes nothing; `GET` on the session answers `204` with the range
//! received; an upstream failure fails the session, and every later request for it is `404
//! BLOB_UPLOAD_UNKNOWN` (the client starts the blob again). A session the adapter did not start
//! (no first `PATCH` at `0-`) is relayed as before. With replicas sharing a store the sessions
//! are not shared, so the room is off there.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::http::header::LOCATION;
use actix_web::http::{Method, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::Bytes;
use futures_util::StreamExt;
use reqwest::header::{HeaderMap, HeaderValue};
use tokio::sync::mpsc;

use super::answers::Intercept;
use super::task::{settled, spawn, Ahead};
use crate::auth::Grant;
use crate::oci::{ErrorCode, OciError, RepoName};
use crate::registry::body::CHANNEL_DEPTH;
use crate::registry::request::{content_length, Route};
use crate::registry::route::Endpoint;
use crate::registry::RegistryFront;
use crate::upstream::{Forward, ForwardBody};

/// A session nobody has touched for this long is dropped (its stream to TCR aborted).
const IDLE: Duration = Duration::from_secs(600);
/// How long the final `PUT` waits for TCR's answer to the long `PATCH` once its body has ended.
const FINAL_ANSWER: Duration = Duration::from_secs(300);

type Key = (RepoName, String);
type Chunk = Result<Bytes, std::io::Error>;

/// The streamed sessions of this process, by upstream repository and TCR's session id.
#[derive(Default)]
pub struct Chunks {
    sessions: Mutex<HashMap<Key, Arc<Session>>>,
}

struct Session {
    stream: tokio::sync::Mutex<Stream>,
    touched: Mutex<Instant>,
}

/// One long `PATCH` to TCR: its body's sender, and its answer (TCR's next `Location`).
struct Stream {
    received: u64,
    tx: Option<mpsc::Sender<Chunk>>,
    answer: Ahead<Result<String, String>>,
    failed: Option<String>,
}

impl Drop for Stream {
    /// A stream dropped unfinished is aborted, so that TCR does not take a partial body as done.
    fn drop(&mut self) {
        if let Some(tx) = self.tx.take() {
            let _ = tx.try_send(Err(std::io::Error::other("upload abandoned")));
        }
    }
}

impl Chunks {
    fn get(&self, key: &Key) -> Option<Arc<Session>> {
        let mut map = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        sweep(&mut map);
        let s = map.get(key)?.clone();
        *s.touched.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
        Some(s)
    }

    /// The session under `key`, opened now if there is none (sessions idle too long forgotten).
    fn get_or_open(&self, key: Key, open: impl FnOnce() -> Arc<Session>) -> Arc<Session> {
        let mut map = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        sweep(&mut map);
        map.entry(key).or_insert_with(open).clone()
    }

    fn remove(&self, key: &Key) -> Option<Arc<Session>> {
        let mut map = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(key)
    }
}

/// Sessions idle for [`IDLE`] are forgotten (their streams aborted as they drop), at every
/// look into the map: a client that went away does not keep TCR's connection past that.
fn sweep(map: &mut HashMap<Key, Arc<Session>>) {
    map.retain(|_, s| {
        let at = *s.touched.lock().unwrap_or_else(|p| p.into_inner());
        at.elapsed() < IDLE
    });
}

/// The upload session `id` in `up` will not be finished (its blob was mounted or found at the
/// final `PUT`): its stream to TCR is aborted.
pub fn abandon(front: &RegistryFront, up: &RepoName, id: &str) {
    if let Some(chunks) = front.wan.chunks.as_deref() {
        chunks.remove(&(up.clone(), id.to_string()));
    }
}

/// The step: a chunk `PATCH` piped into its session's stream, a `GET` answered with the range
/// received, a `DELETE` aborting the stream, a final `PUT` ending it (`route` then names TCR's
/// next `Location`); anything else passes on untouched.
pub async fn intercept(
    front: &web::Data<RegistryFront>,
    route: &mut Route,
    grant: &Grant,
    req: &HttpRequest,
    payload: web::Payload,
) -> Result<Intercept, OciError> {
    let (Some(chunks), Some(up), Endpoint::Upload { name, id }) = (
        front.wan.chunks.as_deref(),
        route.upstream.clone(),
        route.endpoint.clone(),
    ) else {
        return Ok(Intercept::Pass(payload));
    };
    let key = (up.clone(), id.clone());
    let session = chunks.get(&key);
    match (route.method.clone(), session) {
        (Method::PATCH, Some(s)) => patch(front, route, req, payload, &s).await,
        (Method::PATCH, None) => match crate::oci::content_range(req.headers())? {
            Some((0, _)) => {
                let s = chunks.get_or_open(key, || open(front, route, grant, &up));
                patch(front, route, req, payload, &s).await
            }
            _ => Ok(Intercept::Pass(payload)),
        },
        (Method::GET, Some(s)) => {
            let st = s.stream.lock().await;
            if let Some(why) = &st.failed {
                return Err(upload_unknown(&id, why));
            }
            Ok(Intercept::Answered(session_answer(
                StatusCode::NO_CONTENT,
                route,
                &name,
                &id,
                st.received,
            )))
        }
        (Method::DELETE, Some(_)) => {
            chunks.remove(&key);
            Ok(Intercept::Pass(payload))
        }
        (Method::PUT, Some(s)) => {
            let mut st = s.stream.lock().await;
            if let Some(why) = st.failed.clone() {
                chunks.remove(&key);
                return Err(upload_unknown(&id, &why));
            }
            if let Some((a, _)) = crate::oci::content_range(req.headers())? {
                if a != st.received {
                    return Err(out_of_order(route, &name, &id, st.received));
                }
            }
            chunks.remove(&key);
            drop(st.tx.take()); // the end of the long PATCH's body
            let answer = tokio::time::timeout(FINAL_ANSWER, settled(st.answer.clone())).await;
            match answer {
                Ok(Some(Ok(location))) => {
                    resume_at(route, &name, &location);
                    Ok(Intercept::Pass(payload))
                }
                Ok(Some(Err(why))) => Err(upload_unknown(&id, &why)),
                Ok(None) => Err(upload_unknown(&id, "the stream to TCR was abandoned")),
                Err(_) => Err(upload_unknown(
                    &id,
                    "TCR did not answer the streamed upload",
                )),
            }
        }
        _ => Ok(Intercept::Pass(payload)),
    }
}

/// The long `PATCH` to TCR, started now with an empty stream.
fn open(
    front: &web::Data<RegistryFront>,
    route: &Route,
    grant: &Grant,
    up: &RepoName,
) -> Arc<Session> {
    let (tx, rx) = mpsc::channel::<Chunk>(CHANNEL_DEPTH);
    // A client that stops sending (and never ends or cancels the upload) does not hold TCR's
    // connection open: after [`IDLE`] without a chunk the stream is broken off.
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        match tokio::time::timeout(IDLE, rx.recv()).await {
            Ok(Some(chunk)) => Some((chunk, rx)),
            Ok(None) => None,
            Err(_) => Some((Err(std::io::Error::other("no chunk came")), rx)),
        }
    });
    let mut headers = HeaderMap::new();
    headers.insert(
        reqwest::header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(
        reqwest::header::ACCEPT_ENCODING,
        HeaderValue::from_static("identity"),
    );
    let fwd = Forward {
        method: reqwest::Method::PATCH,
        path: route
            .endpoint
            .upstream_path(Some(up))
            .with_query(&route.query),
        headers,
        body: ForwardBody::Stream(reqwest::Body::wrap_stream(body)),
        scopes: super::push_scopes(up, None),
        credential: super::credential_of(grant),
        route: route.endpoint.label(),
    };
    let f = front.clone();
    let answer = spawn(async move {
        let resp = f.upstream.send(fwd).await.map_err(|e| {
            let e = OciError::from(e);
            tracing::warn!(error = %e.message, "streamed upload PATCH to TCR failed");
            "TCR could not be reached".to_string()
        })?;
        let status = resp.status();
        let location = resp
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        match (status.as_u16(), location) {
            (202, Some(l)) => Ok(l),
            _ => {
                let text = crate::registry::body::read_limited(resp, 4096)
                    .await
                    .unwrap_or_default();
                let text = String::from_utf8_lossy(&text);
                let text = crate::oci::excerpt(text.trim());
                tracing::warn!(%status, body = %text, "TCR refused a streamed upload PATCH");
                Err(format!("TCR answered {status}: {text}"))
            }
        }
    });
    Arc::new(Session {
        stream: tokio::sync::Mutex::new(Stream {
            received: 0,
            tx: Some(tx),
            answer,
            failed: None,
        }),
        touched: Mutex::new(Instant::now()),
    })
}

/// A chunk: its range checked against what was received, its body queued into the stream,
/// answered `202` with the range received.
async fn patch(
    front: &web::Data<RegistryFront>,
    route: &Route,
    req: &HttpRequest,
    mut payload: web::Payload,
    session: &Session,
) -> Result<Intercept, OciError> {
    let Endpoint::Upload { name, id } = &route.endpoint else {
        return Ok(Intercept::Pass(payload));
    };
    let mut st = session.stream.lock().await;
    if let Some(why) = &st.failed {
        return Err(upload_unknown(id, why));
    }
    let range = crate::oci::content_range(req.headers())?;
    if let Some((a, b)) = range {
        if a != st.received {
            return Err(out_of_order(route, name, id, st.received));
        }
        if content_length(req).is_some_and(|n| n != b - a + 1) {
            return Err(OciError::new(
                ErrorCode::SizeInvalid,
                format!("Content-Length does not match Content-Range {a}-{b}"),
            )
            .with_status(StatusCode::BAD_REQUEST));
        }
    }
    let early = st.answer.borrow().clone();
    if let Some(Err(why)) = early {
        return Err(fail(&mut st, id, why));
    }
    let Some(tx) = st.tx.clone() else {
        return Err(fail(&mut st, id, "the stream to TCR has ended".into()));
    };
    let mut got = 0u64;
    while let Some(chunk) = payload.next().await {
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => {
                // Part of the body may already be on its way: the session cannot go on.
                let why = format!("the client's body broke off: {e}");
                fail(&mut st, id, why.clone());
                return Err(OciError::new(ErrorCode::BlobUploadInvalid, why)
                    .with_status(StatusCode::BAD_REQUEST));
            }
        };
        front.metrics.bytes_in.inc_by(chunk.len() as u64);
        got += chunk.len() as u64;
        if tx.send(Ok(chunk)).await.is_err() {
            let why = match settled(st.answer.clone()).await {
                Some(Err(why)) => why,
                _ => "TCR ended the upload early".to_string(),
            };
            return Err(fail(&mut st, id, why));
        }
    }
    if let Some((a, b)) = range {
        if got != b - a + 1 {
            let why = format!("the chunk {a}-{b} had {got} bytes");
            return Err(fail(&mut st, id, why));
        }
    }
    st.received += got;
    Ok(Intercept::Answered(session_answer(
        StatusCode::ACCEPTED,
        route,
        name,
        id,
        st.received,
    )))
}

/// The session failed: its stream aborted; this and every later request for it is told so.
fn fail(st: &mut Stream, id: &str, why: String) -> OciError {
    if let Some(tx) = st.tx.take() {
        let _ = tx.try_send(Err(std::io::Error::other("upload failed")));
    }
    st.failed = Some(why.clone());
    upload_unknown(id, &why)
}

fn upload_unknown(id: &str, why: &str) -> OciError {
    OciError::new(
        ErrorCode::BlobUploadUnknown,
        format!("upload {id} failed and must start again: {why}"),
    )
    .with_status(StatusCode::NOT_FOUND)
}

/// `416 RANGE_INVALID`, with where the upload stands (as distribution answers).
fn out_of_order(route: &Route, name: &RepoName, id: &str, received: u64) -> OciError {
    OciError::new(
        ErrorCode::RangeInvalid,
        format!("the chunk must start at {received}"),
    )
    .with_status(StatusCode::RANGE_NOT_SATISFIABLE)
    .with_header(LOCATION, &client_location(route, name, id))
    .with_header(actix_web::http::header::RANGE, &range_value(received))
}

fn session_answer(
    status: StatusCode,
    route: &Route,
    name: &RepoName,
    id: &str,
    received: u64,
) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((LOCATION, client_location(route, name, id)))
        .insert_header(("Docker-Upload-UUID", id))
        .insert_header(("Range", range_value(received)))
        .insert_header(("Content-Length", "0"))
        .finish()
}

/// The session's URL on the adapter, with the query the client sent (TCR's upload state).
fn client_location(route: &Route, name: &RepoName, id: &str) -> String {
    let path = format!("{}/v2/{name}/blobs/uploads/{id}", route.base);
    let query: Vec<&str> = route
        .query
        .split('&')
        .filter(|p| !p.is_empty() && !p.starts_with("digest="))
        .collect();
    match query.is_empty() {
        true => path,
        false => format!("{path}?{}", query.join("&")),
    }
}

/// `0-<last byte>` (`0-0` before any byte, as distribution says).
fn range_value(received: u64) -> String {
    format!("0-{}", received.saturating_sub(1))
}

/// The final `PUT` goes where TCR's answer to the long `PATCH` points: its session id and
/// query (TCR's upload state), with the client's `digest`.
fn resume_at(route: &mut Route, name: &RepoName, location: &str) {
    let rest = match location.find("://") {
        Some(i) => location[i + 3..]
            .find('/')
            .map_or("", |p| &location[i + 3 + p..]),
        None => location,
    };
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if let Some(id) = path.rsplit('/').next().filter(|s| !s.is_empty()) {
        route.endpoint = Endpoint::Upload {
            name: name.clone(),
            id: id.to_string(),
        };
    }
    let digest = route
        .query
        .split('&')
        .filter(|p| p.starts_with("digest="))
        .map(str::to_string);
    let kept = query
        .split('&')
        .filter(|p| !p.is_empty() && !p.starts_with("digest="))
        .map(str::to_string);
    route.query = kept.chain(digest).collect::<Vec<_>>().join("&");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(range_value(0), "0-0");
        assert_eq!(range_value(10), "0-9");
    }
}
