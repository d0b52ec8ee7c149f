//! Every listing of the adapter is complete and duplicate-free under every `[emulator.quirks]`
//! setting (docs/tcr-contract.md §2–3: what `Offset` means, partial or exact name filters), with
//! more than one page of each kind: 250 namespaces, 250 repositories in one namespace, 250 tags
//! in one repository, read through `/v2/_catalog` (Link paging), `tags/list` (Link paging),
//! `/api/projects` (Link paging), `/api/repositories`, its tags, and the chart listing Harbor
//! makes across projects (projects, then each project's charts and index). `verify` says
//! "complete" on a complete 250-repository migration under each setting too.
//!
//! The emulator is seeded through its storage (one tiny manifest under many names), not by 250
//! uploads: the listings, not the pushes, are under test.

mod common;
mod harbor;
mod verify_support;

use std::collections::BTreeSet;

use crate::common::SendOk;
use futures_util::StreamExt;
use harbor::Env;
use tcr_adapter::config::{EmulatorQuirks, NameFilter, Paging};
use tcr_adapter::emulator::storage::ManifestMeta;
use tcr_adapter::emulator::EmulatorHandle;
use tcr_adapter::oci::Digest;

const N: usize = 250;
/// Every setting the listings are proven under: each reading of `Offset` with partial and exact
/// name filters, the strict page number that refuses `Offset: 0`, and a service that clamps
/// `Limit` (7 items a call whatever is asked) under three readings.
fn settings() -> Vec<EmulatorQuirks> {
    let q = |paging, name_filter, limit_cap| EmulatorQuirks {
        paging,
        name_filter,
        limit_cap,
    };
    let mut all = Vec::new();
    for paging in [
        Paging::Documented,
        Paging::PageFromZero,
        Paging::PageFromOne,
        Paging::Items,
    ] {
        for name_filter in [NameFilter::Partial, NameFilter::Exact] {
            all.push(q(paging, name_filter, None));
        }
    }
    all.push(q(Paging::PageFromOneStrict, NameFilter::Partial, None));
    for paging in [Paging::Documented, Paging::Items, Paging::PageFromOneStrict] {
        all.push(q(paging, NameFilter::Partial, Some(7)));
    }
    all
}

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// The blobs and manifest of one tiny image: (layer, config, manifest).
fn tiny_image() -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let layer = b"listing-matrix layer".to_vec();
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#
            .to_vec();
    let desc = |mt: &str, b: &[u8]| serde_json::json!({"mediaType": mt, "digest": Digest::sha256_of(b).to_string(), "size": b.len()});
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": desc("application/vnd.oci.image.config.v1+json", &config),
        "layers": [desc("application/vnd.oci.image.layer.v1.tar+gzip", &layer)],
    })
    .to_string()
    .into_bytes();
    (layer, config, manifest)
}

/// Repository `i` of the big namespace and its tags: `big/r000` holds `t000`…`t249`, every
/// other `big/rNNN` holds `v1`.
fn repo(i: usize) -> String {
    format!("big/r{i:03}")
}
fn tags_of(i: usize) -> Vec<String> {
    if i == 0 {
        (0..N).map(|t| format!("t{t:03}")).collect()
    } else {
        vec!["v1".to_string()]
    }
}

/// 250 namespaces `ns-000`… plus `big`, whose 250 repositories hold the tiny image.
fn seed(emu: &EmulatorHandle, manifest: &[u8]) {
    let s = &emu.state;
    for i in 0..N {
        s.namespaces.create(&format!("ns-{i:03}"), false).unwrap();
    }
    s.namespaces.create("big", false).unwrap();
    let digest = Digest::sha256_of(manifest);
    for i in 0..N {
        for tag in tags_of(i) {
            let meta: ManifestMeta = serde_json::from_value(serde_json::json!({
                "media_type": OCI_MANIFEST, "size": manifest.len(), "created_ms": 0,
            }))
            .unwrap();
            s.storage
                .put_manifest(&repo(i), &digest, manifest, meta, Some(&tag))
                .unwrap();
        }
    }
}

/// A data dir holding the seeded emulator (and its two charts), made once: seeding writes
/// hundreds of fsynced files, a copy of the result costs nothing.
async fn template(with_charts: bool) -> (tempfile::TempDir, std::path::PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("emulator");
    let mut cfg = common::emulator_config(&data);
    cfg.upload_purge_after_secs = 0;
    let emu = common::start_emulator_with(cfg).await;
    seed(&emu, &tiny_image().2);
    if with_charts {
        let (user, pass) = common::instance_credentials(&emu);
        upload_chart(&emu, &user, &pass, "ns-000", "first").await;
        upload_chart(&emu, &user, &pass, &format!("ns-{:03}", N - 1), "last").await;
    }
    emu.stop().await;
    (tmp, data)
}

