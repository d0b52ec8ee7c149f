//! Layer dedup with Harbor's own way of asking for tokens (issue 24): Harbor takes a token per
//! request scope — `GET`/`HEAD` ask `repository:<name>:pull` only, `POST`/`PUT`/`PATCH` ask
//! `pull,push`, `DELETE` asks `*`, a `from=` adds `repository:<from>:pull` — and caches each
//! token under its scope string (harbor-adapters.md §1.1 step 1 and §1.2; goharbor/harbor
//! v2.9.5 `src/pkg/registry/auth/bearer/scope.go` and `authorizer.go`). So every blob `HEAD` it
//! sends carries a pull-only token. TCR is the emulator, whose request journal shows what
//! reached it.

#[path = "common/mod.rs"]
mod common;
#[path = "harbor/mod.rs"]
mod harbor;

use std::collections::HashMap;

use reqwest::Method;
use serde_json::json;
use tcr_adapter::oci::Digest;
use tokio::sync::Mutex;

use harbor::{Env, OCI_MANIFEST};

/// A client that authorizes like Harbor 2.x's bearer authorizer: one token per request scope,
/// cached by the scope string (tokens here live longer than any test, so the cache's expiry
/// rule, `issued_at + expires_in`, never fires).
struct Harbor<'a> {
    e: &'a Env,
    user: String,
    pass: String,
    tokens: Mutex<HashMap<String, String>>,
}

/// What Harbor 2.9 sends per chunk (`REPLICATION_CHUNK_SIZE` is far larger; small here so that a
/// test blob has several).
const CHUNK: usize = 16 << 10;

impl<'a> Harbor<'a> {
    fn with_keys(e: &'a Env) -> Self {
        Harbor::new(e, common::DEMO_SECRET_ID, common::DEMO_SECRET_KEY)
    }

    fn new(e: &'a Env, user: &str, pass: &str) -> Self {
        Harbor {
            e,
            user: user.to_string(),
            pass: pass.to_string(),
            tokens: Mutex::new(HashMap::new()),
        }
    }

    /// The scope Harbor parses from a request (`auth/bearer/scope.go`): by method, on the
    /// repository in the path.
    fn scope(method: &Method, repo: &str) -> String {
        let actions = match *method {
            Method::GET | Method::HEAD => "pull",
            Method::DELETE => "*",
            _ => "pull,push",
        };
        format!("repository:{repo}:{actions}")
    }

    async fn token(&self, method: &Method, repo: &str) -> String {
        let scope = Self::scope(method, repo);
        let mut tokens = self.tokens.lock().await;
        if let Some(t) = tokens.get(&scope) {
            return t.clone();
        }
        let t = self.e.token_as(&self.user, &self.pass, &[&scope]).await;
        tokens.insert(scope, t.clone());
        t
    }

