//! The emulator's WAN model: blob HEAD (registry and storage listener) answers from metadata
//! without reading the file, and `faults.bandwidth_kib_per_sec` paces request and response
//! bodies (a lower bound on time is what a cap guarantees; no upper bound is asserted).

use std::time::{Duration, Instant};

use base64::Engine;
use reqwest::{Method, StatusCode};
use tcr_adapter::clock;
use tcr_adapter::config::{EmulatorAccount, EmulatorConfig};
use tcr_adapter::emulator::{self, EmulatorHandle, TokenKind};
use tcr_adapter::oci::Digest;

struct Emu {
    handle: EmulatorHandle,
    _dir: tempfile::TempDir,
    http: reqwest::Client,
    auth: String,
}

async fn start(tweak: impl FnOnce(&mut EmulatorConfig)) -> Emu {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = EmulatorConfig {
        registry_listen: "127.0.0.1:0".parse().unwrap(),
        api_listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().to_path_buf(),
        ..EmulatorConfig::default()
    };
    tweak(&mut cfg);
    let handle = emulator::start(cfg, clock::system())
        .await
        .expect("emulator starts");
    handle.state.namespaces.create("ns", false).unwrap();
    let tok = handle
        .state
        .tokens
        .issue(EmulatorAccount::DEMO_UIN, TokenKind::Temp);
    let cred =
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", tok.username, tok.token));
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    Emu {
        handle,
        _dir: dir,
        http,
        auth: format!("Basic {cred}"),
    }
}

impl Emu {
    fn req(&self, m: Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(m, format!("{}{path}", self.handle.registry_url()))
            .header("Authorization", &self.auth)
    }

    /// `req(m, path)` sent as it is: the response.
    async fn call(&self, m: Method, path: &str) -> reqwest::Response {
        self.req(m, path).send().await.unwrap()
    }

    async fn push(&self, repo: &str, data: Vec<u8>) -> Digest {
        let d = Digest::sha256_of(&data);
        let r = self
            .req(
                Method::POST,
                &format!("/v2/{repo}/blobs/uploads/?digest={d}"),
            )
            .body(data)
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

    fn body_bytes(&self, route: &str, direction: &str) -> u64 {
        self.handle.state.metrics.body_bytes(route, direction).get()
    }

    fn file_bytes_read(&self) -> u64 {
        self.handle.state.metrics.blob_file_read_bytes.get()
    }

    async fn stop(self) {
        self.handle.stop().await;
    }
}

fn header(r: &reqwest::Response, name: &str) -> String {
    r.headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .unwrap()
        .to_string()
}

/// A HEAD of a blob of `size` bytes and digest `d`: 200 with its Content-Length and digest, and
/// no body.
async fn assert_blob_head(r: reqwest::Response, size: usize, d: &Digest) {
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, "Content-Length"), size.to_string());
    assert_eq!(header(&r, "Docker-Content-Digest"), d.as_str());
    assert!(r.bytes().await.unwrap().is_empty());
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

#[actix_rt::test]
async fn blob_head_answers_from_metadata_and_reads_no_byte() {
    let e = start(|_| {}).await;
    let size = 64 * 1024 * 1024;
    let d = e.push("ns/big", pattern(size)).await;
    let path = format!("/v2/ns/big/blobs/{d}");

    for _ in 0..3 {
        let r = e.call(Method::HEAD, &path).await;
        assert_blob_head(r, size, &d).await;
    }
    assert_eq!(e.file_bytes_read(), 0, "a HEAD read the blob file");
    assert_eq!(e.body_bytes("blob", "sent"), 0);

    // The counters do count: a ranged GET reads and sends exactly its range.
    let r = e
        .req(Method::GET, &path)
        .header("Range", "bytes=1000-1999")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.bytes().await.unwrap().as_ref(), &pattern(2000)[1000..]);
    assert_eq!(e.file_bytes_read(), 1000);
    assert_eq!(e.body_bytes("blob", "sent"), 1000);
    assert_eq!(e.body_bytes("upload", "received"), size as u64);

    // Exported on /metrics.
    let text = reqwest::get(format!("{}/metrics", e.handle.registry_url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains("tcr_emulator_blob_file_read_bytes_total 1000"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "tcr_emulator_body_bytes_total{{direction=\"received\",route=\"upload\"}} {size}"
        )),
        "{text}"
    );

    // A HEAD for an absent blob is still a 404.
    let absent = Digest::sha256_of(b"absent");
    let r = e
        .call(Method::HEAD, &format!("/v2/ns/big/blobs/{absent}"))
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    e.stop().await;
}

