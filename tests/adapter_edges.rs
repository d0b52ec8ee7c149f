//! Edges of the adapter a user observes from outside: cloud API calls counted on `/metrics`,
//! the token endpoint's own challenges behind a TLS terminator, one instance lookup however many
//! first requests race, one realm token per (credential, scope) under concurrency, and a TCR
//! realm outage told apart from a bad password.

mod common;
mod harbor;

use crate::common::SendOk;
use harbor::{basic, sum_metric, Env};
use reqwest::Method;

const KEYS: (&str, &str) = (common::DEMO_SECRET_ID, common::DEMO_SECRET_KEY);

#[tokio::test]
async fn cloud_api_calls_are_counted_by_action_and_result() {
    let e = Env::default().await;
    e.replay_1_10("calls/app", KEYS.0, KEYS.1).await;
    let m = e.adapter_metrics().await;
    let calls = |action: &str, result: &str| {
        sum_metric(
            &m,
            "tcr_adapter_cloud_api_calls_total{",
            &[
                &format!("action=\"{action}\""),
                &format!("result=\"{result}\""),
            ],
        )
    };
    assert_eq!(calls("CreateInstanceToken", "ok"), 1, "{m}");
    assert_eq!(calls("CreateNamespace", "ok"), 1, "{m}");
    assert_eq!(
        sum_metric(
            &m,
            "tcr_adapter_instance_tokens_total{",
            &[r#"result="issued""#]
        ),
        1,
        "{m}"
    );
    // A wrong SecretKey is counted under the API's error code.
    let refused = e
        .try_token(KEYS.0, "wrong-key", &["repository:calls/app:pull"])
        .await;
    assert_eq!(refused.unwrap_err().0, 401);
    let m = e.adapter_metrics().await;
    assert_eq!(
        sum_metric(
            &m,
            "tcr_adapter_cloud_api_calls_total{",
            &[
                r#"action="CreateInstanceToken""#,
                r#"result="AuthFailure.SignatureFailure""#
            ],
        ),
        1,
        "{m}"
    );
    e.adapter.stop().await;
}

#[tokio::test]
async fn the_token_endpoints_own_challenges_follow_forwarded_headers_only_when_trusted() {
    let fwd: &[(&str, &str)] = &[
        ("X-Forwarded-Proto", "https"),
        ("X-Forwarded-Host", "reg.example.com"),
    ];
    for trust in [true, false] {
        let e = Env::start(|_| {}, |c| c.server.trust_forwarded_headers = trust).await;
        let base = if trust {
            "https://reg.example.com".to_string()
        } else {
            e.base.clone()
        };
        // A bad password on GET /service/token, and a malformed Authorization header: 401 with
        // the challenge, both.
        let bad = basic(&e.user, "wrong");
        for (path, auth) in [
            (
                "/service/token?service=tcr-adapter&scope=repository:a/b:pull",
                bad.as_str(),
            ),
            ("/service/token?service=tcr-adapter", "Digest x"),
        ] {
            let headers = [fwd, &[("Authorization", auth)]].concat();
            let r = e.req(Method::GET, path, None, &headers, None).await;
            assert_eq!(r.status(), 401);
            let chal = crate::common::header(&r, "www-authenticate");
            harbor::assert_realm_under(&chal, &base, &format!("trust={trust}"));
        }
        e.adapter.stop().await;
    }
}

#[tokio::test]
async fn a_realm_outage_is_a_503_with_retry_after_and_a_wrong_password_a_401() {
    // Reachable realm, wrong password: 401, "bad registry password".
    let e = Env::default().await;
    let (status, body) = e
        .try_token(&e.user, "wrong", &["repository:a/b:pull"])
        .await
        .unwrap_err();
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("bad registry password"), "{body}");
    e.adapter.stop().await;

    // The data plane (and its realm) on a closed port: 503 + Retry-After, not a refusal.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let e = Env::start(|_| {}, |c| c.tcr.registry_url = format!("http://{closed}")).await;
    let r = e
        .req(
            Method::GET,
            "/service/token?service=tcr-adapter&scope=repository:a/b:pull",
            None,
            &[("Authorization", &basic(&e.user, &e.pass))],
            None,
        )
        .await;
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
    let body = r.text().await.unwrap();
    assert!(body.contains("UNAVAILABLE"), "{body}");
    assert!(!body.contains("bad registry password"), "{body}");
    e.adapter.stop().await;
}

