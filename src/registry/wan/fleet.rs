//! Replicas that share a store (`[state] redis_url`) serve one client together, whatever
//! replica a balancer picks for each request (no session affinity):
//!
//! - **Pipelined sessions answer from any replica.** A session's id names the replica that holds
//!   its spool (`p.<replica>.<uuid>`). Each replica registers its address
//!   (`[state] advertise_url`) in the store with a short expiry it keeps renewing; a request
//!   for another replica's session is streamed to that replica as it is (the adapter's own
//!   token goes along and is checked again there) and its answer streamed back. A replica that
//!   is gone (its registration expired) takes only its open sessions with it: the client is
//!   told `BLOB_UPLOAD_UNKNOWN` and starts that blob again.
//! - **The commit point sees every replica's jobs.** A pipelined blob's background job is noted
//!   in the store (`pending`, then `done` or `failed`), so a manifest PUT that reaches another
//!   replica waits for it as the owner would, and fails (`MANIFEST_BLOB_UNKNOWN`: push it again)
//!   when the job failed or its replica died — nothing is committed that references a blob TCR
//!   may not have.
//!
//! The store holds replica ids, their advertised URLs, repository names and digests; no secret.

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt;

use crate::oci::{Digest, ErrorCode, OciError, RepoName};
use crate::registry::body;
use crate::registry::request::Route;
use crate::registry::rewrite;
use crate::state::StateStore;

/// How long a replica's registration lives without renewal, and how often it is renewed (a
/// store that restarted empty has every live replica back within one beat).
const ALIVE_TTL: Duration = Duration::from_secs(5);
const HEARTBEAT: Duration = Duration::from_secs(1);
/// How long a request for a session waits for its replica's registration to (re)appear.
const FIND_WAIT: Duration = Duration::from_millis(2500);
/// How long the store remembers a job's end.
const JOB_TTL: Duration = Duration::from_secs(3600);
/// How often a commit point looks at another replica's job again.
const POLL: Duration = Duration::from_millis(100);
/// Marks a request one replica sent another (never forwarded again).
pub const FORWARDED: &str = "x-tcr-adapter-forwarded";

pub struct Fleet {
    /// This replica's id (12 hex digits, new at every start).
    pub id: String,
    store: StateStore,
    http: reqwest::Client,
    heartbeat: tokio::task::JoinHandle<()>,
    forwards: prometheus::IntCounterVec,
}

impl Drop for Fleet {
    fn drop(&mut self) {
        self.heartbeat.abort();
    }
}

/// What the store says of a pipelined job on some replica.
#[derive(Debug, PartialEq)]
enum Remote {
    Pending { replica: String },
    Done,
    Failed(String),
}

impl Fleet {
    /// The fleet this replica joins: registered at `advertise` (renewed in the background).
    pub fn join(store: StateStore, advertise: &str, registry: &prometheus::Registry) -> Fleet {
        let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_string();
        let key = store.key(&["fleet", "replica", &id]);
        let heartbeat = {
            let (store, url) = (store.clone(), advertise.to_string());
            tokio::spawn(async move {
                loop {
                    let _ = store.set(&key, url.as_bytes(), ALIVE_TTL).await;
                    tokio::time::sleep(HEARTBEAT).await;
                }
            })
        };
        let forwards = prometheus::IntCounterVec::new(
            prometheus::Opts::new(
                "tcr_adapter_fleet_forwards_total",
                "Requests for another replica's pipelined upload session, by result: forwarded, gone (that replica is not registered any more), failed (it did not answer)",
            ),
            &["result"],
        )
        .expect("valid metric");
        let _ = registry.register(Box::new(forwards.clone()));
        Fleet {
            id,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .connect_timeout(Duration::from_secs(5))
                .build()
                .expect("HTTP client"),
            store,
            heartbeat,
            forwards,
        }
    }

