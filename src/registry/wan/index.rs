//! The blob index as the room uses it: the shared state ([`WanState`]) and this process's
//! counters of what it did with it (`tcr_adapter_dedup_*`).

use std::sync::Arc;
use std::time::Duration;

use super::state::{local::LocalState, Blob, UploadMark, Waited, WanState};
use super::task::{settled, Ahead};
use crate::oci::{Digest, RepoName};

/// "Absent" answers from TCR in a row after which the adapter says it ahead of TCR.
pub const STREAK: u32 = 3;

/// Where blobs are known to exist upstream, which are being uploaded right now, and what the
/// room remembers of each caller (see [`super::state`]).
pub struct BlobIndex {
    state: Arc<dyn WanState>,
    metrics: DedupMetrics,
    /// Upload sessions being opened in TCR, per (owner, upstream namespace): a session TCR
    /// opens is a write it accepted, so a caller's first HEADs may wait for it (this process).
    opening: dashmap::DashMap<(String, String), Ahead<Result<String, String>>>,
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

impl BlobIndex {
    /// The index in this process's memory (`capacity` digests).
    pub fn new(capacity: usize) -> Self {
        Self::with_state(Arc::new(LocalState::new(capacity)))
    }

    /// The index over another implementation of the state.
    pub fn with_state(state: Arc<dyn WanState>) -> Self {
        BlobIndex {
            state,
            metrics: DedupMetrics::new(),
            opening: dashmap::DashMap::new(),
        }
    }

    pub fn metrics(&self) -> &DedupMetrics {
        &self.metrics
    }

    /// Remember that `repo` has `digest` (TCR said so; a claim `repo` made on it is settled).
    pub async fn learn(&self, digest: &Digest, repo: &RepoName, size: Option<u64>) {
        self.state.learn(digest, repo, size, true).await
    }

    /// [`Self::learn`] from a client's claim (a pushed manifest's descriptor): its size is used
    /// only while TCR has not said the size itself.
    pub async fn learn_hint(&self, digest: &Digest, repo: &RepoName, size: Option<u64>) {
        self.state.learn(digest, repo, size, false).await
    }

    /// A manifest referencing `blobs` (config first, then layers) was pushed into `repo`.
    pub async fn note_manifest(&self, repo: &RepoName, blobs: &[(Digest, Option<u64>)]) {
        let layers: Vec<Digest> = blobs.iter().skip(1).map(|(d, _)| d.clone()).collect();
        self.state.note_layers(repo, &layers).await
    }

    /// The layers of the last manifest pushed into `repo`.
    pub async fn layers_of(&self, repo: &RepoName) -> Vec<Digest> {
        self.state.layers_of(repo).await
    }

    /// The layers of `namespace`'s latest manifests, newest first.
    pub async fn recent_layers(&self, namespace: &str) -> Vec<Vec<Digest>> {
        self.state.recent_layers(namespace).await
    }

    pub async fn lookup(&self, digest: &Digest) -> Blob {
        self.state.lookup(digest).await
    }

    /// Whether `digest` is known nowhere and nobody is uploading (or about to upload) it.
    pub async fn unheard_of(&self, digest: &Digest) -> bool {
        let b = self.lookup(digest).await;
        b.repos.is_empty() && !b.in_flight
    }

    /// Whether `repo` is known to have `digest`.
    pub async fn holds(&self, digest: &Digest, repo: &RepoName) -> bool {
        self.lookup(digest).await.repos.contains(repo)
    }

    /// Other repositories that have `digest`, and its size when known.
    pub async fn sources(
        &self,
        digest: &Digest,
        except: &RepoName,
    ) -> (Vec<RepoName>, Option<u64>) {
        let b = self.lookup(digest).await;
        (
            b.repos.into_iter().filter(|r| r != except).collect(),
            b.size,
        )
    }

    /// Other repositories that have `digest`, the one `owner`'s realm token already covers
    /// first (see [`Self::source_hint`]), and its size when known.
    pub async fn sources_for(
        &self,
        digest: &Digest,
        except: &RepoName,
        owner: Option<&str>,
    ) -> (Vec<RepoName>, Option<u64>) {
        let blob = self.lookup(digest).await;
        self.order_sources(blob, except, owner).await
    }

    /// [`Self::sources_for`] of a blob already looked up.
    pub async fn order_sources(
        &self,
        blob: Blob,
        except: &RepoName,
        owner: Option<&str>,
    ) -> (Vec<RepoName>, Option<u64>) {
        let mut sources: Vec<RepoName> = blob.repos.into_iter().filter(|r| r != except).collect();
        if let Some(hint) = self.source_hint(owner).await {
            sources.sort_by_key(|s| *s != hint);
        }
        (sources, blob.size)
    }

