//! The emulator's chart repository (TCR's ChartMuseum-style API and Helm repository) seen by an
//! HTTP client and by a real Helm client: uploads (multipart and bare), listing, versions,
//! details, downloads byte for byte, index.yaml, deletes, duplicates under both configured
//! behaviours, archive checks, credentials, public/private namespaces, restarts.

#[path = "common/mod.rs"]
mod common;

use crate::common::SendOk;
use base64::Engine;
use common::charts::{chart_archive, multipart_chart, multipart_parts, sha256_hex};
use common::{emulator_config, start_emulator_with, DEMO_UIN};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use tcr_adapter::config::{ChartDuplicates, EmulatorConfig};
use tcr_adapter::emulator::{EmulatorHandle, TokenKind};

struct Repo {
    emu: EmulatorHandle,
    http: reqwest::Client,
    auth: Option<String>,
}

fn basic(user: &str, pass: &str) -> String {
    let c = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
    format!("Basic {c}")
}

impl Repo {
    async fn start(dir: &std::path::Path, tweak: impl FnOnce(&mut EmulatorConfig)) -> Repo {
        let mut cfg = emulator_config(dir);
        tweak(&mut cfg);
        let emu = start_emulator_with(cfg).await;
        let tok = emu.state.tokens.issue(DEMO_UIN, TokenKind::LongTerm);
        Repo {
            auth: Some(basic(&tok.username, &tok.token)),
            emu,
            http: reqwest::Client::new(),
        }
    }
    fn ns(&self, name: &str, public: bool) {
        self.emu.state.namespaces.create(name, public).unwrap();
    }
    fn req(&self, m: Method, path: &str) -> reqwest::RequestBuilder {
        let r = self
            .http
            .request(m, format!("{}{}", self.emu.registry_url(), path));
        match &self.auth {
            Some(a) => r.header("Authorization", a),
            None => r,
        }
    }
    async fn upload(&self, ns: &str, archive: &[u8]) -> (StatusCode, Value) {
        let (ctype, body) = multipart_chart("chart.tgz", archive);
        let r = self
            .req(Method::POST, &format!("/api/chartrepo/{ns}/charts"))
            .header("Content-Type", ctype)
            .body(body)
            .send_ok()
            .await;
        let s = r.status();
        (s, r.json().await.unwrap_or(Value::Null))
    }
    async fn get_json(&self, path: &str) -> (StatusCode, Value) {
        let r = self.req(Method::GET, path).send_ok().await;
        let s = r.status();
        (s, r.json().await.unwrap_or(Value::Null))
    }
    async fn download(&self, path: &str) -> (StatusCode, Vec<u8>) {
        let r = self.req(Method::GET, path).send_ok().await;
        (r.status(), r.bytes().await.unwrap().to_vec())
    }
}

#[tokio::test]
async fn upload_list_detail_download_delete() {
    let dir = tempfile::tempdir().unwrap();
    let repo = Repo::start(dir.path(), |_| {}).await;
    repo.ns("team", false);
    let small = chart_archive("web", "1.0.0", 1024);
    let big = chart_archive("web", "1.10.0", 50 << 20);
    assert_eq!(repo.upload("team", &small).await.0, StatusCode::CREATED);
    let (s, body) = repo.upload("team", &big).await;
    assert_eq!(
        (s, body["saved"].as_bool()),
        (StatusCode::CREATED, Some(true))
    );

    let (s, list) = repo.get_json("/api/chartrepo/team/charts").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(list[0]["name"], "web");
    assert_eq!(list[0]["total_versions"], 2);
    assert_eq!(list[0]["latest_version"], "1.10.0");

    let (s, versions) = repo.get_json("/api/chartrepo/team/charts/web").await;
    assert_eq!(s, StatusCode::OK);
    let v: Vec<&str> = crate::common::strs(&versions, "version");
    assert_eq!(v, ["1.10.0", "1.0.0"], "newest first");
    assert_eq!(versions[0]["labels"], serde_json::json!([]));

    let (s, detail) = repo.get_json("/api/chartrepo/team/charts/web/1.0.0").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(detail["metadata"]["urls"][0], "charts/web-1.0.0.tgz");
    assert_eq!(detail["metadata"]["digest"], sha256_hex(&small));
    assert_eq!(detail["metadata"]["apiVersion"], "v2");
    assert_eq!(detail["values"]["replicaCount"], 1);
    assert_eq!(detail["security"]["signature"]["signed"], false);

    for (file, bytes) in [("web-1.0.0.tgz", &small), ("web-1.10.0.tgz", &big)] {
        let (s, got) = repo
            .download(&format!("/chartrepo/team/charts/{file}"))
            .await;
        assert_eq!(s, StatusCode::OK);
        assert!(got == **bytes, "{file} comes back byte for byte");
    }

    let r = repo
        .req(Method::GET, "/chartrepo/team/index.yaml")
        .send_ok()
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let index: Value = serde_yaml::from_str(&r.text().await.unwrap()).unwrap();
    assert_eq!(index["apiVersion"], "v1");
    assert_eq!(
        index["entries"]["web"][1]["urls"][0],
        "charts/web-1.0.0.tgz"
    );
    assert_eq!(index["entries"]["web"][0]["digest"], sha256_hex(&big));

    let r = repo
        .req(Method::DELETE, "/api/chartrepo/team/charts/web/1.0.0")
        .send_ok()
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let (s, body) = repo.get_json("/api/chartrepo/team/charts/web/1.0.0").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(body["error"].as_str().unwrap().contains("not found"));
    let r = repo
        .req(Method::DELETE, "/api/chartrepo/team/charts/web/1.0.0")
        .send_ok()
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        repo.download("/chartrepo/team/charts/web-1.0.0.tgz")
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    repo.emu.stop().await;
}

