//! Every route of the adapter that can write, tried with one credential against one namespace:
//! the data plane (`/v2/`: monolithic and chunked blob uploads, a cross-repository mount, a
//! blob HEAD the WAN dedup may answer with a mount ahead, manifest PUT, manifest and tag DELETE,
//! blob DELETE, and a push into a namespace that does not exist) and the Harbor API persona
//! (`/api/projects` POST, `/api/repositories` tag DELETE, chart upload and delete). Each attempt
//! is kept with its answer; the tests judge them.

use reqwest::Method;
use tcr_adapter::oci::Digest;

use crate::common::charts::{chart_archive, multipart_chart};
use crate::common::{absolute, basic, header, with_digest, SendOk};
use crate::harbor::OCI_MANIFEST;
use crate::wan_support::layer;
use crate::world::{Seeded, World};

/// One request (or the step of a sequence that ended it) and its answer.
#[derive(Debug)]
pub struct Attempt {
    pub route: String,
    pub status: u16,
    pub body: String,
}

impl Attempt {
    async fn of(route: impl Into<String>, r: reqwest::Response) -> Attempt {
        Attempt {
            route: route.into(),
            status: r.status().as_u16(),
            body: r.text().await.unwrap_or_default(),
        }
    }

    /// The OCI error code of the body (`errors[0].code`), if it is an OCI error.
    pub fn oci_code(&self) -> Option<String> {
        let v: serde_json::Value = serde_json::from_str(&self.body).ok()?;
        v["errors"][0]["code"].as_str().map(str::to_string)
    }
}

/// A blob nobody holds yet (different per caller and namespace).
fn fresh_blob(who: &str, ns: &str) -> Vec<u8> {
    let mut b = layer(7, 3000);
    b.extend_from_slice(format!("{who}@{ns}").as_bytes());
    b
}

/// The adapter's token for `scopes`, as `user:pass` (the adapter grants what is asked; TCR
/// decides).
async fn token(
    w: &World,
    (user, pass): (&str, &str),
    scopes: &[String],
) -> Result<String, Attempt> {
    let s: Vec<&str> = scopes.iter().map(String::as_str).collect();
    w.e.try_token(user, pass, &s)
        .await
        .map_err(|(status, body)| Attempt {
            route: "GET /service/token".into(),
            status: status.as_u16(),
            body,
        })
}

/// The data-plane writes into `ns`, whose `app` repository holds a seeded image (unless `ns` is
/// a namespace that does not exist: then the writes that need content there are left out).
pub async fn data_plane(w: &World, cred: (&str, &str), ns: &str, exists: bool) -> Vec<Attempt> {
    let e = &w.e;
    let app = format!("{ns}/app");
    let new = format!("{ns}/new");
    let source = Seeded::of("team-a");
    let scopes = [
        format!("repository:{app}:pull,push,delete"),
        format!("repository:{new}:pull,push"),
        "repository:team-a/app:pull".to_string(),
    ];
    let t = match token(w, cred, &scopes).await {
        Ok(t) => t,
        Err(refused) => return vec![refused],
    };
    let mut out = Vec::new();
    let blob = fresh_blob(cred.0, ns);
    let d = Digest::sha256_of(&blob);

    // Monolithic: POST ?digest= with the bytes.
    let r = e
        .req(
            Method::POST,
            &format!("/v2/{new}/blobs/uploads/?digest={d}"),
            Some(&t),
            &[("Content-Type", "application/octet-stream")],
            Some(blob.clone()),
        )
        .await;
    out.push(Attempt::of("POST blobs/uploads/?digest= (monolithic)", r).await);

    // Chunked: POST, PATCH, PUT ?digest=; the first step that is not a session answer ends it.
    out.push(chunked(w, &t, &new, &blob).await);

    // Cross-repository mount from a repository the caller may read.
    let base = Digest::sha256_of(&source.base);
    let r = e
        .req(
            Method::POST,
            &format!("/v2/{new}/blobs/uploads/?mount={base}&from=team-a/app"),
            Some(&t),
            &[("Content-Length", "0")],
            None,
        )
        .await;
    out.push(Attempt::of("POST blobs/uploads/?mount=&from= (mount)", r).await);

    // A HEAD for a blob another repository holds: the WAN dedup's mount ahead.
    let r = e
        .req(
            Method::HEAD,
            &format!("/v2/{new}/blobs/{base}"),
            Some(&t),
            &[],
            None,
        )
        .await;
    out.push(Attempt::of("HEAD blobs/<digest> (dedup mount ahead)", r).await);

    // A manifest whose blobs the repository holds (or, in a new namespace, the seeded one).
    let target = if exists { &app } else { &new };
    let manifest = if exists {
        Seeded::of(ns).manifest
    } else {
        source.manifest.clone()
    };
    let r = e
        .req(
            Method::PUT,
            &format!("/v2/{target}/manifests/evil"),
            Some(&t),
            &[("Content-Type", OCI_MANIFEST)],
            Some(manifest),
        )
        .await;
    out.push(Attempt::of("PUT manifests/<tag>", r).await);
    if !exists {
        return out;
    }

    let seeded = Seeded::of(ns);
    for (route, path) in [
        (
            "DELETE manifests/<digest>",
            format!("/v2/{app}/manifests/{}", seeded.manifest_digest()),
        ),
        ("DELETE manifests/<tag>", format!("/v2/{app}/manifests/v1")),
        (
            "DELETE blobs/<digest>",
            format!("/v2/{app}/blobs/{}", Digest::sha256_of(&seeded.own)),
        ),
    ] {
        let r = e.delete(&path, &t).await;
        out.push(Attempt::of(route, r).await);
    }
    out
}

