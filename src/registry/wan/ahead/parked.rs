//! Upload sessions opened ahead of a client's `POST`, per repository and caller.

use std::time::Instant;

use actix_web::web;
use actix_web::HttpResponse;

use super::{cancel, open_session, settled, Ahead, PARK_TTL};
use crate::auth::Grant;
use crate::oci::RepoName;
use crate::registry::request::Route;
use crate::registry::wan::calls::Caller;
use crate::registry::wan::dedup::{may_write, may_write_already, opening_there};
use crate::registry::{rewrite, RegistryFront};
use crate::upstream::BasicAuth;

type ParkKey = (RepoName, Option<String>);

/// Upload sessions opened ahead of a client's `POST`, per repository and caller.
#[derive(Default)]
pub struct Parked {
    map: dashmap::DashMap<ParkKey, Vec<Ahead<Result<String, String>>>>,
    /// When the caller's sessions in a repository were last given back ([`unpark`]): a park
    /// decided before that and made after it is not made (see [`park_for_image`]).
    given_back: dashmap::DashMap<ParkKey, Instant>,
}

/// The caller's upstream credential and its fingerprint (`None`: anonymous).
pub(super) fn caller(grant: &Grant) -> (Option<BasicAuth>, Option<String>) {
    let Caller { credential, owner } = Caller::of(grant);
    (credential, owner)
}

/// How many sessions a pusher's blob HEAD parks: one for the upload that follows a "no".
pub const SESSIONS_PER_BLOB: usize = 1;

/// How many sessions a pusher's manifest HEAD (the first thing Harbor asks about an image)
/// parks for the blobs that follow: a config and one layer of its own, the usual shape of an
/// image whose base layers are mounted. A manifest TCR has already (the image is skipped) gives
/// them back at once ([`unpark`]).
pub const SESSIONS_PER_IMAGE: usize = 2;

/// How many sessions a pusher's upload parks when its last `PUT` goes to TCR (without the
/// pipeline): one for its image's next blob, opened while the bytes travel, so that the `POST`
/// that follows the next HEAD needs no round trip. An image's blobs go one after another, so
/// the session is usually taken within the same job; the one left after its last blob is
/// cancelled when its manifest is pushed ([`unpark`]), or after [`PARK_TTL`].
pub const SESSIONS_PER_UPLOAD: usize = 1;

/// An upload into `target` (`client` to the caller) is being completed: a session parked for
/// the next one (see [`SESSIONS_PER_UPLOAD`]).
pub(super) async fn next_upload(
    front: &web::Data<RegistryFront>,
    (client, target): (&RepoName, &RepoName),
    grant: &Grant,
) {
    if front.wan.index.is_some() && front.wan.pipeline.is_none() {
        park_for(front, (client, target), grant, SESSIONS_PER_UPLOAD).await;
    }
}

/// A HEAD about to be asked of TCR by a caller who may write `client` (`target` upstream; see
/// [`may_write`]): have `want` sessions parked there.
/// [`park_for`] for a caller already known to be one the room may write for (`writer`).
pub fn park_for_writer(
    front: &web::Data<RegistryFront>,
    target: &RepoName,
    grant: &Grant,
    (writer, want): (bool, usize),
) {
    if writer {
        park(front, target, grant, want);
    }
}

pub(super) async fn park_for(
    front: &web::Data<RegistryFront>,
    (client, target): (&RepoName, &RepoName),
    grant: &Grant,
    want: usize,
) {
    if may_write(front, client, target, grant).await {
        park(front, target, grant, want);
    }
}

