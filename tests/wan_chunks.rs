//! Harbor 2.9's copy by chunk through the adapter with `wan.stream_chunks` on (issue 24; off by default):
//! `POST`, `PATCH` chunks with `Content-Range` and `Content-Length`, the last chunk in the final
//! `PUT ?digest=` (goharbor/harbor v2.9.5 `src/pkg/registry/client.go` `PushBlobChunk`,
//! `src/controller/replication/transfer/image/transfer.go` `copyBlobByChunk`). The adapter
//! streams the chunks to TCR as one `PATCH`; TCR is the emulator, whose journal shows what
//! reached it.

#[path = "common/mod.rs"]
mod common;
#[path = "harbor/mod.rs"]
mod harbor;
#[path = "wan_support/mod.rs"]
mod wan_support;

use reqwest::Method;
use tcr_adapter::oci::Digest;

use harbor::Env;

/// Chunk size here (Harbor's `REPLICATION_CHUNK_SIZE` is far larger; small so that a test blob
/// has several).
const CHUNK: usize = 16 << 10;

fn layer(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(29) ^ seed)
        .collect()
}

/// Requests with `method` whose target contains `needle` that reached TCR.
fn at_tcr(e: &Env, method: &str, needle: &str) -> usize {
    common::requests_to_tcr(&e.emu, method, needle)
}

fn with_digest(location: &str, d: &Digest) -> String {
    let sep = if location.contains('?') { '&' } else { '?' };
    format!("{location}{sep}digest={}", d.as_str().replace(':', "%3A"))
}

async fn start(e: &Env, repo: &str, tok: &str) -> String {
    let r = e
        .req(
            Method::POST,
            &format!("/v2/{repo}/blobs/uploads/"),
            Some(tok),
            &[("Content-Length", "0")],
            None,
        )
        .await;
    assert_eq!(r.status(), 202, "POST into {repo}");
    common::header(&r, "location")
}

/// One chunk at `start`: `PATCH` (or the final `PUT` with `digest`) with its range.
async fn chunk(
    e: &Env,
    (loc, tok): (&str, &str),
    start: usize,
    data: &[u8],
    last: Option<&Digest>,
) -> reqwest::Response {
    let range = format!("{start}-{}", start + data.len() - 1);
    let len = data.len().to_string();
    let headers = [
        ("Content-Range", range.as_str()),
        ("Content-Length", len.as_str()),
        ("Content-Type", "application/octet-stream"),
    ];
    let (method, url) = match last {
        Some(d) => (Method::PUT, with_digest(loc, d)),
        None => (Method::PATCH, loc.to_string()),
    };
    e.req(method, &url, Some(tok), &headers, Some(data.to_vec()))
        .await
}

async fn error_code(r: reqwest::Response) -> String {
    let v: serde_json::Value = r.json().await.expect("an OCI error body");
    v["errors"][0]["code"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Seven chunks through the adapter reach TCR as one streamed `PATCH` and one `PUT`; every
/// chunk is answered `202` with the range received so far, `GET` on the session says the same
/// with `204`, and the blob reads back byte for byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_upload_reaches_tcr_as_one_patch_and_one_put() {
    let e = streaming().await;
    let repo = "chunks/app";
    let tok = e.token_to_push(&[repo]).await;
    let data = layer(1, 7 * CHUNK - 100);
    let d = Digest::sha256_of(&data);
    let mut loc = start(&e, repo, &tok).await;
    let parts: Vec<&[u8]> = data.chunks(CHUNK).collect();
    let mut at = 0;
    for (i, part) in parts.iter().enumerate() {
        if i + 1 == parts.len() {
            let status = e.get(&loc, &tok).await;
            assert_eq!(status.status(), 204, "GET on the session");
            assert_eq!(common::header(&status, "range"), format!("0-{}", at - 1));
            let r = chunk(&e, (&loc, &tok), at, part, Some(&d)).await;
            assert_eq!(r.status(), 201, "the final PUT");
            assert_eq!(common::header(&r, "docker-content-digest"), d.as_str());
            break;
        }
        let r = chunk(&e, (&loc, &tok), at, part, None).await;
        assert_eq!(r.status(), 202, "chunk {i}");
        at += part.len();
        assert_eq!(common::header(&r, "range"), format!("0-{}", at - 1));
        loc = common::header(&r, "location");
    }
    assert_eq!(
        at_tcr(&e, "PATCH", "/v2/chunks/app/"),
        1,
        "one PATCH to TCR"
    );
    assert_eq!(at_tcr(&e, "PUT", "/v2/chunks/app/"), 1, "one PUT to TCR");
    let r = e.get(&format!("/v2/{repo}/blobs/{d}"), &tok).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().as_ref(), &data[..]);
}

