//! The processes the suite runs beside itself: the adapter binary (`serve` or `emulator`), CNCF
//! distribution (`/usr/bin/docker-registry`), nginx, all on free loopback ports, each owned by a
//! [`Proc`] that kills it by PID when dropped; plus the certificates and readings they need.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tcr_adapter::emulator::EmulatorHandle;

use super::TestEmulator;

/// A child process, killed (SIGKILL) and reaped when dropped.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Proc {
    /// `kill -9` now (the same as dropping it, said out loud).
    pub fn kill9(mut self) {
        let _ = self.0.kill(); // SIGKILL
        let _ = self.0.wait();
    }

    pub fn pid(&self) -> u32 {
        self.0.id()
    }
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Block until something accepts connections on `127.0.0.1:port` (5 s at most).
pub fn wait_port(port: u16) {
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Wait until `url` answers at all (any status; 10 s at most).
pub async fn wait_up(url: &str) {
    for _ in 0..100 {
        if reqwest::get(url).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{url} never answered");
}

/// The built `tcr-adapter` binary (known to integration tests; examples that share the rig have
/// no binary to run).
pub fn binary() -> &'static str {
    match option_env!("CARGO_BIN_EXE_tcr-adapter") {
        Some(path) => path,
        None => panic!("the tcr-adapter binary is known to integration tests only"),
    }
}

/// The built binary: `tcr-adapter <cmd> --config <config>`, output discarded.
pub fn spawn(cmd: &str, config: &Path) -> Proc {
    Proc(
        Command::new(binary())
            .args([cmd, "--config"])
            .arg(config)
            .env_remove("TCR_ADAPTER_CONFIG")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the binary starts"),
    )
}

/// Fixed signing and sealing keys, so that processes and restarts accept each other's tokens.
pub const KEYS: &str = "signing_key = \"c2lnbmluZy1rZXktZm9yLWZhdWx0LXRlc3RzLTAwMDAwMDAwMDA=\"\nsealing_key = \"c2VhbGluZy1rZXktZm9yLWZhdWx0LXRlc3RzLTAwMDA=\"\n";

/// An emulator in this process, either way the tests hold it.
pub trait Upstream {
    fn handle(&self) -> &EmulatorHandle;
}

impl Upstream for TestEmulator {
    fn handle(&self) -> &EmulatorHandle {
        &self.handle
    }
}

impl Upstream for EmulatorHandle {
    fn handle(&self) -> &EmulatorHandle {
        self
    }
}

/// `[tcr]` lines with the demo API keys as provisioner keys (for a `tail`).
pub fn demo_keys_toml() -> String {
    format!(
        "secret_id = \"{}\"\nsecret_key = \"{}\"\n",
        super::DEMO_SECRET_ID,
        super::DEMO_SECRET_KEY
    )
}

/// The adapter binary's configuration towards `emu`: `[server]` lines, [`KEYS`], TCR, then `tail`.
pub fn adapter_toml(emu: &impl Upstream, server: &str, tail: &str) -> String {
    let emu = emu.handle();
    format!(
        "[server]\n{server}[auth]\n{KEYS}[tcr]\nregistry_url = \"{}\"\napi_endpoint = \"{}\"\nregistry_id = \"{}\"\nregion = \"{}\"\n{tail}",
        emu.registry_url(),
        emu.api_url(),
        emu.state.cfg.registry_id,
        emu.state.cfg.region
    )
}

/// The adapter binary (`serve`) on a free port with `adapter_toml(emu, listen + server, tail)`,
/// up: (process, base URL, config path for restarts).
pub async fn serve_binary(
    emu: &impl Upstream,
    dir: &Path,
    server: &str,
    tail: &str,
) -> (Proc, String, PathBuf) {
    let port = free_port();
    let cfg = dir.join("adapter.toml");
    let listen = format!("listen = \"127.0.0.1:{port}\"\n{server}");
    std::fs::write(&cfg, adapter_toml(emu, &listen, tail)).unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let adapter = spawn("serve", &cfg);
    wait_up(&format!("{base}/healthz")).await;
    (adapter, base, cfg)
}

/// `<dir>/emulator.toml`: an `[emulator]` section on the given listen addresses, data in
/// `<dir>/data`. Its path.
pub fn emulator_toml(dir: &Path, registry_listen: &str, api_listen: &str) -> PathBuf {
    let data = dir.join("data");
    write(
        &dir.join("emulator.toml"),
        format!("[emulator]\nregistry_listen = \"{registry_listen}\"\napi_listen = \"{api_listen}\"\ndata_dir = \"{}\"\n", data.display()),
    )
}

/// Write `text` to `path`; the path.
pub fn write(path: &Path, text: String) -> PathBuf {
    std::fs::write(path, text).unwrap();
    path.to_path_buf()
}

/// nginx as a reverse proxy on `127.0.0.1:port` in front of `upstream` (the body of an
/// `upstream adapters { .. }` block), unbuffered both ways, `location_extra` added to `location /`.
/// Started and listening.
pub fn nginx(dir: &Path, port: u16, upstream: &str, location_extra: &str) -> Proc {
    super::require_tool("nginx");
    let d = dir.display();
    let conf = format!(
        "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
         events {{ worker_connections 256; }}\n\
         http {{\n access_log off;\n client_body_temp_path {d}/body;\n proxy_temp_path {d}/proxy;\n\
         fastcgi_temp_path {d}/fcgi;\n uwsgi_temp_path {d}/uwsgi;\n scgi_temp_path {d}/scgi;\n\
         upstream adapters {{ {upstream} }}\n\
         server {{ listen 127.0.0.1:{port}; client_max_body_size 0;\n\
         location / {{ proxy_pass http://adapters; proxy_http_version 1.1; proxy_set_header Host $http_host;\n\
         proxy_buffering off; proxy_request_buffering off; {location_extra} }} }}\n}}\n"
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf).unwrap();
    let child = Command::new("nginx")
        .arg("-c")
        .arg(&path)
        .arg("-p")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("nginx starts");
    let proc = Proc(child);
    wait_port(port);
    proc
}

/// Prometheus on a free loopback port scraping `127.0.0.1:<target_port>` every second and
/// evaluating `rules` (a rules file's text) every second: (process, base URL).
pub fn prometheus(dir: &Path, target_port: u16, rules: &str) -> (Proc, String) {
    super::require_tool("prometheus");
    let rules_path = write(&dir.join("rules.yml"), rules.to_string());
    let cfg = write(
        &dir.join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\nscrape_configs:\n  - job_name: tcr-adapter\n    static_configs:\n      - targets: ['127.0.0.1:{target_port}']\n",
            rules_path.display()
        ),
    );
    let port = free_port();
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", cfg.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("tsdb").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start prometheus");
    (Proc(child), format!("http://127.0.0.1:{port}"))
}

