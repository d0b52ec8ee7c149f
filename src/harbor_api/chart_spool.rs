//! A chart upload received whole before anything reaches TCR: the multipart form parsed by
//! `actix-multipart` — the parser the embedded TCR uses, so both read the same part: the first
//! part whose form name is `chart` (quoted or not), and the first `prov` — spooled to temporary
//! files under a size cap, then checked end to end (gzip stream complete with its CRC, every tar
//! entry readable, a `<dir>/Chart.yaml` whose name and version obey the typed rules). What goes
//! upstream is a fresh multipart body streamed from exactly these files: the bytes checked are
//! the bytes sent. A client that disconnects leaves nothing but removed temporary files.

use std::io::Read;
use std::path::{Path, PathBuf};

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use tokio::io::AsyncWriteExt;

use super::names::{ChartName, ChartVersion};
use crate::oci::{ErrorCode, OciError};

/// A chart version named by its `Chart.yaml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChartRef {
    pub name: ChartName,
    pub version: ChartVersion,
}

/// A temporary file removed when dropped (unless [`SpoolFile::keep`] was called).
#[derive(Debug)]
pub struct SpoolFile {
    pub path: PathBuf,
    pub len: u64,
    keep: bool,
}

impl SpoolFile {
    fn new(dir: &Path) -> SpoolFile {
        let name = format!(".tcr-adapter-chart-{}", uuid::Uuid::new_v4().simple());
        SpoolFile {
            path: dir.join(name),
            len: 0,
            keep: false,
        }
    }

    /// Leave the file on disk (a copy that could not be put back must not vanish).
    pub fn keep(&mut self) {
        self.keep = true;
    }
}

impl Drop for SpoolFile {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// The chart archive and its optional provenance file, as received.
#[derive(Debug)]
pub struct Received {
    pub chart: SpoolFile,
    pub prov: Option<SpoolFile>,
}

/// Where uploads are spooled and how large one may be.
#[derive(Clone, Debug)]
pub struct SpoolLimits {
    pub dir: PathBuf,
    pub max_bytes: u64,
}

/// Receive the whole request: the `chart` part (or the bare body) and the `prov` part.
pub async fn receive(
    req: &HttpRequest,
    payload: web::Payload,
    limits: &SpoolLimits,
    counter: &prometheus::IntCounter,
) -> Result<Received, OciError> {
    let declared = req
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limits.max_bytes) {
        return Err(too_large(limits.max_bytes));
    }
    let mut budget = limits.max_bytes;
    if !is_multipart(req) {
        let chart = spool_stream(payload, limits, &mut budget, Some(counter)).await?;
        return Ok(Received { chart, prov: None });
    }
    let mut form = actix_multipart::Multipart::new(req.headers(), payload);
    let (mut chart, mut prov) = (None, None);
    while let Some(field) = form.next().await {
        let field = field.map_err(malformed)?;
        let slot = match field.name() {
            Some("chart") if chart.is_none() => &mut chart,
            Some("prov") if prov.is_none() => &mut prov,
            _ => {
                drain(field, &mut budget, limits.max_bytes, counter).await?;
                continue;
            }
        };
        *slot = Some(spool_stream(field, limits, &mut budget, Some(counter)).await?);
    }
    let chart = chart.ok_or_else(|| {
        bad("no chart in the request: send the archive in a multipart part named \"chart\"")
    })?;
    Ok(Received { chart, prov })
}

fn is_multipart(req: &HttpRequest) -> bool {
    req.headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().starts_with("multipart/form-data"))
}

/// Write a body stream to a new spool file, within `budget` bytes (counted on `counter`).
pub async fn spool_stream<S, E>(
    mut body: S,
    limits: &SpoolLimits,
    budget: &mut u64,
    counter: Option<&prometheus::IntCounter>,
) -> Result<SpoolFile, OciError>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let mut out = SpoolFile::new(&limits.dir);
    let mut file = tokio::fs::File::create(&out.path)
        .await
        .map_err(spool_failed)?;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| bad(&format!("reading the upload: {e}")))?;
        take(budget, chunk.len(), limits.max_bytes)?;
        if let Some(c) = counter {
            c.inc_by(chunk.len() as u64);
        }
        file.write_all(&chunk).await.map_err(spool_failed)?;
        out.len += chunk.len() as u64;
    }
    file.flush().await.map_err(spool_failed)?;
    Ok(out)
}

