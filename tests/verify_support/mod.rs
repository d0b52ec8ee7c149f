//! Fixtures of the `verify` suite: a CNCF distribution (no auth) on a loopback port, images
//! pushed into it over the registry API (single-platform manifests and two-platform indexes),
//! and a helper that runs the `tcr-adapter verify` binary.
#![allow(dead_code, unused_imports)]

use crate::common::SendOk;
use std::path::Path;
use std::process::Command;

use super::common;

pub use common::free_port;

/// A CNCF distribution 2.8 without auth on a loopback port; its base URL.
pub async fn start_distribution(dir: &Path) -> (common::Proc, String) {
    common::distribution(dir, "verify-test-secret", "").await
}

pub fn sha(b: &[u8]) -> String {
    format!("sha256:{}", common::charts::sha256_hex(b))
}

use tcr_adapter::oci::media::{OCI_INDEX, OCI_MANIFEST};

async fn put_blob(http: &reqwest::Client, base: &str, repo: &str, data: &[u8]) -> String {
    let digest = sha(data);
    let head = http
        .head(format!("{base}/v2/{repo}/blobs/{digest}"))
        .send_ok()
        .await;
    if head.status().is_success() {
        return digest;
    }
    let r = common::upload_blob(http, base, repo, data, &digest).await;
    assert_eq!(r.status(), 201, "blob upload in {repo}");
    digest
}

async fn put_manifest(
    http: &reqwest::Client,
    base: &str,
    repo: &str,
    tag: &str,
    media_type: &str,
    body: &[u8],
) -> String {
    let r = http
        .put(format!("{base}/v2/{repo}/manifests/{tag}"))
        .header("content-type", media_type)
        .body(body.to_vec())
        .send_ok()
        .await;
    assert_eq!(r.status(), 201, "manifest {repo}:{tag}");
    sha(body)
}

/// A single-platform image whose content is derived from `seed`; its manifest digest.
pub async fn push_image(base: &str, repo: &str, tag: &str, seed: &str, arch: &str) -> String {
    let http = reqwest::Client::new();
    let (media_type, body) = image_manifest(&http, base, repo, seed, arch).await;
    put_manifest(&http, base, repo, tag, media_type, &body).await
}

async fn image_manifest(
    http: &reqwest::Client,
    base: &str,
    repo: &str,
    seed: &str,
    arch: &str,
) -> (&'static str, Vec<u8>) {
    let layer = common::charts::chart_archive(&format!("layer-{seed}-{arch}"), "1.0.0", 64);
    let layer_digest = put_blob(http, base, repo, &layer).await;
    let config = serde_json::json!({
        "architecture": arch, "os": "linux",
        "config": {"Labels": {"seed": seed}},
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
    })
    .to_string();
    let config_digest = put_blob(http, base, repo, config.as_bytes()).await;
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config_digest, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": layer_digest, "size": layer.len()}],
    })
    .to_string();
    (OCI_MANIFEST, manifest.into_bytes())
}

/// A two-platform (amd64, arm64) index from `seed`; (index digest, [child digests]).
pub async fn push_index(base: &str, repo: &str, tag: &str, seed: &str) -> (String, Vec<String>) {
    let http = reqwest::Client::new();
    let mut children = Vec::new();
    let mut entries = Vec::new();
    for arch in ["amd64", "arm64"] {
        let (mt, body) = image_manifest(&http, base, repo, seed, arch).await;
        let digest = put_manifest(&http, base, repo, &sha(&body), mt, &body).await;
        entries.push(serde_json::json!({
            "mediaType": mt, "digest": digest, "size": body.len(),
            "platform": {"architecture": arch, "os": "linux"},
        }));
        children.push(digest);
    }
    let index = serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries,
    })
    .to_string();
    let d = put_manifest(&http, base, repo, tag, OCI_INDEX, index.as_bytes()).await;
    (d, children)
}

/// Run `tcr-adapter verify` with `args`; (exit code, stdout, stderr).
pub fn run_verify(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tcr-adapter"))
        .arg("verify")
        .args(args)
        .env_remove("TCR_ADAPTER_CONFIG")
        .output()
        .expect("tcr-adapter runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// skopeo copy of `src` (in the distribution at `dist`) to `dst` through the adapter at
/// `adapter`, with the demo API keys; `--all` when `all`.
pub async fn skopeo_copy(dist: &str, adapter: &str, src: &str, dst: &str, all: bool) {
    let s = format!("docker://{}/{src}", dist.trim_start_matches("http://"));
    let d = format!("docker://{}/{dst}", adapter.trim_start_matches("http://"));
    let creds = format!("{}:{}", common::DEMO_SECRET_ID, common::DEMO_SECRET_KEY);
    common::skopeo_copy(&s, &d, &creds, &["--src-tls-verify=false"], all).await;
}

/// The string fields `keys` of each of a JSON report's `items`, as a set.
pub fn item_fields<const N: usize>(
    report: &serde_json::Value,
    keys: [&str; N],
) -> std::collections::BTreeSet<[String; N]> {
    report["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| keys.map(|k| i[k].as_str().unwrap().to_string()))
        .collect()
}
