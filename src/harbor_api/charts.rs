//! ChartMuseum charts, read and deleted through TCR's chart repository: the caller's credential
//! swapped for its upstream one (Basic), the namespace mapped, absolute `urls` made relative (as
//! Harbor's own ChartMuseum serves them), and every "absent" answered 404 — never 403 (Harbor's
//! `ChartExist` fails a task on anything but 2xx/404, goharbor/harbor#18171). Downloads stream;
//! a file name that Harbor ≤ 2.1.1 lower-cased (#13187) is found again through the index.

use actix_web::body::SizedStream;
use actix_web::http::{Method, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use reqwest::header::{HeaderMap, CONTENT_LENGTH, CONTENT_TYPE};
use serde_json::Value;

use super::caller::{self, Anonymous};
use super::names::{ChartFile, ChartName, ChartVersion, Project};
use super::HarborFront;
use crate::credentials::ClientIdentity;
use crate::oci::{ErrorCode, OciError};
use crate::registry::body;
use crate::upstream::{BasicAuth, ForwardBody, UpstreamPath};

/// Largest chart listing, detail or index read to rewrite it.
const JSON_LIMIT: usize = 32 * 1024 * 1024;

/// What the client named, mapped to upstream names.
pub(super) struct Target {
    identity: ClientIdentity,
    credential: Option<BasicAuth>,
    /// Upstream namespace (admitted by the policy gate).
    ns: String,
}

impl Target {
    /// The upstream namespace.
    pub(super) fn upstream_ns(&self) -> &str {
        &self.ns
    }

    pub(super) fn for_identity(identity: &ClientIdentity, upstream_ns: &str) -> Target {
        Target {
            credential: caller::upstream_basic(identity),
            ns: upstream_ns.to_string(),
            identity: identity.clone(),
        }
    }
}

/// Identify the caller, then pass the project through the policy gate (rename map, naming
/// rule, allow/deny): the same steps as `/v2/`, in the same order.
async fn target(
    req: &HttpRequest,
    front: &HarborFront,
    project: &Project,
    anonymous: Anonymous,
) -> Result<Target, OciError> {
    let identity = caller::identify(req, front, anonymous).await?;
    let ns = front.namespaces.admit(project.as_str())?;
    Ok(Target::for_identity(&identity, &ns))
}

/// `/api/chartrepo/<ns>/charts[/<segment>…]` upstream, built segment by segment.
pub(super) fn chart_api(ns: &str, rest: &[&str]) -> Result<UpstreamPath, OciError> {
    let base = UpstreamPath::root().lit("api").lit("chartrepo");
    segments(base, ns, "charts", rest)
}

/// `/chartrepo/<ns>/<segment>…` upstream (the Helm repository: index and files).
pub(super) fn chart_repo(ns: &str, rest: &[&str]) -> Result<UpstreamPath, OciError> {
    let (first, rest) = rest.split_first().map_or(("", &[][..]), |(f, r)| (*f, r));
    segments(UpstreamPath::root().lit("chartrepo"), ns, first, rest)
}

fn segments(
    base: UpstreamPath,
    ns: &str,
    first: &str,
    rest: &[&str],
) -> Result<UpstreamPath, OciError> {
    std::iter::once(ns)
        .chain(std::iter::once(first))
        .chain(rest.iter().copied())
        .try_fold(base, UpstreamPath::push)
        .map_err(|e| {
            OciError::new(ErrorCode::NameInvalid, e.to_string())
                .with_status(StatusCode::BAD_REQUEST)
        })
}

async fn get(
    front: &HarborFront,
    t: &Target,
    path: &UpstreamPath,
    route: &'static str,
) -> Result<reqwest::Response, OciError> {
    Ok(front
        .upstream
        .send_basic(
            reqwest::Method::GET,
            path,
            HeaderMap::new(),
            ForwardBody::Empty,
            t.credential.as_ref(),
            route,
        )
        .await?)
}

/// An upstream chart-repository failure as the client's error: reads of anything absent or
/// hidden are 404; an anonymous read TCR refuses is a 401 (so Helm logs in).
pub(super) async fn failure(
    resp: reqwest::Response,
    t: &Target,
    read: bool,
    what: &str,
) -> OciError {
    let status = resp.status().as_u16();
    let bytes = body::read_limited(resp, 64 * 1024)
        .await
        .unwrap_or_default();
    let message = chart_error_message(&bytes);
    match status {
        401 | 403 if read && t.identity.is_anonymous() => {
            caller::unauthorized(format!("{what}: authentication required"))
        }
        401 | 403 | 404 if read => OciError::new(
            ErrorCode::NameUnknown,
            format!("{what} not found: {message}"),
        )
        .with_status(StatusCode::NOT_FOUND),
        404 => OciError::new(
            ErrorCode::NameUnknown,
            format!("{what} not found: {message}"),
        )
        .with_status(StatusCode::NOT_FOUND),
        401 | 403 => OciError::new(
            ErrorCode::Denied,
            format!("TCR refused this for the translated credential: {message}"),
        ),
        s => {
            let st = StatusCode::from_u16(s).unwrap_or(StatusCode::BAD_GATEWAY);
            let code = if s < 500 {
                ErrorCode::Denied
            } else {
                ErrorCode::Unavailable
            };
            OciError::new(
                code,
                format!("TCR's chart repository answered {s}: {message}"),
            )
            .with_status(st)
        }
    }
}

/// ChartMuseum's `{"error": "..."}`, Harbor's envelope, or the first line of the body.
pub fn chart_error_message(bytes: &[u8]) -> String {
    if let Ok(v) = serde_json::from_slice::<Value>(bytes) {
        if let Some(m) = v["error"].as_str() {
            return m.to_string();
        }
    }
    crate::upstream::error_message(bytes)
}

/// Relative `urls` in a ChartVersion (drop the upstream's `scheme://host/chartrepo/<ns>/`).
fn relative_urls(v: &mut Value, front: &HarborFront, up_ns: &str) {
    let prefixes = [
        format!("{}/chartrepo/{up_ns}/", front.upstream.base()),
        format!("/chartrepo/{up_ns}/"),
    ];
    if let Some(urls) = v.get_mut("urls").and_then(Value::as_array_mut) {
        for u in urls.iter_mut() {
            if let Some(s) = u.as_str() {
                if let Some(rel) = prefixes.iter().find_map(|p| s.strip_prefix(p.as_str())) {
                    *u = Value::from(rel);
                }
            }
        }
    }
}

async fn json_from(resp: reqwest::Response) -> Result<Value, OciError> {
    let bytes = body::read_limited(resp, JSON_LIMIT).await.map_err(|e| {
        OciError::new(ErrorCode::Unavailable, e).with_status(StatusCode::BAD_GATEWAY)
    })?;
    serde_json::from_slice(&bytes).map_err(|e| {
        OciError::new(
            ErrorCode::Unavailable,
            format!("TCR's chart repository answered invalid JSON: {e}"),
        )
        .with_status(StatusCode::BAD_GATEWAY)
    })
}

/// Which `ChartVersion`s of a chart-repository answer carry `urls` to make relative.
#[derive(Clone, Copy)]
enum Urls {
    None,
    /// A list of ChartVersions.
    EachItem,
    /// `metadata` of a ChartVersionDetails.
    Metadata,
}

/// GET a JSON document of TCR's chart repository for `ns` (client name) at `rest` (after
/// `/api/chartrepo/<upstream ns>/charts`), with relative `urls`; `what` names it in errors.
async fn read_json(
    req: &HttpRequest,
    front: &HarborFront,
    project: &Project,
    rest: &[&str],
    what: String,
    urls: Urls,
) -> Result<HttpResponse, OciError> {
    let t = target(req, front, project, Anonymous::Allowed).await?;
    let path = chart_api(&t.ns, rest)?;
    let resp = get(front, &t, &path, "chart_api").await?;
    if !resp.status().is_success() {
        return Err(failure(resp, &t, true, &what).await);
    }
    let mut v = json_from(resp).await?;
    match urls {
        Urls::None => {}
        Urls::EachItem => v
            .as_array_mut()
            .into_iter()
            .flatten()
            .for_each(|cv| relative_urls(cv, front, &t.ns)),
        Urls::Metadata => {
            if let Some(meta) = v.get_mut("metadata") {
                relative_urls(meta, front, &t.ns);
            }
        }
    }
    Ok(HttpResponse::Ok().json(v))
}

/// `GET /api/chartrepo/{ns}/charts`.
pub async fn list(
    req: HttpRequest,
    path: web::Path<String>,
    front: web::Data<HarborFront>,
) -> Result<HttpResponse, OciError> {
    let ns = Project::parse(&path.into_inner())?;
    let what = format!("chart repository of {ns}");
    read_json(&req, &front, &ns, &[], what, Urls::None).await
}

/// `GET /api/chartrepo/{ns}/charts/{name}`.
pub async fn versions(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    front: web::Data<HarborFront>,
) -> Result<HttpResponse, OciError> {
    let (ns, name) = path.into_inner();
    let (ns, name) = (Project::parse(&ns)?, ChartName::parse(&name)?);
    let what = format!("chart {ns}/{name}");
    read_json(&req, &front, &ns, &[name.as_str()], what, Urls::EachItem).await
}

/// `GET /api/chartrepo/{ns}/charts/{name}/{version}` (Harbor's `ChartExist` and download lookup).
pub async fn detail(
    req: HttpRequest,
    path: web::Path<(String, String, String)>,
    front: web::Data<HarborFront>,
) -> Result<HttpResponse, OciError> {
    let (ns, name, version) = chart_version(path.into_inner())?;
    let what = format!("chart {ns}/{name}:{version}");
    let rest = [name.as_str(), version.as_str()];
    read_json(&req, &front, &ns, &rest, what, Urls::Metadata).await
}

/// `DELETE /api/chartrepo/{ns}/charts/{name}/{version}` (chart deletion replication).
pub async fn delete(
    req: HttpRequest,
    path: web::Path<(String, String, String)>,
    front: web::Data<HarborFront>,
) -> Result<HttpResponse, OciError> {
    let (ns, name, version) = chart_version(path.into_inner())?;
    let t = target(&req, &front, &ns, Anonymous::Refused).await?;
    let p = chart_api(&t.ns, &[name.as_str(), version.as_str()])?;
    let resp = front
        .upstream
        .send_basic(
            reqwest::Method::DELETE,
            &p,
            HeaderMap::new(),
            ForwardBody::Empty,
            t.credential.as_ref(),
            "chart_api",
        )
        .await?;
    if !resp.status().is_success() {
        return Err(failure(resp, &t, false, &format!("chart {ns}/{name}:{version}")).await);
    }
    tracing::info!(target: "audit", event = "chart_deleted", namespace = %t.ns, chart = %name, version = %version, subject = ?t.identity.subject(), "chart deleted");
    Ok(HttpResponse::Ok().json(serde_json::json!({"deleted": true})))
}

/// `GET /chartrepo/{ns}/index.yaml`: the Helm repository index, `urls` relative.
pub async fn index(
    req: HttpRequest,
    path: web::Path<String>,
    front: web::Data<HarborFront>,
) -> Result<HttpResponse, OciError> {
    let ns = Project::parse(&path.into_inner())?;
    let t = target(&req, &front, &ns, Anonymous::Allowed).await?;
    let doc = match fetch_index(&front, &t).await {
        Ok(doc) => doc,
        Err(IndexError::Upstream(e)) => return Err(e),
        Err(IndexError::Response(resp)) => {
            return Err(failure(resp, &t, true, &format!("chart repository of {ns}")).await)
        }
    };
    let yaml = serde_yaml::to_string(&doc)
        .map_err(|e| OciError::new(ErrorCode::Unknown, e.to_string()))?;
    Ok(HttpResponse::Ok()
        .content_type("application/x-yaml")
        .body(yaml))
}

enum IndexError {
    Upstream(OciError),
    Response(reqwest::Response),
}

/// The upstream index with relative `urls`.
async fn fetch_index(front: &HarborFront, t: &Target) -> Result<Value, IndexError> {
    let path = chart_repo(&t.ns, &["index.yaml"]).map_err(IndexError::Upstream)?;
    let resp = get(front, t, &path, "chart_repo")
        .await
        .map_err(IndexError::Upstream)?;
    if !resp.status().is_success() {
        return Err(IndexError::Response(resp));
    }
    let bytes = body::read_limited(resp, JSON_LIMIT)
        .await
        .map_err(|e| IndexError::Upstream(OciError::new(ErrorCode::Unavailable, e)))?;
    let mut doc: Value = serde_yaml::from_slice(&bytes).map_err(|e| {
        IndexError::Upstream(OciError::new(
            ErrorCode::Unavailable,
            format!("TCR's index.yaml is not valid YAML: {e}"),
        ))
    })?;
    if let Some(entries) = doc.get_mut("entries").and_then(Value::as_object_mut) {
        for list in entries.values_mut() {
            if let Some(list) = list.as_array_mut() {
                list.iter_mut()
                    .for_each(|cv| relative_urls(cv, front, &t.ns));
            }
        }
    }
    Ok(doc)
}

/// `GET|HEAD /chartrepo/{ns}/charts/{file}`: the archive (or `.prov`), streamed.
pub async fn download(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    front: web::Data<HarborFront>,
) -> Result<HttpResponse, OciError> {
    let (ns, file) = path.into_inner();
    let (ns, file) = (Project::parse(&ns)?, ChartFile::parse(&file)?);
    let t = target(&req, &front, &ns, Anonymous::Allowed).await?;
    let file_path = |f: &ChartFile| chart_repo(&t.ns, &["charts", f.as_str()]);
    let mut resp = get(&front, &t, &file_path(&file)?, "chart_repo").await?;
    if resp.status() == reqwest::StatusCode::NOT_FOUND {
        if let Some(real) = case_insensitive_file(&front, &t, file.as_str()).await {
            resp = get(&front, &t, &file_path(&real)?, "chart_repo").await?;
        }
    }
    if !resp.status().is_success() {
        return Err(failure(resp, &t, true, &format!("{ns}/{file}")).await);
    }
    let mut out = HttpResponse::Ok();
    if let Some(ct) = resp
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    {
        out.insert_header(("Content-Type", ct.to_string()));
    }
    let length = resp
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if req.method() == Method::HEAD {
        let empty = futures_util::stream::empty::<Result<bytes::Bytes, std::io::Error>>();
        return Ok(match length {
            Some(n) => out.body(SizedStream::new(n, empty)),
            None => out.finish(),
        });
    }
    let stream = body::response_stream(resp, front.metrics.bytes_out.clone());
    Ok(match length {
        Some(n) => out.body(SizedStream::new(n, stream)),
        None => out.streaming(stream),
    })
}

/// The index's file name that equals `file` ignoring case (Harbor ≤ 2.1.1 lower-cases URLs).
async fn case_insensitive_file(front: &HarborFront, t: &Target, file: &str) -> Option<ChartFile> {
    let doc = fetch_index(front, t).await.ok()?;
    let entries = doc.get("entries")?.as_object()?;
    entries
        .values()
        .filter_map(Value::as_array)
        .flatten()
        .filter_map(|cv| cv.get("urls")?.as_array()?.first()?.as_str())
        .filter_map(|u| u.rsplit('/').next())
        .find(|f| f.eq_ignore_ascii_case(file) && *f != file)
        .and_then(|f| ChartFile::parse(f).ok())
}

/// The typed `(project, chart, version)` of a version route.
fn chart_version(
    (ns, name, version): (String, String, String),
) -> Result<(Project, ChartName, ChartVersion), OciError> {
    Ok((
        Project::parse(&ns)?,
        ChartName::parse(&name)?,
        ChartVersion::parse(&version)?,
    ))
}
