//! Two adapter replicas started with the same signing and sealing keys serve one client
//! interchangeably: a token from one opens the other, an upload started through one finishes
//! through the other, and skopeo pushing through a real nginx load balancer (round robin over
//! both) gets every image back intact. A third replica with other keys refuses those tokens.

mod common;
mod oci_layout;

use crate::common::SendOk;
use reqwest::{Method, StatusCode};
use tcr_adapter::app;
use tcr_adapter::clock;
use tcr_adapter::config::{Config, Secret};
use tcr_adapter::oci::Digest;

const SIGNING_KEY: &str = "cmVwbGljYS10ZXN0LXNpZ25pbmcta2V5LTMyLWJ5dGVzISE=";
const SEALING_KEY: &str = "cmVwbGljYS10ZXN0LXNlYWxpbmcta2V5LTMyYnl0ZXM=";

fn replica_config(emu: &common::TestEmulator, public_url: &str, keys: (&str, &str)) -> Config {
    let mut cfg = common::adapter_config(&emu.handle);
    cfg.server.public_url = public_url.to_string();
    cfg.auth.signing_key = Secret::new(keys.0);
    cfg.auth.sealing_key = Secret::new(keys.1);
    cfg
}

/// A replica behind `public_url` signing and sealing with `keys`.
async fn start_replica(
    emu: &common::TestEmulator,
    public_url: &str,
    keys: (&str, &str),
) -> app::AdapterHandle {
    let cfg = replica_config(emu, public_url, keys);
    app::start(cfg, clock::system()).await.unwrap()
}

