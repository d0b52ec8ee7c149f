//! `POST /api/chartrepo/{ns}/charts`: a chart upload (Harbor's `UploadChart`, `helm cm-push`),
//! streamed to TCR's chart repository — never held whole: Harbor sends a 200 MiB chart in one
//! request. Before anything reaches TCR the adapter reads the first [`PEEK_LIMIT`] bytes: a chart
//! part that is not gzip is a 400 with a clear reason (Harbor 1.8 uploads error pages as charts,
//! goharbor/harbor#8131), and the `Chart.yaml` that Helm writes first names the version, so an
//! existing copy in TCR is removed first: a re-upload succeeds whatever TCR does on duplicates
//! (Harbor's own ChartMuseum runs with `ALLOW_OVERWRITE=true`; Harbor only posts a chart that is
//! absent or when the rule's `override` is set). The namespace is ensured first, as for images.

use std::io::Read;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use reqwest::header::{HeaderMap, HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};

use super::caller::{self, Anonymous};
use super::charts::{chart_error_message, failure};
use super::HarborFront;
use crate::oci::{ErrorCode, OciError};
use crate::registry::body::{bridge_after, drive, read_limited};
use crate::upstream::{BasicAuth, ForwardBody};

/// Bytes of the request read before forwarding (enough for multipart headers and `Chart.yaml`).
pub const PEEK_LIMIT: usize = 1 << 20;

/// A chart version named by its `Chart.yaml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChartRef {
    pub name: String,
    pub version: String,
}

/// What the first bytes of an upload say.
#[derive(Debug, PartialEq)]
pub enum Peeked {
    /// A gzip chart whose `Chart.yaml` was read.
    Chart(ChartRef),
    /// Not decided within the prefix (the chart part or `Chart.yaml` lies further on).
    Unknown,
}

/// `POST /api/chartrepo/{ns}/charts`.
pub async fn upload(
    req: HttpRequest,
    payload: web::Payload,
    path: web::Path<String>,
    front: web::Data<HarborFront>,
) -> Result<HttpResponse, OciError> {
    let ns = path.into_inner();
    let identity = caller::identify(&req, &front, Anonymous::Refused).await?;
    let upstream_ns = front.namespaces.name_to_upstream(&ns);
    front
        .namespaces
        .ensure(&upstream_ns, caller::api_keys(&identity, &front))
        .await?;
    let credential = caller::upstream_basic(&identity);
    let (prefix, complete, payload) = read_prefix(payload, &front).await?;
    let peeked = peek(content_type(&req).as_deref(), &prefix, complete)?;
    if let Peeked::Chart(chart) = &peeked {
        make_room(&front, &upstream_ns, chart, credential.as_ref()).await;
    }
    let (body, pump) = bridge_after(prefix, payload, front.metrics.bytes_in.clone());
    let upload_path = format!("/api/chartrepo/{upstream_ns}/charts");
    let send = front.upstream.send_basic(
        reqwest::Method::POST,
        &upload_path,
        forwarded_headers(&req),
        ForwardBody::Stream(body),
        credential.as_ref(),
        "chart_api",
    );
    let resp = drive(send, pump).await?;
    answer(resp, &front, &identity, &ns, &peeked).await
}

fn content_type(req: &HttpRequest) -> Option<String> {
    req.headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// `Content-Type` (with its boundary) and `Content-Length` go upstream as the client sent them.
fn forwarded_headers(req: &HttpRequest) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (name, key) in [
        ("content-type", CONTENT_TYPE),
        ("content-length", CONTENT_LENGTH),
    ] {
        if let Some(v) = req
            .headers()
            .get(name)
            .and_then(|v| HeaderValue::from_bytes(v.as_bytes()).ok())
        {
            h.insert(key, v);
        }
    }
    h
}

/// Read up to [`PEEK_LIMIT`] bytes; `complete` when that was the whole body.
async fn read_prefix(
    mut payload: web::Payload,
    front: &HarborFront,
) -> Result<(Bytes, bool, web::Payload), OciError> {
    let mut buf = BytesMut::new();
    while buf.len() < PEEK_LIMIT {
        match payload.next().await {
            Some(Ok(chunk)) => {
                front.metrics.bytes_in.inc_by(chunk.len() as u64);
                buf.extend_from_slice(&chunk);
            }
            Some(Err(e)) => {
                return Err(OciError::new(
                    ErrorCode::BlobUploadInvalid,
                    format!("reading the upload: {e}"),
                )
                .with_status(StatusCode::BAD_REQUEST))
            }
            None => return Ok((buf.freeze(), true, payload)),
        }
    }
    Ok((buf.freeze(), false, payload))
}

