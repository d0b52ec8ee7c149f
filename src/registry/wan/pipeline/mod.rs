//! Pipelined uploads (`wan.pipeline = true`): the steps of the `/v2/` pipeline that let a
//! client's round trips stay on the LAN. An upload session is answered by the adapter; the
//! bytes go into a bounded local spool, their digest is checked as they arrive, the client gets
//! its `201` at once and the blob travels to TCR in the background ([`jobs`]). A blob HEAD for a
//! blob that is on its way, or that another repository has, is answered here (the latter starts
//! a background mount with the caller's credential). The **manifest PUT is the commit point**:
//! it is forwarded only when every blob it references that the pipeline handled is confirmed in
//! TCR, and fails (`MANIFEST_BLOB_UNKNOWN`, so the client pushes the blob again) when one could
//! not be brought in. Nothing half-committed becomes visible in TCR: a blob without its manifest
//! is unreferenced, and a restart empties the spool before any manifest could name its blobs.
//!
//! Sessions live on the replica that opened them: replicas that share a store stream a request
//! for another's session to it, and offer their jobs to each other ([`super::fleet`]); without
//! a store, put session affinity in front of several replicas.

pub mod jobs;
mod spool;

use std::time::Duration;

use actix_web::http::{Method, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};

use self::jobs::{Jobs, PipelineMetrics, State, Transfer};
use self::spool::Spool;
use super::ahead;
use super::answers::{absent, created, found, Intercept};
use super::calls::{credential_of, push_scopes, Caller, Calls};
use super::dedup::{self, BlobAsk};
use super::fleet::Fleet;
use super::task::{settled, Ahead};
use crate::auth::Grant;
use crate::config::WanConfig;
use crate::oci::{Digest, ErrorCode, OciError, RepoName};
use crate::registry::failure::Failure;
use crate::registry::request::{content_length, Route};
use crate::registry::route::Endpoint;
use crate::registry::{body, RegistryFront};
use crate::upstream::{Forward, ForwardBody, UpstreamPath};

/// How long a manifest PUT waits for the blobs it references.
pub const COMMIT_WAIT: Duration = Duration::from_secs(1800);

pub struct Pipeline {
    pub spool: Spool,
    pub jobs: Jobs,
}

impl Pipeline {
    /// The pipeline of `wan`, its spool emptied.
    pub fn new(wan: &WanConfig) -> std::io::Result<Pipeline> {
        let metrics = PipelineMetrics::default();
        let spool = Spool::open(
            &wan.spool_path(),
            wan.spool_max_bytes,
            metrics.spool_bytes.clone(),
        )?;
        Ok(Pipeline {
            spool,
            jobs: Jobs::new(wan.max_parallel_uploads, metrics),
        })
    }

    pub fn metrics(&self) -> &PipelineMetrics {
        &self.jobs.metrics
    }
}

/// The pipeline of a front that has one (background jobs only run where it does).
fn of(front: &RegistryFront) -> &Pipeline {
    front
        .wan
        .pipeline
        .as_deref()
        .expect("a pipelined job runs only with wan.pipeline")
}

/// The step that answers upload sessions and spooled blob reads locally.
pub async fn intercept(
    (front, p): (&web::Data<RegistryFront>, &Pipeline),
    route: &Route,
    grant: &Grant,
    req: &HttpRequest,
    payload: web::Payload,
) -> Result<Intercept, OciError> {
    let Some(up) = route.upstream.as_ref() else {
        return Ok(Intercept::Pass(payload));
    };
    let answer = match (&route.endpoint, &route.method) {
        (Endpoint::UploadStart { name }, _) if route.is_plain_upload_start() => {
            route.ensure_namespace(front, grant).await?;
            let caller = Caller::of(grant);
            let opened = ahead::take(front, up, grant).unwrap_or_else(|| {
                ahead::open_session((*front).clone(), up.clone(), caller.clone())
            });
            let id = match p.spool.create(up, opened.clone()) {
                Ok(id) => id,
                Err(e) => {
                    ahead::cancel((*front).clone(), up.clone(), caller, opened);
                    return Err(e);
                }
            };
            session_answer(StatusCode::ACCEPTED, route, name, &id, 0)
        }
        (Endpoint::Upload { name, id }, _) if id.starts_with("p.") => {
            let s = Step {
                front,
                p,
                route,
                grant,
                name,
                up,
                id,
            };
            s.session(req, payload).await?
        }
        (Endpoint::Blob { digest, .. }, &Method::GET) => match spooled(p, up, digest, req).await {
            Some(resp) => resp,
            None => return Ok(Intercept::Pass(payload)),
        },
        (Endpoint::Manifest { name, .. }, &Method::HEAD) => {
            ahead::park_for_image(front, (name, up), grant).await;
            return Ok(Intercept::Pass(payload));
        }
        (Endpoint::Blob { digest, .. }, &Method::DELETE) => {
            p.jobs.remove(up, digest);
            return Ok(Intercept::Pass(payload));
        }
        _ => return Ok(Intercept::Pass(payload)),
    };
    Ok(Intercept::Answered(answer))
}

