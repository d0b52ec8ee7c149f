//! The production path over TLS: client →(HTTPS)→ adapter →(HTTPS, custom CA)→ emulator.
//! The emulator's self-signed mode writes and reuses its CA; skopeo copies through the chain
//! trusting that CA with `--dest-cert-dir`/`--src-cert-dir`; an untrusted CA, an expired
//! certificate and a certificate for another name each fail `tcr-adapter check` and the data
//! path with words a user can act on.

mod common;

use crate::common::SendOk;
use std::path::{Path, PathBuf};

use tcr_adapter::app;
use tcr_adapter::clock;
use tcr_adapter::config::{Config, EmulatorConfig, EmulatorTlsMode};
use tcr_adapter::emulator::tls::{days, Ca};
use tcr_adapter::emulator::EmulatorHandle;

mod harbor;
mod oci_layout;

use common::free_port;

fn self_signed_emulator(dir: &Path) -> EmulatorConfig {
    let mut cfg = common::emulator_config(dir);
    cfg.tls.mode = EmulatorTlsMode::SelfSigned;
    cfg
}

/// An adapter on HTTPS (serving the emulator's own certificate, which covers 127.0.0.1) towards
/// `emu`, trusting `ca_file` for the upstream.
async fn https_adapter(emu: &EmulatorHandle, tls_dir: &Path, ca_file: &Path) -> app::AdapterHandle {
    let port = free_port();
    let mut cfg = common::adapter_config(emu);
    cfg.server.listen = format!("127.0.0.1:{port}").parse().unwrap();
    cfg.server.public_url = format!("https://127.0.0.1:{port}");
    cfg.server.tls.cert_file = Some(tls_dir.join("cert.pem"));
    cfg.server.tls.key_file = Some(tls_dir.join("key.pem"));
    cfg.tcr.ca_file = Some(ca_file.to_path_buf());
    app::start(cfg, clock::system()).await.unwrap()
}

/// A skopeo certificate directory holding `ca` as `ca.crt`.
fn cert_dir(parent: &Path, ca: &Path) -> PathBuf {
    let d = parent.join("certs.d");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::copy(ca, d.join("ca.crt")).unwrap();
    d
}