#[tokio::test]
async fn duplicates_conflict_or_overwrite_as_configured() {
    for (mode, second) in [
        (ChartDuplicates::Conflict, StatusCode::CONFLICT),
        (ChartDuplicates::Overwrite, StatusCode::CREATED),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repo::start(dir.path(), |c| c.chart_duplicates = mode).await;
        repo.ns("dup", false);
        let first = chart_archive("app", "0.1.0", 10);
        let changed = chart_archive("app", "0.1.0", 20);
        assert_eq!(repo.upload("dup", &first).await.0, StatusCode::CREATED);
        let (s, body) = repo.upload("dup", &changed).await;
        assert_eq!(s, second, "{mode:?}: {body}");
        let (_, got) = repo.download("/chartrepo/dup/charts/app-0.1.0.tgz").await;
        let expect = if mode == ChartDuplicates::Conflict {
            assert_eq!(body["error"], "dup/app-0.1.0.tgz already exists");
            &first
        } else {
            &changed
        };
        assert!(got == *expect, "{mode:?}: stored bytes");
        repo.emu.stop().await;
    }
}

#[tokio::test]
async fn bad_archives_are_refused_with_a_reason_and_nothing_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let repo = Repo::start(dir.path(), |_| {}).await;
    repo.ns("bad", false);
    let gz = |data: &[u8]| {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    };
    let no_chart_yaml = {
        let mut t = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(2);
        h.set_cksum();
        t.append_data(&mut h, "x/values.yaml", &b"a:"[..]).unwrap();
        gz(&t.into_inner().unwrap())
    };
    let bad_version = {
        let mut t = tar::Builder::new(Vec::new());
        let y = b"apiVersion: v2\nname: x\nversion: latest\n";
        let mut h = tar::Header::new_gnu();
        h.set_size(y.len() as u64);
        h.set_cksum();
        t.append_data(&mut h, "x/Chart.yaml", &y[..]).unwrap();
        gz(&t.into_inner().unwrap())
    };
    for (archive, says) in [
        (
            b"{\"error\":\"not found\"}".to_vec(),
            "gzip: invalid header",
        ),
        (gz(b"definitely not a tar archive, just text"), "tar"),
        (no_chart_yaml, "no Chart.yaml"),
        (bad_version, "not a valid semantic version"),
    ] {
        let (s, body) = repo.upload("bad", &archive).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
        let msg = body["error"].as_str().unwrap();
        assert!(msg.contains(says), "{msg:?} should say {says:?}");
    }
    let (ctype, body) = multipart_parts(&[("file", "x.tgz", b"abc")]);
    let r = repo
        .req(Method::POST, "/api/chartrepo/bad/charts")
        .header("Content-Type", ctype)
        .body(body)
        .send_ok()
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().await.unwrap().contains("named \\\"chart\\\""));
    let (_, list) = repo.get_json("/api/chartrepo/bad/charts").await;
    assert_eq!(list, serde_json::json!([]));
    let leftovers = std::fs::read_dir(dir.path().join("charts/.uploads"))
        .unwrap()
        .count();
    assert_eq!(leftovers, 0, "refused uploads leave no temporary files");
    repo.emu.stop().await;
}

