//! Layer dedup across a WAN: each blob crosses to TCR once. The adapter remembers where each
//! blob is known to exist in TCR (digest → upstream repositories, and its size), learned from the
//! traffic it relays — blob HEAD/GET answers, completed uploads and mounts, manifests pushed.
//! When a caller that may push to repository X asks `HEAD` for a blob that another repository
//! has, the adapter mounts it into X (`POST …/uploads/?mount=&from=`) **with the caller's own
//! credential**, so TCR decides who may read the source, and answers 200: the client then skips
//! the upload. A mount TCR refuses falls back to the ordinary answer and forgets the entry. A
//! HEAD for a blob that is being uploaded right now waits (bounded) for that upload, then mounts;
//! so does a HEAD for a blob another job has just found missing (a claim: the upload that job is
//! about to make), which is what ten replication jobs pushing the same base layer look like.
//! Bounded in memory (`wan.dedup_entries`), per process: a cold replica is correct, just slower.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::HttpResponse;
use tokio::sync::watch;

use super::calls::{credential_of, Calls, Mounted};
use super::RegistryFront;
use crate::auth::{Access, Grant};
use crate::oci::{Digest, RepoName};

/// Repositories remembered per digest.
const REPOS_PER_DIGEST: usize = 4;
/// How long a HEAD waits for an upload of the same blob in flight.
const WAIT_FOR_UPLOAD: Duration = Duration::from_secs(120);
/// How long a claim holds other HEADs back before its upload has started.
const CLAIM_TTL: Duration = Duration::from_secs(15);

#[derive(Clone)]
struct InFlight {
    repo: RepoName,
    done: watch::Receiver<bool>,
    /// When the claim was made; `None` once the upload itself is in flight.
    claimed: Option<std::time::Instant>,
    /// An upload that took over a claim its own repository made: the client uploads the blob
    /// it asked about.
    asked: bool,
}

#[derive(Default)]
struct Known {
    size: Option<u64>,
    repos: Vec<RepoName>,
}

/// Where blobs are known to exist upstream, and which are being uploaded right now.
pub struct BlobIndex {
    capacity: usize,
    known: Mutex<(HashMap<Digest, Known>, VecDeque<Digest>)>,
    /// Uploads in flight, and claims: a HEAD that found the blob nowhere, from a caller who may
    /// push, announces the upload that follows (`Some(when)`), so that HEADs from other jobs
    /// wait for it instead of uploading the same bytes at the same time.
    uploading: dashmap::DashMap<Digest, InFlight>,
    /// The sender of each open claim, taken over by the claimer's upload.
    claims: dashmap::DashMap<Digest, watch::Sender<bool>>,
    /// Per caller (upstream username), the repository its last mount came from: realm tokens
    /// for its pushes also ask pull there, so that one token serves a repository's requests
    /// and its mounts (a mount would otherwise cost a token round trip of its own).
    sources_of: dashmap::DashMap<String, RepoName>,
    metrics: DedupMetrics,
}

/// `tcr_adapter_dedup_mounts_total{result}` and `tcr_adapter_dedup_bytes_saved_total`.
#[derive(Clone)]
pub struct DedupMetrics {
    pub mounts: prometheus::IntCounterVec,
    pub bytes_saved: prometheus::IntCounter,
    /// Claims whose upload never came (a HEAD waited for nothing until the claim expired).
    pub claims_expired: prometheus::IntCounter,
    /// Blob HEADs answered "absent" ahead of TCR, by what TCR said when asked meanwhile.
    pub absent_ahead: prometheus::IntCounterVec,
}

impl DedupMetrics {
    fn new() -> Self {
        let mounts = prometheus::IntCounterVec::new(
            prometheus::Opts::new(
                "tcr_adapter_dedup_mounts_total",
                "Cross-repository mounts tried instead of an upload, by result (mounted, refused, \
                 error)",
            ),
            &["result"],
        )
        .expect("valid metric");
        for r in ["mounted", "refused", "error"] {
            mounts.with_label_values(&[r]);
        }
        let absent_ahead = prometheus::IntCounterVec::new(
            prometheus::Opts::new(
                "tcr_adapter_dedup_absent_ahead_total",
                "Blob HEADs answered absent before TCR was asked, by what TCR said when asked \
                 in the background (absent, present, no_answer)",
            ),
            &["tcr"],
        )
        .expect("valid metric");
        for r in ["absent", "present", "no_answer"] {
            absent_ahead.with_label_values(&[r]);
        }
        DedupMetrics {
            mounts,
            bytes_saved: prometheus::IntCounter::new(
                "tcr_adapter_dedup_bytes_saved_total",
                "Blob bytes not sent to TCR because a mount (or a check that found the blob there) made \
                 the upload unnecessary",
            )
            .expect("valid metric"),
            claims_expired: prometheus::IntCounter::new(
                "tcr_adapter_dedup_claims_expired_total",
                "HEADs that waited on another job's announced upload that never came",
            )
            .expect("valid metric"),
            absent_ahead,
        }
    }

