//! Faults the adapter must absorb rather than pass on (issue: reliability): the emulator answers
//! a share of data-plane requests (token realm included) with 503 and throttles the cloud API,
//! while clients that never retry — skopeo with `--retry-times 0`, Harbor 1.8.0 — push into new
//! namespaces. Everything pushed must pull back with identical digests, and `/metrics` must show
//! the retries that made it so.

#[path = "../common/mod.rs"]
mod common;
#[path = "../harbor/mod.rs"]
mod harbor;
#[path = "../oci_layout/mod.rs"]
mod oci_layout;
#[path = "../wan_support/mod.rs"]
mod wan_support;

mod balanced;
mod clients;
mod fleet;
mod lifecycle;
mod tokens;

use harbor::Env;

/// A push token for `repo` from the adapter at `base` and an upload session started there: the
/// token and the session's Location.
pub async fn push_session(http: &reqwest::Client, base: &str, repo: &str) -> (String, String) {
    let tok = common::token(base, &format!("repository:{repo}:pull,push")).await;
    let loc = common::start_upload(http, base, repo, &tok).await;
    (tok, loc)
}

/// Send a PATCH of an upload session: it must be accepted (202); the session's next Location.
pub async fn patch_accepted(patch: reqwest::RequestBuilder) -> String {
    use crate::common::SendOk;
    let r = patch.send_ok().await;
    assert_eq!(r.status(), 202);
    crate::common::header(&r, "location")
}

/// The interrupted upload resumed at `loc` completes: a PUT `?digest=` of `blob[done..]`
/// answers 201, and TCR (the emulator) then stores all of `blob` under `digest`.
pub async fn assert_upload_completes(
    emu: &tcr_adapter::emulator::EmulatorHandle,
    (loc, tok): (&str, &str),
    blob: &[u8],
    done: usize,
    digest: &tcr_adapter::oci::Digest,
) {
    use crate::common::SendOk;
    let sep = if loc.contains('?') { '&' } else { '?' };
    let r = reqwest::Client::new()
        .put(format!("{loc}{sep}digest={digest}"))
        .bearer_auth(tok)
        .body(blob[done..].to_vec())
        .send_ok()
        .await;
    assert_eq!(r.status(), 201, "{:?}", r.text().await);
    assert_eq!(
        emu.state.storage.stored_size(digest).await,
        Some(blob.len() as u64)
    );
}

/// One row of RELIABILITY.md: appended as a JSON line to `$TCR_RELIABILITY_LOG` when it is set
/// (scripts/reliability.sh sets it and renders the file).
pub fn record(fault: &str, injected: &str, client_saw: &str, verified: &str) {
    let Ok(path) = std::env::var("TCR_RELIABILITY_LOG") else {
        return;
    };
    let line = serde_json::json!({
        "fault": fault, "injected": injected, "client_saw": client_saw, "verified": verified,
    });
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("reliability log opens");
    writeln!(f, "{line}").expect("reliability log written");
}

/// 503s the emulator answered so far (its own count).
pub async fn injected_503s(e: &Env) -> u64 {
    common::registry_requests(&e.emu, &[r#"status="503""#]).await
}

/// The share of 503s: 0.1 as the issue's target, `TCR_FAULT_5XX_RATIO` to measure others.
fn faulty(default_ratio: f64) -> impl FnOnce(&mut tcr_adapter::config::EmulatorConfig) {
    let ratio = std::env::var("TCR_FAULT_5XX_RATIO")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default_ratio);
    move |c| {
        c.faults.registry_5xx_ratio = ratio;
        c.faults.api_qps_limit = 2;
    }
}

/// Sum of `tcr_adapter_upstream_retries_total` over every cause.
async fn retries(e: &Env) -> u64 {
    harbor::sum_metric(
        &e.adapter_metrics().await,
        "tcr_adapter_upstream_retries_total{",
        &[],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skopeo_without_retries_pushes_through_5xx_and_throttling() {
    common::require_tool("skopeo");
    let e = Env::start(faulty(0.1), |_| {}).await;
    let ratio = e.emu.state.cfg.faults.registry_5xx_ratio;
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("layout");
    let mut layout = oci_layout::Layout::new(&src);
    let mut digests = Vec::new();
    for i in 0..10u64 {
        digests.push(layout.tag_image(&format!("img{i}"), 100 + i));
    }
    layout.finish();
    let host = e.base.trim_start_matches("http://").to_string();
    let keys = format!("{}:{}", common::DEMO_SECRET_ID, common::DEMO_SECRET_KEY);
    for (i, digest) in digests.iter().enumerate() {
        let dest = format!("{host}/faulty-{i}/app:v1");
        common::skopeo(&[
            "copy",
            "--retry-times",
            "0",
            "--preserve-digests",
            "--dest-tls-verify=false",
            "--dest-creds",
            &keys,
            &format!("oci:{}:img{i}", src.display()),
            &format!("docker://{dest}"),
        ])
        .await;
        let raw = common::skopeo(&[
            "inspect",
            "--raw",
            "--retry-times",
            "0",
            "--tls-verify=false",
            "--creds",
            &keys,
            &format!("docker://{dest}"),
        ])
        .await;
        let got = tcr_adapter::oci::Digest::sha256_of(raw.as_bytes());
        assert_eq!(&got, digest, "{dest} pulls back with the pushed digest");
    }
    assert_eq!(e.namespaces().len(), 10);
    let n = retries(&e).await;
    println!(
        "10 skopeo pushes with {ratio} of requests answered 503 and 2 QPS: {n} upstream retries"
    );
    assert!(
        n > 0,
        "the faults were absorbed by retries, which /metrics shows"
    );
    let injected = injected_503s(&e).await;
    record(
        &format!(
            "data plane 503 on {ratio} of requests (token realm included) + cloud API at 2 QPS"
        ),
        &format!("{injected} × 503"),
        "10 of 10 `skopeo copy --retry-times 0` into 10 new namespaces succeeded",
        &format!("every image pulled back with its digest; 10 namespaces; {n} retries on /metrics"),
    );
    e.adapter.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn harbor_1_8_0_replays_push_through_5xx_and_throttling() {
    let e = Env::start(faulty(0.1), |_| {}).await;
    let ratio = e.emu.state.cfg.faults.registry_5xx_ratio;
    let (user, pass) = (common::DEMO_SECRET_ID, common::DEMO_SECRET_KEY);
    for i in 0..4 {
        // Harbor 1.8.0 never retries a request: every step of the replay asserts its success.
        e.replay_1_8(&format!("h18-{i}/single"), user, pass).await;
        e.replay_2_0(&format!("h18-{i}/multi"), user, pass).await;
    }
    let n = retries(&e).await;
    println!(
        "8 Harbor replays with {ratio} of requests answered 503 and 2 QPS: {n} upstream retries"
    );
    assert!(n > 0);
    let injected = injected_503s(&e).await;
    record(
        &format!("data plane 503 on {ratio} of requests + cloud API at 2 QPS, Harbor 1.8.0 and 2.0 replays (no retries)"),
        &format!("{injected} × 503"),
        "8 of 8 replays (4 single images with chunked blobs, 4 multi-arch indexes) succeeded",
        &format!("every step's status as Harbor checks it; HEAD of each manifest 200; {n} retries"),
    );
    e.adapter.stop().await;
}