    /// The replica that holds session `id`, when it is another one.
    pub fn elsewhere<'a>(&self, id: &'a str) -> Option<&'a str> {
        let owner = id.strip_prefix("p.")?.split('.').next()?;
        (owner.len() == 12 && owner != self.id).then_some(owner)
    }

    async fn address_of(&self, replica: &str) -> Option<String> {
        let key = self.store.key(&["fleet", "replica", replica]);
        let raw = self.store.get(&key).await.ok()??;
        String::from_utf8(raw).ok()
    }

    /// [`Self::address_of`], waiting a little for a registration that is not there (yet):
    /// a store that came back empty is refilled by the next heartbeat.
    async fn find(&self, replica: &str) -> Option<String> {
        let started = tokio::time::Instant::now();
        loop {
            if let Some(a) = self.address_of(replica).await {
                return Some(a);
            }
            if started.elapsed() >= FIND_WAIT {
                return None;
            }
            tokio::time::sleep(HEARTBEAT / 4).await;
        }
    }

    /// Stream `req` (a request for `owner`'s session) to `owner` and its answer back.
    pub async fn forward(
        &self,
        owner: &str,
        route: &Route,
        req: &HttpRequest,
        payload: web::Payload,
        bytes_in: prometheus::IntCounter,
    ) -> Result<HttpResponse, OciError> {
        let gone = || {
            OciError::new(
                ErrorCode::BlobUploadUnknown,
                "the adapter replica holding this upload session is gone; start the upload again",
            )
            .with_status(StatusCode::NOT_FOUND)
        };
        if req.headers().contains_key(FORWARDED) {
            return Err(gone()); // never a second hop
        }
        let Some(base) = self.find(owner).await else {
            self.forwards.with_label_values(&["gone"]).inc();
            return Err(gone());
        };
        let crate::registry::route::Endpoint::Upload { name, id } = &route.endpoint else {
            return Err(gone());
        };
        let mut url = url::Url::parse(&base).map_err(|_| gone())?;
        url.path_segments_mut()
            .map_err(|_| gone())?
            .clear()
            .push("v2")
            .extend(name.as_str().split('/'))
            .extend(["blobs", "uploads", id.as_str()]);
        if !route.query.is_empty() {
            url.set_query(Some(&route.query));
        }
        let mut headers = rewrite::request_headers(req.headers());
        if let Some(auth) = req.headers().get("authorization") {
            if let Ok(v) = reqwest::header::HeaderValue::from_bytes(auth.as_bytes()) {
                headers.insert(reqwest::header::AUTHORIZATION, v);
            }
        }
        headers.insert(
            reqwest::header::HeaderName::from_static(FORWARDED),
            reqwest::header::HeaderValue::from_str(&self.id).expect("hex id"),
        );
        let (body, pump) = body::bridge(payload, bytes_in);
        let method =
            reqwest::Method::from_bytes(route.method.as_str().as_bytes()).map_err(|_| gone())?;
        let send = self
            .http
            .request(method, url)
            .headers(headers)
            .body(body)
            .send();
        let resp = match body::drive(send, pump).await {
            Ok(r) => r,
            Err(e) => {
                self.forwards.with_label_values(&["failed"]).inc();
                tracing::warn!(replica = owner, error = %e, "fleet: the replica holding an upload session did not answer");
                return Err(gone());
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
        let len = resp.content_length();
        let stream = resp
            .bytes_stream()
            .map(|c| c.map_err(std::io::Error::other));
        Ok(match len {
            Some(n) => out.body(actix_web::body::SizedStream::new(n, stream)),
            None => out.streaming(stream),
        })
    }

    fn job_key(&self, repo: &RepoName, digest: &Digest) -> String {
        self.store
            .key(&["fleet", "job", repo.as_str(), digest.as_str()])
    }

    /// A pipelined job for `digest` into `repo` started here.
    pub async fn job_started(&self, repo: &RepoName, digest: &Digest) {
        let value = format!("pending {}", self.id);
        let key = self.job_key(repo, digest);
        let _ = self.store.set(&key, value.as_bytes(), JOB_TTL).await;
    }

    /// It ended: `Ok` when TCR has the blob, else why not.
    pub async fn job_ended(&self, repo: &RepoName, digest: &Digest, result: Result<(), &str>) {
        let value = match result {
            Ok(()) => "done".to_string(),
            Err(e) => format!("failed {e}"),
        };
        let key = self.job_key(repo, digest);
        let _ = self.store.set(&key, value.as_bytes(), JOB_TTL).await;
    }

    async fn remote(&self, repo: &RepoName, digest: &Digest) -> Option<Remote> {
        let raw = self.store.get(&self.job_key(repo, digest)).await.ok()??;
        let text = String::from_utf8(raw).ok()?;
        Some(match text.split_once(' ') {
            Some(("pending", r)) => Remote::Pending {
                replica: r.to_string(),
            },
            Some(("failed", e)) => Remote::Failed(e.to_string()),
            _ if text == "done" => Remote::Done,
            _ => return None,
        })
    }

    /// Wait (up to `limit`) for another replica's job bringing `digest` into `repo`: `Err`
    /// when it failed, its replica is gone, or it did not end in time.
    pub async fn wait_remote(
        &self,
        repo: &RepoName,
        digest: &Digest,
        limit: Duration,
    ) -> Result<(), String> {
        let started = tokio::time::Instant::now();
        loop {
            match self.remote(repo, digest).await {
                None | Some(Remote::Done) => return Ok(()),
                Some(Remote::Failed(e)) => return Err(e),
                // This replica's own jobs are waited for by the pipeline itself.
                Some(Remote::Pending { replica }) if replica == self.id => return Ok(()),
                Some(Remote::Pending { replica }) => {
                    if self.find(&replica).await.is_none() {
                        return Err("the adapter replica sending it is gone".into());
                    }
                }
            }
            if started.elapsed() >= limit {
                return Err(format!("still not in TCR after {}s", limit.as_secs()));
            }
            tokio::time::sleep(POLL).await;
        }
    }
}