    pub fn register(&self, r: &prometheus::Registry) -> prometheus::Result<()> {
        r.register(Box::new(self.mounts.clone()))?;
        r.register(Box::new(self.bytes_saved.clone()))?;
        r.register(Box::new(self.absent_ahead.clone()))?;
        r.register(Box::new(self.claims_expired.clone()))
    }
}

/// Ends an upload's "in flight" mark when dropped (completed, failed or cancelled).
pub struct UploadMark {
    tx: Option<watch::Sender<bool>>,
}

impl Drop for UploadMark {
    fn drop(&mut self) {
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(true);
        }
    }
}

impl BlobIndex {
    pub fn new(capacity: usize) -> Self {
        BlobIndex {
            capacity: capacity.max(1),
            known: Mutex::new((HashMap::new(), VecDeque::new())),
            uploading: dashmap::DashMap::new(),
            claims: dashmap::DashMap::new(),
            sources_of: dashmap::DashMap::new(),
            metrics: DedupMetrics::new(),
        }
    }

    pub fn metrics(&self) -> &DedupMetrics {
        &self.metrics
    }

    /// Remember that upstream repository `repo` has `digest` (of `size` bytes, when known).
    /// A claim `repo` made on it is settled: the blob got there some other way than the upload
    /// the claim announced (e.g. the client mounted it itself), and nobody waits any longer.
    pub fn learn(&self, digest: &Digest, repo: &RepoName, size: Option<u64>) {
        self.remember(digest, repo, size, true);
        self.settle(digest, repo);
    }

