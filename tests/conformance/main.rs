//! A Rust port of the OCI distribution-spec v1.1.1 conformance suite (`conformance/`, Ginkgo),
//! with the HTTP behaviour of its client `reggie` (no token cache: every request goes out
//! without credentials and is retried once after a token fetch on a 401). `run_suite` runs the
//! pull, push, content discovery and content management workflows against one registry; the
//! tests below run it against the emulator's data plane, and against the adapter in front of
//! the emulator with API keys and with long-term instance tokens.

#[path = "../common/mod.rs"]
mod common;

mod client;
mod discovery;
mod fixtures;
mod management;
mod pull;
mod push;
mod report;
mod suite;

use report::Report;
use suite::run_suite;
use tcr_adapter::app::{self, AdapterHandle};
use tcr_adapter::clock;
use tcr_adapter::config::{Config, Secret};

/// OCI_NAMESPACE and OCI_CROSSMOUNT_NAMESPACE: TCR repositories live under a namespace.
const NAME: &str = "conformance/oci";
const CROSSMOUNT: &str = "crossmount/oci";

fn namespace_of(repo: &str) -> &str {
    repo.split('/').next().unwrap()
}

/// Print the table, then fail with every failing spec listed.
fn assert_conformant(report: &Report) {
    println!("{report}");
    let failures = report.failures();
    assert!(
        failures.is_empty(),
        "{} spec(s) failed against {}:\n{}",
        failures.len(),
        report.target,
        failures
            .iter()
            .map(|s| format!(
                "  [{}] {} › {}: {:?}",
                s.category.title(),
                s.context,
                s.name,
                s.status
            ))
            .collect::<Vec<_>>()
            .join("\n")
    );
    // Every registered spec of v1.1.1 is here: 24 + 29 + 16 + 10.
    assert_eq!(report.specs.len(), 79, "registered specs");
}

/// The common adapter config towards `emu`; without provisioner keys unless `provisioner`.
fn adapter_config(emu: &common::TestEmulator, provisioner: bool) -> Config {
    let mut cfg = common::adapter_config(&emu.handle);
    if !provisioner {
        cfg.tcr.secret_id = String::new();
        cfg.tcr.secret_key = Secret::default();
    }
    cfg
}

async fn start_adapter(cfg: Config) -> AdapterHandle {
    app::start(cfg, clock::system())
        .await
        .expect("adapter starts")
}

/// The suite against `base` as a long-term instance token of the demo account.
async fn run_suite_with_instance_token(emu: &common::TestEmulator, base: &str) -> Report {
    let (user, pass) = common::instance_credentials(&emu.handle);
    run_suite(base, &user, &pass, NAME, CROSSMOUNT).await
}

/// The suite against `base` (trusting `ca_pem` too) with the demo API keys.
async fn run_suite_with_api_keys(base: &str, ca_pem: Option<&[u8]>) -> Report {
    let (id, key) = (common::DEMO_SECRET_ID, common::DEMO_SECRET_KEY);
    suite::run_suite_trusting(base, ca_pem, id, key, NAME, CROSSMOUNT).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emulator_data_plane_is_oci_conformant() {
    let emu = common::start_emulator().await;
    for repo in [NAME, CROSSMOUNT] {
        emu.handle
            .state
            .namespaces
            .create(namespace_of(repo), false)
            .unwrap();
    }
    let report = run_suite_with_instance_token(&emu, &emu.handle.registry_url()).await;
    assert_conformant(&report);
    // The mount challenge names `repository:<from>:pull` too, so reggie's token lets it mount.
    let mounted = report
        .specs
        .iter()
        .find(|s| {
            s.name
                .starts_with("GET request to test digest within cross-mount")
        })
        .unwrap();
    assert!(
        matches!(mounted.status, report::Status::Pass),
        "mount with from answered 202: {:?}",
        mounted.status
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adapter_with_api_keys_is_oci_conformant() {
    let emu = common::start_emulator().await;
    // Namespaces are not pre-created: the adapter creates them on the first push.
    let adapter = start_adapter(adapter_config(&emu, false)).await;
    let report = run_suite_with_api_keys(&format!("http://{}", adapter.addr), None).await;
    assert_conformant(&report);
    for repo in [NAME, CROSSMOUNT] {
        assert!(
            emu.handle
                .state
                .namespaces
                .get(namespace_of(repo))
                .is_some(),
            "the adapter created namespace {}",
            namespace_of(repo)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adapter_with_long_term_token_is_oci_conformant() {
    let emu = common::start_emulator().await;
    // Registry credentials cannot create namespaces; the provisioner keys do it.
    let adapter = start_adapter(adapter_config(&emu, true)).await;
    let base = format!("http://{}", adapter.addr);
    let report = run_suite_with_instance_token(&emu, &base).await;
    assert_conformant(&report);
}

/// The production path: the suite →(HTTPS)→ adapter →(HTTPS, the emulator's own CA)→ emulator
/// in self-signed mode.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adapter_over_tls_on_both_sides_is_oci_conformant() {
    let dir = tempfile::tempdir().unwrap();
    let mut ecfg = common::emulator_config(dir.path());
    ecfg.tls.mode = tcr_adapter::config::EmulatorTlsMode::SelfSigned;
    let handle = common::start_emulator_with(ecfg).await;
    let emu = common::TestEmulator { handle, dir };
    let tls = emu.dir.path().join("tls");
    let port = common::free_port();
    let mut cfg = adapter_config(&emu, false);
    common::serve_https_with_emulator_certs(&mut cfg, port, &tls);
    assert!(cfg.tcr.registry_url.starts_with("https://"));
    let adapter = start_adapter(cfg).await;
    let ca = std::fs::read(tls.join("ca.pem")).unwrap();
    let report = run_suite_with_api_keys(&format!("https://127.0.0.1:{port}"), Some(&ca)).await;
    assert_conformant(&report);
    adapter.stop().await;
}
