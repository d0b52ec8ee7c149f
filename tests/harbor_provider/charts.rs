//! Charts through the adapter: override uploads under both duplicate behaviours, the pitfalls of
//! `harbor-api-shim.md` §5 as a user sees them, the pull direction and a real Helm client.

use reqwest::{Method, StatusCode};
use serde_json::Value;
use tcr_adapter::config::ChartDuplicates;

use crate::common::charts::{chart_archive, multipart_chart, sha256_hex};
use crate::harbor::Env;
use crate::{
    emulator_chart, emulator_chart_calls, error_message, json, prepare_for_push, replicate_chart,
    ChartRun, Creds, Gen,
};

/// One chart replication (no override) of a chart TCR does not hold yet: it is uploaded.
async fn uploads_new_chart(
    e: &Env,
    g: Gen,
    c: &Creds,
    project: &str,
    chart: (&str, &str),
    archive: &[u8],
) {
    let ran = replicate_chart(e, g, c, project, chart, archive, false).await;
    assert_eq!(ran, ChartRun::Uploaded);
}

#[tokio::test]
async fn an_override_upload_succeeds_whatever_tcr_does_with_duplicates() {
    let first = chart_archive("dup", "1.0.0", 100);
    let second = chart_archive("dup", "1.0.0", 200);
    for mode in [ChartDuplicates::Conflict, ChartDuplicates::Overwrite] {
        let e = Env::start(|c| c.chart_duplicates = mode, |_| {}).await;
        let c = Creds::api_keys();
        prepare_for_push(&e, Gen::V2_5, &c, &["dups"]).await;
        for archive in [&first, &second] {
            let ran =
                replicate_chart(&e, Gen::V2_5, &c, "dups", ("dup", "1.0.0"), archive, true).await;
            assert_eq!(ran, ChartRun::Uploaded);
        }
        let (_, stored) = emulator_chart(&e, "dups", "dup-1.0.0.tgz").await;
        assert!(
            stored == second,
            "{mode:?}: the second upload wins (goharbor/harbor#16243)"
        );
        e.adapter.stop().await;
    }
}

#[tokio::test]
async fn absent_is_404_never_403() {
    // goharbor/harbor#18171: ChartExist on a private or missing project must say "absent".
    let e = Env::default().await;
    let c = Creds::long_term(&e);
    e.emu.state.namespaces.create("private-ns", false).unwrap();
    for path in [
        "/api/chartrepo/private-ns/charts/nope/1.0.0",
        "/api/chartrepo/no-such-ns/charts/nope/1.0.0",
        "/api/chartrepo/no-such-ns/charts/nope",
    ] {
        let (s, v) = Gen::V1_8.at(&e, &c).get_json(path).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{path}: {v}");
        assert!(error_message(&v).contains("not found"), "{v}");
    }
    // A wrong password is a 401, not an "absent".
    let bad = Creds {
        user: c.user.clone(),
        pass: "wrong".into(),
    };
    let r = Gen::V1_8
        .at(&e, &bad)
        .get("/api/chartrepo/private-ns/charts/x/1")
        .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    e.adapter.stop().await;
}

#[tokio::test]
async fn a_body_that_is_not_a_chart_is_refused_before_tcr_sees_it() {
    // goharbor/harbor#8131: Harbor 1.8 uploaded whatever its download returned, error pages too.
    let e = Env::default().await;
    let c = Creds::api_keys();
    prepare_for_push(&e, Gen::V1_8, &c, &["notgz"]).await;
    let body = multipart_chart("x.tgz", b"{\"errors\":[{\"code\":\"NOT_FOUND\"}]}");
    let r = Gen::V1_8
        .at(&e, &c)
        .call(Method::POST, "/api/chartrepo/notgz/charts", Some(body))
        .await;
    let (s, v) = json(r).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let msg = v["errors"][0]["message"].as_str().unwrap();
    assert!(
        msg.contains("gzip: invalid header") && msg.contains("error page"),
        "{msg}"
    );
    assert_eq!(
        emulator_chart_calls(&e, "POST").await,
        0,
        "nothing reached TCR"
    );
    e.adapter.stop().await;
}

