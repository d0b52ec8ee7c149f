//! `tcr-adapter check`: verify the configuration and everything Harbor's "Test connection" (and
//! the first push) will hit, and explain each failure in plain words with its likely cause and
//! the fix. Prints a checklist (`[ ok ]`, `[FAIL]`, `[skip]`); any failure makes the command exit
//! non-zero. With no `tcr.registry_url` it starts the embedded emulator (on a temporary data
//! directory) and checks against it.
//!
//! The `CreateNamespace` permission is probed honestly but without side effects: the check calls
//! `CreateNamespace` with the name `-check-`, which TCR's naming rule refuses. CAM authorization
//! runs before parameter validation, so `UnauthorizedOperation` means "no permission" and
//! `InvalidParameter*` means "permission granted, name rejected": nothing is ever created.

use std::fmt::Write as _;
use std::net::TcpListener;
use std::time::Duration;

use base64::Engine;

use tcr_adapter::clock::SharedClock;
use tcr_adapter::config::Config;
use tcr_adapter::tencentcloud::ApiError;

mod harbor;
mod paging;
mod remote;

/// The namespace name used to probe the `CreateNamespace` permission; TCR refuses it.
pub const PROBE_NAMESPACE: &str = "-check-";

/// Outcome of one item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    Fail,
    Skip,
}

/// One line of the checklist.
#[derive(Debug, Clone)]
pub struct Item {
    pub status: Status,
    pub name: String,
    pub detail: String,
    pub cause: Option<String>,
    pub fix: Option<String>,
}

/// The checklist.
#[derive(Debug, Default)]
pub struct Report {
    pub items: Vec<Item>,
}

impl Report {
    fn push(&mut self, status: Status, name: &str, detail: impl Into<String>) {
        self.items.push(Item {
            status,
            name: name.into(),
            detail: detail.into(),
            cause: None,
            fix: None,
        });
    }
    pub fn ok(&mut self, name: &str, detail: impl Into<String>) {
        self.push(Status::Ok, name, detail)
    }
    pub fn skip(&mut self, name: &str, detail: impl Into<String>) {
        self.push(Status::Skip, name, detail)
    }
    pub fn fail(
        &mut self,
        name: &str,
        detail: impl Into<String>,
        cause: impl Into<String>,
        fix: impl Into<String>,
    ) {
        self.items.push(Item {
            status: Status::Fail,
            name: name.into(),
            detail: detail.into(),
            cause: Some(cause.into()),
            fix: Some(fix.into()),
        });
    }
    pub fn failed(&self) -> usize {
        self.items
            .iter()
            .filter(|i| i.status == Status::Fail)
            .count()
    }

    /// The checklist as printed.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for i in &self.items {
            let tag = match i.status {
                Status::Ok => "[ ok ]",
                Status::Fail => "[FAIL]",
                Status::Skip => "[skip]",
            };
            let _ = writeln!(out, "{tag} {}: {}", i.name, i.detail);
            if let Some(c) = &i.cause {
                let _ = writeln!(out, "       cause: {c}");
            }
            if let Some(f) = &i.fix {
                let _ = writeln!(out, "       fix:   {f}");
            }
        }
        let count = |s| self.items.iter().filter(|i| i.status == s).count();
        let _ = writeln!(
            out,
            "{} ok, {} failed, {} skipped",
            count(Status::Ok),
            count(Status::Fail),
            count(Status::Skip)
        );
        out
    }
}

