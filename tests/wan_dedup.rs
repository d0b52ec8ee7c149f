//! Layer dedup across a WAN (`wan.dedup`): a base layer shared by ten repositories crosses to TCR
//! once, whatever repository pushes it first; a mount TCR refuses falls back to an ordinary
//! upload; a HEAD for a layer being uploaded right now waits for it and mounts. Harbor's side is
//! `wan_support::harbor` (a token per request scope: its blob HEADs are pull-scoped); the claim
//! tests at the end imitate skopeo (one pull,push token). TCR is the emulator, whose request
//! journal shows what reached it.

#[path = "common/mod.rs"]
mod common;
#[path = "harbor/mod.rs"]
mod harbor;
#[path = "wan_support/mod.rs"]
mod wan_support;

use tcr_adapter::oci::Digest;

use harbor::Env;
use wan_support::{head_blob, job, job_head_blob, layer, metric, push_image, uploads_of, Gen};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_base_layer_shared_by_ten_repositories_crosses_once() {
    shared_by_ten(Gen::V2_0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_base_layer_shared_by_ten_repositories_crosses_once_harbor_1_10() {
    shared_by_ten(Gen::V1_10).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_base_layer_shared_by_ten_repositories_crosses_once_harbor_2_9_chunks() {
    // 512 KiB base in 128 KiB chunks; the 1 KiB own layers and the configs go monolithic.
    shared_by_ten(Gen::V2_9 {
        chunk: Some(128 << 10),
    })
    .await;
}

async fn shared_by_ten(gen: Gen) {
    let e = Env::default().await;
    let base = layer(1, 512 << 10);
    let bd = Digest::sha256_of(&base);
    let mut uploaded = 0;
    for i in 0..10 {
        let repo = format!("proj{}/app{i}", i % 2);
        let own = layer(100 + i as u8, 1024);
        uploaded += wan_support::replicate(&e, gen, &repo, &[&base, &own]).await;
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
    // No upload session was left open by the refused mount (nor the one parked at the last
    // blob's PUT, given back in the background once the manifest is pushed).
    let leftovers = || {
        std::fs::read_dir(e.emu.state.cfg.data_dir.join("registry/uploads"))
            .map_or(0, |d| d.count())
    };
    for _ in 0..250 {
        if leftovers() == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(leftovers(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_for_a_layer_in_flight_waits_and_mounts() {
    let e = Env::default().await;
    let base = layer(5, 256 << 10);
    let bd = Digest::sha256_of(&base);
    // Two Harbor 2.0 jobs into one namespace (the second's pull-scoped HEAD may mount once the
    // credential has pushed there: the first job's upload session, which TCR opened). The
    // first starts its upload and sends the body slowly.
    let (ja, jb) = (job(&e, Gen::V2_0), job(&e, Gen::V2_0));
    assert!(!ja.blob_exists("one/app", &bd).await);
    let loc = ja.initiate("one/app").await;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
    let body = reqwest::Body::wrap_stream(tokio_stream_from(rx));
    let url = ja.upload_url(&loc, Some(&bd));
    let len = [("Content-Length", base.len().to_string())];
    let put = ja.send(reqwest::Method::PUT, &url, &len, Some(body));
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
        job_head_blob(&jb, "one/two", &bd).await
    };
    let (put, (), head) = tokio::join!(put, feeder, head);
    assert_eq!(put.status(), 201);
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
    // A re-run finds everything in place at once (Harbor skips an image whose manifest HEAD
    // gives the same digest): no job waits on another's claim.
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

/// Upload starts (`POST …/blobs/uploads/`) in `repo` that reached TCR.
fn upload_starts(e: &Env, repo: &str) -> usize {
    let target = format!("/v2/{repo}/blobs/uploads/");
    let journal = e.emu.state.journal.entries();
    journal
        .iter()
        .filter(|j| j.method == "POST" && j.target == target)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upload_session_is_opened_while_tcr_is_asked_for_the_blob() {
    let e = Env::default().await;
    let repo = "ahead/app";
    push_image(&e, repo, &layer(70, 1000), &layer(71, 1000)).await; // the namespace exists
                                                                    // The session its last blob's PUT parked is given back when its manifest is pushed.
    let given_back = || {
        let target = format!("/v2/{repo}/blobs/uploads/");
        let journal = e.emu.state.journal.entries();
        journal
            .iter()
            .filter(|j| j.method == "DELETE" && j.target.starts_with(&target))
            .count()
    };
    for _ in 0..250 {
        if given_back() == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(given_back(), 1);
    let j = job(&e, Gen::V2_0);
    let data = layer(72, 64 << 10);
    let d = Digest::sha256_of(&data);
    let before = upload_starts(&e, repo);
    assert!(!j.blob_exists(repo, &d).await);
    // The HEAD's answer came with a session opened beside it in TCR...
    for _ in 0..50 {
        if upload_starts(&e, repo) > before {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(upload_starts(&e, repo), before + 1);
    // ...which answers the client's POST: its upload start does not reach TCR (the one more
    // that does is the session its PUT parks for a next blob).
    let loc = j.initiate(repo).await;
    assert_eq!(upload_starts(&e, repo), before + 1);
    let r = j
        .send(
            reqwest::Method::PUT,
            &j.upload_url(&loc, Some(&d)),
            &[("Content-Length", data.len().to_string())],
            Some(data.clone().into()),
        )
        .await;
    assert_eq!(r.status(), 201);
    assert_eq!(uploads_of(&e, &d), 1);
    let stored = e.emu.state.storage.blob_file(&d);
    assert_eq!(std::fs::read(stored).unwrap(), data);
}

/// POST, one PATCH with the bytes, then `PUT ?digest=` without a body (skopeo's way).
async fn patch_push(e: &Env, repo: &str, token: &str, data: &[u8]) {
    let r = e.start_upload(repo, token).await;
    assert_eq!(r.status(), 202);
    let loc = common::header(&r, "location");
    let r = e
        .http
        .patch(&loc)
        .bearer_auth(token)
        .header("Content-Type", "application/octet-stream")
        .body(data.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let loc = common::header(&r, "location");
    let d = Digest::sha256_of(data);
    let r = e
        .http
        .put(common::with_digest(&loc, d.as_str()))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{:?}", r.text().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_ends_with_the_image_even_when_the_layer_went_up_under_another_digest() {
    // skopeo asks about a layer by its digest in the source, then uploads it compressed: the
    // digest it found missing is never uploaded. Its manifest ends the claim.
    let e = Env::default().await;
    let (asked, sent) = (layer(80, 64 << 10), layer(81, 32 << 10));
    let asked_d = Digest::sha256_of(&asked);
    let ta = e.keys_token(&["repository:gz/a:pull,push"]).await;
    let tb = e.keys_token(&["repository:gz/b:pull,push"]).await;
    assert_eq!(head_blob(&e, "gz/a", &asked_d, &ta).await.0, 404);
    patch_push(&e, "gz/a", &ta, &sent).await;
    let config = wan_support::config_of("gz/a");
    patch_push(&e, "gz/a", &ta, &config).await;
    let manifest = wan_support::manifest_of(&config, &[&sent]);
    e.put_manifest("gz/a", "v1", &ta, harbor::OCI_MANIFEST, manifest.as_bytes())
        .await;
    // Another job asking about the same layer is not held back by the claim.
    assert_eq!(head_blob(&e, "gz/b", &asked_d, &tb).await.0, 404);
    let m = e.adapter_metrics().await;
    assert_eq!(
        metric(&m, "tcr_adapter_dedup_claims_expired_total"),
        0,
        "a HEAD waited for a claim that never came: {m}"
    );
    // And a layer uploaded in chunks under the digest asked about is mounted elsewhere.
    let sent_d = Digest::sha256_of(&sent);
    let (status, len, _) = head_blob(&e, "gz/b", &sent_d, &tb).await;
    assert_eq!((status, len), (200, Some(sent.len().to_string())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_under_another_digest_releases_the_claim_before_the_manifest() {
    // A compressing client (skopeo without its cache) asks about a layer, uploads it under
    // another digest and has not pushed its manifest yet: a concurrent job asking about the
    // same layer is not held back until the claim expires.
    let e = Env::default().await;
    let (asked, sent) = (layer(90, 64 << 10), layer(91, 32 << 10));
    let asked_d = Digest::sha256_of(&asked);
    let ta = e.keys_token(&["repository:gz2/a:pull,push"]).await;
    let tb = e.keys_token(&["repository:gz2/b:pull,push"]).await;
    assert_eq!(head_blob(&e, "gz2/a", &asked_d, &ta).await.0, 404);
    patch_push(&e, "gz2/a", &ta, &sent).await;
    assert_eq!(head_blob(&e, "gz2/b", &asked_d, &tb).await.0, 404);
    let m = e.adapter_metrics().await;
    assert_eq!(
        metric(&m, "tcr_adapter_dedup_claims_expired_total"),
        0,
        "the second job waited for a claim the first would never honour: {m}"
    );
}
