//! The adapter in front of the real emulator, driven with what Harbor 1.8, 1.10 and 2.0 send on
//! the wire (harbor-adapters.md §1.2–1.6), plus the rest of the OCI surface: chunked uploads,
//! upload status, mounts, ranges, referrers, tags and catalog pagination, errors.

mod common;

use base64::Engine;
use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Client, Method, StatusCode};
use serde_json::json;
use tcr_adapter::app::{self, AdapterHandle};
use tcr_adapter::clock;
use tcr_adapter::config::{Config, Secret};
use tcr_adapter::emulator::TokenKind;
use tcr_adapter::oci::Digest;

struct Env {
    emu: common::TestEmulator,
    adapter: AdapterHandle,
    http: Client,
    base: String,
    user: String,
    pass: String,
}

fn adapter_config(emu: &common::TestEmulator) -> Config {
    let mut cfg = Config::default();
    cfg.server.listen = "127.0.0.1:0".parse().unwrap();
    cfg.tcr.registry_url = emu.handle.registry_url();
    cfg.tcr.api_endpoint = emu.handle.api_url();
    cfg.tcr.registry_id = emu.handle.state.cfg.registry_id.clone();
    cfg.tcr.region = emu.handle.state.cfg.region.clone();
    cfg.tcr.secret_id = common::DEMO_SECRET_ID.into();
    cfg.tcr.secret_key = Secret::new(common::DEMO_SECRET_KEY);
    cfg
}

async fn env() -> Env {
    let emu = common::start_emulator().await;
    let adapter = app::start(adapter_config(&emu), clock::system())
        .await
        .expect("adapter starts");
    let tok = emu
        .handle
        .state
        .tokens
        .issue(common::DEMO_UIN, TokenKind::LongTerm);
    Env {
        base: format!("http://{}", adapter.addr),
        adapter,
        emu,
        http: Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        user: tok.username,
        pass: tok.token,
    }
}

fn basic(user: &str, pass: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
    )
}

