//! "Absent" said ahead of TCR without the pipeline. A migration pushes image after image of
//! blobs TCR has never seen: each one's HEAD is a round trip that only ever says "no". Once TCR
//! has said "absent" to a caller's last [`STREAK`] questions about blobs the adapter had never
//! heard of, the next such HEAD is answered "absent" at once (the blob claimed, as a relayed
//! 404 claims it) while TCR is asked in the background, and an upload session is parked for the
//! `POST` that follows. TCR saying "present" ends the streak: the caller's HEADs go to TCR
//! again until it has said "absent" [`STREAK`] times more. A monolithic `PUT` of a blob TCR
//! turned out to have is answered without sending the bytes on (they are read and dropped);
//! one that arrives before TCR's answer is sent, as the client asked (an upload of a blob TCR
//! has is harmless: the same bytes under the same digest).

use actix_web::http::{Method, StatusCode};
use actix_web::{web, HttpResponse};
use futures_util::StreamExt;

use super::parked::{caller, may_push, park, take_parked, unpark};
use super::{probe, settled, BlobAsk};
use crate::auth::Grant;
use crate::oci::{Digest, ErrorCode, OciError, RepoName};
use crate::registry::calls::Calls;
use crate::registry::pipeline::{blob_url, Intercept};
use crate::registry::request::Route;
use crate::registry::route::Endpoint;
use crate::registry::RegistryFront;

/// "Absent" answers from TCR in a row after which the adapter says it ahead of TCR.
pub const STREAK: u32 = 3;

/// Per caller (upstream username): how many blobs the adapter had never heard of TCR has said
/// were absent since it last said one was there.
#[derive(Default)]
pub struct Streaks {
    map: dashmap::DashMap<String, u32>,
}

impl Streaks {
    fn told(&self, owner: Option<&str>, present: bool) {
        let Some(owner) = owner else { return };
        if present {
            self.map.remove(owner);
        } else {
            *self.map.entry(owner.to_string()).or_default() += 1;
        }
    }

    fn expects_absent(&self, owner: Option<&str>) -> bool {
        owner.is_some_and(|o| self.map.get(o).is_some_and(|n| *n >= STREAK))
    }
}

/// The registry's "blob unknown" answer.
pub fn absent() -> HttpResponse {
    let absent = OciError::new(ErrorCode::BlobUnknown, "blob unknown to registry")
        .with_status(StatusCode::NOT_FOUND);
    actix_web::ResponseError::error_response(&absent)
}

/// A pusher's HEAD for a blob nobody here has heard of, while TCR keeps saying "absent" to this
/// caller: "absent" now (see the module).
pub fn absent_ahead(front: &web::Data<RegistryFront>, ask: &BlobAsk) -> Option<HttpResponse> {
    let BlobAsk {
        client,
        target,
        grant,
        digest,
    } = *ask;
    let index = front.dedup.as_ref()?;
    let (credential, owner) = caller(grant);
    if !may_push(client, grant)
        || !front.ahead.streaks.expects_absent(owner.as_deref())
        || !index.unheard_of(digest)
    {
        return None;
    }
    index.claim(digest, target);
    let check = check_absent(front, target, digest, credential, owner);
    front.ahead.probes.insert(target, digest, check);
    park(front, target, grant, super::SESSIONS_PER_BLOB);
    Some(absent())
}

/// Ask TCR in the background whether `target` has `digest`, just answered "absent" ahead of
/// it: the answer moves `owner`'s streak and is counted; "present" is remembered.
pub fn check_absent(
    front: &web::Data<RegistryFront>,
    target: &RepoName,
    digest: &Digest,
    credential: Option<crate::upstream::BasicAuth>,
    owner: Option<String>,
) -> super::Ahead<bool> {
    let check = probe((*front).clone(), target.clone(), digest.clone(), credential);
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
        if let Some(index) = f.dedup.as_ref() {
            index
                .metrics()
                .absent_ahead
                .with_label_values(&[said])
                .inc();
            if present == Some(true) {
                index.learn(&digest, &target, None);
            }
        }
        if let Some(present) = present {
            f.ahead.streaks.told(owner.as_deref(), present);
        }
    });
    check
}