/// A copy of the data dir `from` in a new temporary directory.
fn copy_of(from: &std::path::Path) -> (tempfile::TempDir, std::path::PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let to = tmp.path().join("emulator");
    let ok = std::process::Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(&to)
        .status()
        .unwrap()
        .success();
    assert!(ok, "cp -a {}", from.display());
    (tmp, to)
}

/// The names, checked to be without duplicates.
fn unique(names: Vec<String>, what: &str) -> BTreeSet<String> {
    let n = names.len();
    let set: BTreeSet<String> = names.into_iter().collect();
    assert_eq!(set.len(), n, "{what}: duplicates");
    set
}

/// Follow `Link: <…>; rel="next"` from `path`, collecting `field` of each page (`field` empty: the
/// page is an array of objects with `name`). `get` sends one request.
async fn follow<F, Fut>(mut path: String, field: &str, get: F) -> (Vec<String>, usize)
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = reqwest::Response>,
{
    let mut out = Vec::new();
    let mut pages = 0;
    loop {
        pages += 1;
        assert!(pages < 100, "paging does not end at {path}");
        let r = get(path.clone()).await;
        assert_eq!(r.status(), 200, "{path}");
        let link = r
            .headers()
            .get("link")
            .map(|v| v.to_str().unwrap().to_string());
        let v: serde_json::Value = r.json().await.unwrap();
        let items = if field.is_empty() { &v } else { &v[field] };
        for i in items.as_array().unwrap_or(&Vec::new()) {
            let name = if field.is_empty() { &i["name"] } else { i };
            out.push(name.as_str().unwrap().to_string());
        }
        match link {
            Some(l) => path = l[l.find('<').unwrap() + 1..l.find('>').unwrap()].to_string(),
            None => return (out, pages),
        }
    }
}

async fn upload_chart(emu: &EmulatorHandle, user: &str, pass: &str, ns: &str, name: &str) {
    let archive = common::charts::chart_archive(name, "1.0.0", 16);
    let (ct, body) = common::charts::multipart_chart(&format!("{name}-1.0.0.tgz"), &archive);
    let r = reqwest::Client::new()
        .post(format!("{}/api/chartrepo/{ns}/charts", emu.registry_url()))
        .header("authorization", common::basic(user, pass))
        .header("content-type", ct)
        .body(body)
        .send_ok()
        .await;
    assert_eq!(r.status(), 201, "{:?}", r.text().await);
}

