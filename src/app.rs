//! The adapter as a running thing: its shared state (upstream client, credential resolver, auth
//! service, namespace provisioner, metrics), the routes (`/v2/`, `/service/token`, `/healthz`,
//! `/metrics`), the per-request access log with `X-Request-Id` (written by `access_log` once the
//! body has been sent), and [`start`], used alike by `main` and the tests. It wires; it does
//! not implement protocol logic.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::dev::{Service, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::{web, App, HttpMessage, HttpResponse, HttpServer};

use crate::access_log::{AccessLine, LoggedBody};
use crate::auth::AuthService;
use crate::clock::SharedClock;
use crate::config::Config;
use crate::credentials::CredentialResolver;
use crate::discovery::InstanceLocator;
use crate::harbor_api::HarborFront;
use crate::namespaces::{NamespacePolicy, NamespaceProvisioner};
use crate::readiness::Readiness;
use crate::registry::{FrontMetrics, RegistryFront, RouteInfo};
use crate::tencentcloud::TcrApiClient;
use crate::upstream::{RealmValidator, UpstreamClient, UpstreamMetrics};

/// The adapter's Prometheus registry and the families it holds.
#[derive(Clone)]
pub struct AdapterMetrics {
    pub registry: prometheus::Registry,
    pub front: FrontMetrics,
    pub upstream: UpstreamMetrics,
    /// `tcr_adapter_cloud_api_retries_total{action,cause}`: cloud API calls retried
    /// (`throttled`, `internal`, `transport`).
    pub cloud_retries: prometheus::IntCounterVec,
    /// `tcr_adapter_cloud_api_calls_total{action,result}`: cloud API calls made (after their
    /// retries), `result` = `ok`, the API error code or `transport`.
    pub cloud_calls: prometheus::IntCounterVec,
    /// `tcr_adapter_ready`: 1 when the last `/readyz` verdict was ready, 0 when not.
    pub ready: prometheus::IntGauge,
}

impl AdapterMetrics {
    pub fn new() -> Self {
        let registry = prometheus::Registry::new();
        let cloud_retries = prometheus::IntCounterVec::new(
            prometheus::Opts::new(
                "tcr_adapter_cloud_api_retries_total",
                "TencentCloud API calls retried, by action and cause",
            ),
            &["action", "cause"],
        )
        .expect("valid metric");
        let _ = registry.register(Box::new(cloud_retries.clone()));
        // Throttling starts at 0 for the calls every migration makes, so alerts and dashboards
        // see a series before the first RequestLimitExceeded.
        for action in [
            "DescribeInstances",
            "CreateInstanceToken",
            "DescribeNamespaces",
            "CreateNamespace",
        ] {
            cloud_retries.with_label_values(&[action, "throttled"]);
        }
        let cloud_calls = prometheus::IntCounterVec::new(
            prometheus::Opts::new(
                "tcr_adapter_cloud_api_calls_total",
                "TencentCloud API calls made, by action and result (ok, error code, transport)",
            ),
            &["action", "result"],
        )
        .expect("valid metric");
        let _ = registry.register(Box::new(cloud_calls.clone()));
        let _ = registry.register(Box::new(crate::telemetry::client_protocol_errors().clone()));
        let ready = prometheus::IntGauge::new(
            "tcr_adapter_ready",
            "1 when the last /readyz verdict was ready (TCR's data plane and cloud API answer), 0 when not",
        )
        .expect("valid metric");
        let _ = registry.register(Box::new(ready.clone()));
        AdapterMetrics {
            ready,
            cloud_calls,
            front: FrontMetrics::new(&registry),
            upstream: UpstreamMetrics::new(&registry),
            cloud_retries,
            registry,
        }
    }
}

impl Default for AdapterMetrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Everything the adapter's handlers share.
pub struct AdapterState {
    pub cfg: Config,
    pub upstream: Arc<UpstreamClient>,
    pub namespaces: Arc<NamespaceProvisioner>,
    pub api: Option<Arc<TcrApiClient>>,
    pub resolver: Arc<CredentialResolver>,
    pub auth: web::Data<AuthService>,
    pub front: web::Data<RegistryFront>,
    /// The Harbor API persona (`/api/...`, `/chartrepo/...`).
    pub harbor: web::Data<HarborFront>,
    pub metrics: AdapterMetrics,
    pub readiness: Readiness,
    /// The state replicas share (`[state]`), or in-process only.
    pub state: crate::state::StateStore,
}

