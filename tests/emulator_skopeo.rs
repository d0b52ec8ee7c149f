//! skopeo 1.9 (a real containers/image client) against the emulator's data plane: copy a
//! single-platform image and a multi-platform OCI index in with an instance token, copy them back
//! out, and compare digests; a push into a missing namespace fails with TCR's message.

mod common;

use std::path::Path;

use common::{require_tool, start_emulator, DEMO_UIN};
use serde_json::{json, Value};
use tcr_adapter::emulator::TokenKind;
use tcr_adapter::oci::Digest;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// Write `bytes` as a blob of the layout; returns its descriptor parts.
fn put_blob(layout: &Path, bytes: &[u8]) -> (Digest, usize) {
    let d = Digest::sha256_of(bytes);
    let dir = layout.join("blobs/sha256");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(d.encoded()), bytes).unwrap();
    (d, bytes.len())
}

/// Random bytes, gzip-compressed (skopeo would recompress an uncompressed layer, changing
/// digests; it only looks at the gzip magic, so the payload need not be a tar).
fn random_gzip_layer(n: usize) -> Vec<u8> {
    use std::io::Write;
    let raw: Vec<u8> = (0..n).map(|_| rand::random::<u8>()).collect();
    let mut child = std::process::Command::new("gzip")
        .arg("-c")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("gzip runs");
    child.stdin.take().unwrap().write_all(&raw).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    out.stdout
}

/// An OCI image manifest (config + one random layer) for `arch`, stored in the layout.
fn image(layout: &Path, arch: &str) -> (Digest, usize) {
    let config = json!({
        "architecture": arch, "os": "linux",
        "config": {}, "rootfs": {"type": "layers", "diff_ids": [format!("{}", Digest::sha256_of(arch.as_bytes()))]},
        "history": [{"created_by": "emulator test"}]
    })
    .to_string();
    let (cd, cs) = put_blob(layout, config.as_bytes());
    let (ld, ls) = put_blob(layout, &random_gzip_layer(50_000));
    let manifest = json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd.to_string(), "size": cs},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": ld.to_string(), "size": ls}]
    })
    .to_string();
    put_blob(layout, manifest.as_bytes())
}

/// Build an OCI layout holding `single:v1` (one image) and `multi:v1` (an index of two).
/// Returns (single manifest digest, index digest).
fn build_layout(layout: &Path) -> (Digest, Digest) {
    std::fs::create_dir_all(layout).unwrap();
    std::fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    let (single, single_size) = image(layout, "amd64");
    let (amd, amd_size) = image(layout, "amd64");
    let (arm, arm_size) = image(layout, "arm64");
    let index = json!({
        "schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": amd.to_string(), "size": amd_size, "platform": {"architecture": "amd64", "os": "linux"}},
            {"mediaType": OCI_MANIFEST, "digest": arm.to_string(), "size": arm_size, "platform": {"architecture": "arm64", "os": "linux"}}
        ]
    })
    .to_string();
    let (idx, idx_size) = put_blob(layout, index.as_bytes());
    let top = json!({
        "schemaVersion": 2,
        "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": single.to_string(), "size": single_size, "annotations": {"org.opencontainers.image.ref.name": "single"}},
            {"mediaType": OCI_INDEX, "digest": idx.to_string(), "size": idx_size, "annotations": {"org.opencontainers.image.ref.name": "multi"}}
        ]
    });
    std::fs::write(layout.join("index.json"), top.to_string()).unwrap();
    (single, idx)
}

async fn skopeo(args: &[&str]) -> std::process::Output {
    tokio::process::Command::new("skopeo")
        .args(args)
        .output()
        .await
        .expect("skopeo runs")
}

fn ok(out: &std::process::Output) {
    assert!(
        out.status.success(),
        "skopeo failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The digest `ref.name` points at in a layout's index.json.
fn layout_digest(layout: &Path, name: &str) -> String {
    let idx: Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    idx["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == name)
        .unwrap_or_else(|| panic!("{name} in {idx}"))["digest"]
        .as_str()
        .unwrap()
        .to_string()
}

#[actix_rt::test]
async fn skopeo_copies_images_and_indexes_in_and_out_with_identical_digests() {
    require_tool("skopeo");
    let t = start_emulator().await;
    t.handle.state.namespaces.create("team", false).unwrap();
    let tok = t.handle.state.tokens.issue(DEMO_UIN, TokenKind::Temp);
    let creds = format!("{}:{}", tok.username, tok.token);
    let host = t.handle.registry_addr.to_string();
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    let (single, index) = build_layout(&src);

    for (name, all) in [("single", false), ("multi", true)] {
        let from = format!("oci:{}:{name}", src.display());
        let to = format!("docker://{host}/team/{name}:v1");
        let mut args = vec!["copy", "--dest-creds", &creds, "--dest-tls-verify=false"];
        if all {
            args.push("--all");
        }
        args.extend([from.as_str(), to.as_str()]);
        ok(&skopeo(&args).await);
    }

    for (name, want) in [("single", &single), ("multi", &index)] {
        let reference = format!("docker://{host}/team/{name}:v1");
        let out = skopeo(&[
            "inspect",
            "--raw",
            "--creds",
            &creds,
            "--tls-verify=false",
            &reference,
        ])
        .await;
        ok(&out);
        assert_eq!(
            &Digest::sha256_of(&out.stdout),
            want,
            "{name}: manifest bytes kept exactly: {}\nsource: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(
                &std::fs::read(src.join("blobs/sha256").join(want.encoded())).unwrap()
            )
        );
        let dst = work.path().join(format!("out-{name}"));
        let to = format!("oci:{}:{name}", dst.display());
        ok(&skopeo(&[
            "copy",
            "--all",
            "--src-creds",
            &creds,
            "--src-tls-verify=false",
            &reference,
            &to,
        ])
        .await);
        assert_eq!(layout_digest(&dst, name), want.as_str());
    }
    // The children of the index are there too, by digest.
    let idx: Value = serde_json::from_slice(
        &std::fs::read(src.join("blobs/sha256").join(index.encoded())).unwrap(),
    )
    .unwrap();
    for child in idx["manifests"].as_array().unwrap() {
        let d = Digest::parse(child["digest"].as_str().unwrap()).unwrap();
        assert!(t
            .handle
            .state
            .storage
            .manifest_meta("team/multi", &d)
            .is_some());
    }
    t.handle.stop().await;
}

#[actix_rt::test]
async fn skopeo_push_into_a_missing_namespace_shows_tcrs_message() {
    require_tool("skopeo");
    let t = start_emulator().await;
    let tok = t.handle.state.tokens.issue(DEMO_UIN, TokenKind::Temp);
    let creds = format!("{}:{}", tok.username, tok.token);
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    build_layout(&src);
    let from = format!("oci:{}:single", src.display());
    let to = format!("docker://{}/nope/app:v1", t.handle.registry_addr);
    let out = skopeo(&[
        "copy",
        "--dest-creds",
        &creds,
        "--dest-tls-verify=false",
        &from,
        &to,
    ])
    .await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("project nope not found"), "{stderr}");
    t.handle.stop().await;
}
