//! `tcr-adapter verify --source-kind harbor` (and auto-detection) against a Harbor 1.x API served
//! by this test on loopback, per harbor-api-shim.md §1.9: `/api/systeminfo`, `/api/projects`
//! (paged), `/api/repositories?project_id=` (paged), `/api/repositories/<repo>/tags` and the
//! ChartMuseum API `/api/chartrepo/<p>/charts[/<name>]`, Basic credentials required. Manifests
//! live in a real CNCF distribution the test API lists; the destination is the emulator, fed
//! through the adapter with part of the images. At first no chart is in TCR (both versions
//! missing); then they arrive through the adapter's Harbor API, one with other content (different),
//! and once that one is replaced the run is complete.

mod common;
mod verify_support;

use crate::common::SendOk;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use base64::Engine;
use serde_json::json;

use verify_support::*;

const USER: &str = "admin";
const PASSWORD: &str = "Harbor12345";

struct Harbor {
    /// repo → [(tag, digest)]
    repos: BTreeMap<String, Vec<(String, String)>>,
    /// chart → [(version, digest)]
    charts: BTreeMap<String, Vec<(String, String)>>,
}

fn authorized(req: &HttpRequest) -> bool {
    let want = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"))
    );
    req.headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        == Some(want.as_str())
}

async fn api(req: HttpRequest, h: web::Data<Arc<Harbor>>) -> HttpResponse {
    let path = req.path().to_string();
    if path == "/api/systeminfo" {
        return HttpResponse::Ok()
            .json(json!({"harbor_version": "v1.10.4-6c3bd3a4", "with_chartmuseum": true}));
    }
    if !authorized(&req) {
        return HttpResponse::Unauthorized().json(json!({"code": 401, "message": "UnAuthorize"}));
    }
    let q: BTreeMap<String, String> = url::form_urlencoded::parse(req.query_string().as_bytes())
        .into_owned()
        .collect();
    let page: usize = q.get("page").and_then(|p| p.parse().ok()).unwrap_or(1);
    let size: usize = q
        .get("page_size")
        .and_then(|p| p.parse().ok())
        .unwrap_or(10);
    let paged = |all: Vec<serde_json::Value>| -> HttpResponse {
        let items: Vec<_> = all.into_iter().skip((page - 1) * size).take(size).collect();
        HttpResponse::Ok().json(items)
    };
    if path == "/api/projects" {
        let projects: BTreeSet<&str> = h
            .repos
            .keys()
            .map(|r| r.split('/').next().unwrap())
            .collect();
        return paged(
            projects
                .iter()
                .enumerate()
                .map(|(i, p)| json!({"project_id": i + 1, "name": p, "metadata": {"public": "false"}}))
                .collect(),
        );
    }
    if path == "/api/repositories" {
        let projects: Vec<&str> = h
            .repos
            .keys()
            .map(|r| r.split('/').next().unwrap())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let id: usize = q["project_id"].parse().unwrap();
        let project = projects[id - 1];
        return paged(
            h.repos
                .keys()
                .filter(|r| r.starts_with(&format!("{project}/")))
                .map(|r| json!({"name": r, "project_id": id, "tags_count": h.repos[r].len()}))
                .collect(),
        );
    }
    if let Some(repo) = path
        .strip_prefix("/api/repositories/")
        .and_then(|r| r.strip_suffix("/tags"))
    {
        return match h.repos.get(repo) {
            Some(tags) => HttpResponse::Ok().json(
                tags.iter()
                    .map(|(t, d)| json!({"name": t, "digest": d, "size": 1, "architecture": "amd64", "os": "linux"}))
                    .collect::<Vec<_>>(),
            ),
            None => HttpResponse::NotFound().json(json!({"code": 404, "message": "repository not found"})),
        };
    }
    if let Some(rest) = path.strip_prefix("/api/chartrepo/proj/charts") {
        if rest.is_empty() {
            return HttpResponse::Ok().json(
                h.charts
                    .iter()
                    .map(|(n, v)| json!({"name": n, "total_versions": v.len(), "latest_version": v.last().unwrap().0}))
                    .collect::<Vec<_>>(),
            );
        }
        if let Some(v) = h.charts.get(rest.trim_start_matches('/')) {
            return HttpResponse::Ok().json(
                v.iter()
                    .map(|(ver, d)| json!({"name": rest.trim_start_matches('/'), "version": ver, "digest": d, "urls": [format!("charts/x-{ver}.tgz")]}))
                    .collect::<Vec<_>>(),
            );
        }
    }
    HttpResponse::NotFound().json(json!({"error": "not found"}))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_reads_a_harbor_source_with_its_charts() {
    common::require_tool("skopeo");
    let tmp = tempfile::tempdir().unwrap();
    let (_dist, dist) = start_distribution(tmp.path()).await;
    let mut repos: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for repo in ["proj/a", "proj/b", "other/c"] {
        for t in ["1", "2", "3"] {
            let d = push_image(&dist, repo, t, &format!("{repo}{t}"), "amd64").await;
            repos.entry(repo.into()).or_default().push((t.into(), d));
        }
    }
    let chart =
        |n: &str, v: &str| common::charts::sha256_hex(&common::charts::chart_archive(n, v, 16));
    let charts: BTreeMap<String, Vec<(String, String)>> = [(
        "web".to_string(),
        vec![
            ("0.1.0".to_string(), chart("web", "0.1.0")),
            ("0.2.0".to_string(), chart("web", "0.2.0")),
        ],
    )]
    .into_iter()
    .collect();
    let harbor = Arc::new(Harbor {
        repos,
        charts: charts.clone(),
    });
    // Harbor's API and (for manifests) the distribution behind the same origin.
    let dist_for_proxy = dist.clone();
    let server = HttpServer::new(move || {
        let dist = dist_for_proxy.clone();
        App::new()
            .app_data(web::Data::new(harbor.clone()))
            .route("/api/{tail:.*}", web::get().to(api))
            .default_service(web::to(move |req: HttpRequest| {
                let dist = dist.clone();
                async move {
                    // /v2/: forwarded to the distribution (reads only).
                    let r = reqwest::Client::new()
                        .get(format!("{dist}{}", req.uri()))
                        .header(
                            "accept",
                            req.headers()
                                .get("accept")
                                .map(|v| v.to_str().unwrap())
                                .unwrap_or("*/*"),
                        )
                        .send_ok()
                        .await;
                    let mut out = HttpResponse::build(
                        actix_web::http::StatusCode::from_u16(r.status().as_u16()).unwrap(),
                    );
                    for h in ["content-type", "docker-content-digest"] {
                        if let Some(v) = r.headers().get(h) {
                            out.insert_header((h, v.to_str().unwrap()));
                        }
                    }
                    out.body(r.bytes().await.unwrap())
                }
            }))
    })
    .workers(1)
    .bind("127.0.0.1:0")
    .unwrap();
    let addr = server.addrs()[0];
    let server = server.run();
    let handle = server.handle();
    tokio::spawn(server);
    let source = format!("http://{addr}");

    let emu = common::start_emulator().await;
    let adapter = tcr_adapter::app::start(
        common::adapter_config(&emu.handle),
        tcr_adapter::clock::system(),
    )
    .await
    .unwrap();
    let a = adapter.url().trim_start_matches("http://").to_string();
    for name in ["proj/a:1", "proj/a:2", "proj/a:3", "proj/b:1"] {
        skopeo_copy(&dist, &a, name, name, false).await;
    }
    let config = tmp.path().join("verify.toml");
    std::fs::write(
        &config,
        format!(
            "[tcr]\nregistry_url = \"{}\"\napi_endpoint = \"{}\"\nregistry_id = \"{}\"\nregion = \"{}\"\nsecret_id = \"{}\"\nsecret_key = \"{}\"\n",
            emu.handle.registry_url(), emu.handle.api_url(), emu.handle.state.cfg.registry_id,
            emu.handle.state.cfg.region, common::DEMO_SECRET_ID, common::DEMO_SECRET_KEY
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let src_creds = format!("{USER}:{PASSWORD}");
    // Detected as Harbor (no --source-kind); --project proj leaves other/c out.
    let from = ["--config", config, "--source", &source];
    let as_admin = [&from[..], &["--source-creds", &src_creds]].concat();
    let args = [&as_admin[..], &["--project", "proj", "--format", "json"]].concat();
    let (code, out, err) = run_verify(&args);
    assert_eq!(code, 1, "stdout: {out}\nstderr: {err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let fields = ["status", "kind", "repository", "tag", "source_digest"];
    let got = item_fields(&v, fields);
    let mut want = BTreeSet::new();
    for (t, d) in &harbor_tags(&dist, "proj/b").await[1..] {
        want.insert(["missing", "image", "proj/b", t, d].map(String::from));
    }
    for (ver, d) in &charts["web"] {
        want.insert(["missing", "chart", "proj/web", ver, d].map(String::from));
    }
    assert_eq!(got, want, "{out}");
    assert_eq!(v["totals"]["ok"], 4);

    // The charts arrive through the adapter's Harbor API, 0.2.0 with other content; the rest of
    // the images too: only that chart version is different.
    let upload = |version: &str, payload: usize| {
        let (ctype, body) = common::charts::multipart_chart(
            &format!("web-{version}.tgz"),
            &common::charts::chart_archive("web", version, payload),
        );
        reqwest::Client::new()
            .post(format!("http://{a}/api/chartrepo/proj/charts"))
            .basic_auth(common::DEMO_SECRET_ID, Some(common::DEMO_SECRET_KEY))
            .header("content-type", ctype)
            .body(body)
    };
    for (version, payload) in [("0.1.0", 16), ("0.2.0", 17)] {
        let r = upload(version, payload).send_ok().await;
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    }
    for name in ["proj/b:2", "proj/b:3"] {
        skopeo_copy(&dist, &a, name, name, false).await;
    }
    let (code, out, err) = run_verify(&args);
    assert_eq!(code, 1, "stdout: {out}\nstderr: {err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let failing: Vec<(String, String, String)> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["status"] != "ok")
        .map(|i| {
            let s = |k: &str| i[k].as_str().unwrap().to_string();
            (s("status"), s("repository"), s("tag"))
        })
        .collect();
    assert_eq!(
        failing,
        [("different".into(), "proj/web".into(), "0.2.0".into())],
        "{out}"
    );
    assert_eq!(v["totals"]["ok"], 7, "{out}");

    // The right 0.2.0 replaces it (the adapter deletes the old version first): complete.
    let r = upload("0.2.0", 16).send_ok().await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let (code, out, err) = run_verify(&args);
    assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["complete"], true, "{out}");
    assert_eq!(v["totals"]["ok"], 8, "{out}");

    // Without charts and with the tag filter, the images present make it complete.
    let images = [
        "--source-kind",
        "harbor",
        "--project",
        "proj",
        "--no-charts",
        "--tag",
        "1",
    ];
    let (code, out, _) = run_verify(&[&as_admin[..], &images].concat());
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("COMPLETE"), "{out}");

    // Wrong credentials: an error, not a report.
    let wrong = ["--source-creds", "admin:wrong", "--source-kind", "harbor"];
    let (code, out, err) = run_verify(&[&from[..], &wrong].concat());
    assert_eq!(code, 2, "{out}");
    assert!(err.contains("credentials refused"), "{err}");
    assert!(!err.contains("wrong"), "the password leaked: {err}");
    adapter.stop().await;
    handle.stop(true).await;
}

/// (tag, digest) of `repo` in the distribution, in tag order.
async fn harbor_tags(dist: &str, repo: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for t in ["1", "2", "3"] {
        let r = reqwest::Client::new()
            .head(format!("{dist}/v2/{repo}/manifests/{t}"))
            .header("accept", "application/vnd.oci.image.manifest.v1+json")
            .send_ok()
            .await;
        out.push((
            t.to_string(),
            crate::common::header(&r, "docker-content-digest"),
        ));
    }
    out
}
