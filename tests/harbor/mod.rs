//! What Harbor 1.8, 1.10 and 2.0 send to a "Docker Registry" endpoint when they replicate one
//! image (harbor-adapters.md §1.2–1.4), as reusable steps against an adapter in front of an
//! emulator, plus metric readers for both.
#![allow(dead_code, unused_imports)]

use crate::common::SendOk;
use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Client, Method, StatusCode};
use serde_json::json;
use tcr_adapter::app::{self, AdapterHandle};
use tcr_adapter::clock;
use tcr_adapter::config::{Config, EmulatorConfig};
use tcr_adapter::emulator::EmulatorHandle;
use tcr_adapter::oci::Digest;

use crate::common;
pub use crate::common::{adapter_config, basic, sum_metric};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// An adapter in front of a fresh emulator (no namespace in it).
pub struct Env {
    pub emu: EmulatorHandle,
    pub _dir: tempfile::TempDir,
    pub adapter: AdapterHandle,
    pub http: Client,
    pub base: String,
    /// A long-term instance token of the demo account (UIN, token).
    pub user: String,
    pub pass: String,
}

/// `chal` (a `WWW-Authenticate`) sends clients to the token endpoint under `base`.
pub fn assert_realm_under(chal: &str, base: &str, context: &str) {
    assert!(
        chal.starts_with(&format!("Bearer realm=\"{base}/service/token\"")),
        "{context}: {chal}"
    );
}

pub fn urlencode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

