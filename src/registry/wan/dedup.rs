//! Layer dedup across a WAN: each blob crosses to TCR once. The room remembers where each blob
//! is known to exist in TCR (the index), learned from the traffic it relays — blob HEAD/GET
//! answers, completed uploads and mounts, manifests pushed. A blob another repository has is
//! mounted (`POST …/uploads/?mount=&from=`) **with the caller's own credential**, so TCR decides
//! who may read the source and write the target, at two points:
//!
//! - the blob `HEAD`, for a caller who may write the repository ([`may_write`]): its token asks
//!   push there, or — Harbor asks every HEAD with a pull-only token — its own credential has had
//!   a write accepted by TCR in this namespace through the adapter lately and the namespace
//!   policy allows pushing there. A mount answers 200 and the client skips the upload;
//! - the upload's last `PUT ?digest=` (push-scoped in every client): the mount is tried before
//!   the body is sent on; if TCR mounts it, the body is read and dropped here ([`at_put`]).
//!
//! A mount TCR refuses falls back to the ordinary path (a source said to lack the blob is
//! forgotten; a caller refused the write leaves the index alone); nothing is said to be present
//! that TCR did not confirm. "Lately" is within `state::local::PUSHED_TTL` (an hour), remembered
//! per caller ([`Caller::of`]: its API keys' or registry credential's fingerprint) and upstream
//! namespace; the adapter notes every write TCR accepted
//! from a caller (`wan::after_send`) and its own mounts and uploads for it. A HEAD for a blob being uploaded right now waits
//! (bounded) for that upload, then mounts; so does a HEAD for a blob another job has just found
//! missing (a claim), which is what ten replication jobs pushing the same base layer look like.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use futures_util::StreamExt;

use super::answers::{created, found};
use super::calls::{Caller, Calls, Mounted};
use super::BlobIndex;
use crate::auth::{Access, Grant};
use crate::oci::{Digest, ErrorCode, OciError, RepoName};
use crate::registry::request::Route;
use crate::registry::RegistryFront;

/// A blob `HEAD`: asked in `client` (the caller's name), `target` upstream, and whether the
/// room may write there for the caller ([`may_write`], asked once per `HEAD`).
pub struct BlobAsk<'a> {
    pub client: &'a RepoName,
    pub target: &'a RepoName,
    pub grant: &'a Grant,
    pub digest: &'a Digest,
    pub writer: bool,
}

impl<'a> BlobAsk<'a> {
    pub async fn new(
        front: &RegistryFront,
        (client, target): (&'a RepoName, &'a RepoName),
        grant: &'a Grant,
        digest: &'a Digest,
    ) -> BlobAsk<'a> {
        BlobAsk {
            client,
            target,
            grant,
            digest,
            writer: may_write(front, client, target, grant).await,
        }
    }
}

/// Whether the room may make writes into `target` (`client` to the caller) on the caller's
/// behalf, with the caller's own credential: its token grants push on `client`; or it has an
/// upstream credential that TCR accepted a write of in `target`'s namespace lately, and the
/// namespace policy lets this caller push there. Never for an anonymous caller.
pub async fn may_write(
    front: &RegistryFront,
    client: &RepoName,
    target: &RepoName,
    grant: &Grant,
) -> bool {
    may_write_already(front, client, target, grant).await
        || opening_there(front, target, grant).await
}

/// [`may_write`] without waiting: a push grant, or a write TCR accepted in the namespace.
pub async fn may_write_already(
    front: &RegistryFront,
    client: &RepoName,
    target: &RepoName,
    grant: &Grant,
) -> bool {
    if grant.allows(&Access::repository(client.as_str(), &["push"])) {
        return true;
    }
    match writer_here(front, target, grant) {
        Some((index, owner)) => index.has_pushed(Some(&owner), target.namespace()).await,
        None => false,
    }
}

/// A session this caller is opening in the namespace (its first upload there, e.g. an image's
/// config sent just before) counts once TCR has opened it: waits for it up to [`OPENING_WAIT`].
pub async fn opening_there(front: &RegistryFront, target: &RepoName, grant: &Grant) -> bool {
    match writer_here(front, target, grant) {
        Some((index, owner)) => {
            index
                .opened_lately(&owner, target.namespace(), OPENING_WAIT)
                .await
        }
        None => false,
    }
}

/// The index and the caller's fingerprint, when the caller has one and the namespace policy
/// allows `target`'s namespace.
fn writer_here<'a>(
    front: &'a RegistryFront,
    target: &RepoName,
    grant: &Grant,
) -> Option<(&'a BlobIndex, String)> {
    let (Some(index), Some(owner)) = (front.wan.index.as_ref(), Caller::of(grant).owner) else {
        return None;
    };
    let allowed = front.namespaces.policy().check(target.namespace()).is_ok();
    allowed.then_some((index.as_ref(), owner))
}

