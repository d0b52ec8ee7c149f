//! TCR's Helm chart repository, as the emulator serves it on its data-plane listener: the
//! Harbor/ChartMuseum REST API under `/api/chartrepo/<ns>/charts` and the Helm repository under
//! `/chartrepo/<ns>/` (`index.yaml`, `charts/<name>-<version>.tgz`). Basic auth with the
//! instance's registry credentials (temporary or long-term instance tokens); namespaces enforced
//! like images; anonymous reads only on public namespaces. Uploads stream to disk and are checked
//! (`archive`) before they become visible (`store`). Errors are ChartMuseum's `{"error": "..."}`.

pub mod archive;
pub mod store;

use actix_web::body::SizedStream;
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use futures_util::StreamExt;
use serde_json::{json, Map, Value};
use tokio_util::io::ReaderStream;

use super::http::{basic_credentials, content_length};
use super::instance_tokens::authenticate;
use super::storage::{files, StorageError};
use super::EmulatorState;
use crate::config::{ChartDuplicates, RegistryAction};
use store::{StoreError, StoredVersion};

pub use store::ChartStore;

type State = web::Data<EmulatorState>;

/// Mount the chart routes (inside the registry listener's scope, so they share its metrics).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/chartrepo/{ns}/charts", web::get().to(list))
        .route("/api/chartrepo/{ns}/charts", web::post().to(upload))
        .route("/api/chartrepo/{ns}/charts/{name}", web::get().to(versions))
        .route(
            "/api/chartrepo/{ns}/charts/{name}/{version}",
            web::get().to(detail),
        )
        .route(
            "/api/chartrepo/{ns}/charts/{name}/{version}",
            web::delete().to(delete),
        )
        .route("/chartrepo/{ns}/index.yaml", web::get().to(index))
        .route("/chartrepo/{ns}/charts/{file}", web::get().to(download))
        .route("/chartrepo/{ns}/charts/{file}", web::head().to(download));
}

/// A chart repository error: status + ChartMuseum's `{"error": message}`.
#[derive(Debug)]
pub struct ChartError {
    status: StatusCode,
    message: String,
}

impl ChartError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ChartError {
            status,
            message: message.into(),
        }
    }
    fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }
    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
}

impl std::fmt::Display for ChartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.status, self.message)
    }
}

impl ResponseError for ChartError {
    fn status_code(&self) -> StatusCode {
        self.status
    }
    fn error_response(&self) -> HttpResponse {
        let mut r = HttpResponse::build(self.status);
        if self.status == StatusCode::UNAUTHORIZED {
            r.insert_header((header::WWW_AUTHENTICATE, "Basic realm=\"chartrepo\""));
        }
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            r.insert_header((header::RETRY_AFTER, "1"));
        }
        r.json(json!({ "error": self.message }))
    }
}

type ChartResult = Result<HttpResponse, ChartError>;

#[derive(Clone, Copy, PartialEq)]
enum Need {
    Read,
    Write,
    Delete,
}

/// Fault knobs, then who may do what in `ns`: valid instance credentials on an existing
/// namespace, or anonymous reads of a public one.
async fn admit(
    req: &HttpRequest,
    state: &EmulatorState,
    ns: &str,
    need: Need,
) -> Result<(), ChartError> {
    state.faults.delay().await;
    if state.faults.registry_fail() {
        return Err(ChartError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "injected failure (emulator fault knob)",
        ));
    }
    let principal = match basic_credentials(req) {
        Some((user, pass)) => Some(authenticate(state, &user, &pass).map_err(|_| {
            ChartError::new(StatusCode::UNAUTHORIZED, "invalid username or password")
        })?),
        None => None,
    };
    let namespace = state.namespaces.get(ns);
    let Some(principal) = principal else {
        let public_read = need == Need::Read && namespace.as_ref().is_some_and(|n| n.public);
        return match public_read {
            true => Ok(()),
            false => Err(ChartError::new(
                StatusCode::UNAUTHORIZED,
                "authentication required",
            )),
        };
    };
    if namespace.is_none() {
        return Err(ChartError::not_found(format!("namespace {ns} not found")));
    }
    // Harbor's chart API answers an authenticated caller without the permission 403
    // (`BaseController.SendPermissionError`, v2.7.4 `src/core/api/base.go`).
    let action = match need {
        Need::Read => RegistryAction::Pull,
        Need::Write => RegistryAction::Push,
        Need::Delete => RegistryAction::Delete,
    };
    match principal.may(ns, action) {
        true => Ok(()),
        false => Err(ChartError::new(
            StatusCode::FORBIDDEN,
            format!(
                "{} may not {} charts in {ns}",
                principal.name(),
                action.as_str()
            ),
        )),
    }
}

