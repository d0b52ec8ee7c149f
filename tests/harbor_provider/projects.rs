//! Projects and repositories: racing creation (one CreateNamespace per project), the listing
//! forms of every generation with relative paging, bad requests, callers without API keys, and
//! the pull direction (repositories and tags read from TCR through the adapter).

use futures_util::future::join_all;
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::harbor::Env;
use crate::{error_message, json, Creds, Gen, Harbor};

/// `GET <path>` answers 200 with exactly one project, `name`: the listing.
async fn lists_only(h: Harbor<'_>, path: &str, name: &str) -> serde_json::Value {
    let (s, v) = h.get_json(path).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v.as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v[0]["name"], name);
    v
}

#[tokio::test]
async fn racing_project_creation_makes_one_create_namespace_each() {
    let e = Env::default().await;
    let c = Creds::api_keys();
    // 64 projects, each asked for by three concurrent executions.
    let calls = (0..64).flat_map(|i| (0..3).map(move |_| format!("race-{i:02}")));
    let answers = join_all(calls.map(|p| {
        let (e, c) = (&e, &c);
        async move {
            let r = Gen::V1_10.at(e, c).create_project(&p, json!("false")).await;
            (p, r.status())
        }
    }))
    .await;
    for i in 0..64 {
        let p = format!("race-{i:02}");
        let mine: Vec<u16> = answers
            .iter()
            .filter(|(n, _)| *n == p)
            .map(|(_, s)| s.as_u16())
            .collect();
        assert_eq!(
            mine.iter().filter(|s| **s == 201).count(),
            1,
            "{p}: {mine:?}"
        );
        assert_eq!(
            mine.iter().filter(|s| **s == 409).count(),
            2,
            "{p}: {mine:?}"
        );
    }
    assert_eq!(
        e.creates_ok().await,
        64,
        "exactly one CreateNamespace per project"
    );
    assert_eq!(e.namespaces().len(), 64);
    e.adapter.stop().await;
}

#[tokio::test]
async fn project_listing_forms_and_paging() {
    let e = Env::default().await;
    let c = Creds::api_keys();
    for p in ["alpha", "beta", "gamma", "alpha2"] {
        let r = Gen::V1_8.at(&e, &c).create_project(p, json!(true)).await;
        assert_eq!(r.status(), 201);
    }
    // 1.x: name= (substring upstream, exact here) with page parameters.
    let v = lists_only(
        Gen::V1_8.at(&e, &c),
        "/api/projects?name=alpha&page=1&page_size=500",
        "alpha",
    )
    .await;
    assert!(v[0]["project_id"].as_i64().unwrap() > 0);
    assert_eq!(
        v[0]["metadata"]["public"], "false",
        "namespaces.public decides: {v}"
    );
    assert!(v[0].get("registry_id").is_none());
    // 2.5+: q=name={a b}.
    let (_, v) = Gen::V2_5
        .at(&e, &c)
        .get_json("/api/projects?q=name%3D%7Bbeta+nope+gamma%7D&with_detail=false")
        .await;
    let names: Vec<&str> = crate::common::strs(&v, "name");
    assert_eq!(names, ["beta", "gamma"]);
    // Paging: relative Link paths that Harbor appends to its endpoint URL.
    let r = Gen::V1_8.at(&e, &c).get("/api/projects?page_size=3").await;
    assert_eq!(r.headers()["x-total-count"], "4");
    let link = crate::common::header(&r, "link");
    assert_eq!(link, "</api/projects?page=2&page_size=3>; rel=\"next\"");
    let (_, first) = json(r).await;
    assert_eq!(first.as_array().unwrap().len(), 3);
    let (_, second) = Gen::V1_8
        .at(&e, &c)
        .get_json("/api/projects?page=2&page_size=3")
        .await;
    assert_eq!(second.as_array().unwrap().len(), 1);
    let r = Gen::V1_8
        .at(&e, &c)
        .get("/api/projects?page=2&page_size=3")
        .await;
    assert!(r.headers().get("link").is_none());
    e.adapter.stop().await;
}

