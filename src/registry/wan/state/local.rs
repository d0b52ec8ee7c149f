//! The WAN state in this process's memory: bounded (`wan.dedup_entries` digests), lost on a
//! restart, not shared between replicas (a cold replica is correct, just slower).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use tokio::sync::watch;

use super::{Blob, Fut, UploadMark, Waited, WanState, LAYER_MEMORY, RECENT_MANIFESTS};
use crate::oci::{Digest, RepoName};

/// Repositories remembered per digest.
const REPOS_PER_DIGEST: usize = 4;
/// How long a HEAD waits for an upload of the same blob in flight.
const WAIT_FOR_UPLOAD: Duration = Duration::from_secs(120);
/// How long a claim holds other HEADs back before its upload has started.
const CLAIM_TTL: Duration = Duration::from_secs(15);
/// How long a push through the adapter counts as "pushed into this namespace lately".
pub const PUSHED_TTL: Duration = Duration::from_secs(3600);
/// Callers whose pushes are remembered (the oldest forgotten first).
const PUSHERS: usize = 16_384;

#[derive(Clone)]
struct InFlight {
    repo: RepoName,
    done: watch::Receiver<bool>,
    /// When the claim was made; `None` once the upload itself is in flight.
    claimed: Option<Instant>,
    /// An upload that took over a claim its own repository made: the client uploads the blob
    /// it asked about.
    asked: bool,
}

#[derive(Default)]
struct Known {
    size: Option<u64>,
    repos: Vec<RepoName>,
}

/// Ends an upload's "in flight" mark when dropped.
struct Done(watch::Sender<bool>);

impl Drop for Done {
    fn drop(&mut self) {
        let _ = self.0.send(true);
    }
}

pub struct LocalState {
    capacity: usize,
    known: Mutex<(HashMap<Digest, Known>, VecDeque<Digest>)>,
    /// Uploads in flight, and claims (`claimed: Some(when)`).
    uploading: dashmap::DashMap<Digest, InFlight>,
    /// The sender of each open claim, taken over by the claimer's upload.
    claims: dashmap::DashMap<Digest, watch::Sender<bool>>,
    /// Per owner, the repository its last mount came from.
    sources_of: dashmap::DashMap<String, RepoName>,
    /// Per owner, "absent" answers in a row about blobs never heard of.
    streaks: dashmap::DashMap<String, u32>,
    /// Per (owner, upstream namespace), when TCR last accepted a write of the owner's there.
    pushed: dashmap::DashMap<(String, String), Instant>,
    /// The layers of the last manifest pushed into each repository.
    layers: dashmap::DashMap<RepoName, Vec<Digest>>,
    /// The layers of the last [`RECENT_MANIFESTS`] manifests pushed into each namespace,
    /// newest first.
    recent: dashmap::DashMap<String, VecDeque<Vec<Digest>>>,
}

impl LocalState {
    pub fn new(capacity: usize) -> Self {
        LocalState {
            capacity: capacity.max(1),
            known: Mutex::new((HashMap::new(), VecDeque::new())),
            uploading: dashmap::DashMap::new(),
            claims: dashmap::DashMap::new(),
            sources_of: dashmap::DashMap::new(),
            streaks: dashmap::DashMap::new(),
            pushed: dashmap::DashMap::new(),
            layers: dashmap::DashMap::new(),
            recent: dashmap::DashMap::new(),
        }
    }

    fn remember(&self, digest: &Digest, repo: &RepoName, size: Option<u64>, authoritative: bool) {
        let mut guard = self.known.lock().unwrap_or_else(|p| p.into_inner());
        let (map, order) = &mut *guard;
        let entry = map.entry(digest.clone()).or_insert_with(|| {
            order.push_back(digest.clone());
            Known::default()
        });
        entry.size = match authoritative {
            true => size.or(entry.size),
            false => entry.size.or(size),
        };
        if !entry.repos.contains(repo) {
            if entry.repos.len() >= REPOS_PER_DIGEST {
                // Keep the first repository learned: mounts keep coming from it, and a realm
                // token that covers it (the source hint) keeps serving them.
                entry.repos.remove(1);
            }
            entry.repos.push(repo.clone());
        }
        while map.len() > self.capacity {
            match order.pop_front() {
                Some(old) => {
                    map.remove(&old);
                }
                None => break,
            }
        }
    }

