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
use crate::registry::{rewrite, RegistryFront};
use crate::upstream::BasicAuth;

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

/// Upload sessions opened ahead of a client's `POST`: one per repository and caller at most.
#[derive(Default)]
pub struct Parked {
    map: dashmap::DashMap<ParkKey, Ahead<Result<String, String>>>,
}

/// The caller's upstream credential and who it is (`None`: anonymous).
fn caller(grant: &Grant) -> (Option<BasicAuth>, Option<String>) {
    let credential = credential_of(grant);
    let owner = credential.as_ref().map(|c| c.username.clone());
    (credential, owner)
}

/// A blob HEAD about to be asked of TCR by a caller who may push to `client` (`target`
/// upstream): open a session there now, unless one is parked already.
pub fn park_for(
    front: &web::Data<RegistryFront>,
    client: &RepoName,
    target: &RepoName,
    grant: &Grant,
) {
    if !grant.allows(&Access::repository(client.as_str(), &["push"])) {
        return;
    }
    let (credential, owner) = caller(grant);
    let key = (target.clone(), owner);
    if front.parked.map.contains_key(&key) {
        return;
    }
    let opened = open_session((*front).clone(), target.clone(), credential.clone());
    front.parked.map.insert(key.clone(), opened.clone());
    let front = (*front).clone();
    actix_web::rt::spawn(async move {
        tokio::time::sleep(PARK_TTL).await;
        let left = front
            .parked
            .map
            .remove_if(&key, |_, v| v.same_channel(&opened));
        if let Some((_, unused)) = left {
            cancel(front.clone(), key.0, credential, unused);
        }
    });
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
    let (_, key_owner) = caller(grant);
    let (_, opened) = front.parked.map.remove(&(up.clone(), key_owner))?;
    let location = settled(opened).await?.ok()?;
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