#[tokio::test]
async fn credentials_namespaces_and_visibility() {
    let dir = tempfile::tempdir().unwrap();
    let mut repo = Repo::start(dir.path(), |_| {}).await;
    repo.ns("private", false);
    repo.ns("open", true);
    let archive = chart_archive("svc", "2.0.0", 100);
    assert_eq!(repo.upload("open", &archive).await.0, StatusCode::CREATED);
    assert_eq!(
        repo.upload("private", &archive).await.0,
        StatusCode::CREATED
    );

    // A temporary instance token works as well as a long-term one.
    let temp = repo.emu.state.tokens.issue(DEMO_UIN, TokenKind::Temp);
    repo.auth = Some(basic(&temp.username, &temp.token));
    assert_eq!(
        repo.get_json("/api/chartrepo/private/charts/svc/2.0.0")
            .await
            .0,
        StatusCode::OK
    );
    // Missing namespace: 404 with its name; missing chart or version: 404.
    let (s, body) = repo.get_json("/api/chartrepo/nope/charts/svc/2.0.0").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(body["error"], "namespace nope not found");
    assert_eq!(repo.upload("nope", &archive).await.0, StatusCode::NOT_FOUND);
    assert_eq!(
        repo.get_json("/api/chartrepo/private/charts/svc/9.9.9")
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        repo.get_json("/api/chartrepo/private/charts/other").await.0,
        StatusCode::NOT_FOUND
    );
    // Wrong password: 401 with a Basic challenge.
    repo.auth = Some(basic(DEMO_UIN, "wrong"));
    let r = repo
        .req(Method::GET, "/api/chartrepo/private/charts")
        .send_ok()
        .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Basic "));
    // Anonymous: reads of a public namespace only.
    repo.auth = None;
    let (s, got) = repo.download("/chartrepo/open/charts/svc-2.0.0.tgz").await;
    assert_eq!(s, StatusCode::OK);
    assert!(got == archive);
    assert_eq!(
        repo.download("/chartrepo/private/charts/svc-2.0.0.tgz")
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        repo.upload("open", &archive).await.0,
        StatusCode::UNAUTHORIZED
    );
    repo.emu.stop().await;
}

#[tokio::test]
async fn charts_survive_a_restart_and_bare_bodies_are_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let archive = chart_archive("keep", "3.1.4", 4096);
    {
        let repo = Repo::start(dir.path(), |_| {}).await;
        repo.ns("persist", false);
        // `helm cm-push` may also send the archive as the whole body.
        let r = repo
            .req(Method::POST, "/api/chartrepo/persist/charts")
            .header("Content-Type", "application/octet-stream")
            .body(archive.clone())
            .send_ok()
            .await;
        assert_eq!(r.status(), StatusCode::CREATED);
        repo.emu.stop().await;
    }
    let repo = Repo::start(dir.path(), |_| {}).await;
    let (s, detail) = repo
        .get_json("/api/chartrepo/persist/charts/keep/3.1.4")
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(detail["metadata"]["digest"], sha256_hex(&archive));
    let (_, got) = repo
        .download("/chartrepo/persist/charts/keep-3.1.4.tgz")
        .await;
    assert!(got == archive);
    repo.emu.stop().await;
}

#[tokio::test]
async fn a_real_helm_client_adds_the_repository_and_pulls() {
    common::require_tool("python3");
    let dir = tempfile::tempdir().unwrap();
    let repo = Repo::start(dir.path(), |_| {}).await;
    repo.ns("helm", false);
    let archive = chart_archive("hello", "0.3.0", 2048);
    assert_eq!(repo.upload("helm", &archive).await.0, StatusCode::CREATED);
    let tok = repo.emu.state.tokens.issue(DEMO_UIN, TokenKind::LongTerm);
    let url = format!("{}/chartrepo/helm", repo.emu.registry_url());
    let creds = (tok.username.as_str(), tok.token.as_str());
    common::assert_helm_pulls(&url, creds, ("hello", "0.3.0"), &archive).await;
    repo.emu.stop().await;
}