/// One request on a pipelined session.
struct Step<'a> {
    front: &'a web::Data<RegistryFront>,
    p: &'a Pipeline,
    route: &'a Route,
    grant: &'a Grant,
    name: &'a RepoName,
    up: &'a RepoName,
    id: &'a str,
}

impl Step<'_> {
    async fn session(
        &self,
        req: &HttpRequest,
        payload: web::Payload,
    ) -> Result<HttpResponse, OciError> {
        let session = self.p.spool.get(self.id, self.up)?;
        let mut s = session.lock().await;
        match self.route.method {
            Method::GET => Ok(session_answer(
                StatusCode::NO_CONTENT,
                self.route,
                self.name,
                self.id,
                s.size,
            )),
            Method::DELETE => {
                self.discard(&mut s).await;
                Ok(HttpResponse::NoContent().finish())
            }
            Method::PATCH => {
                check_range(req, s.size)?;
                let first = s.size == 0;
                self.p.spool.receive(&mut s, payload).await?;
                if first {
                    self.refusal_ends(&mut s).await?;
                }
                Ok(session_answer(
                    StatusCode::ACCEPTED,
                    self.route,
                    self.name,
                    self.id,
                    s.size,
                ))
            }
            _ => self.finish(req, &mut s, payload).await,
        }
    }

    /// Drop the session, its bytes and the upstream session opened for it.
    async fn discard(&self, s: &mut spool::Session) {
        self.p.spool.discard(self.id, s).await;
        if let Some(opened) = s.upstream.take() {
            let caller = Caller::of(self.grant);
            ahead::cancel((*self.front).clone(), self.up.clone(), caller, opened);
        }
    }

    /// `PUT ?digest=`: the last bytes, the digest checked, the blob handed to a background job.
    async fn finish(
        &self,
        req: &HttpRequest,
        s: &mut spool::Session,
        payload: web::Payload,
    ) -> Result<HttpResponse, OciError> {
        let digest = self.route.upload_digest().ok_or_else(|| {
            OciError::new(ErrorCode::DigestInvalid, "digest query parameter required")
        })?;
        let _uploading = super::upload_mark(self.front, self.route).await;
        let len = content_length(req);
        if s.size == 0 && len.is_some_and(|n| n > self.p.spool.max_bytes / 2) {
            self.refusal_ends(s).await?;
            let opened = s.upstream.take();
            self.p.spool.discard(self.id, s).await;
            self.passthrough(&digest, len.unwrap_or(0), payload, opened)
                .await?;
        } else {
            self.p.spool.receive(s, payload).await?;
            self.refusal_ends(s).await?;
            let opened = s.upstream.take();
            let (file, reservation) = match self.p.spool.seal(self.id, s, &digest).await {
                Ok(sealed) => sealed,
                Err(e) => {
                    s.upstream = opened;
                    self.discard(s).await;
                    return Err(e);
                }
            };
            let caller = Caller::of(self.grant);
            let sources = match &self.front.wan.index {
                Some(index) => {
                    index
                        .sources_for(&digest, self.up, caller.owner.as_deref())
                        .await
                        .0
                }
                None => Vec::new(),
            };
            let t = Transfer {
                repo: self.up.clone(),
                digest: digest.clone(),
                size: s.size,
                credential: caller.credential,
                owner: caller.owner.clone(),
                session: opened,
                probe: self.front.wan.ahead.probes.take(self.up, &digest),
                sources,
            };
            self.p
                .jobs
                .start_upload(self.front.clone(), t, file, reservation);
            if let Some(f) = &self.front.wan.fleet {
                // Before the upload's mark ends: other replicas' HEADs find the job.
                f.offer(self.up, &digest, caller.owner.as_deref(), s.size)
                    .await;
            }
        }
        Ok(created(self.route, self.name, &digest))
    }

    /// TCR's refusal of the upstream session opened for this one ends it, before the first chunk
    /// or the last `PUT` is acknowledged: the opening is waited for (it runs while the bytes
    /// arrive, so it has mostly settled by then), and when it failed TCR is asked once more
    /// ([`Self::reopen`]) so that a `401`/`403` reaches the client as on the plain path — with
    /// TCR's message, the spooled bytes dropped — instead of a `201` for a blob TCR will never
    /// take. Any other failure leaves the session to its background job, which opens its own.
    async fn refusal_ends(&self, s: &mut spool::Session) -> Result<(), OciError> {
        let opened = s.upstream.take();
        let open = match &opened {
            Some(o) => matches!(settled(o.clone()).await, Some(Ok(_))),
            None => false,
        };
        if open {
            s.upstream = opened;
            return Ok(());
        }
        match self.reopen().await {
            Reopened::Open(location) => {
                let (tx, rx) = tokio::sync::watch::channel(Some(Ok(location)));
                drop(tx);
                s.upstream = Some(rx);
                Ok(())
            }
            Reopened::Refused(refusal) => {
                self.discard(s).await;
                Err(refusal)
            }
            Reopened::Failed => {
                s.upstream = opened;
                Ok(())
            }
        }
    }

    /// `POST /v2/<repo>/blobs/uploads/` once more with the caller's credential, TCR's answer
    /// read: a session, a refusal (401/403, as the `/v2/` path passes it on), or neither.
    async fn reopen(&self) -> Reopened {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(reqwest::header::CONTENT_LENGTH, 0.into());
        let fwd = Forward {
            method: reqwest::Method::POST,
            path: UpstreamPath::root()
                .lit("v2")
                .repo(self.up)
                .lit("blobs")
                .lit("uploads")
                .slash(),
            headers,
            body: ForwardBody::Empty,
            scopes: push_scopes(self.up, None),
            credential: credential_of(self.grant),
            route: "adapter_call",
        };
        let resp = match self.front.upstream.send(fwd).await {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(error = %e, "upload session could not be opened again");
                return Reopened::Failed;
            }
        };
        let location = resp
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        match (resp.status().as_u16(), location) {
            (202, Some(l)) => Reopened::Open(l),
            (401 | 403, _) => {
                let failure = Failure::read(resp).await;
                Reopened::Refused(failure.into_oci(&self.route.endpoint, &self.route.method))
            }
            _ => Reopened::Failed,
        }
    }

    /// A blob too big for the spool goes straight to TCR, as without the pipeline.
    async fn passthrough(
        &self,
        digest: &Digest,
        len: u64,
        payload: web::Payload,
        opened: Option<Ahead<Result<String, String>>>,
    ) -> Result<(), OciError> {
        let calls = Calls::new(self.front, Caller::of(self.grant));
        let unavailable = |e: String| {
            OciError::new(ErrorCode::Unavailable, e).with_status(StatusCode::BAD_GATEWAY)
        };
        let location = match opened {
            Some(opened) => settled(opened).await,
            None => None,
        };
        let location = match location {
            Some(Ok(l)) => l,
            _ => calls.open_session(self.up).await.map_err(unavailable)?,
        };
        let (stream, pump) = body::bridge(payload, self.front.metrics.bytes_in.clone());
        body::drive(
            calls.complete(self.up, &location, digest, stream, len),
            pump,
        )
        .await
        .map_err(unavailable)?;
        if let Some(index) = &self.front.wan.index {
            index.learn(digest, self.up, Some(len)).await;
        }
        Ok(())
    }
}

