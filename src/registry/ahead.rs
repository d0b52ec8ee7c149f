//! Work done before it is needed, so that no TCR round trip waits on the client's critical path.
//! Without the pipeline: when a caller who may push asks TCR whether a repository has a blob,
//! an upload session in that repository is opened at the same time and parked, and the upload
//! `POST` that follows a "no" is answered with it (TCR's own session, its `Location` rewritten as
//! always): one round trip per uploaded blob less. A parked session nobody takes is cancelled.
//! With the pipeline: the upstream session opened as soon as the client opens its local one,
//! and the check whether TCR already has a blob the adapter has never seen, made while the
//! client uploads it (the HEAD was answered "absent" at once; if TCR has it after all, the
//! upload is skipped).

use std::time::{Duration, Instant};

use actix_web::web;
use tokio::sync::watch;

use actix_web::HttpResponse;

use crate::auth::{Access, Grant};
use crate::oci::{Digest, RepoName};
use crate::registry::calls::{credential_of, Calls};
use crate::registry::request::Route;
use crate::registry::route::Endpoint;
use crate::registry::{rewrite, RegistryFront};
use crate::upstream::BasicAuth;
use actix_web::http::Method;

/// A result being worked out in the background.
pub type Ahead<T> = watch::Receiver<Option<T>>;

/// Checks nobody collected are dropped after this long.
const KEEP_PROBE: Duration = Duration::from_secs(600);
/// A parked session nobody took is cancelled after this long.
const PARK_TTL: Duration = Duration::from_secs(30);

/// The result, once there (`None`: the work was abandoned).
pub async fn settled<T: Clone>(mut ahead: Ahead<T>) -> Option<T> {
    ahead
        .wait_for(|v| v.is_some())
        .await
        .ok()
        .and_then(|v| v.clone())
}

fn spawn<T, F>(work: F) -> Ahead<T>
where
    T: Send + Sync + 'static,
    F: std::future::Future<Output = T> + 'static,
{
    let (tx, rx) = watch::channel(None);
    actix_web::rt::spawn(async move {
        let _ = tx.send(Some(work.await));
    });
    rx
}

/// Open an upload session in `repo` now: TCR's `Location`, later.
pub fn open_session(
    front: web::Data<RegistryFront>,
    repo: RepoName,
    credential: Option<BasicAuth>,
) -> Ahead<Result<String, String>> {
    spawn(async move {
        let calls = Calls {
            front: &front,
            credential,
        };
        calls.open_session(&repo).await
    })
}

/// Ask TCR now whether `repo` has `digest` (no answer counts as "no").
pub fn probe(
    front: web::Data<RegistryFront>,
    repo: RepoName,
    digest: Digest,
    credential: Option<BasicAuth>,
) -> Ahead<bool> {
    spawn(async move {
        let calls = Calls {
            front: &front,
            credential,
        };
        calls.head_size(&repo, &digest).await.is_some()
    })
}

/// Existence checks waiting for the upload they were made for.
#[derive(Default)]
pub struct Probes {
    map: dashmap::DashMap<(RepoName, Digest), (Instant, Ahead<bool>)>,
}

impl Probes {
    pub fn insert(&self, repo: &RepoName, digest: &Digest, probe: Ahead<bool>) {
        self.map.retain(|_, (at, _)| at.elapsed() < KEEP_PROBE);
        self.map
            .insert((repo.clone(), digest.clone()), (Instant::now(), probe));
    }

    pub fn take(&self, repo: &RepoName, digest: &Digest) -> Option<Ahead<bool>> {
        self.map
            .remove(&(repo.clone(), digest.clone()))
            .map(|(_, (_, p))| p)
    }
}

/// Cancel a session opened ahead that will not be used (once it is open).
pub fn cancel(
    front: web::Data<RegistryFront>,
    repo: RepoName,
    credential: Option<BasicAuth>,
    session: Ahead<Result<String, String>>,
) {
    actix_web::rt::spawn(async move {
        if let Some(Ok(location)) = settled(session).await {
            let calls = Calls {
                front: &front,
                credential,
            };
            calls.cancel(&repo, &location).await;
        }
    });
}

type ParkKey = (RepoName, Option<String>);

/// Upload sessions opened ahead of a client's `POST`, per repository and caller.
#[derive(Default)]
pub struct Parked {
    map: dashmap::DashMap<ParkKey, Vec<Ahead<Result<String, String>>>>,
}

/// The caller's upstream credential and who it is (`None`: anonymous).
fn caller(grant: &Grant) -> (Option<BasicAuth>, Option<String>) {
    let credential = credential_of(grant);
    let owner = credential.as_ref().map(|c| c.username.clone());
    (credential, owner)
}

fn may_push(client: &RepoName, grant: &Grant) -> bool {
    grant.allows(&Access::repository(client.as_str(), &["push"]))
}