impl Env {
    /// A token from the adapter's realm, as Harbor fetches it (GET with Basic, one scope each).
    async fn token_as(&self, user: &str, pass: &str, scopes: &[&str]) -> String {
        let mut url = format!("{}/service/token?service=tcr-adapter", self.base);
        for s in scopes {
            url.push_str(&format!("&scope={}", urlencode(s)));
        }
        let resp = self
            .http
            .get(&url)
            .header("Authorization", basic(user, pass))
            .header("User-Agent", "Go-http-client/1.1")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "token: {}", resp.text().await.unwrap());
        let v: serde_json::Value = resp.json().await.unwrap();
        assert!(v["expires_in"].as_i64().unwrap() >= 60);
        v["token"].as_str().unwrap().to_string()
    }

    async fn token(&self, scopes: &[&str]) -> String {
        self.token_as(&self.user, &self.pass, scopes).await
    }

    async fn req(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> reqwest::Response {
        let url = if path.starts_with("http") {
            path.to_string()
        } else {
            format!("{}{path}", self.base)
        };
        let mut r = self
            .http
            .request(method, url)
            .header("User-Agent", "harbor-replication-service");
        if let Some(t) = token {
            r = r.header("Authorization", format!("Bearer {t}"));
        }
        let mut h = HeaderMap::new();
        for (k, v) in headers {
            h.append(
                reqwest::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        r = r.headers(h);
        if let Some(b) = body {
            r = r.body(b);
        }
        r.send().await.unwrap()
    }

    /// POST + monolithic PUT of one blob, Harbor style (`&digest=` raw or re-encoded).
    async fn push_blob(&self, repo: &str, token: &str, data: &[u8], encoded: bool) -> String {
        let d = Digest::sha256_of(data).to_string();
        let r = self
            .req(
                Method::POST,
                &format!("/v2/{repo}/blobs/uploads/"),
                Some(token),
                &[("Content-Length", "0")],
                None,
            )
            .await;
        assert_eq!(r.status(), 202, "{:?}", r.text().await);
        let loc = r.headers()["location"].to_str().unwrap().to_string();
        assert!(
            loc.starts_with(&format!("{}/v2/{repo}/blobs/uploads/", self.base)),
            "{loc}"
        );
        let sep = if loc.contains('?') { '&' } else { '?' };
        let dq = if encoded {
            d.replace(':', "%3A")
        } else {
            d.clone()
        };
        let r = self
            .req(
                Method::PUT,
                &format!("{loc}{sep}digest={dq}"),
                Some(token),
                &[],
                Some(data.to_vec()),
            )
            .await;
        assert_eq!(r.status(), 201, "{:?}", r.text().await);
        assert_eq!(r.headers()["docker-content-digest"], d.as_str());
        d
    }

    async fn put_manifest(&self, repo: &str, reference: &str, token: &str, mt: &str, body: &[u8]) {
        let r = self
            .req(
                Method::PUT,
                &format!("/v2/{repo}/manifests/{reference}"),
                Some(token),
                &[("Content-Type", mt)],
                Some(body.to_vec()),
            )
            .await;
        assert_eq!(r.status(), 201, "{:?}", r.text().await);
        assert_eq!(
            r.headers()["docker-content-digest"],
            Digest::sha256_of(body).as_str()
        );
    }
}

fn urlencode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

fn image(seed: &str, mt: &str) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let layer = format!("layer-{seed}").repeat(1000).into_bytes();
    let config = json!({"architecture":"amd64","os":"linux","seed":seed})
        .to_string()
        .into_bytes();
    let (cmt, lmt) = if mt == DOCKER_MANIFEST {
        (
            "application/vnd.docker.container.image.v1+json",
            "application/vnd.docker.image.rootfs.diff.tar.gzip",
        )
    } else {
        (
            "application/vnd.oci.image.config.v1+json",
            "application/vnd.oci.image.layer.v1.tar",
        )
    };
    let manifest = json!({
        "schemaVersion": 2, "mediaType": mt,
        "config": {"mediaType": cmt, "digest": Digest::sha256_of(&config).to_string(), "size": config.len()},
        "layers": [{"mediaType": lmt, "digest": Digest::sha256_of(&layer).to_string(), "size": layer.len()}],
    })
    .to_string()
    .into_bytes();
    (layer, config, manifest)
}

#[tokio::test]
async fn test_connection_like_harbor() {
    let e = env().await;
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
    let r = e.req(Method::HEAD, "/v2/", Some(&t), &[], None).await;
    assert_eq!(r.status(), 200);
    let r = e
        .req(
            Method::GET,
            "/v2/",
            Some(&t),
            &[("X-Request-Id", "abc123")],
            None,
        )
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
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = e
        .http
        .get(format!("{}/healthz", e.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "ok");
    let r = e
        .http
        .get(format!("{}/readyz", e.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    e.adapter.stop().await;
}

#[tokio::test]
async fn harbor_1_8_pushes_one_image_then_skips_it() {
    let e = env().await;
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
    let r = e
        .req(
            Method::HEAD,
            &format!("/v2/{repo}/manifests/v1"),
            Some(&t),
            accept,
            None,
        )
        .await;
    assert_eq!(r.status(), 404);
    let ld = Digest::sha256_of(&layer).to_string();
    let r = e
        .req(
            Method::HEAD,
            &format!("/v2/{repo}/blobs/{ld}"),
            Some(&t),
            &[],
            None,
        )
        .await;
    assert_eq!(r.status(), 404);
    // POST creates the namespace on the fly; Harbor 1.8.0 PUTs the blob chunked, no length.
    let r = e
        .req(
            Method::POST,
            &format!("/v2/{repo}/blobs/uploads/"),
            Some(&t),
            &[("Content-Length", "0")],
            None,
        )
        .await;
    assert_eq!(r.status(), 202);
    assert!(
        e.emu.handle.state.namespaces.get("proj18").is_some(),
        "namespace created"
    );
    let loc = r.headers()["location"].to_str().unwrap().to_string();
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
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{:?}", r.text().await);
    e.push_blob(repo, &t, &config, false).await;
    e.put_manifest(repo, "v1", &t, DOCKER_MANIFEST, &manifest)
        .await;
    // Second run: HEAD answers the same digest, so Harbor skips.
    let r = e
        .req(
            Method::HEAD,
            &format!("/v2/{repo}/manifests/v1"),
            Some(&t),
            accept,
            None,
        )
        .await;
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
    let r = e
        .req(
            Method::GET,
            &format!("/v2/{repo}/blobs/{ld}"),
            Some(&t),
            &[("Accept-Encoding", "gzip")],
            None,
        )
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
    let e = env().await;
    let t = e
        .token(&[
            "repository:proj20/multi:pull,push",
            "repository:proj10/multi:pull,push",
        ])
        .await;
    let mut children = Vec::new();
    for arch in ["amd64", "arm64"] {
        let (layer, config, manifest) = image(arch, OCI_MANIFEST);
        e.push_blob("proj20/multi", &t, &layer, true).await;
        e.push_blob("proj20/multi", &t, &config, true).await;
        let d = Digest::sha256_of(&manifest).to_string();
        e.put_manifest("proj20/multi", &d, &t, OCI_MANIFEST, &manifest)
            .await;
        children.push(
            json!({"mediaType": OCI_MANIFEST, "digest": d, "size": manifest.len(),
            "platform": {"architecture": arch, "os": "linux"}}),
        );
        if arch == "amd64" {
            // Harbor 1.x: only the linux/amd64 child, under the tag.
            e.push_blob("proj10/multi", &t, &layer, false).await;
            e.push_blob("proj10/multi", &t, &config, false).await;
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
        .req(
            Method::GET,
            "/v2/proj20/multi/manifests/v1",
            Some(&t),
            &[
                ("Accept", OCI_INDEX),
                ("Accept", DOCKER_LIST),
                ("Accept", OCI_MANIFEST),
            ],
            None,
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

#[tokio::test]
async fn delete_tags_and_catalog() {
    let e = env().await;
    let t = e
        .token(&[
            "repository:projd/app:pull,push,delete",
            "repository:projd/other:pull,push",
            "registry:catalog:*",
        ])
        .await;
    let (layer, config, manifest) = image("d", OCI_MANIFEST);
    for repo in ["projd/app", "projd/other"] {
        e.push_blob(repo, &t, &layer, true).await;
        e.push_blob(repo, &t, &config, true).await;
    }
    for tag in ["a", "b", "c"] {
        e.put_manifest("projd/app", tag, &t, OCI_MANIFEST, &manifest)
            .await;
    }
    e.put_manifest("projd/other", "x", &t, OCI_MANIFEST, &manifest)
        .await;
    // Tags, paginated.
    let r = e
        .req(Method::GET, "/v2/projd/app/tags/list", Some(&t), &[], None)
        .await;
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v, json!({"name": "projd/app", "tags": ["a", "b", "c"]}));
    let r = e
        .req(
            Method::GET,
            "/v2/projd/app/tags/list?n=2",
            Some(&t),
            &[],
            None,
        )
        .await;
    assert_eq!(r.status(), 200);
    if let Some(link) = r.headers().get("link") {
        let link = link.to_str().unwrap();
        assert!(link.starts_with("</v2/projd/app/tags/list?"), "{link}");
    }
    // Catalog with a relative Link (Harbor 1.x appends it to the endpoint).
    let r = e
        .req(Method::GET, "/v2/_catalog?n=1", Some(&t), &[], None)
        .await;
    assert_eq!(r.status(), 200);
    let link = r.headers()["link"].to_str().unwrap().to_string();
    assert!(
        link.starts_with("</v2/_catalog?") && link.ends_with("rel=\"next\""),
        "{link}"
    );
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["repositories"], json!(["projd/app"]));
    let next = &link[1..link.find('>').unwrap()];
    let r = e.req(Method::GET, next, Some(&t), &[], None).await;
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["repositories"], json!(["projd/other"]));
    // Delete by digest: 202, then absent.
    let d = Digest::sha256_of(&manifest).to_string();
    let r = e
        .req(
            Method::DELETE,
            &format!("/v2/projd/app/manifests/{d}"),
            Some(&t),
            &[],
            None,
        )
        .await;
    assert_eq!(r.status(), 202, "{:?}", r.text().await);
    let r = e
        .req(
            Method::HEAD,
            &format!("/v2/projd/app/manifests/{d}"),
            Some(&t),
            &[],
            None,
        )
        .await;
    assert_eq!(r.status(), 404);
    // A pull-only token may not delete: 401 with the full scope.
    let pull = e.token(&["repository:projd/other:pull"]).await;
    let r = e
        .req(
            Method::DELETE,
            &format!("/v2/projd/other/manifests/{d}"),
            Some(&pull),
            &[],
            None,
        )
        .await;
    assert_eq!(r.status(), 401);
    let chal = r.headers()["www-authenticate"].to_str().unwrap();
    assert!(
        chal.contains("scope=\"repository:projd/other:delete\""),
        "{chal}"
    );
    e.adapter.stop().await;
}

#[tokio::test]
async fn chunked_upload_status_mount_range_and_referrers() {
    let e = env().await;
    let t = e
        .token(&[
            "repository:projc/app:pull,push",
            "repository:projc/copy:pull,push",
        ])
        .await;
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let d = Digest::sha256_of(&data).to_string();
    let r = e
        .req(
            Method::POST,
            "/v2/projc/app/blobs/uploads/",
            Some(&t),
            &[("Content-Length", "0")],
            None,
        )
        .await;
    assert_eq!(r.status(), 202);
    let mut loc = r.headers()["location"].to_str().unwrap().to_string();
    let mut offset = 0usize;
    for chunk in data.chunks(100_000) {
        let range = format!("{}-{}", offset, offset + chunk.len() - 1);
        let r = e
            .req(
                Method::PATCH,
                &loc,
                Some(&t),
                &[
                    ("Content-Range", &range),
                    ("Content-Type", "application/octet-stream"),
                ],
                Some(chunk.to_vec()),
            )
            .await;
        assert_eq!(r.status(), 202, "{:?}", r.text().await);
        assert_eq!(
            r.headers()["range"],
            format!("0-{}", offset + chunk.len() - 1).as_str()
        );
        loc = r.headers()["location"].to_str().unwrap().to_string();
        assert!(loc.starts_with(&e.base));
        offset += chunk.len();
        // Upload status.
        let s = e.req(Method::GET, &loc, Some(&t), &[], None).await;
        assert_eq!(s.status(), 204);
        assert_eq!(s.headers()["range"], format!("0-{}", offset - 1).as_str());
    }
    // The relative form of the Location works as well.
    let rel = loc.strip_prefix(&e.base).unwrap().to_string();
    let sep = if rel.contains('?') { '&' } else { '?' };
    let r = e
        .req(
            Method::PUT,
            &format!("{rel}{sep}digest={d}"),
            Some(&t),
            &[],
            None,
        )
        .await;
    assert_eq!(r.status(), 201, "{:?}", r.text().await);
    // Range: 206 with the exact slice.
    let r = e
        .req(
            Method::GET,
            &format!("/v2/projc/app/blobs/{d}"),
            Some(&t),
            &[("Range", "bytes=10-19")],
            None,
        )
        .await;
    assert_eq!(r.status(), 206);
    assert_eq!(
        r.headers()["content-range"],
        format!("bytes 10-19/{}", data.len()).as_str()
    );
    assert_eq!(r.bytes().await.unwrap().as_ref(), &data[10..20]);
    // Mount: without pull on the source, 401 names both scopes.
    let only_copy = e.token(&["repository:projc/copy:pull,push"]).await;
    let mount = format!("/v2/projc/copy/blobs/uploads/?mount={d}&from=projc/app");
    let r = e.req(Method::POST, &mount, None, &[], None).await;
    assert_eq!(r.status(), 401);
    let chal = r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        chal.contains("repository:projc/copy:pull,push")
            && chal.contains("repository:projc/app:pull"),
        "{chal}"
    );
    let r = e
        .req(Method::POST, &mount, Some(&only_copy), &[], None)
        .await;
    assert_eq!(r.status(), 401);
    let r = e.req(Method::POST, &mount, Some(&t), &[], None).await;
    assert_eq!(r.status(), 201, "{:?}", r.text().await);
    assert_eq!(
        r.headers()["location"],
        format!("{}/v2/projc/copy/blobs/{d}", e.base).as_str()
    );
    // Referrers: an artifact whose subject is an image.
    let (layer, config, manifest) = image("r", OCI_MANIFEST);
    e.push_blob("projc/app", &t, &layer, true).await;
    e.push_blob("projc/app", &t, &config, true).await;
    e.put_manifest("projc/app", "img", &t, OCI_MANIFEST, &manifest)
        .await;
    let subject = Digest::sha256_of(&manifest).to_string();
    let empty = b"{}".to_vec();
    e.push_blob("projc/app", &t, &empty, true).await;
    let artifact = json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": "application/vnd.example.sig",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": Digest::sha256_of(&empty).to_string(), "size": 2},
        "layers": [{"mediaType": "application/vnd.oci.empty.v1+json", "digest": Digest::sha256_of(&empty).to_string(), "size": 2}],
        "subject": {"mediaType": OCI_MANIFEST, "digest": subject, "size": manifest.len()},
    }).to_string().into_bytes();
    let ad = Digest::sha256_of(&artifact).to_string();
    e.put_manifest("projc/app", &ad, &t, OCI_MANIFEST, &artifact)
        .await;
    let r = e
        .req(
            Method::GET,
            &format!("/v2/projc/app/referrers/{subject}"),
            Some(&t),
            &[],
            None,
        )
        .await;
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["manifests"][0]["digest"], ad.as_str());
    assert_eq!(
        v["manifests"][0]["artifactType"],
        "application/vnd.example.sig"
    );
    e.adapter.stop().await;
}

