//! Across a WAN: everything the adapter does so that a push to a far TCR costs fewer round trips
//! and fewer bytes, in one room behind the steps the `/v2/` pipeline calls by name:
//!
//! | step | called by | what the room does |
//! |---|---|---|
//! | [`head`] | a blob `HEAD`, before it is relayed | answer it from what the room knows: a mount, an upload on its way, "absent" ahead of TCR |
//! | [`before_send`] | every request, before it is planned | answer it here (pipelined sessions, a parked session, a blob mounted at its last `PUT`) or let it go on |
//! | [`upload_mark`] | an upload's last `PUT`, while it is sent | mark the blob in flight, so that HEADs elsewhere wait and mount |
//! | [`stream_chunks`] | an upload's `PATCH`/`GET`/`PUT`, after `before_send` | stream a chunked upload to TCR as one `PATCH`, answering chunks here |
//! | [`commit_point`] | a manifest `PUT`, before it is sent | wait until TCR has every blob the pipeline brought for it |
//! | [`after_send`] | TCR's answer to a relayed request | learn where blobs are, who pushed where, how TCR answers |
//! | [`scope_hint`] | a request's realm scopes | the repository a caller's mounts came from lately |
//!
//! Inside, one way: [`pipeline`] (pipelined uploads) uses [`ahead`] (work done before it is
//! needed), both use [`dedup`] (mounts instead of uploads), which uses [`calls`] (the adapter's
//! own upstream calls) and [`index`] over [`state`], the seam where the shared state lives
//! (in-process today). [`answers`] and [`task`] are leaves.

mod ahead;
mod answers;
mod calls;
mod chunks;
mod dedup;
pub mod fleet;
mod index;
pub mod pipeline;
pub mod state;
mod task;

use std::sync::Arc;

use actix_web::http::Method;
use actix_web::{web, HttpRequest, HttpResponse};

use crate::auth::Grant;
use crate::config::WanConfig;
use crate::oci::{Digest, OciError, RepoName};
use crate::registry::request::Route;
use crate::registry::route::Endpoint;
use crate::registry::RegistryFront;

pub use answers::Intercept;
pub use calls::{credential_of, push_scopes, Caller};
pub use dedup::referenced_blobs;
pub use index::{BlobIndex, DedupMetrics};
pub use pipeline::Pipeline;
pub use state::{fingerprint, UploadMark, WanState};

/// What the room keeps.
#[derive(Default)]
pub struct Wan {
    /// `wan.dedup`: where blobs are known to exist upstream (none: dedup off).
    pub index: Option<Arc<BlobIndex>>,
    /// `wan.stream_chunks` without the pipeline: chunked uploads streamed to TCR as one `PATCH`
    /// (none: off; see [`chunks`]).
    chunks: Option<Arc<chunks::Chunks>>,
    /// `wan.pipeline`: pipelined uploads through a local spool (none: off).
    pub pipeline: Option<Arc<Pipeline>>,
    /// Replicas sharing a store (`[state] redis_url` with `wan.pipeline`): sessions held by
    /// another replica and its jobs (see [`fleet`]).
    pub fleet: Option<Arc<fleet::Fleet>>,
    /// Work done ahead of need (`wan.dedup`): upload sessions opened before the client's
    /// `POST`, existence checks of blobs answered "absent" before TCR was asked.
    ahead: ahead::WorkAhead,
}

