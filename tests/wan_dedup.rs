//! Layer dedup across a WAN (`wan.dedup`): a base layer shared by ten repositories crosses to TCR
//! once, whatever repository pushes it first; a mount TCR refuses falls back to an ordinary
//! upload; a HEAD for a layer being uploaded right now waits for it and mounts. TCR is the
//! emulator, whose request journal shows what reached it.

#[path = "common/mod.rs"]
mod common;
#[path = "harbor/mod.rs"]
mod harbor;

use reqwest::Method;
use serde_json::json;
use tcr_adapter::oci::Digest;

use harbor::{Env, OCI_MANIFEST};

fn layer(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ seed)
        .collect()
}

/// Upload PUTs that reached TCR for `digest` (monolithic or final chunk).
fn uploads_of(e: &Env, digest: &Digest) -> usize {
    let raw = digest.as_str().to_string();
    let encoded = raw.replace(':', "%3A");
    e.emu
        .state
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

async fn head_blob(
    e: &Env,
    repo: &str,
    d: &Digest,
    token: &str,
) -> (u16, Option<String>, Option<String>) {
    let r = e
        .req(
            Method::HEAD,
            &format!("/v2/{repo}/blobs/{d}"),
            Some(token),
            &[],
            None,
        )
        .await;
    let h = |n: &str| r.headers().get(n).map(|v| v.to_str().unwrap().to_string());
    (
        r.status().as_u16(),
        h("content-length"),
        h("docker-content-digest"),
    )
}

/// What Harbor 2.0 does per blob: HEAD, and POST + PUT only when absent.
async fn harbor_push_blob(e: &Env, repo: &str, token: &str, data: &[u8]) -> bool {
    let d = Digest::sha256_of(data);
    let (s, len, dig) = head_blob(e, repo, &d, token).await;
    if s == 200 {
        assert_eq!(
            len.as_deref(),
            Some(data.len().to_string().as_str()),
            "{repo}"
        );
        assert_eq!(dig.as_deref(), Some(d.as_str()), "{repo}");
        return false;
    }
    assert_eq!(s, 404, "{repo}");
    e.push_blob(repo, token, data, false, true).await;
    true
}

async fn push_image(e: &Env, repo: &str, base: &[u8], own: &[u8]) -> usize {
    let t = e
        .keys_token(&[&format!("repository:{repo}:pull,push")])
        .await;
    let config = json!({"architecture": "amd64", "os": "linux", "repo": repo}).to_string();
    let mut uploaded = 0;
    for blob in [base, own, config.as_bytes()] {
        uploaded += usize::from(harbor_push_blob(e, repo, &t, blob).await);
    }
    let desc = |b: &[u8], mt: &str| json!({"mediaType": mt, "digest": Digest::sha256_of(b).to_string(), "size": b.len()});
    let manifest = json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": desc(config.as_bytes(), "application/vnd.oci.image.config.v1+json"),
        "layers": [desc(base, "application/vnd.oci.image.layer.v1.tar"), desc(own, "application/vnd.oci.image.layer.v1.tar")],
    })
    .to_string();
    e.put_manifest(repo, "v1", &t, OCI_MANIFEST, manifest.as_bytes())
        .await;
    uploaded
}

