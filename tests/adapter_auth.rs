//! The adapter's auth side as a client sees it: `/service/token` (GET and OAuth2 POST), adapter
//! Bearer tokens on a protected `/v2/` route, challenges, refresh tokens, replicas sharing keys.
//! The API-key path is in `adapter_credentials.rs`.

mod common;
#[macro_use]
mod auth_support;

use auth_support::*;

use std::sync::atomic::Ordering;

use actix_web::http::StatusCode;
use actix_web::test;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::Value;

use tcr_adapter::auth::{scope, TokenResponse};
use tcr_adapter::clock::{self, ManualClock};

/// A token from the token endpoint for `query`, as the configured user.
async fn user_token(app: &Client, query: &str) -> TokenResponse {
    get_token(app, query, USER, PASS).await
}

/// The check request of `repository:team/app:pull` with `token`.
fn pull_check(token: &str) -> test::TestRequest {
    check_with(&["repository:team/app:pull"], token)
}

/// The check request of `scopes` with `token`.
fn check_with(scopes: &[&str], token: &str) -> test::TestRequest {
    test::TestRequest::get()
        .uri(&check_uri(scopes))
        .insert_header(bearer(token))
}

#[actix_web::test]
async fn token_answer_has_the_shape_harbor_and_containerd_need() {
    let f = fixture();
    let app = app!(f.auth.clone());
    let req = test::TestRequest::get()
        .uri("/service/token?service=tcr-adapter&scope=repository:team/app:pull")
        .insert_header(basic(USER, PASS));
    let resp = app.send(req).await;
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(
        resp.header("docker-distribution-api-version"),
        "registry/2.0"
    );
    assert_eq!(resp.header("cache-control"), "no-store");
    let body = resp.body;
    assert_eq!(body["token"], body["access_token"]);
    assert!(body["token"].as_str().unwrap().len() > 20);
    assert_eq!(body["expires_in"], serde_json::json!(900));
    assert!(body["expires_in"].is_u64());
    let issued = body["issued_at"].as_str().unwrap();
    chrono::DateTime::parse_from_rfc3339(issued).expect("issued_at is RFC 3339");
    assert!(issued.ends_with('Z'), "{issued}");
    assert!(body.get("refresh_token").is_none());
}

#[actix_web::test]
async fn repeated_and_space_separated_scopes_are_granted_as_the_intersection() {
    let f = fixture();
    let app = app!(f.auth.clone());
    let t = user_token(&app, "service=tcr-adapter&scope=repository:team/app:pull,push,admin%20repository:Bad_Name:pull\
         &scope=registry:catalog:*&scope=repository:localhost:5000/team/app:pull&scope=repository:team/other:delete")
    .await;
    let claims = f.auth.verify_token(&t.token).unwrap();
    let got: Vec<String> = claims.access.iter().map(scope::render).collect();
    assert_eq!(
        got,
        vec![
            "repository:team/app:pull,push",
            "repository:Bad_Name:",
            "registry:catalog:*",
            "repository:localhost:5000/team/app:",
            "repository:team/other:delete",
        ]
    );
    assert_eq!(claims.sub, USER);
    assert_eq!(claims.aud, SERVICE);
}

#[actix_web::test]
async fn harbor_ping_without_scope_gets_a_token_that_opens_v2() {
    let f = fixture();
    let app = app!(f.auth.clone());
    let t = user_token(&app, "service=tcr-adapter").await;
    assert!(f.auth.verify_token(&t.token).unwrap().access.is_empty());
    let (status, _, body) = call(
        &app,
        test::TestRequest::get()
            .uri("/v2/")
            .insert_header(bearer(&t.token)),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["kind"], "registry");
    assert_eq!(body["upstream_user"], USER);
}

