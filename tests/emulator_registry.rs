//! The emulator's data plane seen by an HTTP client: token realm, uploads (monolithic, POST+PUT,
//! chunked, streamed, mount), blobs with ranges, manifests with exact bytes, referrers,
//! pagination, deletes, namespaces, persistence across a restart and crash safety.

mod common;

use base64::Engine;
use common::{start_emulator, start_emulator_with, TestEmulator, DEMO_UIN};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tcr_adapter::emulator::TokenKind;
use tcr_adapter::oci::Digest;

struct Client {
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
    async fn push_blob(&self, repo: &str, data: &[u8]) -> Digest {
        let d = Digest::sha256_of(data);
        let r = self
            .req(
                Method::POST,
                &format!("/v2/{repo}/blobs/uploads/?digest={d}"),
            )
            .body(data.to_vec())
            .send()
            .await
            .unwrap();
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
            .send()
            .await
            .unwrap()
    }
}

fn header<'a>(r: &'a reqwest::Response, name: &str) -> &'a str {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap())
        .unwrap_or("")
}

async fn error_code(r: reqwest::Response) -> (StatusCode, String, String) {
    let s = r.status();
    let v: Value = r.json().await.unwrap();
    (
        s,
        v["errors"][0]["code"].as_str().unwrap_or("").to_string(),
        v["errors"][0]["message"].as_str().unwrap_or("").to_string(),
    )
}

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// Push a config and a layer, return (manifest bytes, its digest) of an OCI image over them.
async fn push_image(c: &Client, repo: &str, seed: &str) -> (Vec<u8>, Digest) {
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

#[actix_rt::test]
async fn token_realm_issues_docker_tokens_for_instance_credentials() {
    let t = start_emulator().await;
    t.handle.state.namespaces.create("ns", false).unwrap();
    let anon = Client::anonymous(&t);
    let r = anon.req(Method::GET, "/v2/").send().await.unwrap();
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
    let r = anon
        .req(Method::GET, "/v2/ns/app/tags/list")
        .send()
        .await
        .unwrap();
    assert_eq!(
        header(&r, "WWW-Authenticate"),
        format!("Bearer realm=\"{realm}\",service=\"harbor-registry\",scope=\"repository:ns/app:pull,push\"")
    );

    // Bad credentials on the realm: 401 UNAUTHORIZED envelope.
    let r = reqwest::Client::new()
        .get(&realm)
        .basic_auth(DEMO_UIN, Some("not-a-token"))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await.1, "UNAUTHORIZED");

    let tok = t.handle.state.tokens.issue(DEMO_UIN, TokenKind::Temp);
    let r = reqwest::Client::new()
        .get(format!(
            "{realm}?service=harbor-registry&scope=repository:ns/app:pull,push%20registry:catalog:*&scope=repository:missing/x:pull"
        ))
        .basic_auth(DEMO_UIN, Some(&tok.token))
        .send()
        .await
        .unwrap();
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
    let r = bearer.req(Method::GET, "/v2/").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    bearer.push_blob("ns/app", b"hello").await;
    let r = bearer
        .req(Method::GET, "/v2/_catalog")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.json::<Value>().await.unwrap()["repositories"],
        json!(["ns/app"])
    );
    // ... but not outside its scope, and a forged token is invalid_token.
    let r = bearer
        .req(
            Method::DELETE,
            &format!("/v2/ns/app/blobs/{}", Digest::sha256_of(b"hello")),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(header(&r, "WWW-Authenticate").contains("error=\"insufficient_scope\""));
    let forged = Client {
        auth: Some(format!("Bearer {}x", jwt)),
        ..Client::anonymous(&t)
    };
    let r = forged
        .req(Method::GET, "/v2/ns/app/tags/list")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(header(&r, "WWW-Authenticate").contains("error=\"invalid_token\""));
    t.handle.stop().await;
}