/// Check the chart in the prefix: a part that is not gzip is refused.
pub fn peek(content_type: Option<&str>, prefix: &[u8], complete: bool) -> Result<Peeked, OciError> {
    let archive =
        match multipart_boundary(content_type) {
            Some(boundary) => match chart_part(prefix, &boundary) {
                Some(a) => a,
                None if complete => return Err(bad_chart(
                    "no chart in the request: send the archive in a multipart part named \"chart\"",
                )),
                None => return Ok(Peeked::Unknown),
            },
            None => prefix,
        };
    if archive.len() < 2 {
        return match complete {
            true => Err(bad_chart("the chart archive is empty")),
            false => Ok(Peeked::Unknown),
        };
    }
    if archive[..2] != [0x1f, 0x8b] {
        let start =
            String::from_utf8_lossy(&archive[..archive.len().min(60)]).replace(['\r', '\n'], " ");
        return Err(bad_chart(&format!(
            "gzip: invalid header: the uploaded chart is not a gzip-compressed Helm archive (.tgz); \
             it starts with {start:?} — was an error page uploaded as the chart?"
        )));
    }
    Ok(chart_yaml(archive).map_or(Peeked::Unknown, Peeked::Chart))
}

fn bad_chart(message: &str) -> OciError {
    OciError::new(ErrorCode::BlobUploadInvalid, message).with_status(StatusCode::BAD_REQUEST)
}

fn multipart_boundary(content_type: Option<&str>) -> Option<String> {
    let ct = content_type?;
    if !ct.to_ascii_lowercase().starts_with("multipart/form-data") {
        return None;
    }
    ct.split(';').find_map(|p| {
        let (k, v) = p.trim().split_once('=')?;
        k.eq_ignore_ascii_case("boundary")
            .then(|| v.trim_matches('"').to_string())
    })
}

/// The (possibly cut) content of the part named `chart` within `body`.
fn chart_part<'a>(body: &'a [u8], boundary: &str) -> Option<&'a [u8]> {
    let delim = format!("--{boundary}");
    let mut at = find(body, delim.as_bytes())?;
    loop {
        let headers_start = at + delim.len();
        let headers_end = headers_start + find(&body[headers_start..], b"\r\n\r\n")?;
        let headers =
            String::from_utf8_lossy(&body[headers_start..headers_end]).to_ascii_lowercase();
        let data_start = headers_end + 4;
        let next =
            find(&body[data_start..], format!("\r\n{delim}").as_bytes()).map(|i| data_start + i);
        if headers.contains("name=\"chart\"") {
            return Some(&body[data_start..next.unwrap_or(body.len())]);
        }
        at = next? + 2;
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// `name` and `version` of the first `<dir>/Chart.yaml` in a (possibly cut) gzip tar.
fn chart_yaml(archive: &[u8]) -> Option<ChartRef> {
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(archive));
    for entry in tar.entries().ok()? {
        let entry = entry.ok()?;
        let path = entry.path().ok()?.to_string_lossy().into_owned();
        let parts: Vec<&str> = path.trim_start_matches("./").split('/').collect();
        if parts.len() != 2 || parts[1] != "Chart.yaml" {
            continue;
        }
        let mut text = String::new();
        entry.take(1 << 20).read_to_string(&mut text).ok()?;
        let v: serde_json::Value = serde_yaml::from_str(&text).ok()?;
        let field = |k: &str| match &v[k] {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Number(n) => Some(n.to_string()),
            _ => None,
        };
        let (name, version) = (field("name")?, field("version")?);
        let safe =
            |s: &str| !s.is_empty() && !s.contains(['/', '?', '#', '%']) && !s.starts_with('.');
        return (safe(&name) && safe(&version)).then_some(ChartRef { name, version });
    }
    None
}