    /// Where `owner`'s mounts have come from lately: realm tokens for its pushes also ask pull
    /// there, so that one token serves a repository's requests and its mounts.
    pub async fn source_hint(&self, owner: Option<&str>) -> Option<RepoName> {
        self.state.source_hint(owner?).await
    }

    /// `owner` mounted `digest` from `source` into `target`: counted, and remembered there
    /// (with its size, when known).
    pub async fn mounted(
        &self,
        digest: &Digest,
        (target, source): (&RepoName, &RepoName),
        owner: Option<&str>,
        size: Option<u64>,
    ) {
        self.metrics.mounts.with_label_values(&["mounted"]).inc();
        if let Some(owner) = owner {
            self.state.note_source(owner, source).await;
        }
        if let Some(size) = size {
            self.metrics.bytes_saved.inc_by(size);
            self.learn(digest, target, Some(size)).await;
        }
    }

    /// TCR refused to mount `digest` from `source`: counted, and `source` forgotten for it.
    pub async fn refused(&self, digest: &Digest, source: &RepoName) {
        self.metrics.mounts.with_label_values(&["refused"]).inc();
        self.state.forget(digest, source).await;
    }

    /// TCR refused a mount because the caller may not write the target: counted; the source
    /// is kept (one caller's missing permission says nothing about where the blob is).
    pub fn denied(&self) {
        self.metrics.mounts.with_label_values(&["refused"]).inc();
    }

    /// A mount got no answer: counted.
    pub fn mount_failed(&self) {
        self.metrics.mounts.with_label_values(&["error"]).inc();
    }

    pub async fn uploading(&self, digest: &Digest, repo: &RepoName) -> UploadMark {
        self.state.uploading(digest, repo).await
    }

    pub async fn uploaded(&self, digest: &Digest, repo: &RepoName) {
        self.state.uploaded(digest, repo).await
    }

    /// Claim `digest` for `repo`'s upload; `false`: another repository was first.
    pub async fn claim(&self, digest: &Digest, repo: &RepoName) -> bool {
        self.state.claim(digest, repo).await
    }

    pub async fn settle(&self, digest: &Digest, repo: &RepoName) {
        self.state.settle(digest, repo).await
    }

    pub async fn release_claims_of(&self, repo: &RepoName) {
        self.state.release_claims_of(repo).await
    }

    /// Wait (bounded) for another job's upload of `digest`; whether there was one to wait on.
    pub async fn wait_for_upload(&self, digest: &Digest, target: &RepoName) -> bool {
        match self.state.wait_for_upload(digest, target).await {
            Waited::Upload(_) => true,
            Waited::Nothing => false,
            Waited::ClaimExpired => {
                self.metrics.claims_expired.inc();
                false
            }
        }
    }

    /// TCR answered `owner`'s question about a blob never heard of.
    pub async fn told(&self, owner: Option<&str>, present: bool) {
        if let Some(owner) = owner {
            self.state.told(owner, present).await
        }
    }

    /// Whether TCR has said "absent" to `owner`'s last [`STREAK`] such questions.
    pub async fn expects_absent(&self, owner: Option<&str>) -> bool {
        match owner {
            Some(o) => self.state.expects_absent(o, STREAK).await,
            None => false,
        }
    }

    /// TCR accepted a write of `owner`'s into `namespace`.
    pub async fn pushed(&self, owner: Option<&str>, namespace: &str) {
        if let Some(owner) = owner {
            self.state.pushed(owner, namespace).await
        }
    }

    /// `owner` is opening an upload session in `namespace` (its outcome is `opened`).
    pub fn opening(&self, owner: &str, namespace: &str, opened: Ahead<Result<String, String>>) {
        if self.opening.len() >= 4096 {
            self.opening.retain(|_, a| a.borrow().is_none());
        }
        self.opening
            .insert((owner.to_string(), namespace.to_string()), opened);
    }

    /// Whether a session `owner` is opening in `namespace` is (within `limit`) opened by TCR.
    pub async fn opened_lately(&self, owner: &str, namespace: &str, limit: Duration) -> bool {
        let key = (owner.to_string(), namespace.to_string());
        let Some(opened) = self.opening.get(&key).map(|a| a.clone()) else {
            return false;
        };
        matches!(
            tokio::time::timeout(limit, settled(opened)).await,
            Ok(Some(Ok(_)))
        )
    }

    /// Whether TCR has accepted a write of `owner`'s into `namespace` lately.
    pub async fn has_pushed(&self, owner: Option<&str>, namespace: &str) -> bool {
        match owner {
            Some(o) => self.state.has_pushed(o, namespace).await,
            None => false,
        }
    }
}