/// A blob HEAD about to be asked of TCR by a caller who may push to `client` (`target`
/// upstream): open a session there now, unless one is parked already.
pub fn park_for(
    front: &web::Data<RegistryFront>,
    client: &RepoName,
    target: &RepoName,
    grant: &Grant,
) {
    if may_push(client, grant) {
        park(front, target, grant, 1);
    }
}

/// How many sessions a pusher's manifest check parks for the blobs that follow (with the
/// pipeline): a config and one layer of its own, the usual shape of an image whose base layers
/// are mounted.
pub const SESSIONS_PER_IMAGE: usize = 2;

/// A pusher's manifest HEAD (the first thing Harbor asks about an image): open the sessions its
/// blobs will want while TCR answers it. A manifest TCR has already (the image is skipped)
/// gives them back at once ([`unpark`]).
pub fn park_for_image(
    front: &web::Data<RegistryFront>,
    client: &RepoName,
    target: &RepoName,
    grant: &Grant,
) {
    if may_push(client, grant) {
        park(front, target, grant, SESSIONS_PER_IMAGE);
    }
}

/// Have `want` sessions parked for the caller in `target`; each is cancelled if nobody takes
/// it within [`PARK_TTL`].
fn park(front: &web::Data<RegistryFront>, target: &RepoName, grant: &Grant, want: usize) {
    let (credential, owner) = caller(grant);
    let key = (target.clone(), owner);
    let mut opened = Vec::new();
    {
        let mut parked = front.parked.map.entry(key.clone()).or_default();
        while parked.len() < want {
            let session = open_session((*front).clone(), target.clone(), credential.clone());
            parked.push(session.clone());
            opened.push(session);
        }
    }
    for session in opened {
        let (front, key, credential) = ((*front).clone(), key.clone(), credential.clone());
        actix_web::rt::spawn(async move {
            tokio::time::sleep(PARK_TTL).await;
            if front.parked.take_if_same(&key, &session) {
                cancel(front.clone(), key.0, credential, session);
            }
        });
    }
}

impl Parked {
    /// Remove `session` if it is still parked under `key` (nobody took it).
    fn take_if_same(&self, key: &ParkKey, session: &Ahead<Result<String, String>>) -> bool {
        let mut found = false;
        if let Some(mut parked) = self.map.get_mut(key) {
            let before = parked.len();
            parked.retain(|s| !s.same_channel(session));
            found = parked.len() < before;
        }
        self.map.remove_if(key, |_, v| v.is_empty());
        found
    }

    fn pop(&self, key: &ParkKey) -> Option<Ahead<Result<String, String>>> {
        let session = self.map.get_mut(key).and_then(|mut v| v.pop());
        self.map.remove_if(key, |_, v| v.is_empty());
        session
    }
}

/// A session parked for the caller in `target`, taken (it is the taker's to use or cancel).
pub fn take(
    front: &RegistryFront,
    target: &RepoName,
    grant: &Grant,
) -> Option<Ahead<Result<String, String>>> {
    let (_, owner) = caller(grant);
    front.parked.pop(&(target.clone(), owner))
}

/// TCR answered a manifest HEAD: if the image is there already (Harbor skips it), the caller's
/// parked sessions in that repository are cancelled now rather than after [`PARK_TTL`].
pub fn image_checked(
    front: &web::Data<RegistryFront>,
    route: &Route,
    grant: &Grant,
    status: reqwest::StatusCode,
) {
    let (Endpoint::Manifest { .. }, &Method::HEAD, Some(target)) =
        (&route.endpoint, &route.method, route.upstream.as_ref())
    else {
        return;
    };
    if status.is_success() {
        unpark(front, target, grant);
    }
}

fn unpark(front: &web::Data<RegistryFront>, target: &RepoName, grant: &Grant) {
    let (credential, owner) = caller(grant);
    let key = (target.clone(), owner);
    if let Some((_, parked)) = front.parked.map.remove(&key) {
        for session in parked {
            cancel(
                (*front).clone(),
                target.clone(),
                credential.clone(),
                session,
            );
        }
    }
}

/// An upload start (no mount, no digest) answered with the session parked for the caller, as
/// TCR answered its opening (`None`: none parked, or it could not be opened).
pub async fn take_parked(
    front: &RegistryFront,
    route: &Route,
    grant: &Grant,
) -> Option<HttpResponse> {
    let up = route
        .upstream
        .as_ref()
        .filter(|_| route.is_plain_upload_start())?;
    let location = settled(take(front, up, grant)?).await?.ok()?;
    let id = location.split('?').next()?.rsplit('/').next()?.to_string();
    let public = rewrite::location(
        &location,
        front.upstream.base(),
        &route.base,
        &front.namespaces,
    );
    Some(
        HttpResponse::Accepted()
            .insert_header(("Location", public))
            .insert_header(("Docker-Upload-UUID", id))
            .insert_header(("Range", "0-0"))
            .finish(),
    )
}