/// Likely cause and fix of a cloud API error returned to `action`.
pub(crate) fn api_advice(e: &ApiError, action: &str, cfg: &Config) -> (String, String) {
    let id: String = cfg.tcr.secret_id.chars().take(8).collect();
    match e.code().unwrap_or("") {
        "" => (
            format!("no answer from the TencentCloud API at {}", cfg.tcr.api_endpoint),
            "check tcr.api_endpoint, DNS, proxies and firewalls (HTTPS to tcr.tencentcloudapi.com must be allowed); with a private CA set tcr.ca_file".into(),
        ),
        "AuthFailure.SignatureFailure" => (
            format!("the SecretKey does not match SecretId {id}… (signature rejected)"),
            "set tcr.secret_key (or TCR_ADAPTER__TCR__SECRET_KEY, or tcr.secret_key_file) to the SecretKey shown next to this SecretId in the CAM console (API Keys); watch for stray spaces or newlines".into(),
        ),
        "AuthFailure.SecretIdNotFound" | "AuthFailure.InvalidSecretId" => (
            format!("the SecretId {id}… does not exist or was deleted/disabled"),
            "create or re-enable an API key in the CAM console and set tcr.secret_id / tcr.secret_key".into(),
        ),
        "AuthFailure.SignatureExpire" => (
            "this host's clock is more than 5 minutes off".into(),
            "synchronise the clock (NTP, e.g. `timedatectl set-ntp true`)".into(),
        ),
        c if c.contains("UnauthorizedOperation") || c == "OperationDenied" || c.ends_with("ErrorTcrUnauthorized") => (
            format!("the key's CAM policy does not allow tcr:{action}"),
            format!("in the CAM console, grant tcr:{action} on the instance to the user owning SecretId {id}… (e.g. attach QcloudTCRFullAccess, or a custom policy listing tcr:{action})"),
        ),
        c if c.starts_with("ResourceNotFound") => (
            "the instance id or region is wrong".into(),
            "check tcr.registry_id and tcr.region (TCR console → instance → basic info), or leave both empty to look the instance up from tcr.registry_url".into(),
        ),
        c if c.starts_with("RequestLimitExceeded") => (
            "throttled by TencentCloud".into(),
            "retry later; lower tcr.api_qps if it happens while serving".into(),
        ),
        "InvalidAction" | "NoSuchVersion" => (
            format!("{} is not the TCR API", cfg.tcr.api_endpoint),
            "set tcr.api_endpoint to https://tcr.tencentcloudapi.com (or a regional tcr.<region>.tencentcloudapi.com)".into(),
        ),
        _ => (
            "the TencentCloud API refused the call".into(),
            "read the error code above; the RequestId helps Tencent Cloud support".into(),
        ),
    }
}

/// The `Authorization` value of HTTP Basic credentials.
pub(crate) fn basic(user: &str, pass: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
    )
}

pub(crate) fn http_client(cfg: &Config) -> Result<reqwest::Client, String> {
    let mut b = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(
            cfg.tcr.connect_timeout_secs.clamp(1, 10),
        ))
        .timeout(Duration::from_secs(15));
    if let Some(p) = &cfg.tcr.ca_file {
        let pem = std::fs::read(p).map_err(|e| e.to_string())?;
        b = b
            .add_root_certificate(reqwest::Certificate::from_pem(&pem).map_err(|e| e.to_string())?);
    }
    b.build().map_err(|e| e.to_string())
}

/// Local, offline items: listener, public URL, TLS files, CA file, auth keys.
fn check_local(cfg: &Config, r: &mut Report) {
    check_listen(cfg, r);
    let base = cfg.server.public_base();
    check_public_url(cfg, &base, r);
    check_tls(cfg, &base, r);
    check_ca_file(cfg, r);
    check_auth_keys(cfg, r);
}

/// `server.listen` is free to bind.
fn check_listen(cfg: &Config, r: &mut Report) {
    let listen = cfg.server.listen;
    match TcpListener::bind(listen) {
        Ok(_) => r.ok("server.listen", format!("{listen} is free to bind")),
        Err(e) => r.fail(
            "server.listen",
            format!("cannot bind {listen}: {e}"),
            if e.kind() == std::io::ErrorKind::AddrInUse {
                "another process (perhaps a running tcr-adapter) already listens there".to_string()
            } else {
                "the address is not local to this host, or binding a port below 1024 needs privileges".to_string()
            },
            "stop the other process or choose another server.listen (e.g. 0.0.0.0:5000)",
        ),
    }
}