async fn drain<S, E>(
    mut body: S,
    budget: &mut u64,
    max: u64,
    counter: &prometheus::IntCounter,
) -> Result<(), OciError>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| bad(&format!("reading the upload: {e}")))?;
        take(budget, chunk.len(), max)?;
        counter.inc_by(chunk.len() as u64);
    }
    Ok(())
}

fn take(budget: &mut u64, n: usize, max: u64) -> Result<(), OciError> {
    *budget = budget.checked_sub(n as u64).ok_or_else(|| too_large(max))?;
    Ok(())
}

/// Check a spooled archive end to end (on a blocking thread).
pub async fn inspect(chart: &SpoolFile) -> Result<ChartRef, OciError> {
    let path = chart.path.clone();
    tokio::task::spawn_blocking(move || {
        let file = std::fs::File::open(&path).map_err(spool_failed)?;
        inspect_reader(std::io::BufReader::new(file))
    })
    .await
    .map_err(|e| OciError::new(ErrorCode::Unknown, format!("checking the chart: {e}")))?
}

/// [`inspect`] on bytes (tests and property tests).
pub fn inspect_archive(bytes: &[u8]) -> Result<ChartRef, OciError> {
    inspect_reader(bytes)
}

/// Gzip (complete, CRC checked), tar (every entry read), and the first `<dir>/Chart.yaml`.
fn inspect_reader<R: Read>(mut r: R) -> Result<ChartRef, OciError> {
    let mut magic = [0u8; 2];
    let got = read_up_to(&mut r, &mut magic)?;
    if got < 2 || magic != [0x1f, 0x8b] {
        let start = String::from_utf8_lossy(&magic[..got]).into_owned();
        return Err(bad(&format!(
            "gzip: invalid header: the uploaded chart is not a gzip-compressed Helm archive (.tgz); \
             it starts with {start:?} — was an error page uploaded as the chart?"
        )));
    }
    let gz = flate2::read::GzDecoder::new(std::io::Cursor::new(magic).chain(r));
    let mut tar = tar::Archive::new(gz);
    let mut found: Option<ChartRef> = None;
    for entry in tar.entries().map_err(broken)? {
        let mut entry = entry.map_err(broken)?;
        let path = entry.path().map_err(broken)?.to_string_lossy().into_owned();
        let parts: Vec<&str> = path.trim_start_matches("./").split('/').collect();
        if found.is_none() && parts.len() == 2 && parts[1] == "Chart.yaml" {
            let mut text = String::new();
            (&mut entry)
                .take(1 << 20)
                .read_to_string(&mut text)
                .map_err(broken)?;
            found = Some(chart_yaml(&text)?);
        }
        std::io::copy(&mut entry, &mut std::io::sink()).map_err(broken)?;
    }
    // The rest of the gzip stream: its end carries the CRC that proves the archive complete.
    std::io::copy(&mut tar.into_inner(), &mut std::io::sink()).map_err(broken)?;
    found.ok_or_else(|| bad("the archive has no <chart>/Chart.yaml: is it a Helm chart?"))
}

fn read_up_to<R: Read>(r: &mut R, buf: &mut [u8]) -> Result<usize, OciError> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]).map_err(broken)? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