/// TCR's answer to an upload session opened once more.
enum Reopened {
    Open(String),
    Refused(OciError),
    Failed,
}

/// A blob HEAD: on its way into this repository, or lately brought in (the pipeline's answer);
/// or — for a caller who may write here ([`may_write`]) — on its way into another repository
/// by the same caller's hand (a background mount after that job, answered now: the caller may
/// read the source); or never heard of (absent, answered ahead of TCR: TCR is asked meanwhile
/// and the upload that follows is skipped if it had it after all); else layer dedup's answer (a
/// synchronous mount, with its fallback), and the pipeline's once more (a HEAD that waited on
/// another job's upload finds that job now).
pub async fn answer_head(
    (front, p): (&web::Data<RegistryFront>, &Pipeline),
    ask: &BlobAsk<'_>,
) -> Option<HttpResponse> {
    let head = Head {
        front,
        p,
        target: ask.target,
        grant: ask.grant,
        digest: ask.digest,
        writer: ask.writer,
    };
    if let Some(r) = head.on_its_way().await {
        return Some(r);
    }
    if let Some(r) = head.never_heard_of().await {
        return Some(r);
    }
    if let Some(r) = dedup::answer_head(front, ask).await {
        return Some(r);
    }
    head.on_its_way().await
}

/// A blob HEAD the pipeline may answer.
struct Head<'a> {
    front: &'a web::Data<RegistryFront>,
    p: &'a Pipeline,
    target: &'a RepoName,
    grant: &'a Grant,
    digest: &'a Digest,
    /// Whether the room may write into `target` for the caller (see [`dedup::may_write`]).
    writer: bool,
}