#[tokio::test]
async fn api_keys_and_oversized_manifest_and_metrics() {
    let e = env().await;
    let t = e
        .token_as(
            common::DEMO_SECRET_ID,
            common::DEMO_SECRET_KEY,
            &["repository:projk/app:pull,push"],
        )
        .await;
    let (layer, config, manifest) = image("k", OCI_MANIFEST);
    e.push_blob("projk/app", &t, &layer, true).await;
    e.push_blob("projk/app", &t, &config, true).await;
    e.put_manifest("projk/app", "v1", &t, OCI_MANIFEST, &manifest)
        .await;
    let big = vec![b' '; 4 * 1024 * 1024 + 1];
    let r = e
        .req(
            Method::PUT,
            "/v2/projk/app/manifests/big",
            Some(&t),
            &[("Content-Type", OCI_MANIFEST)],
            Some(big),
        )
        .await;
    assert_eq!(r.status(), 413);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["errors"][0]["code"], "MANIFEST_INVALID");
    let r = e
        .http
        .get(format!("{}/metrics", e.base))
        .send()
        .await
        .unwrap();
    let text = r.text().await.unwrap();
    assert!(
        text.contains(
            "tcr_adapter_requests_total{method=\"PUT\",route=\"manifest\",status=\"201\"} 1"
        ),
        "{text}"
    );
    assert!(text.contains("tcr_adapter_upstream_token_cache_total{result=\"hit\"}"));
    assert!(text.contains("tcr_adapter_bytes_in_total"));
    e.adapter.stop().await;
}