fn chart_yaml(text: &str) -> Result<ChartRef, OciError> {
    let v: serde_json::Value = serde_yaml::from_str(text)
        .map_err(|e| bad(&format!("Chart.yaml is not valid YAML: {e}")))?;
    let field = |k: &str| match &v[k] {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    let name = field("name").ok_or_else(|| bad("Chart.yaml has no name"))?;
    let version = field("version").ok_or_else(|| bad("Chart.yaml has no version"))?;
    Ok(ChartRef {
        name: ChartName::parse(&name)?,
        version: ChartVersion::parse(&version)?,
    })
}

/// The multipart body sent upstream: a `chart` part and an optional `prov` part, streamed
/// from the spooled files, with its exact length.
pub struct UpstreamForm {
    pub content_type: String,
    pub length: u64,
    pub body: reqwest::Body,
}

pub async fn upstream_form(
    chart: &SpoolFile,
    prov: Option<&SpoolFile>,
    file_name: &str,
) -> Result<UpstreamForm, OciError> {
    let boundary = format!("tcr-adapter-{}", uuid::Uuid::new_v4().simple());
    let head = |name: &str, file: &str| {
        Bytes::from(format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; \
             filename=\"{file}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
        ))
    };
    let mut pieces: Vec<(Bytes, Option<&SpoolFile>)> =
        vec![(head("chart", file_name), Some(chart))];
    if let Some(p) = prov {
        let prov_name = format!("{file_name}.prov");
        pieces.push((
            Bytes::from(format!("\r\n{}", str_of(&head("prov", &prov_name)))),
            Some(p),
        ));
    }
    pieces.push((Bytes::from(format!("\r\n--{boundary}--\r\n")), None));
    let mut length = 0u64;
    let mut streams = Vec::new();
    for (bytes, file) in pieces {
        length += bytes.len() as u64;
        streams.push(futures_util::stream::once(async move { Ok(bytes) }).boxed());
        if let Some(f) = file {
            length += f.len;
            let handle = tokio::fs::File::open(&f.path).await.map_err(spool_failed)?;
            streams.push(tokio_util::io::ReaderStream::new(handle).boxed());
        }
    }
    Ok(UpstreamForm {
        content_type: format!("multipart/form-data; boundary={boundary}"),
        length,
        body: reqwest::Body::wrap_stream(futures_util::stream::iter(streams).flatten()),
    })
}

fn str_of(b: &Bytes) -> &str {
    std::str::from_utf8(b).unwrap_or_default()
}

fn bad(message: &str) -> OciError {
    OciError::new(ErrorCode::BlobUploadInvalid, message).with_status(StatusCode::BAD_REQUEST)
}

fn broken(e: std::io::Error) -> OciError {
    bad(&format!(
        "the chart archive is not a complete gzip-compressed tar: {e}"
    ))
}

fn malformed(e: actix_multipart::MultipartError) -> OciError {
    bad(&format!("malformed multipart body: {e}"))
}

fn too_large(max: u64) -> OciError {
    OciError::new(
        ErrorCode::SizeInvalid,
        format!("the chart upload exceeds server.max_chart_bytes ({max} bytes)"),
    )
    .with_status(StatusCode::PAYLOAD_TOO_LARGE)
}

fn spool_failed(e: std::io::Error) -> OciError {
    tracing::error!(error = %e, "chart upload: the spool file could not be written or read");
    OciError::new(
        ErrorCode::Unavailable,
        "the adapter could not store the upload temporarily; see its log",
    )
    .with_status(StatusCode::SERVICE_UNAVAILABLE)
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
        t.append_data(&mut h, "c/Chart.yaml", y.as_bytes()).unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&t.into_inner().unwrap()).unwrap();
        gz.finish().unwrap()
    }

    #[test]
    fn a_complete_chart_names_its_version() {
        let c = inspect_archive(&chart("web", "1.2.3")).unwrap();
        assert_eq!((c.name.as_str(), c.version.as_str()), ("web", "1.2.3"));
    }

    #[test]
    fn truncated_or_foreign_archives_are_400() {
        let full = chart("web", "1.2.3");
        for cut in [1, 10, full.len() / 2, full.len() - 4] {
            let e = inspect_archive(&full[..cut]).unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_REQUEST, "cut at {cut}");
        }
        let e = inspect_archive(b"{\"error\":\"x\"}").unwrap_err();
        assert!(e.message.contains("gzip: invalid header"), "{}", e.message);
    }

    #[test]
    fn a_hostile_chart_yaml_is_refused() {
        for (n, v) in [
            ("..\\..\\x", "1.0.0"),
            ("web", "1.0.0/../../x"),
            ("a/b", "1"),
        ] {
            let e = inspect_archive(&chart(n, v)).unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_REQUEST, "{n} {v}");
        }
    }
}