#[tokio::test]
async fn charts_read_back_with_relative_urls_and_case_insensitive_files() {
    let archive = chart_archive("MixedCase", "2.1.0", 512);
    let e = Env::default().await;
    let c = Creds::api_keys();
    prepare_for_push(&e, Gen::V1_10, &c, &["reads"]).await;
    uploads_new_chart(
        &e,
        Gen::V1_10,
        &c,
        "reads",
        ("MixedCase", "2.1.0"),
        &archive,
    )
    .await;
    // Pull direction: list → versions → detail → download (metadata.urls[0], relative).
    let (s, list) = Gen::V1_10
        .at(&e, &c)
        .get_json("/api/chartrepo/reads/charts")
        .await;
    assert_eq!(
        (s, list[0]["name"].as_str()),
        (StatusCode::OK, Some("MixedCase"))
    );
    let (_, versions) = Gen::V1_10
        .at(&e, &c)
        .get_json("/api/chartrepo/reads/charts/MixedCase")
        .await;
    assert_eq!(versions[0]["version"], "2.1.0");
    assert_eq!(versions[0]["labels"], serde_json::json!([]));
    let (_, detail) = Gen::V1_10
        .at(&e, &c)
        .get_json("/api/chartrepo/reads/charts/MixedCase/2.1.0")
        .await;
    let url = detail["metadata"]["urls"][0].as_str().unwrap().to_string();
    assert_eq!(
        url, "charts/MixedCase-2.1.0.tgz",
        "relative, as Harbor's ChartMuseum serves it"
    );
    let r = Gen::V1_10
        .at(&e, &c)
        .get(&format!("/chartrepo/reads/{url}"))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.bytes().await.unwrap() == archive);
    // Harbor ≤ 2.0.3 / 2.1.1 lower-cases the whole download URL (goharbor/harbor#13187).
    let lower = format!("/chartrepo/reads/{}", url.to_lowercase());
    let r = Gen::V2_0.at(&e, &c).get(&lower).await;
    assert_eq!(r.status(), StatusCode::OK, "{lower}");
    assert!(r.bytes().await.unwrap() == archive);
    // The Helm index lists it with a relative url and the archive's digest.
    let r = Gen::V1_10
        .at(&e, &c)
        .get("/chartrepo/reads/index.yaml")
        .await;
    let index: Value = serde_yaml::from_str(&r.text().await.unwrap()).unwrap();
    assert_eq!(
        index["entries"]["MixedCase"][0]["urls"][0],
        "charts/MixedCase-2.1.0.tgz"
    );
    assert_eq!(
        index["entries"]["MixedCase"][0]["digest"],
        sha256_hex(&archive)
    );
    e.adapter.stop().await;
}

#[tokio::test]
async fn namespace_rename_map_applies_to_charts() {
    let archive = chart_archive("mapped", "0.0.1", 64);
    let e = Env::start(
        |_| {},
        |cfg| {
            cfg.namespaces.map = [("library".to_string(), "lib-tcr".to_string())].into();
        },
    )
    .await;
    let c = Creds::api_keys();
    prepare_for_push(&e, Gen::V2_5, &c, &["library"]).await;
    assert!(e.namespaces().contains(&"lib-tcr".to_string()));
    uploads_new_chart(&e, Gen::V2_5, &c, "library", ("mapped", "0.0.1"), &archive).await;
    assert!(emulator_chart(&e, "lib-tcr", "mapped-0.0.1.tgz").await.1 == archive);
    let (s, v) = Gen::V2_5
        .at(&e, &c)
        .get_json("/api/projects?name=library")
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v[0]["name"], "library", "projects carry client names: {v}");
    e.adapter.stop().await;
}

#[tokio::test]
async fn a_real_helm_client_adds_the_adapters_repository_and_pulls() {
    crate::common::require_tool("python3");
    let archive = chart_archive("hello", "0.3.0", 2048);
    let e = Env::default().await;
    let lt = Creds::long_term(&e);
    // Push as `helm cm-push` does (multipart `chart` to /api/chartrepo/<ns>/charts), into a
    // namespace nobody created: the adapter creates it.
    let body = multipart_chart("hello-0.3.0.tgz", &archive);
    let r = Gen::V2_5
        .at(&e, &Creds::api_keys())
        .call(Method::POST, "/api/chartrepo/helmns/charts", Some(body))
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert!(e.namespaces().contains(&"helmns".to_string()));
    let url = format!("{}/chartrepo/helmns", e.base);
    for c in [Creds::api_keys(), lt] {
        let creds = (c.user.as_str(), c.pass.as_str());
        crate::common::assert_helm_pulls(&url, creds, ("hello", "0.3.0"), &archive).await;
    }
    // Anonymous Helm against a private namespace is asked to log in (401 + Basic challenge).
    let r = e.get_anon("/chartrepo/helmns/index.yaml").await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Basic"));
    e.adapter.stop().await;
}
