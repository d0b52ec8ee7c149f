//! CNCF distribution 2.8 (`/usr/bin/docker-registry`) as a second, independent upstream with
//! token auth: it trusts the emulator's token realm (a self-signed certificate over the
//! emulator's RSA key), and the adapter forwards to it. skopeo pushes and pulls an image
//! through the adapter; every digest survives, and distribution's own absolute, `_state`-carrying
//! upload `Location`s are rewritten and replayed correctly. Harbor 2.9's chunks reach it as one
//! streamed `PATCH` (`wan.stream_chunks`).

mod common;
mod oci_layout;

use tcr_adapter::app;
use tcr_adapter::clock;

/// The emulator (token realm, namespace `dist`), distribution 2.8 trusting it, and its URL.
async fn distribution_behind_realm(
    tmp: &std::path::Path,
) -> (common::TestEmulator, common::Proc, String) {
    let emu = common::start_emulator().await;
    emu.handle.state.namespaces.create("dist", false).unwrap();
    let key_pem = std::fs::read(emu.dir.path().join("keys/signing.pem")).unwrap();
    let cert = tmp.join("cert.pem");
    let key = openssl::pkey::PKey::private_key_from_pem(&key_pem).unwrap();
    std::fs::write(
        &cert,
        common::self_signed_cert(&key, "tcr-emulator", 30, None),
    )
    .unwrap();
    let (guard, dist_url) = common::distribution(
        tmp,
        "adapter-test-secret",
        &format!(
            "auth:\n  token:\n    realm: {}/service/token\n    service: harbor-registry\n    issuer: tcr-emulator\n    rootcertbundle: {}\n",
            emu.handle.registry_url(),
            cert.display()
        ),
    )
    .await;
    (emu, guard, dist_url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distribution_2_8_behind_the_adapter_keeps_digests() {
    common::require_tool("docker-registry");
    common::require_tool("skopeo");
    let tmp = tempfile::tempdir().unwrap();
    let (emu, _guard, dist_url) = distribution_behind_realm(tmp.path()).await;
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

/// Harbor 2.9's copy by chunk (`PATCH` chunks with `Content-Range`, the last one in `PUT
/// ?digest=`) through the adapter's defaults into distribution 2.8: the chunks reach it as one
/// streamed `PATCH` (no `Content-Range`, chunked encoding), the final `PUT` goes to the
/// `_state`-carrying `Location` distribution answered it with, and the blob reads back intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn harbor_chunks_stream_into_distribution_2_8() {
    common::require_tool("docker-registry");
    let tmp = tempfile::tempdir().unwrap();
    let (emu, _guard, dist_url) = distribution_behind_realm(tmp.path()).await;
    let mut cfg = common::adapter_config(&emu.handle);
    cfg.tcr.registry_url = dist_url;
    cfg.wan.stream_chunks = true;
    let adapter = app::start(cfg, clock::system()).await.unwrap();
    let base = format!("http://{}", adapter.addr);
    let (user, pass) = common::instance_credentials(&emu.handle);
    let http = reqwest::Client::new();
    let repo = "dist/chunks";
    let scope = format!("repository:{repo}:pull,push");
    let tok = common::token_as(&http, &base, &user, &pass, &scope).await;
    let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let d = tcr_adapter::oci::Digest::sha256_of(&data);
    let mut loc = common::start_upload(&http, &base, repo, &tok).await;
    let parts: Vec<&[u8]> = data.chunks(48 << 10).collect();
    let mut at = 0;
    for (i, part) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        let url = match last {
            true => common::with_digest(&loc, &d.as_str().replace(':', "%3A")),
            false => loc.clone(),
        };
        let method = if last {
            reqwest::Method::PUT
        } else {
            reqwest::Method::PATCH
        };
        let r = http
            .request(method, url)
            .bearer_auth(&tok)
            .header("Content-Type", "application/octet-stream")
            .header("Content-Range", format!("{at}-{}", at + part.len() - 1))
            .body(part.to_vec())
            .send()
            .await
            .unwrap();
        at += part.len();
        if last {
            assert_eq!(r.status(), 201, "the final PUT");
            assert_eq!(common::header(&r, "docker-content-digest"), d.as_str());
        } else {
            assert_eq!(r.status(), 202, "chunk {i}");
            assert_eq!(common::header(&r, "range"), format!("0-{}", at - 1));
            loc = common::absolute(&base, &common::header(&r, "location"));
        }
    }
    let metrics = common::get_text(&format!("{base}/metrics")).await;
    let upload_202 = common::sum_metric(
        &metrics,
        "tcr_adapter_upstream_seconds_count{",
        &["route=\"upload\"", "status=\"202\""],
    );
    let counts: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("tcr_adapter_upstream_seconds_count"))
        .collect();
    assert_eq!(
        upload_202, 1,
        "four chunks, one streamed PATCH: {counts:#?}"
    );
    let r = http
        .get(format!("{base}/v2/{repo}/blobs/{d}"))
        .bearer_auth(&tok)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().as_ref(), &data[..]);
    adapter.stop().await;
}
