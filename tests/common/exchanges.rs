//! The exchanges the suite keeps repeating, as one call each: a page's text, a metric summed
//! over its series, an adapter token for a scope, an upload session started, a blob put in one
//! go. They do the protocol; the tests keep their own assertions.

use base64::Engine;
use tcr_adapter::emulator::{EmulatorHandle, TokenKind};

/// `Authorization: Basic …` for `user:pass`.
pub fn basic(user: &str, pass: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
    )
}

/// The body of `GET url` (any status).
pub async fn get_text(url: &str) -> String {
    reqwest::get(url).await.unwrap().text().await.unwrap()
}

/// Sum of the samples of the lines starting with `prefix` that contain every `labels` entry.
pub fn sum_metric(text: &str, prefix: &str, labels: &[&str]) -> u64 {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter(|l| labels.iter().all(|x| l.contains(x)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// `tcr_emulator_registry_requests_total` of the emulator's data plane, summed over the series
/// carrying all `labels`.
pub async fn registry_requests(emu: &EmulatorHandle, labels: &[&str]) -> u64 {
    let text = get_text(&format!("{}/metrics", emu.registry_url())).await;
    sum_metric(&text, "tcr_emulator_registry_requests_total{", labels)
}

/// `tcr_emulator_api_calls_total` of the emulator's cloud API, summed over the series carrying
/// all `labels`.
pub async fn api_calls(emu: &EmulatorHandle, labels: &[&str]) -> u64 {
    let text = get_text(&format!("{}/metrics", emu.api_url())).await;
    sum_metric(&text, "tcr_emulator_api_calls_total{", labels)
}

/// A long-term instance token of the demo account, as `(username, password)`.
pub fn instance_credentials(emu: &EmulatorHandle) -> (String, String) {
    let tok = emu.state.tokens.issue(super::DEMO_UIN, TokenKind::LongTerm);
    (tok.username, tok.token)
}

/// `GET <base>/service/token?service=tcr-adapter&scope=<scope>` with Basic `user:pass`: the
/// token (the answer must be 200).
pub async fn token_as(
    http: &reqwest::Client,
    base: &str,
    user: &str,
    pass: &str,
    scope: &str,
) -> String {
    let r = http
        .get(format!(
            "{base}/service/token?service=tcr-adapter&scope={scope}"
        ))
        .header("Authorization", basic(user, pass))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "token for {scope}");
    r.json::<serde_json::Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string()
}

/// An adapter token for `scope` with the demo API keys.
pub async fn token(base: &str, scope: &str) -> String {
    token_as(
        &reqwest::Client::new(),
        base,
        super::DEMO_SECRET_ID,
        super::DEMO_SECRET_KEY,
        scope,
    )
    .await
}

/// `Location` made absolute against `base`.
pub fn absolute(base: &str, location: &str) -> String {
    if location.starts_with('/') {
        format!("{base}{location}")
    } else {
        location.to_string()
    }
}

/// `<location>?digest=` (or `&digest=`).
pub fn with_digest(location: &str, digest: &str) -> String {
    let sep = if location.contains('?') { '&' } else { '?' };
    format!("{location}{sep}digest={digest}")
}

/// `POST /v2/<repo>/blobs/uploads/` as Harbor sends it (empty body): 202, the session's URL
/// (absolute).
pub async fn start_upload(http: &reqwest::Client, base: &str, repo: &str, tok: &str) -> String {
    let r = http
        .post(format!("{base}/v2/{repo}/blobs/uploads/"))
        .bearer_auth(tok)
        .header("Content-Length", "0")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202, "upload start in {repo}");
    absolute(base, r.headers()["location"].to_str().unwrap())
}

/// An mpsc receiver as a request body `Stream` (no tokio-stream dependency): the test sends the
/// chunks, and decides when the body ends (drop the sender) or is cut.
pub fn stream_of<T>(
    mut rx: tokio::sync::mpsc::Receiver<Result<T, std::io::Error>>,
) -> impl futures_util::Stream<Item = Result<T, std::io::Error>> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// A response header as a `String` (the header must be there).
pub fn header(r: &reqwest::Response, name: &str) -> String {
    r.headers()[name].to_str().unwrap().to_string()
}

/// The names of the emulator's namespaces, in its own order.
pub fn namespace_names(emu: &EmulatorHandle) -> Vec<String> {
    emu.state
        .namespaces
        .list()
        .into_iter()
        .map(|n| n.name)
        .collect()
}

/// `tests/python/helm_repo.py <repo_url> <user> <pass> <chart> <version> <dest>`: a real Helm
/// client (repository add + index + pull). The client must succeed; its JSON report (`entries`,
/// `digest`, `file`) for the test to check.
pub async fn helm_pull(
    repo_url: &str,
    user: &str,
    pass: &str,
    chart: &str,
    version: &str,
    dest: &std::path::Path,
) -> serde_json::Value {
    let out = tokio::process::Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/python/helm_repo.py"
        ))
        .arg(repo_url)
        .args([user, pass, chart, version])
        .arg(dest)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "helm client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A real Helm client ([`helm_pull`]) pulls `<chart>-<version>` from `repo_url` as `user:pass`