#[actix_rt::test]
async fn storage_listener_head_answers_from_metadata_and_reads_no_byte() {
    let e = start(|c| c.blob_redirects = true).await;
    let size = 8 * 1024 * 1024 + 3;
    let d = e.push("ns/big", pattern(size)).await;
    let path = format!("/v2/ns/big/blobs/{d}");

    let r = e.call(Method::HEAD, &path).await;
    assert_eq!(r.status(), StatusCode::TEMPORARY_REDIRECT);
    let signed = header(&r, "Location");
    assert!(
        signed.starts_with(&e.handle.storage_url().unwrap()),
        "{signed}"
    );
    // The storage URL is used without Authorization, as object storage wants.
    let r = e.http.head(&signed).send().await.unwrap();
    assert_blob_head(r, size, &d).await;
    assert_eq!(e.file_bytes_read(), 0, "a storage HEAD read the blob file");
    assert_eq!(e.body_bytes("storage", "sent"), 0);

    // A GET through the storage listener does read and send the whole blob.
    let r = e.call(Method::GET, &path).await;
    assert_eq!(r.status(), StatusCode::TEMPORARY_REDIRECT);
    let r = e.http.get(header(&r, "Location")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.bytes().await.unwrap().len(), size);
    assert_eq!(e.file_bytes_read(), size as u64);
    assert_eq!(e.body_bytes("storage", "sent"), size as u64);
    e.stop().await;
}

/// 1 MiB at 512 KiB/s: at least ~2 s each way; 1.5 s leaves room for the burst of one piece.
#[actix_rt::test]
async fn bandwidth_cap_paces_uploads_and_downloads() {
    let e = start(|c| c.faults.bandwidth_kib_per_sec = 512).await;
    let data = pattern(1024 * 1024);
    let at_least = Duration::from_millis(1500);

    // Monolithic upload (POST ?digest=).
    let t = Instant::now();
    let d = e.push("ns/slow", data.clone()).await;
    let up = t.elapsed();
    assert!(up >= at_least, "monolithic upload of 1 MiB took {up:?}");

    // Session upload: POST, then PATCH with the body, then PUT.
    let r = e.call(Method::POST, "/v2/ns/slow2/blobs/uploads/").await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let location = header(&r, "Location");
    let t = Instant::now();
    let r = e
        .req(Method::PATCH, &location)
        .header("Content-Type", "application/octet-stream")
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let patch = t.elapsed();
    assert!(patch >= at_least, "PATCH of 1 MiB took {patch:?}");
    let r = e.call(Method::PUT, &format!("{location}?digest={d}")).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(e.body_bytes("upload", "received"), 2 * data.len() as u64);

    // Download.
    let t = Instant::now();
    let r = e.call(Method::GET, &format!("/v2/ns/slow/blobs/{d}")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, "Content-Length"), data.len().to_string());
    let got = r.bytes().await.unwrap();
    let down = t.elapsed();
    assert_eq!(got.as_ref(), data.as_slice());
    assert!(down >= at_least, "download of 1 MiB took {down:?}");
    assert_eq!(e.body_bytes("blob", "sent"), data.len() as u64);

    // A HEAD is not paced (no body) and stays correct.
    let r = e
        .call(Method::HEAD, &format!("/v2/ns/slow/blobs/{d}"))
        .await;
    assert_eq!(header(&r, "Content-Length"), data.len().to_string());
    e.stop().await;
}

/// With no cap (the default) bodies still arrive whole and are counted; that nothing is paced
/// or split is shown by the unit tests of `emulator::wan`.
#[actix_rt::test]
async fn no_cap_is_the_default_and_bodies_pass_whole() {
    let e = start(|_| {}).await;
    assert_eq!(e.handle.state.cfg.faults.bandwidth_kib_per_sec, 0);
    let data = pattern(1024 * 1024);
    let d = e.push("ns/fast", data.clone()).await;
    let got = e
        .call(Method::GET, &format!("/v2/ns/fast/blobs/{d}"))
        .await
        .bytes()
        .await
        .unwrap();
    assert_eq!(got.as_ref(), data.as_slice());
    assert_eq!(e.body_bytes("upload", "received"), data.len() as u64);
    assert_eq!(e.body_bytes("blob", "sent"), data.len() as u64);
    e.stop().await;
}