impl Wan {
    /// The room `wan` asks for, its metrics registered in `registry` (a spool that cannot be
    /// made is an error). With a store shared by replicas (`[state] redis_url`) the blob index,
    /// claims and streaks live there, and the replica joins the [`fleet`] at `advertise`
    /// (`by_repository`: each repository served by one replica); else all stays in this process.
    pub fn new(
        wan: &WanConfig,
        store: &crate::state::StateStore,
        (advertise, by_repository): (&str, bool),
        registry: &prometheus::Registry,
    ) -> std::io::Result<Wan> {
        let fleet = store.is_shared().then(|| {
            Arc::new(fleet::Fleet::join(
                store.clone(),
                advertise,
                by_repository,
                registry,
            ))
        });
        let pipeline = match wan.pipeline {
            true => {
                let mut p = Pipeline::new(wan)?;
                if let Some(f) = &fleet {
                    p.spool.session_prefix = format!("p.{}.", f.id);
                }
                let _ = p.metrics().register(registry);
                Some(Arc::new(p))
            }
            false => None,
        };
        let index = wan.dedup.then(|| {
            let index = match store.is_shared() {
                true => BlobIndex::with_state(Arc::new(state::redis::RedisState::new(
                    store.clone(),
                    wan.dedup_entries,
                ))),
                false => BlobIndex::new(wan.dedup_entries),
            };
            let _ = index.metrics().register(registry);
            Arc::new(index)
        });
        let chunks = (wan.stream_chunks && pipeline.is_none() && fleet.is_none())
            .then(|| Arc::new(chunks::Chunks::default()));
        Ok(Wan {
            index,
            chunks,
            pipeline,
            fleet,
            ahead: Default::default(),
        })
    }
}

/// A blob `HEAD` the room may answer itself (`None`: ask TCR).
pub async fn head(
    front: &web::Data<RegistryFront>,
    client: &RepoName,
    target: &RepoName,
    grant: &Grant,
    digest: &Digest,
) -> Option<HttpResponse> {
    let ask = dedup::BlobAsk::new(front, (client, target), grant, digest).await;
    if let Some(p) = front.wan.pipeline.as_deref() {
        return pipeline::answer_head((front, p), &ask).await;
    }
    if let Some(absent) = ahead::absent_ahead(front, &ask).await {
        return Some(absent);
    }
    if let Some(found) = ahead::mounted_ahead(front, target, digest).await {
        return Some(found);
    }
    ahead::mount_following(front, &ask).await;
    let answer = dedup::answer_head(front, &ask).await;
    if answer.is_none() && front.wan.index.is_some() {
        let want = (ask.writer, ahead::SESSIONS_PER_BLOB);
        ahead::park_for_writer(front, target, grant, want);
    }
    answer
}

/// Before anything else is done for a request: served by the replica that holds its pipelined
/// session or owns its repository (see [`fleet`]), or here.
pub async fn elsewhere(
    front: &web::Data<RegistryFront>,
    route: &Route,
    req: &HttpRequest,
    payload: web::Payload,
) -> Result<Intercept, OciError> {
    let Some(fleet) = &front.wan.fleet else {
        return Ok(Intercept::Pass(payload));
    };
    let bytes_in = front.metrics.bytes_in.clone();
    Ok(match fleet.route(route, req, payload, bytes_in).await? {
        fleet::Routed::Answered(answer) => Intercept::Answered(answer),
        fleet::Routed::Here(payload) => Intercept::Pass(payload),
    })
}

/// Before a request is planned: answered here, or passed on with its body.
pub async fn before_send(
    front: &web::Data<RegistryFront>,
    route: &Route,
    grant: &Grant,
    req: &HttpRequest,
    payload: web::Payload,
) -> Result<Intercept, OciError> {
    if let (Endpoint::Manifest { .. }, &Method::HEAD, Some(up)) =
        (&route.endpoint, &route.method, route.upstream.as_ref())
    {
        ahead::prefetch_for_manifest_head(front, up, grant).await;
    }
    match front.wan.pipeline.as_deref() {
        Some(p) => pipeline::intercept((front, p), route, grant, req, payload).await,
        None => ahead::intercept(front, route, grant, payload).await,
    }
}

/// A chunked upload's requests (`wan.stream_chunks`): a chunk `PATCH` piped into one long
/// `PATCH` to TCR and answered here; the final `PUT` ends it and goes on to where TCR's answer
/// points (`route` is changed to say so). See [`chunks`].
pub async fn stream_chunks(
    front: &web::Data<RegistryFront>,
    route: &mut Route,
    grant: &Grant,
    req: &HttpRequest,
    payload: web::Payload,
) -> Result<Intercept, OciError> {
    chunks::intercept(front, route, grant, req, payload).await
}