/// and gets `archive`: the index lists exactly that version, its digest is the archive's SHA-256,
/// and the pulled file holds the archive's bytes.
pub async fn assert_helm_pulls(
    repo_url: &str,
    (user, pass): (&str, &str),
    (chart, version): (&str, &str),
    archive: &[u8],
) {
    let dest = tempfile::tempdir().unwrap();
    let report = helm_pull(repo_url, user, pass, chart, version, dest.path()).await;
    assert_eq!(report["entries"][chart], serde_json::json!([version]));
    let digest = super::charts::sha256_hex(archive);
    assert_eq!(report["digest"], format!("sha256:{digest}"));
    let pulled = std::fs::read(report["file"].as_str().unwrap()).unwrap();
    assert!(pulled == archive, "{user}: helm pull gets the pushed bytes");
}

/// `GET /chartrepo/<ns>/charts/<file>` on the emulator (TCR itself) with a temporary instance
/// token: the response.
pub async fn tcr_chart_file(
    http: &reqwest::Client,
    emu: &EmulatorHandle,
    ns: &str,
    file: &str,
) -> reqwest::Response {
    let tok = emu.state.tokens.issue(super::DEMO_UIN, TokenKind::Temp);
    let url = format!("{}/chartrepo/{ns}/charts/{file}", emu.registry_url());
    http.get(url)
        .header("Authorization", basic(&tok.username, &tok.token))
        .send_ok()
        .await
}

/// The sending end of a streamed request body.
pub type BodySender = tokio::sync::mpsc::Sender<Result<Vec<u8>, std::io::Error>>;
/// A request in flight: its status, or the error when its body was cut.
pub type PatchTask = tokio::task::JoinHandle<reqwest::Result<reqwest::StatusCode>>;

/// A PATCH to `loc` whose body the test streams: send chunks on the returned sender, drop it to
/// end the body; the task answers with the status (or the error when the body was cut).
pub fn streaming_patch(http: &reqwest::Client, loc: &str, tok: &str) -> (BodySender, PatchTask) {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
    let (http, loc, tok) = (http.clone(), loc.to_string(), tok.to_string());
    let task = tokio::spawn(async move {
        let body = reqwest::Body::wrap_stream(stream_of(rx));
        http.patch(&loc)
            .bearer_auth(&tok)
            .body(body)
            .send()
            .await
            .map(|r| r.status())
    });
    (tx, task)
}

