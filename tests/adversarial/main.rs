//! The adapter tried as an attacker and as a careless client would (issue 16), against a real
//! emulator whose data plane journals every request target it receives. The adapter runs with
//! `namespaces.deny = ["projb"]` and a rename map (`alias` → `proja`, `sneaky` → `projb`); an
//! image and a chart sit in each of `proja` and `projb`, put there before the policy was on.
//! Every route of every front is walked with encoded separators, dot-segments, control
//! characters and over-long values in each path parameter, with and without credentials; then
//! the journal must show no request outside a route's own path, nothing in `projb`, no DELETE,
//! and the seeded content must be byte-identical.

#[path = "../common/mod.rs"]
mod common;
#[path = "../harbor/mod.rs"]
mod harbor;

mod charts;
mod credentials;
mod logs;
mod walk;

use std::net::SocketAddr;
use std::time::Duration;

use reqwest::Method;
use tcr_adapter::app;
use tcr_adapter::clock;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use common::charts::{chart_archive, multipart_chart, sha256_hex};
use harbor::{basic, Env};

/// The Basic header of the demo API keys.
pub fn keys() -> String {
    basic(common::DEMO_SECRET_ID, common::DEMO_SECRET_KEY)
}

/// An adapter with the guard rails on, in front of an emulator seeded behind its back.
pub struct Guarded {
    pub env: Env,
    pub addr: SocketAddr,
    /// What must never change: (what, digest) of the seeded images and charts.
    pub seeded: Vec<(String, String)>,
}

impl Guarded {
    pub async fn start() -> Guarded {
        Guarded::start_with(|_| {}).await
    }

    pub async fn start_with(
        emu_cfg: impl FnOnce(&mut tcr_adapter::config::EmulatorConfig),
    ) -> Guarded {
        let mut env = Env::start(emu_cfg, |_| {}).await;
        for ns in ["proja", "projb"] {
            env.replay_2_0(
                &format!("{ns}/app"),
                common::DEMO_SECRET_ID,
                common::DEMO_SECRET_KEY,
            )
            .await;
        }
        upload_ok(&env, "proja", "web", "1.0.0").await;
        upload_ok(&env, "projb", "secret", "1.0.0").await;
        // The guard rails go on now.
        env.adapter.stop().await;
        let mut c = harbor::adapter_config(&env.emu);
        c.namespaces.deny = vec!["projb".into()];
        c.namespaces.map = [
            ("alias".to_string(), "proja".to_string()),
            ("sneaky".to_string(), "projb".to_string()),
        ]
        .into();
        env.adapter = app::start(c, clock::system())
            .await
            .expect("adapter starts");
        env.base = format!("http://{}", env.adapter.addr);
        let addr = env.adapter.addr;
        let seeded = fingerprint(&env).await;
        env.emu.state.journal.clear();
        Guarded { env, addr, seeded }
    }

    /// The seeded content is still there, byte for byte.
    pub async fn assert_untouched(&self) {
        assert_eq!(
            fingerprint(&self.env).await,
            self.seeded,
            "seeded content changed"
        );
    }

    /// No request reached TCR's data plane outside the routes' own paths: nothing in `projb`,
    /// no encoded separator or dot-segment, no catalog or metrics; no DELETE unless `deletes`
    /// (a DELETE of something absent, in its own namespace, that a valid name asked for).
    pub fn assert_journal_clean(&self, deletes: bool) {
        for j in self.env.emu.state.journal.entries() {
            let t = j.target.to_ascii_lowercase();
            let path = t.split('?').next().unwrap_or("");
            let segs: Vec<&str> = path.split('/').collect();
            let ns = match segs.as_slice() {
                ["", "v2", ns, ..] | ["", "chartrepo", ns, ..] => *ns,
                ["", "api", "chartrepo", ns, ..] => *ns,
                _ => "",
            };
            assert_ne!(ns, "projb", "a request reached the denied namespace: {j:?}");
            assert!(
                deletes || j.method != "DELETE",
                "a DELETE went upstream: {j:?}"
            );
            for bad in ["%2e", "%2f", "%5c", "\\", "_catalog", "/metrics"] {
                assert!(!path.contains(bad), "{bad} in an upstream path: {j:?}");
            }
            assert!(
                !segs.iter().any(|s| *s == ".." || *s == "."),
                "dot-segment upstream: {j:?}"
            );
        }
    }
}

