//! The cloud API story: the Rust `TcrApiClient` against the emulator's control plane (tokens,
//! namespaces, repositories, auth failures, throttling with retries), the raw protocol
//! (envelope, tampered bodies, unknown actions), and the official Python SDK run by pytest.

mod common;

use crate::common::SendOk;
use std::time::Duration;

use serde_json::{json, Value};
use tcr_adapter::clock::{self, ManualClock};
use tcr_adapter::config::EmulatorAccount;
use tcr_adapter::tencentcloud::signer::{self, SigningInput};
use tcr_adapter::tencentcloud::{ApiCredential, ApiError, RetryPolicy, TcrApiClient, TokenType};

const REGISTRY_ID: &str = "tcr-emulator";
const REGION: &str = "ap-guangzhou";

fn demo() -> ApiCredential {
    ApiCredential::new(common::DEMO_SECRET_ID, common::DEMO_SECRET_KEY)
}

fn client(api_url: &str) -> TcrApiClient {
    TcrApiClient::new(
        api_url,
        REGION,
        50,
        Duration::from_secs(10),
        clock::system(),
    )
    .unwrap()
}

fn code(r: Result<impl std::fmt::Debug, ApiError>) -> String {
    r.unwrap_err().code().unwrap_or("<transport>").to_string()
}

#[tokio::test]
async fn instance_tokens_from_the_client_open_the_data_plane() {
    let emu = common::start_emulator().await;
    let c = client(&emu.handle.api_url()).with_region("ap-shanghai");
    // The harbor-adapter lookup: AllRegion + RegistryName, then rebuild for the instance's region.
    let found = c
        .describe_instances(&demo(), Some("emulator"), true)
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].registry_id, REGISTRY_ID);
    assert_eq!(found[0].status, "Running");
    assert_eq!(found[0].public_domain, emu.handle.state.public_domain());
    assert!(c
        .describe_instances(&demo(), Some("emulator"), false)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        code(
            c.create_instance_token(&demo(), REGISTRY_ID, TokenType::Temp)
                .await
        ),
        "ResourceNotFound.TcrResourceNotFound",
        "the instance lives in another region"
    );
    let c = c.with_region(&found[0].region_name);

    let now_ms = chrono::Utc::now().timestamp_millis();
    let t = c
        .create_instance_token(&demo(), REGISTRY_ID, TokenType::Temp)
        .await
        .unwrap();
    assert_eq!(t.username, common::DEMO_UIN);
    assert!(
        (t.exp_ms - (now_ms + 3_600_000)).abs() < 60_000,
        "ExpTime is milliseconds"
    );
    let verified = emu
        .handle
        .state
        .tokens
        .verify(&t.username, t.token.expose());
    assert_eq!(verified.unwrap(), common::DEMO_UIN);
    let l = c
        .create_instance_token(&demo(), REGISTRY_ID, TokenType::LongTerm)
        .await
        .unwrap();
    assert!(l.exp_ms > now_ms + 9 * 365 * 24 * 3_600_000);
    assert!(emu
        .handle
        .state
        .tokens
        .verify(&l.username, l.token.expose())
        .is_ok());
}

#[tokio::test]
async fn namespaces_create_describe_by_substring_conflict_and_delete() {
    let emu = common::start_emulator().await;
    let c = client(&emu.handle.api_url());
    let cred = demo();
    c.create_namespace(&cred, REGISTRY_ID, "team-a", false)
        .await
        .unwrap();
    c.create_namespace(&cred, REGISTRY_ID, "team-ab", true)
        .await
        .unwrap();
    let dup = c
        .create_namespace(&cred, REGISTRY_ID, "team-a", false)
        .await
        .unwrap_err();
    assert_eq!(dup.code(), Some("FailedOperation.ErrorTcrResourceConflict"));
    assert!(dup.is_conflict());
    assert!(
        dup.to_string()
            .contains("The project named team-a already exists"),
        "{dup}"
    );

    let r = c
        .describe_namespaces(&cred, REGISTRY_ID, Some("team-a"), 100, 0)
        .await
        .unwrap();
    let names: Vec<_> = r.namespace_list.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(
        names,
        ["team-a", "team-ab"],
        "NamespaceName is a substring filter"
    );
    assert_eq!(r.total_count, 2);
    let ab = &r.namespace_list[1];
    assert!(ab.public);
    assert!(ab
        .metadata
        .iter()
        .any(|m| m.key == "public" && m.value == "true"));
    let page = c
        .describe_namespaces(&cred, REGISTRY_ID, None, 1, 1)
        .await
        .unwrap();
    assert_eq!((page.namespace_list.len(), page.total_count), (1, 2));
    assert_eq!(page.namespace_list[0].name, "team-ab");

    assert_eq!(
        c.find_namespace(&cred, REGISTRY_ID, "team-a")
            .await
            .unwrap()
            .unwrap()
            .name,
        "team-a"
    );
    assert!(c
        .find_namespace(&cred, REGISTRY_ID, "team")
        .await
        .unwrap()
        .is_none());

    let bad = c
        .create_namespace(&cred, REGISTRY_ID, "Team_A", false)
        .await
        .unwrap_err();
    assert!(bad.code().unwrap().starts_with("InvalidParameter"), "{bad}");
    assert!(bad.to_string().contains("2 to 30 characters"), "{bad}");

    c.delete_namespace(&cred, REGISTRY_ID, "team-a")
        .await
        .unwrap();
    let gone = c
        .delete_namespace(&cred, REGISTRY_ID, "team-a")
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Some("ResourceNotFound.TcrResourceNotFound"));
    assert_eq!(
        code(c.describe_namespaces(&cred, "tcr-other", None, 10, 0).await),
        "ResourceNotFound.TcrResourceNotFound"
    );
}

