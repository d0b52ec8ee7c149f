//! The WAN machinery's shared state, behind one seam: where blobs are known to exist in TCR,
//! which are being uploaded or about to be (claims), how TCR has been answering each caller's
//! questions about new blobs (streaks), where each caller's mounts came from lately, which
//! namespaces each caller has pushed into lately, and the layers of the manifests pushed lately
//! (what mounts made ahead are guessed from). Everything else the room keeps (parked
//! sessions, background checks, pipelined jobs, the spool) holds live connections or files and
//! stays in the process that made it.
//!
//! The methods are coarse and return futures: an implementation may keep the state in another
//! process (issue "scale out" puts one on Redis), where each call is a round trip. Keys are
//! upstream repository names, digests and credential fingerprints ([`fingerprint`]); no secret
//! is ever handed to the state. [`local::LocalState`] is the in-process implementation.

pub mod local;
pub mod redis;

use futures_util::future::BoxFuture;

use crate::oci::{Digest, RepoName};
use crate::upstream::BasicAuth;

/// How many of a namespace's latest manifests are remembered ([`WanState::recent_layers`]).
pub const RECENT_MANIFESTS: usize = 3;
/// Repositories (and namespaces) whose last manifests' layers are remembered in a process.
pub const LAYER_MEMORY: usize = 16_384;

/// A state call's answer, later.
pub type Fut<'a, T> = BoxFuture<'a, T>;

/// What the state knows of one blob.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Blob {
    /// Its size, when known (TCR said it, or a manifest claimed it).
    pub size: Option<u64>,
    /// Upstream repositories known to hold it (the first one learned first).
    pub repos: Vec<RepoName>,
    /// Whether an upload of it is in flight, or claimed.
    pub in_flight: bool,
    /// The repository it is being uploaded into (or was claimed for), while in flight.
    pub into: Option<RepoName>,
}

/// What a wait for another job's upload came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Waited {
    /// Nothing was in flight or claimed (or only by the asking repository).
    Nothing,
    /// A claim whose upload never came.
    ClaimExpired,
    /// The upload into that repository ended (or the wait's bound passed).
    Upload(RepoName),
}