#[tokio::test]
async fn self_signed_mode_writes_its_ca_once_and_reuses_it() {
    let dir = tempfile::tempdir().unwrap();
    let emu = common::start_emulator_with(self_signed_emulator(dir.path())).await;
    let tls = dir.path().join("tls");
    assert!(emu.registry_url().starts_with("https://"));
    assert!(emu.api_url().starts_with("https://"));
    assert_eq!(emu.ca_file(), Some(tls.join("ca.pem").as_path()));
    let ca = std::fs::read(tls.join("ca.pem")).unwrap();
    let cert = std::fs::read(tls.join("cert.pem")).unwrap();
    // Both listeners serve it, verified against the CA alone.
    let http = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .build()
        .unwrap();
    let v2 = http
        .get(format!("{}/v2/", emu.registry_url()))
        .send_ok()
        .await;
    assert_eq!(v2.status(), 401);
    assert!(
        v2.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("realm=\"https://"),
        "the token realm is HTTPS too"
    );
    let api = http.post(emu.api_url()).body("{}").send_ok().await;
    assert_eq!(api.status(), 200, "cloud API envelope over TLS");
    // localhost is a name of the certificate too.
    let by_name = http
        .get(format!(
            "https://localhost:{}/v2/",
            emu.registry_addr.port()
        ))
        .send_ok()
        .await;
    assert_eq!(by_name.status(), 401);
    emu.stop().await;

    let again = common::start_emulator_with(self_signed_emulator(dir.path())).await;
    assert_eq!(std::fs::read(tls.join("ca.pem")).unwrap(), ca, "CA reused");
    assert_eq!(
        std::fs::read(tls.join("cert.pem")).unwrap(),
        cert,
        "certificate reused"
    );
    again.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skopeo_copies_through_https_on_both_sides() {
    common::require_tool("skopeo");
    let dir = tempfile::tempdir().unwrap();
    let emu = common::start_emulator_with(self_signed_emulator(dir.path())).await;
    let tls = dir.path().join("tls");
    let ca = tls.join("ca.pem");
    let adapter = https_adapter(&emu, &tls, &ca).await;
    let host = adapter.addr.to_string();
    let emu_host = emu.registry_addr.to_string();
    let certs = cert_dir(dir.path(), &ca);
    let certs = certs.to_str().unwrap();
    let keys = format!("{}:{}", common::DEMO_SECRET_ID, common::DEMO_SECRET_KEY);
    let (user, pass) = common::instance_credentials(&emu);
    let emu_creds = format!("{user}:{pass}");

    let src = dir.path().join("src");
    let mut layout = oci_layout::Layout::new(&src);
    let multi = layout.tag_index("multi", 2);
    layout.finish();
    common::skopeo(&[
        "copy",
        "--all",
        "--preserve-digests",
        "--dest-cert-dir",
        certs,
        "--dest-creds",
        &keys,
        &format!("oci:{}:multi", src.display()),
        &format!("docker://{host}/tls/app:multi"),
    ])
    .await;
    for (via, creds) in [(&host, &keys), (&emu_host, &emu_creds)] {
        let raw = common::skopeo(&[
            "inspect",
            "--raw",
            "--cert-dir",
            certs,
            "--creds",
            creds,
            &format!("docker://{via}/tls/app:multi"),
        ])
        .await;
        assert_eq!(
            tcr_adapter::oci::Digest::sha256_of(raw.as_bytes()).to_string(),
            multi.to_string(),
            "digest via {via}"
        );
    }
    // Pull back through the chain: the same blobs as the source.
    let back = dir.path().join("back");
    common::skopeo(&[
        "copy",
        "--all",
        "--preserve-digests",
        "--src-cert-dir",
        certs,
        "--src-creds",
        &keys,
        &format!("docker://{host}/tls/app:multi"),
        &format!("oci:{}:multi", back.display()),
    ])
    .await;
    let pulled = oci_layout::blobs(&back);
    let source = oci_layout::blobs(&src);
    assert!(pulled.len() >= 5, "{} blobs", pulled.len());
    for (k, v) in &pulled {
        assert_eq!(Some(v), source.get(k), "blob {k}");
    }
    adapter.stop().await;
    emu.stop().await;
}

/// An emulator serving `cert`/`key` (own-certificate mode) on free loopback ports.
async fn emulator_serving(dir: &Path, cert: &[u8], key: &[u8]) -> EmulatorHandle {
    let mut cfg = common::emulator_config(dir);
    std::fs::write(dir.join("srv.pem"), cert).unwrap();
    std::fs::write(dir.join("srv-key.pem"), key).unwrap();
    cfg.tls.cert_file = Some(dir.join("srv.pem"));
    cfg.tls.key_file = Some(dir.join("srv-key.pem"));
    common::start_emulator_with(cfg).await
}

/// Run `tcr-adapter check` against `emu` trusting `ca_file`; (exit code, stdout).
async fn check(dir: &Path, emu: &EmulatorHandle, ca_file: &Path) -> (i32, String) {
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[tcr]\nregistry_url = \"{}\"\napi_endpoint = \"{}\"\nsecret_id = \"{}\"\nsecret_key = \"{}\"\nca_file = \"{}\"\n",
        emu.registry_url(),
        emu.api_url(),
        common::DEMO_SECRET_ID,
        common::DEMO_SECRET_KEY,
        ca_file.display()
    );
    common::run_check(dir, &config).await
}

/// The data path through a plain-HTTP adapter trusting `ca_file`: a token request with registry
/// credentials, validated at the upstream realm over TLS; (status, body) of each.
async fn data_path(emu: &EmulatorHandle, ca_file: &Path) -> Vec<(u16, String)> {
    let mut cfg: Config = common::adapter_config(emu);
    cfg.tcr.ca_file = Some(ca_file.to_path_buf());
    let adapter = app::start(cfg, clock::system()).await.unwrap();
    let (user, pass) = common::instance_credentials(emu);
    let http = reqwest::Client::new();
    let mut out = Vec::new();
    let token = http
        .get(format!(
            "http://{}/service/token?service=tcr-adapter&scope=repository:tls/app:pull",
            adapter.addr
        ))
        .basic_auth(&user, Some(&pass))
        .send_ok()
        .await;
    out.push((token.status().as_u16(), token.text().await.unwrap()));
    adapter.stop().await;
    out
}