    fn settle_now(&self, digest: &Digest, repo: &RepoName) {
        let own_claim = self
            .uploading
            .remove_if(digest, |_, e| e.claimed.is_some() && &e.repo == repo)
            .is_some();
        if own_claim {
            if let Some((_, tx)) = self.claims.remove(digest) {
                let _ = tx.send(true);
            }
        }
    }

    fn release_now(&self, repo: &RepoName) {
        let claimed: Vec<Digest> = self
            .uploading
            .iter()
            .filter(|e| e.value().claimed.is_some() && &e.value().repo == repo)
            .map(|e| e.key().clone())
            .collect();
        for d in claimed {
            self.settle_now(&d, repo);
        }
    }

    /// The signal that ends this process's own upload of `digest`, while it runs.
    pub fn upload_signal(&self, digest: &Digest) -> Option<watch::Receiver<bool>> {
        let e = self.uploading.get(digest)?;
        (e.claimed.is_none() && !*e.done.borrow()).then(|| e.done.clone())
    }

    /// A claim whose upload never came: forget it.
    fn expire_claim(&self, digest: &Digest) {
        self.uploading.remove_if(digest, |_, e| {
            e.claimed.is_some_and(|at| at.elapsed() >= CLAIM_TTL)
        });
        self.claims.remove(digest);
    }

    async fn wait(&self, digest: &Digest, target: &RepoName) -> Waited {
        let Some(mut entry) = self.uploading.get(digest).map(|e| e.value().clone()) else {
            return Waited::Nothing;
        };
        if let Some(at) = entry.claimed {
            if &entry.repo == target {
                return Waited::Nothing; // one's own claim is never waited on
            }
            let left = CLAIM_TTL.saturating_sub(at.elapsed());
            let timed_out = tokio::time::timeout(left, entry.done.wait_for(|d| *d))
                .await
                .is_err();
            if timed_out {
                // No upload came, or it is still running: wait on it if it started.
                let started = self.uploading.get(digest).map(|e| e.value().clone());
                match started {
                    Some(e) if e.claimed.is_none() => entry = e,
                    _ => {
                        self.expire_claim(digest);
                        return Waited::ClaimExpired;
                    }
                }
            }
        }
        let _ = tokio::time::timeout(WAIT_FOR_UPLOAD, entry.done.wait_for(|d| *d)).await;
        self.uploading.remove_if(digest, |_, e| *e.done.borrow());
        Waited::Upload(entry.repo)
    }
}

fn now<'a, T: Send + 'a>(v: T) -> Fut<'a, T> {
    std::future::ready(v).boxed()
}