/// Digests of the seeded images (read from the emulator directly) and charts.
async fn fingerprint(env: &Env) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let http = reqwest::Client::new();
    let up = env.emu.registry_url();
    for ns in ["proja", "projb"] {
        let repo = format!("{ns}/app");
        let tok = env.tcr_token(&format!("repository:{repo}:pull")).await;
        let r = http
            .head(format!("{up}/v2/{repo}/manifests/v1"))
            .bearer_auth(tok)
            .header("Accept", harbor::OCI_INDEX)
            .send()
            .await
            .unwrap();
        let d = r
            .headers()
            .get("docker-content-digest")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_else(|| format!("absent ({})", r.status()));
        out.push((repo, d));
    }
    for (ns, file) in [("proja", "web-1.0.0.tgz"), ("projb", "secret-1.0.0.tgz")] {
        out.push((format!("{ns}/{file}"), upstream_chart(env, ns, file).await));
    }
    out
}

/// The SHA-256 of a chart file as TCR (the emulator) holds it, or why it is absent.
pub async fn upstream_chart(env: &Env, ns: &str, file: &str) -> String {
    let r = reqwest::Client::new()
        .get(format!(
            "{}/chartrepo/{ns}/charts/{file}",
            env.emu.registry_url()
        ))
        .header("Authorization", basic(&env.user, &env.pass))
        .send()
        .await
        .unwrap();
    match r.status().as_u16() {
        200 => sha256_hex(&r.bytes().await.unwrap()),
        s => format!("absent ({s})"),
    }
}

/// Upload a chart through the adapter; it must be created.
pub async fn upload_ok(env: &Env, ns: &str, name: &str, version: &str) -> Vec<u8> {
    let archive = chart_archive(name, version, 2048);
    let (ct, body) = multipart_chart(&format!("{name}-{version}.tgz"), &archive);
    let (s, text) = post_chart(env, ns, &ct, body).await;
    assert_eq!(s, 201, "{text}");
    archive
}

/// `POST /api/chartrepo/<ns>/charts` through the adapter with the demo keys: (status, body).
pub async fn post_chart(env: &Env, ns: &str, ct: &str, body: Vec<u8>) -> (u16, String) {
    let r = env
        .http
        .post(format!("{}/api/chartrepo/{ns}/charts", env.base))
        .header("Authorization", keys())
        .header("Content-Type", ct)
        .body(body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// A request written byte for byte on a fresh connection (no client normalises the target):
/// the status and the body.
pub async fn raw(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> (u16, String) {
    let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else {
        return (0, String::new());
    };
    let mut head = format!(
        "{method} {target} HTTP/1.1\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        head.push_str(&format!("Host: {addr}\r\n"));
    }
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let mut buf = Vec::new();
    let io = async {
        s.write_all(head.as_bytes()).await?;
        s.write_all(body).await?;
        s.read_to_end(&mut buf).await
    };
    tokio::time::timeout(Duration::from_secs(30), io)
        .await
        .expect("the adapter answers within 30 s")
        .ok();
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    (status, body.to_string())
}

/// A Harbor API call with the demo API keys: status and JSON (or text).
pub async fn api(env: &Env, method: Method, path: &str) -> (u16, serde_json::Value) {
    let r = env
        .http
        .request(method, format!("{}{path}", env.base))
        .header("Authorization", keys())
        .send()
        .await
        .unwrap();
    let s = r.status().as_u16();
    let text = r.text().await.unwrap();
    (
        s,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
    )
}