#[tokio::test]
async fn unreachable_upstream_is_a_502_with_the_url() {
    let emu = common::start_emulator().await;
    let mut cfg = adapter_config(&emu);
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);
    cfg.tcr.registry_url = dead_url.clone();
    let adapter = app::start(cfg, clock::system()).await.unwrap();
    let base = format!("http://{}", adapter.addr);
    // API keys are exchanged at the (live) cloud API, so a token is issued; the data plane is dead.
    let r = Client::new()
        .get(format!(
            "{base}/service/token?service=tcr-adapter&scope=repository:deadns/app:pull"
        ))
        .header(
            "Authorization",
            basic(common::DEMO_SECRET_ID, common::DEMO_SECRET_KEY),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    let t = v["token"].as_str().unwrap();
    let r = Client::new()
        .get(format!("{base}/v2/deadns/app/manifests/latest"))
        .bearer_auth(t)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["errors"][0]["code"], "UNAVAILABLE");
    let msg = v["errors"][0]["message"].as_str().unwrap();
    assert!(
        msg.contains(&dead_url) && msg.contains("could not be reached"),
        "{msg}"
    );
    adapter.stop().await;
}

/// A deterministic blob of `mib` MiB, generated chunk by chunk (never held whole in memory).
fn big_chunks(mib: usize) -> impl Iterator<Item = Vec<u8>> {
    let mut block = vec![0u8; 1 << 20];
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for b in block.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = (x >> 24) as u8;
    }
    (0..mib).map(move |i| {
        let mut c = block.clone();
        c[..8].copy_from_slice(&(i as u64).to_le_bytes());
        c
    })
}

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn rss_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// A ≥1 GiB blob pushed and pulled through the adapter running as its own process; its peak
/// RSS stays small because bodies are streamed (size: `TCR_BIG_BLOB_MIB`, default 1024).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn big_blob_streams_through_a_separate_adapter_process_in_bounded_memory() {
    let mib: usize = std::env::var("TCR_BIG_BLOB_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let max_rss_mib: u64 = std::env::var("TCR_BIG_BLOB_MAX_RSS_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    let emu = common::start_emulator().await;
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let dir = tempfile::tempdir().unwrap();
    let cfg_path = dir.path().join("adapter.toml");
    std::fs::write(
        &cfg_path,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\nworkers = 2\n[tcr]\nregistry_url = \"{}\"\napi_endpoint = \"{}\"\nregistry_id = \"{}\"\nregion = \"{}\"\nsecret_id = \"{}\"\nsecret_key = \"{}\"\n[log]\nlevel = \"warn\"\n",
            emu.handle.registry_url(),
            emu.handle.api_url(),
            emu.handle.state.cfg.registry_id,
            emu.handle.state.cfg.region,
            common::DEMO_SECRET_ID,
            common::DEMO_SECRET_KEY,
        ),
    )
    .unwrap();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_tcr-adapter"))
        .args(["serve", "--config"])
        .arg(&cfg_path)
        .env_remove("TCR_ADAPTER_CONFIG")
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("adapter binary starts");
    let pid = child.id();
    let _guard = KillOnDrop(child);
    let base = format!("http://127.0.0.1:{port}");
    let http = Client::new();
    let mut up = false;
    for _ in 0..100 {
        if let Ok(r) = http.get(format!("{base}/healthz")).send().await {
            if r.status() == 200 {
                up = true;
                break;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(up, "adapter process answers /healthz");

    // Sample RSS while the transfer runs.
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let (peak, stop) = (peak.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                peak.fetch_max(rss_kib(pid, "VmRSS:"), std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        })
    };

    let tok = emu
        .handle
        .state
        .tokens
        .issue(common::DEMO_UIN, TokenKind::LongTerm);
    let url =
        format!("{base}/service/token?service=tcr-adapter&scope=repository:big/blob:pull,push");
    let v: serde_json::Value = http
        .get(url)
        .header("Authorization", basic(&tok.username, &tok.token))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let t = v["token"].as_str().unwrap().to_string();
    let mut h = openssl::sha::Sha256::new();
    for c in big_chunks(mib) {
        h.update(&c);
    }
    let digest = Digest::from_sha256(h.finish()).to_string();
    let size = (mib as u64) << 20;

    let started = std::time::Instant::now();
    let r = http
        .post(format!("{base}/v2/big/blob/blobs/uploads/"))
        .bearer_auth(&t)
        .header("Content-Length", "0")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    let sep = if loc.contains('?') { '&' } else { '?' };
    let body = reqwest::Body::wrap_stream(futures_util::stream::iter(
        big_chunks(mib).map(Ok::<_, std::io::Error>),
    ));
    let r = http
        .put(format!("{loc}{sep}digest={digest}"))
        .bearer_auth(&t)
        .header("Content-Length", size.to_string())
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{:?}", r.text().await);
    let push_secs = started.elapsed().as_secs_f64();

    let started = std::time::Instant::now();
    let r = http
        .get(format!("{base}/v2/big/blob/blobs/{digest}"))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-length"], size.to_string().as_str());
    let mut stream = r.bytes_stream();
    let mut h = openssl::sha::Sha256::new();
    let mut got = 0u64;
    use futures_util::StreamExt;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        got += chunk.len() as u64;
        h.update(&chunk);
    }
    let pull_secs = started.elapsed().as_secs_f64();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    sampler.await.unwrap();
    assert_eq!(got, size);
    assert_eq!(Digest::from_sha256(h.finish()).to_string(), digest);
    let hwm = rss_kib(pid, "VmHWM:");
    let sampled = peak.load(std::sync::atomic::Ordering::Relaxed);
    println!(
        "big blob: {mib} MiB pushed in {push_secs:.1}s, pulled in {pull_secs:.1}s; adapter peak RSS {:.1} MiB (VmHWM), {:.1} MiB (sampled)",
        hwm as f64 / 1024.0,
        sampled as f64 / 1024.0
    );
    assert!(
        hwm / 1024 < max_rss_mib,
        "adapter VmHWM {} KiB is not below {max_rss_mib} MiB",
        hwm
    );
}
