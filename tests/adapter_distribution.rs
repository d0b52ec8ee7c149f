//! CNCF distribution 2.8 (`/usr/bin/docker-registry`) as a second, independent upstream with
//! token auth: it trusts the emulator's token realm (a self-signed certificate over the
//! emulator's RSA key), and the adapter forwards to it. skopeo pushes and pulls an image
//! through the adapter; every digest survives, and distribution's own absolute, `_state`-carrying
//! upload `Location`s are rewritten and replayed correctly.

mod common;
mod oci_layout;

use tcr_adapter::app;
use tcr_adapter::clock;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distribution_2_8_behind_the_adapter_keeps_digests() {
    common::require_tool("docker-registry");
    common::require_tool("skopeo");
    let emu = common::start_emulator().await;
    emu.handle.state.namespaces.create("dist", false).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let key_pem = std::fs::read(emu.dir.path().join("keys/signing.pem")).unwrap();
    let cert = tmp.path().join("cert.pem");
    let key = openssl::pkey::PKey::private_key_from_pem(&key_pem).unwrap();
    std::fs::write(
        &cert,
        common::self_signed_cert(&key, "tcr-emulator", 30, None),
    )
    .unwrap();
    let (_guard, dist_url) = common::distribution(
        tmp.path(),
        "adapter-test-secret",
        &format!(
            "auth:\n  token:\n    realm: {}/service/token\n    service: harbor-registry\n    issuer: tcr-emulator\n    rootcertbundle: {}\n",
            emu.handle.registry_url(),
            cert.display()
        ),
    )
    .await;
    let port = dist_url.rsplit(':').next().unwrap();
    let r = reqwest::get(format!("{dist_url}/v2/")).await.unwrap();
    assert_eq!(r.status(), 401, "distribution asks for a token");
    let chal = crate::common::header(&r, "www-authenticate");
    assert!(chal.contains(&emu.handle.registry_url()), "{chal}");

    let mut cfg = common::adapter_config(&emu.handle);
    cfg.tcr.registry_url = dist_url.clone();
    let adapter = app::start(cfg, clock::system()).await.unwrap();
    let host = adapter.addr.to_string();
    let (user, pass) = common::instance_credentials(&emu.handle);
    let creds = format!("{user}:{pass}");

    let src = tmp.path().join("src");
    let (single, multi) = oci_layout::image_and_index(&src, ("v1", 7), ("multi", 8));
    for (tag, digest) in [("v1", &single), ("multi", &multi)] {
        common::skopeo_push(&src, tag, &format!("{host}/dist/app:{tag}"), &creds).await;
        let via = common::skopeo_raw_manifest(&format!("{host}/dist/app:{tag}"), &creds).await;
        let direct =
            common::skopeo_raw_manifest(&format!("127.0.0.1:{port}/dist/app:{tag}"), &creds).await;
        assert_eq!(via, direct);
        assert_eq!(
            tcr_adapter::oci::Digest::sha256_of(via.as_bytes()).to_string(),
            digest.to_string()
        );
    }
    let out = tmp.path().join("pulled");
    common::skopeo_pull(&format!("{host}/dist/app:multi"), &out, "multi", &creds).await;
    let pulled = oci_layout::blobs(&out);
    oci_layout::assert_blobs_from_source(&pulled, &src, 10);
    adapter.stop().await;
}
