//! Work done before it is needed, so that no TCR round trip waits on the client's critical path.
//! Upload sessions opened and parked before the client's `POST` ([`parked`]): beside a pusher's
//! blob HEAD, a few beside its manifest HEAD (the first question about an image), and one while
//! an upload's last `PUT` travels (for the image's next blob); the `POST` that follows a "no" is
//! answered with one (TCR's own session, its `Location` rewritten as always). A parked session
//! nobody takes is cancelled (at once when the image's manifest is there). Realm tokens the
//! caller's next requests will ask for, fetched while TCR answers the current one ([`tokens`]).
//! A blob the adapter has
//! never heard of, asked about by a caller for whom TCR has kept answering "absent", is
//! answered "absent" at once while TCR is asked in the background ([`absent`]); if TCR had it
//! after all, the upload that follows is not sent on. With the pipeline: the upstream session
//! of a local one opened as soon as the client opens it, and the same background check.

mod absent;
mod mounts;
mod parked;
mod tokens;

use std::time::{Duration, Instant};

use actix_web::web;

use super::calls::Calls;
use super::task::{settled, spawn, Ahead};
use crate::oci::{Digest, RepoName};
use crate::registry::RegistryFront;

use crate::registry::wan::dedup::BlobAsk;
pub use absent::{absent_ahead, answered, check_absent, intercept};
pub use mounts::{mount_following, mounted_ahead};
pub use parked::{park_for_image, park_for_writer, take, Parked, SESSIONS_PER_BLOB};
pub use tokens::for_manifest_head as prefetch_for_manifest_head;

/// What the front keeps of the work done ahead.
#[derive(Default)]
pub struct WorkAhead {
    pub parked: Parked,
    pub probes: Probes,
    pub mounts: mounts::Mounts,
}

/// Checks nobody collected are dropped after this long.
const KEEP_PROBE: Duration = Duration::from_secs(600);
/// A parked session nobody took is cancelled after this long.
const PARK_TTL: Duration = Duration::from_secs(30);

/// Open an upload session in `repo` now: TCR's `Location`, later.
pub fn open_session(
    front: web::Data<RegistryFront>,
    repo: RepoName,
    super::calls::Caller { credential, owner }: super::calls::Caller,
) -> Ahead<Result<String, String>> {
    let namespace = repo.namespace().to_string();
    let (f, o, ns) = (front.clone(), owner.clone(), namespace.clone());
    let opened = spawn(async move {
        let caller = super::calls::Caller {
            credential,
            owner: o.clone(),
        };
        let r = Calls::new(&f, caller).open_session(&repo).await;
        // TCR opened a session: a write it accepted from this credential in this namespace.
        if let (Ok(_), Some(index)) = (&r, &f.wan.index) {
            index.pushed(o.as_deref(), &ns).await;
        }
        r
    });
    if let (Some(index), Some(owner)) = (&front.wan.index, owner) {
        index.opening(&owner, &namespace, opened.clone());
    }
    opened
}

/// Ask TCR now whether `repo` has `digest` (no answer counts as "no").
pub fn probe(
    front: web::Data<RegistryFront>,
    repo: RepoName,
    digest: Digest,
    caller: super::calls::Caller,
) -> Ahead<bool> {
    spawn(async move {
        Calls::new(&front, caller)
            .head_size(&repo, &digest)
            .await
            .is_some()
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

    /// Whether the check of `digest` in `repo` has come back "TCR has it" (taken if so).
    pub fn found(&self, repo: &RepoName, digest: &Digest) -> bool {
        let key = (repo.clone(), digest.clone());
        self.map
            .remove_if(&key, |_, (_, p)| *p.borrow() == Some(true))
            .is_some()
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
    caller: super::calls::Caller,
    session: Ahead<Result<String, String>>,
) {
    actix_web::rt::spawn(async move {
        if let Some(Ok(location)) = settled(session).await {
            Calls::new(&front, caller).cancel(&repo, &location).await;
        }
    });
}