    async fn send(
        &self,
        method: Method,
        repo: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> reqwest::Response {
        let t = self.token(&method, repo).await;
        self.e.req(method, url, Some(&t), headers, body).await
    }

    /// `HEAD` of a blob, pull-scoped: its status.
    async fn head_blob(&self, repo: &str, d: &Digest) -> u16 {
        let url = format!("/v2/{repo}/blobs/{d}");
        self.send(Method::HEAD, repo, &url, &[], None)
            .await
            .status()
            .as_u16()
    }

    /// `POST …/blobs/uploads/`: the session's `Location`.
    async fn start(&self, repo: &str) -> String {
        let url = format!("/v2/{repo}/blobs/uploads/");
        let r = self
            .send(Method::POST, repo, &url, &[("Content-Length", "0")], None)
            .await;
        assert_eq!(r.status(), 202, "POST into {repo}");
        common::header(&r, "location")
    }

    /// `<location>` with `digest=` set (Harbor 2.x re-encodes the query: `sha256%3A…`).
    fn with_digest(location: &str, d: &Digest) -> String {
        let sep = if location.contains('?') { '&' } else { '?' };
        format!("{location}{sep}digest={}", d.as_str().replace(':', "%3A"))
    }

    /// Harbor 2.x's monolithic upload: `POST`, then one `PUT ?digest=` with the whole blob.
    async fn upload(&self, repo: &str, data: &[u8]) {
        let d = Digest::sha256_of(data);
        let loc = self.start(repo).await;
        let r = self
            .send(
                Method::PUT,
                repo,
                &Self::with_digest(&loc, &d),
                &[],
                Some(data.to_vec()),
            )
            .await;
        assert_eq!(r.status(), 201, "PUT into {repo}");
        assert_eq!(r.headers()["docker-content-digest"], d.as_str());
    }

    /// Harbor 2.9's copy by chunk (`PushBlobChunk`, v2.9.5 `src/pkg/registry/client.go`): `POST`,
    /// `PATCH` for every chunk but the last with `Content-Range: <start>-<end>`, the last chunk
    /// in the final `PUT ?digest=` with its range; each answer's `Location` is the next URL.
    async fn upload_chunked(&self, repo: &str, data: &[u8]) {
        let d = Digest::sha256_of(data);
        let mut loc = self.start(repo).await;
        let chunks: Vec<&[u8]> = data.chunks(CHUNK).collect();
        let mut start = 0;
        for (i, c) in chunks.iter().enumerate() {
            let end = start + c.len() - 1;
            let range = format!("{start}-{end}");
            let len = c.len().to_string();
            let headers = [("Content-Range", range.as_str()), ("Content-Length", &len)];
            let last = i + 1 == chunks.len();
            let (method, url) = match last {
                true => (Method::PUT, Self::with_digest(&loc, &d)),
                false => (Method::PATCH, loc.clone()),
            };
            let r = self
                .send(method, repo, &url, &headers, Some(c.to_vec()))
                .await;
            assert_eq!(
                r.status(),
                if last { 201 } else { 202 },
                "chunk {i} into {repo}"
            );
            if !last {
                loc = common::header(&r, "location");
            }
            start = end + 1;
        }
    }

    /// A blob as Harbor's transfer copies it: `HEAD` (pull-scoped), and only when absent the
    /// upload. Whether it uploaded.
    async fn copy_blob(&self, repo: &str, data: &[u8], chunked: bool) -> bool {
        let d = Digest::sha256_of(data);
        match self.head_blob(repo, &d).await {
            200 => return false,
            404 => {}
            s => panic!("HEAD {repo} {d}: {s}"),
        }
        match chunked {
            true => self.upload_chunked(repo, data).await,
            false => self.upload(repo, data).await,
        }
        true
    }

    /// An image of `layers` and a config of its own as Harbor copies it: manifest `HEAD`,
    /// config and layers, then the manifest. How many blobs it uploaded.
    async fn copy_image(&self, repo: &str, layers: &[&[u8]], chunked: bool) -> usize {
        let url = format!("/v2/{repo}/manifests/v1");
        let accept = [("Accept", OCI_MANIFEST)];
        let r = self.send(Method::HEAD, repo, &url, &accept, None).await;
        assert_eq!(r.status(), 404, "{repo} is new");
        let config = json!({"architecture": "amd64", "os": "linux", "repo": repo})
            .to_string()
            .into_bytes();
        let mut uploaded = usize::from(self.copy_blob(repo, &config, chunked).await);
        for l in layers {
            uploaded += usize::from(self.copy_blob(repo, l, chunked).await);
        }
        let desc = |b: &[u8], mt: &str| json!({"mediaType": mt, "digest": Digest::sha256_of(b).to_string(), "size": b.len()});
        let manifest = json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": desc(&config, "application/vnd.oci.image.config.v1+json"),
            "layers": layers.iter().map(|l| desc(l, "application/vnd.oci.image.layer.v1.tar")).collect::<Vec<_>>(),
        })
        .to_string();
        let r = self
            .send(
                Method::PUT,
                repo,
                &url,
                &[("Content-Type", OCI_MANIFEST)],
                Some(manifest.into_bytes()),
            )
            .await;
        assert_eq!(r.status(), 201, "manifest of {repo}");
        uploaded
    }
}

/// `len` bytes derived from `seed`.
fn layer(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ seed)
        .collect()
}

/// Bytes of `digest` that reached TCR: every upload request that names it (monolithic `PUT`,
/// final chunk) or belongs to a session that ended with it counts its body; `PATCH`es are
/// counted by the session they fed.
fn requests_to_tcr(e: &Env, method: &str, needle: &str) -> usize {
    common::requests_to_tcr(&e.emu, method, needle)
}

/// Upload requests that reached TCR for `digest` (monolithic `PUT`, or the final chunk's).
fn uploads_of(e: &Env, digest: &Digest) -> usize {
    let encoded = digest.as_str().replace(':', "%3A");
    requests_to_tcr(e, "PUT", &format!("digest={encoded}"))
        + requests_to_tcr(e, "PUT", &format!("digest={}", digest.as_str()))
}

/// The value of the first metric line starting with `line_start` (0 when absent).
fn metric(text: &str, line_start: &str) -> u64 {
    text.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .unwrap_or(0.0) as u64
}