impl AdapterState {
    /// Build the state from a configuration whose `server.listen` is the bound address.
    pub fn new(cfg: Config, clock: SharedClock) -> io::Result<AdapterState> {
        NamespacePolicy::validate(&cfg.namespaces)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let metrics = AdapterMetrics::new();
        let state = crate::state::StateStore::from_config(&cfg.state, &metrics.registry)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?
            .with_clock(clock.clone());
        let upstream = build_upstream(&cfg, &clock, &metrics)?;
        let api = build_api(&cfg, &clock, &metrics)?;
        let provisioner_keys = NamespaceProvisioner::provisioner_keys(&cfg.tcr);
        // One instance locator (configured, or looked up once) for namespaces and tokens alike.
        let locator = build_locator(&cfg, api.as_ref());
        let namespaces = build_namespaces(
            &cfg,
            &clock,
            &metrics,
            api.as_ref().zip(locator.as_ref()),
            provisioner_keys.clone(),
        );
        namespaces.share_catalogs(&state);
        let api = api.map(Arc::new);
        let resolver = build_resolver(&upstream, locator, &clock, &metrics, &state);
        let auth = AuthService::new(&cfg, resolver.clone(), namespaces.clone(), clock)
            .map_err(|e| io::Error::other(e.to_string()))?;
        let front_keys = if api.is_some() {
            provisioner_keys
        } else {
            None
        };
        let front =
            build_registry_front(&cfg, &metrics, &upstream, &namespaces, front_keys, &state)?;
        let harbor = build_harbor_front(&cfg, &metrics, &upstream, &namespaces, &resolver);
        Ok(AdapterState {
            harbor: web::Data::new(harbor),
            cfg,
            upstream,
            namespaces,
            api,
            resolver,
            auth: web::Data::new(auth),
            front: web::Data::new(front),
            metrics,
            readiness: Readiness::default(),
            state,
        })
    }
}

/// The TCR data-plane client: CA, connect timeout, retry policy and retry budget from `tcr`.
fn build_upstream(
    cfg: &Config,
    clock: &SharedClock,
    metrics: &AdapterMetrics,
) -> io::Result<Arc<UpstreamClient>> {
    let ca = match &cfg.tcr.ca_file {
        Some(p) => Some(std::fs::read(p)?),
        None => None,
    };
    Ok(Arc::new(
        UpstreamClient::new(
            &cfg.tcr.registry_url,
            Duration::from_secs(cfg.tcr.connect_timeout_secs.max(1)),
            ca.as_deref(),
            clock.clone(),
            metrics.upstream.clone(),
        )
        .map_err(|e| io::Error::other(format!("upstream client: {e}")))?
        .with_retry(crate::upstream::RetryPolicy {
            attempts: cfg.tcr.retry_attempts.max(1),
            ..Default::default()
        })
        .with_budget(cfg.tcr.retry_budget_ratio, cfg.tcr.retry_budget_min_per_sec),
    ))
}

/// The cloud API client (none without `tcr.api_endpoint`), its retries and calls counted.
fn build_api(
    cfg: &Config,
    clock: &SharedClock,
    metrics: &AdapterMetrics,
) -> io::Result<Option<TcrApiClient>> {
    if cfg.tcr.api_endpoint.is_empty() {
        return Ok(None);
    }
    let client = TcrApiClient::from_config(&cfg.tcr, clock.clone())
        .map_err(|e| io::Error::other(format!("TCR API client: {e}")))?;
    let retries = metrics.cloud_retries.clone();
    client.set_retry_observer(move |action, cause| {
        retries.with_label_values(&[action, cause.as_str()]).inc();
    });
    let calls = metrics.cloud_calls.clone();
    client.set_call_observer(move |action, result| {
        calls.with_label_values(&[action, result]).inc();
    });
    Ok(Some(client))
}

fn build_locator(cfg: &Config, api: Option<&TcrApiClient>) -> Option<Arc<InstanceLocator>> {
    api.map(|client| {
        Arc::new(InstanceLocator::new(
            client.clone(),
            &cfg.tcr.registry_url,
            &cfg.tcr.registry_id,
            &cfg.tcr.region,
        ))
    })
}

/// The namespace provisioner, with the cloud API when there is one; its metrics registered.
fn build_namespaces(
    cfg: &Config,
    clock: &SharedClock,
    metrics: &AdapterMetrics,
    cloud: Option<(&TcrApiClient, &Arc<InstanceLocator>)>,
    provisioner_keys: Option<crate::tencentcloud::ApiCredential>,
) -> Arc<NamespaceProvisioner> {
    let mut provisioner = NamespaceProvisioner::new(&cfg.namespaces).with_clock(clock.clone());
    if let Some((client, locator)) = cloud {
        provisioner = provisioner.with_locator(client.clone(), locator.clone(), provisioner_keys);
    }
    let _ = provisioner.register(&metrics.registry);
    Arc::new(provisioner)
}

