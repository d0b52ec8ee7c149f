//! Work done before it is needed, so that no TCR round trip waits on the client's critical path:
//! the upstream upload session opened as soon as the client opens its local one, and the check
//! whether TCR already has a blob the adapter has never seen, made while the client uploads it
//! (the HEAD was answered "absent" at once; if TCR has it after all, the upload is skipped).

use std::time::{Duration, Instant};

use actix_web::web;
use tokio::sync::watch;

use crate::oci::{Digest, RepoName};
use crate::registry::calls::Calls;
use crate::registry::RegistryFront;
use crate::upstream::BasicAuth;

/// A result being worked out in the background.
pub type Ahead<T> = watch::Receiver<Option<T>>;

/// Checks nobody collected are dropped after this long.
const KEEP_PROBE: Duration = Duration::from_secs(600);

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
