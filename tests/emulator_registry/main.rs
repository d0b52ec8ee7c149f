//! The emulator's data plane seen by an HTTP client: token realm, uploads (monolithic, POST+PUT,
//! chunked, streamed, mount), blobs with ranges, manifests with exact bytes, referrers,
//! pagination, deletes, namespaces, persistence across a restart and crash safety.

#[path = "../common/mod.rs"]
mod common;

use crate::common::SendOk;
use base64::Engine;
use common::{start_emulator, start_emulator_with, TestEmulator, DEMO_UIN};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tcr_adapter::emulator::TokenKind;
use tcr_adapter::oci::Digest;

pub struct Client {
    base: String,
    http: reqwest::Client,
    auth: Option<String>,
}

impl Client {
    fn basic(t: &TestEmulator) -> Client {
        let tok = t.handle.state.tokens.issue(DEMO_UIN, TokenKind::Temp);
        let cred = base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", tok.username, tok.token));
        Client {
            base: t.handle.registry_url(),
            http: reqwest::Client::new(),
            auth: Some(format!("Basic {cred}")),
        }
    }
    fn anonymous(t: &TestEmulator) -> Client {
        Client {
            base: t.handle.registry_url(),
            http: reqwest::Client::new(),
            auth: None,
        }
    }
    fn req(&self, m: Method, path: &str) -> reqwest::RequestBuilder {
        let url = if path.starts_with("http") {
            path.to_string()
        } else {
            format!("{}{}", self.base, path)
        };
        let r = self.http.request(m, url);
        match &self.auth {
            Some(a) => r.header("Authorization", a),
            None => r,
        }
    }
    /// `req(m, path)` sent as it is: the response.
    async fn call(&self, m: Method, path: &str) -> reqwest::Response {
        self.req(m, path).send_ok().await
    }
    /// `req(m, path)` with a body: the response.
    async fn call_body(&self, m: Method, path: &str, body: Vec<u8>) -> reqwest::Response {
        self.req(m, path).body(body).send_ok().await
    }
    /// `<m> /v2/<repo>/blobs/<digest>`.
    async fn blob(&self, m: Method, repo: &str, d: impl std::fmt::Display) -> reqwest::Response {
        self.call(m, &format!("/v2/{repo}/blobs/{d}")).await
    }
    /// `<m> /v2/<repo>/manifests/<reference>`.
    async fn manifest(
        &self,
        m: Method,
        repo: &str,
        reference: impl std::fmt::Display,
    ) -> reqwest::Response {
        self.call(m, &format!("/v2/{repo}/manifests/{reference}"))
            .await
    }
    /// `GET /v2/<repo>/referrers/<digest><query>`.
    async fn referrers(
        &self,
        repo: &str,
        d: impl std::fmt::Display,
        query: &str,
    ) -> reqwest::Response {
        self.call(Method::GET, &format!("/v2/{repo}/referrers/{d}{query}"))
            .await
    }
    /// `GET /v2/<repo>/blobs/<digest>` with `Range: <range>`.
    async fn get_range(&self, repo: &str, d: &Digest, range: &str) -> reqwest::Response {
        self.req(Method::GET, &format!("/v2/{repo}/blobs/{d}"))
            .header("Range", range)
            .send_ok()
            .await
    }
    /// `POST /v2/<repo>/blobs/uploads/?mount=<d>` (and `&from=<from>`).
    async fn mount(&self, repo: &str, d: &Digest, from: Option<&str>) -> reqwest::Response {
        let from = from.map(|f| format!("&from={f}")).unwrap_or_default();
        self.call(
            Method::POST,
            &format!("/v2/{repo}/blobs/uploads/?mount={d}{from}"),
        )
        .await
    }
    /// A monolithic upload: `POST /v2/<repo>/blobs/uploads/?digest=<d>` with `data`.
    async fn post_blob(
        &self,
        repo: &str,
        d: impl std::fmt::Display,
        data: Vec<u8>,
    ) -> reqwest::Response {
        let path = format!("/v2/{repo}/blobs/uploads/?digest={d}");
        self.call_body(Method::POST, &path, data).await
    }
    /// `POST /v2/<repo>/blobs/uploads/`: the session's (relative) Location.
    async fn start_upload(&self, repo: &str) -> String {
        let r = self
            .call(Method::POST, &format!("/v2/{repo}/blobs/uploads/"))
            .await;
        header(&r, "Location").to_string()
    }
    /// A PATCH of `chunk` to the session at `loc` with `Content-Range: <range>`.
    async fn patch_range(&self, loc: &str, range: &str, chunk: &[u8]) -> reqwest::Response {
        self.req(Method::PATCH, loc)
            .header("Content-Range", range)
            .body(chunk.to_vec())
            .send_ok()
            .await
    }
    /// [`Client::post_blob`] of `data`, which must answer 201: its digest.
    async fn push_blob(&self, repo: &str, data: &[u8]) -> Digest {
        let d = Digest::sha256_of(data);
        let r = self.post_blob(repo, &d, data.to_vec()).await;
        assert_eq!(
            r.status(),
            StatusCode::CREATED,
            "{}",
            r.text().await.unwrap()
        );
        d
    }
    async fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        body: &[u8],
        ct: &str,
    ) -> reqwest::Response {
        self.req(Method::PUT, &format!("/v2/{repo}/manifests/{reference}"))
            .header("Content-Type", ct)
            .body(body.to_vec())
            .send_ok()
            .await
    }
    /// `PUT` of the OCI manifest `m` as `<repo>:<reference>`, which must answer 201.
    async fn put_manifest_created(&self, repo: &str, reference: &str, m: &[u8]) {
        let r = self.put_manifest(repo, reference, m, OCI_MANIFEST).await;
        assert_eq!(r.status(), StatusCode::CREATED, "PUT {repo}:{reference}");
    }
}