#[actix_rt::test]
async fn monolithic_and_post_put_uploads_round_trip() {
    let t = start_emulator().await;
    t.handle.state.namespaces.create("ns", false).unwrap();
    let c = Client::basic(&t);
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let d = Digest::sha256_of(&data);
    let r = c
        .req(
            Method::POST,
            &format!("/v2/ns/app/blobs/uploads/?digest={d}"),
        )
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(header(&r, "Location"), format!("/v2/ns/app/blobs/{d}"));
    assert_eq!(header(&r, "Docker-Content-Digest"), d.as_str());

    let r = c
        .req(Method::GET, &format!("/v2/ns/app/blobs/{d}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, "Docker-Content-Digest"), d.as_str());
    assert_eq!(r.bytes().await.unwrap().to_vec(), data);
    let r = c
        .req(Method::HEAD, &format!("/v2/ns/app/blobs/{d}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, "Content-Length"), "100000");

    // POST then PUT with the whole body.
    let r = c
        .req(Method::POST, "/v2/ns/app/blobs/uploads/")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(header(&r, "Range"), "0-0");
    let loc = header(&r, "Location").to_string();
    assert!(loc.starts_with("/v2/ns/app/blobs/uploads/"), "{loc}");
    assert_eq!(
        loc.rsplit('/').next().unwrap(),
        header(&r, "Docker-Upload-UUID")
    );
    let body = b"post then put".to_vec();
    let d2 = Digest::sha256_of(&body);
    let r = c
        .req(Method::PUT, &format!("{loc}?digest={d2}"))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(header(&r, "Location"), format!("/v2/ns/app/blobs/{d2}"));
    let r = c
        .req(Method::GET, &format!("/v2/ns/app/blobs/{d2}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.bytes().await.unwrap().to_vec(), body);

    // Streamed PATCH without Content-Range, then an empty PUT; then cancel another session.
    let r = c
        .req(Method::POST, "/v2/ns/app/blobs/uploads/")
        .send()
        .await
        .unwrap();
    let loc = header(&r, "Location").to_string();
    let r = c
        .req(Method::PATCH, &loc)
        .body(b"streamed ".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(
        (r.status(), header(&r, "Range")),
        (StatusCode::ACCEPTED, "0-8")
    );
    let r = c
        .req(Method::PATCH, &loc)
        .body(b"body".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(header(&r, "Range"), "0-12");
    let d3 = Digest::sha256_of(b"streamed body");
    let r = c
        .req(Method::PUT, &format!("{loc}?digest={d3}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = c
        .req(Method::POST, "/v2/ns/app/blobs/uploads/")
        .send()
        .await
        .unwrap();
    let loc = header(&r, "Location").to_string();
    assert_eq!(
        c.req(Method::DELETE, &loc).send().await.unwrap().status(),
        StatusCode::NO_CONTENT
    );
    let r = c.req(Method::GET, &loc).send().await.unwrap();
    assert_eq!(error_code(r).await.1, "BLOB_UPLOAD_UNKNOWN");
    t.handle.stop().await;
}

#[actix_rt::test]
async fn chunked_upload_enforces_order_and_reports_progress() {
    let t = start_emulator().await;
    t.handle.state.namespaces.create("ns", false).unwrap();
    let c = Client::basic(&t);
    let blob: Vec<u8> = (0..42u8).collect();
    let (c1, c2) = blob.split_at(22);
    let r = c
        .req(Method::POST, "/v2/ns/app/blobs/uploads/")
        .header("Content-Length", "0")
        .send()
        .await
        .unwrap();
    let loc = header(&r, "Location").to_string();
    let r = c
        .req(Method::PATCH, &loc)
        .header("Content-Range", "22-41")
        .body(c2.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    let r = c
        .req(Method::PATCH, &loc)
        .header("Content-Range", "0-21")
        .body(c1.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(header(&r, "Range"), "0-21");
    let r = c
        .req(Method::PATCH, &loc)
        .header("Content-Range", "0-21")
        .body(c1.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    let r = c.req(Method::GET, &loc).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(header(&r, "Location"), loc);
    assert_eq!(header(&r, "Range"), "0-21");
    let r = c
        .req(Method::PATCH, &loc)
        .header("Content-Range", "22-41")
        .body(c2.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(
        (r.status(), header(&r, "Range")),
        (StatusCode::ACCEPTED, "0-41")
    );
    let d = Digest::sha256_of(&blob);
    let r = c
        .req(Method::PUT, &format!("{loc}?digest={d}"))
        .header("Content-Length", "0")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = c
        .req(Method::GET, &format!("/v2/ns/app/blobs/{d}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.bytes().await.unwrap().to_vec(), blob);
    t.handle.stop().await;
}

#[actix_rt::test]
async fn wrong_digest_ranges_and_mounts() {
    let t = start_emulator().await;
    t.handle.state.namespaces.create("ns", false).unwrap();
    t.handle.state.namespaces.create("other", false).unwrap();
    let c = Client::basic(&t);
    let body = b"some content".to_vec();
    let real = Digest::sha256_of(&body);
    let wrong = Digest::sha256_of(b"something else");
    let r = c
        .req(
            Method::POST,
            &format!("/v2/ns/app/blobs/uploads/?digest={wrong}"),
        )
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await.1, "DIGEST_INVALID");
    for d in [&real, &wrong] {
        let r = c
            .req(Method::GET, &format!("/v2/ns/app/blobs/{d}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
    }
    assert!(t.handle.state.storage.stored_size(&real).await.is_none());

    let data: Vec<u8> = (0..=255u8).collect();
    let d = c.push_blob("ns/app", &data).await;
    let r = c
        .req(Method::GET, &format!("/v2/ns/app/blobs/{d}"))
        .header("Range", "bytes=10-19")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(header(&r, "Content-Range"), "bytes 10-19/256");
    assert_eq!(r.bytes().await.unwrap().to_vec(), data[10..20].to_vec());
    let r = c
        .req(Method::GET, &format!("/v2/ns/app/blobs/{d}"))
        .header("Range", "bytes=250-")
        .send()
        .await
        .unwrap();
    assert_eq!(r.bytes().await.unwrap().to_vec(), data[250..].to_vec());
    let r = c
        .req(Method::GET, &format!("/v2/ns/app/blobs/{d}"))
        .header("Range", "bytes=300-400")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(header(&r, "Content-Range"), "bytes */256");

    // Mount from a repository holding the blob: 201 and readable; unknown blob or no from: 202.
    let r = c
        .req(
            Method::POST,
            &format!("/v2/other/copy/blobs/uploads/?mount={d}&from=ns/app"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(header(&r, "Location"), format!("/v2/other/copy/blobs/{d}"));
    let r = c
        .req(Method::GET, &format!("/v2/other/copy/blobs/{d}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.bytes().await.unwrap().to_vec(), data);
    let r = c
        .req(
            Method::POST,
            &format!("/v2/other/copy2/blobs/uploads/?mount={d}"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert!(header(&r, "Location").starts_with("/v2/other/copy2/blobs/uploads/"));
    let r = c
        .req(
            Method::POST,
            &format!("/v2/other/copy2/blobs/uploads/?mount={wrong}&from=ns/app"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);

    // Blob delete unlinks from one repository only.
    let r = c
        .req(Method::DELETE, &format!("/v2/other/copy/blobs/{d}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let r = c
        .req(Method::GET, &format!("/v2/other/copy/blobs/{d}"))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await.1, "BLOB_UNKNOWN");
    let r = c
        .req(Method::HEAD, &format!("/v2/ns/app/blobs/{d}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    t.handle.stop().await;
}

#[actix_rt::test]
async fn manifests_keep_exact_bytes_and_deletes_behave() {
    let t = start_emulator().await;
    t.handle.state.namespaces.create("ns", false).unwrap();
    let c = Client::basic(&t);
    let (m, d) = push_image(&c, "ns/app", "one").await;
    let r = c.put_manifest("ns/app", "v1", &m, OCI_MANIFEST).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(header(&r, "Location"), format!("/v2/ns/app/manifests/{d}"));
    assert_eq!(header(&r, "Docker-Content-Digest"), d.as_str());
    for reference in ["v1".to_string(), d.to_string()] {
        let r = c
            .req(Method::GET, &format!("/v2/ns/app/manifests/{reference}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(header(&r, "Content-Type"), OCI_MANIFEST);
        assert_eq!(header(&r, "Docker-Content-Digest"), d.as_str());
        assert_eq!(r.bytes().await.unwrap().to_vec(), m);
        let r = c
            .req(Method::HEAD, &format!("/v2/ns/app/manifests/{reference}"))
            .send()
            .await
            .unwrap();
        assert_eq!(header(&r, "Content-Length"), m.len().to_string());
        assert_eq!(header(&r, "Docker-Content-Digest"), d.as_str());
    }
    // Push by digest: the body must hash to it.
    let r = c.put_manifest("ns/app", d.as_str(), &m, OCI_MANIFEST).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let other = Digest::sha256_of(b"x");
    let r = c
        .put_manifest("ns/app", other.as_str(), &m, OCI_MANIFEST)
        .await;
    assert_eq!(error_code(r).await.1, "DIGEST_INVALID");
    // Missing layer → MANIFEST_BLOB_UNKNOWN; oversized → 413.
    let dangling = json!({"schemaVersion":2,"mediaType":OCI_MANIFEST,
        "config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":other.to_string(),"size":1},"layers":[]});
    let r = c
        .put_manifest(
            "ns/app",
            "bad",
            dangling.to_string().as_bytes(),
            OCI_MANIFEST,
        )
        .await;
    assert_eq!(error_code(r).await.1, "MANIFEST_BLOB_UNKNOWN");
    let huge = vec![b' '; 4 * 1024 * 1024 + 1];
    let r = c.put_manifest("ns/app", "huge", &huge, OCI_MANIFEST).await;
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // Invalid tag and malformed digest.
    for m in [Method::GET, Method::HEAD] {
        let r = c
            .req(m, "/v2/ns/app/manifests/.INVALID_MANIFEST_NAME")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
    }
    let r = c
        .req(Method::GET, "/v2/ns/app/manifests/sha256:totallywrong")
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await.1, "DIGEST_INVALID");

    // A second tag, then untag v1: the digest and v2 stay.
    assert_eq!(
        c.put_manifest("ns/app", "v2", &m, OCI_MANIFEST)
            .await
            .status(),
        StatusCode::CREATED
    );
    let r = c
        .req(Method::DELETE, "/v2/ns/app/manifests/v1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(
        c.req(Method::GET, "/v2/ns/app/manifests/v1")
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        c.req(Method::GET, &format!("/v2/ns/app/manifests/{d}"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    // Delete by digest removes its tags.
    let r = c
        .req(Method::DELETE, &format!("/v2/ns/app/manifests/{d}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(
        c.req(Method::GET, &format!("/v2/ns/app/manifests/{d}"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::NOT_FOUND
    );
    let r = c
        .req(Method::GET, "/v2/ns/app/tags/list")
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["tags"], json!([]));
    let r = c
        .req(Method::DELETE, &format!("/v2/ns/app/manifests/{d}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    t.handle.stop().await;
}

#[actix_rt::test]
async fn referrers_list_and_filter_by_artifact_type() {
    let t = start_emulator().await;
    t.handle.state.namespaces.create("ns", false).unwrap();
    let c = Client::basic(&t);
    let (m, d) = push_image(&c, "ns/app", "subject").await;
    assert_eq!(
        c.put_manifest("ns/app", "v1", &m, OCI_MANIFEST)
            .await
            .status(),
        StatusCode::CREATED
    );
    let empty = c.push_blob("ns/app", b"{}").await;
    assert_eq!(
        empty.as_str(),
        "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
    );
    let artifact = |ty: &str, subject: &Digest, n: u32| {
        json!({"schemaVersion":2,"mediaType":OCI_MANIFEST,"artifactType":ty,
            "config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":empty.to_string(),"size":2},
            "layers":[], "subject":{"mediaType":OCI_MANIFEST,"digest":subject.to_string(),"size":m.len()},
            "annotations":{"n": n.to_string()}})
        .to_string()
    };
    for (i, ty) in [
        "application/vnd.example.sbom",
        "application/vnd.example.sig",
        "application/vnd.example.sig",
    ]
    .iter()
    .enumerate()
    {
        let a = artifact(ty, &d, i as u32);
        let ad = Digest::sha256_of(a.as_bytes());
        let r = c
            .put_manifest("ns/app", ad.as_str(), a.as_bytes(), OCI_MANIFEST)
            .await;
        assert_eq!(r.status(), StatusCode::CREATED);
        assert_eq!(header(&r, "OCI-Subject"), d.as_str());
    }
    // A dangling subject is accepted.
    let ghost = Digest::sha256_of(b"never pushed");
    let a = artifact("application/vnd.example.sbom", &ghost, 9);
    assert_eq!(
        c.put_manifest("ns/app", "dangling", a.as_bytes(), OCI_MANIFEST)
            .await
            .status(),
        StatusCode::CREATED
    );

    let r = c
        .req(Method::GET, &format!("/v2/ns/app/referrers/{d}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        header(&r, "Content-Type"),
        "application/vnd.oci.image.index.v1+json"
    );
    assert_eq!(header(&r, "OCI-Filters-Applied"), "");
    let idx: Value = r.json().await.unwrap();
    let list = idx["manifests"].as_array().unwrap();
    assert_eq!(list.len(), 3);
    assert!(list.iter().all(|e| e["mediaType"] == OCI_MANIFEST
        && e["size"].as_u64().unwrap() > 0
        && e["annotations"]["n"].is_string()));
    let r = c
        .req(
            Method::GET,
            &format!("/v2/ns/app/referrers/{d}?artifactType=application/vnd.example.sig"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(header(&r, "OCI-Filters-Applied"), "artifactType");
    let idx: Value = r.json().await.unwrap();
    assert_eq!(idx["manifests"].as_array().unwrap().len(), 2);
    assert!(idx["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["artifactType"] == "application/vnd.example.sig"));
    let r = c
        .req(Method::GET, &format!("/v2/ns/app/referrers/{ghost}"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.json::<Value>().await.unwrap()["manifests"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let r = c
        .req(
            Method::GET,
            &format!("/v2/ns/app/referrers/{}", Digest::sha256_of(b"nothing")),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap()["manifests"], json!([]));
    let r = c
        .req(Method::GET, "/v2/ns/app/referrers/sha256:nothex")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    t.handle.stop().await;
}

#[actix_rt::test]
async fn tags_and_catalog_paginate_with_link() {
    let t = start_emulator().await;
    t.handle.state.namespaces.create("ns", false).unwrap();
    let c = Client::basic(&t);
    let (m, _) = push_image(&c, "ns/app", "p").await;
    for tag in ["e", "a", "c", "b", "d"] {
        assert_eq!(
            c.put_manifest("ns/app", tag, &m, OCI_MANIFEST)
                .await
                .status(),
            StatusCode::CREATED
        );
    }
    let r = c
        .req(Method::GET, "/v2/ns/app/tags/list?n=2")
        .send()
        .await
        .unwrap();
    assert_eq!(
        header(&r, "Link"),
        "</v2/ns/app/tags/list?n=2&last=b>; rel=\"next\""
    );
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"name":"ns/app","tags":["a","b"]})
    );
    let r = c
        .req(Method::GET, "/v2/ns/app/tags/list?n=2&last=b")
        .send()
        .await
        .unwrap();
    assert_eq!(
        header(&r, "Link"),
        "</v2/ns/app/tags/list?n=2&last=d>; rel=\"next\""
    );
    assert_eq!(r.json::<Value>().await.unwrap()["tags"], json!(["c", "d"]));
    let r = c
        .req(Method::GET, "/v2/ns/app/tags/list?n=2&last=d")
        .send()
        .await
        .unwrap();
    assert_eq!(header(&r, "Link"), "");
    assert_eq!(r.json::<Value>().await.unwrap()["tags"], json!(["e"]));
    let r = c
        .req(Method::GET, "/v2/ns/app/tags/list?n=0")
        .send()
        .await
        .unwrap();
    assert_eq!(header(&r, "Link"), "");
    assert_eq!(r.json::<Value>().await.unwrap()["tags"], json!([]));
    let r = c
        .req(Method::GET, "/v2/ns/app/tags/list?n=x")
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await.1, "PAGINATION_NUMBER_INVALID");

    for repo in ["ns/b", "ns/c/d"] {
        c.push_blob(repo, b"x").await;
    }
    let r = c.req(Method::GET, "/v2/_catalog?n=2").send().await.unwrap();
    assert_eq!(
        header(&r, "Link"),
        "</v2/_catalog?n=2&last=ns%2Fb>; rel=\"next\""
    );
    assert_eq!(
        r.json::<Value>().await.unwrap()["repositories"],
        json!(["ns/app", "ns/b"])
    );
    let r = c
        .req(Method::GET, "/v2/_catalog?n=2&last=ns%2Fb")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.json::<Value>().await.unwrap()["repositories"],
        json!(["ns/c/d"])
    );
    let r = Client::anonymous(&t)
        .req(Method::GET, "/v2/_catalog")
        .send()
        .await
        .unwrap();
    assert!(header(&r, "WWW-Authenticate").contains("scope=\"registry:catalog:*\""));
    t.handle.stop().await;
}

#[actix_rt::test]
async fn namespaces_are_enforced_like_tcr() {
    let t = start_emulator().await;
    t.handle.state.namespaces.create("private", false).unwrap();
    t.handle.state.namespaces.create("public", true).unwrap();
    let c = Client::basic(&t);
    let anon = Client::anonymous(&t);
    let r = c
        .req(Method::POST, "/v2/nope/app/blobs/uploads/")
        .send()
        .await
        .unwrap();
    assert!(header(&r, "WWW-Authenticate").starts_with("Bearer realm="));
    assert_eq!(
        error_code(r).await,
        (
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED".into(),
            "project nope not found".into()
        )
    );
    // HEAD cannot carry the message: it reports "absent" so clients go on to the POST.
    let r = c
        .req(Method::HEAD, "/v2/nope/app/manifests/latest")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = c
        .req(Method::GET, "/v2/nope/app/manifests/latest")
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await.2, "project nope not found");

    for ns in ["private", "public"] {
        let (m, _) = push_image(&c, &format!("{ns}/app"), ns).await;
        assert_eq!(
            c.put_manifest(&format!("{ns}/app"), "v1", &m, OCI_MANIFEST)
                .await
                .status(),
            StatusCode::CREATED
        );
    }
    let r = anon
        .req(Method::GET, "/v2/private/app/manifests/v1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = anon
        .req(Method::GET, "/v2/public/app/manifests/v1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // Anonymous may not push even into a public namespace.
    let r = anon
        .req(Method::POST, "/v2/public/app/blobs/uploads/")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // Anonymous tokens carry pull on public namespaces only.
    let realm = format!(
        "{}/service/token?scope=repository:public/app:pull,push&scope=repository:private/app:pull",
        t.handle.registry_url()
    );
    let body: Value = reqwest::get(realm).await.unwrap().json().await.unwrap();
    let claims = body["token"]
        .as_str()
        .unwrap()
        .split('.')
        .nth(1)
        .unwrap()
        .to_string();
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(claims)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["access"][0]["actions"], json!(["pull"]));
    assert_eq!(claims["access"][1]["actions"], json!([]));

    // Metrics count requests per route.
    let text = reqwest::get(format!("{}/metrics", t.handle.registry_url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("tcr_emulator_registry_requests_total{method=\"GET\",route=\"manifest\",status=\"200\"}"), "{text}");
    t.handle.stop().await;
}

#[actix_rt::test]
async fn state_survives_a_restart() {
    let TestEmulator { handle, dir } = start_emulator().await;
    handle.state.namespaces.create("ns", false).unwrap();
    let t = TestEmulator { handle, dir };
    let c = Client::basic(&t);
    let (m, d) = push_image(&c, "ns/app", "persist").await;
    assert_eq!(
        c.put_manifest("ns/app", "v1", &m, OCI_MANIFEST)
            .await
            .status(),
        StatusCode::CREATED
    );
    let r = c
        .req(Method::POST, "/v2/ns/app/blobs/uploads/")
        .send()
        .await
        .unwrap();
    let loc = header(&r, "Location").to_string();
    c.req(Method::PATCH, &loc)
        .body(b"half".to_vec())
        .send()
        .await
        .unwrap();
    let TestEmulator { handle, dir } = t;
    handle.stop().await;

    let handle = start_emulator_with(common::emulator_config(dir.path())).await;
    let t = TestEmulator { handle, dir };
    let c2 = Client {
        base: t.handle.registry_url(),
        ..c
    };
    let r = c2
        .req(Method::GET, "/v2/ns/app/manifests/v1")
        .send()
        .await
        .unwrap();
    assert_eq!(header(&r, "Docker-Content-Digest"), d.as_str());
    assert_eq!(r.bytes().await.unwrap().to_vec(), m);
    let loc = loc.clone();
    let r = c2.req(Method::GET, &loc).send().await.unwrap();
    assert_eq!(
        (r.status(), header(&r, "Range")),
        (StatusCode::NO_CONTENT, "0-3")
    );
    let r = c2
        .req(Method::PATCH, &loc)
        .body(b" and rest".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let full = Digest::sha256_of(b"half and rest");
    let r = c2
        .req(Method::PUT, &format!("{loc}?digest={full}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let summaries = t
        .handle
        .state
        .storage
        .list_tag_summaries("ns/app")
        .await
        .unwrap();
    assert_eq!(summaries.len(), 1);
    assert_eq!(summaries[0].digest, d.as_str());
    assert!(summaries[0].size > m.len() as u64);
    assert_eq!(
        t.handle.state.storage.list_repositories().await[0].name,
        "ns/app"
    );
    t.handle.stop().await;
}

#[actix_rt::test]
async fn a_dropped_upload_leaves_nothing_visible() {
    use tokio::io::AsyncWriteExt;
    let t = start_emulator().await;
    t.handle.state.namespaces.create("ns", false).unwrap();
    let c = Client::basic(&t);
    let data = vec![7u8; 1_000_000];
    let d = Digest::sha256_of(&data);
    let mut s = tokio::net::TcpStream::connect(t.handle.registry_addr)
        .await
        .unwrap();
    let head = format!(
        "POST /v2/ns/app/blobs/uploads/?digest={d} HTTP/1.1\r\nHost: x\r\nAuthorization: {}\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
        c.auth.as_ref().unwrap(),
        data.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(&data[..500_000]).await.unwrap();
    s.flush().await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    drop(s);
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let r = c
        .req(Method::GET, &format!("/v2/ns/app/blobs/{d}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert!(t.handle.state.storage.stored_size(&d).await.is_none());
    let uploads = std::fs::read_dir(t.dir.path().join("registry/uploads"))
        .unwrap()
        .count();
    assert_eq!(uploads, 0, "the aborted session was cleaned up");
    // The same blob pushed properly afterwards works.
    c.push_blob("ns/app", &data).await;
    let r = c
        .req(Method::GET, &format!("/v2/ns/app/blobs/{d}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.bytes().await.unwrap().len(), data.len());
    t.handle.stop().await;
}

#[actix_rt::test]
async fn fault_knobs_limit_bodies() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = common::emulator_config(dir.path());
    cfg.faults.max_body_bytes = 10;
    let handle = start_emulator_with(cfg).await;
    handle.state.namespaces.create("ns", false).unwrap();
    let t = TestEmulator { handle, dir };
    let c = Client::basic(&t);
    let body = vec![1u8; 20];
    let r = c
        .req(
            Method::POST,
            &format!(
                "/v2/ns/app/blobs/uploads/?digest={}",
                Digest::sha256_of(&body)
            ),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    t.handle.stop().await;
}
