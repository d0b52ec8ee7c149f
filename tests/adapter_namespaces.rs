//! Namespaces created on the first push, the catalog and tag deletes through the cloud API, and
//! `X-Forwarded-*`, as a user of the adapter sees them: Harbor replays, skopeo and plain HTTP
//! against a FRESH emulator (no namespace in it), counted on the emulator's and the adapter's
//! `/metrics`.

mod common;
mod harbor;
mod oci_layout;

use crate::common::SendOk;
use std::sync::Arc;

use harbor::{Env, OCI_MANIFEST};
use reqwest::Method;
use serde_json::json;
use tcr_adapter::config::{EmulatorAccount, Secret};
use tcr_adapter::oci::Digest;

const KEYS: (&str, &str) = (common::DEMO_SECRET_ID, common::DEMO_SECRET_KEY);

#[tokio::test]
async fn harbor_replays_with_api_keys_create_each_namespace() {
    let e = Env::default().await;
    assert!(e.namespaces().is_empty());
    e.replay_1_8("h18/app", KEYS.0, KEYS.1).await;
    e.replay_1_10("h110/app", KEYS.0, KEYS.1).await;
    e.replay_2_0("h20/multi", KEYS.0, KEYS.1).await;
    assert_eq!(e.namespaces(), ["h110", "h18", "h20"]);
    assert_eq!(e.creates_ok().await, 3);
    // The adapter counts the ensures (created, then found in its cache).
    let m = e.adapter_metrics().await;
    assert!(m.contains("tcr_adapter_namespace_ensures_total"), "{m}");
    e.adapter.stop().await;
}

#[tokio::test]
async fn harbor_replays_with_registry_credentials_use_the_provisioner_keys() {
    let e = Env::default().await;
    let (u, p) = (e.user.clone(), e.pass.clone());
    e.replay_1_8("l18/app", &u, &p).await;
    e.replay_1_10("l110/app", &u, &p).await;
    e.replay_2_0("l20/multi", &u, &p).await;
    assert_eq!(e.namespaces(), ["l110", "l18", "l20"]);
    assert_eq!(e.creates_ok().await, 3);
    e.adapter.stop().await;
}