/// The credential resolver: API keys exchanged through `locator` when there is one.
fn build_resolver(
    upstream: &Arc<UpstreamClient>,
    locator: Option<Arc<InstanceLocator>>,
    clock: &SharedClock,
    metrics: &AdapterMetrics,
    state: &crate::state::StateStore,
) -> Arc<CredentialResolver> {
    let validator = Arc::new(RealmValidator::new(upstream.clone()));
    let resolver = Arc::new(
        match locator {
            Some(locator) => CredentialResolver::with_locator(locator, validator, clock.clone()),
            None => CredentialResolver::with_issuer(None, String::new(), validator, clock.clone()),
        }
        .with_state(state.clone()),
    );
    let _ = resolver.register(&metrics.registry);
    resolver
}

/// The `/v2/` front, with the WAN blob index when `wan.dedup` is on and the upload spool when
/// `wan.pipeline` is (emptied here: a spool that cannot be made is a start-up error).
fn build_registry_front(
    cfg: &Config,
    metrics: &AdapterMetrics,
    upstream: &Arc<UpstreamClient>,
    namespaces: &Arc<NamespaceProvisioner>,
    provisioner_keys: Option<crate::tencentcloud::ApiCredential>,
    state: &crate::state::StateStore,
) -> std::io::Result<RegistryFront> {
    Ok(RegistryFront {
        upstream: upstream.clone(),
        namespaces: namespaces.clone(),
        public_base: cfg.server.public_base(),
        trust_forwarded: cfg.server.trust_forwarded_headers,
        provisioner_keys,
        metrics: metrics.front.clone(),
        replay_cap: cfg.tcr.replay_buffer_bytes,
        redirects: cfg.tcr.redirects,
        wan: crate::registry::wan::Wan::new(
            &cfg.wan,
            state,
            (
                &cfg.state.advertise_base(cfg.server.listen),
                cfg.state.forward_by_repository,
            ),
            &metrics.registry,
        )?,
    })
}

/// The Harbor API persona (`/api/...`, `/chartrepo/...`).
fn build_harbor_front(
    cfg: &Config,
    metrics: &AdapterMetrics,
    upstream: &Arc<UpstreamClient>,
    namespaces: &Arc<NamespaceProvisioner>,
    resolver: &Arc<CredentialResolver>,
) -> HarborFront {
    HarborFront {
        upstream: upstream.clone(),
        namespaces: namespaces.clone(),
        resolver: resolver.clone(),
        metrics: metrics.front.clone(),
        public_base: cfg.server.public_base(),
        trust_forwarded: cfg.server.trust_forwarded_headers,
        chart_limits: crate::harbor_api::SpoolLimits {
            dir: std::env::temp_dir(),
            max_bytes: cfg.server.max_chart_bytes,
        },
    }
}

/// All routes of the adapter. Needs `web::Data<AdapterState>`, `web::Data<AuthService>` and
/// `web::Data<RegistryFront>` registered by the caller (see [`start`]).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .route("/metrics", web::get().to(metrics));
    crate::auth::configure_token_routes(cfg);
    crate::registry::configure(cfg);
    crate::harbor_api::configure(cfg);
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("ok")
}

/// Ready when TCR's data plane and the cloud API answer (cached, see [`Readiness`]); 503 with
/// the reason otherwise.
async fn readyz(state: web::Data<AdapterState>) -> HttpResponse {
    let verdict = state
        .readiness
        .check(&state.upstream, state.api.as_deref())
        .await;
    state.metrics.ready.set(i64::from(verdict.ready()));
    let mut resp = if verdict.ready() {
        HttpResponse::Ok()
    } else {
        HttpResponse::ServiceUnavailable()
    };
    // The shared store is shown, never decisive: without it replicas use their own memory.
    if state.state.is_shared() {
        // A round trip per probe: a store that came back is picked up here even when idle.
        let _ = state.state.ping().await;
    }
    let mut body = verdict.body();
    body["checks"]["state_store"] = state.state.status();
    resp.insert_header(("Cache-Control", "no-store")).json(body)
}

async fn metrics(state: web::Data<AdapterState>) -> HttpResponse {
    crate::telemetry::metrics_response(&state.metrics.registry)
}

/// A running adapter.
pub struct AdapterHandle {
    pub addr: SocketAddr,
    pub state: web::Data<AdapterState>,
    server: actix_web::dev::ServerHandle,
}

impl AdapterHandle {
    /// `http://<addr>` (or the configured public URL).
    pub fn url(&self) -> String {
        self.state.cfg.server.public_base()
    }
    /// Stop, letting in-flight requests finish.
    pub async fn stop(self) {
        self.server.stop(true).await;
    }
}

/// Bind `cfg.server.listen` (port 0 picks a free port) and serve. Must run inside Tokio.
/// How long the start waits for the upstream's challenge ([`UpstreamClient::warm_up`]).
const WARM_UP: Duration = Duration::from_secs(2);