    /// [`Self::learn`] from a client's claim (a pushed manifest's descriptor): its size is used
    /// only while TCR has not said the size itself.
    pub fn learn_hint(&self, digest: &Digest, repo: &RepoName, size: Option<u64>) {
        self.remember(digest, repo, size, false);
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
                // token that covers it (`source_hint`) keeps serving them.
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

    /// `owner`'s mount from `source` succeeded.
    pub fn note_source(&self, owner: Option<&str>, source: &RepoName) {
        if let Some(owner) = owner {
            if self
                .sources_of
                .get(owner)
                .is_none_or(|s| s.value() != source)
            {
                self.sources_of.insert(owner.to_string(), source.clone());
            }
        }
    }

    /// Where `owner`'s mounts have come from lately.
    pub fn source_hint(&self, owner: &str) -> Option<RepoName> {
        self.sources_of.get(owner).map(|s| s.value().clone())
    }

    /// Forget that `repo` has `digest` (a mount from it was refused).
    pub fn forget(&self, digest: &Digest, repo: &RepoName) {
        let mut guard = self.known.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(k) = guard.0.get_mut(digest) {
            k.repos.retain(|r| r != repo);
        }
    }

    /// Whether `digest` is known nowhere and nobody is uploading (or about to upload) it.
    pub(crate) fn unheard_of(&self, digest: &Digest) -> bool {
        let known = {
            let guard = self.known.lock().unwrap_or_else(|p| p.into_inner());
            guard.0.get(digest).is_some_and(|k| !k.repos.is_empty())
        };
        !known && !self.uploading.contains_key(digest)
    }

    /// Whether `repo` is known to have `digest`.
    pub(crate) fn holds(&self, digest: &Digest, repo: &RepoName) -> bool {
        let guard = self.known.lock().unwrap_or_else(|p| p.into_inner());
        guard.0.get(digest).is_some_and(|k| k.repos.contains(repo))
    }

    /// Other repositories that have `digest`, and its size when known.
    pub(crate) fn sources(
        &self,
        digest: &Digest,
        except: &RepoName,
    ) -> (Vec<RepoName>, Option<u64>) {
        let guard = self.known.lock().unwrap_or_else(|p| p.into_inner());
        match guard.0.get(digest) {
            Some(k) => (
                k.repos.iter().filter(|r| *r != except).cloned().collect(),
                k.size,
            ),
            None => (Vec::new(), None),
        }
    }

    /// Other repositories that have `digest`, the one `owner`'s realm token already covers
    /// first (see [`Self::note_source`]), and its size when known.
    pub(crate) fn sources_for(
        &self,
        digest: &Digest,
        except: &RepoName,
        owner: Option<&str>,
    ) -> (Vec<RepoName>, Option<u64>) {
        let (mut sources, size) = self.sources(digest, except);
        if let Some(hint) = owner.and_then(|o| self.source_hint(o)) {
            sources.sort_by_key(|s| *s != hint);
        }
        (sources, size)
    }

    /// `owner` mounted `digest` from `source` into `target`: counted, and remembered there
    /// (with its size, when known).
    pub fn mounted(
        &self,
        digest: &Digest,
        (target, source): (&RepoName, &RepoName),
        owner: Option<&str>,
        size: Option<u64>,
    ) {
        self.metrics.mounts.with_label_values(&["mounted"]).inc();
        self.note_source(owner, source);
        if let Some(size) = size {
            self.metrics.bytes_saved.inc_by(size);
            self.learn(digest, target, Some(size));
        }
    }

    /// TCR refused to mount `digest` from `source`: counted, and `source` forgotten for it.
    pub fn refused(&self, digest: &Digest, source: &RepoName) {
        self.metrics.mounts.with_label_values(&["refused"]).inc();
        self.forget(digest, source);
    }

    /// Mark an upload of `digest` into `repo` as in flight until the mark is dropped (taking
    /// over a claim on it, so that HEADs waiting on the claim see this upload end).
    pub fn uploading(&self, digest: &Digest, repo: &RepoName) -> UploadMark {
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
        UploadMark { tx: Some(tx) }
    }

    /// Announce that `repo`'s caller, who found `digest` nowhere, is about to upload it.
    pub(crate) fn claim(&self, digest: &Digest, repo: &RepoName) {
        let (tx, rx) = watch::channel(false);
        let entry = InFlight {
            repo: repo.clone(),
            done: rx,
            claimed: Some(std::time::Instant::now()),
            asked: false,
        };
        self.uploading.insert(digest.clone(), entry);
        self.claims.insert(digest.clone(), tx);
    }

    /// Wait (bounded) for an upload of `digest` in flight, or claimed by another repository
    /// than `target`: a claim holds for [`CLAIM_TTL`] until its upload starts, the upload for
    /// [`WAIT_FOR_UPLOAD`]. `None` when there was nothing to wait for.
    async fn wait_for_upload(&self, digest: &Digest, target: &RepoName) -> Option<RepoName> {
        let mut entry = self.uploading.get(digest).map(|e| e.value().clone())?;
        if let Some(at) = entry.claimed {
            if &entry.repo == target {
                return None; // one's own claim is never waited on
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
                        return None;
                    }
                }
            }
        }
        let _ = tokio::time::timeout(WAIT_FOR_UPLOAD, entry.done.wait_for(|d| *d)).await;
        self.uploading.remove_if(digest, |_, e| *e.done.borrow());
        Some(entry.repo)
    }

    /// A blob read in `repo` answered: a claim `repo` made on it needs no upload after all.
    pub fn settle(&self, digest: &Digest, repo: &RepoName) {
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

    /// `repo`'s image is complete (its manifest was pushed): every claim it still holds is
    /// released. A client may have uploaded a blob under another digest than the one it asked
    /// about (skopeo compresses a layer it found missing), or mounted it from elsewhere itself.
    pub fn release_claims_of(&self, repo: &RepoName) {
        let claimed: Vec<Digest> = self
            .uploading
            .iter()
            .filter(|e| e.value().claimed.is_some() && &e.value().repo == repo)
            .map(|e| e.key().clone())
            .collect();
        for d in claimed {
            self.settle(&d, repo);
        }
    }

    /// An upload into `repo` completed. A client that uploaded under a digest it had not asked
    /// about (it compresses a layer it found missing, as skopeo does) will not upload the ones
    /// it asked about either: `repo`'s claims are released now, not when its manifest comes, so
    /// that other jobs stop waiting for them.
    pub fn uploaded(&self, digest: &Digest, repo: &RepoName) {
        let asked = self
            .uploading
            .get(digest)
            .is_some_and(|e| &e.repo == repo && e.asked);
        self.learn(digest, repo, None);
        if !asked {
            self.release_claims_of(repo);
        }
    }

    /// A claim whose upload never came: forget it.
    fn expire_claim(&self, digest: &Digest) {
        self.metrics.claims_expired.inc();
        self.uploading.remove_if(digest, |_, e| {
            e.claimed.is_some_and(|at| at.elapsed() >= CLAIM_TTL)
        });
        self.claims.remove(digest);
    }
}