#[tokio::test]
async fn bad_project_requests_get_clear_4xx() {
    let e = Env::default().await;
    let c = Creds::api_keys();
    let r = Gen::V1_10
        .at(&e, &c)
        .create_project("maybe", json!("maybe"))
        .await;
    let (s, v) = json(r).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(error_message(&v).contains("metadata.public"), "{v}");
    let r = Gen::V1_10
        .at(&e, &c)
        .call(
            Method::POST,
            "/api/projects",
            Some(("application/json".into(), b"{oops".to_vec())),
        )
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // TCR's naming rule is checked before any call.
    let r = Gen::V1_10
        .at(&e, &c)
        .create_project("Bad_Name!", json!(false))
        .await;
    let (s, v) = json(r).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(e.api_calls(&[r#"action="CreateNamespace""#]).await, 0);
    // No credentials at all.
    let r = e.get_anon("/api/projects").await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // /api/version is a 404 whoever asks; systeminfo and labels answer.
    let r = e.get_anon("/api/version").await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    e.adapter.stop().await;
}

#[tokio::test]
async fn without_api_keys_projects_are_probed_on_the_data_plane() {
    // Long-term registry credentials and no provisioner keys: nothing can be created, but an
    // existing namespace is recognised and a missing one gets the keys-needed message.
    let e = Env::without_provisioner_keys().await;
    e.emu.state.namespaces.create("exists", false).unwrap();
    let c = Creds::long_term(&e);
    lists_only(
        Gen::V2_5.at(&e, &c),
        "/api/projects?q=name%3D%7Bexists+missing%7D",
        "exists",
    )
    .await;
    let r = Gen::V2_5
        .at(&e, &c)
        .create_project("exists", json!("false"))
        .await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    let (s, v) = json(
        Gen::V2_5
            .at(&e, &c)
            .create_project("missing", json!("false"))
            .await,
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert!(
        error_message(&v).contains("needs TencentCloud API keys"),
        "{v}"
    );
    let (s, _) = Gen::V2_5.at(&e, &c).get_json("/api/projects").await;
    assert_eq!(
        s,
        StatusCode::FORBIDDEN,
        "an unfiltered listing needs the cloud API"
    );
    e.adapter.stop().await;
}

#[tokio::test]
async fn pull_direction_reads_repositories_and_tags() {
    let e = Env::default().await;
    let c = Creds::api_keys();
    crate::prepare_for_push(&e, Gen::V1_10, &c, &["src"]).await;
    e.replay_1_10("src/app", &c.user, &c.pass).await;
    e.replay_1_10("src/tools/cli", &c.user, &c.pass).await;
    let (_, projects) = Gen::V1_10
        .at(&e, &c)
        .get_json("/api/projects?name=src&page=1&page_size=500")
        .await;
    let id = projects[0]["project_id"].as_i64().unwrap();
    let (s, repos) = Gen::V1_10
        .at(&e, &c)
        .get_json(&format!(
            "/api/repositories?project_id={id}&page=1&page_size=500"
        ))
        .await;
    assert_eq!(s, StatusCode::OK, "{repos}");
    let names: Vec<&str> = crate::common::strs(&repos, "name");
    assert_eq!(names, ["src/app", "src/tools/cli"]);
    let (s, tags) = Gen::V1_10
        .at(&e, &c)
        .get_json("/api/repositories/src/tools/cli/tags")
        .await;
    assert_eq!(s, StatusCode::OK, "{tags}");
    assert_eq!(tags[0]["name"], "v1");
    assert!(tags[0]["digest"].as_str().unwrap().starts_with("sha256:"));
    let r = Gen::V1_10
        .at(&e, &c)
        .get("/api/repositories?project_id=999999")
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    // A digest reference deletes through the data plane (Harbor 2.x, untagged artifacts).
    let digest = tags[0]["digest"].as_str().unwrap().to_string();
    let r = Gen::V2_0
        .at(&e, &c)
        .call(
            Method::DELETE,
            &format!("/api/repositories/src/tools/cli/tags/{digest}"),
            None,
        )
        .await;
    assert!(r.status().is_success(), "{}", r.status());
    let t = e.keys_token(&["repository:src/tools/cli:pull"]).await;
    assert_eq!(e.head_manifest("src/tools/cli", &digest, &t).await, 404);
    e.adapter.stop().await;
}