/// A manifest HEAD, the first thing Harbor asks about an image: [`SESSIONS_PER_IMAGE`] parked
/// for its blobs when the caller may write `target` ([`may_write`]); or, for a pusher through
/// this adapter lately elsewhere (its mounts have a source: writes TCR accepted from this
/// credential) in a namespace new to it, once the namespace is known to exist (looked up with
/// the keys `ensure` would use, joining the look-ahead of the token before this HEAD) and the
/// policy allows a push there. That is the first image
/// of each job in a namespace new to the caller: Harbor replicating project after project.
/// Nothing is widened: the sessions are opened with the caller's own credential, and TCR
/// decides.
pub async fn park_for_image(
    front: &web::Data<RegistryFront>,
    (client, target): (&RepoName, &RepoName),
    grant: &Grant,
) {
    let (Some(index), (credential, owner)) = (front.wan.index.as_ref(), caller(grant)) else {
        return;
    };
    if may_write_already(front, client, target, grant).await {
        park(front, target, grant, SESSIONS_PER_IMAGE);
        return;
    }
    let ns = target.namespace();
    let elsewhere = credential.is_some()
        && front.namespaces.policy().check(ns).is_ok()
        && index.source_hint(owner.as_deref()).await.is_some();
    if !elsewhere {
        // Asked last: it may wait for a session another job is opening.
        if opening_there(front, target, grant).await {
            park(front, target, grant, SESSIONS_PER_IMAGE);
        }
        return;
    }
    // Parked once the namespace is known, unless TCR answered the HEAD "the image is there"
    // meanwhile (its sessions were given back: nothing is parked after that).
    let (front, target, grant, asked) =
        (front.clone(), target.clone(), grant.clone(), Instant::now());
    actix_web::rt::spawn(async move {
        let ns = target.namespace();
        if front.namespaces.known_to_exist(ns, &grant.identity).await {
            park_unless_given_back(&front, &target, &grant, (SESSIONS_PER_IMAGE, Some(asked)));
        }
    });
}

/// Have `want` sessions parked for the caller in `target`; each is cancelled if nobody takes
/// it within [`PARK_TTL`].
pub(super) fn park(
    front: &web::Data<RegistryFront>,
    target: &RepoName,
    grant: &Grant,
    want: usize,
) {
    park_unless_given_back(front, target, grant, (want, None));
}

/// [`park`], not made when the caller's sessions there were given back at or after `asked`.
fn park_unless_given_back(
    front: &web::Data<RegistryFront>,
    target: &RepoName,
    grant: &Grant,
    (want, asked): (usize, Option<Instant>),
) {
    let (credential, owner) = caller(grant);
    let key = (target.clone(), owner);
    let ahead = &front.wan.ahead.parked;
    let mut opened = Vec::new();
    {
        let mut parked = ahead.map.entry(key.clone()).or_default();
        let given_back = ahead.given_back.get(&key).map(|t| *t);
        if asked.is_some_and(|asked| given_back.is_some_and(|t| t >= asked)) {
            drop(parked);
            ahead.map.remove_if(&key, |_, v| v.is_empty());
            return;
        }
        while parked.len() < want {
            let caller = Caller {
                credential: credential.clone(),
                owner: key.1.clone(),
            };
            let session = open_session((*front).clone(), target.clone(), caller);
            parked.push(session.clone());
            opened.push(session);
        }
    }
    for session in opened {
        let (front, key, credential) = ((*front).clone(), key.clone(), credential.clone());
        actix_web::rt::spawn(async move {
            tokio::time::sleep(PARK_TTL).await;
            if front.wan.ahead.parked.take_if_same(&key, &session) {
                let owner = key.1;
                cancel(front.clone(), key.0, Caller { credential, owner }, session);
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
    front.wan.ahead.parked.pop(&(target.clone(), owner))
}

/// The image is in TCR already (its manifest HEAD said so, or its manifest was just pushed):
/// the caller's parked sessions in `target` are cancelled now rather than after [`PARK_TTL`].
pub(super) fn unpark(front: &web::Data<RegistryFront>, target: &RepoName, grant: &Grant) {
    let (credential, owner) = caller(grant);
    let key = (target.clone(), owner);
    let ahead = &front.wan.ahead.parked;
    ahead.given_back.retain(|_, t| t.elapsed() < PARK_TTL);
    ahead.given_back.insert(key.clone(), Instant::now());
    if let Some((_, parked)) = ahead.map.remove(&key) {
        for session in parked {
            let caller = Caller {
                credential: credential.clone(),
                owner: key.1.clone(),
            };
            cancel((*front).clone(), target.clone(), caller, session);
        }
    }
}

/// An upload start (no mount, no digest) answered with the session parked for the caller, as
/// TCR answered its opening (`None`: none parked, or it could not be opened).
pub(super) async fn take_parked(
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
