//! A Harbor-faithful registry client for the WAN tests (issue 24), the Rust twin of
//! `bench/harbor_client.py`: one [`Job`] is one Harbor replication job (its own authorizer, token
//! cache and keep-alive connections), per generation. Source lines followed (goharbor/harbor):
//!
//! - 1.8 / 1.10: `v1.10.6:src/common/utils/registry/auth/tokenauthorizer.go` (scopes per request,
//!   cache only for 0 or 1 scope, `latency = 10`, ping when realm or service is empty),
//!   `auth/path.go` (which paths name a repository), `auth/util.go` `getToken`,
//!   `src/common/utils/registry/repository.go` (ManifestExist Accepts, PushBlob = POST + PUT with
//!   `&digest=` appended raw; `v1.8.0` sets no ContentLength: chunked transfer encoding).
//! - 2.0 / 2.9: `v2.0.6:src/pkg/registry/auth/authorizer.go` (the first request sends an
//!   unauthenticated `GET /v2/`), `auth/bearer/{authorizer.go,scope.go,cache.go}` (every scope set
//!   cached, key = scope strings joined by `#`; `from=` adds pull on the source for blob-upload
//!   paths), `src/pkg/registry/client.go` (`buildMonolithicBlobUploadURL` re-encodes the query).
//! - 2.9 copy-by-chunk: `v2.9.5:src/controller/replication/transfer/image/transfer.go`
//!   `copyBlobByChunk` (a blob of at most one chunk goes monolithic without a HEAD) and
//!   `src/pkg/registry/client.go` `PushBlobChunk` (PATCH with `Content-Range: start-end`, the last
//!   chunk as `PUT ?digest=`).
//! - Order per image: `transfer.go` `copyImage`/`copyArtifact`: HEAD manifest, per blob (config
//!   first) HEAD then upload, PUT manifest. The "Docker Registry" adapter never mounts
//!   (`v2.9.5:src/pkg/reg/adapter/native/adapter.go` `CanBeMount` returns false).
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::Mutex;

use reqwest::{Method, Response};
use tcr_adapter::oci::Digest;

/// Which Harbor sends the requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gen {
    /// v1.8.0: 1.10's authorizer, `token` only, blob PUT without a length (chunked).
    V1_8,
    V1_10,
    V2_0,
    /// v2.9.5; `chunk` = `REPLICATION_CHUNK_SIZE` with copy-by-chunk on.
    V2_9 {
        chunk: Option<usize>,
    },
}

impl Gen {
    pub fn v1(self) -> bool {
        matches!(self, Gen::V1_8 | Gen::V1_10)
    }
}

/// `GET`/`HEAD` → pull, `POST`/`PUT`/`PATCH` → pull,push, `DELETE` → `*`.
fn actions(m: &Method) -> &'static str {
    match *m {
        Method::GET | Method::HEAD => "pull",
        Method::POST | Method::PUT | Method::PATCH => "pull,push",
        Method::DELETE => "*",
        _ => "",
    }
}

/// The repository a `/v2/` path names, and which kind of path it is (path.go / scope.go
/// regexps, for the repository names the tests use).
fn repository_of(path: &str) -> Option<(&str, &'static str)> {
    let rest = path.strip_prefix("/v2/")?;
    for (marker, kind) in [
        ("/manifests/", "manifest"),
        ("/blobs/uploads", "upload"),
        ("/blobs/", "blob"),
        ("/tags/list", "tags"),
    ] {
        if let Some(i) = rest.find(marker) {
            return Some((&rest[..i], kind));
        }
    }
    None
}