/// `server.public_url` (`base`) is an http(s) URL at the root of a host.
fn check_public_url(cfg: &Config, base: &str, r: &mut Report) {
    match url::Url::parse(base) {
        Ok(u) if u.path() == "/" && u.query().is_none() => {
            let mut detail = format!("{base} (root of the host; the token realm is {base}/service/token)");
            if cfg.server.public_url.is_empty() {
                detail.push_str("; derived from server.listen: set server.public_url to the URL Harbor uses");
            }
            r.ok("server.public_url", detail)
        }
        _ => r.fail(
            "server.public_url",
            format!("{base:?} is not an http(s) URL at the root of a host"),
            "Harbor drops path prefixes from its token requests, so the adapter must own a whole host",
            "set server.public_url to e.g. https://tcr-adapter.example.com (no path)",
        ),
    }
}

/// `server.tls`: the certificate and key load and belong together.
fn check_tls(cfg: &Config, base: &str, r: &mut Report) {
    match (&cfg.server.tls.cert_file, &cfg.server.tls.key_file) {
        (Some(cert), Some(key)) => match tls_files(cert, key) {
            Ok(d) => r.ok("server.tls", d),
            Err(e) => r.fail(
                "server.tls",
                e,
                "the certificate or key file is missing, unreadable, not PEM, or they do not belong together",
                "point server.tls.cert_file at the PEM chain (leaf first) and server.tls.key_file at its unencrypted PEM key, readable by this user",
            ),
        },
        _ => {
            let note = if base.starts_with("https://") {
                "; public_url is https: terminate TLS in front of the adapter"
            } else {
                ""
            };
            r.skip("server.tls", format!("not configured (plain HTTP listener){note}"))
        }
    }
}

/// `tcr.ca_file` holds PEM certificates.
fn check_ca_file(cfg: &Config, r: &mut Report) {
    match &cfg.tcr.ca_file {
        Some(p) => match std::fs::read(p).map_err(|e| e.to_string()).and_then(|pem| {
            openssl::x509::X509::stack_from_pem(&pem).map_err(|e| e.to_string())
        }) {
            Ok(certs) if !certs.is_empty() => r.ok(
                "tcr.ca_file",
                format!("{} ({} certificate(s))", p.display(), certs.len()),
            ),
            Ok(_) | Err(_) => r.fail(
                "tcr.ca_file",
                format!("{} holds no readable PEM certificate", p.display()),
                "the file is missing, unreadable or not PEM",
                "point tcr.ca_file at a PEM bundle of the CA(s) signing TCR's (or your proxy's) certificate",
            ),
        },
        None => r.skip("tcr.ca_file", "not configured (system roots only)"),
    }
}

/// `auth.signing_key` and `auth.sealing_key` are base64 of 32 bytes (or empty: generated).
fn check_auth_keys(cfg: &Config, r: &mut Report) {
    let mut bad = Vec::new();
    let mut generated = Vec::new();
    for (name, key, exact) in [
        ("auth.signing_key", &cfg.auth.signing_key, false),
        ("auth.sealing_key", &cfg.auth.sealing_key, true),
    ] {
        if key.is_empty() {
            generated.push(name);
            continue;
        }
        match base64::engine::general_purpose::STANDARD.decode(key.expose().trim()) {
            Ok(b) if b.len() == 32 || (!exact && b.len() > 32) => {}
            _ => bad.push(name),
        }
    }
    if !bad.is_empty() {
        r.fail(
            "auth keys",
            format!("{} not base64 of 32 bytes", bad.join(", ")),
            "the key was truncated, is not base64, or has the wrong length",
            "generate one with `openssl rand -base64 32`",
        );
    } else if generated.is_empty() {
        r.ok("auth keys", "signing and sealing keys configured");
    } else {
        r.ok(
            "auth keys",
            format!("{} empty: generated at start (fine for one replica; replicas must share configured keys)", generated.join(", ")),
        );
    }
}