/// `tcr_emulator_registry_requests_total{route="token"}`: requests to the emulator's realm.
async fn realm_requests(e: &Env) -> u64 {
    common::registry_requests(&e.emu, &[r#"route="token""#]).await
}

#[tokio::test]
async fn thirty_concurrent_heads_share_one_realm_token() {
    let e = Env::default().await;
    e.emu.state.namespaces.create("flight", false).unwrap();
    e.replay_1_10("flight/app", &e.user.clone(), &e.pass.clone())
        .await;
    let t = e
        .token_as(&e.user, &e.pass, &["repository:flight/other:pull"])
        .await;
    let before = realm_requests(&e).await;
    let heads = (0..30).map(|_| e.head_manifest("flight/other", "v1", &t));
    let statuses = futures_util::future::join_all(heads).await;
    assert!(statuses.iter().all(|s| *s == 404), "{statuses:?}");
    // The credential was validated when the adapter's token was issued (cached since); the
    // 30 HEADs need one realm token for (credential, repository:flight/other:pull,push).
    assert_eq!(realm_requests(&e).await - before, 1);
    // A second wave is served from the cache.
    let heads = (0..30).map(|_| e.head_manifest("flight/other", "v1", &t));
    futures_util::future::join_all(heads).await;
    assert_eq!(realm_requests(&e).await - before, 1);
    e.adapter.stop().await;
}

#[tokio::test]
async fn twenty_concurrent_first_requests_look_the_instance_up_once() {
    let e = Env::undiscovered().await;
    // 20 first token requests at once, each pushing into its own new namespace: the credential
    // resolver (CreateInstanceToken) and the provisioner (CreateNamespace) both need the instance.
    let scopes: Vec<String> = (0..20)
        .map(|i| format!("repository:first{i}/app:pull,push"))
        .collect();
    let scopes: Vec<[&str; 1]> = scopes.iter().map(|s| [s.as_str()]).collect();
    let tokens = scopes.iter().map(|s| e.try_token(KEYS.0, KEYS.1, s));
    let tokens = futures_util::future::join_all(tokens).await;
    assert!(tokens.iter().all(|t| t.is_ok()), "{tokens:?}");
    e.replay_1_10("first0/app", KEYS.0, KEYS.1).await;
    assert_eq!(e.api_calls(&[r#"action="DescribeInstances""#]).await, 1);
    assert_eq!(
        e.api_calls(&[r#"action="CreateInstanceToken""#, r#"result="ok""#])
            .await,
        1
    );
    assert_eq!(e.creates_ok().await, 20);
    assert_eq!(e.namespaces().len(), 20);
    e.adapter.stop().await;
}

/// A token from the adapter's realm without any credentials.
async fn anonymous_token(e: &Env, scope: &str) -> String {
    let url = format!(
        "{}/service/token?service=tcr-adapter&scope={}",
        e.base,
        harbor::urlencode(scope)
    );
    let v: serde_json::Value = e.http.get(url).send_ok().await.json().await.unwrap();
    v["token"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn anonymous_pulls_work_in_public_namespaces_and_are_challenged_elsewhere() {
    let e = Env::default().await;
    e.emu.state.namespaces.create("pub", true).unwrap();
    e.emu.state.namespaces.create("priv", false).unwrap();
    let (u, p) = (e.user.clone(), e.pass.clone());
    e.replay_1_10("pub/app", &u, &p).await;
    e.replay_1_10("priv/app", &u, &p).await;
    let (layer, _, manifest) = harbor::image("pub/app", harbor::DOCKER_MANIFEST);

    // Public: manifest and blob, with no credentials at all.
    let t = anonymous_token(&e, "repository:pub/app:pull,push").await;
    let r = e.get("/v2/pub/app/manifests/v1", &t).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap(), manifest);
    assert_eq!(e.head_manifest("pub/app", "v1", &t).await, 200);
    let ld = tcr_adapter::oci::Digest::sha256_of(&layer);
    let r = e.get(&format!("/v2/pub/app/blobs/{ld}"), &t).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap(), layer);
    // A missing tag in a public namespace is absent, as for anyone.
    assert_eq!(e.head_manifest("pub/app", "nope", &t).await, 404);
    // The anonymous token grants pull only: no upload.
    let r = e.start_upload("pub/app", &t).await;
    assert_eq!(r.status(), 401);

    // Private and missing namespaces: a challenge, so that the client logs in.
    for repo in ["priv/app", "nope/app"] {
        let t = anonymous_token(&e, &format!("repository:{repo}:pull")).await;
        let r = e.get(&format!("/v2/{repo}/manifests/v1"), &t).await;
        assert_eq!(r.status(), 401, "{repo}");
        let chal = crate::common::header(&r, "www-authenticate");
        assert!(
            chal.starts_with(&format!("Bearer realm=\"{}/service/token\"", e.base)),
            "{chal}"
        );
        assert!(
            chal.contains(&format!("scope=\"repository:{repo}:pull\"")),
            "{chal}"
        );
    }
    let t = anonymous_token(&e, "repository:priv/app:pull").await;
    assert_eq!(e.head_manifest("priv/app", "v1", &t).await, 401);

    // Logged in, the private image is there, and a missing namespace is absent (404).
    let t = e
        .token_as(
            &u,
            &p,
            &["repository:priv/app:pull", "repository:nope/app:pull"],
        )
        .await;
    assert_eq!(e.head_manifest("priv/app", "v1", &t).await, 200);
    assert_eq!(e.get("/v2/nope/app/manifests/v1", &t).await.status(), 404);
    e.adapter.stop().await;
}