impl Env {
    /// Emulator configured by `emu_cfg`, adapter by `cfg` (starting from [`adapter_config`]).
    pub async fn start(
        emu_cfg: impl FnOnce(&mut EmulatorConfig),
        cfg: impl FnOnce(&mut Config),
    ) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let mut ec = common::emulator_config(dir.path());
        emu_cfg(&mut ec);
        let emu = common::start_emulator_with(ec).await;
        let mut c = adapter_config(&emu);
        cfg(&mut c);
        let adapter = app::start(c, clock::system())
            .await
            .expect("adapter starts");
        let (user, pass) = common::instance_credentials(&emu);
        Env {
            base: format!("http://{}", adapter.addr),
            adapter,
            emu,
            _dir: dir,
            http: Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            user,
            pass,
        }
    }

    /// The production path: the emulator in self-signed TLS mode, the adapter on HTTPS (serving
    /// the emulator's certificate, which covers 127.0.0.1) trusting the emulator's CA with
    /// `tcr.ca_file`, and a client that trusts that CA only.
    pub async fn start_tls() -> Env {
        let mut tls_dir = None;
        let mut e = Env::start(
            |ec| {
                ec.tls.mode = tcr_adapter::config::EmulatorTlsMode::SelfSigned;
                tls_dir = Some(ec.data_dir.join("tls"));
            },
            |_| {},
        )
        .await;
        // Restart the adapter over HTTPS now that the emulator wrote its files. Its port is in
        // its public URL, so it is picked first; another listener may take it in between, so a
        // taken port is picked again (a few times).
        e.adapter.stop().await;
        let tls = tls_dir.expect("emulator config seen");
        let mut attempts = 0;
        let port = loop {
            let port = common::free_port();
            let mut c = adapter_config(&e.emu);
            common::serve_https_with_emulator_certs(&mut c, port, &tls);
            assert!(c.tcr.registry_url.starts_with("https://"));
            match app::start(c, clock::system()).await {
                Ok(adapter) => {
                    e.adapter = adapter;
                    break port;
                }
                Err(err) if err.kind() == std::io::ErrorKind::AddrInUse && attempts < 5 => {
                    attempts += 1;
                }
                Err(err) => panic!("adapter starts: {err:?}"),
            }
        };
        let ca = std::fs::read(tls.join("ca.pem")).unwrap();
        e.base = format!("https://127.0.0.1:{port}");
        e.http = Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
            .build()
            .unwrap();
        e
    }

    /// An adapter that knows only the registry URL: instance id and region are discovered.
    pub async fn undiscovered() -> Env {
        Env::start(
            |_| {},
            |c| {
                c.tcr.registry_id.clear();
                c.tcr.region.clear();
            },
        )
        .await
    }

    /// An adapter without provisioner keys (`tcr.secret_id` / `tcr.secret_key` empty).
    pub async fn without_provisioner_keys() -> Env {
        Env::start(
            |_| {},
            |c| {
                c.tcr.secret_id.clear();
                c.tcr.secret_key = Default::default();
            },
        )
        .await
    }

    pub async fn default() -> Env {
        Env::start(|_| {}, |_| {}).await
    }

    /// `GET /service/token` as Harbor sends it; the token, or the status and body of a refusal.
    pub async fn try_token(
        &self,
        user: &str,
        pass: &str,
        scopes: &[&str],
    ) -> Result<String, (StatusCode, String)> {
        let mut url = format!("{}/service/token?service=tcr-adapter", self.base);
        for s in scopes {
            url.push_str(&format!("&scope={}", urlencode(s)));
        }
        let resp = self
            .http
            .get(&url)
            .header("Authorization", basic(user, pass))
            .header("User-Agent", "Go-http-client/1.1")
            .send_ok()
            .await;
        let status = resp.status();
        let text = resp.text().await.unwrap();
        if status != 200 {
            return Err((status, text));
        }
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert!(v["expires_in"].as_i64().unwrap() >= 60, "{v}");
        Ok(v["token"].as_str().unwrap().to_string())
    }

    pub async fn token_as(&self, user: &str, pass: &str, scopes: &[&str]) -> String {
        match self.try_token(user, pass, scopes).await {
            Ok(t) => t,
            Err((s, b)) => panic!("token for {scopes:?}: {s} {b}"),
        }
    }

    /// A token with the long-term instance token of the demo account.
    pub async fn token(&self, scopes: &[&str]) -> String {
        self.token_as(&self.user, &self.pass, scopes).await
    }

    /// A token with the demo API keys.
    pub async fn keys_token(&self, scopes: &[&str]) -> String {
        self.token_as(common::DEMO_SECRET_ID, common::DEMO_SECRET_KEY, scopes)
            .await
    }

    pub async fn req(
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
        if let Some(b) = body {
            r = r.body(b);
        }
        r.headers(h).send_ok().await
    }

    /// `GET <base><path>` with no credentials and no extra headers (probes, metrics).
    pub async fn get_anon(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.base))
            .send_ok()
            .await
    }

    /// A bodiless request with a token and extra headers.
    pub async fn send_with(
        &self,
        method: Method,
        path: &str,
        token: &str,
        headers: &[(&str, &str)],
    ) -> reqwest::Response {
        self.req(method, path, Some(token), headers, None).await
    }

    /// `GET <path>` with `Range: <range>`.
    pub async fn get_range(&self, path: &str, token: &str, range: &str) -> reqwest::Response {
        self.send_with(Method::GET, path, token, &[("Range", range)])
            .await
    }

    /// `<method> /v2/<repo>/manifests/<reference>` with a token and extra headers (`Accept`).
    pub async fn manifest(
        &self,
        method: Method,
        (repo, reference): (&str, &str),
        token: &str,
        headers: &[(&str, &str)],
    ) -> reqwest::Response {
        let path = format!("/v2/{repo}/manifests/{reference}");
        self.send_with(method, &path, token, headers).await
    }

    /// A token from TCR's own realm (the emulator's data plane) for `scope`, with the instance
    /// credentials: for reading or changing TCR behind the adapter's back.
    pub async fn tcr_token(&self, scope: &str) -> String {
        let up = self.emu.registry_url();
        let tok: serde_json::Value = reqwest::Client::new()
            .get(format!("{up}/service/token"))
            .query(&[("service", "harbor-registry"), ("scope", scope)])
            .header("Authorization", basic(&self.user, &self.pass))
            .send_ok()
            .await
            .json()
            .await
            .unwrap();
        tok["token"].as_str().unwrap().to_string()
    }

    /// A token ([`Env::token`]) to pull and push each of `repos`.
    pub async fn token_to_push(&self, repos: &[&str]) -> String {
        let scopes: Vec<String> = repos
            .iter()
            .map(|r| format!("repository:{r}:pull,push"))
            .collect();
        self.token(&scopes.iter().map(String::as_str).collect::<Vec<_>>())
            .await
    }

    /// A token for `repository:<repo>:pull,push` as `user:pass`.
    pub async fn push_token(&self, repo: &str, user: &str, pass: &str) -> String {
        self.token_as(user, pass, &[&format!("repository:{repo}:pull,push")])
            .await
    }

    pub async fn get(&self, path: &str, token: &str) -> reqwest::Response {
        self.req(Method::GET, path, Some(token), &[], None).await
    }

    pub async fn head(&self, path: &str, token: &str) -> reqwest::Response {
        self.req(Method::HEAD, path, Some(token), &[], None).await
    }

    pub async fn delete(&self, path: &str, token: &str) -> reqwest::Response {
        self.req(Method::DELETE, path, Some(token), &[], None).await
    }

    /// `POST …/blobs/uploads/` (Harbor: empty body, `Content-Length: 0`): the response.
    pub async fn start_upload(&self, repo: &str, token: &str) -> reqwest::Response {
        self.req(
            Method::POST,
            &format!("/v2/{repo}/blobs/uploads/"),
            Some(token),
            &[("Content-Length", "0")],
            None,
        )
        .await
    }

    /// POST + monolithic PUT of one blob; `chunked` = no length (Harbor 1.8.0–1.8.2),
    /// `encoded` = `digest=sha256%3A…` (Harbor 2.x).
    pub async fn push_blob(
        &self,
        repo: &str,
        token: &str,
        data: &[u8],
        chunked: bool,
        encoded: bool,
    ) {
        let d = Digest::sha256_of(data).to_string();
        let r = self.start_upload(repo, token).await;
        assert_eq!(r.status(), 202, "POST into {repo}: {:?}", r.text().await);
        let loc = crate::common::header(&r, "location");
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
        let url = format!("{loc}{sep}digest={dq}");
        let mut put = self
            .http
            .put(url)
            .header("Authorization", format!("Bearer {token}"));
        put = if chunked {
            let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
                data.chunks(1000).map(|c| Ok(c.to_vec())).collect();
            put.body(reqwest::Body::wrap_stream(futures_util::stream::iter(
                chunks,
            )))
        } else {
            put.body(data.to_vec())
        };
        let r = put.send_ok().await;
        assert_eq!(r.status(), 201, "{:?}", r.text().await);
        assert_eq!(r.headers()["docker-content-digest"], d.as_str());
    }

    pub async fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        token: &str,
        mt: &str,
        body: &[u8],
    ) {
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

    /// HEAD the manifest as Harbor does before pushing; the status.
    pub async fn head_manifest(&self, repo: &str, reference: &str, token: &str) -> StatusCode {
        self.req(
            Method::HEAD,
            &format!("/v2/{repo}/manifests/{reference}"),
            Some(token),
            &[("Accept", DOCKER_MANIFEST), ("Accept", OCI_MANIFEST)],
            None,
        )
        .await
        .status()
    }

    /// Layer and config blobs (raw `digest=`; `chunked` as in [`Self::push_blob`]), then the
    /// schema2 manifest as `v1`.
    async fn push_image(
        &self,
        repo: &str,
        t: &str,
        [layer, config, manifest]: [&[u8]; 3],
        chunked: bool,
    ) {
        self.push_blob(repo, t, layer, chunked, false).await;
        self.push_blob(repo, t, config, chunked, false).await;
        self.put_manifest(repo, "v1", t, DOCKER_MANIFEST, manifest)
            .await;
    }

    /// Harbor 1.8.0: HEAD manifest and blobs (absent), chunked blob PUTs, schema2 manifest.
    pub async fn replay_1_8(&self, repo: &str, user: &str, pass: &str) {
        let t = self.push_token(repo, user, pass).await;
        let (layer, config, manifest) = image(repo, DOCKER_MANIFEST);
        assert_eq!(self.head_manifest(repo, "v1", &t).await, 404);
        let ld = Digest::sha256_of(&layer);
        let r = self.head(&format!("/v2/{repo}/blobs/{ld}"), &t).await;
        assert_eq!(r.status(), 404);
        self.push_image(repo, &t, [&layer, &config, &manifest], true)
            .await;
        assert_eq!(self.head_manifest(repo, "v1", &t).await, 200);
    }

    /// Harbor 1.10: like 1.8 with `Content-Length` and a raw `digest=`.
    pub async fn replay_1_10(&self, repo: &str, user: &str, pass: &str) {
        let t = self.push_token(repo, user, pass).await;
        let (layer, config, manifest) = image(repo, DOCKER_MANIFEST);
        assert_eq!(self.head_manifest(repo, "v1", &t).await, 404);
        self.push_image(repo, &t, [&layer, &config, &manifest], false)
            .await;
        assert_eq!(self.head_manifest(repo, "v1", &t).await, 200);
    }

    /// Harbor 2.0: an OCI index, children by digest then the index by tag, encoded digests.
    pub async fn replay_2_0(&self, repo: &str, user: &str, pass: &str) {
        let t = self.push_token(repo, user, pass).await;
        assert_eq!(self.head_manifest(repo, "v1", &t).await, 404);
        let mut children = Vec::new();
        for arch in ["amd64", "arm64"] {
            let (layer, config, manifest) = image(&format!("{repo}-{arch}"), OCI_MANIFEST);
            self.push_blob(repo, &t, &layer, false, true).await;
            self.push_blob(repo, &t, &config, false, true).await;
            let d = Digest::sha256_of(&manifest).to_string();
            self.put_manifest(repo, &d, &t, OCI_MANIFEST, &manifest)
                .await;
            children.push(
                json!({"mediaType": OCI_MANIFEST, "digest": d, "size": manifest.len(),
                "platform": {"architecture": arch, "os": "linux"}}),
            );
        }
        let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": children})
            .to_string()
            .into_bytes();
        self.put_manifest(repo, "v1", &t, OCI_INDEX, &index).await;
        assert_eq!(self.head_manifest(repo, "v1", &t).await, 200);
    }

    /// The adapter's `/metrics` text.
    pub async fn adapter_metrics(&self) -> String {
        self.get_anon("/metrics").await.text().await.unwrap()
    }

    /// Namespaces in the emulator, sorted.
    pub fn namespaces(&self) -> Vec<String> {
        let mut v = common::namespace_names(&self.emu);
        v.sort();
        v
    }

    /// `tcr_emulator_api_calls_total` summed over the series carrying all `labels`.
    pub async fn api_calls(&self, labels: &[&str]) -> u64 {
        common::api_calls(&self.emu, labels).await
    }

    pub async fn creates_ok(&self) -> u64 {
        self.api_calls(&[r#"action="CreateNamespace""#, r#"result="ok""#])
            .await
    }
}

/// (layer, config, manifest) of a small image unique to `seed`.
pub fn image(seed: &str, mt: &str) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
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
