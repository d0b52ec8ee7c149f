//! Step 5 and 6 of the `/v2/` pipeline: plan the upstream call — the path built by the shared
//! builder, the scopes TCR's realm must grant, the caller's own credential, and how the body
//! travels (none, buffered manifest, or a bounded stream that can be replayed within
//! `tcr.replay_buffer_bytes`) — then send it with the retry policy. A write TCR refuses because
//! its namespace is missing gets the namespace ensured again and is sent once more.

use std::future::Future;
use std::pin::Pin;

use actix_web::http::Method;
use actix_web::{web, HttpRequest};
use reqwest::header::{HeaderMap, HeaderValue, CONTENT_LENGTH};

use super::body::{self, bridge_stream, drive};
use super::failure::Failure;
use super::request::{content_length, Route};
use super::route::Endpoint;
use super::{rewrite, RegistryFront};
use crate::auth::Grant;
use crate::oci::{OciError, MAX_MANIFEST_BYTES};
use crate::upstream::{BasicAuth, Forward, ForwardBody, ReplayBody, UpstreamPath};

/// Moves the client's body into the upstream request while it is sent.
type Pump = Pin<Box<dyn Future<Output = ()>>>;

/// One upstream call, ready to send (and to send again).
pub struct Plan {
    path: UpstreamPath,
    pub headers: HeaderMap,
    scopes: Vec<String>,
    credential: Option<BasicAuth>,
    route: &'static str,
    method: Method,
    body: Option<ForwardBody>,
    pump: Option<Pump>,
    /// A manifest's bytes, as sent (to learn the blobs it references).
    pub manifest: Option<bytes::Bytes>,
}

impl Plan {
    pub async fn new(
        req: &HttpRequest,
        payload: web::Payload,
        route: &Route,
        front: &RegistryFront,
        grant: &Grant,
    ) -> Result<Plan, OciError> {
        let mut headers = rewrite::request_headers(req.headers());
        let (body, pump) = body_strategy(req, payload, route, front, &mut headers).await?;
        Ok(Plan {
            path: route
                .endpoint
                .upstream_path(route.upstream.as_ref())
                .with_query(&route.query),
            headers,
            scopes: scopes(route, front, grant).await,
            credential: super::wan::credential_of(grant),
            route: route.endpoint.label(),
            method: route.method.clone(),
            manifest: match &body {
                ForwardBody::Bytes(b) => Some(b.clone()),
                _ => None,
            },
            body: Some(body),
            pump,
        })
    }

    /// The request with `body` and `method` (the planned ones, or a GET for a manifest's digest).
    pub fn forward(&self, body: ForwardBody, method: &Method) -> Forward {
        Forward {
            method: reqwest::Method::from_bytes(method.as_str().as_bytes())
                .unwrap_or(reqwest::Method::GET),
            path: self.path.clone(),
            headers: self.headers.clone(),
            body,
            scopes: self.scopes.clone(),
            credential: self.credential.clone(),
            route: self.route,
        }
    }

    /// Send it; a write refused for a missing namespace is retried once after ensuring it.
    pub async fn send(
        &mut self,
        front: &RegistryFront,
        route: &Route,
        grant: &Grant,
    ) -> Result<reqwest::Response, OciError> {
        let body = self.body.take().unwrap_or(ForwardBody::Empty);
        let replay = replay_copy(&body);
        let fwd = self.forward(body, &self.method.clone());
        let resp = match self.pump.take() {
            Some(pump) => drive(front.upstream.send(fwd), pump).await?,
            None => front.upstream.send(fwd).await?,
        };
        let status = resp.status();
        if !(status.is_client_error() || status.is_server_error())
            || Endpoint::is_read(&route.method)
        {
            return Ok(resp);
        }
        self.retry_missing_namespace(front, route, grant, resp, replay)
            .await
    }