/// A chunk that does not start where the received bytes end is `416 RANGE_INVALID` with the
/// range received; the upload goes on from there and completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunk_out_of_order_is_416_and_the_upload_goes_on() {
    let e = streaming().await;
    let repo = "chunks/order";
    let tok = e.token_to_push(&[repo]).await;
    let data = layer(2, 3 * CHUNK);
    let d = Digest::sha256_of(&data);
    let loc = start(&e, repo, &tok).await;
    let r = chunk(&e, (&loc, &tok), 0, &data[..CHUNK], None).await;
    assert_eq!(r.status(), 202);
    let loc = common::header(&r, "location");
    let skipped = chunk(&e, (&loc, &tok), 2 * CHUNK, &data[2 * CHUNK..], None).await;
    assert_eq!(skipped.status(), 416, "a chunk past the end");
    assert_eq!(
        common::header(&skipped, "range"),
        format!("0-{}", CHUNK - 1)
    );
    assert_eq!(error_code(skipped).await, "RANGE_INVALID");
    let again = chunk(&e, (&loc, &tok), 0, &data[..CHUNK], None).await;
    assert_eq!(again.status(), 416, "an overlapping chunk");
    let r = chunk(&e, (&loc, &tok), CHUNK, &data[CHUNK..2 * CHUNK], None).await;
    assert_eq!(r.status(), 202);
    let loc = common::header(&r, "location");
    let r = chunk(&e, (&loc, &tok), 2 * CHUNK, &data[2 * CHUNK..], Some(&d)).await;
    assert_eq!(
        r.status(),
        201,
        "the upload completes after the refused chunks"
    );
    let r = e.get(&format!("/v2/{repo}/blobs/{d}"), &tok).await;
    assert_eq!(r.bytes().await.unwrap().as_ref(), &data[..]);
}

/// TCR breaks the stream off (here: its body limit, below the blob, above every chunk): the
/// client is told with an OCI error, never a 500; every later request for the session is `404
/// BLOB_UPLOAD_UNKNOWN`; nothing of the blob is visible; a new upload can start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_failure_mid_stream_fails_the_session() {
    let e = Env::start(
        |ec| ec.faults.max_body_bytes = 3 * CHUNK as u64,
        |c| c.wan.stream_chunks = true,
    )
    .await;
    let repo = "chunks/broken";
    let tok = e.token_to_push(&[repo]).await;
    let data = layer(3, 12 * CHUNK);
    let d = Digest::sha256_of(&data);
    let mut loc = start(&e, repo, &tok).await;
    let mut refused = None;
    for (i, part) in data.chunks(CHUNK).enumerate() {
        let last = (i + 1) * CHUNK >= data.len();
        let r = chunk(&e, (&loc, &tok), i * CHUNK, part, last.then_some(&d)).await;
        if !r.status().is_success() {
            refused = Some((i, r));
            break;
        }
        loc = common::header(&r, "location");
    }
    let (i, r) = refused.expect("the upload failed somewhere");
    assert!(i >= 3, "chunk {i} failed before TCR's limit was reached");
    assert_eq!(r.status(), 404, "chunk {i}");
    assert_eq!(error_code(r).await, "BLOB_UPLOAD_UNKNOWN");
    let status = e.get(&loc, &tok).await;
    assert_eq!(status.status(), 404, "GET on the failed session");
    assert_eq!(error_code(status).await, "BLOB_UPLOAD_UNKNOWN");
    let put = chunk(&e, (&loc, &tok), (i + 1) * CHUNK, &data[..1], Some(&d)).await;
    assert_eq!(put.status(), 404, "the final PUT of the failed session");
    let head = e.head(&format!("/v2/{repo}/blobs/{d}"), &tok).await;
    assert_eq!(head.status(), 404, "nothing of the blob is visible");
    start(&e, repo, &tok).await;
}