/// The scope strings Harbor asks for one request, in its order.
pub fn scopes_for(gen: Gen, method: &Method, url: &url::Url) -> Vec<String> {
    let path = url.path().trim_end_matches('/');
    let from = url
        .query_pairs()
        .find(|(k, _)| k == "from")
        .map(|(_, v)| v.to_string())
        .filter(|v| !v.is_empty());
    let mut out = Vec::new();
    let repo = repository_of(path);
    // 1.10 parseScopes: `from` on any path; 2.x: only on the blob-upload path.
    let from_counts = gen.v1() || matches!(repo, Some((_, "upload")));
    if let (Some(f), true) = (from, from_counts) {
        out.push(format!("repository:{f}:pull"));
    }
    if let Some((name, _)) = repo {
        out.push(format!("repository:{name}:{}", actions(method)));
    } else if path.ends_with("/v2/_catalog") {
        out.push("registry:catalog:*".into());
    }
    out
}

/// A token as the realm gave it, with Harbor's expiry rule.
#[derive(Clone, Debug)]
struct Token {
    token: String,
    expires_in: i64,
    issued_at: String,
}

impl Token {
    /// `issued_at + expires_in − 10 s` is before now (unparseable `issued_at`: expired).
    fn expired(&self) -> bool {
        match chrono::DateTime::parse_from_rfc3339(&self.issued_at) {
            Ok(at) => at + chrono::Duration::seconds(self.expires_in - 10) < chrono::Utc::now(),
            Err(_) => true,
        }
    }
}

/// What a job did, for assertions: every request's scope key, token fetches, pings.
#[derive(Default, Debug, Clone)]
pub struct Record {
    /// (method, path, cache key of its scopes) per registry request.
    pub asked: Vec<(String, String, String)>,
    /// The scope list of every token request sent to the realm.
    pub fetched: Vec<Vec<String>>,
    pub pings: usize,
    pub cache_hits: usize,
}

/// What [`Job::copy_image`] did to the destination.
#[derive(Default, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Copied {
    pub found: usize,
    pub uploaded: usize,
    pub chunks: usize,
}

/// One Harbor replication job against `base` with the endpoint's credentials.
pub struct Job {
    pub gen: Gen,
    base: String,
    user: String,
    pass: String,
    http: reqwest::Client,
    challenge: Mutex<Option<(String, String)>>,
    cache: Mutex<HashMap<String, Token>>,
    pub record: Mutex<Record>,
}

impl Job {
    pub fn new(gen: Gen, base: &str, user: &str, pass: &str) -> Job {
        Job {
            gen,
            base: base.trim_end_matches('/').to_string(),
            user: user.into(),
            pass: pass.into(),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            challenge: Mutex::new(None),
            cache: Mutex::new(HashMap::new()),
            record: Mutex::new(Record::default()),
        }
    }

    pub fn record(&self) -> Record {
        self.record.lock().unwrap().clone()
    }

