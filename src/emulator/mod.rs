//! The embedded TCR emulator: a faithful local stand-in for a TCR enterprise instance.
//! Data plane (OCI distribution v1.1 registry + Harbor-style token realm) and control plane
//! (TencentCloud API 3.0, version 2019-09-24) on two listeners, sharing one state. It must never
//! depend on the adapter's modules (`registry`, `auth`, `credentials`, ...): it is the thing the
//! adapter is tested against.

pub mod charts;
pub mod cloudapi;
pub mod faults;
pub(crate) mod http;
pub mod instance_tokens;
pub mod journal;
pub mod keys;
pub mod metrics;
pub mod namespaces;
pub mod object_storage;
pub mod registry;
pub mod storage;
pub mod tls;
pub mod wan;

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

use actix_web::{web, App, HttpServer};

use crate::clock::SharedClock;
use crate::config::EmulatorConfig;

pub use faults::Faults;
pub use instance_tokens::{InstanceTokens, IssuedToken, TokenKind};
pub use keys::RsaKeys;
pub use metrics::EmulatorMetrics;
pub use namespaces::{NamespaceInfo, NamespaceStore};
pub use storage::Storage;

/// Everything both emulator listeners share.
pub struct EmulatorState {
    pub cfg: EmulatorConfig,
    pub clock: SharedClock,
    pub keys: Arc<RsaKeys>,
    pub tokens: InstanceTokens,
    pub namespaces: NamespaceStore,
    pub storage: Storage,
    /// TCR's Helm chart repository (per namespace).
    pub charts: charts::ChartStore,
    pub metrics: EmulatorMetrics,
    pub faults: Faults,
    /// Base URL of the data plane, e.g. `http://127.0.0.1:5001` (no trailing slash).
    pub registry_url: String,
    /// Base URL of the control plane.
    pub api_url: String,
    /// Signs blob URLs on the object-storage listener (`None`: no such listener).
    pub presigner: Option<object_storage::Presigner>,
    /// Every data-plane request target, as received (for tests).
    pub journal: journal::RequestJournal,
}

impl EmulatorState {
    /// Build the state over `cfg.data_dir`, with the given public URLs.
    pub fn open(
        cfg: EmulatorConfig,
        clock: SharedClock,
        registry_url: String,
        api_url: String,
        storage_url: Option<String>,
    ) -> std::io::Result<EmulatorState> {
        let keys = Arc::new(RsaKeys::load_or_create(&cfg.data_dir.join("keys"))?);
        let tokens = InstanceTokens::new(keys.clone(), clock.clone(), cfg.faults.token_ttl_secs);
        let namespaces = NamespaceStore::open(&cfg.data_dir, clock.clone())?;
        let storage = Storage::open(&cfg.data_dir, clock.clone())?;
        let charts = charts::ChartStore::open(&cfg.data_dir, clock.clone())?;
        let faults = Faults::new(cfg.faults.clone(), clock.clone());
        Ok(EmulatorState {
            cfg,
            clock,
            keys,
            tokens,
            namespaces,
            storage,
            charts,
            metrics: EmulatorMetrics::new(),
            faults,
            registry_url,
            api_url,
            presigner: storage_url.map(object_storage::Presigner::new),
            journal: journal::RequestJournal::default(),
        })
    }

    /// The instance's public domain (host[:port] of the data plane).
    pub fn public_domain(&self) -> &str {
        self.registry_url
            .split_once("://")
            .map(|(_, h)| h)
            .unwrap_or(&self.registry_url)
    }
}

/// A running emulator. Dropping it leaves the servers running; call [`EmulatorHandle::stop`].
pub struct EmulatorHandle {
    pub registry_addr: SocketAddr,
    pub api_addr: SocketAddr,
    /// The object-storage listener, when there is one.
    pub storage_addr: Option<SocketAddr>,
    pub state: web::Data<EmulatorState>,
    /// The certificate the listeners serve (`None`: plain HTTP).
    pub tls: Option<tls::TlsFiles>,
    servers: Vec<actix_web::dev::ServerHandle>,
}

impl EmulatorHandle {
    /// `https` when the listeners speak TLS, else `http`.
    pub fn scheme(&self) -> &'static str {
        scheme(&self.tls)
    }
    pub fn registry_url(&self) -> String {
        format!("{}://{}", self.scheme(), self.registry_addr)
    }
    pub fn api_url(&self) -> String {
        format!("{}://{}", self.scheme(), self.api_addr)
    }
    /// Base URL of the object-storage listener, when there is one.
    pub fn storage_url(&self) -> Option<String> {
        self.storage_addr
            .map(|a| format!("{}://{a}", self.scheme()))
    }
    /// The CA a client must trust (self-signed mode).
    pub fn ca_file(&self) -> Option<&std::path::Path> {
        self.tls.as_ref().and_then(|t| t.ca.as_deref())
    }
    /// Point an adapter configuration at this emulator: data plane, cloud API, instance id,
    /// region, and (self-signed mode, unless a CA is configured) trust in its CA.
    pub fn point_config_at_self(&self, cfg: &mut crate::config::Config) {
        cfg.tcr.registry_url = self.registry_url();
        cfg.tcr.api_endpoint = self.api_url();
        cfg.tcr.registry_id = self.state.cfg.registry_id.clone();
        cfg.tcr.region = self.state.cfg.region.clone();
        if cfg.tcr.ca_file.is_none() {
            cfg.tcr.ca_file = self.ca_file().map(std::path::Path::to_path_buf);
        }
    }
    /// With no API keys configured, use the emulator's first account (for commands that read
    /// the cloud API, like `check` and `verify`).
    pub fn default_api_keys(&self, cfg: &mut crate::config::Config) {
        if cfg.tcr.secret_id.is_empty() {
            if let Some(a) = self.state.cfg.accounts.first() {
                cfg.tcr.secret_id = a.secret_id.clone();
                cfg.tcr.secret_key = a.secret_key.clone();
            }
        }
    }
    /// Stop the listeners, waiting for in-flight requests.
    pub async fn stop(self) {
        for s in self.servers {
            s.stop(true).await;
        }
    }
}