impl Head<'_> {
    /// On its way here (or lately arrived), or on its way into another repository of the same
    /// caller (then mounted from there in the background).
    async fn on_its_way(&self) -> Option<HttpResponse> {
        let (p, digest, target) = (self.p, self.digest, self.target);
        if let Some(job) = p.jobs.get(target, digest) {
            match job.current() {
                State::Failed(_) => p.jobs.remove(target, digest),
                _ => return Some(found(digest, job.size)),
            }
        }
        let Caller { credential, owner } = Caller::of(self.grant);
        let (source, job, writer) = match p.jobs.elsewhere(digest, target, owner.as_deref()) {
            Some((source, job)) => (source, job, self.writer),
            None => self.offered().await?,
        };
        if &source == target {
            return Some(found(digest, job.size)); // another replica's job into this repository
        }
        if !writer {
            return None;
        }
        let t = Transfer {
            repo: target.clone(),
            digest: digest.clone(),
            size: job.size,
            credential,
            owner,
            session: None,
            probe: None,
            sources: Vec::new(),
        };
        p.jobs
            .start_mount((*self.front).clone(), t, source, Some(job.clone()));
        Some(found(digest, job.size))
    }

    /// Another replica's job for the same caller (replicas sharing a store): its repository, a
    /// job here that ends when that one does, and whether the caller may write into the target
    /// (as [`Self::writer`], or TCR took an upload of theirs there on another replica).
    async fn offered(&self) -> Option<(RepoName, jobs::Job, bool)> {
        let fleet = self.front.wan.fleet.clone()?;
        let caller = Caller::of(self.grant).owner;
        let offer = fleet
            .offered(self.digest, self.target, caller.as_deref())
            .await?;
        let writer = self.writer
            || fleet
                .writes_into(caller.as_deref(), self.target.namespace())
                .await;
        let (tx, rx) = tokio::sync::watch::channel(State::Pending);
        let (o, digest) = (offer.clone(), self.digest.clone());
        actix_web::rt::spawn(async move {
            let _ = tx.send(match fleet.follow(&o, &digest, COMMIT_WAIT).await {
                Ok(()) => State::Done,
                Err(e) => State::Failed(e),
            });
        });
        Some((offer.repo, jobs::Job::remote(offer.size, rx), writer))
    }

    /// A blob nobody here has seen anywhere, nor is uploading: absent, said without asking TCR
    /// (claimed, so that other jobs wait for this upload; TCR is asked in the background).
    async fn never_heard_of(&self) -> Option<HttpResponse> {
        let index = self.front.wan.index.as_ref()?;
        if !self.writer || !index.unheard_of(self.digest).await {
            return None;
        }
        if !index.claim(self.digest, self.target).await {
            return None; // another job claimed it first: wait for it and mount (below)
        }
        // Another repository's claim may have become its job (and its mark ended) since this
        // HEAD looked for jobs: that job is the blob's upload, and this claim gives way to it.
        if let Some(r) = self.on_its_way().await {
            index.settle(self.digest, self.target).await;
            return Some(r);
        }
        let Caller { credential, owner } = Caller::of(self.grant);
        let caller = Caller { credential, owner };
        let probe = ahead::check_absent(self.front, self.target, self.digest, caller);
        self.front
            .wan
            .ahead
            .probes
            .insert(self.target, self.digest, probe);
        Some(absent())
    }
}