/// Dedup's mount at the final `PUT` still holds for a streamed upload: a blob another
/// repository has is mounted, the stream is dropped, and the blob's bytes were completed in TCR
/// only once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_upload_of_a_known_blob_is_mounted_at_its_put() {
    let e = streaming().await;
    let (one, two) = ("chunks-a/app", "chunks-b/app");
    let tok = e.token_to_push(&[one, two]).await;
    let data = layer(4, 3 * CHUNK);
    let d = Digest::sha256_of(&data);
    let loc = start(&e, one, &tok).await;
    let r = e
        .req(
            Method::PUT,
            &with_digest(&loc, &d),
            Some(&tok),
            &[],
            Some(data.clone()),
        )
        .await;
    assert_eq!(r.status(), 201);
    let loc = start(&e, two, &tok).await;
    let r = chunk(&e, (&loc, &tok), 0, &data[..CHUNK], None).await;
    assert_eq!(r.status(), 202);
    let loc = common::header(&r, "location");
    let r = chunk(&e, (&loc, &tok), CHUNK, &data[CHUNK..], Some(&d)).await;
    assert_eq!(r.status(), 201);
    assert_eq!(at_tcr(&e, "POST", "mount="), 1, "mounted at the PUT");
    assert_eq!(at_tcr(&e, "PUT", "/v2/chunks-b/app/"), 0, "no PUT into two");
    let r = e.get(&format!("/v2/{two}/blobs/{d}"), &tok).await;
    assert_eq!(r.bytes().await.unwrap().as_ref(), &data[..]);
}

/// The digest is TCR's to verify at the final `PUT`: a wrong one is TCR's `DIGEST_INVALID`, and
/// the blob is nowhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_digest_at_the_final_put_is_tcrs_refusal() {
    let e = streaming().await;
    let repo = "chunks/digest";
    let tok = e.token_to_push(&[repo]).await;
    let data = layer(5, 2 * CHUNK + 7);
    let wrong = Digest::sha256_of(b"something else");
    let loc = start(&e, repo, &tok).await;
    let r = chunk(&e, (&loc, &tok), 0, &data[..CHUNK], None).await;
    assert_eq!(r.status(), 202);
    let loc = common::header(&r, "location");
    let r = chunk(&e, (&loc, &tok), CHUNK, &data[CHUNK..], Some(&wrong)).await;
    assert_eq!(r.status(), 400);
    assert_eq!(error_code(r).await, "DIGEST_INVALID");
    let right = Digest::sha256_of(&data);
    for d in [&wrong, &right] {
        let head = e.head(&format!("/v2/{repo}/blobs/{d}"), &tok).await;
        assert_eq!(head.status(), 404, "{d} is not in {repo}");
    }
}

/// Ten Harbor 2.9 jobs at once, 20 ms per TCR request, each copying an image whose 512 KiB base
/// layer (four chunks) is shared: the job that claimed the base streams it, the others wait
/// for that upload (the claim, then the in-flight mark over the stream's end) and mount it, so
/// it crosses once, as one `PATCH`, and every repository reads it back intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_jobs_at_once_stream_a_shared_base_once() {
    let e = Env::start(
        |ec| ec.faults.latency_ms = 20,
        |c| c.wan.stream_chunks = true,
    )
    .await;
    let base = layer(6, 512 << 10);
    let bd = Digest::sha256_of(&base);
    let gen = wan_support::Gen::V2_9 {
        chunk: Some(128 << 10),
    };
    let repos: Vec<String> = (0..10).map(|i| format!("wave{}/app{i}", i % 2)).collect();
    let owns: Vec<Vec<u8>> = (0..10).map(|i| layer(200 + i as u8, 2048)).collect();
    let layers: Vec<[&[u8]; 2]> = owns.iter().map(|own| [&base[..], &own[..]]).collect();
    let jobs = repos
        .iter()
        .zip(&layers)
        .map(|(repo, layers)| wan_support::replicate(&e, gen, repo, layers));
    let uploaded: usize = futures_util::future::join_all(jobs).await.into_iter().sum();
    assert_eq!(
        wan_support::uploads_of(&e, &bd),
        1,
        "the base crossed again"
    );
    assert_eq!(uploaded, 21, "1 base + 10 own layers + 10 configs");
    assert_eq!(at_tcr(&e, "PATCH", "/v2/wave"), 1, "one streamed PATCH");
    for repo in &repos {
        let t = e.keys_token(&[&format!("repository:{repo}:pull")]).await;
        let r = e.get(&format!("/v2/{repo}/blobs/{bd}"), &t).await;
        assert_eq!(r.bytes().await.unwrap().as_ref(), &base[..], "{repo}");
    }
}

/// The adapter with `wan.stream_chunks` on (off by default: a streamed session lives in one
/// process).
async fn streaming() -> Env {
    Env::start(|_| {}, |c| c.wan.stream_chunks = true).await
}