/// Remove TCR's copy of `chart` when it has one, so the upload replaces it.
async fn make_room(
    front: &HarborFront,
    ns: &str,
    chart: &ChartRef,
    credential: Option<&BasicAuth>,
) {
    let path = format!(
        "/api/chartrepo/{ns}/charts/{}/{}",
        chart.name, chart.version
    );
    let send = |m| {
        front.upstream.send_basic(
            m,
            &path,
            HeaderMap::new(),
            ForwardBody::Empty,
            credential,
            "chart_api",
        )
    };
    let exists = matches!(send(reqwest::Method::GET).await, Ok(r) if r.status().is_success());
    if !exists {
        return;
    }
    match send(reqwest::Method::DELETE).await {
        Ok(r) if r.status().is_success() => tracing::info!(
            namespace = ns, chart = %chart.name, version = %chart.version,
            "chart version already in TCR: replaced by the upload"
        ),
        Ok(r) => {
            tracing::warn!(namespace = ns, chart = %chart.name, status = %r.status(), "could not remove the existing chart version")
        }
        Err(e) => {
            tracing::warn!(namespace = ns, chart = %chart.name, error = %e, "could not remove the existing chart version")
        }
    }
}

/// TCR's answer as the client's: 201 `{"saved": true}`, or the error.
async fn answer(
    resp: reqwest::Response,
    front: &HarborFront,
    identity: &crate::credentials::ClientIdentity,
    ns: &str,
    peeked: &Peeked,
) -> Result<HttpResponse, OciError> {
    let status = resp.status();
    if status.is_success() {
        tracing::info!(namespace = ns, chart = ?peeked, "chart uploaded");
        return Ok(HttpResponse::Created().json(serde_json::json!({"saved": true})));
    }
    if status == reqwest::StatusCode::CONFLICT || status == reqwest::StatusCode::BAD_REQUEST {
        let bytes = read_limited(resp, 64 * 1024).await.unwrap_or_default();
        let msg = chart_error_message(&bytes);
        let st = StatusCode::from_u16(status.as_u16()).unwrap_or(StatusCode::BAD_REQUEST);
        return Err(OciError::new(
            ErrorCode::Denied,
            format!("TCR's chart repository refused the chart: {msg}"),
        )
        .with_status(st));
    }
    let t = super::charts::Target::for_identity(front, identity, ns);
    Err(failure(resp, &t, false, &format!("chart repository of {ns}")).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chart(name: &str, version: &str) -> Vec<u8> {
        use std::io::Write;
        let mut t = tar::Builder::new(Vec::new());
        let y = format!("apiVersion: v2\nname: {name}\nversion: {version}\n");
        let mut h = tar::Header::new_gnu();
        h.set_size(y.len() as u64);
        h.set_cksum();
        t.append_data(&mut h, format!("{name}/Chart.yaml"), y.as_bytes())
            .unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&t.into_inner().unwrap()).unwrap();
        gz.finish().unwrap()
    }

    fn multipart(part: &str, data: &[u8]) -> Vec<u8> {
        let mut b = format!("--XyZ\r\nContent-Disposition: form-data; name=\"{part}\"; filename=\"c.tgz\"\r\nContent-Type: application/octet-stream\r\n\r\n").into_bytes();
        b.extend_from_slice(data);
        b.extend_from_slice(b"\r\n--XyZ--\r\n");
        b
    }

    const CT: Option<&str> = Some("multipart/form-data; boundary=XyZ");

    #[test]
    fn a_chart_part_names_its_version() {
        let body = multipart("chart", &chart("web", "1.2.3"));
        let want = ChartRef {
            name: "web".into(),
            version: "1.2.3".into(),
        };
        assert_eq!(peek(CT, &body, true).unwrap(), Peeked::Chart(want.clone()));
        assert_eq!(
            peek(
                Some("application/octet-stream"),
                &chart("web", "1.2.3"),
                true
            )
            .unwrap(),
            Peeked::Chart(want)
        );
    }

    #[test]
    fn not_gzip_is_a_400_that_says_so() {
        let body = multipart("chart", b"{\"error\":\"not found\"}");
        let e = peek(CT, &body, true).unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert!(e.message.contains("gzip: invalid header"), "{}", e.message);
        let e = peek(CT, &multipart("file", b"x"), true).unwrap_err();
        assert!(e.message.contains("named \"chart\""), "{}", e.message);
    }

    #[test]
    fn a_cut_prefix_is_undecided_not_refused() {
        let body = multipart("chart", &chart("web", "1.0.0"));
        assert_eq!(peek(CT, &body[..40], false).unwrap(), Peeked::Unknown);
        let gz = chart("web", "1.0.0");
        assert_eq!(peek(None, &gz[..12], false).unwrap(), Peeked::Unknown);
    }
}