/// Ends an upload's "in flight" mark when dropped (completed, failed or cancelled).
pub struct UploadMark(#[allow(dead_code)] Box<dyn Send + Sync>);

impl UploadMark {
    pub fn new(guard: impl Send + Sync + 'static) -> Self {
        UploadMark(Box::new(guard))
    }
}

/// The seam. Every "owner" is a credential fingerprint.
pub trait WanState: Send + Sync {
    /// `repo` holds `digest` (of `size` bytes). `authoritative`: TCR said so (its size beats a
    /// size a manifest claimed); a claim `repo` made on the blob is settled.
    fn learn<'a>(
        &'a self,
        digest: &'a Digest,
        repo: &'a RepoName,
        size: Option<u64>,
        authoritative: bool,
    ) -> Fut<'a, ()>;

    /// `repo` does not hold `digest` after all (a mount from it was refused).
    fn forget<'a>(&'a self, digest: &'a Digest, repo: &'a RepoName) -> Fut<'a, ()>;

    /// Everything known of `digest`.
    fn lookup<'a>(&'a self, digest: &'a Digest) -> Fut<'a, Blob>;

    /// `repo`'s caller found `digest` nowhere and is about to upload it: other jobs wait.
    /// `false`: another repository claimed it, or is uploading it, first (a single flight:
    /// the caller waits for that one instead).
    fn claim<'a>(&'a self, digest: &'a Digest, repo: &'a RepoName) -> Fut<'a, bool>;

    /// A claim `repo` made on `digest` needs no upload after all.
    fn settle<'a>(&'a self, digest: &'a Digest, repo: &'a RepoName) -> Fut<'a, ()>;

    /// Every claim `repo` still holds is released (its image is complete, or it uploaded a
    /// blob under another digest than it asked about).
    fn release_claims_of<'a>(&'a self, repo: &'a RepoName) -> Fut<'a, ()>;

    /// An upload of `digest` into `repo` is in flight until the mark is dropped (it takes over
    /// `repo`'s claim on it, so that HEADs waiting on the claim see this upload end).
    fn uploading<'a>(&'a self, digest: &'a Digest, repo: &'a RepoName) -> Fut<'a, UploadMark>;

    /// An upload of `digest` into `repo` completed: learned. A client that uploaded under a
    /// digest it had not asked about (it compresses a layer it found missing, as skopeo does)
    /// will not upload the ones it asked about either: `repo`'s claims are released now.
    fn uploaded<'a>(&'a self, digest: &'a Digest, repo: &'a RepoName) -> Fut<'a, ()>;

    /// Wait (bounded) for an upload of `digest` in flight, or claimed by another repository
    /// than `target`.
    fn wait_for_upload<'a>(&'a self, digest: &'a Digest, target: &'a RepoName) -> Fut<'a, Waited>;

    /// TCR answered one of `owner`'s questions about a blob the adapter had never heard of:
    /// `present` or not. Whether TCR has now said "absent" often enough in a row that the
    /// next such question may be answered ahead of it.
    fn told<'a>(&'a self, owner: &'a str, present: bool) -> Fut<'a, ()>;
    fn expects_absent<'a>(&'a self, owner: &'a str, streak: u32) -> Fut<'a, bool>;

    /// `owner`'s mount from `source` succeeded; where its mounts came from lately.
    fn note_source<'a>(&'a self, owner: &'a str, source: &'a RepoName) -> Fut<'a, ()>;
    fn source_hint<'a>(&'a self, owner: &'a str) -> Fut<'a, Option<RepoName>>;

    /// A manifest listing `layers` (in order, the config left out) was pushed into `repo`:
    /// remembered as `repo`'s last layers and as one of its namespace's latest manifests.
    fn note_layers<'a>(&'a self, repo: &'a RepoName, layers: &'a [Digest]) -> Fut<'a, ()>;
    /// The layers of the last manifest pushed into `repo` (none known: empty).
    fn layers_of<'a>(&'a self, repo: &'a RepoName) -> Fut<'a, Vec<Digest>>;
    /// The layers of the last [`RECENT_MANIFESTS`] manifests pushed into `namespace`, newest
    /// first.
    fn recent_layers<'a>(&'a self, namespace: &'a str) -> Fut<'a, Vec<Vec<Digest>>>;

    /// TCR accepted a write by `owner` into upstream namespace `namespace`; whether it has
    /// done so within the state's memory of pushes (see `local::PUSHED_TTL`).
    fn pushed<'a>(&'a self, owner: &'a str, namespace: &'a str) -> Fut<'a, ()>;
    fn has_pushed<'a>(&'a self, owner: &'a str, namespace: &'a str) -> Fut<'a, bool>;
}

/// A credential's fingerprint: who the caller is upstream, never the secret. SHA-256 over a
/// label, the username and the password, truncated to 128 bits: equal credentials meet, a
/// changed password is a new caller, and the state never holds anything that logs in.
pub fn fingerprint(credential: &BasicAuth) -> String {
    let mut material = b"tcr-adapter credential fingerprint v1\0".to_vec();
    material.extend_from_slice(credential.username.as_bytes());
    material.push(0);
    material.extend_from_slice(credential.password.expose().as_bytes());
    let d = Digest::sha256_of(&material);
    format!("fp:{}", &d.encoded()[..32])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    fn cred(user: &str, pass: &str) -> BasicAuth {
        BasicAuth {
            username: user.into(),
            password: Secret::new(pass),
        }
    }

    #[test]
    fn a_fingerprint_tells_credentials_apart_and_holds_no_secret() {
        let a = fingerprint(&cred("100001", "s3cret-token"));
        assert_eq!(a, fingerprint(&cred("100001", "s3cret-token")));
        assert_ne!(a, fingerprint(&cred("100001", "other-token")));
        assert_ne!(a, fingerprint(&cred("100002", "s3cret-token")));
        // The separator keeps "ab"+"c" and "a"+"bc" apart.
        assert_ne!(fingerprint(&cred("ab", "c")), fingerprint(&cred("a", "bc")));
        assert!(a.starts_with("fp:") && a.len() == 35, "{a}");
        assert!(!a.contains("s3cret") && !a.contains("100001"));
    }
}