/// A fresh emulator with the private namespace `ns`, and a client with Basic credentials.
pub async fn emulator_with_ns() -> (TestEmulator, Client) {
    emulator_with_namespaces(&[("ns", false)]).await
}

/// A fresh emulator with the namespaces `(name, public)`, and a client with Basic credentials.
pub async fn emulator_with_namespaces(namespaces: &[(&str, bool)]) -> (TestEmulator, Client) {
    let t = common::start_emulator_with_namespaces(namespaces).await;
    let c = Client::basic(&t);
    (t, c)
}

pub fn header<'a>(r: &'a reqwest::Response, name: &str) -> &'a str {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap())
        .unwrap_or("")
}

pub async fn error_code(r: reqwest::Response) -> (StatusCode, String, String) {
    let s = r.status();
    let v: Value = r.json().await.unwrap();
    (
        s,
        v["errors"][0]["code"].as_str().unwrap_or("").to_string(),
        v["errors"][0]["message"].as_str().unwrap_or("").to_string(),
    )
}

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// Push a config and a layer, return (manifest bytes, its digest) of an OCI image over them.
pub async fn push_image(c: &Client, repo: &str, seed: &str) -> (Vec<u8>, Digest) {
    let config = json!({"architecture":"amd64","os":"linux","seed":seed}).to_string();
    let layer = format!("layer bytes of {seed}").into_bytes();
    let cd = c.push_blob(repo, config.as_bytes()).await;
    let ld = c.push_blob(repo, &layer).await;
    // Deliberately unusual formatting: the registry must keep these exact bytes.
    let m = format!(
        "{{\n  \"schemaVersion\": 2,\n  \"mediaType\": \"{OCI_MANIFEST}\",\n  \"config\": {{\"mediaType\": \"application/vnd.oci.image.config.v1+json\", \"digest\": \"{cd}\", \"size\": {}}},\n  \"layers\": [{{\"mediaType\": \"application/vnd.oci.image.layer.v1.tar\", \"digest\": \"{ld}\", \"size\": {}}}]\n}}\n",
        config.len(),
        layer.len()
    );
    let d = Digest::sha256_of(m.as_bytes());
    (m.into_bytes(), d)
}

