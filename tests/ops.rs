//! Operations: TLS on the listener, JSON access logs with `X-Request-Id`, graceful shutdown on
//! SIGTERM (an in-flight upload finishes, new connections are refused, exit 0; the emulator command
//! exits too). The log and shutdown tests run the built binary in front of an in-process emulator.

mod common;
mod oci_layout;

use crate::common::SendOk;
use std::process::Stdio;
use std::time::Duration;

use tcr_adapter::app;
use tcr_adapter::clock;
use tcr_adapter::config::Config;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

/// A self-signed certificate for 127.0.0.1 (PEM cert, PEM key).
fn self_signed() -> (Vec<u8>, Vec<u8>) {
    let key = openssl::pkey::PKey::from_rsa(openssl::rsa::Rsa::generate(2048).unwrap()).unwrap();
    (
        common::self_signed_cert(&key, "127.0.0.1", 2, Some("127.0.0.1")),
        key.private_key_to_pem_pkcs8().unwrap(),
    )
}

#[tokio::test]
async fn tls_listener_serves_the_challenge_with_an_https_realm() {
    let emu = common::start_emulator().await;
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed();
    std::fs::write(dir.path().join("tls.crt"), &cert).unwrap();
    std::fs::write(dir.path().join("tls.key"), &key).unwrap();
    let port = common::free_port();
    let mut cfg = Config::default();
    cfg.server.listen = format!("127.0.0.1:{port}").parse().unwrap();
    cfg.server.public_url = format!("https://127.0.0.1:{port}");
    cfg.server.tls.cert_file = Some(dir.path().join("tls.crt"));
    cfg.server.tls.key_file = Some(dir.path().join("tls.key"));
    cfg.tcr.registry_url = emu.handle.registry_url();
    cfg.tcr.api_endpoint = emu.handle.api_url();
    cfg.tcr.registry_id = emu.handle.state.cfg.registry_id.clone();
    cfg.tcr.region = emu.handle.state.cfg.region.clone();
    let adapter = app::start(cfg, clock::system()).await.unwrap();
    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&cert).unwrap())
        .build()
        .unwrap();
    let resp = http
        .get(format!("https://127.0.0.1:{port}/v2/"))
        .send_ok()
        .await;
    assert_eq!(resp.status(), 401);
    let challenge = resp.headers()["www-authenticate"].to_str().unwrap();
    assert!(
        challenge.starts_with(&format!(
            "Bearer realm=\"https://127.0.0.1:{port}/service/token\""
        )),
        "{challenge}"
    );
    // Plain HTTP on the TLS port is not served.
    let plain = reqwest::get(format!("http://127.0.0.1:{port}/v2/")).await;
    assert!(plain.map(|r| r.status() != 401).unwrap_or(true));
    adapter.stop().await;
    emu.handle.stop().await;
}

/// The binary, configured against the emulator, with JSON logs; (child, base URL).
async fn spawn_binary(
    emu: &common::TestEmulator,
    dir: &std::path::Path,
) -> (tokio::process::Child, String) {
    let config = format!(
        r#"
[server]
listen = "127.0.0.1:0"
shutdown_grace_secs = 10
workers = 2

[tcr]
registry_url = "{}"
api_endpoint = "{}"
registry_id = "{}"
region = "{}"

[log]
format = "json"
level = "info"
"#,
        emu.handle.registry_url(),
        emu.handle.api_url(),
        emu.handle.state.cfg.registry_id,
        emu.handle.state.cfg.region
    );
    let path = dir.join("adapter.toml");
    std::fs::write(&path, config).unwrap();
    run_until_listening("serve", &path, Stdio::piped(), "tcr-adapter listening on ").await
}

/// `tcr-adapter <command> --config <path>` with an empty environment and stdout piped: the child
/// and the first word after `ready` on its stdout (it must print it within 20 s). Stdout keeps
/// being drained so the child never blocks on it.
async fn run_until_listening(
    command: &str,
    path: &std::path::Path,
    stderr: Stdio,
    ready: &str,
) -> (tokio::process::Child, String) {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_tcr-adapter"))
        .args([command, "--config"])
        .arg(path)
        .env_clear()
        .stdout(Stdio::piped())
        .stderr(stderr)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(l) = lines.next_line().await.unwrap() {
            if let Some(rest) = l.strip_prefix(ready) {
                return rest.split_whitespace().next().unwrap().to_string();
            }
        }
        panic!("tcr-adapter {command} exited before listening")
    })
    .await
    .unwrap_or_else(|_| panic!("tcr-adapter {command} starts"));
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, addr)
}

/// SIGTERM to `child`, which must then exit 0: everything it wrote to stderr.
async fn sigterm_and_stderr(mut child: tokio::process::Child) -> String {
    sigterm(&child);
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .await
        .unwrap();
    assert!(child.wait().await.unwrap().success());
    stderr
}

fn sigterm(child: &tokio::process::Child) {
    let pid = child.id().expect("running").to_string();
    let ok = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -TERM {pid}");
}