/// Path and query of an absolute or relative URL.
fn path_of(location: &str) -> String {
    match location.find("://") {
        Some(i) => {
            let rest = &location[i + 3..];
            rest[rest.find('/').unwrap_or(rest.len())..].to_string()
        }
        None => location.to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_started_on_one_replica_finishes_on_the_other() {
    let emu = common::start_emulator().await;
    let lb = format!("http://127.0.0.1:{}", common::free_port());
    let keys = (SIGNING_KEY, SEALING_KEY);
    let a = start_replica(&emu, &lb, keys).await;
    let b = start_replica(&emu, &lb, keys).await;
    let other_keys = (
        "b3RoZXItc2lnbmluZy1rZXktMzItYnl0ZXMtbG9uZyEhIQ==",
        "b3RoZXItc2VhbGluZy1rZXktMzItYnl0ZXMtbG9uZyE=",
    );
    let c = start_replica(&emu, &lb, other_keys).await;
    let (base_a, base_b, base_c) = (
        format!("http://{}", a.addr),
        format!("http://{}", b.addr),
        format!("http://{}", c.addr),
    );
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    let tok = common::token(&base_a, "repository:replicas/app:pull,push").await;
    let authed = |m: Method, base: &str, path: &str| {
        http.request(m, format!("{base}{path}")).bearer_auth(&tok)
    };

    // The token from A opens B; C (other keys) calls it an invalid token.
    let r = authed(Method::GET, &base_b, "/v2/").send_ok().await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = authed(Method::GET, &base_c, "/v2/").send_ok().await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let challenge = crate::common::header(&r, "www-authenticate");
    assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");

    // POST on A, PATCH on B, PUT on A: one upload across replicas.
    let layer = oci_layout::bytes(7, 300_000);
    let digest = Digest::sha256_of(&layer);
    let r = authed(Method::POST, &base_a, "/v2/replicas/app/blobs/uploads/")
        .header("Content-Length", "0")
        .send_ok()
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let loc = crate::common::header(&r, "location");
    assert!(loc.starts_with(&lb), "Location on the public URL: {loc}");
    let r = authed(Method::PATCH, &base_b, &path_of(&loc))
        .header("Content-Type", "application/octet-stream")
        .header("Content-Range", format!("0-{}", 99_999))
        .body(layer[..100_000].to_vec())
        .send_ok()
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(r.headers()["range"], "0-99999");
    let loc = crate::common::header(&r, "location");
    let put = common::with_digest(&path_of(&loc), digest.as_str());
    let r = authed(Method::PUT, &base_a, &put)
        .body(layer[100_000..].to_vec())
        .send_ok()
        .await;
    assert_eq!(r.status(), StatusCode::CREATED, "{:?}", r.text().await);

    // A manifest through B, pulled back through A: exact bytes and digests.
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let cd = Digest::sha256_of(config);
    let post = format!("/v2/replicas/app/blobs/uploads/?digest={cd}");
    let r = authed(Method::POST, &base_b, &post)
        .body(config.to_vec())
        .send_ok()
        .await;
    assert!(r.status() == StatusCode::CREATED || r.status() == StatusCode::ACCEPTED);
    if r.status() == StatusCode::ACCEPTED {
        let loc = crate::common::header(&r, "location");
        let put = common::with_digest(&path_of(&loc), cd.as_str());
        let r = authed(Method::PUT, &base_b, &put)
            .body(config.to_vec())
            .send_ok()
            .await;
        assert_eq!(r.status(), StatusCode::CREATED);
    }
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd.to_string(), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digest.to_string(), "size": layer.len()}],
    })
    .to_string();
    let md = Digest::sha256_of(manifest.as_bytes());
    let r = authed(Method::PUT, &base_b, "/v2/replicas/app/manifests/v1")
        .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
        .body(manifest.clone())
        .send_ok()
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = authed(Method::GET, &base_a, "/v2/replicas/app/manifests/v1")
        .header("Accept", "application/vnd.oci.image.manifest.v1+json")
        .send_ok()
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["docker-content-digest"], md.as_str());
    assert_eq!(r.bytes().await.unwrap().as_ref(), manifest.as_bytes());
    let r = authed(
        Method::GET,
        &base_a,
        &format!("/v2/replicas/app/blobs/{digest}"),
    )
    .send_ok()
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(Digest::sha256_of(&r.bytes().await.unwrap()), digest);

    for h in [a, b, c] {
        h.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skopeo_through_an_nginx_load_balancer_over_two_replicas() {
    common::require_tool("skopeo");
    let emu = common::start_emulator().await;
    let port = common::free_port();
    let lb = format!("http://127.0.0.1:{port}");
    let keys = (SIGNING_KEY, SEALING_KEY);
    let a = start_replica(&emu, &lb, keys).await;
    let b = start_replica(&emu, &lb, keys).await;
    let nginx_dir = tempfile::tempdir().unwrap();
    let _nginx = common::nginx(
        nginx_dir.path(),
        port,
        &format!("server {}; server {};", a.addr, b.addr),
        "",
    );

    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let (single, multi) = oci_layout::image_and_index(&src, ("single", 11), ("multi", 12));
    let creds = format!("{}:{}", common::DEMO_SECRET_ID, common::DEMO_SECRET_KEY);
    let host = format!("127.0.0.1:{port}");
    for (tag, digest) in [("single", &single), ("multi", &multi)] {
        common::skopeo_push(&src, tag, &format!("{host}/lb/app:{tag}"), &creds).await;
        let raw = common::skopeo_raw_manifest(&format!("{host}/lb/app:{tag}"), &creds).await;
        assert_eq!(
            &Digest::sha256_of(raw.as_bytes()),
            digest,
            "{tag} keeps its digest"
        );
    }
    // Both replicas served part of the traffic.
    for h in [&a, &b] {
        let m = common::get_text(&format!("http://{}/metrics", h.addr)).await;
        assert!(
            m.contains("status=\"201\""),
            "replica {} served no upload:\n{m}",
            h.addr
        );
    }
    // Pull everything back out through the balancer: identical blobs.
    let out_dir = tmp.path().join("out");
    common::skopeo_pull(&format!("{host}/lb/app:multi"), &out_dir, "multi", &creds).await;
    let pulled = oci_layout::blobs(&out_dir);
    let source = oci_layout::blobs(&src);
    for (name, bytes) in &pulled {
        assert_eq!(source.get(name), Some(bytes), "blob {name} differs");
    }
    a.stop().await;
    b.stop().await;
}