    /// `GET scheme://host/v2/` without credentials; realm and service of the 401's bearer
    /// challenge (`challenge.ResponseChallenges` reads challenges only from a 401).
    async fn ping(&self) -> (String, String) {
        let r = self
            .http
            .get(format!("{}/v2/", self.base))
            .send()
            .await
            .unwrap();
        self.record.lock().unwrap().pings += 1;
        assert_eq!(r.status(), 401, "the ping must be challenged");
        let h = r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .to_string();
        let (scheme, params) = h.split_once(' ').unwrap();
        assert!(scheme.eq_ignore_ascii_case("bearer"), "{h}");
        let param = |k: &str| {
            params
                .split(',')
                .filter_map(|p| p.trim().split_once('='))
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.trim_matches('"').to_string())
                .unwrap_or_default()
        };
        (param("realm"), param("service"))
    }

    /// `GET realm?scope=…&service=…` with Basic credentials (Go sorts the query keys).
    async fn fetch(&self, realm: &str, service: &str, scopes: &[String]) -> Token {
        let mut u = url::Url::parse(realm).unwrap();
        {
            let mut q = u.query_pairs_mut();
            for s in scopes {
                q.append_pair("scope", s);
            }
            q.append_pair("service", service);
        }
        let r = self
            .http
            .get(u)
            .basic_auth(&self.user, Some(&self.pass))
            .header("User-Agent", "Go-http-client/1.1")
            .send()
            .await
            .unwrap();
        self.record.lock().unwrap().fetched.push(scopes.to_vec());
        assert_eq!(r.status(), 200, "token for {scopes:?}");
        let v: serde_json::Value = r.json().await.unwrap();
        let s = |k: &str| v[k].as_str().unwrap_or_default().to_string();
        let mut token = s("token");
        if token.is_empty() && self.gen != Gen::V1_8 {
            token = s("access_token");
        }
        assert!(!token.is_empty(), "empty token content");
        Token {
            token,
            expires_in: v["expires_in"].as_i64().unwrap_or(0),
            issued_at: s("issued_at"),
        }
    }

    /// The bearer token for one request, as the generation's authorizer gets it.
    async fn authorize(&self, method: &Method, url: &url::Url) -> String {
        if !self.gen.v1() && self.challenge.lock().unwrap().is_none() {
            // 2.x authorizer.initialize on the first request.
            let c = self.ping().await;
            *self.challenge.lock().unwrap() = Some(c);
        }
        let scopes = scopes_for(self.gen, method, url);
        let (cacheable, key) = if self.gen.v1() {
            (
                scopes.len() <= 1,
                scopes.first().cloned().unwrap_or_default(),
            )
        } else {
            (true, scopes.join("#"))
        };
        self.record.lock().unwrap().asked.push((
            method.to_string(),
            url.path().to_string(),
            key.clone(),
        ));
        if cacheable {
            let mut cache = self.cache.lock().unwrap();
            match cache.get(&key) {
                Some(t) if !t.expired() => {
                    self.record.lock().unwrap().cache_hits += 1;
                    return t.token.clone();
                }
                Some(_) => {
                    cache.remove(&key);
                }
                None => {}
            }
        }
        let known = self.challenge.lock().unwrap().clone();
        let (realm, service) = match known {
            Some((r, s)) if !r.is_empty() && !s.is_empty() => (r, s),
            _ => {
                // 1.10 standardTokenGenerator.generate: ping when realm or service is empty.
                let c = self.ping().await;
                *self.challenge.lock().unwrap() = Some(c.clone());
                c
            }
        };
        let t = self.fetch(&realm, &service, &scopes).await;
        if cacheable {
            self.cache.lock().unwrap().insert(key, t.clone());
        }
        t.token
    }

    /// One request through the authorizer (`path_or_url` relative to the endpoint or absolute).
    pub async fn send(
        &self,
        method: Method,
        path_or_url: &str,
        headers: &[(&str, String)],
        body: Option<reqwest::Body>,
    ) -> Response {
        let url = if path_or_url.starts_with("http") {
            path_or_url.to_string()
        } else {
            format!("{}{path_or_url}", self.base)
        };
        let url = url::Url::parse(&url).unwrap();
        let token = self.authorize(&method, &url).await;
        let ua = if self.gen.v1() {
            "harbor-replication-service"
        } else {
            "harbor-registry-client"
        };
        let mut r = self
            .http
            .request(method, url)
            .header("User-Agent", ua)
            .bearer_auth(token);
        for (k, v) in headers {
            r = r.header(*k, v);
        }
        if let Some(b) = body {
            r = r.body(b);
        }
        r.send().await.unwrap()
    }

    /// HEAD the manifest (1.x: schema1 + schema2 Accepts; 2.x: client.go `accepts`): status
    /// and `Docker-Content-Digest`.
    pub async fn head_manifest(&self, repo: &str, tag: &str) -> (u16, Option<String>) {
        let accepts: &[&str] = if self.gen.v1() {
            &[
                "application/vnd.docker.distribution.manifest.v1+json",
                "application/vnd.docker.distribution.manifest.v2+json",
            ]
        } else {
            &[
                "application/vnd.oci.image.index.v1+json",
                "application/vnd.docker.distribution.manifest.list.v2+json",
                "application/vnd.oci.image.manifest.v1+json",
                "application/vnd.docker.distribution.manifest.v2+json",
                "application/vnd.docker.distribution.manifest.v1+prettyjws",
                "application/vnd.docker.distribution.manifest.v1+json",
            ]
        };
        let h: Vec<(&str, String)> = accepts.iter().map(|a| ("Accept", a.to_string())).collect();
        let r = self
            .send(
                Method::HEAD,
                &format!("/v2/{repo}/manifests/{tag}"),
                &h,
                None,
            )
            .await;
        let d = r.headers().get("docker-content-digest");
        (
            r.status().as_u16(),
            d.map(|v| v.to_str().unwrap().to_string()),
        )
    }

    /// `HEAD /v2/<repo>/blobs/<d>` as `BlobExist` sends it: the whole answer.
    pub async fn head_blob(&self, repo: &str, d: &Digest) -> Response {
        self.send(Method::HEAD, &format!("/v2/{repo}/blobs/{d}"), &[], None)
            .await
    }

    /// `BlobExist`: HEAD; `true` on 200, `false` on 404 (anything else fails the job).
    pub async fn blob_exists(&self, repo: &str, d: &Digest) -> bool {
        let r = self.head_blob(repo, d).await;
        match r.status().as_u16() {
            200 => true,
            404 => false,
            s => panic!("HEAD blob {repo}@{d}: {s}"),
        }
    }

    /// `initiateBlobUpload`: POST with `Content-Length: 0`; the Location.
    pub async fn initiate(&self, repo: &str) -> String {
        let r = self
            .send(
                Method::POST,
                &format!("/v2/{repo}/blobs/uploads/"),
                &[("Content-Length", "0".into())],
                None,
            )
            .await;
        assert_eq!(r.status(), 202, "POST upload into {repo}");
        r.headers()["location"].to_str().unwrap().to_string()
    }

    /// The upload URL for `location`: 1.x appends `digest=` raw; 2.x parses the Location,
    /// sets `digest` (when given) and re-encodes the whole query, keys sorted.
    pub fn upload_url(&self, location: &str, digest: Option<&Digest>) -> String {
        let abs = if location.starts_with("http") {
            location.to_string()
        } else {
            format!("{}{location}", self.base)
        };
        if self.gen.v1() {
            let d = digest.expect("1.x only builds the monolithic URL");
            let sep = if abs.contains('?') { '&' } else { '?' };
            return format!("{abs}{sep}digest={d}");
        }
        let mut u = url::Url::parse(&abs).unwrap();
        let mut q: Vec<(String, String)> = u
            .query_pairs()
            .filter(|(k, _)| k != "digest")
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        if let Some(d) = digest {
            q.push(("digest".into(), d.to_string()));
        }
        q.sort_by(|a, b| a.0.cmp(&b.0));
        if q.is_empty() {
            u.set_query(None);
        } else {
            let enc: String = url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(q)
                .finish();
            u.set_query(Some(&enc));
        }
        u.to_string()
    }

    /// `PushBlob`: POST, then one monolithic PUT (1.8.0: chunked transfer encoding).
    pub async fn push_blob(&self, repo: &str, data: &[u8]) {
        let d = Digest::sha256_of(data);
        let loc = self.initiate(repo).await;
        let url = self.upload_url(&loc, Some(&d));
        let (body, headers) = if self.gen == Gen::V1_8 {
            let parts: Vec<Result<Vec<u8>, std::io::Error>> =
                data.chunks(32 << 10).map(|c| Ok(c.to_vec())).collect();
            (
                reqwest::Body::wrap_stream(futures_util::stream::iter(parts)),
                vec![],
            )
        } else {
            (
                reqwest::Body::from(data.to_vec()),
                vec![("Content-Length", data.len().to_string())],
            )
        };
        let r = self.send(Method::PUT, &url, &headers, Some(body)).await;
        assert_eq!(r.status(), 201, "PUT {repo}@{d}: {:?}", r.text().await);
    }

    /// `PushBlobChunk` over the whole blob: PATCH chunks with `Content-Range`, the last one as
    /// `PUT ?digest=`; each answer's Location is the next chunk's. How many requests carried data.
    pub async fn push_blob_chunks(&self, repo: &str, data: &[u8], chunk: usize) -> usize {
        let d = Digest::sha256_of(data);
        let size = data.len();
        let mut loc = String::new();
        // transfer.go copyChunkWithRetry starts with start = end = -1.
        let mut end: i64 = -1;
        let mut sent = 0;
        loop {
            let start = end + 1;
            end = (start + chunk as i64 - 1).min(size as i64 - 1);
            if start == 0 {
                loc = self.initiate(repo).await;
            }
            let last = end == size as i64 - 1;
            let url = self.upload_url(&loc, last.then_some(&d));
            let part = data[start as usize..=end as usize].to_vec();
            let headers = [
                ("Content-Length", (end - start + 1).to_string()),
                ("Content-Range", format!("{start}-{end}")),
            ];
            let m = if last { Method::PUT } else { Method::PATCH };
            let r = self.send(m, &url, &headers, Some(part.into())).await;
            let want = if last { 201 } else { 202 };
            assert_eq!(r.status(), want, "chunk {start}-{end} of {repo}@{d}");
            sent += 1;
            if last {
                return sent;
            }
            loc = r.headers()["location"].to_str().unwrap().to_string();
        }
    }

    /// 2.x `MountBlob` (never called by replication towards a "Docker Registry"): the status.
    pub async fn mount_blob(&self, from: &str, d: &Digest, repo: &str) -> u16 {
        let r = self
            .send(
                Method::POST,
                &format!("/v2/{repo}/blobs/uploads/?mount={d}&from={from}"),
                &[("Content-Length", "0".into())],
                None,
            )
            .await;
        r.status().as_u16()
    }

    /// `PushManifest` with the manifest's own media type.
    pub async fn push_manifest(&self, repo: &str, tag: &str, mt: &str, body: &[u8]) {
        let r = self
            .send(
                Method::PUT,
                &format!("/v2/{repo}/manifests/{tag}"),
                &[("Content-Type", mt.to_string())],
                Some(body.to_vec().into()),
            )
            .await;
        assert_eq!(
            r.status(),
            201,
            "PUT manifest {repo}:{tag}: {:?}",
            r.text().await
        );
    }

    /// One blob as the transfer copies it (`copyBlob` / 2.9 `copyBlobByChunk`).
    pub async fn copy_blob(&self, repo: &str, data: &[u8], done: &mut Copied) {
        let d = Digest::sha256_of(data);
        if let Gen::V2_9 { chunk: Some(c) } = self.gen {
            if data.len() <= c {
                // "fallback to copy by monolithic": no HEAD first.
                self.push_blob(repo, data).await;
                done.uploaded += 1;
                return;
            }
            if self.blob_exists(repo, &d).await {
                done.found += 1;
                return;
            }
            done.chunks += self.push_blob_chunks(repo, data, c).await;
            done.uploaded += 1;
            return;
        }
        if self.blob_exists(repo, &d).await {
            done.found += 1;
            return;
        }
        self.push_blob(repo, data).await;
        done.uploaded += 1;
    }

    /// One image as Harbor's transfer copies it: HEAD the manifest (skip when it is there),
    /// every blob in order (config first), then the manifest.
    pub async fn copy_image(
        &self,
        repo: &str,
        tag: &str,
        blobs: &[&[u8]],
        mt: &str,
        manifest: &[u8],
    ) -> Copied {
        let mut done = Copied::default();
        let (s, there) = self.head_manifest(repo, tag).await;
        assert!(s == 200 || s == 404, "HEAD manifest {repo}:{tag}: {s}");
        // "the same image already exists": skipped; another digest is overridden.
        if s == 200 && there.as_deref() == Some(Digest::sha256_of(manifest).as_str()) {
            return done;
        }
        for b in blobs {
            self.copy_blob(repo, b, &mut done).await;
        }
        self.push_manifest(repo, tag, mt, manifest).await;
        done
    }
}