#[tokio::test]
async fn json_access_log_line_carries_the_request_id() {
    let emu = common::start_emulator().await;
    let dir = tempfile::tempdir().unwrap();
    let (child, base) = spawn_binary(&emu, dir.path()).await;
    let tok = common::token(&base, "repository:demo/app:pull").await;
    let resp = reqwest::Client::new()
        .get(format!("{base}/v2/demo/app/tags/list"))
        .bearer_auth(&tok)
        .header("X-Request-Id", "ops-test-request-1")
        .send_ok()
        .await;
    let status = resp.status().as_u16();
    assert_eq!(resp.headers()["x-request-id"], "ops-test-request-1");
    let sent = resp.bytes().await.unwrap().len();
    assert!(sent > 0);
    // Without one, the adapter makes one up and returns it.
    let resp = reqwest::get(format!("{base}/v2/")).await.unwrap();
    let generated = crate::common::header(&resp, "x-request-id");
    assert!(generated.len() >= 16, "{generated}");
    let stderr = sigterm_and_stderr(child).await;
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect();
    let line = lines
        .iter()
        .find(|v| v["request_id"] == "ops-test-request-1")
        .unwrap_or_else(|| panic!("no access line in:\n{stderr}"));
    assert_eq!(line["method"], "GET", "{line}");
    assert_eq!(line["repository"], "demo/app", "{line}");
    assert_eq!(line["status"], status, "{line}");
    assert!(
        line["route"].as_str().is_some_and(|r| !r.is_empty()),
        "{line}"
    );
    // The bytes actually sent, counted when the body ended (not "-").
    assert_eq!(line["bytes"], sent, "{line}");
    assert!(line["duration_ms"].is_u64(), "{line}");
    assert!(
        lines.iter().any(|v| v["request_id"] == generated.as_str()),
        "{stderr}"
    );
    emu.handle.stop().await;
}

#[tokio::test]
async fn sigterm_lets_an_inflight_upload_finish_and_refuses_new_connections() {
    let emu = common::start_emulator().await;
    let dir = tempfile::tempdir().unwrap();
    let (mut child, base) = spawn_binary(&emu, dir.path()).await;
    let tok = common::token(&base, "repository:demo/slow:pull,push").await;
    let http = reqwest::Client::new();
    let location = common::start_upload(&http, &base, "demo/slow", &tok).await;
    let data: Vec<u8> = (0..64 * 1024u32).map(|i| (i % 251) as u8).collect();
    let digest = format!("sha256:{}", hex::encode(openssl::sha::sha256(&data)));
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(4);
    let body = reqwest::Body::wrap_stream(common::stream_of(rx));
    let put = tokio::spawn({
        let http = http.clone();
        let tok = tok.clone();
        let url = common::with_digest(&location, &digest);
        async move {
            http.put(url)
                .bearer_auth(tok)
                .header("Content-Type", "application/octet-stream")
                .body(body)
                .send()
                .await
        }
    });
    let (first, rest) = data.split_at(1024);
    tx.send(Ok(bytes::Bytes::copy_from_slice(first)))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    sigterm(&child);
    tokio::time::sleep(Duration::from_millis(700)).await;
    // The listener is closed: a new connection is refused.
    let addr = base.trim_start_matches("http://").to_string();
    let refused = tokio::net::TcpStream::connect(&addr).await;
    assert!(
        refused.is_err(),
        "a new connection was accepted after SIGTERM"
    );
    // The trickling upload finishes within the grace period.
    for chunk in rest.chunks(8 * 1024) {
        tx.send(Ok(bytes::Bytes::copy_from_slice(chunk)))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(tx);
    let resp = put.await.unwrap().expect("the upload gets an answer");
    assert_eq!(resp.status(), 201, "{:?}", resp.text().await);
    let status = tokio::time::timeout(Duration::from_secs(15), child.wait())
        .await
        .expect("the adapter exits")
        .unwrap();
    assert!(status.success(), "exit status {status:?}");
    // The blob landed upstream.
    assert!(emu
        .handle
        .state
        .storage
        .blob_file(&tcr_adapter::oci::Digest::parse(&digest).unwrap())
        .exists());
    emu.handle.stop().await;
}

/// skopeo speaks TLS first to a plain-HTTP registry: actix's parse errors are the client's, so
/// they are counted and never logged at ERROR (operators alert on ERROR).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_skopeo_push_over_plain_http_logs_no_error() {
    common::require_tool("skopeo");
    let emu = common::start_emulator().await;
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("layout");
    let mut layout = oci_layout::Layout::new(&src);
    layout.tag_image("v1", 7);
    layout.finish();
    let (child, base) = spawn_binary(&emu, dir.path()).await;
    let host = base.trim_start_matches("http://");
    let keys = format!("{}:{}", common::DEMO_SECRET_ID, common::DEMO_SECRET_KEY);
    common::skopeo_push(&src, "v1", &format!("{host}/plainhttp/app:v1"), &keys).await;
    let metrics = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let count: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("tcr_adapter_client_protocol_errors_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no client protocol error counter in:\n{metrics}"));
    let stderr = sigterm_and_stderr(child).await;
    assert!(count >= 1, "skopeo's TLS attempt was not seen: {count}");
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("\"level\":\"ERROR\""))
        .collect();
    assert!(
        errors.is_empty(),
        "ERROR lines for a client's mistake:\n{}",
        errors.join("\n")
    );
    emu.handle.stop().await;
}

/// `tcr-adapter emulator` stops on SIGTERM (`docker stop`, systemd) and exits 0; it used to wait
/// for ctrl-c only and hang with its listeners already closed.
#[tokio::test]
async fn the_emulator_command_exits_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let path = common::emulator_toml(dir.path(), "127.0.0.1:0", "127.0.0.1:0");
    let (mut child, registry) = run_until_listening(
        "emulator",
        &path,
        Stdio::null(),
        "TCR emulator: data plane ",
    )
    .await;
    let r = reqwest::get(format!("{registry}/v2/")).await.unwrap();
    assert_eq!(r.status(), 401);
    sigterm(&child);
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("the emulator exits within 10 s of SIGTERM")
        .unwrap();
    assert!(status.success(), "{status}");
}