#[tokio::test]
async fn repositories_and_images() {
    let emu = common::start_emulator().await;
    let c = client(&emu.handle.api_url());
    let cred = demo();
    assert_eq!(
        code(c.create_repository(&cred, REGISTRY_ID, "nope", "app").await),
        "ResourceNotFound.TcrResourceNotFound"
    );
    c.create_namespace(&cred, REGISTRY_ID, "apps", false)
        .await
        .unwrap();
    c.create_repository(&cred, REGISTRY_ID, "apps", "web")
        .await
        .unwrap();
    let r = c
        .describe_repositories(&cred, REGISTRY_ID, Some("apps"), None, 100, 0)
        .await
        .unwrap();
    assert_eq!(r.total_count, 1);
    assert_eq!(r.repository_list[0].name, "apps/web");
    assert_eq!(r.repository_list[0].namespace, "apps");
    assert!(
        r.repository_list[0].creation_time.ends_with(" +0000 UTC"),
        "{:?}",
        r.repository_list[0]
    );
    let images = c
        .describe_images(&cred, REGISTRY_ID, "apps", "web", 20, 0)
        .await
        .unwrap();
    assert_eq!(images.total_count, 0);
    assert_eq!(
        code(
            c.delete_image(&cred, REGISTRY_ID, "apps", "web", "v1")
                .await
        ),
        "ResourceNotFound.TcrResourceNotFound"
    );
    assert_eq!(
        code(c.delete_namespace(&cred, REGISTRY_ID, "apps").await),
        "FailedOperation.PreconditionFailed",
        "a namespace with repositories is not deleted"
    );
}

#[tokio::test]
async fn auth_failures_are_explained() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = common::emulator_config(dir.path());
    cfg.accounts.push(EmulatorAccount {
        secret_id: "AKIDreadonly0000000000000000000000".into(),
        secret_key: tcr_adapter::config::Secret::new("readonly-key"),
        uin: "200000000002".into(),
        actions: vec!["DescribeNamespaces".into()],
        ..Default::default()
    });
    let emu = common::start_emulator_with(cfg).await;
    let c = client(&emu.api_url());

    let unknown = ApiCredential::new("AKIDunknownKEY00000000000000000000", "whatever-secret");
    let e = c
        .describe_namespaces(&unknown, REGISTRY_ID, None, 10, 0)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some("AuthFailure.SecretIdNotFound"));
    let text = e.humanize_with("DescribeNamespaces", &unknown.secret_id);
    assert!(
        text.starts_with(
            "the SecretId AKIDunkn… does not exist (check the key in the CAM console)"
        ),
        "{text}"
    );
    assert!(!text.contains("whatever-secret"));

    let wrong = ApiCredential::new(common::DEMO_SECRET_ID, "wrong-key");
    let e = c
        .describe_namespaces(&wrong, REGISTRY_ID, None, 10, 0)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some("AuthFailure.SignatureFailure"));
    assert!(e
        .humanize()
        .contains("the SecretKey does not match the SecretId"));
    assert!(
        !format!("{e:?} {e} {wrong:?}").contains("wrong-key"),
        "no secret in errors or Debug"
    );

    let skewed = TcrApiClient::new(&emu.api_url(), REGION, 50, Duration::from_secs(10), {
        let clock = ManualClock::new(chrono::Utc::now().timestamp_millis());
        clock.advance_secs(-400);
        clock
    })
    .unwrap();
    let e = skewed
        .describe_namespaces(&demo(), REGISTRY_ID, None, 10, 0)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some("AuthFailure.SignatureExpire"));
    assert!(e.humanize().contains("clock"));

    let ro = ApiCredential::new("AKIDreadonly0000000000000000000000", "readonly-key");
    c.describe_namespaces(&ro, REGISTRY_ID, None, 10, 0)
        .await
        .unwrap();
    let e = c
        .create_namespace(&ro, REGISTRY_ID, "ro-ns", false)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some("AuthFailure.UnauthorizedOperation"));
    assert!(e
        .humanize_with("CreateNamespace", &ro.secret_id)
        .contains("this key may not call CreateNamespace (CAM policy)"));
    emu.stop().await;
}

