//! `openapi/openapi.yaml` checked against a live adapter in front of the emulator with
//! schemathesis (PyPI; installed by scripts/install-test-deps.sh): no 5xx, and status codes,
//! content types, headers and bodies as documented. A missing schemathesis fails the test.

mod common;

use tcr_adapter::app;
use tcr_adapter::clock;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_document_matches_the_live_adapter() {
    common::require_tool("schemathesis");
    let emu = common::start_emulator().await;
    let cfg = common::adapter_config(&emu.handle);
    let adapter = app::start(cfg, clock::system()).await.unwrap();
    let base = format!("http://{}", adapter.addr);

    // A token with the demo API keys, as Harbor gets one, for a repository the examples use.
    let http = reqwest::Client::new();
    let resp = http
        .get(format!(
            "{base}/service/token?service=tcr-adapter&scope=repository:demo/app:pull,push&scope=registry:catalog:*"
        ))
        .basic_auth(common::DEMO_SECRET_ID, Some(common::DEMO_SECRET_KEY))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let token = resp.json::<serde_json::Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string();

    let doc = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi/openapi.yaml");
    let report_dir = tempfile::tempdir().unwrap();
    let out = tokio::process::Command::new("schemathesis")
        .args([
            "run",
            doc,
            "--url",
            &base,
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance",
            "--phases",
            "examples,coverage,fuzzing",
            "--max-examples",
            "25",
            "--max-time",
            "90",
            "--seed",
            "1",
            "--workers",
            "2",
            "--request-timeout",
            "10",
            "--suppress-health-check",
            "all",
            "-H",
            &format!("Authorization: Bearer {token}"),
        ])
        .env("NO_COLOR", "1")
        .current_dir(report_dir.path())
        .output()
        .await
        .expect("schemathesis runs (install it with scripts/install-test-deps.sh)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    adapter.stop().await;
    emu.handle.stop().await;
    assert!(
        out.status.success(),
        "schemathesis found problems (exit {:?}); output above",
        out.status.code()
    );
}