/// While an upload's last `PUT` is in flight, a HEAD for the same blob elsewhere waits for it
/// and then mounts instead of sending the same bytes again.
pub async fn upload_mark(front: &RegistryFront, route: &Route) -> Option<UploadMark> {
    let index = front.wan.index.as_ref()?;
    Some(
        index
            .uploading(&route.upload_digest()?, route.upstream.as_ref()?)
            .await,
    )
}

/// The commit point (`wan.pipeline`): see [`pipeline::commit_point`].
pub async fn commit_point(
    front: &RegistryFront,
    route: &Route,
    manifest: Option<&[u8]>,
) -> Result<(), OciError> {
    match front.wan.pipeline.as_deref() {
        Some(p) => pipeline::commit_point(p, front.wan.fleet.as_deref(), route, manifest).await,
        None => Ok(()),
    }
}

/// TCR answered a relayed request with `resp` (`manifest`: the manifest a `PUT` sent). The work
/// ahead hears of it; a success teaches the index where blobs exist (a blob read, a completed
/// upload or mount, a pushed manifest's references) and, for a write TCR accepted, that the
/// caller's credential pushes into this namespace.
pub async fn after_send(
    front: &web::Data<RegistryFront>,
    route: &Route,
    grant: &Grant,
    manifest: Option<&[u8]>,
    resp: &reqwest::Response,
) {
    ahead::answered(front, route, grant, resp.status()).await;
    let status = resp.status();
    if status.is_client_error() || status.is_server_error() {
        return;
    }
    let (Some(index), Some(repo)) = (front.wan.index.as_ref(), route.upstream.as_ref()) else {
        return;
    };
    let header_digest = || {
        resp.headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| Digest::parse(v).ok())
    };
    let writes = matches!(
        (&route.endpoint, &route.method),
        (Endpoint::UploadStart { .. }, &Method::POST)
            | (Endpoint::Upload { .. }, &Method::PUT | &Method::PATCH)
            | (Endpoint::Manifest { .. }, &Method::PUT)
    );
    if writes && status.is_success() {
        index
            .pushed(Caller::of(grant).owner.as_deref(), repo.namespace())
            .await;
    }
    match (&route.endpoint, &route.method) {
        (Endpoint::Blob { digest, .. }, &Method::GET | &Method::HEAD) => {
            // Only a 200 carries the blob's size (a relayed 307 to object storage does not).
            let size = (status.as_u16() == 200)
                .then(|| resp.headers().get(reqwest::header::CONTENT_LENGTH))
                .flatten()
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok());
            index.learn(digest, repo, size).await;
        }
        (Endpoint::Upload { .. }, &Method::PUT) | (Endpoint::UploadStart { .. }, &Method::POST)
            if status.as_u16() == 201 =>
        {
            if let Some(d) = header_digest().or_else(|| route.upload_digest()) {
                index.uploaded(&d, repo).await;
            }
        }
        (Endpoint::Manifest { .. }, &Method::PUT) => {
            let blobs = manifest.map(referenced_blobs).unwrap_or_default();
            // Independent of each other: one round trip's wait on a shared store, not five.
            let learned = blobs
                .iter()
                .map(|(d, size)| index.learn_hint(d, repo, *size));
            futures_util::join!(
                index.note_manifest(repo, &blobs),
                futures_util::future::join_all(learned),
            );
            index.release_claims_of(repo).await;
        }
        _ => {}
    }
}

/// Where the caller's mounts came from lately, if it may push to the request's repository: its
/// realm token asks pull there too, so that one token serves its requests and its mounts.
pub async fn scope_hint(front: &RegistryFront, route: &Route, grant: &Grant) -> Option<RepoName> {
    let name = route.endpoint.name()?;
    let push = crate::auth::Access::repository(name.as_str(), &["push"]);
    if !grant.allows(&push) {
        return None;
    }
    let owner = Caller::of(grant).owner;
    front
        .wan
        .index
        .as_ref()?
        .source_hint(owner.as_deref())
        .await
}
