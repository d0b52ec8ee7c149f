//! The typed configuration tree: one TOML file plus `TCR_ADAPTER__<SECTION>__<KEY>` environment
//! overrides. Owns parsing, defaults, `*_file` secret indirection and validation; it must not start
//! anything or talk to the network.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

mod accounts;
mod quirks;

pub use accounts::{EmulatorAccount, EmulatorServiceAccount, RegistryAction};
pub use quirks::{ChartDuplicates, EmulatorQuirks, NameFilter, Paging};

/// A secret string: never printed by `Debug`/`Display`, never logged.
#[derive(Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    /// The secret itself. Call sites are the only places a secret is read.
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Serialized (only for listing keys) as `<redacted>`.
impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(if self.0.is_empty() { "" } else { "<redacted>" })
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub auth: AuthConfig,
    pub tcr: TcrConfig,
    pub namespaces: NamespacesConfig,
    pub emulator: EmulatorConfig,
    pub wan: WanConfig,
    pub state: StateConfig,
    pub log: LogConfig,
}

/// State shared by replicas (the blob index, claims, streaks, refused credentials). Without a
/// store every replica keeps its own in memory, as a single adapter does.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StateConfig {
    /// `redis://[user:password@]host:port[/db]`, or `rediss://` for TLS. Empty: in-process.
    pub redis_url: Secret,
    /// A file holding `redis_url` (it may carry the password).
    pub redis_url_file: Option<PathBuf>,
    /// Prefix of every key the adapter writes, so several adapters can share one Redis.
    pub key_prefix: String,
    /// Milliseconds one store call may take before the replica falls back to its own memory.
    pub timeout_ms: u64,
    /// Where the other replicas reach this one (with `wan.pipeline`: a request for a session
    /// this replica holds is forwarded here). Empty: `http://<server.listen>` (set it when
    /// listening on 0.0.0.0, e.g. `http://$(POD_IP):5000`).
    pub advertise_url: String,
    /// With a store: every request for a repository is served by one replica, the repository's
    /// owner (rendezvous hashing over the replicas registered in the store); the others stream
    /// it there. One replica per repository holds its TCR realm tokens, parked sessions and
    /// pipelined jobs, so a fleet sends TCR what one adapter would. `false`: each replica serves
    /// what reaches it.
    pub forward_by_repository: bool,
}

impl StateConfig {
    /// `advertise_url`, or `http://<listen>`.
    pub fn advertise_base(&self, listen: SocketAddr) -> String {
        match self.advertise_url.is_empty() {
            true => format!("http://{listen}"),
            false => self.advertise_url.trim_end_matches('/').to_string(),
        }
    }
}

impl Default for StateConfig {
    fn default() -> Self {
        StateConfig {
            redis_url: Secret::default(),
            redis_url_file: None,
            key_prefix: "tcr-adapter".into(),
            timeout_ms: 250,
            advertise_url: String::new(),
            forward_by_repository: true,
        }
    }
}

/// Saving TCR round trips and bytes across a WAN.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct WanConfig {
    /// Layer dedup by cross-repository mount: a blob another repository has is mounted with the
    /// caller's credential (at a blob HEAD from a caller who may write there, at an upload's last
    /// PUT), so the blob is not uploaded again.
    pub dedup: bool,
    /// Digests remembered (where each blob is known to exist upstream), per process.
    pub dedup_entries: usize,
    /// Pipelined uploads: blobs are received into a local spool, verified and acknowledged at
    /// once, and sent to TCR in the background; a manifest PUT is forwarded only when TCR has
    /// every blob it references.
    pub pipeline: bool,
    /// Without the pipeline: a chunked upload (Harbor 2.9's copy by chunk) goes to TCR as one
    /// streamed `PATCH`, each chunk answered once it is queued; the final `PUT` is TCR's.
    pub stream_chunks: bool,
    /// Where pipelined blobs wait for their upload (emptied at start). Empty: a directory
    /// `tcr-adapter-spool` in the system's temporary directory.
    pub spool_dir: String,
    /// Bytes the spool may hold; a client sending more waits (back-pressure).
    pub spool_max_bytes: u64,
    /// Background uploads to TCR at once.
    pub max_parallel_uploads: usize,
}

impl WanConfig {
    /// `spool_dir`, or the default under the system's temporary directory.
    pub fn spool_path(&self) -> std::path::PathBuf {
        match self.spool_dir.is_empty() {
            true => std::env::temp_dir().join("tcr-adapter-spool"),
            false => self.spool_dir.clone().into(),
        }
    }
}

