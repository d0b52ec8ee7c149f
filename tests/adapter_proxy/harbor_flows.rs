//! Harbor 1.8, 1.10 and 2.0 on the wire (harbor-adapters.md §1.2–1.6): the "Test connection"
//! ping, one image pushed then skipped, an OCI index and one child pushed by 1.x.

use crate::common::SendOk;
use crate::harbor::{basic, image, Env, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST};
use crate::DOCKER_LIST;
use reqwest::Method;
use serde_json::json;
use tcr_adapter::oci::Digest;

#[tokio::test]
async fn test_connection_like_harbor() {
    let e = Env::default().await;
    // 1. probe without credentials
    let r = e.req(Method::GET, "/v2/", None, &[], None).await;
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.headers()["docker-distribution-api-version"],
        "registry/2.0"
    );
    let chal = r.headers()["www-authenticate"].to_str().unwrap();
    assert_eq!(
        chal,
        format!(
            "Bearer realm=\"{}/service/token\",service=\"tcr-adapter\"",
            e.base
        )
    );
    assert!(r.headers().contains_key("x-request-id"));
    let r = e.req(Method::HEAD, "/v2/", None, &[], None).await;
    assert_eq!(r.status(), 401);
    // 2. token with no scope, 3. HEAD /v2/ (1.x) and GET /v2/ (2.x)
    let t = e.token(&[]).await;
    let r = e.head("/v2/", &t).await;
    assert_eq!(r.status(), 200);
    let r = e
        .send_with(Method::GET, "/v2/", &t, &[("X-Request-Id", "abc123")])
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-request-id"], "abc123");
    assert_eq!(
        r.headers()["docker-distribution-api-version"],
        "registry/2.0"
    );
    assert_eq!(r.text().await.unwrap(), "{}");
    // A wrong password is refused at the token endpoint.
    let r = e
        .http
        .get(format!("{}/service/token?service=tcr-adapter", e.base))
        .header("Authorization", basic(&e.user, "not-a-token"))
        .send_ok()
        .await;
    assert_eq!(r.status(), 401);
    let r = e.get_anon("/healthz").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "ok");
    let r = e.get_anon("/readyz").await;
    assert_eq!(r.status(), 200);
    e.adapter.stop().await;
}

#[tokio::test]
async fn harbor_1_8_pushes_one_image_then_skips_it() {
    let e = Env::default().await;
    let repo = "proj18/app";
    let t = e.token(&["repository:proj18/app:pull,push"]).await;
    let (layer, config, manifest) = image("18", DOCKER_MANIFEST);
    // Namespace does not exist yet: HEADs must say "absent" (404), not 401/403.
    let accept: &[(&str, &str)] = &[
        (
            "Accept",
            "application/vnd.docker.distribution.manifest.v1+json",
        ),
        ("Accept", DOCKER_MANIFEST),
    ];
    let r = e.manifest(Method::HEAD, (repo, "v1"), &t, accept).await;
    assert_eq!(r.status(), 404);
    let ld = Digest::sha256_of(&layer).to_string();
    let r = e.head(&format!("/v2/{repo}/blobs/{ld}"), &t).await;
    assert_eq!(r.status(), 404);
    // POST creates the namespace on the fly; Harbor 1.8.0 PUTs the blob chunked, no length.
    let r = e.start_upload(repo, &t).await;
    assert_eq!(r.status(), 202);
    assert!(
        e.emu.state.namespaces.get("proj18").is_some(),
        "namespace created"
    );
    let loc = crate::common::header(&r, "location");
    let sep = if loc.contains('?') { '&' } else { '?' };
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        layer.chunks(1000).map(|c| Ok(c.to_vec())).collect();
    let r = e
        .http
        .put(format!("{loc}{sep}digest={ld}"))
        .header("Authorization", format!("Bearer {t}"))
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send_ok()
        .await;
    assert_eq!(r.status(), 201, "{:?}", r.text().await);
    e.push_blob(repo, &t, &config, false, false).await;
    e.put_manifest(repo, "v1", &t, DOCKER_MANIFEST, &manifest)
        .await;
    // Second run: HEAD answers the same digest, so Harbor skips.
    let r = e.manifest(Method::HEAD, (repo, "v1"), &t, accept).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["docker-content-digest"],
        Digest::sha256_of(&manifest).as_str()
    );
    assert_eq!(
        r.headers()["content-length"],
        manifest.len().to_string().as_str()
    );
    // Pull back: bytes identical, Content-Length kept, no gzip.
    let blob = format!("/v2/{repo}/blobs/{ld}");
    let r = e
        .send_with(Method::GET, &blob, &t, &[("Accept-Encoding", "gzip")])
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-length"],
        layer.len().to_string().as_str()
    );
    assert!(r.headers().get("content-encoding").is_none());
    assert_eq!(r.bytes().await.unwrap().as_ref(), &layer[..]);
    e.adapter.stop().await;
}

#[tokio::test]
async fn harbor_2_0_pushes_an_index_and_1_x_pushes_one_child() {
    let e = Env::default().await;
    let t = e.token_to_push(&["proj20/multi", "proj10/multi"]).await;
    let mut children = Vec::new();
    for arch in ["amd64", "arm64"] {
        let (layer, config, manifest) = image(arch, OCI_MANIFEST);
        e.push_blob("proj20/multi", &t, &layer, false, true).await;
        e.push_blob("proj20/multi", &t, &config, false, true).await;
        let d = Digest::sha256_of(&manifest).to_string();
        e.put_manifest("proj20/multi", &d, &t, OCI_MANIFEST, &manifest)
            .await;
        children.push(
            json!({"mediaType": OCI_MANIFEST, "digest": d, "size": manifest.len(),
            "platform": {"architecture": arch, "os": "linux"}}),
        );
        if arch == "amd64" {
            // Harbor 1.x: only the linux/amd64 child, under the tag.
            e.push_blob("proj10/multi", &t, &layer, false, false).await;
            e.push_blob("proj10/multi", &t, &config, false, false).await;
            e.put_manifest("proj10/multi", "v1", &t, OCI_MANIFEST, &manifest)
                .await;
        }
    }
    let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": children})
        .to_string()
        .into_bytes();
    e.put_manifest("proj20/multi", "v1", &t, OCI_INDEX, &index)
        .await;
    let r = e
        .manifest(
            Method::GET,
            ("proj20/multi", "v1"),
            &t,
            &[
                ("Accept", OCI_INDEX),
                ("Accept", DOCKER_LIST),
                ("Accept", OCI_MANIFEST),
            ],
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], OCI_INDEX);
    assert_eq!(
        r.headers()["docker-content-digest"],
        Digest::sha256_of(&index).as_str()
    );
    assert_eq!(r.bytes().await.unwrap().as_ref(), &index[..]);
    e.adapter.stop().await;
}