/// The commit point: a manifest PUT waits until TCR has every blob the pipeline handled for
/// it; one that could not be brought in fails the PUT (nothing is forwarded).
pub async fn commit_point(
    p: &Pipeline,
    fleet: Option<&Fleet>,
    route: &Route,
    manifest: Option<&[u8]>,
) -> Result<(), OciError> {
    let (Some(up), Some(m)) = (&route.upstream, manifest) else {
        return Ok(());
    };
    let not_brought = |d: &Digest, e: &dyn std::fmt::Display| {
        OciError::new(
            ErrorCode::ManifestBlobUnknown,
            format!("blob {d} could not be brought into TCR ({e}); nothing was committed: push the blob again"),
        )
    };
    for (d, _) in &dedup::referenced_blobs(m) {
        let Some(mut job) = p.jobs.get(up, d) else {
            // Another replica's job, when replicas share a store.
            if let Some(f) = fleet {
                f.wait_remote(up, d, COMMIT_WAIT)
                    .await
                    .map_err(|e: String| not_brought(d, &e))?;
            }
            continue;
        };
        if let State::Failed(e) = job.outcome(COMMIT_WAIT).await {
            p.jobs.remove(up, d);
            return Err(not_brought(d, &e));
        }
    }
    Ok(())
}

/// A GET of a blob still waiting in the spool, served from there; a range of it is read from
/// TCR once the blob has arrived there.
async fn spooled(
    p: &Pipeline,
    up: &RepoName,
    digest: &Digest,
    req: &HttpRequest,
) -> Option<HttpResponse> {
    let mut job = p.jobs.get(up, digest)?;
    if req.headers().contains_key("range") {
        job.outcome(COMMIT_WAIT).await;
        return None;
    }
    let file = tokio::fs::File::open(job.file.as_ref()?).await.ok()?;
    let stream = tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024);
    Some(
        HttpResponse::Ok()
            .insert_header(("Docker-Content-Digest", digest.as_str()))
            .insert_header(("Content-Type", "application/octet-stream"))
            .body(actix_web::body::SizedStream::new(job.size, stream)),
    )
}

/// The answer to a session request: where it continues and how much it holds.
fn session_answer(
    status: StatusCode,
    route: &Route,
    name: &RepoName,
    id: &str,
    size: u64,
) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((
            "Location",
            format!("{}/v2/{name}/blobs/uploads/{id}", route.base),
        ))
        .insert_header(("Docker-Upload-UUID", id))
        .insert_header(("Range", format!("0-{}", size.saturating_sub(1))))
        .finish()
}

/// A chunk must start where the session ends (`Content-Range: <start>-<end>`).
fn check_range(req: &HttpRequest, size: u64) -> Result<(), OciError> {
    let Some(range) = req
        .headers()
        .get("content-range")
        .and_then(|v| v.to_str().ok())
    else {
        return Ok(());
    };
    let start = range
        .trim_start_matches("bytes ")
        .split_once('-')
        .and_then(|(s, _)| s.trim().parse::<u64>().ok());
    match start {
        Some(s) if s == size => Ok(()),
        _ => Err(OciError::new(
            ErrorCode::RangeInvalid,
            format!("the next chunk must start at byte {size}"),
        )
        .with_status(StatusCode::RANGE_NOT_SATISFIABLE)),
    }
}