/// Every listing through the adapter, under one quirk setting.
async fn listings_are_complete(quirks: EmulatorQuirks, seeded: &std::path::Path) {
    let what = format!("{quirks:?}");
    let (_copy, data) = copy_of(seeded);
    let e = Env::start(
        |c| {
            c.quirks = quirks;
            c.data_dir = data;
        },
        |_| {},
    )
    .await;
    let keys = common::basic(common::DEMO_SECRET_ID, common::DEMO_SECRET_KEY);
    let api = |path: String| {
        let (e, keys) = (&e, &keys);
        async move {
            e.http
                .get(format!("{}{path}", e.base))
                .header("authorization", keys.as_str())
                .send_ok()
                .await
        }
    };
    let repos: BTreeSet<String> = (0..N).map(repo).collect();
    let tags: BTreeSet<String> = tags_of(0).into_iter().collect();

    // /v2/_catalog, 100 per page.
    let t = e.keys_token(&["registry:catalog:*"]).await;
    let (names, pages) = follow("/v2/_catalog?n=100".into(), "repositories", |p| {
        let (e, t) = (&e, &t);
        async move { e.get(&p, t).await }
    })
    .await;
    assert_eq!(unique(names, &what), repos, "{what}: catalog");
    assert_eq!(pages, 3, "{what}");

    // tags/list of the repository with 250 tags, 100 per page.
    let t = e.keys_token(&["repository:big/r000:pull"]).await;
    let (names, pages) = follow("/v2/big/r000/tags/list?n=100".into(), "tags", |p| {
        let (e, t) = (&e, &t);
        async move { e.get(&p, t).await }
    })
    .await;
    assert_eq!(unique(names, &what), tags, "{what}: tags/list");
    assert_eq!(pages, 3, "{what}");

    // /api/projects, 100 per page: 251 projects.
    let (projects, pages) = follow("/api/projects?page=1&page_size=100".into(), "", api).await;
    let projects = unique(projects, &what);
    let mut want: BTreeSet<String> = (0..N).map(|i| format!("ns-{i:03}")).collect();
    want.insert("big".into());
    assert_eq!(projects, want, "{what}: /api/projects");
    assert_eq!(pages, 3, "{what}");
    // One project by name: exactly it, whether TCR's filter is partial or exact.
    let r = api("/api/projects?name=ns-001".into()).await;
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(common::strs(&v, "name"), ["ns-001"], "{what}");
    let r = api("/api/projects?name=big".into()).await;
    let v: serde_json::Value = r.json().await.unwrap();
    let big_id = v[0]["project_id"].as_i64().unwrap();

    // /api/repositories of the big project, and the tags of the repository with 250.
    let r = api(format!("/api/repositories?project_id={big_id}")).await;
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    let names = common::strs(&v, "name")
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(unique(names, &what), repos, "{what}: /api/repositories");
    let r = api("/api/repositories/big/r000/tags".into()).await;
    let v: serde_json::Value = r.json().await.unwrap();
    let names = common::strs(&v, "name")
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(
        unique(names, &what),
        tags,
        "{what}: /api/repositories/<r>/tags"
    );

    // Charts as Harbor lists them: every project, then its charts (and the index where any).
    let mut charts = Vec::new();
    for p in &projects {
        let r = api(format!("/api/chartrepo/{p}/charts")).await;
        assert_eq!(r.status(), 200, "{what}: charts of {p}");
        let v: serde_json::Value = r.json().await.unwrap();
        for name in common::strs(&v, "name") {
            let r = api(format!("/chartrepo/{p}/index.yaml")).await;
            let index = r.text().await.unwrap();
            assert!(index.contains(&format!("{name}-1.0.0.tgz")), "{index}");
            charts.push(format!("{p}/{name}"));
        }
    }
    let want: BTreeSet<String> = ["ns-000/first".to_string(), format!("ns-{:03}/last", N - 1)]
        .into_iter()
        .collect();
    assert_eq!(unique(charts, &what), want, "{what}: charts");

    // The pager said which mode it met (the log; `check` prints it too).
    e.adapter.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_listing_is_complete_under_every_quirk() {
    let (_tmp, seeded) = template(true).await;
    for quirks in settings() {
        listings_are_complete(quirks, &seeded).await;
    }
}

/// A verify configuration towards `emu` with the demo keys.
fn verify_config(dir: &std::path::Path, emu: &EmulatorHandle) -> String {
    common::verify_toml(dir, emu, 1000, "")
        .display()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_says_complete_on_250_repositories_under_every_quirk() {
    let tmp = tempfile::tempdir().unwrap();
    let (_dist, dist) = verify_support::start_distribution(tmp.path()).await;
    let http = reqwest::Client::new();
    let (layer, config, manifest) = tiny_image();
    // The blobs once, then mounted into every other repository; manifests in parallel.
    for blob in [&layer, &config] {
        let d = Digest::sha256_of(blob).to_string();
        let r = common::upload_blob(&http, &dist, &repo(0), blob, &d).await;
        assert_eq!(r.status(), 201);
    }
    let puts = (0..N).flat_map(|i| tags_of(i).into_iter().map(move |t| (i, t)));
    futures_util::stream::iter(puts)
        .for_each_concurrent(16, |(i, tag)| {
            let (http, dist, manifest) = (&http, &dist, &manifest);
            let (layer, config) = (&layer, &config);
            async move {
                if i > 0 {
                    for blob in [layer, config] {
                        let d = Digest::sha256_of(blob).to_string();
                        let r = http
                            .post(format!(
                                "{dist}/v2/{}/blobs/uploads/?mount={d}&from={}",
                                repo(i),
                                repo(0)
                            ))
                            .send_ok()
                            .await;
                        assert_eq!(r.status(), 201, "mount into {}", repo(i));
                    }
                }
                let r = http
                    .put(format!("{dist}/v2/{}/manifests/{tag}", repo(i)))
                    .header("content-type", OCI_MANIFEST)
                    .body(manifest.clone())
                    .send_ok()
                    .await;
                assert_eq!(r.status(), 201);
            }
        })
        .await;
    let (_tmp, seeded) = template(false).await;
    for quirks in settings() {
        let what = format!("{quirks:?}");
        let (dir, data) = copy_of(&seeded);
        let mut cfg = common::emulator_config(&data);
        cfg.quirks = quirks;
        let emu = common::start_emulator_with(cfg).await;
        let config = verify_config(dir.path(), &emu);
        let args = ["--config", &config, "--source", &dist, "--format", "json"];
        let (code, out, err) = verify_support::run_verify(&args);
        assert_eq!(code, 0, "{what}: stdout {out}\nstderr {err}");
        let json: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(json["complete"], true, "{what}: {out}");
        assert_eq!(
            json["totals"]["ok"].as_u64(),
            Some((2 * N - 1) as u64),
            "{what}: every image of the 250 repositories"
        );
        if quirks.name_filter == NameFilter::Partial {
            // Half the repositories gone: verify must see it (it reads every page).
            for i in (0..N).step_by(2) {
                emu.state.storage.delete_repository(&repo(i)).await.unwrap();
            }
            let (code, out, _) = verify_support::run_verify(&args);
            assert_eq!(code, 1, "{what}: {out}");
            let json: serde_json::Value = serde_json::from_str(&out).unwrap();
            assert_eq!(
                json["totals"]["missing"].as_u64(),
                Some((N + N / 2 - 1) as u64),
                "{what}"
            );
        }
        emu.stop().await;
    }
}