#[tokio::test]
async fn throttling_is_retried_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = common::emulator_config(dir.path());
    cfg.faults.api_qps_limit = 2;
    let emu = common::start_emulator_with(cfg).await;
    let c = client(&emu.api_url()).with_retry_policy(RetryPolicy {
        max_attempts: 6,
        base_delay: Duration::from_millis(200),
    });
    let seen = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let s = seen.clone();
    c.set_retry_observer(move |action, _| {
        assert_eq!(action, "DescribeNamespaces");
        s.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    });
    for _ in 0..6 {
        c.describe_namespaces(&demo(), REGISTRY_ID, None, 10, 0)
            .await
            .unwrap();
    }
    let retries = c.retries_total();
    assert!(retries.throttled > 0, "{retries:?}");
    assert_eq!(
        retries.total(),
        seen.load(std::sync::atomic::Ordering::SeqCst)
    );

    // Without retries the throttle shows through, humanized.
    let once = c.with_retry_policy(RetryPolicy {
        max_attempts: 1,
        base_delay: Duration::ZERO,
    });
    let mut throttled = None;
    for _ in 0..5 {
        if let Err(e) = once
            .describe_namespaces(&demo(), REGISTRY_ID, None, 10, 0)
            .await
        {
            throttled = Some(e);
            break;
        }
    }
    let e = throttled.expect("a call above 2 QPS is throttled");
    assert_eq!(e.code(), Some("RequestLimitExceeded"));
    assert!(e.humanize().contains("throttled"));

    let metrics = common::get_text(&format!("{}/metrics", emu.api_url())).await;
    assert!(
        metrics.contains(r#"tcr_emulator_api_calls_total{action="DescribeNamespaces",result="RequestLimitExceeded"}"#),
        "{metrics}"
    );
    assert!(
        metrics
            .contains(r#"tcr_emulator_api_calls_total{action="DescribeNamespaces",result="ok"} 6"#),
        "{metrics}"
    );
    emu.stop().await;
}

#[tokio::test]
async fn transport_errors_are_retried_then_reported() {
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let c = client(&format!("http://{free}")).with_retry_policy(RetryPolicy {
        max_attempts: 3,
        base_delay: Duration::from_millis(10),
    });
    let e = c
        .describe_namespaces(&demo(), REGISTRY_ID, None, 10, 0)
        .await
        .unwrap_err();
    assert!(matches!(e, ApiError::Transport(_)), "{e:?}");
    assert_eq!(c.retries_total().transport, 2);
}

/// Send `body` signed over `signed_body` with the demo key, raw.
async fn raw_call(
    api_url: &str,
    action: &str,
    version: &str,
    signed_body: &str,
    body: &str,
) -> (reqwest::header::HeaderMap, Value) {
    let host = api_url.trim_start_matches("http://");
    let ts = chrono::Utc::now().timestamp();
    let headers = [
        ("content-type", "application/json"),
        ("host", host),
        ("x-tc-action", action),
    ];
    let sig = signer::sign(
        common::DEMO_SECRET_KEY,
        &SigningInput {
            method: "POST",
            canonical_uri: "/",
            canonical_query: "",
            headers: &headers,
            payload: signed_body.as_bytes(),
            service: "tcr",
            timestamp: ts,
        },
    );
    let resp = reqwest::Client::new()
        .post(format!("{api_url}/"))
        .header("Authorization", sig.authorization(common::DEMO_SECRET_ID))
        .header("Content-Type", "application/json")
        .header("X-TC-Action", action)
        .header("X-TC-Version", version)
        .header("X-TC-Timestamp", ts.to_string())
        .header("X-TC-Region", REGION)
        .body(body.to_string())
        .send_ok()
        .await;
    assert_eq!(resp.status(), 200, "API errors are HTTP 200");
    let headers = resp.headers().clone();
    (headers, resp.json().await.unwrap())
}

#[tokio::test]
async fn raw_protocol_envelope_and_errors() {
    let emu = common::start_emulator().await;
    let api = emu.handle.api_url();
    let body =
        r#"{"RegistryId":"tcr-emulator","NamespaceName":"raw-ns","IsPublic":"true","Unknown":1}"#;
    let (headers, v) = raw_call(&api, "CreateNamespace", "2019-09-24", body, body).await;
    assert_eq!(headers["content-type"], "application/json");
    assert!(v["Response"]["Error"].is_null(), "{v}");
    let rid = v["Response"]["RequestId"].as_str().unwrap();
    assert!(uuid::Uuid::parse_str(rid).is_ok());
    assert!(
        emu.handle.state.namespaces.get("raw-ns").unwrap().public,
        "IsPublic as a string"
    );

    let tampered = body.replace("raw-ns", "raw-nz");
    let (_, v) = raw_call(&api, "CreateNamespace", "2019-09-24", body, &tampered).await;
    assert_eq!(
        v["Response"]["Error"]["Code"],
        "AuthFailure.SignatureFailure"
    );
    let (_, v) = raw_call(&api, "DescribeNothing", "2019-09-24", "{}", "{}").await;
    assert_eq!(v["Response"]["Error"]["Code"], "InvalidAction");
    let (_, v) = raw_call(&api, "DescribeNamespaces", "2017-03-12", "{}", "{}").await;
    assert_eq!(v["Response"]["Error"]["Code"], "NoSuchVersion");
    let (_, v) = raw_call(&api, "DescribeNamespaces", "2019-09-24", "{nope", "{nope").await;
    assert_eq!(v["Response"]["Error"]["Code"], "InvalidParameter");
    let (_, v) = raw_call(&api, "DescribeNamespaces", "2019-09-24", "{}", "{}").await;
    assert_eq!(v["Response"]["Error"]["Code"], "MissingParameter");
    assert_eq!(
        v["Response"]["Error"]["Message"],
        "The request is missing a required parameter `RegistryId`."
    );

    let resp = reqwest::Client::new()
        .post(format!("{api}/"))
        .header("Authorization", "TC3-HMAC-SHA256 nonsense")
        .header("X-TC-Action", "DescribeNamespaces")
        .header("X-TC-Version", "2019-09-24")
        .body("{}")
        .send_ok()
        .await;
    let v: Value = resp.json().await.unwrap();
    assert_eq!(
        v["Response"]["Error"]["Code"],
        "AuthFailure.InvalidAuthorization"
    );
}

/// A request signed by the Rust signer, for the SDK to reproduce byte for byte.
fn rust_signed_case() -> Value {
    let (host, action, ts) = ("tcr.tencentcloudapi.com", "CreateNamespace", 1_700_000_000);
    let (id, key) = (
        "AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE",
        "Gu5t9xGARNpq86cd98joQYCN3EXAMPLE",
    );
    // `json.dumps` of the parameters, as the SDK sends them.
    let body = r#"{"RegistryId": "tcr-12345678", "NamespaceName": "team-a", "IsPublic": false}"#;
    let headers = [("content-type", "application/json"), ("host", host)];
    let sig = signer::sign(
        key,
        &SigningInput {
            method: "POST",
            canonical_uri: "/",
            canonical_query: "",
            headers: &headers,
            payload: body.as_bytes(),
            service: "tcr",
            timestamp: ts,
        },
    );
    json!({
        "secret_id": id, "secret_key": key, "host": host, "action": action, "timestamp": ts,
        "body": body, "content_type": "application/json",
        "authorization": sig.authorization(id),
    })
}

#[tokio::test]
async fn official_python_sdk_against_the_emulator() {
    let python = std::process::Command::new("python3")
        .args([
            "-c",
            "import pytest, requests, tencentcloud.tcr.v20190924.tcr_client",
        ])
        .output();
    match python {
        Ok(o) if o.status.success() => {}
        Ok(o) => panic!(
            "python3 lacks pytest or tencentcloud-sdk-python-tcr ({}): run scripts/install-test-deps.sh (or .ci/run), which installs `pytest tencentcloud-sdk-python-tcr`",
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Err(e) => panic!("python3 is not installed ({e}): run scripts/install-test-deps.sh (or .ci/run) first"),
    }
    let emu = common::start_emulator().await;
    let manifest_dir = env!("CARGO_MANIFEST_DIR");
    let out = tokio::process::Command::new("python3")
        .args([
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests/python/test_tcr_sdk.py",
        ])
        .current_dir(manifest_dir)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("TCR_EMULATOR_API", emu.handle.api_addr.to_string())
        .env("TCR_SECRET_ID", common::DEMO_SECRET_ID)
        .env("TCR_SECRET_KEY", common::DEMO_SECRET_KEY)
        .env("TCR_UIN", common::DEMO_UIN)
        .env("TCR_REGISTRY_ID", REGISTRY_ID)
        .env("TCR_REGION", REGION)
        .env("TCR_RUST_SIGNED", rust_signed_case().to_string())
        .output()
        .await
        .expect("run pytest");
    println!("{}", String::from_utf8_lossy(&out.stdout));
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "pytest failed: see its output above");
}