/// CNCF distribution 2.8 on a free loopback port, storage in `<dir>/data`, `auth_yaml` appended
/// to its configuration (empty: no auth). Waits until `/v2/` answers (any status): (process, base URL).
pub async fn distribution(dir: &Path, secret: &str, auth_yaml: &str) -> (Proc, String) {
    super::require_tool("docker-registry");
    let port = free_port();
    let config = write(
        &dir.join("config.yml"),
        format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n  secret: {secret}\n{auth_yaml}",
            dir.join("data").display()
        ),
    );
    let child = Command::new("/usr/bin/docker-registry")
        .arg("serve")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("docker-registry starts");
    let proc = Proc(child);
    let base = format!("http://127.0.0.1:{port}");
    wait_up(&format!("{base}/v2/")).await;
    (proc, base)
}

/// A self-signed X.509 certificate (PEM) over `key`, subject `CN=<cn>`, valid `days`; a CA with
/// an IP subject-alt-name when `ip_san` is given.
pub fn self_signed_cert(
    key: &openssl::pkey::PKey<openssl::pkey::Private>,
    cn: &str,
    days: u32,
    ip_san: Option<&str>,
) -> Vec<u8> {
    use openssl::asn1::Asn1Time;
    use openssl::bn::BigNum;
    use openssl::hash::MessageDigest;
    use openssl::x509::extension::{BasicConstraints, SubjectAlternativeName};
    use openssl::x509::{X509NameBuilder, X509};
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_text("CN", cn).unwrap();
    let name = name.build();
    let mut b = X509::builder().unwrap();
    b.set_version(2).unwrap();
    b.set_serial_number(&BigNum::from_u32(1).unwrap().to_asn1_integer().unwrap())
        .unwrap();
    b.set_subject_name(&name).unwrap();
    b.set_issuer_name(&name).unwrap();
    b.set_pubkey(key).unwrap();
    b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    b.set_not_after(&Asn1Time::days_from_now(days).unwrap())
        .unwrap();
    if let Some(ip) = ip_san {
        b.append_extension(BasicConstraints::new().critical().ca().build().unwrap())
            .unwrap();
        let san = SubjectAlternativeName::new()
            .ip(ip)
            .build(&b.x509v3_context(None, None))
            .unwrap();
        b.append_extension(san).unwrap();
    }
    b.sign(key, MessageDigest::sha256()).unwrap();
    b.build().to_pem().unwrap()
}

/// A `VmRSS`/`VmHWM`-style field of `/proc/<pid>/status`, in KiB (0 when unreadable).
pub fn rss_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// `tcr-adapter check --config <dir>/check.toml` (the file written from `config`), with a clean
/// environment but `PATH`; (exit code, stdout). Its output is printed for the test log.
pub async fn run_check(dir: &Path, config: &str) -> (i32, String) {
    let path = dir.join("check.toml");
    std::fs::write(&path, config).unwrap();
    let out = tokio::process::Command::new(binary())
        .arg("check")
        .arg("--config")
        .arg(&path)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    println!("{stdout}");
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), stdout)
}

/// A throwaway `redis-server` on `port` (no persistence), killed by its PID when dropped.
pub fn redis_server(port: u16) -> Proc {
    super::require_tool("redis-server");
    let p = Proc(
        Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts"),
    );
    wait_port(port);
    p
}