#[actix_web::test]
async fn v2_without_credentials_is_a_bearer_challenge_without_error() {
    let f = fixture();
    let app = app!(f.auth.clone());
    let (status, www, body) = call(&app, test::TestRequest::get().uri("/v2/")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        www,
        format!(r#"Bearer realm="{REALM}",service="{SERVICE}""#)
    );
    assert_eq!(body["errors"][0]["code"], "UNAUTHORIZED");
    let (_, www, _) = call(
        &app,
        test::TestRequest::get().uri(&check_uri(&["repository:a/b:pull,push"])),
    )
    .await;
    assert_eq!(
        www,
        format!(r#"Bearer realm="{REALM}",service="{SERVICE}",scope="repository:a/b:pull,push""#)
    );
}

#[actix_web::test]
async fn anonymous_token_requests_get_pull_only() {
    let f = fixture();
    let app = app!(f.auth.clone());
    let req = test::TestRequest::get().uri(
        "/service/token?service=tcr-adapter&scope=repository:team/app:pull,push&scope=registry:catalog:*",
    );
    let (status, _, body) = call(&app, req).await;
    assert_eq!(status, StatusCode::OK);
    let token = body["token"].as_str().unwrap();
    let claims = f.auth.verify_token(token).unwrap();
    assert_eq!(claims.sub, "");
    // The namespace may be public: pull is granted, push and the catalog are not.
    assert_eq!(claims.access[0].actions, ["pull"]);
    assert!(claims.access[1].actions.is_empty());
    assert!(claims.cred.is_none());
    let (status, _, _) = call(&app, pull_check(token)).await;
    assert_eq!(status, StatusCode::OK);
    let push = check_with(&["repository:team/app:push"], token);
    let (status, www, _) = call(&app, push).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(www.ends_with(r#"error="insufficient_scope""#), "{www}");
}

#[actix_web::test]
async fn bearer_token_opens_what_it_grants_and_challenges_the_rest() {
    let f = fixture();
    let app = app!(f.auth.clone());
    let t = user_token(&app, "scope=repository:team/app:pull").await;
    let ok = pull_check(&t.token);
    let (status, _, body) = call(&app, ok).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["subject"], USER);

    let more = check_with(
        &["repository:team/app:pull,push", "repository:team/base:pull"],
        &t.token,
    );
    let (status, www, body) = call(&app, more).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        www,
        format!(
            r#"Bearer realm="{REALM}",service="{SERVICE}",scope="repository:team/app:pull,push repository:team/base:pull",error="insufficient_scope""#
        )
    );
    assert_eq!(body["errors"][0]["code"], "UNAUTHORIZED");
    assert_eq!(body["errors"][0]["detail"][1]["Action"], "push");
}

#[actix_web::test]
async fn star_grant_satisfies_any_action() {
    let f = fixture();
    let app = app!(f.auth.clone());
    let t = user_token(&app, "scope=repository:team/app:*&scope=registry:catalog:*").await;
    let req = check_with(
        &["repository:team/app:pull,push,delete", "registry:catalog:*"],
        &t.token,
    );
    assert_eq!(call(&app, req).await.0, StatusCode::OK);
}

#[actix_web::test]
async fn tampered_alg_none_and_garbage_tokens_are_invalid() {
    let f = fixture();
    let app = app!(f.auth.clone());
    let t = user_token(&app, "scope=repository:team/app:pull").await;
    let parts: Vec<&str> = t.token.split('.').collect();

    // Payload altered to grant more: signature no longer matches.
    let mut claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    claims["access"][0]["name"] = "team/base".into();
    let forged = URL_SAFE_NO_PAD.encode(claims.to_string());
    assert_invalid_token(&app, &format!("{}.{forged}.{}", parts[0], parts[2])).await;

    // alg: none, no signature.
    let none = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#);
    assert_invalid_token(&app, &format!("{none}.{}.", parts[1])).await;

    // RS256 swapped into the header, HS256 signature kept.
    let rs = URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256","typ":"JWT"}"#);
    assert_invalid_token(&app, &format!("{rs}.{}.{}", parts[1], parts[2])).await;

    assert_invalid_token(&app, "not-a-jwt").await;
}

#[actix_web::test]
async fn expired_tokens_are_invalid() {
    let manual = ManualClock::new(1_795_832_160_000);
    let f = fixture_with(&config(1, 2), None, manual.clone());
    let app = app!(f.auth.clone());
    let t = user_token(&app, "scope=repository:team/app:pull").await;
    assert_eq!(t.issued_at, "2026-11-28T02:16:00Z");
    manual.advance_secs(899);
    let req = pull_check(&t.token);
    assert_eq!(call(&app, req).await.0, StatusCode::OK);
    manual.advance_secs(1);
    assert_invalid_token(&app, &t.token).await;
}

#[actix_web::test]
async fn replicas_with_the_same_keys_accept_each_others_tokens_and_others_do_not() {
    let a = fixture();
    let b = fixture();
    let other_signing = fixture_with(&config(9, 2), None, clock::system());
    let other_sealing = fixture_with(&config(1, 9), None, clock::system());
    let app_a = app!(a.auth.clone());
    let t = user_token(&app_a, "scope=repository:team/app:pull").await;

    let app_b = app!(b.auth.clone());
    let req = pull_check(&t.token);
    let (status, _, body) = call(&app_b, req).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["upstream_user"], USER);

    assert_invalid_token(&app!(other_signing.auth.clone()), &t.token).await;
    // Signed right but sealed with another key: the credential cannot be opened.
    let req = pull_check(&t.token);
    let (status, www, _) = call(&app!(other_sealing.auth.clone()), req).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(www.ends_with(r#"error="invalid_token""#), "{www}");
}

#[actix_web::test]
async fn wrong_registry_password_names_the_credential_kind_not_the_password() {
    let f = fixture();
    let app = app!(f.auth.clone());
    let req = test::TestRequest::get()
        .uri("/service/token?service=tcr-adapter&scope=repository:team/app:pull")
        .insert_header(basic(USER, "wrong-password-xyz"));
    let (status, www, body) = call(&app, req).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        www.starts_with(&format!(r#"Bearer realm="{REALM}""#)),
        "{www}"
    );
    assert!(www.contains(r#"scope="repository:team/app:pull""#), "{www}");
    let msg = body["errors"][0]["message"].as_str().unwrap();
    assert!(msg.contains("registry credentials"), "{msg}");
    assert!(msg.contains(USER), "{msg}");
    assert!(!body.to_string().contains("wrong-password-xyz"), "{body}");
}

#[actix_web::test]
async fn valid_registry_credentials_are_checked_once_then_cached() {
    let f = fixture();
    let app = app!(f.auth.clone());
    for _ in 0..5 {
        user_token(&app, "scope=repository:team/app:pull").await;
    }
    assert_eq!(f.validator.calls.load(Ordering::SeqCst), 1);
}

#[actix_web::test]
async fn basic_credentials_straight_on_v2_are_accepted() {
    let f = fixture();
    let app = app!(f.auth.clone());
    let req = test::TestRequest::get()
        .uri(&check_uri(&["repository:team/app:pull,push"]))
        .insert_header(basic(USER, PASS));
    let (status, _, body) = call(&app, req).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["access"][0]["actions"],
        serde_json::json!(["pull", "push"])
    );
    let req = test::TestRequest::get()
        .uri("/v2/")
        .insert_header(basic(USER, "nope"));
    let (status, www, _) = call(&app, req).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(www.starts_with("Bearer "), "{www}");
}

#[actix_web::test]
async fn push_into_a_denied_namespace_is_refused_by_the_token_endpoint() {
    let f = fixture();
    let app = app!(f.auth.clone());
    let req = test::TestRequest::get()
        .uri("/service/token?scope=repository:forbidden-ns/app:pull,push")
        .insert_header(basic(USER, PASS));
    let (status, _, body) = call(&app, req).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["errors"][0]["code"], "DENIED");
    assert!(body["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("forbidden-ns"));
    // Pull only creates nothing: the token is issued, but without access to the denied namespace.
    let t = user_token(
        &app,
        "scope=repository:forbidden-ns/app:pull&scope=repository:team/app:pull",
    )
    .await;
    let claims = f.auth.verify_token(&t.token).unwrap();
    assert!(claims.access[0].actions.is_empty());
    assert_eq!(claims.access[1].actions, vec!["pull"]);
}

#[actix_web::test]
async fn offline_token_gives_a_refresh_token_usable_with_the_oauth_post() {
    let f = fixture();
    let app = app!(f.auth.clone());
    let t = user_token(&app, "scope=repository:team/app:pull&offline_token=true").await;
    let refresh = t.refresh_token.expect("refresh_token");
    assert_ne!(refresh, t.token);

    // A refresh token is not an access token.
    assert_invalid_token(&app, &refresh).await;

    let form = format!(
        "grant_type=refresh_token&service=tcr-adapter&client_id=containerd-client&refresh_token={refresh}&scope=repository%3Ateam%2Fapp%3Apull%2Cpush"
    );
    let req = test::TestRequest::post()
        .uri("/service/token")
        .insert_header(("Content-Type", "application/x-www-form-urlencoded"))
        .set_payload(form);
    let (status, _, body) = call(&app, req).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["scope"], "repository:team/app:pull,push");
    assert!(body["expires_in"].is_u64());
    let access = body["access_token"].as_str().unwrap();
    let req = check_with(&["repository:team/app:push"], access);
    assert_eq!(call(&app, req).await.0, StatusCode::OK);
}

#[actix_web::test]
async fn oauth_password_grant_and_its_errors() {
    let f = fixture();
    let app = app!(f.auth.clone());
    let user = url::form_urlencoded::byte_serialize(USER.as_bytes()).collect::<String>();
    let (status, body) = post_form(
        &app,
        &format!("grant_type=password&username={user}&password={PASS}&service=tcr-adapter&client_id=x&access_type=offline&scope=repository:team/app:pull"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["scope"], "repository:team/app:pull");
    assert!(body["refresh_token"].is_string());
    chrono::DateTime::parse_from_rfc3339(body["issued_at"].as_str().unwrap()).unwrap();

    let (status, body) = post_form(
        &app,
        &format!("grant_type=password&username={user}&password=bad-secret-77"),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_grant");
    assert!(body["error_description"]
        .as_str()
        .unwrap()
        .contains("registry credentials"));
    assert!(!body.to_string().contains("bad-secret-77"));

    let (status, body) = post_form(&app, "grant_type=refresh_token&refresh_token=garbage").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );
    let (status, body) = post_form(&app, "grant_type=authorization_code&code=x").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("unsupported_grant_type"))
    );
}