fn tls_files(cert: &std::path::Path, key: &std::path::Path) -> Result<String, String> {
    use openssl::ssl::{SslAcceptor, SslFiletype, SslMethod};
    let mut b =
        SslAcceptor::mozilla_intermediate_v5(SslMethod::tls()).map_err(|e| e.to_string())?;
    b.set_certificate_chain_file(cert)
        .map_err(|e| format!("server.tls.cert_file {}: {e}", cert.display()))?;
    b.set_private_key_file(key, SslFiletype::PEM)
        .map_err(|e| format!("server.tls.key_file {}: {e}", key.display()))?;
    b.check_private_key()
        .map_err(|e| format!("the key does not match the certificate: {e}"))?;
    let pem = std::fs::read(cert).map_err(|e| e.to_string())?;
    let leaf = openssl::x509::X509::from_pem(&pem).map_err(|e| e.to_string())?;
    let now = openssl::asn1::Asn1Time::days_from_now(0).map_err(|e| e.to_string())?;
    if leaf.not_after() < now {
        return Err(format!("the certificate expired on {}", leaf.not_after()));
    }
    Ok(format!(
        "{} + {} (valid until {})",
        cert.display(),
        key.display(),
        leaf.not_after()
    ))
}

/// Run every check against `cfg` (already loaded). With no `tcr.registry_url`, the embedded
/// emulator is started for the duration of the check.
/// The shared state store (`[state] redis_url`): one round trip. Down is a failure here (the
/// operator asked for it), though the adapter itself runs on without it.
async fn check_state(cfg: &Config, r: &mut Report) {
    let registry = prometheus::Registry::new();
    let store = match tcr_adapter::state::StateStore::from_config(&cfg.state, &registry) {
        Ok(s) => s,
        Err(e) => {
            r.fail(
                "state store",
                e,
                "state.redis_url is not a Redis URL",
                "use redis://host:6379/0 or rediss://host:6380/0",
            );
            return;
        }
    };
    if !store.is_shared() {
        r.ok("state store", "in-process (no [state] redis_url): each replica keeps its own dedup index, claims and credential memory");
        return;
    }
    match store.ping().await {
        Ok(()) => r.ok("state store", "redis answers: replicas share the dedup index, claims, streaks and refused credentials"),
        Err(_) => r.fail(
            "state store",
            format!("redis does not answer: {}", store.status().as_str().unwrap_or("down")),
            "Redis is down, unreachable from here, needs AUTH/TLS, or state.timeout_ms is too short",
            "check state.redis_url (rediss:// for TLS, redis://:password@host for AUTH) and that Redis runs; the adapter runs on without it, each replica with its own memory",
        ),
    }
}

pub async fn run(mut cfg: Config, clock: SharedClock) -> Report {
    let mut r = Report::default();
    check_local(&cfg, &mut r);
    check_state(&cfg, &mut r).await;
    let mut _emulator = None;
    let mut _tmp = None;
    if cfg.tcr.registry_url.is_empty() {
        let mut emu = cfg.emulator.clone();
        let dir = std::env::temp_dir().join(format!(
            "tcr-adapter-check-{}",
            uuid::Uuid::new_v4().simple()
        ));
        match std::fs::create_dir_all(&dir) {
            Ok(()) => {
                emu.data_dir = dir.clone();
                _tmp = Some(dir);
            }
            Err(e) => {
                r.fail(
                    "emulator",
                    format!("no temporary directory: {e}"),
                    "TMPDIR is not writable",
                    "set TMPDIR to a writable directory",
                );
                return r;
            }
        }
        match tcr_adapter::emulator::start(emu, clock.clone()).await {
            Ok(h) => {
                h.point_config_at_self(&mut cfg);
                h.default_api_keys(&mut cfg);
                r.ok(
                    "emulator",
                    format!(
                        "no tcr.registry_url: started the embedded TCR emulator for this check (data plane {}, cloud API {}, temporary data)",
                        h.registry_url(),
                        h.api_url()
                    ),
                );
                _emulator = Some(h);
            }
            Err(e) => {
                r.fail(
                    "emulator",
                    format!("cannot start the embedded emulator on {} / {}: {e}", cfg.emulator.registry_listen, cfg.emulator.api_listen),
                    "another process (perhaps a running tcr-adapter) uses those ports",
                    "stop it, change emulator.registry_listen / emulator.api_listen, or set tcr.registry_url to a real TCR instance",
                );
                return r;
            }
        }
    }
    remote::run(&cfg, clock, &mut r).await;
    if let Some(h) = _emulator {
        h.stop().await;
    }
    if let Some(d) = _tmp {
        let _ = std::fs::remove_dir_all(d);
    }
    r
}