const MOUNTED: &str = "tcr_adapter_dedup_mounts_total{result=\"mounted\"}";

/// Mount requests (`POST …?mount=`) that reached TCR.
fn mounts_sent(e: &Env) -> usize {
    requests_to_tcr(e, "POST", "mount=")
}

/// Whether TCR's `repo` has `digest` (asked of the emulator directly).
async fn tcr_has(e: &Env, repo: &str, d: &Digest) -> bool {
    let t = e.tcr_token(&format!("repository:{repo}:pull")).await;
    let r = e
        .http
        .head(format!("{}/v2/{repo}/blobs/{d}", e.emu.registry_url()))
        .bearer_auth(t)
        .send()
        .await
        .unwrap();
    r.status() == 200
}

/// Four images on two shared base layers, one namespace, one credential, Harbor's pull-scoped
/// `HEAD`s: from the second image on, the base layers' `HEAD`s are answered by a mount (the
/// credential has pushed into this namespace through the adapter), so the client uploads none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dedup_engages_for_pull_scoped_heads() {
    let e = Env::default().await;
    let h = Harbor::with_keys(&e);
    let bases = [layer(1, 96 << 10), layer(2, 64 << 10)];
    let mut uploaded = 0;
    for i in 0..4u8 {
        let own = layer(10 + i, 4096);
        let repo = format!("hb/app{i}");
        uploaded += h
            .copy_image(&repo, &[&bases[0], &bases[1], &own], false)
            .await;
    }
    // 4 configs + 4 own layers + each base layer once.
    assert_eq!(uploaded, 10, "the client uploaded base layers again");
    for b in &bases {
        assert_eq!(uploads_of(&e, &Digest::sha256_of(b)), 1);
    }
    let m = e.adapter_metrics().await;
    assert_eq!(metric(&m, MOUNTED), 6, "{m}");
    for i in 1..4 {
        let repo = format!("hb/app{i}");
        for b in &bases {
            assert!(tcr_has(&e, &repo, &Digest::sha256_of(b)).await, "{repo}");
        }
    }
}

/// Each copy the first in a namespace of its own: a credential's first `HEAD` there cannot
/// mount (it has not pushed there yet), so the client uploads; the upload's `PUT`
/// (push-scoped) mounts the layer from where it is and its body is dropped here: the base layer
/// crosses once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_monolithic_upload_of_a_known_layer_is_mounted_at_its_put() {
    let e = Env::default().await;
    let h = Harbor::with_keys(&e);
    let base = layer(3, 128 << 10);
    let bd = Digest::sha256_of(&base);
    for i in 0..4u8 {
        let repo = format!("mono{i}/app");
        assert!(
            h.copy_blob(&repo, &base, false).await,
            "{repo}: HEAD said absent"
        );
        h.copy_image(&repo, &[&base, &layer(20 + i, 2048)], false)
            .await;
    }
    assert_eq!(
        uploads_of(&e, &bd),
        1,
        "the base layer crossed more than once"
    );
    let m = e.adapter_metrics().await;
    assert_eq!(metric(&m, MOUNTED), 3, "{m}");
    assert!(metric(&m, "tcr_adapter_dedup_bytes_saved_total") >= 3 * base.len() as u64);
    for i in 0..4 {
        assert!(tcr_has(&e, &format!("mono{i}/app"), &bd).await);
    }
    // No upload session was left open in TCR by a mounted upload.
    let leftovers = std::fs::read_dir(e.emu.state.cfg.data_dir.join("registry/uploads"))
        .map_or(0, |d| d.count());
    assert_eq!(leftovers, 0);
}

/// Harbor 2.9's copy by chunk of a known layer, with the defaults: the second repository's
/// pull-scoped `HEAD` mounts it (the credential pushed into this namespace), so the client
/// sends no chunk of it at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_upload_of_a_known_layer_crosses_once() {
    let e = Env::default().await;
    let h = Harbor::with_keys(&e);
    let base = layer(4, 100 << 10);
    let bd = Digest::sha256_of(&base);
    h.copy_image("chunk/one", &[&base], true).await;
    let patches = requests_to_tcr(&e, "PATCH", "/v2/chunk/");
    assert!(patches >= 6, "the first copy went by chunks: {patches}");
    let uploaded = h.copy_image("chunk/two", &[&base], true).await;
    assert_eq!(uploaded, 1, "only chunk/two's config went up");
    assert_eq!(uploads_of(&e, &bd), 1);
    assert_eq!(
        requests_to_tcr(&e, "PATCH", "/v2/chunk/two/"),
        0,
        "a chunk of the known layer was sent again"
    );
    assert!(tcr_has(&e, "chunk/two", &bd).await);
}