/// A CA, written to `dir/<name>.pem`, and its path.
fn ca_in(dir: &Path, name: &str) -> (Ca, PathBuf) {
    let ca = Ca::generate(name).unwrap();
    let path = dir.join(format!("{name}.pem"));
    std::fs::write(&path, ca.cert.to_pem().unwrap()).unwrap();
    (ca, path)
}

fn assert_words(what: &str, text: &str, words: &[&str]) {
    for w in words {
        assert!(text.contains(w), "{what}: {w:?} missing in:\n{text}");
    }
}

/// `check` trusting `ca_file` exits 1 naming every `want`, and the data path through an adapter
/// trusting it answers 502 or 503 naming them too: `check`'s output.
async fn assert_named_by_check_and_data_path(
    dir: &Path,
    emu: &EmulatorHandle,
    ca_file: &Path,
    want: &[&str],
) -> String {
    let (code, out) = check(dir, emu, ca_file).await;
    assert_eq!(code, 1, "{out}");
    assert_words("check", &out, want);
    for (status, body) in data_path(emu, ca_file).await {
        assert!(status == 502 || status == 503, "{status} {body}");
        assert_words("data path", &body, want);
    }
    out
}

/// An emulator serving a certificate for `names` issued by `ca`, valid `from`..`to` days from now:
/// the emulator and the certificate.
async fn emulator_with_cert_from(
    dir: &Path,
    ca: &Ca,
    names: &[&str],
    (from, to): (i64, i64),
) -> (EmulatorHandle, openssl::x509::X509) {
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let (cert, key) = ca
        .issue(&names, days(from).unwrap(), days(to).unwrap())
        .unwrap();
    let emu = emulator_serving(
        dir,
        &cert.to_pem().unwrap(),
        &key.private_key_to_pem_pkcs8().unwrap(),
    )
    .await;
    (emu, cert)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_ca_is_named_by_check_and_the_data_path() {
    let dir = tempfile::tempdir().unwrap();
    let emu = common::start_emulator_with(self_signed_emulator(dir.path())).await;
    let (_, other) = ca_in(dir.path(), "some-other-ca");
    let want = [
        "TCR's certificate (issued by CN=tcr-adapter emulator CA) is not signed by a CA the adapter trusts",
        "set tcr.ca_file to the PEM file of the CA that signed it",
    ];
    assert_named_by_check_and_data_path(dir.path(), &emu, &other, &want).await;
    emu.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_certificate_is_named_by_check_and_the_data_path() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, ca_path) = ca_in(dir.path(), "corp-ca");
    let names = ["127.0.0.1", "localhost"];
    let (emu, cert) = emulator_with_cert_from(dir.path(), &ca, &names, (-30, -2)).await;
    let expiry = cert.not_after().to_string();
    let want = [
        "TCR's certificate for 127.0.0.1 expired on ".to_string() + &expiry,
        "renew it".to_string(),
    ];
    let want: Vec<&str> = want.iter().map(String::as_str).collect();
    let out = assert_named_by_check_and_data_path(dir.path(), &emu, &ca_path, &want).await;
    assert!(
        !out.contains("not signed by a CA"),
        "the CA is trusted:\n{out}"
    );
    emu.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostname_mismatch_is_named_by_check_and_the_data_path() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, ca_path) = ca_in(dir.path(), "corp-ca");
    let (emu, _) = emulator_with_cert_from(dir.path(), &ca, &["tcr.example.com"], (-1, 30)).await;
    let want = [
        "TCR's certificate is for tcr.example.com, not 127.0.0.1",
        "use one of those names in tcr.registry_url",
    ];
    assert_named_by_check_and_data_path(dir.path(), &emu, &ca_path, &want).await;
    emu.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn harbor_replays_of_every_generation_over_https_on_both_sides() {
    let e = harbor::Env::start_tls().await;
    assert!(e.base.starts_with("https://"));
    let keys = (common::DEMO_SECRET_ID, common::DEMO_SECRET_KEY);
    e.replay_1_8("t18/app", keys.0, keys.1).await;
    e.replay_1_10("t110/app", keys.0, keys.1).await;
    e.replay_2_0("t20/multi", keys.0, keys.1).await;
    let (u, p) = (e.user.clone(), e.pass.clone());
    e.replay_2_0("t20l/multi", &u, &p).await;
    assert_eq!(e.namespaces(), ["t110", "t18", "t20", "t20l"]);
    e.adapter.stop().await;
    e.emu.stop().await;
}
