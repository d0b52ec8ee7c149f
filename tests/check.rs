//! `tcr-adapter check`, run as the built binary against an in-process emulator: all ok → exit 0;
//! a wrong SecretKey, a key without `CreateNamespace`, and an unreachable data plane each fail
//! with the cause and the fix.

mod common;

use tcr_adapter::config::{EmulatorAccount, Secret};
use tcr_adapter::emulator::EmulatorHandle;

const DEMO_ID: &str = common::DEMO_SECRET_ID;
const DEMO_KEY: &str = common::DEMO_SECRET_KEY;
const LIMITED_ID: &str = "AKIDlimitedNoCreateNamespace000000";
const LIMITED_KEY: &str = "limitedSecretKEY0000000000000000";

async fn emulator(dir: &std::path::Path) -> EmulatorHandle {
    let mut cfg = common::emulator_config(dir);
    cfg.accounts.push(EmulatorAccount {
        secret_id: LIMITED_ID.into(),
        secret_key: Secret::new(LIMITED_KEY),
        uin: "100000000002".into(),
        actions: vec![
            "DescribeInstances".into(),
            "CreateInstanceToken".into(),
            "DescribeNamespaces".into(),
        ],
        ..Default::default()
    });
    common::start_emulator_with(cfg).await
}

fn config(emu: &EmulatorHandle, registry_url: &str, id: &str, key: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"

[tcr]
registry_url = "{registry_url}"
api_endpoint = "{}"
secret_id = "{id}"
secret_key = "{key}"
"#,
        emu.api_url()
    )
}

/// Run `tcr-adapter check --config <file>`; (exit code, stdout).
async fn check(dir: &std::path::Path, config: &str) -> (i32, String) {
    common::run_check(dir, config).await
}

/// `check` against `emu` (its own data plane) with the API keys `id`/`key`.
async fn check_with_keys(
    dir: &std::path::Path,
    emu: &EmulatorHandle,
    id: &str,
    key: &str,
) -> (i32, String) {
    check(dir, &config(emu, &emu.registry_url(), id, key)).await
}

/// The config towards `emu`'s API with the demo keys, the data plane at `registry_url`, and the
/// instance (`registry_id`, `region`) named so that nothing is looked up.
fn config_naming_the_instance(emu: &EmulatorHandle, registry_url: &str) -> String {
    let mut cfg = config(
        emu,
        registry_url,
        common::DEMO_SECRET_ID,
        common::DEMO_SECRET_KEY,
    );
    cfg.push_str(&format!(
        "registry_id = \"{}\"\nregion = \"{}\"\n",
        emu.state.cfg.registry_id, emu.state.cfg.region
    ));
    cfg
}

fn line<'a>(out: &'a str, prefix: &str) -> &'a str {
    let start = out
        .find(prefix)
        .unwrap_or_else(|| panic!("no line {prefix:?} in:\n{out}"));
    // The item line plus its cause/fix lines.
    let rest = &out[start..];
    let end = rest[1..].find("\n[").map(|i| i + 1).unwrap_or(rest.len());
    &rest[..end]
}

#[tokio::test]
async fn all_ok_against_the_emulator() {
    let dir = tempfile::tempdir().unwrap();
    let emu = emulator(dir.path()).await;
    let (code, out) = check_with_keys(dir.path(), &emu, DEMO_ID, DEMO_KEY).await;
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("[FAIL]"), "{out}");
    for item in [
        "[ ok ] configuration",
        "[ ok ] server.listen",
        "[ ok ] cloud API keys",
        "[ ok ] TCR instance: tcr-emulator in ap-guangzhou (found with DescribeInstances",
        "[ ok ] CreateInstanceToken",
        "[ ok ] CreateNamespace: permission granted",
        "[ ok ] data plane",
        "[ ok ] token realm",
        "[ ok ] adapter (Harbor \"Test connection\")",
        "[ ok ] chart repository: GET ",
        "[ ok ] adapter (Harbor provider API): GET /api/version → 404",
    ] {
        assert!(out.contains(item), "{item} missing:\n{out}");
    }
    // The probe never creates anything.
    assert!(emu.state.namespaces.list().is_empty());
    emu.stop().await;
}

