//! skopeo (a real registry client with token auth) through the adapter: copy and sync of single
//! and multi-platform images built locally as OCI layouts keep every digest, and pulling back
//! through the adapter gives the same bytes as pulling straight from the emulator.

mod common;
mod oci_layout;

use tcr_adapter::app;
use tcr_adapter::clock;

fn manifest_digest(raw: &str) -> String {
    tcr_adapter::oci::Digest::sha256_of(raw.as_bytes()).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skopeo_copy_and_sync_keep_every_digest() {
    common::require_tool("skopeo");
    let emu = common::start_emulator().await;
    let cfg = common::adapter_config(&emu.handle);
    let adapter = app::start(cfg, clock::system()).await.unwrap();
    let host = adapter.addr.to_string();
    let emu_host = emu.handle.registry_addr.to_string();
    let keys = format!("{}:{}", common::DEMO_SECRET_ID, common::DEMO_SECRET_KEY);
    let (user, pass) = common::instance_credentials(&emu.handle);
    let emu_creds = format!("{user}:{pass}");

    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let (single, multi) = oci_layout::image_and_index(&src, ("single", 1), ("multi", 2));

    // copy: API keys as Harbor would present them.
    for (tag, digest, all) in [("single", &single, false), ("multi", &multi, true)] {
        let from = format!("oci:{}:{tag}", src.display());
        let to = format!("docker://{host}/skopeo/app:{tag}");
        common::skopeo_copy(&from, &to, &keys, &["--preserve-digests"], all).await;
        let raw = common::skopeo_raw_manifest(&format!("{host}/skopeo/app:{tag}"), &keys).await;
        assert_eq!(
            manifest_digest(&raw),
            digest.to_string(),
            "{tag} digest through the adapter"
        );
        let direct =
            common::skopeo_raw_manifest(&format!("{emu_host}/skopeo/app:{tag}"), &emu_creds).await;
        assert_eq!(raw, direct, "{tag}: same manifest bytes upstream");
    }

    // sync: every tag of a repository, from the emulator through the adapter into a new namespace.
    common::skopeo(&[
        "sync",
        "--all",
        "--preserve-digests",
        "--src",
        "docker",
        "--dest",
        "docker",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        "--src-creds",
        &emu_creds,
        "--dest-creds",
        &keys,
        &format!("{emu_host}/skopeo/app"),
        &format!("{host}/synced"),
    ])
    .await;
    for (tag, digest) in [("single", &single), ("multi", &multi)] {
        let raw = common::skopeo_raw_manifest(&format!("{host}/synced/app:{tag}"), &keys).await;
        assert_eq!(manifest_digest(&raw), digest.to_string(), "synced {tag}");
    }

    // Pull back through the adapter and straight from the emulator: identical blobs.
    for (name, via, creds) in [
        ("via-adapter", &host, &keys),
        ("direct", &emu_host, &emu_creds),
    ] {
        let dest = tmp.path().join(name);
        common::skopeo_pull(&format!("{via}/skopeo/app:multi"), &dest, "multi", creds).await;
    }
    let a = oci_layout::blobs(&tmp.path().join("via-adapter"));
    let b = oci_layout::blobs(&tmp.path().join("direct"));
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    assert_eq!(a, b);
    oci_layout::assert_blobs_from_source(&a, &src, 8);
    adapter.stop().await;
}
