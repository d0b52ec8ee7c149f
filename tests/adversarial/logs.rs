//! What the adapter says about itself and writes to its log cannot be steered by a client:
//! no forged log line, no self-URL from untrusted forwarded headers, no internals in errors.

use std::process::Stdio;
use std::time::Duration;

use crate::{keys, raw, Guarded};

/// A forged line's start: a timestamp no real line of this run has.
const FORGED: &str = "1999-01-01T00:00:00.000000Z";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_values_cannot_forge_log_lines() {
    let g = Guarded::start().await;
    let emu = &g.env.emu;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("adapter.log");
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_tcr-adapter"))
        .arg("serve")
        .env_remove("TCR_ADAPTER_CONFIG")
        .env("TCR_ADAPTER__SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .env("TCR_ADAPTER__TCR__REGISTRY_URL", emu.registry_url())
        .env("TCR_ADAPTER__TCR__API_ENDPOINT", emu.api_url())
        .env("TCR_ADAPTER__TCR__REGISTRY_ID", &emu.state.cfg.registry_id)
        .env("TCR_ADAPTER__TCR__REGION", &emu.state.cfg.region)
        .env("TCR_ADAPTER__NAMESPACES__DENY", "projb")
        .env("TCR_ADAPTER__LOG__LEVEL", "debug")
        .env("TCR_ADAPTER__LOG__FORMAT", "text")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("adapter binary starts");
    let mut child = Kill(child);
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    for _ in 0..100 {
        if raw(addr, "GET", "/healthz", &[], b"").await.0 == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let line =
        format!("%0a{FORGED}%20%20INFO%20audit:%20event=%22chart_deleted%22%20namespace=projb");
    let auth = vec![("Authorization", keys())];
    for target in [
        format!("/chartrepo/proja/charts/x{line}.tgz"),
        format!("/api/chartrepo/proja/charts/web{line}/1.0.0"),
        format!("/api/repositories/proja/app{line}/tags"),
        format!("/v2/proja/app{line}/manifests/v1"),
        format!("/v2/proja/app/manifests/v1{line}"),
    ] {
        raw(addr, "GET", &target, &auth, b"").await;
    }
    let forged_json = format!(
        "{{\"project_name\": \"p\\n{FORGED}  INFO audit: event=\\\"namespace_created\\\"\"}}"
    );
    let mut h = auth.clone();
    h.push(("Content-Type", "application/json".into()));
    raw(addr, "POST", "/api/projects", &h, forged_json.as_bytes()).await;
    // A header value the adapter may log.
    let ua = vec![("User-Agent", format!("x\r{FORGED} forged"))];
    raw(addr, "GET", "/v2/", &ua, b"").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    child.0.kill().ok();
    child.0.wait().ok();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.lines().count() > 3,
        "the adapter logged nothing:\n{text}"
    );
    for l in text.split(['\n', '\r']) {
        assert!(!l.trim_start().starts_with(FORGED), "forged log line:\n{l}");
    }
}

struct Kill(std::process::Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn systeminfo_ignores_untrusted_forwarded_headers() {
    let g = Guarded::start().await;
    for (name, value) in [
        ("X-Forwarded-Host", "evil.example"),
        ("X-Forwarded-Proto", "javascript"),
        ("Forwarded", "host=evil.example;proto=javascript"),
        ("Host", "evil.example"),
    ] {
        let mut headers = vec![("Authorization", keys())];
        headers.push((name, value.to_string()));
        let (s, body) = raw(g.addr, "GET", "/api/systeminfo", &headers, b"").await;
        assert_eq!(s, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(body.trim()).unwrap_or_default();
        let ext = v["external_url"].as_str().unwrap_or("");
        assert_eq!(ext, g.env.base, "{name}: {body}");
        assert!(
            !body.contains("evil") && !body.contains("javascript"),
            "{name}: {body}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_bodies_do_not_echo_whole_values_or_internals() {
    let g = Guarded::start().await;
    let long = "a".repeat(10_000);
    for target in [
        format!("/api/chartrepo/proja/charts/{long}"),
        format!("/v2/proja/{long}/manifests/v1"),
        format!("/api/repositories/proja/{long}/tags"),
        format!("/chartrepo/proja/charts/{long}.tgz"),
    ] {
        for auth in [vec![("Authorization", keys())], vec![]] {
            let (s, body) = raw(g.addr, "GET", &target, &auth, b"").await;
            assert!((400..500).contains(&s), "{s}");
            assert!(
                body.len() < 1024,
                "{}-byte body: {}",
                body.len(),
                &body[..200]
            );
            assert!(!body.contains(&g.env.emu.registry_url()), "{body}");
        }
    }
}