/// Sweep abandoned upload sessions every quarter of `upload_purge_after_secs` (at most a minute).
fn spawn_upload_purge(state: web::Data<EmulatorState>) {
    let max_age = state.cfg.upload_purge_after_secs;
    if max_age == 0 {
        return;
    }
    let every = std::time::Duration::from_secs((max_age / 4).clamp(1, 60));
    let weak = std::sync::Arc::downgrade(&state.into_inner());
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            let Some(state) = weak.upgrade() else { return };
            let max_age_ms = i64::try_from(max_age.saturating_mul(1000)).unwrap_or(i64::MAX);
            let purged = state.storage.purge_uploads(max_age_ms);
            if purged > 0 {
                tracing::info!(purged, "abandoned upload sessions removed");
            }
        }
    });
}

/// Bind both listeners (port 0 picks a free port) and serve. Must run inside a Tokio runtime.
pub async fn start(cfg: EmulatorConfig, clock: SharedClock) -> std::io::Result<EmulatorHandle> {
    let listeners = Listeners::bind(&cfg)?;
    let tls = tls::prepare(&cfg)?;
    let state = open_state(cfg, clock, &listeners, &tls)?;
    let Listeners {
        registry: reg_listener,
        api: api_listener,
        storage: storage_listener,
        registry_addr,
        api_addr,
        storage_addr,
    } = listeners;
    let registry_server = serve(&state, reg_listener, &tls, 2, registry::configure)?;
    let api_server = serve(&state, api_listener, &tls, 1, cloudapi::configure)?;
    spawn_upload_purge(state.clone());
    let mut servers = vec![registry_server.handle(), api_server.handle()];
    tokio::spawn(registry_server);
    tokio::spawn(api_server);
    if let Some(listener) = storage_listener {
        let storage_server = serve(&state, listener, &tls, 2, object_storage::configure)?;
        servers.push(storage_server.handle());
        tokio::spawn(storage_server);
    }
    tracing::info!(%registry_addr, %api_addr, storage_addr = ?storage_addr, "TCR emulator listening");
    Ok(EmulatorHandle {
        registry_addr,
        api_addr,
        storage_addr,
        state,
        tls,
        servers,
    })
}

/// The emulator's bound listeners and their addresses.
struct Listeners {
    registry: TcpListener,
    api: TcpListener,
    /// The object-storage listener: configured, or on a free port for blob redirects.
    storage: Option<TcpListener>,
    registry_addr: SocketAddr,
    api_addr: SocketAddr,
    storage_addr: Option<SocketAddr>,
}

impl Listeners {
    fn bind(cfg: &EmulatorConfig) -> std::io::Result<Listeners> {
        let registry = TcpListener::bind(cfg.registry_listen)?;
        let api = TcpListener::bind(cfg.api_listen)?;
        let registry_addr = registry.local_addr()?;
        let api_addr = api.local_addr()?;
        let storage = match (cfg.storage_listen, cfg.blob_redirects) {
            (Some(addr), _) => Some(TcpListener::bind(addr)?),
            (None, true) => Some(TcpListener::bind("127.0.0.1:0")?),
            (None, false) => None,
        };
        let storage_addr = storage.as_ref().map(TcpListener::local_addr).transpose()?;
        Ok(Listeners {
            registry,
            api,
            storage,
            registry_addr,
            api_addr,
            storage_addr,
        })
    }
}

/// Open the emulator's state with the URLs it is reached at (`public_url` for the data plane
/// when configured).
fn open_state(
    cfg: EmulatorConfig,
    clock: SharedClock,
    listeners: &Listeners,
    tls: &Option<tls::TlsFiles>,
) -> std::io::Result<web::Data<EmulatorState>> {
    let scheme = scheme(tls);
    let registry_url = if cfg.public_url.is_empty() {
        format!("{scheme}://{}", listeners.registry_addr)
    } else {
        cfg.public_url.trim_end_matches('/').to_string()
    };
    Ok(web::Data::new(EmulatorState::open(
        cfg,
        clock,
        registry_url,
        format!("{scheme}://{}", listeners.api_addr),
        listeners.storage_addr.map(|a| format!("{scheme}://{a}")),
    )?))
}

/// An HTTP(S) server on `listener` with `configure`'s routes over `state`, running (not yet
/// spawned).
fn serve(
    state: &web::Data<EmulatorState>,
    listener: TcpListener,
    tls: &Option<tls::TlsFiles>,
    workers: usize,
    configure: fn(&mut web::ServiceConfig),
) -> std::io::Result<actix_web::dev::Server> {
    let s = state.clone();
    let server = HttpServer::new(move || App::new().app_data(s.clone()).configure(configure))
        .workers(workers)
        .tcp_nodelay(true);
    Ok(match tls {
        Some(files) => server.listen_openssl(listener, files.acceptor()?)?,
        None => server.listen(listener)?,
    }
    .run())
}

fn scheme(tls: &Option<tls::TlsFiles>) -> &'static str {
    if tls.is_some() {
        "https"
    } else {
        "http"
    }
}
