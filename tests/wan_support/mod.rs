//! What the WAN tests share: Harbor's way of pushing an image ([`harbor`]: a Harbor-faithful
//! client, per generation, a token per request scope), seeded layers, and readings of what
//! reached TCR (the emulator's request journal) and of the adapter's metrics.
#![allow(dead_code)]

use reqwest::Method;
use serde_json::json;
use tcr_adapter::oci::Digest;

use crate::harbor::{Env, OCI_MANIFEST};

pub mod harbor;
pub mod recorder;
pub use harbor::{Gen, Job};

/// `len` bytes derived from `seed`.
pub fn layer(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ seed)
        .collect()
}

/// Upload requests that reached TCR for `digest` (monolithic or final chunk).
pub fn uploads_of(e: &Env, digest: &Digest) -> usize {
    crate::common::uploads_into_tcr(&e.emu, digest)
}

/// `HEAD /v2/<repo>/blobs/<d>` with the token given (skopeo and docker push with one
/// `pull,push` token; for Harbor use [`job_head_blob`]): status, `Content-Length`,
/// `Docker-Content-Digest`.
pub async fn head_blob(
    e: &Env,
    repo: &str,
    d: &Digest,
    token: &str,
) -> (u16, Option<String>, Option<String>) {
    let r = e
        .req(
            Method::HEAD,
            &format!("/v2/{repo}/blobs/{d}"),
            Some(token),
            &[],
            None,
        )
        .await;
    let h = |n: &str| r.headers().get(n).map(|v| v.to_str().unwrap().to_string());
    (
        r.status().as_u16(),
        h("content-length"),
        h("docker-content-digest"),
    )
}

/// A blob HEAD as a Harbor job sends it (pull scope): status, `Content-Length`,
/// `Docker-Content-Digest`.
pub async fn job_head_blob(
    j: &Job,
    repo: &str,
    d: &Digest,
) -> (u16, Option<String>, Option<String>) {
    let r = j.head_blob(repo, d).await;
    let h = |n: &str| r.headers().get(n).map(|v| v.to_str().unwrap().to_string());
    (
        r.status().as_u16(),
        h("content-length"),
        h("docker-content-digest"),
    )
}

/// The manifest of an image made of `config` and `layers`.
pub fn manifest_of(config: &[u8], layers: &[&[u8]]) -> String {
    let desc = |b: &[u8], mt: &str| json!({"mediaType": mt, "digest": Digest::sha256_of(b).to_string(), "size": b.len()});
    json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": desc(config, "application/vnd.oci.image.config.v1+json"),
        "layers": layers.iter().map(|l| desc(l, "application/vnd.oci.image.layer.v1.tar")).collect::<Vec<_>>(),
    })
    .to_string()
}

/// The config blob of `repo`'s image.
pub fn config_of(repo: &str) -> Vec<u8> {
    json!({"architecture": "amd64", "os": "linux", "repo": repo})
        .to_string()
        .into_bytes()
}

/// A new Harbor replication job of generation `gen` against the adapter, with the endpoint's
/// credentials (the demo API keys, as the `tencentcr` provider and the tests' Harbor use).
pub fn job(e: &Env, gen: Gen) -> Job {
    Job::new(
        gen,
        &e.base,
        crate::common::DEMO_SECRET_ID,
        crate::common::DEMO_SECRET_KEY,
    )
}

/// Replicate `repo:v1` made of `layers` (and a config) as a Harbor `gen` job does; how many
/// blobs it uploaded.
pub async fn replicate(e: &Env, gen: Gen, repo: &str, layers: &[&[u8]]) -> usize {
    let config = config_of(repo);
    let manifest = manifest_of(&config, layers);
    let mut blobs: Vec<&[u8]> = vec![&config];
    blobs.extend_from_slice(layers);
    job(e, gen)
        .copy_image(repo, "v1", &blobs, OCI_MANIFEST, manifest.as_bytes())
        .await
        .uploaded
}

/// Replicate `repo:v1` (a base layer, its own layer, a config) as Harbor 2.0 does; how many
/// blobs it uploaded.
pub async fn push_image(e: &Env, repo: &str, base: &[u8], own: &[u8]) -> usize {
    replicate(e, Gen::V2_0, repo, &[base, own]).await
}

/// The value of the first metric line starting with `line_start` (0 when absent).
pub fn metric(text: &str, line_start: &str) -> u64 {
    text.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .unwrap_or(0.0) as u64
}

/// `GET /v2/<repo>/blobs/<d>` with a pull token: the bytes (the answer must be 200).
pub async fn pull_blob(e: &Env, repo: &str, d: &Digest) -> Vec<u8> {
    let t = e.keys_token(&[&format!("repository:{repo}:pull")]).await;
    let r = e.get(&format!("/v2/{repo}/blobs/{d}"), &t).await;
    assert_eq!(r.status(), 200, "{repo} {d}");
    r.bytes().await.unwrap().to_vec()
}

/// A blob put straight into TCR's `repo`, behind the adapter's back.
pub async fn seed(e: &Env, repo: &str, data: &[u8]) {
    let scope = format!("repository:{repo}:*");
    let up =
        crate::common::token_as(&e.http, &e.emu.registry_url(), &e.user, &e.pass, &scope).await;
    let loc = crate::common::start_upload(&e.http, &e.emu.registry_url(), repo, &up).await;
    let r = e
        .http
        .put(crate::common::with_digest(
            &loc,
            Digest::sha256_of(data).as_str(),
        ))
        .bearer_auth(&up)
        .body(data.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
}