    /// A write into a namespace TCR does not have: forget it, and create it (once) when there
    /// are keys to do so; without keys, say which keys are needed.
    async fn retry_missing_namespace(
        &self,
        front: &RegistryFront,
        route: &Route,
        grant: &Grant,
        resp: reqwest::Response,
        replay: Option<ForwardBody>,
    ) -> Result<reqwest::Response, OciError> {
        let failure = Failure::read(resp).await;
        let (Some(up), true) = (&route.upstream, failure.missing_namespace()) else {
            return Err(failure.into_oci(&route.endpoint, &route.method));
        };
        let ns = up.namespace();
        front.namespaces.invalidate(ns);
        let keys = grant.identity.api_keys.as_ref();
        if keys.is_none() && front.provisioner_keys.is_none() {
            return Err(front.namespaces.keys_needed_error(ns));
        }
        let still_replayable = |b: &ForwardBody| match b {
            ForwardBody::Replayable(r) => r.can_replay(),
            _ => true,
        };
        let Some(body) = replay.filter(still_replayable) else {
            return Err(failure.into_oci(&route.endpoint, &route.method));
        };
        tracing::info!(
            namespace = ns,
            "namespace missing upstream: ensuring it again"
        );
        front.namespaces.ensure(ns, &grant.identity).await?;
        Ok(front
            .upstream
            .send(self.forward(body, &route.method))
            .await?)
    }
}

/// The realm scopes the upstream request needs (a mount also pulls from its source). A
/// pusher's requests also ask pull on the repository its mounts came from lately (layer dedup),
/// so that the same token serves the mounts that follow.
async fn scopes(route: &Route, front: &RegistryFront, grant: &Grant) -> Vec<String> {
    match (&route.upstream, &route.method) {
        (None, _) => vec!["registry:catalog:*".to_string()],
        (Some(up), &Method::DELETE) => vec![format!("repository:{up}:*")],
        (Some(up), _) => {
            let source = match &route.mount_from {
                Some(f) => Some(front.namespaces.to_upstream(f)),
                None => super::wan::scope_hint(front, route, grant).await,
            };
            super::wan::push_scopes(up, source.as_ref())
        }
    }
}

/// How the body travels: none for reads and deletes, buffered (≤ 4 MiB) for manifests, else
/// streamed through a bounded bridge, replayable within `tcr.replay_buffer_bytes`.
async fn body_strategy(
    req: &HttpRequest,
    payload: web::Payload,
    route: &Route,
    front: &RegistryFront,
    headers: &mut HeaderMap,
) -> Result<(ForwardBody, Option<Pump>), OciError> {
    if matches!(route.method, Method::GET | Method::HEAD | Method::DELETE) {
        headers.remove(CONTENT_LENGTH);
        headers.remove(reqwest::header::CONTENT_TYPE);
        return Ok((ForwardBody::Empty, None));
    }
    if matches!(route.endpoint, Endpoint::Manifest { .. }) {
        if content_length(req).is_some_and(|n| n > MAX_MANIFEST_BYTES as u64) {
            return Err(body::too_large(MAX_MANIFEST_BYTES));
        }
        let bytes =
            body::collect_limited(payload, MAX_MANIFEST_BYTES, &front.metrics.bytes_in).await?;
        headers.insert(CONTENT_LENGTH, HeaderValue::from(bytes.len()));
        return Ok((ForwardBody::Bytes(bytes), None));
    }
    if !has_body(req) {
        headers.insert(CONTENT_LENGTH, HeaderValue::from(0));
        return Ok((ForwardBody::Empty, None));
    }
    let (stream, pump) =
        bridge_stream(bytes::Bytes::new(), payload, front.metrics.bytes_in.clone());
    let body = match front.replay_cap {
        0 => ForwardBody::Stream(reqwest::Body::wrap_stream(stream)),
        cap => ForwardBody::Replayable(ReplayBody::new(stream, cap)),
    };
    Ok((body, Some(Box::pin(pump))))
}

/// A second handle on a body that can be sent again.
fn replay_copy(body: &ForwardBody) -> Option<ForwardBody> {
    match body {
        ForwardBody::Empty => Some(ForwardBody::Empty),
        ForwardBody::Bytes(b) => Some(ForwardBody::Bytes(b.clone())),
        ForwardBody::Replayable(r) => Some(ForwardBody::Replayable(r.clone())),
        ForwardBody::Stream(_) => None,
    }
}

/// Whether the client sends a body: a non-zero `Content-Length` or chunked encoding.
fn has_body(req: &HttpRequest) -> bool {
    match content_length(req) {
        Some(n) => n > 0,
        None => req
            .headers()
            .get("transfer-encoding")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked")),
    }
}
