//! `openapi/openapi.yaml` checked against a live adapter in front of the emulator with
//! schemathesis (PyPI; installed by scripts/install-test-deps.sh): no 5xx, and status codes,
//! content types, headers and bodies as documented. A missing schemathesis fails the test.

mod common;

use base64::Engine;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_document_matches_the_live_adapter() {
    common::require_tool("schemathesis");
    let emu = common::start_emulator().await;
    let (adapter, base) = common::start_adapter(common::adapter_config(&emu.handle)).await;

    // A token with the demo API keys, as Harbor gets one, for a repository the examples use.
    let token = common::token(
        &base,
        "repository:demo/app:pull,push&scope=registry:catalog:*",
    )
    .await;

    // The OCI front and the token service with the Bearer token; the Harbor API persona (its
    // own run) with pre-emptive Basic API keys, as Harbor's "Harbor" provider sends them.
    let registry = schemathesis(
        &base,
        &format!("Authorization: Bearer {token}"),
        ["--exclude-path-regex", "^/(api|chartrepo)/"],
    )
    .await;
    let keys = base64::engine::general_purpose::STANDARD.encode(format!(
        "{}:{}",
        common::DEMO_SECRET_ID,
        common::DEMO_SECRET_KEY
    ));
    let harbor = schemathesis(
        &base,
        &format!("Authorization: Basic {keys}"),
        ["--include-path-regex", "^/(api|chartrepo)/"],
    )
    .await;
    adapter.stop().await;
    emu.handle.stop().await;
    for (what, ok) in [
        ("/v2/ and /service/token", registry),
        ("Harbor API", harbor),
    ] {
        assert!(ok, "schemathesis found problems on {what}; output above");
    }
}

/// One schemathesis run against `base` with one extra header; true when it passed.
async fn schemathesis(base: &str, header: &str, filter: [&str; 2]) -> bool {
    let doc = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi/openapi.yaml");
    let report_dir = tempfile::tempdir().unwrap();
    let out = tokio::process::Command::new("schemathesis")
        .args([
            "run",
            doc,
            "--url",
            base,
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
            // One worker: schemathesis 4 parses lambda sources with Python's `ast` from several
            // threads, which intermittently fails as an internal "Runtime Error" (seen once).
            "--workers",
            "1",
            "--request-timeout",
            "10",
            "--suppress-health-check",
            "all",
            "-H",
            header,
            filter[0],
            filter[1],
        ])
        .env("NO_COLOR", "1")
        .current_dir(report_dir.path())
        .output()
        .await
        .expect("schemathesis runs (install it with scripts/install-test-deps.sh)");
    println!("{}", String::from_utf8_lossy(&out.stdout));
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    out.status.success()
}