#[tokio::test]
async fn registry_credentials_without_provisioner_keys_are_told_which_keys_are_needed() {
    let e = Env::without_provisioner_keys().await;
    let t = e
        .token_as(&e.user, &e.pass, &["repository:nokeys/app:pull,push"])
        .await;
    assert_eq!(e.head_manifest("nokeys/app", "v1", &t).await, 404);
    let r = e.start_upload("nokeys/app", &t).await;
    assert_eq!(r.status(), 403);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["errors"][0]["code"], "DENIED");
    let msg = v["errors"][0]["message"].as_str().unwrap();
    assert!(
        msg.contains("creating namespace \"nokeys\" needs TencentCloud API keys")
            && msg.contains("tcr.secret_id and tcr.secret_key"),
        "{msg}"
    );
    assert!(e.namespaces().is_empty());
    assert_eq!(e.api_calls(&[r#"action="CreateNamespace""#]).await, 0);
    e.adapter.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skopeo_copies_20_images_into_5_namespaces_creating_each_once() {
    common::require_tool("skopeo");
    let e = Env::default().await;
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let mut layout = oci_layout::Layout::new(&src);
    for i in 0..20u64 {
        layout.tag_image(&format!("t{i}"), i + 1);
    }
    layout.finish();
    let creds = format!("{}:{}", KEYS.0, KEYS.1);
    let host = e.adapter.addr.to_string();
    for i in 0..20 {
        let from = format!("oci:{}:t{i}", src.display());
        let to = format!("docker://{host}/sk{}/app{i}:v1", i % 5);
        common::skopeo(&[
            "copy",
            "--preserve-digests",
            "--dest-tls-verify=false",
            "--dest-creds",
            &creds,
            &from,
            &to,
        ])
        .await;
    }
    assert_eq!(e.namespaces(), ["sk0", "sk1", "sk2", "sk3", "sk4"]);
    assert_eq!(e.creates_ok().await, 5);
    assert_eq!(e.api_calls(&[r#"action="CreateNamespace""#]).await, 5);
    e.adapter.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_pushes_into_8_new_namespaces_create_each_exactly_once() {
    let e = Arc::new(Env::default().await);
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let e = e.clone();
            tokio::spawn(async move {
                let repo = format!("race{}/app{i}", i % 8);
                let t = e
                    .keys_token(&[&format!("repository:{repo}:pull,push")])
                    .await;
                let blob = format!("blob-{i}").into_bytes();
                e.push_blob(&repo, &t, &blob, false, i % 2 == 0).await;
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("push succeeds");
    }
    let want: Vec<String> = (0..8).map(|i| format!("race{i}")).collect();
    assert_eq!(e.namespaces(), want);
    assert_eq!(e.api_calls(&[r#"action="CreateNamespace""#]).await, 8);
    assert_eq!(e.creates_ok().await, 8);
}

#[tokio::test]
async fn throttled_cloud_api_is_retried_and_the_pushes_succeed() {
    let e = Env::start(
        |ec| ec.faults.api_qps_limit = 2,
        // The adapter's own limit above the emulator's: some calls are throttled and retried.
        |c| c.tcr.api_qps = 3,
    )
    .await;
    for ns in ["thr-a", "thr-b", "thr-c"] {
        e.replay_1_10(&format!("{ns}/app"), KEYS.0, KEYS.1).await;
    }
    assert_eq!(e.namespaces(), ["thr-a", "thr-b", "thr-c"]);
    assert!(
        e.api_calls(&[r#"result="RequestLimitExceeded""#]).await > 0,
        "the emulator throttled"
    );
    let m = e.adapter_metrics().await;
    let retried = harbor::sum_metric(
        &m,
        "tcr_adapter_cloud_api_retries_total{",
        &[r#"cause="throttled""#],
    );
    assert!(retried > 0, "{m}");
    e.adapter.stop().await;
}

/// The refusal the token endpoint gives for a push scope: (status, OCI code, message).
async fn refused(e: &Env, user: &str, pass: &str, repo: &str) -> (u16, String, String) {
    let (status, body) = e
        .try_token(user, pass, &[&format!("repository:{repo}:pull,push")])
        .await
        .expect_err("push scope refused");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let code = v["errors"][0]["code"].as_str().unwrap_or_default().into();
    let msg = v["errors"][0]["message"]
        .as_str()
        .unwrap_or_default()
        .into();
    (status.as_u16(), code, msg)
}

#[tokio::test]
async fn refusals_say_why_and_create_nothing() {
    let limited = EmulatorAccount {
        secret_id: "AKIDlimitedACCOUNT00000000000000".into(),
        secret_key: Secret::new("limitedSECRETkey0000000000000000"),
        uin: "100000000002".into(),
        actions: vec!["DescribeNamespaces".into(), "CreateInstanceToken".into()],
        ..Default::default()
    };
    let lim = limited.clone();
    let e = Env::start(
        move |ec| ec.accounts.push(lim),
        |c| c.namespaces.deny = vec!["secret-*".into()],
    )
    .await;
    // TCR's naming rule, checked up front.
    let (s, code, msg) = refused(&e, KEYS.0, KEYS.1, "x/app").await;
    assert_eq!((s, code.as_str()), (403, "DENIED"), "{msg}");
    assert!(msg.contains("2 to 30 characters"), "{msg}");
    // A denied pattern.
    let (s, _, msg) = refused(&e, KEYS.0, KEYS.1, "secret-stuff/app").await;
    assert_eq!(s, 403, "{msg}");
    assert!(
        msg.contains("secret-stuff") && msg.contains("secret-*"),
        "{msg}"
    );
    // A key that may not create namespaces (CAM).
    let (s, _, msg) = refused(
        &e,
        &limited.secret_id,
        limited.secret_key.expose(),
        "camless/app",
    )
    .await;
    assert_eq!(s, 403, "{msg}");
    assert!(msg.contains("CreateNamespace"), "{msg}");
    // The same refusal on a POST with Basic credentials straight on /v2/.
    let r = e
        .http
        .post(format!("{}/v2/camless/app/blobs/uploads/", e.base))
        .header(
            "Authorization",
            harbor::basic(&limited.secret_id, limited.secret_key.expose()),
        )
        .header("Content-Length", "0")
        .send_ok()
        .await;
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("CreateNamespace"));
    assert!(e.namespaces().is_empty());
    assert_eq!(e.creates_ok().await, 0);
    e.adapter.stop().await;

    // Dry run: says what would be created, creates nothing.
    let e = Env::start(|_| {}, |c| c.namespaces.dry_run = true).await;
    let (s, _, msg) = refused(&e, KEYS.0, KEYS.1, "rehearsal/app").await;
    assert_eq!(s, 403, "{msg}");
    assert!(
        msg.contains("dry run") && msg.contains("rehearsal"),
        "{msg}"
    );
    assert!(e.namespaces().is_empty());
    e.adapter.stop().await;
}

#[tokio::test]
async fn mapped_project_lands_in_its_namespace_under_the_clients_name() {
    let e = Env::start(
        |_| {},
        |c| {
            c.namespaces
                .map
                .insert("harbor-proj".into(), "tcr-ns".into());
        },
    )
    .await;
    let t = e
        .keys_token(&["repository:harbor-proj/app:pull,push", "registry:catalog:*"])
        .await;
    let (layer, config, manifest) = harbor::image("mapped", OCI_MANIFEST);
    // push_blob checks that Location names harbor-proj/app on the adapter.
    e.push_blob("harbor-proj/app", &t, &layer, false, true)
        .await;
    e.push_blob("harbor-proj/app", &t, &config, false, true)
        .await;
    for tag in ["a", "b"] {
        e.put_manifest("harbor-proj/app", tag, &t, OCI_MANIFEST, &manifest)
            .await;
    }
    assert_eq!(e.namespaces(), ["tcr-ns"]);
    let r = e.get("/v2/harbor-proj/app/tags/list?n=1", &t).await;
    assert_eq!(r.status(), 200);
    let link = crate::common::header(&r, "link");
    assert!(
        link.starts_with("</v2/harbor-proj/app/tags/list?"),
        "{link}"
    );
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["name"], "harbor-proj/app");
    // Catalog through the cloud API (API keys) and through the data plane (registry creds).
    let r = e.get("/v2/_catalog", &t).await;
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v, json!({"repositories": ["harbor-proj/app"]}));
    let lt = e.token_as(&e.user, &e.pass, &["registry:catalog:*"]).await;
    let r = e.get("/v2/_catalog", &lt).await;
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["repositories"], json!(["harbor-proj/app"]));
    e.adapter.stop().await;
}

#[tokio::test]
async fn catalog_and_tag_deletes_go_through_the_cloud_api() {
    let e = Env::default().await;
    let repos = ["cat-a/one", "cat-a/two", "cat-b/three"];
    let mut scopes: Vec<String> = repos
        .iter()
        .map(|r| format!("repository:{r}:pull,push,delete"))
        .collect();
    scopes.push("registry:catalog:*".into());
    let scopes: Vec<&str> = scopes.iter().map(String::as_str).collect();
    let t = e.keys_token(&scopes).await;
    let (layer, config, manifest) = harbor::image("cat", OCI_MANIFEST);
    for r in repos {
        e.push_blob(r, &t, &layer, false, true).await;
        e.push_blob(r, &t, &config, false, true).await;
        e.put_manifest(r, "v1", &t, OCI_MANIFEST, &manifest).await;
    }
    e.put_manifest("cat-a/one", "v2", &t, OCI_MANIFEST, &manifest)
        .await;
    let r = e.get("/v2/_catalog?n=2", &t).await;
    assert_eq!(r.status(), 200);
    let link = crate::common::header(&r, "link");
    assert_eq!(link, "</v2/_catalog?last=cat-a/two&n=2>; rel=\"next\"");
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v, json!({"repositories": ["cat-a/one", "cat-a/two"]}));
    let r = e.get(&link[1..link.find('>').unwrap()], &t).await;
    assert!(r.headers().get("link").is_none());
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v, json!({"repositories": ["cat-b/three"]}));
    assert!(e.api_calls(&[r#"action="DescribeRepositories""#]).await > 0);
    let r = e.get("/v2/_catalog?n=many", &t).await;
    assert_eq!(r.status(), 400);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["errors"][0]["code"], "PAGINATION_NUMBER_INVALID");

    // Delete by tag: DeleteImage; the tag is gone, the manifest stays by digest.
    let d = Digest::sha256_of(&manifest).to_string();
    let r = e.delete("/v2/cat-a/one/manifests/v1", &t).await;
    assert_eq!(r.status(), 202, "{:?}", r.text().await);
    assert_eq!(e.api_calls(&[r#"action="DeleteImage""#]).await, 1);
    assert_eq!(e.get("/v2/cat-a/one/manifests/v1", &t).await.status(), 404);
    assert_eq!(
        e.get(&format!("/v2/cat-a/one/manifests/{d}"), &t)
            .await
            .status(),
        200
    );
    let v: serde_json::Value = e
        .get("/v2/cat-a/one/tags/list", &t)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["tags"], json!(["v2"]));
    // Delete by digest: forwarded to the data plane.
    let r = e
        .delete(&format!("/v2/cat-b/three/manifests/{d}"), &t)
        .await;
    assert_eq!(r.status(), 202, "{:?}", r.text().await);
    assert_eq!(e.api_calls(&[r#"action="DeleteImage""#]).await, 1);
    assert_eq!(
        e.get(&format!("/v2/cat-b/three/manifests/{d}"), &t)
            .await
            .status(),
        404
    );
    e.adapter.stop().await;
}

#[tokio::test]
async fn instance_is_discovered_from_the_registry_url() {
    let e = Env::undiscovered().await;
    e.replay_1_10("disc/app", KEYS.0, KEYS.1).await;
    assert_eq!(e.namespaces(), ["disc"]);
    assert!(e.api_calls(&[r#"action="DescribeInstances""#]).await >= 1);
    e.adapter.stop().await;
}

#[tokio::test]
async fn forwarded_headers_shape_locations_and_the_realm_only_when_trusted() {
    let fwd: &[(&str, &str)] = &[
        ("X-Forwarded-Proto", "https"),
        ("X-Forwarded-Host", "reg.example.com"),
        ("Content-Length", "0"),
    ];
    for trust in [true, false] {
        let e = Env::start(|_| {}, |c| c.server.trust_forwarded_headers = trust).await;
        let t = e.keys_token(&["repository:fwd/app:pull,push"]).await;
        let r = e
            .send_with(Method::POST, "/v2/fwd/app/blobs/uploads/", &t, fwd)
            .await;
        assert_eq!(r.status(), 202);
        let loc = crate::common::header(&r, "location");
        let r = e.req(Method::GET, "/v2/", None, fwd, None).await;
        assert_eq!(r.status(), 401);
        let chal = crate::common::header(&r, "www-authenticate");
        let base = if trust {
            "https://reg.example.com".to_string()
        } else {
            e.base.clone()
        };
        assert!(
            loc.starts_with(&format!("{base}/v2/fwd/app/blobs/uploads/")),
            "trust={trust}: {loc}"
        );
        harbor::assert_realm_under(&chal, &base, &format!("trust={trust}"));
        e.adapter.stop().await;
    }
}

#[tokio::test]
async fn a_mount_into_a_new_namespace_creates_it() {
    let e = Env::default().await;
    let t = e.keys_token(&["repository:mnt-src/app:pull,push"]).await;
    let blob = b"mounted blob".to_vec();
    e.push_blob("mnt-src/app", &t, &blob, false, true).await;
    // Basic straight on /v2/, no token endpoint first: the mount POST ensures its namespace.
    let d = Digest::sha256_of(&blob);
    let r = e
        .http
        .post(format!(
            "{}/v2/mnt-dst/app/blobs/uploads/?mount={d}&from=mnt-src/app",
            e.base
        ))
        .header("Authorization", harbor::basic(KEYS.0, KEYS.1))
        .header("Content-Length", "0")
        .send_ok()
        .await;
    assert_eq!(r.status(), 201, "{:?}", r.text().await);
    assert_eq!(e.namespaces(), ["mnt-dst", "mnt-src"]);
    e.adapter.stop().await;
}

#[tokio::test]
async fn a_namespace_deleted_behind_the_adapters_back_is_created_again() {
    let e = Env::default().await;
    let t = e.keys_token(&["repository:gone/app:pull,push"]).await;
    assert_eq!(e.namespaces(), ["gone"]);
    e.emu.state.namespaces.delete("gone").unwrap();
    // The adapter still believes "gone" exists; TCR says "project gone not found".
    let r = e.start_upload("gone/app", &t).await;
    assert_eq!(r.status(), 202, "{:?}", r.text().await);
    assert_eq!(e.namespaces(), ["gone"]);
    assert_eq!(e.creates_ok().await, 2);
    e.adapter.stop().await;
}

/// A Harbor job asks a pull-scoped token first (its manifest HEAD) in a namespace TCR has but
/// the adapter has not met: its existence is checked then, in the background, so that the
/// push token the job asks next finds it known (no cloud call on that token's way); nothing
/// is created.
#[tokio::test]
async fn a_pull_token_looks_ahead_whether_the_namespace_exists() {
    let e = Env::default().await;
    e.emu.state.namespaces.create("ahead", false).unwrap();
    let describes = || e.api_calls(&[r#"action="DescribeNamespaces""#]);
    assert_eq!(describes().await, 0);
    e.keys_token(&["repository:ahead/app:pull"]).await;
    let mut seen = 0;
    for _ in 0..250 {
        seen = describes().await;
        if seen == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(
        seen, 1,
        "the namespace was not looked up after the pull token"
    );
    e.keys_token(&["repository:ahead/app:pull,push"]).await;
    assert_eq!(
        describes().await,
        1,
        "the push token asked the cloud API again"
    );
    assert_eq!(e.creates_ok().await, 0);
    assert_eq!(e.namespaces(), ["ahead"]);
    e.adapter.stop().await;
}