impl WanState for LocalState {
    fn learn<'a>(
        &'a self,
        digest: &'a Digest,
        repo: &'a RepoName,
        size: Option<u64>,
        authoritative: bool,
    ) -> Fut<'a, ()> {
        self.remember(digest, repo, size, authoritative);
        if authoritative {
            self.settle_now(digest, repo);
        }
        now(())
    }

    fn forget<'a>(&'a self, digest: &'a Digest, repo: &'a RepoName) -> Fut<'a, ()> {
        let mut guard = self.known.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(k) = guard.0.get_mut(digest) {
            k.repos.retain(|r| r != repo);
        }
        now(())
    }

    fn lookup<'a>(&'a self, digest: &'a Digest) -> Fut<'a, Blob> {
        let (size, repos) = {
            let guard = self.known.lock().unwrap_or_else(|p| p.into_inner());
            match guard.0.get(digest) {
                Some(k) => (k.size, k.repos.clone()),
                None => (None, Vec::new()),
            }
        };
        let into = self.uploading.get(digest).map(|e| e.repo.clone());
        now(Blob {
            size,
            repos,
            in_flight: into.is_some(),
            into,
        })
    }

    fn claim<'a>(&'a self, digest: &'a Digest, repo: &'a RepoName) -> Fut<'a, bool> {
        let taken = self.uploading.get(digest).is_some_and(|e| {
            &e.repo != repo
                && e.claimed.is_none_or(|at| at.elapsed() < CLAIM_TTL)
                && !*e.done.borrow()
        });
        if taken {
            return now(false);
        }
        let (tx, rx) = watch::channel(false);
        let entry = InFlight {
            repo: repo.clone(),
            done: rx,
            claimed: Some(Instant::now()),
            asked: false,
        };
        self.uploading.insert(digest.clone(), entry);
        self.claims.insert(digest.clone(), tx);
        now(true)
    }

    fn settle<'a>(&'a self, digest: &'a Digest, repo: &'a RepoName) -> Fut<'a, ()> {
        self.settle_now(digest, repo);
        now(())
    }

    fn release_claims_of<'a>(&'a self, repo: &'a RepoName) -> Fut<'a, ()> {
        self.release_now(repo);
        now(())
    }

    fn uploading<'a>(&'a self, digest: &'a Digest, repo: &'a RepoName) -> Fut<'a, UploadMark> {
        let asked = self
            .uploading
            .get(digest)
            .is_some_and(|e| e.claimed.is_some() && &e.repo == repo);
        let tx = match self.claims.remove(digest) {
            Some((_, tx)) => tx,
            None => watch::channel(false).0,
        };
        let entry = InFlight {
            repo: repo.clone(),
            done: tx.subscribe(),
            claimed: None,
            asked,
        };
        self.uploading.insert(digest.clone(), entry);
        now(UploadMark::new(Done(tx)))
    }

    fn uploaded<'a>(&'a self, digest: &'a Digest, repo: &'a RepoName) -> Fut<'a, ()> {
        let asked = self
            .uploading
            .get(digest)
            .is_some_and(|e| &e.repo == repo && e.asked);
        self.remember(digest, repo, None, true);
        self.settle_now(digest, repo);
        if !asked {
            self.release_now(repo);
        }
        now(())
    }

    fn wait_for_upload<'a>(&'a self, digest: &'a Digest, target: &'a RepoName) -> Fut<'a, Waited> {
        self.wait(digest, target).boxed()
    }

    fn told<'a>(&'a self, owner: &'a str, present: bool) -> Fut<'a, ()> {
        if present {
            self.streaks.remove(owner);
        } else {
            *self.streaks.entry(owner.to_string()).or_default() += 1;
        }
        now(())
    }

    fn expects_absent<'a>(&'a self, owner: &'a str, streak: u32) -> Fut<'a, bool> {
        now(self.streaks.get(owner).is_some_and(|n| *n >= streak))
    }

    fn note_source<'a>(&'a self, owner: &'a str, source: &'a RepoName) -> Fut<'a, ()> {
        if self
            .sources_of
            .get(owner)
            .is_none_or(|s| s.value() != source)
        {
            self.sources_of.insert(owner.to_string(), source.clone());
        }
        now(())
    }

    fn source_hint<'a>(&'a self, owner: &'a str) -> Fut<'a, Option<RepoName>> {
        now(self.sources_of.get(owner).map(|s| s.value().clone()))
    }

    fn note_layers<'a>(&'a self, repo: &'a RepoName, layers: &'a [Digest]) -> Fut<'a, ()> {
        if self.layers.len() >= LAYER_MEMORY && !self.layers.contains_key(repo) {
            let some = self.layers.iter().next().map(|e| e.key().clone());
            if let Some(old) = some {
                self.layers.remove(&old);
            }
        }
        if self.recent.len() >= LAYER_MEMORY && !self.recent.contains_key(repo.namespace()) {
            self.recent.clear();
        }
        let mut recent = self.recent.entry(repo.namespace().to_string()).or_default();
        recent.truncate(RECENT_MANIFESTS - 1);
        recent.push_front(layers.to_vec());
        drop(recent);
        self.layers.insert(repo.clone(), layers.to_vec());
        now(())
    }

    fn layers_of<'a>(&'a self, repo: &'a RepoName) -> Fut<'a, Vec<Digest>> {
        now(self.layers.get(repo).map(|l| l.clone()).unwrap_or_default())
    }

    fn recent_layers<'a>(&'a self, namespace: &'a str) -> Fut<'a, Vec<Vec<Digest>>> {
        let recent = self.recent.get(namespace);
        now(recent
            .map(|r| r.iter().cloned().collect())
            .unwrap_or_default())
    }

    fn pushed<'a>(&'a self, owner: &'a str, namespace: &'a str) -> Fut<'a, ()> {
        let key = (owner.to_string(), namespace.to_string());
        if self.pushed.len() >= PUSHERS && !self.pushed.contains_key(&key) {
            self.pushed.retain(|_, at| at.elapsed() < PUSHED_TTL);
            let oldest = self
                .pushed
                .iter()
                .min_by_key(|e| *e.value())
                .map(|e| e.key().clone());
            if let (Some(old), true) = (oldest, self.pushed.len() >= PUSHERS) {
                self.pushed.remove(&old);
            }
        }
        self.pushed.insert(key, Instant::now());
        now(())
    }

    fn has_pushed<'a>(&'a self, owner: &'a str, namespace: &'a str) -> Fut<'a, bool> {
        let key = (owner.to_string(), namespace.to_string());
        now(self
            .pushed
            .get(&key)
            .is_some_and(|at| at.elapsed() < PUSHED_TTL))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(n: u8) -> Digest {
        Digest::sha256_of(&[n])
    }

    fn repos() -> (RepoName, RepoName) {
        let r = |n: &str| RepoName::parse(n).unwrap();
        (r("ns/a"), r("ns/b"))
    }

    #[tokio::test]
    async fn the_index_is_bounded_and_forgets_refused_sources() {
        let s = LocalState::new(2);
        let (a, b) = repos();
        s.learn(&d(1), &a, Some(10), true).await;
        s.learn(&d(1), &b, None, true).await;
        assert_eq!(s.lookup(&d(1)).await.repos, vec![a.clone(), b.clone()]);
        assert_eq!(s.lookup(&d(1)).await.size, Some(10));
        s.forget(&d(1), &b).await;
        assert_eq!(s.lookup(&d(1)).await.repos, vec![a.clone()]);
        s.learn(&d(2), &a, None, true).await;
        s.learn(&d(3), &a, None, true).await;
        assert!(
            s.lookup(&d(1)).await.repos.is_empty(),
            "the oldest digest was evicted"
        );
        assert_eq!(s.lookup(&d(3)).await.repos, vec![a]);
    }

    #[tokio::test]
    async fn a_size_tcr_said_beats_a_size_a_manifest_claimed() {
        let s = LocalState::new(8);
        let (a, _) = repos();
        s.learn(&d(1), &a, Some(999), false).await;
        s.learn(&d(1), &a, Some(10), true).await;
        s.learn(&d(1), &a, Some(999), false).await;
        assert_eq!(s.lookup(&d(1)).await.size, Some(10));
        s.learn(&d(2), &a, Some(5), false).await;
        assert_eq!(s.lookup(&d(2)).await.size, Some(5));
    }

    #[tokio::test]
    async fn pushes_are_remembered_per_caller_and_namespace() {
        let s = LocalState::new(8);
        s.pushed("fp:1", "ns").await;
        assert!(s.has_pushed("fp:1", "ns").await);
        assert!(!s.has_pushed("fp:1", "other").await);
        assert!(!s.has_pushed("fp:2", "ns").await);
    }
}