/// TCR's answer to a relayed request, for the work ahead: a manifest that is there gives the
/// sessions parked for its image back; a blob HEAD about a blob the adapter did not know to be
/// in the repository moves the caller's streak.
pub fn answered(
    front: &web::Data<RegistryFront>,
    route: &Route,
    grant: &Grant,
    status: reqwest::StatusCode,
) {
    let Some(target) = route.upstream.as_ref() else {
        return;
    };
    match (&route.endpoint, &route.method) {
        (Endpoint::Manifest { .. }, &Method::HEAD) if status.is_success() => {
            unpark(front, target, grant)
        }
        (Endpoint::Blob { name, digest }, &Method::HEAD) => {
            let Some(index) = front.dedup.as_ref() else {
                return;
            };
            if !may_push(name, grant) || index.holds(digest, target) {
                return;
            }
            let (_, owner) = caller(grant);
            match status.as_u16() {
                200 => front.ahead.streaks.told(owner.as_deref(), true),
                404 => front.ahead.streaks.told(owner.as_deref(), false),
                _ => {}
            }
        }
        _ => {}
    }
}

/// The work-ahead step without the pipeline (`wan.dedup`): sessions parked beside a pusher's
/// manifest HEAD; a blob TCR turned out to have, not sent on; an upload start answered with a
/// parked session.
pub async fn intercept(
    front: &web::Data<RegistryFront>,
    route: &Route,
    grant: &Grant,
    payload: web::Payload,
) -> Result<Intercept, OciError> {
    let Some(up) = route.upstream.as_ref().filter(|_| front.dedup.is_some()) else {
        return Ok(Intercept::Pass(payload));
    };
    match (&route.endpoint, &route.method) {
        (Endpoint::Manifest { name, .. }, &Method::HEAD) => {
            super::park_for(front, (name, up), grant, super::SESSIONS_PER_IMAGE);
        }
        (Endpoint::Upload { name, id }, &Method::PUT) => {
            if let Some(digest) = route
                .upload_digest()
                .filter(|d| front.ahead.probes.found(up, d))
            {
                let answer = not_sent_on(front, route, grant, payload, (name, id), &digest);
                return answer.await.map(Intercept::Answered);
            }
        }
        _ => {}
    }
    Ok(match take_parked(front, route, grant).await {
        Some(answer) => Intercept::Answered(answer),
        None => Intercept::Pass(payload),
    })
}

/// The last `PUT` of a blob TCR has already: its bytes read and dropped, TCR's session
/// cancelled, the blob's place answered.
async fn not_sent_on(
    front: &web::Data<RegistryFront>,
    route: &Route,
    grant: &Grant,
    mut payload: web::Payload,
    (name, id): (&RepoName, &str),
    digest: &Digest,
) -> Result<HttpResponse, OciError> {
    let mut dropped = 0u64;
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| {
            OciError::new(ErrorCode::BlobUploadInvalid, format!("upload body: {e}"))
                .with_status(StatusCode::BAD_REQUEST)
        })?;
        dropped += chunk.len() as u64;
    }
    if let Some(index) = &front.dedup {
        index.metrics().bytes_saved.inc_by(dropped);
    }
    let (front_, credential, up, session) = (
        (*front).clone(),
        caller(grant).0,
        route.upstream.clone(),
        format!("/blobs/uploads/{id}"),
    );
    actix_web::rt::spawn(async move {
        if let Some(up) = up {
            let calls = Calls {
                front: &front_,
                credential,
            };
            calls.cancel(&up, &session).await;
        }
    });
    Ok(HttpResponse::Created()
        .insert_header(("Location", blob_url(route, name, digest)))
        .insert_header(("Docker-Content-Digest", digest.as_str()))
        .finish())
}