/// `GET /api/chartrepo/{ns}/charts`: ChartMuseum's `ChartInfo` list.
async fn list(req: HttpRequest, state: State, path: web::Path<String>) -> ChartResult {
    let ns = path.into_inner();
    admit(&req, &state, &ns, Need::Read).await?;
    let infos: Vec<Value> = state
        .charts
        .chart_names(&ns)
        .into_iter()
        .map(|name| chart_info(&name, &state.charts.versions(&ns, &name)))
        .collect();
    Ok(HttpResponse::Ok().json(infos))
}

fn chart_info(name: &str, versions: &[StoredVersion]) -> Value {
    let latest = &versions[0].chart_version;
    let created = versions.iter().map(|v| v.created_ms).min().unwrap_or(0);
    let updated = versions.iter().map(|v| v.created_ms).max().unwrap_or(0);
    json!({
        "name": name,
        "total_versions": versions.len(),
        "latest_version": latest.get("version").cloned().unwrap_or(Value::Null),
        "created": store::rfc3339(created),
        "updated": store::rfc3339(updated),
        "icon": latest.get("icon").cloned().unwrap_or_else(|| Value::from("")),
        "home": latest.get("home").cloned().unwrap_or_else(|| Value::from("")),
        "deprecated": latest.get("deprecated").cloned().unwrap_or(Value::Bool(false)),
    })
}

/// `GET /api/chartrepo/{ns}/charts/{name}`: the versions, newest first, each with `labels`.
async fn versions(
    req: HttpRequest,
    state: State,
    path: web::Path<(String, String)>,
) -> ChartResult {
    let (ns, name) = path.into_inner();
    admit(&req, &state, &ns, Need::Read).await?;
    let versions = state.charts.versions(&ns, &name);
    if versions.is_empty() {
        return Err(ChartError::not_found(format!(
            "chart {name} not found in {ns}"
        )));
    }
    let body: Vec<Value> = versions
        .into_iter()
        .map(|v| {
            let mut cv = v.chart_version;
            cv.insert("labels".into(), json!([]));
            Value::Object(cv)
        })
        .collect();
    Ok(HttpResponse::Ok().json(body))
}

/// `GET /api/chartrepo/{ns}/charts/{name}/{version}`: Harbor's `ChartVersionDetails`.
async fn detail(
    req: HttpRequest,
    state: State,
    path: web::Path<(String, String, String)>,
) -> ChartResult {
    let (ns, name, version) = path.into_inner();
    admit(&req, &state, &ns, Need::Read).await?;
    let v = state.charts.get(&ns, &name, &version).ok_or_else(|| {
        ChartError::not_found(format!("chart {name}:{version} not found in {ns}"))
    })?;
    let file = store::file_name(&name, &version);
    let mut files = Map::new();
    if let Some(t) = &v.values_text {
        files.insert("values.yaml".into(), Value::from(t.as_str()));
    }
    let dependencies = v
        .chart_version
        .get("dependencies")
        .cloned()
        .unwrap_or_else(|| json!([]));
    Ok(HttpResponse::Ok().json(json!({
        "metadata": v.chart_version,
        "dependencies": dependencies,
        "values": v.values,
        "files": files,
        "security": {"signature": {
            "signed": v.signed,
            "prov_file": if v.signed { format!("charts/{file}.prov") } else { String::new() },
        }},
        "labels": [],
    })))
}

