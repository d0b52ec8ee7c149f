//! The test rig the suite shares: real servers on loopback ports, stopped at the end of each
//! test — the emulator and the adapter in process (here), the adapter binary, CNCF distribution
//! and nginx as processes ([`rig`]) — and the exchanges tests repeat ([`exchanges`]), so that a
//! test reads as the user's story and keeps its own assertions.
#![allow(dead_code, unused_imports)]

pub mod charts;
pub mod exchanges;
pub mod rig;

pub use exchanges::*;
pub use rig::*;

use tcr_adapter::clock;
use tcr_adapter::config::{Config, EmulatorAccount, EmulatorConfig, Secret};
use tcr_adapter::emulator::{self, EmulatorHandle};

pub const DEMO_SECRET_ID: &str = EmulatorAccount::DEMO_SECRET_ID;
pub const DEMO_SECRET_KEY: &str = EmulatorAccount::DEMO_SECRET_KEY;
pub const DEMO_UIN: &str = EmulatorAccount::DEMO_UIN;

/// An emulator config on free loopback ports over a fresh temporary data dir.
pub fn emulator_config(data_dir: &std::path::Path) -> EmulatorConfig {
    EmulatorConfig {
        registry_listen: "127.0.0.1:0".parse().unwrap(),
        api_listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: data_dir.to_path_buf(),
        ..EmulatorConfig::default()
    }
}

/// A running emulator plus the temporary directory holding its data.
pub struct TestEmulator {
    pub handle: EmulatorHandle,
    pub dir: tempfile::TempDir,
}

pub async fn start_emulator() -> TestEmulator {
    let dir = tempfile::tempdir().unwrap();
    let handle = emulator::start(emulator_config(dir.path()), clock::system())
        .await
        .expect("emulator starts");
    TestEmulator { handle, dir }
}

/// [`start_emulator`] holding the namespaces `(name, public)`.
pub async fn start_emulator_with_namespaces(namespaces: &[(&str, bool)]) -> TestEmulator {
    let t = start_emulator().await;
    for (name, public) in namespaces {
        t.handle.state.namespaces.create(name, *public).unwrap();
    }
    t
}

pub async fn start_emulator_with(cfg: EmulatorConfig) -> EmulatorHandle {
    emulator::start(cfg, clock::system())
        .await
        .expect("emulator starts")
}

/// Panic (never skip) when a tool the tests need is missing: `.ci/run` installs them.
pub fn require_tool(name: &str) {
    let found = std::process::Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        found,
        "{name} is not installed: run .ci/run (or scripts/install-test-deps.sh) first"
    );
}

/// An adapter configuration towards `emu` on a free loopback port: instance id and region set,
/// provisioner keys = the demo API keys.
pub fn adapter_config(emu: &EmulatorHandle) -> Config {
    let mut cfg = Config::default();
    cfg.server.listen = "127.0.0.1:0".parse().unwrap();
    cfg.tcr.registry_url = emu.registry_url();
    cfg.tcr.api_endpoint = emu.api_url();
    cfg.tcr.registry_id = emu.state.cfg.registry_id.clone();
    cfg.tcr.region = emu.state.cfg.region.clone();
    cfg.tcr.secret_id = DEMO_SECRET_ID.into();
    cfg.tcr.secret_key = Secret::new(DEMO_SECRET_KEY);
    test_mode(&mut cfg);
    cfg
}

/// `TCR_TEST_WAN_PIPELINE=1` runs a suite with pipelined uploads (`wan.pipeline = true`): the
/// README's test command runs the conformance port and the Harbor replays once more that way.
pub fn test_mode(cfg: &mut Config) {
    if std::env::var("TCR_TEST_WAN_PIPELINE").is_ok_and(|v| v == "1") {
        cfg.wan.pipeline = true;
    }
    // `TCR_TEST_STATE_REDIS=redis://…` runs a suite with the WAN state on that Redis (each
    // adapter under its own key prefix, so tests running side by side never meet).
    if let Ok(url) = std::env::var("TCR_TEST_STATE_REDIS") {
        if !url.is_empty() {
            cfg.state.redis_url = Secret::new(url);
            cfg.state.key_prefix = format!("test-{}", uuid::Uuid::new_v4().simple());
        }
    }
}