pub async fn start(mut cfg: Config, clock: SharedClock) -> io::Result<AdapterHandle> {
    let listener = TcpListener::bind(cfg.server.listen)?;
    let addr = listener.local_addr()?;
    cfg.server.listen = addr;
    let workers = cfg.server.workers;
    let grace = cfg.server.shutdown_grace_secs;
    let tls = match (&cfg.server.tls.cert_file, &cfg.server.tls.key_file) {
        (Some(c), Some(k)) => Some(tls_acceptor(c, k)?),
        _ => None,
    };
    let state = web::Data::new(AdapterState::new(cfg, clock)?);
    // The upstream's auth challenge, learnt before the first client asks (bounded: an
    // unreachable TCR does not hold the start back; the first request learns it then).
    let _ = tokio::time::timeout(WARM_UP, state.upstream.warm_up()).await;
    let s = state.clone();
    let mut server = HttpServer::new(move || {
        App::new()
            .app_data(s.clone())
            .app_data(s.auth.clone())
            .app_data(s.front.clone())
            .app_data(s.harbor.clone())
            .wrap_fn(|req, srv| {
                let started = Instant::now();
                let request_id = req
                    .headers()
                    .get("x-request-id")
                    .and_then(|v| v.to_str().ok())
                    .filter(|v| !v.is_empty() && v.len() <= 128)
                    .map(str::to_string)
                    .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
                let method = req.method().to_string();
                let path = req.path().to_string();
                req.extensions_mut()
                    .insert(crate::access_log::RequestId(request_id.clone()));
                let fut = srv.call(req);
                async move {
                    let mut res: ServiceResponse = fut.await?;
                    let line = finish(&mut res, request_id, method, &path, started);
                    Ok(res.map_body(|_, body| LoggedBody::new(body, line)))
                }
            })
            .configure(configure)
    })
    .shutdown_timeout(grace)
    // Nagle would hold small streamed responses back for the client's delayed ACK (20-40 ms).
    .tcp_nodelay(true);
    if workers > 0 {
        server = server.workers(workers);
    }
    let server = match tls {
        Some(acceptor) => server.listen_openssl(listener, acceptor)?,
        None => server.listen(listener)?,
    }
    .run();
    let handle = server.handle();
    tokio::spawn(server);
    tracing::info!(%addr, upstream = %state.cfg.tcr.registry_url, "tcr-adapter listening");
    Ok(AdapterHandle {
        addr,
        state,
        server: handle,
    })
}

/// Response headers every answer carries, the request metric, and the access log line to write
/// once the body has been sent.
fn finish(
    res: &mut ServiceResponse,
    request_id: String,
    method: String,
    path: &str,
    started: Instant,
) -> AccessLine {
    let headers = res.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        headers.insert(HeaderName::from_static("x-request-id"), v);
    }
    headers.insert(
        HeaderName::from_static("docker-distribution-api-version"),
        HeaderValue::from_static(crate::oci::API_VERSION_HEADER.1),
    );
    let status = res.status().as_u16();
    let info = res.request().extensions().get::<RouteInfo>().cloned();
    let (route, repository) = match &info {
        Some(i) => (i.route, i.repository.as_str()),
        None => (route_of(path), ""),
    };
    if let Some(state) = res.request().app_data::<web::Data<AdapterState>>() {
        state
            .metrics
            .front
            .requests
            .with_label_values(&[route, &method, &status.to_string()])
            .inc();
    }
    AccessLine {
        request_id,
        method,
        route,
        repository: repository.to_string(),
        status,
        started,
    }
}

fn route_of(path: &str) -> &'static str {
    match path {
        "/healthz" => "healthz",
        "/metrics" => "metrics",
        "/readyz" => "readyz",
        "/service/token" => "token",
        p if p.starts_with("/v2") => "v2",
        p if p.starts_with("/api/chartrepo/") => "chart_api",
        p if p.starts_with("/api/") => "harbor_api",
        p if p.starts_with("/chartrepo/") => "chart_repo",
        _ => "other",
    }
}

fn tls_acceptor(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> io::Result<openssl::ssl::SslAcceptorBuilder> {
    use openssl::ssl::{SslAcceptor, SslFiletype, SslMethod};
    let mut b = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls()).map_err(io::Error::other)?;
    b.set_private_key_file(key, SslFiletype::PEM)
        .map_err(|e| io::Error::other(format!("server.tls.key_file {}: {e}", key.display())))?;
    b.set_certificate_chain_file(cert)
        .map_err(|e| io::Error::other(format!("server.tls.cert_file {}: {e}", cert.display())))?;
    Ok(b)
}