mod content;
mod lifecycle;
mod uploads;

#[actix_rt::test]
async fn token_realm_issues_docker_tokens_for_instance_credentials() {
    let t = start_emulator().await;
    t.handle.state.namespaces.create("ns", false).unwrap();
    let anon = Client::anonymous(&t);
    let r = anon.call(Method::GET, "/v2/").await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        header(&r, "Docker-Distribution-API-Version"),
        "registry/2.0"
    );
    let realm = format!("{}/service/token", t.handle.registry_url());
    assert_eq!(
        header(&r, "WWW-Authenticate"),
        format!("Bearer realm=\"{realm}\",service=\"harbor-registry\"")
    );
    let r = anon.call(Method::GET, "/v2/ns/app/tags/list").await;
    assert_eq!(
        header(&r, "WWW-Authenticate"),
        format!("Bearer realm=\"{realm}\",service=\"harbor-registry\",scope=\"repository:ns/app:pull,push\"")
    );

    // Bad credentials on the realm: 401 UNAUTHORIZED envelope.
    let r = reqwest::Client::new()
        .get(&realm)
        .basic_auth(DEMO_UIN, Some("not-a-token"))
        .send_ok()
        .await;
    assert_eq!(error_code(r).await.1, "UNAUTHORIZED");

    let tok = t.handle.state.tokens.issue(DEMO_UIN, TokenKind::Temp);
    let r = reqwest::Client::new()
        .get(format!(
            "{realm}?service=harbor-registry&scope=repository:ns/app:pull,push%20registry:catalog:*&scope=repository:missing/x:pull"
        ))
        .basic_auth(DEMO_UIN, Some(&tok.token))
        .send_ok().await;
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["expires_in"], json!(1800));
    assert_eq!(body["token"], body["access_token"]);
    chrono::DateTime::parse_from_rfc3339(body["issued_at"].as_str().unwrap()).unwrap();
    let jwt = body["token"].as_str().unwrap().to_string();
    let parts: Vec<&str> = jwt.split('.').collect();
    let dec = |s: &str| -> Value {
        serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(s)
                .unwrap(),
        )
        .unwrap()
    };
    let (h, claims) = (dec(parts[0]), dec(parts[1]));
    assert_eq!(h["alg"], "RS256");
    assert_eq!(h["kid"], json!(t.handle.state.keys.kid));
    assert_eq!(claims["aud"], "harbor-registry");
    assert_eq!(claims["iss"], "tcr-emulator");
    assert_eq!(claims["sub"], DEMO_UIN);
    assert!(claims["jti"].is_string() && claims["nbf"].is_i64());
    assert_eq!(
        claims["access"],
        json!([
            {"type":"repository","name":"ns/app","actions":["pull","push"]},
            {"type":"registry","name":"catalog","actions":["*"]},
            {"type":"repository","name":"missing/x","actions":[]}
        ])
    );

    // The token works on /v2/ and for a push.
    let bearer = Client {
        auth: Some(format!("Bearer {jwt}")),
        ..Client::anonymous(&t)
    };
    let r = bearer.call(Method::GET, "/v2/").await;
    assert_eq!(r.status(), StatusCode::OK);
    bearer.push_blob("ns/app", b"hello").await;
    let r = bearer.call(Method::GET, "/v2/_catalog").await;
    assert_eq!(
        r.json::<Value>().await.unwrap()["repositories"],
        json!(["ns/app"])
    );
    // ... but not outside its scope, and a forged token is invalid_token.
    let r = bearer
        .blob(Method::DELETE, "ns/app", Digest::sha256_of(b"hello"))
        .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(header(&r, "WWW-Authenticate").contains("error=\"insufficient_scope\""));
    let forged = Client {
        auth: Some(format!("Bearer {}x", jwt)),
        ..Client::anonymous(&t)
    };
    let r = forged.call(Method::GET, "/v2/ns/app/tags/list").await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(header(&r, "WWW-Authenticate").contains("error=\"invalid_token\""));
    t.handle.stop().await;
}