/// `cfg` on HTTPS at `127.0.0.1:<port>` (its public URL too), serving the certificate and key
/// a self-signed emulator wrote to `tls` (they cover 127.0.0.1), and trusting that emulator's
/// `ca.pem` towards TCR.
pub fn serve_https_with_emulator_certs(cfg: &mut Config, port: u16, tls: &std::path::Path) {
    cfg.server.listen = format!("127.0.0.1:{port}").parse().unwrap();
    cfg.server.public_url = format!("https://127.0.0.1:{port}");
    cfg.server.tls.cert_file = Some(tls.join("cert.pem"));
    cfg.server.tls.key_file = Some(tls.join("key.pem"));
    cfg.tcr.ca_file = Some(tls.join("ca.pem"));
}

/// Run skopeo (with a throw-away HOME) and return its stdout; a failure fails the test with
/// skopeo's stderr.
pub async fn skopeo(args: &[&str]) -> String {
    let home = tempfile::tempdir().unwrap();
    let out = tokio::process::Command::new("skopeo")
        .args(args)
        .env("HOME", home.path())
        .output()
        .await
        .expect("skopeo runs");
    assert!(
        out.status.success(),
        "skopeo {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `skopeo copy <flags> --dest-tls-verify=false --dest-creds <creds> [--all] <from> <to>`: an
/// image (or with `all` an index and every platform) to a plain-HTTP registry.
pub async fn skopeo_copy(from: &str, to: &str, creds: &str, flags: &[&str], all: bool) {
    let mut args = vec!["copy"];
    args.extend(flags);
    args.extend(["--dest-tls-verify=false", "--dest-creds", creds]);
    if all {
        args.push("--all");
    }
    args.extend([from, to]);
    skopeo(&args).await;
}

/// `skopeo copy --all --preserve-digests` of `oci:<layout>:<tag>` to `docker://<dest>` (plain
/// HTTP, `creds` as `user:password`).
pub async fn skopeo_push(layout: &std::path::Path, tag: &str, dest: &str, creds: &str) {
    skopeo(&[
        "copy",
        "--all",
        "--preserve-digests",
        "--dest-tls-verify=false",
        "--dest-creds",
        creds,
        &format!("oci:{}:{tag}", layout.display()),
        &format!("docker://{dest}"),
    ])
    .await;
}

/// `skopeo copy --all --preserve-digests` of `docker://<reference>` (plain HTTP) to
/// `oci:<out>:<tag>`: an image or index back out of a registry, byte for byte.
pub async fn skopeo_pull(reference: &str, out: &std::path::Path, tag: &str, creds: &str) {
    skopeo(&[
        "copy",
        "--all",
        "--preserve-digests",
        "--src-tls-verify=false",
        "--src-creds",
        creds,
        &format!("docker://{reference}"),
        &format!("oci:{}:{tag}", out.display()),
    ])
    .await;
}

/// The raw manifest of `docker://<reference>` as skopeo fetches it (plain HTTP).
pub async fn skopeo_raw_manifest(reference: &str, creds: &str) -> String {
    skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        "--creds",
        creds,
        &format!("docker://{reference}"),
    ])
    .await
}

/// The adapter in this process with `cfg`: (handle, base URL `http://<addr>`).
pub async fn start_adapter(cfg: Config) -> (tcr_adapter::app::AdapterHandle, String) {
    let adapter = tcr_adapter::app::start(cfg, clock::system())
        .await
        .expect("adapter starts");
    let base = format!("http://{}", adapter.addr);
    (adapter, base)
}

/// A `tcr-adapter verify` configuration towards `emu` with the demo keys, `api_qps` cloud API
/// calls a second, and `extra` TOML appended (e.g. a namespace map): its path.
pub fn verify_toml(
    dir: &std::path::Path,
    emu: &EmulatorHandle,
    api_qps: u32,
    extra: &str,
) -> std::path::PathBuf {
    let path = dir.join("verify.toml");
    std::fs::write(
        &path,
        format!(
            "[tcr]\nregistry_url = \"{}\"\napi_endpoint = \"{}\"\nregistry_id = \"{}\"\nregion = \"{}\"\nsecret_id = \"{}\"\nsecret_key = \"{}\"\napi_qps = {api_qps}\n{extra}",
            emu.registry_url(),
            emu.api_url(),
            emu.state.cfg.registry_id,
            emu.state.cfg.region,
            DEMO_SECRET_ID,
            DEMO_SECRET_KEY,
        ),
    )
    .unwrap();
    path
}