/// The same with `wan.pipeline` and a namespace the credential has not pushed into: the chunks
/// are held in the spool, and the final `PUT` names the digest; the job mounts the known layer
/// instead of sending the spooled bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipelined_chunked_upload_of_a_known_layer_is_mounted_not_sent() {
    let e = Env::start(|_| {}, |c| c.wan.pipeline = true).await;
    let h = Harbor::with_keys(&e);
    let base = layer(5, 100 << 10);
    let bd = Digest::sha256_of(&base);
    h.copy_image("pipe-a/app", &[&base], true).await;
    // The first request of this credential into each namespace: no HEAD can mount there yet.
    assert!(h.copy_blob("pipe-b/app", &base, true).await);
    assert!(h.copy_blob("pipe-c/app", &base, false).await);
    h.copy_image("pipe-b/app", &[&base], true).await;
    h.copy_image("pipe-c/app", &[&base], false).await;
    assert_eq!(
        uploads_of(&e, &bd),
        1,
        "the base layer crossed more than once"
    );
    assert_eq!(
        requests_to_tcr(&e, "PATCH", "/v2/"),
        0,
        "the pipeline sends whole blobs"
    );
    let m = e.adapter_metrics().await;
    assert_eq!(metric(&m, MOUNTED), 2, "{m}");
    for ns in ["pipe-b", "pipe-c"] {
        assert!(tcr_has(&e, &format!("{ns}/app"), &bd).await, "{ns}");
    }
}

/// A credential that never pushed through the adapter asks, pull-scoped, about a blob another
/// repository has: relayed as it is (404), no mount is sent, nothing lands in TCR.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_credential_that_never_pushed_causes_no_write() {
    let e = Env::default().await;
    let base = layer(6, 64 << 10);
    let bd = Digest::sha256_of(&base);
    Harbor::with_keys(&e)
        .copy_image("shared/src", &[&base], false)
        .await;
    let before = mounts_sent(&e);
    // Another credential (the account's instance token), reading only.
    let reader = Harbor::new(&e, &e.user, &e.pass);
    assert_eq!(reader.head_blob("shared/other", &bd).await, 404);
    assert_eq!(mounts_sent(&e), before, "a mount was sent for a reader");
    assert!(!tcr_has(&e, "shared/other", &bd).await);
    assert_eq!(metric(&e.adapter_metrics().await, MOUNTED), 0);
}

/// An anonymous caller (its tokens grant pull only, in public namespaces) never makes the
/// adapter write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_who_may_only_read_causes_no_write() {
    let e = Env::start(|_| {}, |c| c.namespaces.public = true).await;
    let base = layer(7, 64 << 10);
    let bd = Digest::sha256_of(&base);
    let h = Harbor::with_keys(&e);
    h.copy_image("pub/src", &[&base], false).await;
    h.copy_image("pub/dst", &[&layer(8, 100)], false).await; // the repository exists
    let before = mounts_sent(&e);
    let anon = e
        .http
        .get(format!(
            "{}/service/token?service=tcr-adapter&scope=repository:pub/dst:pull",
            e.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(anon.status(), 200);
    let v: serde_json::Value = anon.json().await.unwrap();
    let t = v["token"].as_str().unwrap();
    let r = e.head(&format!("/v2/pub/dst/blobs/{bd}"), t).await;
    assert_eq!(r.status(), 404);
    assert_eq!(
        mounts_sent(&e),
        before,
        "a mount was sent for an anonymous reader"
    );
    assert!(!tcr_has(&e, "pub/dst", &bd).await);
}

/// A namespace `namespaces.deny` refuses: the credential that pushed elsewhere gets no access
/// there, so its `HEAD` is refused and nothing is mounted into it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_namespace_gets_no_write() {
    let e = Env::start(|_| {}, |c| c.namespaces.deny = vec!["secret-*".into()]).await;
    let base = layer(9, 64 << 10);
    let bd = Digest::sha256_of(&base);
    let h = Harbor::with_keys(&e);
    h.copy_image("open/app", &[&base], false).await;
    let before = mounts_sent(&e);
    let status = h.head_blob("secret-x/app", &bd).await;
    assert!(matches!(status, 401 | 403), "{status}");
    assert_eq!(mounts_sent(&e), before);
    assert!(e.namespaces().iter().all(|n| !n.starts_with("secret")));
}