fn metric(text: &str, line_start: &str) -> u64 {
    text.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .unwrap_or(0.0) as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_base_layer_shared_by_ten_repositories_crosses_once() {
    let e = Env::default().await;
    let base = layer(1, 512 << 10);
    let bd = Digest::sha256_of(&base);
    let mut uploaded = 0;
    for i in 0..10 {
        let repo = format!("proj{}/app{i}", i % 2);
        uploaded += push_image(&e, &repo, &base, &layer(100 + i as u8, 1024)).await;
    }
    assert_eq!(
        uploads_of(&e, &bd),
        1,
        "the base layer was uploaded more than once"
    );
    // 1 base + 10 own layers + 10 configs.
    assert_eq!(uploaded, 21);
    let m = e.adapter_metrics().await;
    assert_eq!(
        metric(&m, "tcr_adapter_dedup_mounts_total{result=\"mounted\"}"),
        9,
        "{m}"
    );
    assert_eq!(
        metric(&m, "tcr_adapter_dedup_bytes_saved_total"),
        9 * base.len() as u64
    );
    // Every repository really has it: pulled back byte for byte.
    for i in [1, 4, 9] {
        let repo = format!("proj{}/app{i}", i % 2);
        let t = e.keys_token(&[&format!("repository:{repo}:pull")]).await;
        let r = e.get(&format!("/v2/{repo}/blobs/{bd}"), &t).await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.bytes().await.unwrap().as_ref(), base.as_slice(), "{repo}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mount_tcr_refuses_falls_back_to_an_upload() {
    let e = Env::default().await;
    let base = layer(2, 64 << 10);
    let bd = Digest::sha256_of(&base);
    push_image(&e, "src/app", &base, &layer(3, 100)).await;
    // The source loses the blob behind the adapter's back: a mount from it is refused.
    let up = e.emu.registry_url();
    let http = reqwest::Client::new();
    let tok = e.tcr_token("repository:src/app:*").await;
    let r = http
        .delete(format!("{up}/v2/src/app/blobs/{bd}"))
        .bearer_auth(tok)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let uploaded = push_image(&e, "dst/app", &base, &layer(4, 100)).await;
    assert_eq!(
        uploaded, 3,
        "the refused mount fell back to uploading everything"
    );
    assert_eq!(uploads_of(&e, &bd), 2);
    let m = e.adapter_metrics().await;
    assert_eq!(
        metric(&m, "tcr_adapter_dedup_mounts_total{result=\"refused\"}"),
        1,
        "{m}"
    );
    assert_eq!(
        metric(&m, "tcr_adapter_dedup_mounts_total{result=\"mounted\"}"),
        0
    );
    // No upload session was left open by the refused mount.
    let leftovers = std::fs::read_dir(e.emu.state.cfg.data_dir.join("registry/uploads"))
        .map_or(0, |d| d.count());
    assert_eq!(leftovers, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_for_a_layer_in_flight_waits_and_mounts() {
    let e = Env::default().await;
    let base = layer(5, 256 << 10);
    let bd = Digest::sha256_of(&base);
    let ta = e.keys_token(&["repository:one/app:pull,push"]).await;
    let tb = e.keys_token(&["repository:two/app:pull,push"]).await;
    // Repository one starts its upload and sends the body slowly.
    let r = e.start_upload("one/app", &ta).await;
    assert_eq!(r.status(), 202);
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    let sep = if loc.contains('?') { '&' } else { '?' };
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
    let body = reqwest::Body::wrap_stream(tokio_stream_from(rx));
    let put = e
        .http
        .put(format!(
            "{loc}{sep}digest={}",
            bd.as_str().replace(':', "%3A")
        ))
        .bearer_auth(&ta)
        .header("Content-Length", base.len())
        .body(body)
        .send();
    let feeder = {
        let base = base.clone();
        async move {
            for c in base.chunks(64 << 10) {
                tokio::time::sleep(std::time::Duration::from_millis(300)).await;
                tx.send(Ok(c.to_vec())).await.unwrap();
            }
        }
    };
    let head = async {
        tokio::time::sleep(std::time::Duration::from_millis(400)).await;
        head_blob(&e, "two/app", &bd, &tb).await
    };
    let (put, (), head) = tokio::join!(put, feeder, head);
    assert_eq!(put.unwrap().status(), 201);
    assert_eq!(head.0, 200, "the HEAD waited for the upload and mounted");
    assert_eq!(head.1.as_deref(), Some(base.len().to_string().as_str()));
    assert_eq!(uploads_of(&e, &bd), 1);
}

fn tokio_stream_from<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures_util::Stream<Item = T> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_jobs_at_once_upload_a_shared_layer_once() {
    let e = Env::default().await;
    let base = layer(6, 1 << 20);
    let bd = Digest::sha256_of(&base);
    let repos: Vec<String> = (0..10).map(|i| format!("wave/app{i}")).collect();
    let owns: Vec<Vec<u8>> = (0..10).map(|i| layer(200 + i as u8, 2048)).collect();
    let jobs = repos
        .iter()
        .zip(&owns)
        .map(|(repo, own)| push_image(&e, repo, &base, own));
    let uploaded: usize = futures_util::future::join_all(jobs).await.into_iter().sum();
    assert_eq!(
        uploads_of(&e, &bd),
        1,
        "ten concurrent jobs uploaded the base layer more than once"
    );
    assert_eq!(uploaded, 21);
    // A re-run finds everything in place at once: no job waits on another's claim.
    let started = std::time::Instant::now();
    let jobs = repos
        .iter()
        .zip(&owns)
        .map(|(repo, own)| push_image(&e, repo, &base, own));
    let again: usize = futures_util::future::join_all(jobs).await.into_iter().sum();
    assert_eq!(again, 0, "a re-run uploaded something");
    let waited = started.elapsed();
    println!("re-run of 10 images took {waited:?}");
    let m = e.adapter_metrics().await;
    assert_eq!(
        metric(&m, "tcr_adapter_dedup_claims_expired_total"),
        0,
        "a HEAD waited on a claim that nothing settled"
    );
}