/// `DELETE /api/chartrepo/{ns}/charts/{name}/{version}`.
async fn delete(
    req: HttpRequest,
    state: State,
    path: web::Path<(String, String, String)>,
) -> ChartResult {
    let (ns, name, version) = path.into_inner();
    admit(&req, &state, &ns, Need::Delete).await?;
    match state.charts.delete(&ns, &name, &version) {
        Ok(true) => Ok(HttpResponse::Ok().json(json!({"deleted": true}))),
        Ok(false) => Err(ChartError::not_found(format!(
            "chart {name}:{version} not found in {ns}"
        ))),
        Err(e) => Err(ChartError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            e.to_string(),
        )),
    }
}

/// The temporary files of one upload, removed when dropped (a committed file has moved).
struct Incoming {
    chart: Option<std::path::PathBuf>,
    digest: String,
    prov: Option<std::path::PathBuf>,
}

impl Drop for Incoming {
    fn drop(&mut self) {
        for p in [&self.chart, &self.prov].into_iter().flatten() {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// `POST /api/chartrepo/{ns}/charts`: multipart `chart` (+ optional `prov`) or the bare archive
/// as the body; streamed to disk, checked, then committed.
async fn upload(
    req: HttpRequest,
    payload: web::Payload,
    state: State,
    path: web::Path<String>,
) -> ChartResult {
    let ns = path.into_inner();
    admit(&req, &state, &ns, Need::Write).await?;
    if content_length(&req).is_some_and(|n| state.faults.body_too_large(n)) {
        return Err(ChartError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request body too large",
        ));
    }
    let mut incoming = receive(&req, payload, &state).await?;
    if let Some(code) = state.faults.chart_upload_fault() {
        let status = StatusCode::from_u16(code).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        return Err(ChartError::new(
            status,
            "injected fault (scripted chart upload)",
        ));
    }
    let chart = incoming.chart.clone().ok_or_else(|| {
        ChartError::bad_request(
            "no chart in the request: send the archive in a multipart part named \"chart\"",
        )
    })?;
    let facts = tokio::task::spawn_blocking(move || archive::inspect(&chart))
        .await
        .map_err(|e| ChartError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|e| ChartError::bad_request(e.to_string()))?;
    let duplicates = state.cfg.chart_duplicates;
    let (name, version) = (facts.name.clone(), facts.version.clone());
    let chart = incoming.chart.take().expect("checked above");
    let prov = incoming.prov.take();
    let st = state.clone();
    let digest = incoming.digest.clone();
    let ns2 = ns.clone();
    let committed = tokio::task::spawn_blocking(move || {
        let r = st
            .charts
            .commit(&ns2, facts, &digest, &chart, prov.as_deref(), duplicates);
        let _ = std::fs::remove_file(&chart);
        if let Some(p) = prov {
            let _ = std::fs::remove_file(p);
        }
        r
    })
    .await
    .map_err(|e| ChartError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    match committed {
        Ok(()) => {
            tracing::debug!(namespace = %ns, chart = %name, %version, "chart saved");
            Ok(HttpResponse::Created().json(json!({"saved": true})))
        }
        Err(StoreError::Exists(what)) if duplicates == ChartDuplicates::Conflict => Err(
            ChartError::new(StatusCode::CONFLICT, format!("{what} already exists")),
        ),
        Err(e) => Err(ChartError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            e.to_string(),
        )),
    }
}

/// Stream the request's chart (and provenance) parts to temporary files.
async fn receive(
    req: &HttpRequest,
    payload: web::Payload,
    state: &EmulatorState,
) -> Result<Incoming, ChartError> {
    let limit = state.cfg.faults.max_body_bytes;
    let mut incoming = Incoming {
        chart: None,
        digest: String::new(),
        prov: None,
    };
    let is_multipart = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().starts_with("multipart/form-data"));
    if !is_multipart {
        let tmp = state.charts.temp_path();
        incoming.chart = Some(tmp.clone());
        incoming.digest = save(&tmp, payload, limit).await?;
        return Ok(incoming);
    }
    let mut parts = actix_multipart::Multipart::new(req.headers(), payload);
    while let Some(field) = parts.next().await {
        let mut field =
            field.map_err(|e| ChartError::bad_request(format!("malformed multipart body: {e}")))?;
        let name = field.name().unwrap_or("").to_string();
        let slot = match name.as_str() {
            "chart" if incoming.chart.is_none() => &mut incoming.chart,
            "prov" if incoming.prov.is_none() => &mut incoming.prov,
            _ => {
                while let Some(chunk) = field.next().await {
                    chunk.map_err(|e| {
                        ChartError::bad_request(format!("malformed multipart body: {e}"))
                    })?;
                }
                continue;
            }
        };
        let tmp = state.charts.temp_path();
        *slot = Some(tmp.clone());
        let digest = save(&tmp, field, limit).await?;
        if name == "chart" {
            incoming.digest = digest;
        }
    }
    Ok(incoming)
}

/// Write a body stream to `path`; the SHA-256 of what was written, in hex.
async fn save<S, E>(path: &std::path::Path, body: S, limit: u64) -> Result<String, ChartError>
where
    S: futures_util::Stream<Item = Result<bytes::Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let mut hasher = openssl::sha::Sha256::new();
    files::append_stream(path, 0, body, Some(&mut hasher), limit)
        .await
        .map_err(|e| match e {
            StorageError::TooLarge => {
                ChartError::new(StatusCode::PAYLOAD_TOO_LARGE, "request body too large")
            }
            StorageError::BodyAborted(m) => ChartError::bad_request(format!("upload aborted: {m}")),
            other => ChartError::new(StatusCode::INTERNAL_SERVER_ERROR, other.to_string()),
        })?;
    Ok(hex::encode(hasher.finish()))
}