/// A blob HEAD that a mount can answer: the caller may push to the repository, and another
/// repository is known (or being uploaded) to hold the blob. `None`: ask TCR as usual.
pub async fn answer_head(
    front: &RegistryFront,
    client: &RepoName,
    target: &RepoName,
    grant: &Grant,
    digest: &Digest,
) -> Option<HttpResponse> {
    let index = front.dedup.as_ref()?;
    if !grant.allows(&Access::repository(client.as_str(), &["push"])) {
        return None;
    }
    if index.holds(digest, target) {
        return None; // known to be there: TCR's own HEAD answers it
    }
    let waited = index.wait_for_upload(digest, target).await.is_some();
    let calls = Calls {
        front,
        credential: credential_of(grant),
    };
    let owner = calls.credential.as_ref().map(|c| c.username.as_str());
    let (sources, size) = index.sources_for(digest, target, owner);
    if sources.is_empty() && !waited {
        index.claim(digest, target);
        return None;
    }
    for source in sources {
        match calls.mount(target, &source, digest).await {
            Mounted::Yes => {
                let size = calls.size_of(target, digest, size).await;
                index.mounted(digest, (target, &source), owner, size);
                return Some(found(digest, size?));
            }
            Mounted::No => index.refused(digest, &source),
            Mounted::Error => {
                index.metrics.mounts.with_label_values(&["error"]).inc();
                return None;
            }
        }
    }
    None
}

/// The answer to the HEAD: the blob is there.
pub fn found(digest: &Digest, size: u64) -> HttpResponse {
    let empty = futures_util::stream::empty::<Result<bytes::Bytes, std::io::Error>>();
    HttpResponse::build(StatusCode::OK)
        .insert_header(("Docker-Content-Digest", digest.as_str()))
        .insert_header(("Content-Type", "application/octet-stream"))
        .insert_header(("Accept-Ranges", "bytes"))
        .body(actix_web::body::SizedStream::new(size, empty))
}

/// The blobs a pushed manifest references, with their sizes (config, layers; an index has none).
pub fn referenced_blobs(manifest: &[u8]) -> Vec<(Digest, Option<u64>)> {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(manifest) else {
        return Vec::new();
    };
    let descriptor = |d: &serde_json::Value| {
        let digest = Digest::parse(d["digest"].as_str()?).ok()?;
        Some((digest, d["size"].as_u64()))
    };
    std::iter::once(&v["config"])
        .chain(v["layers"].as_array().into_iter().flatten())
        .filter_map(descriptor)
        .collect()
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

    #[test]
    fn the_index_is_bounded_and_forgets_refused_sources() {
        let idx = BlobIndex::new(2);
        let (a, b) = repos();
        idx.learn(&d(1), &a, Some(10));
        idx.learn(&d(1), &b, None);
        assert_eq!(idx.sources(&d(1), &a), (vec![b.clone()], Some(10)));
        idx.forget(&d(1), &b);
        assert!(idx.sources(&d(1), &a).0.is_empty());
        idx.learn(&d(2), &a, None);
        idx.learn(&d(3), &a, None);
        assert!(
            idx.sources(&d(1), &b).0.is_empty(),
            "the oldest digest was evicted"
        );
        assert_eq!(idx.sources(&d(3), &b).0, vec![a]);
    }

    #[test]
    fn a_size_tcr_said_beats_a_size_a_manifest_claimed() {
        let idx = BlobIndex::new(8);
        let (a, b) = repos();
        idx.learn_hint(&d(1), &a, Some(999));
        idx.learn(&d(1), &a, Some(10));
        idx.learn_hint(&d(1), &a, Some(999));
        assert_eq!(idx.sources(&d(1), &b).1, Some(10));
        idx.learn_hint(&d(2), &a, Some(5));
        assert_eq!(idx.sources(&d(2), &b).1, Some(5));
    }

    #[test]
    fn manifests_name_their_blobs() {
        let m = format!(
            r#"{{"config":{{"digest":"{}","size":3}},"layers":[{{"digest":"{}","size":7}}]}}"#,
            d(1),
            d(2)
        );
        let blobs = referenced_blobs(m.as_bytes());
        assert_eq!(blobs, vec![(d(1), Some(3)), (d(2), Some(7))]);
        assert!(referenced_blobs(b"not json").is_empty());
    }
}