impl Default for WanConfig {
    fn default() -> Self {
        WanConfig {
            dedup: true,
            dedup_entries: 100_000,
            pipeline: false,
            stream_chunks: false,
            spool_dir: String::new(),
            spool_max_bytes: 8 << 30,
            max_parallel_uploads: 4,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address the adapter listens on.
    pub listen: SocketAddr,
    /// URL clients use to reach the adapter; `Location`, `Link` and the token realm are built on
    /// it. Empty: `http://<listen>`.
    pub public_url: String,
    /// Honour `X-Forwarded-Proto` / `X-Forwarded-Host` (only behind a trusted TLS terminator).
    pub trust_forwarded_headers: bool,
    /// Seconds in-flight requests get to finish after SIGTERM.
    pub shutdown_grace_secs: u64,
    /// Worker threads (0 = number of cores).
    pub workers: usize,
    /// Largest chart upload accepted on the Harbor API (the whole request), bytes. Uploads are
    /// received whole into the system's temporary directory and checked before TCR sees them.
    pub max_chart_bytes: u64,
    pub tls: TlsConfig,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:5000".parse().expect("static address"),
            public_url: String::new(),
            trust_forwarded_headers: false,
            shutdown_grace_secs: 30,
            workers: 0,
            max_chart_bytes: 1 << 30,
            tls: TlsConfig::default(),
        }
    }
}