/// `GET /chartrepo/{ns}/index.yaml`: the Helm repository index (relative `urls`).
async fn index(req: HttpRequest, state: State, path: web::Path<String>) -> ChartResult {
    let ns = path.into_inner();
    admit(&req, &state, &ns, Need::Read).await?;
    let mut entries = Map::new();
    for name in state.charts.chart_names(&ns) {
        let list: Vec<Value> = state
            .charts
            .versions(&ns, &name)
            .into_iter()
            .map(|v| Value::Object(v.chart_version))
            .collect();
        entries.insert(name, Value::Array(list));
    }
    let doc = json!({
        "apiVersion": "v1",
        "entries": entries,
        "generated": store::rfc3339(state.clock.now_ms()),
        "serverInfo": {},
    });
    let yaml = serde_yaml::to_string(&doc)
        .map_err(|e| ChartError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(HttpResponse::Ok()
        .content_type("application/x-yaml")
        .body(yaml))
}

/// `GET|HEAD /chartrepo/{ns}/charts/{file}`: an archive or its provenance, streamed.
async fn download(
    req: HttpRequest,
    state: State,
    path: web::Path<(String, String)>,
) -> ChartResult {
    let (ns, file) = path.into_inner();
    admit(&req, &state, &ns, Need::Read).await?;
    let found = state
        .charts
        .file_for(&ns, &file)
        .ok_or_else(|| ChartError::not_found(format!("{file} not found in {ns}")))?;
    let f = tokio::fs::File::open(&found)
        .await
        .map_err(|_| ChartError::not_found(format!("{file} not found in {ns}")))?;
    let len = f
        .metadata()
        .await
        .map_err(|e| ChartError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .len();
    let ctype = if file.ends_with(".prov") {
        "application/pgp-signature"
    } else {
        "application/x-tar"
    };
    let mut resp = HttpResponse::Ok();
    resp.insert_header((header::CONTENT_TYPE, HeaderValue::from_static(ctype)));
    if req.method() == Method::HEAD {
        let empty = futures_util::stream::empty::<Result<bytes::Bytes, std::io::Error>>();
        return Ok(resp.body(SizedStream::new(len, empty)));
    }
    let stream = ReaderStream::with_capacity(f, 64 * 1024);
    Ok(resp.body(SizedStream::new(len, stream)))
}
