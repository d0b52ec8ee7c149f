//! Layers mounted ahead of the HEADs that will ask for them (`wan.dedup`, without the
//! pipeline). Harbor asks about an image's layers one after another, and each layer another
//! repository has costs a mount round trip before the answer. Images built on the same base
//! list its layers in the same order, so when a pusher asks about a layer that a mount from
//! repository S will bring in, the layers that follow it in S's last pushed manifest — those
//! that more than one other repository has (base layers, not S's own) — are mounted into the
//! pusher's repository at the same time; the HEADs that come for them find them mounted. A
//! guess that does not come true leaves a blob the repository's manifest does not reference
//! (TCR's garbage collection removes it); it never sends bytes.

use std::time::{Duration, Instant};

use actix_web::{web, HttpResponse};

use super::parked::caller;
use super::{settled, spawn, Ahead, BlobAsk};
use crate::oci::{Digest, RepoName};
use crate::registry::wan::answers::found;
use crate::registry::wan::calls::{Caller, Calls, Mounted};
use crate::registry::wan::state::RECENT_MANIFESTS;
use crate::registry::RegistryFront;

/// A mount made ahead that no HEAD came for is forgotten after this long.
const KEEP: Duration = Duration::from_secs(600);
/// Other repositories that must have a layer for it to count as a base layer.
const SHARED_BY: usize = 2;

type Key = (RepoName, Digest);

/// Mounts made ahead, by target repository and layer. What they are guessed from — the layers
/// of the manifests pushed lately — is the room's state (`WanState::note_layers`), which
/// replicas sharing a store share.
#[derive(Default)]
pub struct Mounts {
    pending: dashmap::DashMap<Key, (Instant, Ahead<Option<u64>>)>,
}

/// The layers every one of `recent` (a namespace's latest manifests, at least two) references,
/// in their order.
fn bases(recent: &[Vec<Digest>]) -> Vec<Digest> {
    match recent.split_first() {
        Some((first, rest)) if !rest.is_empty() => first
            .iter()
            .filter(|d| rest.iter().all(|m| m.contains(d)))
            .cloned()
            .collect(),
        _ => Vec::new(),
    }
}

/// The layers that follow `digest` in `layers` (a manifest's).
fn following(layers: &[Digest], digest: &Digest) -> Vec<Digest> {
    match layers.iter().position(|d| d == digest) {
        Some(at) => layers[at + 1..].to_vec(),
        None => Vec::new(),
    }
}

/// A HEAD whose blob was mounted ahead: its answer once the mount is done (`None`: no mount
/// was made ahead for it, or it did not succeed).
pub async fn mounted_ahead(
    front: &RegistryFront,
    target: &RepoName,
    digest: &Digest,
) -> Option<HttpResponse> {
    let (_, (_, mount)) = front
        .wan
        .ahead
        .mounts
        .pending
        .remove(&(target.clone(), digest.clone()))?;
    let size = settled(mount).await??;
    Some(found(digest, size))
}

/// A pusher asks about `digest` in `target`, which a mount from another repository is about to
/// bring in: mount the base layers that follow it there too, now.
pub async fn mount_following(front: &web::Data<RegistryFront>, ask: &BlobAsk<'_>) {
    let (target, digest) = (ask.target, ask.digest);
    let Some(index) = front.wan.index.as_ref() else {
        return;
    };
    if !ask.writer || index.holds(digest, target).await {
        return;
    }
    let (credential, owner) = caller(ask.grant);
    let (sources, _) = index.sources_for(digest, target, owner.as_deref()).await;
    let Some(source) = sources.into_iter().next() else {
        return;
    };
    let m = &front.wan.ahead.mounts;
    m.pending.retain(|_, (at, _)| at.elapsed() < KEEP);
    for layer in following(&index.layers_of(&source).await, digest) {
        let (others, size) = index.sources(&layer, target).await;
        let key = (target.clone(), layer.clone());
        if others.len() < SHARED_BY
            || !others.contains(&source)
            || index.holds(&layer, target).await
            || m.pending.contains_key(&key)
        {
            continue;
        }
        start_mount(
            front,
            key,
            &source,
            size,
            (credential.clone(), owner.clone()),
        );
    }
}

/// Mount `layer` into `repo` (the key) from `source` now, with the caller's credential; the
/// HEAD that comes for it finds the outcome ([`mounted_ahead`]).
fn start_mount(
    front: &web::Data<RegistryFront>,
    key: Key,
    source: &RepoName,
    size: Option<u64>,
    (credential, owner): (Option<crate::upstream::BasicAuth>, Option<String>),
) {
    let (f, source, (repo, layer)) = ((*front).clone(), source.clone(), key.clone());
    let mount = spawn(async move {
        let calls = Calls::new(
            &f,
            Caller {
                credential,
                owner: owner.clone(),
            },
        );
        let index = f.wan.index.as_ref()?;
        let (mounted, asked) = match size {
            Some(_) => (calls.mount(&repo, &source, &layer).await, None),
            None => {
                futures_util::join!(
                    calls.mount(&repo, &source, &layer),
                    calls.source_size(&repo, &source, &layer)
                )
            }
        };
        if mounted != Mounted::Yes {
            return None;
        }
        index.pushed(owner.as_deref(), repo.namespace()).await;
        let size = calls.size_of(&repo, &layer, size.or(asked)).await;
        index
            .mounted(&layer, (&repo, &source), owner.as_deref(), size)
            .await;
        size
    });
    front
        .wan
        .ahead
        .mounts
        .pending
        .insert(key, (Instant::now(), mount));
}

/// A pusher's manifest HEAD in `target` was answered "absent" (a new image): the layers that
/// every one of the last [`RECENT_MANIFESTS`] (at least two) manifests pushed into its
/// namespace through the adapter (any replica sharing the store) share, and that at least [`SHARED_BY`] repositories have (the
/// namespace's base layers in a migration built on one base), are mounted into `target` while
/// Harbor uploads the image's config; the HEADs that come for them find them there. The image
/// may be built on another base: the guess then leaves unreferenced blobs in `target` (TCR's
/// garbage collection removes them), never extra bytes.
pub async fn bases_for_new_image(
    front: &web::Data<RegistryFront>,
    (client, target): (&RepoName, &RepoName),
    grant: &crate::auth::Grant,
) {
    let Some(index) = front.wan.index.as_ref() else {
        return;
    };
    let m = &front.wan.ahead.mounts;
    let recent = index.recent_layers(target.namespace()).await;
    let recent = &recent[..recent.len().min(RECENT_MANIFESTS)];
    let bases = bases(recent);
    if bases.is_empty()
        || !crate::registry::wan::dedup::may_write(front, client, target, grant).await
    {
        return;
    }
    let (credential, owner) = caller(grant);
    m.pending.retain(|_, (at, _)| at.elapsed() < KEEP);
    for layer in bases {
        let key = (target.clone(), layer.clone());
        if m.pending.contains_key(&key) || index.holds(&layer, target).await {
            continue;
        }
        let (sources, size) = index.sources_for(&layer, target, owner.as_deref()).await;
        let Some(source) = sources.first().filter(|_| sources.len() >= SHARED_BY) else {
            continue;
        };
        start_mount(
            front,
            key,
            source,
            size,
            (credential.clone(), owner.clone()),
        );
    }
}