impl ServerConfig {
    /// The public base URL without a trailing slash. With no `public_url`, the listen address;
    /// a wildcard listen address (`0.0.0.0`, `::`) becomes loopback, which at least works for
    /// clients on the same host (set `public_url` for everyone else).
    pub fn public_base(&self) -> String {
        if self.public_url.is_empty() {
            let mut addr = self.listen;
            if addr.ip().is_unspecified() {
                addr.set_ip(match addr {
                    SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                    SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
                });
            }
            format!("http://{addr}")
        } else {
            self.public_url.trim_end_matches('/').to_string()
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM certificate chain; TLS is on when both files are set.
    pub cert_file: Option<PathBuf>,
    /// PEM private key.
    pub key_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// `service` (audience) of the adapter's tokens; Harbor echoes it from the challenge.
    pub service: String,
    /// `iss` of the adapter's tokens.
    pub issuer: String,
    /// Lifetime of an access token, seconds (at least 60).
    pub token_ttl_secs: u64,
    /// Lifetime of a refresh token (`offline_token=true`), seconds.
    pub refresh_token_ttl_secs: u64,
    /// HS256 signing key, base64 (32+ bytes). Empty: generated at start (tokens then die with the
    /// process and replicas cannot share them).
    pub signing_key: Secret,
    pub signing_key_file: Option<PathBuf>,
    /// AES-256-GCM key sealing the upstream credential inside tokens, base64 of 32 bytes.
    pub sealing_key: Secret,
    pub sealing_key_file: Option<PathBuf>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            service: "tcr-adapter".into(),
            issuer: "tcr-adapter".into(),
            token_ttl_secs: 900,
            refresh_token_ttl_secs: 7 * 24 * 3600,
            signing_key: Secret::default(),
            signing_key_file: None,
            sealing_key: Secret::default(),
            sealing_key_file: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TcrConfig {
    /// Data plane of the TCR instance, e.g. `https://myreg.tencentcloudcr.com`. Empty: `serve`
    /// starts the embedded emulator and uses it.
    pub registry_url: String,
    /// TencentCloud API endpoint.
    pub api_endpoint: String,
    /// Region of the instance; empty: found with `DescribeInstances`.
    pub region: String,
    /// Instance id (`tcr-xxxxxxxx`); empty: found with `DescribeInstances`.
    pub registry_id: String,
    /// Provisioner API keys, used to create namespaces for callers that presented registry
    /// credentials instead of API keys.
    pub secret_id: String,
    pub secret_key: Secret,
    pub secret_key_file: Option<PathBuf>,
    /// Cloud API calls per second at most (TCR allows about 10-20).
    pub api_qps: u32,
    /// Timeout of one cloud API call, seconds.
    pub api_timeout_secs: u64,
    /// Extra CA bundle (PEM) trusted for the upstream.
    pub ca_file: Option<PathBuf>,
    /// Timeout for connecting to the data plane, seconds.
    pub connect_timeout_secs: u64,
    /// Attempts per data-plane request (1 = no retry) when TCR answers 429/502/503/504 or the
    /// connection fails, for every request whose body can be sent again.
    pub retry_attempts: u32,
    /// Retry budget: retries allowed as this share of the requests of the last 10 seconds...
    pub retry_budget_ratio: f64,
    /// ...plus this many per second, so an outage never multiplies the load on TCR.
    pub retry_budget_min_per_sec: u32,
    /// Bytes of a streamed request body kept to send it again when TCR refuses it before reading
    /// more than this (per request in flight; 0: streamed bodies are never retried).
    pub replay_buffer_bytes: usize,
    /// What the adapter does when TCR answers a blob GET/HEAD with a redirect to object storage
    /// (COS): `relay` it to the client, or `follow` it and stream the bytes itself.
    pub redirects: RedirectMode,
}

/// `tcr.redirects`.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum RedirectMode {
    /// The client gets the 307 and fetches from storage itself (fastest: the bytes bypass the
    /// adapter). The `Location` carries the storage URL's own signature, never a credential of
    /// the adapter's.
    #[default]
    Relay,
    /// The adapter fetches from storage, without `Authorization`, and streams the body (for
    /// clients that cannot reach the storage host).
    Follow,
}

impl Default for TcrConfig {
    fn default() -> Self {
        TcrConfig {
            registry_url: String::new(),
            api_endpoint: "https://tcr.tencentcloudapi.com".into(),
            region: String::new(),
            registry_id: String::new(),
            secret_id: String::new(),
            secret_key: Secret::default(),
            secret_key_file: None,
            api_qps: 10,
            api_timeout_secs: 15,
            ca_file: None,
            connect_timeout_secs: 10,
            retry_attempts: 4,
            retry_budget_ratio: 0.2,
            retry_budget_min_per_sec: 10,
            replay_buffer_bytes: 4 << 20,
            redirects: RedirectMode::Relay,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct NamespacesConfig {
    /// Create a missing namespace on the first write into it.
    pub auto_create: bool,
    /// Create namespaces public (default private).
    pub public: bool,
    /// Glob patterns a namespace must match (empty: all).
    pub allow: Vec<String>,
    /// Glob patterns refused even when allowed.
    pub deny: Vec<String>,
    /// Harbor project -> TCR namespace renames.
    pub map: BTreeMap<String, String>,
    /// Log and count what would be created; create nothing and refuse the push.
    pub dry_run: bool,
    /// How long a namespace known to exist is remembered, seconds.
    pub cache_ttl_secs: u64,
}

impl Default for NamespacesConfig {
    fn default() -> Self {
        NamespacesConfig {
            auto_create: true,
            public: false,
            allow: Vec::new(),
            deny: Vec::new(),
            map: BTreeMap::new(),
            dry_run: false,
            cache_ttl_secs: 300,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmulatorConfig {
    /// Data plane (OCI registry + token realm) listener.
    pub registry_listen: SocketAddr,
    /// Control plane (TencentCloud API 3.0) listener.
    pub api_listen: SocketAddr,
    /// URL clients use to reach the data plane (the token realm and `PublicDomain` are built
    /// on it). Empty: `http://<registry_listen>`.
    pub public_url: String,
    /// Where blobs, manifests and metadata live; survives restarts.
    pub data_dir: PathBuf,
    /// `RegistryId` of the emulated instance.
    pub registry_id: String,
    /// `RegistryName` (the first label of the public domain).
    pub registry_name: String,
    /// Region the instance lives in.
    pub region: String,
    /// Accounts allowed to call the cloud API.
    pub accounts: Vec<EmulatorAccount>,
    /// What the chart repository does with an upload of a chart version it already holds:
    /// `conflict` (409, like ChartMuseum without overwrite) or `overwrite` (TCR's behaviour is
    /// undocumented; the adapter is correct under both).
    pub chart_duplicates: ChartDuplicates,
    /// Upload sessions idle for longer than this are removed (their bytes too), seconds; 0: kept
    /// forever. Keeps the emulator's disk bounded when clients abandon uploads.
    pub upload_purge_after_secs: u64,
    /// Object-storage listener (TCR's COS): serves blobs at short-lived signed URLs. `None`: none,
    /// unless `blob_redirects` is on (then a free loopback port).
    pub storage_listen: Option<SocketAddr>,
    /// Blob GET/HEAD answer 307 to a signed URL on the storage listener, as TCR does with COS.
    pub blob_redirects: bool,
    pub faults: FaultConfig,
    /// TLS on the emulator's listeners (registry and cloud API), like TCR's HTTPS-only endpoints.
    pub tls: EmulatorTlsConfig,
    /// Where TCR's documentation is silent or its sources disagree: which plausible behaviour the
    /// emulator shows (docs/tcr-contract.md). The defaults are the documented behaviour.
    pub quirks: EmulatorQuirks,
    /// Service accounts (`tcr$<name>` + password on the data plane), each limited to namespaces
    /// and actions, like TCR's `CreateServiceAccount`.
    pub service_accounts: Vec<EmulatorServiceAccount>,
}

/// How the emulator's listeners speak TLS.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum EmulatorTlsMode {
    /// Plain HTTP (unless `cert_file`/`key_file` are set).
    #[default]
    Off,
    /// Generate once a CA and a server certificate under `<data_dir>/tls/` (`ca.pem`,
    /// `cert.pem`, `key.pem`) and reuse them on restart.
    SelfSigned,
}

#[derive(Debug, Clone, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct EmulatorTlsConfig {
    /// `off` or `self-signed`.
    pub mode: EmulatorTlsMode,
    /// Your own PEM certificate chain (with `mode = "off"`); TLS is on when both files are set.
    pub cert_file: Option<PathBuf>,
    /// Its PEM private key.
    pub key_file: Option<PathBuf>,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        EmulatorConfig {
            registry_listen: "127.0.0.1:5001".parse().expect("static address"),
            api_listen: "127.0.0.1:5002".parse().expect("static address"),
            public_url: String::new(),
            data_dir: PathBuf::from("data/emulator"),
            registry_id: "tcr-emulator".into(),
            registry_name: "emulator".into(),
            region: "ap-guangzhou".into(),
            accounts: vec![EmulatorAccount::demo()],
            chart_duplicates: ChartDuplicates::Conflict,
            upload_purge_after_secs: 24 * 3600,
            storage_listen: None,
            blob_redirects: false,
            faults: FaultConfig::default(),
            tls: EmulatorTlsConfig::default(),
            quirks: EmulatorQuirks::default(),
            service_accounts: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct FaultConfig {
    /// Cloud API calls per second above which `RequestLimitExceeded` is answered (0: no limit).
    pub api_qps_limit: u32,
    /// Fraction (0..1) of registry requests answered with a 503.
    pub registry_5xx_ratio: f64,
    /// Latency added to every registry request, milliseconds.
    pub latency_ms: u64,
    /// Bandwidth cap per connection for request and response bodies on the registry and
    /// storage listeners, KiB/s (0: unlimited).
    pub bandwidth_kib_per_sec: u64,
    /// Lifetime of temporary instance tokens, seconds.
    pub token_ttl_secs: u64,
    /// Lifetime of the data plane's registry bearer tokens, seconds.
    pub registry_token_ttl_secs: u64,
    /// Largest request body accepted, bytes (0: no limit); 413 above it.
    pub max_body_bytes: u64,
}

impl Default for FaultConfig {
    fn default() -> Self {
        FaultConfig {
            api_qps_limit: 0,
            registry_5xx_ratio: 0.0,
            latency_ms: 0,
            bandwidth_kib_per_sec: 0,
            token_ttl_secs: 3600,
            registry_token_ttl_secs: 1800,
            max_body_bytes: 0,
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `text` or `json`.
    pub format: LogFormat,
    /// A `tracing` filter, e.g. `info` or `tcr_adapter=debug`.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Text,
            level: "info".into(),
        }
    }
}

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Invalid(String),
    #[error("configuration: cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
}

const ENV_PREFIX: &str = "TCR_ADAPTER";

impl Config {
    /// Load from an optional TOML file plus the process environment.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        Self::load_with_env(file, std::env::vars())
    }

    /// Load from an optional TOML file plus the given environment (tests pass their own).
    pub fn load_with_env(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut builder = config::Config::builder();
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.to_path_buf(),
                source,
            })?;
            builder = builder.add_source(config::File::from_str(&text, config::FileFormat::Toml));
        }
        let env: std::collections::HashMap<String, String> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with(&format!("{ENV_PREFIX}__")))
            .collect();
        builder = builder.add_source(
            config::Environment::with_prefix(ENV_PREFIX)
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true)
                .list_separator(",")
                .with_list_parse_key("namespaces.allow")
                .with_list_parse_key("namespaces.deny")
                .source(Some(env)),
        );
        let raw = builder
            .build()
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        let mut cfg: Config = raw
            .try_deserialize()
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        cfg.resolve_files()?;
        cfg.validate()?;
        Ok(cfg)
    }

    fn resolve_files(&mut self) -> Result<(), ConfigError> {
        fn read(slot: &mut Secret, file: &Option<PathBuf>) -> Result<(), ConfigError> {
            if let Some(path) = file {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.clone(),
                    source,
                })?;
                *slot = Secret::new(text.trim().to_string());
            }
            Ok(())
        }
        read(&mut self.auth.signing_key, &self.auth.signing_key_file)?;
        read(&mut self.auth.sealing_key, &self.auth.sealing_key_file)?;
        read(&mut self.tcr.secret_key, &self.tcr.secret_key_file)?;
        read(&mut self.state.redis_url, &self.state.redis_url_file)?;
        Ok(())
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        if self.auth.token_ttl_secs < 60 {
            return bad("auth.token_ttl_secs must be at least 60".into());
        }
        if !self.server.public_url.is_empty() {
            match url::Url::parse(&self.server.public_url) {
                Ok(u) if (u.scheme() == "http" || u.scheme() == "https") && u.path() == "/" => {}
                _ => {
                    return bad(format!(
                        "server.public_url must be an http(s) URL at the root of a host (Harbor ignores path prefixes), got {:?}",
                        self.server.public_url
                    ))
                }
            }
        }
        if !self.tcr.registry_url.is_empty() {
            if let Err(e) = url::Url::parse(&self.tcr.registry_url) {
                return bad(format!("tcr.registry_url {:?}: {e}", self.tcr.registry_url));
            }
        }
        if self.server.tls.cert_file.is_some() != self.server.tls.key_file.is_some() {
            return bad("server.tls.cert_file and server.tls.key_file go together".into());
        }
        let etls = &self.emulator.tls;
        if etls.cert_file.is_some() != etls.key_file.is_some() {
            return bad("emulator.tls.cert_file and emulator.tls.key_file go together".into());
        }
        if etls.mode == EmulatorTlsMode::SelfSigned && etls.cert_file.is_some() {
            return bad("emulator.tls: mode = \"self-signed\" generates its certificate; set cert_file/key_file only with mode = \"off\"".into());
        }
        if self.tcr.secret_id.is_empty() != self.tcr.secret_key.is_empty() {
            return bad("tcr.secret_id and tcr.secret_key go together".into());
        }
        if !self.state.redis_url.is_empty() {
            match url::Url::parse(self.state.redis_url.expose()) {
                Ok(u) if matches!(u.scheme(), "redis" | "rediss") && u.host_str().is_some() => {}
                // The URL may carry a password: the message never repeats it.
                _ => {
                    return bad(
                        "state.redis_url must be redis://host:port[/db] or rediss://… (TLS)".into(),
                    )
                }
            }
            if !self.state.advertise_url.is_empty() {
                match url::Url::parse(&self.state.advertise_url) {
                    Ok(u) if matches!(u.scheme(), "http" | "https") && u.path() == "/" => {}
                    _ => return bad(format!("state.advertise_url must be an http(s) URL of this replica at the root of a host, got {:?}", self.state.advertise_url)),
                }
            }
            if self.state.timeout_ms == 0 {
                return bad("state.timeout_ms must be at least 1".into());
            }
        }
        if self.tcr.api_qps == 0 {
            return bad("tcr.api_qps must be at least 1".into());
        }
        if self.emulator.quirks.limit_cap == Some(0) {
            return bad("emulator.quirks.limit_cap must be at least 1".into());
        }
        if !(0.0..=1.0).contains(&self.emulator.faults.registry_5xx_ratio) {
            return bad("emulator.faults.registry_5xx_ratio must be within 0..1".into());
        }
        if self.wan.pipeline
            && (self.wan.spool_max_bytes < 1 << 20 || self.wan.max_parallel_uploads == 0)
        {
            return bad("wan.spool_max_bytes must be at least 1 MiB and wan.max_parallel_uploads at least 1".into());
        }
        self.validate_emulator_accounts()?;
        for pattern in self.namespaces.allow.iter().chain(&self.namespaces.deny) {
            if let Err(e) = globset::Glob::new(pattern) {
                return bad(format!("namespaces pattern {pattern:?}: {e}"));
            }
        }
        Ok(())
    }
}