/// `POST /v2/<repo>/blobs/uploads/` (must answer 202) then a monolithic `PUT ?digest=` of
/// `data`, without credentials (a registry without auth): the PUT's response.
pub async fn upload_blob(
    http: &reqwest::Client,
    base: &str,
    repo: &str,
    data: &[u8],
    digest: &str,
) -> reqwest::Response {
    let r = http
        .post(format!("{base}/v2/{repo}/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202, "upload start in {repo}");
    let loc = absolute(base, &header(&r, "location"));
    http.put(with_digest(&loc, digest))
        .header("content-type", "application/octet-stream")
        .body(data.to_vec())
        .send()
        .await
        .unwrap()
}

/// `request.send_ok().await`: send, and the request must get an answer (any status; a transport
/// error fails the test). What `send().await.unwrap()` says, in one step.
pub trait SendOk {
    fn send_ok(self) -> impl std::future::Future<Output = reqwest::Response>;
}

impl SendOk for reqwest::RequestBuilder {
    async fn send_ok(self) -> reqwest::Response {
        self.send().await.unwrap()
    }
}

/// The string field `field` of every element of the JSON array `v` (each must have it).
pub fn strs<'a>(v: &'a serde_json::Value, field: &str) -> Vec<&'a str> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x[field].as_str().unwrap())
        .collect()
}

/// Upload requests that reached TCR (the emulator's journal) for `digest`: monolithic, or the
/// final chunk of a chunked upload.
pub fn uploads_into_tcr(emu: &EmulatorHandle, digest: &tcr_adapter::oci::Digest) -> usize {
    let raw = digest.as_str().to_string();
    let encoded = raw.replace(':', "%3A");
    emu.state
        .journal
        .entries()
        .iter()
        .filter(|j| j.method == "PUT" || j.method == "POST")
        .filter(|j| {
            j.target.contains(&format!("digest={raw}"))
                || j.target.contains(&format!("digest={encoded}"))
        })
        .count()
}

/// Requests with `method` whose target contains `needle` that reached TCR.
pub fn requests_to_tcr(emu: &EmulatorHandle, method: &str, needle: &str) -> usize {
    emu.state
        .journal
        .entries()
        .iter()
        .filter(|j| j.method == method && j.target.contains(needle))
        .count()
}

/// Mounts of `digest` into `repo` that reached TCR.
pub fn mounts_into_tcr(
    emu: &EmulatorHandle,
    repo: &str,
    digest: &tcr_adapter::oci::Digest,
) -> usize {
    let prefix = format!("/v2/{repo}/blobs/uploads/?mount=");
    let (raw, encoded) = (digest.as_str(), digest.as_str().replace(':', "%3A"));
    emu.state
        .journal
        .entries()
        .iter()
        .filter(|j| j.method == "POST" && j.target.starts_with(&prefix))
        .filter(|j| j.target.contains(&encoded) || j.target.contains(raw))
        .count()
}

/// `repo:tag` is in TCR with every blob its (OCI or Docker) manifest references, each read back
/// straight from the emulator by digest; how many blobs.
pub async fn assert_image_in_tcr(emu: &EmulatorHandle, repo: &str, tag: &str) -> usize {
    let (user, pass) = instance_credentials(emu);
    let http = reqwest::Client::new();
    let tok: serde_json::Value = http
        .get(format!(
            "{}/service/token?service=harbor-registry&scope=repository:{repo}:pull",
            emu.registry_url()
        ))
        .header("Authorization", basic(&user, &pass))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let tok = tok["token"].as_str().unwrap().to_string();
    let get = |path: String| {
        http.get(format!("{}{path}", emu.registry_url()))
            .bearer_auth(&tok)
            .header("Accept", "application/vnd.oci.image.manifest.v1+json")
            .header(
                "Accept",
                "application/vnd.docker.distribution.manifest.v2+json",
            )
            .send()
    };
    let r = get(format!("/v2/{repo}/manifests/{tag}")).await.unwrap();
    assert_eq!(r.status(), 200, "{repo}:{tag} is in TCR");
    let m: serde_json::Value = r.json().await.unwrap();
    let mut digests = vec![m["config"]["digest"].as_str().unwrap().to_string()];
    for l in m["layers"].as_array().unwrap() {
        digests.push(l["digest"].as_str().unwrap().to_string());
    }
    for d in &digests {
        let body = get(format!("/v2/{repo}/blobs/{d}")).await.unwrap();
        assert_eq!(body.status(), 200, "{repo}: {d} is in TCR");
        let body = body.bytes().await.unwrap();
        assert_eq!(
            tcr_adapter::oci::Digest::sha256_of(&body).as_str(),
            d.as_str(),
            "{repo}: {d} reads back"
        );
    }
    digests.len()
}
