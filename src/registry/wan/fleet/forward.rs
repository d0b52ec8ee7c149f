//! Streaming a request to the replica that serves it — the holder of a pipelined session, or
//! the owner of the repository — and its answer back.

use actix_web::http::{Method, StatusCode};
use actix_web::{web, HttpMessage, HttpRequest, HttpResponse};
use futures_util::StreamExt;

use super::{Fleet, FORWARDED};
use crate::oci::{ErrorCode, OciError};
use crate::registry::request::{content_length, Route};
use crate::registry::route::Endpoint;
use crate::registry::{body, rewrite};

/// Where a request is served.
pub enum Routed {
    /// By another replica: its answer.
    Answered(HttpResponse),
    /// Here (the body untouched).
    Here(web::Payload),
}

fn gone() -> OciError {
    OciError::new(
        ErrorCode::BlobUploadUnknown,
        "the adapter replica holding this upload session is gone; start the upload again",
    )
    .with_status(StatusCode::NOT_FOUND)
}

fn unavailable() -> OciError {
    OciError::new(
        ErrorCode::Unavailable,
        "the adapter replica serving this repository did not answer; try again",
    )
    .with_status(StatusCode::SERVICE_UNAVAILABLE)
}

/// Whether the request carries a body (a forward that fails before sending one can still be
/// served here).
fn has_body(req: &HttpRequest) -> bool {
    match content_length(req) {
        Some(n) => n > 0,
        None => req.headers().contains_key("transfer-encoding"),
    }
}

impl Fleet {
    /// Serve `route` here, or stream it to the replica holding its session or owning its
    /// repository. A request one replica already sent another is served where it landed (a
    /// session held elsewhere is then gone).
    pub async fn route(
        &self,
        route: &Route,
        req: &HttpRequest,
        payload: web::Payload,
        bytes_in: prometheus::IntCounter,
    ) -> Result<Routed, OciError> {
        let session_owner = match &route.endpoint {
            Endpoint::Upload { id, .. } => self.elsewhere(id),
            _ => None,
        };
        if req.headers().contains_key(FORWARDED) {
            return match session_owner {
                Some(_) => Err(gone()), // never a second hop
                None => Ok(Routed::Here(payload)),
            };
        }
        if let Some(owner) = session_owner {
            let Some(base) = self.find(owner).await else {
                self.forwards.with_label_values(&["gone"]).inc();
                return Err(gone());
            };
            return match self.send(&base, route, req, Some(payload), bytes_in).await {
                Ok(answer) => Ok(Routed::Answered(answer)),
                Err(_) => {
                    self.unreachable(owner);
                    Err(gone())
                }
            };
        }
        let Some((owner, base)) = route.upstream.as_ref().and_then(|up| self.owner_of(up)) else {
            return Ok(Routed::Here(payload));
        };
        if !has_body(req) {
            // Nothing is lost when the owner does not answer: served here instead.
            return match self.send(&base, route, req, None, bytes_in).await {
                Ok(answer) => Ok(Routed::Answered(answer)),
                Err(_) => {
                    self.unreachable(&owner);
                    Ok(Routed::Here(payload))
                }
            };
        }
        match self.send(&base, route, req, Some(payload), bytes_in).await {
            Ok(answer) => Ok(Routed::Answered(answer)),
            Err(_) => {
                self.unreachable(&owner);
                Err(unavailable())
            }
        }
    }

    /// Stream `req` (with `payload` as its body, if any) to the replica at `base` and its answer
    /// back (`Err`: it did not answer).
    async fn send(
        &self,
        base: &str,
        route: &Route,
        req: &HttpRequest,
        payload: Option<web::Payload>,
        bytes_in: prometheus::IntCounter,
    ) -> Result<HttpResponse, ()> {
        let mut url = url::Url::parse(base).map_err(|_| ())?;
        let path = route.endpoint.upstream_path(None);
        let path = match req.query_string() {
            "" => path,
            q => path.with_query(q),
        };
        url.set_path("");
        let url = url.join(&path.to_path_and_query()).map_err(|_| ())?;
        let mut headers = rewrite::request_headers(req.headers());
        if let Some(auth) = req.headers().get("authorization") {
            if let Ok(v) = reqwest::header::HeaderValue::from_bytes(auth.as_bytes()) {
                headers.insert(reqwest::header::AUTHORIZATION, v);
            }
        }
        if let Some(host) = req.headers().get("host") {
            // The answer's Locations name what the client reached (unless a public URL is set).
            if let Ok(v) = reqwest::header::HeaderValue::from_bytes(host.as_bytes()) {
                headers.insert(reqwest::header::HOST, v);
            }
        }
        if let Some(id) = req.extensions().get::<crate::access_log::RequestId>() {
            // Both replicas' access-log lines of the request share its id.
            if let Ok(v) = reqwest::header::HeaderValue::from_str(&id.0) {
                headers.insert(reqwest::header::HeaderName::from_static("x-request-id"), v);
            }
        }
        headers.insert(
            reqwest::header::HeaderName::from_static(FORWARDED),
            reqwest::header::HeaderValue::from_str(&self.id).expect("hex id"),
        );
        let method =
            reqwest::Method::from_bytes(route.method.as_str().as_bytes()).map_err(|_| ())?;
        let head = route.method == Method::HEAD;
        let resp = if let Some(payload) = payload.filter(|_| has_body(req)) {
            let (body, pump) = body::bridge(payload, bytes_in);
            let send = self
                .http
                .request(method, url)
                .headers(headers)
                .body(body)
                .send();
            body::drive(send, pump).await
        } else {
            self.http.request(method, url).headers(headers).send().await
        };
        let resp = match resp {
            Ok(r) => r,
            Err(e) => {
                self.forwards.with_label_values(&["failed"]).inc();
                tracing::warn!(error = %e, "fleet: the replica serving a request did not answer");
                return Err(());
            }
        };
        self.forwards.with_label_values(&["forwarded"]).inc();
        let mut out = HttpResponse::build(
            StatusCode::from_u16(resp.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY),
        );
        for (n, v) in resp.headers() {
            if !rewrite::is_hop_by_hop(n.as_str()) && n != "content-length" {
                out.insert_header((n.as_str(), v.as_bytes()));
            }
        }
        // A HEAD's length is its header's (the answer has no body to measure).
        let len = match head {
            true => resp
                .headers()
                .get("content-length")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok()),
            false => resp.content_length(),
        };
        let stream = resp
            .bytes_stream()
            .map(|c| c.map_err(std::io::Error::other));
        Ok(match len {
            Some(n) => out.body(actix_web::body::SizedStream::new(n, stream)),
            None => out.streaming(stream),
        })
    }
}