/// How long a HEAD waits for its caller's session being opened in the same namespace.
const OPENING_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// A blob HEAD that a mount can answer: the caller may push to the repository, and another
/// repository is known (or being uploaded) to hold the blob. `None`: ask TCR as usual.
pub async fn answer_head(front: &RegistryFront, ask: &BlobAsk<'_>) -> Option<HttpResponse> {
    let (target, grant, digest) = (ask.target, ask.grant, ask.digest);
    let index = front.wan.index.as_ref()?;
    // One look at the index serves the steps below (each is a round trip to a shared store).
    let blob = index.lookup(digest).await;
    if !ask.writer || blob.repos.contains(target) {
        return None; // not the caller's to write, or known to be there: TCR's HEAD answers
    }
    let caller = Caller::of(grant);
    let owner = caller.owner.as_deref();
    let calls = Calls::new(front, caller.clone());
    if let Some(source) = blob.into.as_ref().filter(|s| *s != target) {
        // The mount that follows the wait asks a token of its own: fetched while waiting.
        calls.prefetch_token(target, Some(source));
    }
    // Nothing on its way when looked: no wait (a claim made since loses to the one below).
    let (mut waited, (mut sources, mut size)) = match blob.in_flight {
        true => (
            index.wait_for_upload(digest, target).await,
            index.sources_for(digest, target, owner).await,
        ),
        false => (false, index.order_sources(blob, target, owner).await),
    };
    if sources.is_empty() && !waited {
        if index.claim(digest, target).await {
            return None; // this caller uploads it; the others wait for it
        }
        // Another repository claimed it a moment ago (replicas sharing a store race for
        // longer): wait for that upload, then mount from it.
        waited = index.wait_for_upload(digest, target).await;
        (sources, size) = index.sources_for(digest, target, owner).await;
        if sources.is_empty() && !waited {
            return None;
        }
    }
    let size = mount_from(&calls, &caller, target, digest, (sources, size)).await??;
    Some(found(digest, size))
}

/// Mount `digest` into `target` from the first of `sources` TCR lets the caller mount from.
/// `Some(size)`: mounted (the size when known); `None`: no mount was made.
async fn mount_from(
    calls: &Calls<'_>,
    caller: &Caller,
    target: &RepoName,
    digest: &Digest,
    (sources, size): (Vec<RepoName>, Option<u64>),
) -> Option<Option<u64>> {
    let index = calls.front.wan.index.as_ref()?;
    let owner = caller.owner.as_deref();
    for source in sources {
        // An unknown size is asked of the source while the mount is made (one round trip).
        let (mounted, asked) = match size {
            Some(_) => (calls.mount(target, &source, digest).await, None),
            None => {
                futures_util::join!(
                    calls.mount(target, &source, digest),
                    calls.source_size(target, &source, digest)
                )
            }
        };
        match mounted {
            Mounted::Yes => {
                index.pushed(owner, target.namespace()).await;
                let size = calls.size_of(target, digest, size.or(asked)).await;
                index.mounted(digest, (target, &source), owner, size).await;
                return Some(size);
            }
            Mounted::No => index.refused(digest, &source).await,
            Mounted::Denied => {
                index.denied();
                return None;
            }
            Mounted::Error => {
                index.mount_failed();
                return None;
            }
        }
    }
    None
}

/// The last `PUT ?digest=` of an upload into `target` (the client's `name`, TCR's session
/// `id`), for a blob another repository is known to hold: mounted with the caller's credential
/// before anything is sent on; if TCR mounts it, the body is read here and dropped, TCR's
/// session is cancelled and the upload is answered as completed. `Err(payload)`: no mount was
/// made (none known, refused, no answer): the ordinary upload goes on with the body untouched.
pub async fn at_put(
    front: &web::Data<RegistryFront>,
    route: &Route,
    grant: &Grant,
    (name, target, id): (&RepoName, &RepoName, &str),
    digest: &Digest,
    payload: web::Payload,
) -> Result<Result<HttpResponse, OciError>, web::Payload> {
    let Some(index) = front.wan.index.as_ref() else {
        return Err(payload);
    };
    let caller = Caller::of(grant);
    let owner = caller.owner.as_deref();
    let (sources, size) = index.sources_for(digest, target, owner).await;
    if sources.is_empty() || index.holds(digest, target).await {
        return Err(payload);
    }
    let calls = Calls::new(front, caller.clone());
    if mount_from(&calls, &caller, target, digest, (sources, size))
        .await
        .is_none()
    {
        return Err(payload);
    }
    Ok(drop_body(front, route, (name, target, id), digest, caller, payload).await)
}

/// The body of an upload TCR needs no longer: read and dropped (counted as saved), TCR's
/// session cancelled in the background, the blob's place answered.
pub async fn drop_body(
    front: &web::Data<RegistryFront>,
    route: &Route,
    (name, target, id): (&RepoName, &RepoName, &str),
    digest: &Digest,
    caller: Caller,
    mut payload: web::Payload,
) -> Result<HttpResponse, OciError> {
    let mut dropped = 0u64;
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| {
            OciError::new(ErrorCode::BlobUploadInvalid, format!("upload body: {e}"))
                .with_status(StatusCode::BAD_REQUEST)
        })?;
        dropped += chunk.len() as u64;
    }
    if let Some(index) = &front.wan.index {
        index.metrics().bytes_saved.inc_by(dropped);
    }
    let (f, target, session) = (
        (*front).clone(),
        target.clone(),
        format!("/blobs/uploads/{id}"),
    );
    actix_web::rt::spawn(async move {
        Calls::new(&f, caller).cancel(&target, &session).await;
    });
    Ok(created(route, name, digest))
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
