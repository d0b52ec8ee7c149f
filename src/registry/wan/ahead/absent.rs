//! "Absent" said ahead of TCR without the pipeline. A migration pushes image after image of
//! blobs TCR has never seen: each one's HEAD is a round trip that only ever says "no". Once TCR
//! has said "absent" to a caller's last [`STREAK`] questions about blobs the adapter had never
//! heard of, or at once in a namespace this process created lately (its repositories hold only
//! what was pushed since: `namespaces::fresh`), the next such HEAD is answered "absent" at once
//! (the blob claimed, as a relayed 404 claims it) while TCR is asked in the background, and an
//! upload session is parked for the `POST` that follows. TCR saying "present" ends the streak
//! and the namespace's freshness: the caller's HEADs go to TCR again until it has said
//! "absent" [`STREAK`] times more. A monolithic `PUT` of a blob TCR
//! turned out to have is answered without sending the bytes on (they are read and dropped);
//! one that arrives before TCR's answer is sent, as the client asked (an upload of a blob TCR
//! has is harmless: the same bytes under the same digest).

use actix_web::http::Method;
use actix_web::{web, HttpResponse};

use super::parked::{caller, park, take_parked, unpark};
use super::{probe, settled, BlobAsk};
use crate::auth::Grant;
use crate::oci::{Digest, OciError, RepoName};
use crate::registry::request::Route;
use crate::registry::route::Endpoint;
use crate::registry::wan::answers::{absent, Intercept};
use crate::registry::wan::calls::Caller;
use crate::registry::wan::dedup::{self, may_write};
use crate::registry::RegistryFront;

/// A pusher's HEAD for a blob nobody here has heard of, while TCR keeps saying "absent" to this
/// caller: "absent" now (see the module).
pub async fn absent_ahead(
    front: &web::Data<RegistryFront>,
    ask: &BlobAsk<'_>,
) -> Option<HttpResponse> {
    let (target, grant, digest) = (ask.target, ask.grant, ask.digest);
    let index = front.wan.index.as_ref()?;
    let (credential, owner) = caller(grant);
    let fresh = front.namespaces.created_lately(target.namespace());
    if !ask.writer
        || !(fresh || index.expects_absent(owner.as_deref()).await)
        || !index.unheard_of(digest).await
    {
        return None;
    }
    if !index.claim(digest, target).await {
        return None; // another job claimed it first: the HEAD waits for it and mounts
    }
    let check = check_absent(front, target, digest, Caller { credential, owner });
    front.wan.ahead.probes.insert(target, digest, check);
    park(front, target, grant, super::SESSIONS_PER_BLOB);
    Some(absent())
}

/// Ask TCR in the background whether `target` has `digest`, just answered "absent" ahead of
/// it: the answer moves `owner`'s streak and is counted; "present" is remembered.
pub fn check_absent(
    front: &web::Data<RegistryFront>,
    target: &RepoName,
    digest: &Digest,
    caller: Caller,
) -> super::Ahead<bool> {
    let owner = caller.owner.clone();
    let check = probe((*front).clone(), target.clone(), digest.clone(), caller);
    let (f, target, digest, answer) = (
        (*front).clone(),
        target.clone(),
        digest.clone(),
        check.clone(),
    );
    actix_web::rt::spawn(async move {
        let present = settled(answer).await;
        let said = match present {
            Some(true) => "present",
            Some(false) => "absent",
            None => "no_answer",
        };
        if let Some(index) = f.wan.index.as_ref() {
            if present == Some(true) {
                f.namespaces.not_fresh(target.namespace());
                index.learn(&digest, &target, None).await;
            }
            if let Some(present) = present {
                index.told(owner.as_deref(), present).await;
            }
            // Counted once what it taught is in place: a count seen means the streak moved.
            index
                .metrics()
                .absent_ahead
                .with_label_values(&[said])
                .inc();
        }
    });
    check
}

/// TCR's answer to a relayed request, for the work ahead: a manifest that is there gives the
/// sessions parked for its image back; a blob HEAD about a blob the adapter did not know to be
/// in the repository moves the caller's streak.
pub async fn answered(
    front: &web::Data<RegistryFront>,
    route: &Route,
    grant: &Grant,
    status: reqwest::StatusCode,
) {
    let Some(target) = route.upstream.as_ref() else {
        return;
    };
    match (&route.endpoint, &route.method) {
        (Endpoint::Manifest { .. }, &Method::HEAD | &Method::PUT) if status.is_success() => {
            unpark(front, target, grant)
        }
        (Endpoint::Manifest { name, .. }, &Method::HEAD)
            if status.as_u16() == 404 && front.wan.pipeline.is_none() =>
        {
            super::mounts::bases_for_new_image(front, (name, target), grant).await
        }
        (Endpoint::Blob { name, digest }, &Method::HEAD) => {
            let Some(index) = front.wan.index.as_ref() else {
                return;
            };
            if index.holds(digest, target).await || !may_write(front, name, target, grant).await {
                return;
            }
            let (_, owner) = caller(grant);
            match status.as_u16() {
                200 => {
                    front.namespaces.not_fresh(target.namespace());
                    index.told(owner.as_deref(), true).await
                }
                404 => index.told(owner.as_deref(), false).await,
                _ => {}
            }
        }
        _ => {}
    }
}

/// The work-ahead step without the pipeline (`wan.dedup`): sessions parked beside a pusher's
/// manifest HEAD; a blob TCR turned out to have, not sent on; a blob another repository has,
/// mounted at its last `PUT` and not sent on ([`dedup::at_put`]); an upload start answered with
/// a parked session.
pub async fn intercept(
    front: &web::Data<RegistryFront>,
    route: &Route,
    grant: &Grant,
    payload: web::Payload,
) -> Result<Intercept, OciError> {
    let Some(up) = route
        .upstream
        .as_ref()
        .filter(|_| front.wan.index.is_some())
    else {
        return Ok(Intercept::Pass(payload));
    };
    let mut payload = payload;
    match (&route.endpoint, &route.method) {
        (Endpoint::Manifest { name, .. }, &Method::HEAD) => {
            super::park_for_image(front, (name, up), grant).await;
        }
        (Endpoint::Upload { name, id }, &Method::PUT) => {
            let Some(digest) = route.upload_digest() else {
                return Ok(Intercept::Pass(payload));
            };
            let place = (name, up, id.as_str());
            if front.wan.ahead.probes.found(up, &digest) {
                crate::registry::wan::chunks::abandon(front, up, id);
                let caller = Caller::of(grant);
                let answer = dedup::drop_body(front, route, place, &digest, caller, payload);
                return answer.await.map(Intercept::Answered);
            }
            match dedup::at_put(front, route, grant, place, &digest, payload).await {
                Ok(answer) => {
                    crate::registry::wan::chunks::abandon(front, up, id);
                    return answer.map(Intercept::Answered);
                }
                Err(p) => payload = p,
            }
            super::parked::next_upload(front, (name, up), grant).await;
        }
        _ => {}
    }
    Ok(match take_parked(front, route, grant).await {
        Some(answer) => Intercept::Answered(answer),
        None => Intercept::Pass(payload),
    })
}