#[tokio::test]
async fn wrong_secret_key_names_the_signature_and_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let emu = emulator(dir.path()).await;
    let (code, out) = check_with_keys(
        dir.path(),
        &emu,
        DEMO_ID,
        "notTheRightSecretKey000000000000",
    )
    .await;
    assert_eq!(code, 1, "{out}");
    let l = line(&out, "[FAIL] cloud API keys");
    assert!(
        l.contains("the SecretKey does not match the SecretId"),
        "{l}"
    );
    assert!(l.contains("AuthFailure.SignatureFailure"), "{l}");
    assert!(l.contains("fix:   set tcr.secret_key"), "{l}");
    assert!(
        !out.contains("notTheRightSecretKey"),
        "secret echoed:\n{out}"
    );
    emu.stop().await;
}

#[tokio::test]
async fn key_without_create_namespace_fails_with_the_cam_explanation() {
    let dir = tempfile::tempdir().unwrap();
    let emu = emulator(dir.path()).await;
    let (code, out) = check_with_keys(dir.path(), &emu, LIMITED_ID, LIMITED_KEY).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("[ ok ] CreateInstanceToken"), "{out}");
    let l = line(&out, "[FAIL] CreateNamespace");
    assert!(l.contains("CAM policy"), "{l}");
    assert!(l.contains("UnauthorizedOperation"), "{l}");
    assert!(l.contains("grant tcr:CreateNamespace"), "{l}");
    emu.stop().await;
}

#[tokio::test]
async fn unreachable_data_plane_fails_with_the_url() {
    let dir = tempfile::tempdir().unwrap();
    let emu = emulator(dir.path()).await;
    // A port nothing listens on.
    let url = format!("http://127.0.0.1:{}", common::free_port());
    let cfg = config_naming_the_instance(&emu, &url);
    let (code, out) = check(dir.path(), &cfg).await;
    assert_eq!(code, 1, "{out}");
    let l = line(&out, "[FAIL] data plane");
    assert!(l.contains(&format!("GET {url}/v2/: no answer")), "{l}");
    assert!(l.contains("fix:   check tcr.registry_url"), "{l}");
    emu.stop().await;
}

#[tokio::test]
async fn bad_configuration_is_a_failed_item() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out) = check(dir.path(), "[server]\nlisten_typo = 1\n").await;
    assert_eq!(code, 1, "{out}");
    let l = line(&out, "[FAIL] configuration");
    assert!(l.contains("listen_typo"), "{l}");
}

#[tokio::test]
async fn a_chart_repository_that_refuses_the_credential_is_explained() {
    // The data plane of another instance: its token realm and chart repository refuse the
    // instance token issued for this one.
    let dir = tempfile::tempdir().unwrap();
    let other_dir = tempfile::tempdir().unwrap();
    let emu = emulator(dir.path()).await;
    let other = emulator(other_dir.path()).await;
    let cfg = config_naming_the_instance(&emu, &other.registry_url());
    let (code, out) = check(dir.path(), &cfg).await;
    assert_eq!(code, 1, "{out}");
    let l = line(&out, "[FAIL] chart repository");
    assert!(l.contains("→ 401"), "{l}");
    assert!(l.contains("refused the registry credential"), "{l}");
    assert!(l.contains("fix:"), "{l}");
    emu.stop().await;
    other.stop().await;
}

/// No TCR configured and the emulator in self-signed TLS mode: `check` starts the embedded
/// emulator and trusts its own CA, as `serve` does (without it every remote item failed with
/// "not signed by a CA the adapter trusts").
#[tokio::test]
async fn the_embedded_emulator_over_tls_is_trusted_by_check() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out) = check(
        dir.path(),
        r#"
[server]
listen = "127.0.0.1:0"

[emulator]
registry_listen = "127.0.0.1:0"
api_listen = "127.0.0.1:0"

[emulator.tls]
mode = "self-signed"
"#,
    )
    .await;
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("[FAIL]"), "{out}");
    assert!(
        line(&out, "[ ok ] emulator").contains("https://127.0.0.1:"),
        "{out}"
    );
    assert!(out.contains("[ ok ] data plane"), "{out}");
}