/// POST, PATCH, PUT ?digest= of `blob` into `repo`: the attempt that ended the sequence.
async fn chunked(w: &World, t: &str, repo: &str, blob: &[u8]) -> Attempt {
    let e = &w.e;
    let r = e.start_upload(repo, t).await;
    if r.status() != 202 {
        return Attempt::of("POST blobs/uploads/ (chunked: start)", r).await;
    }
    let loc = absolute(&e.base, &header(&r, "location"));
    let (head, tail) = blob.split_at(blob.len() / 2);
    let mut loc = loc;
    for part in [head, tail] {
        let r = e
            .http
            .patch(&loc)
            .bearer_auth(t)
            .header("Content-Type", "application/octet-stream")
            .body(part.to_vec())
            .send_ok()
            .await;
        if r.status() != 202 {
            return Attempt::of("PATCH <session> (chunked)", r).await;
        }
        loc = absolute(&e.base, &header(&r, "location"));
    }
    let d = Digest::sha256_of(blob);
    let r = e
        .http
        .put(with_digest(&loc, d.as_str()))
        .bearer_auth(t)
        .send_ok()
        .await;
    Attempt::of("PUT <session>?digest= (chunked: end)", r).await
}

/// The Harbor API persona's writes into `ns` (Basic `user:pass`); `fresh` names a namespace
/// that does not exist, for `POST /api/projects`.
pub async fn harbor_api(
    w: &World,
    (user, pass): (&str, &str),
    ns: &str,
    fresh: &str,
) -> Vec<Attempt> {
    let e = &w.e;
    let auth = basic(user, pass);
    let mut out = Vec::new();
    let r = e
        .http
        .post(format!("{}/api/projects", e.base))
        .header("Authorization", &auth)
        .header("Content-Type", "application/json")
        .body(
            serde_json::json!({"project_name": fresh, "metadata": {"public": "false"}}).to_string(),
        )
        .send_ok()
        .await;
    out.push(Attempt::of("POST /api/projects", r).await);
    let r = e
        .http
        .delete(format!("{}/api/repositories/{ns}/app/tags/v1", e.base))
        .header("Authorization", &auth)
        .send_ok()
        .await;
    out.push(Attempt::of("DELETE /api/repositories/<repo>/tags/<tag>", r).await);
    let (ct, body) = multipart_chart("evil-0.1.0.tgz", &chart_archive("evil", "0.1.0", 512));
    let r = e
        .http
        .post(format!("{}/api/chartrepo/{ns}/charts", e.base))
        .header("Authorization", &auth)
        .header("Content-Type", ct)
        .body(body)
        .send_ok()
        .await;
    out.push(Attempt::of("POST /api/chartrepo/<ns>/charts", r).await);
    let r = e
        .http
        .delete(format!("{}/api/chartrepo/{ns}/charts/web/1.0.0", e.base))
        .header("Authorization", &auth)
        .send_ok()
        .await;
    out.push(Attempt::of("DELETE /api/chartrepo/<ns>/charts/<name>/<version>", r).await);
    out
}
