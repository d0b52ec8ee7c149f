//! Pipelined uploads (`wan.pipeline = true`): the adapter answers upload sessions itself, spools
//! and verifies the bytes, acknowledges at once and brings the blob into TCR in the background;
//! the manifest PUT is the commit point. Images are replicated by a Harbor-faithful client
//! (`wan_support::harbor`); the session-level tests speak the upload protocol directly. TCR is
//! the emulator, whose request journal shows what reached it and when.

#[path = "common/mod.rs"]
mod common;
#[path = "harbor/mod.rs"]
mod harbor;
#[path = "wan_support/mod.rs"]
mod wan_support;

use reqwest::Method;
use tcr_adapter::oci::Digest;

use harbor::{Env, OCI_MANIFEST};
use wan_support::{config_of, layer, manifest_of, metric, pull_blob, push_image, uploads_of};

async fn pipelined(emu: impl FnOnce(&mut tcr_adapter::config::EmulatorConfig)) -> Env {
    Env::start(emu, |c| c.wan.pipeline = true).await
}

/// Requests for `repo`'s blobs and uploads that reached TCR carrying or reading bytes: every
/// one but the `POST` that opens an upstream session ahead of need (in the background, so that
/// TCR's refusal can reach the client before it is told its chunks were taken).
fn upstream_blob_requests(e: &Env, repo: &str) -> usize {
    let prefix = format!("/v2/{repo}/blobs/");
    e.emu
        .state
        .journal
        .entries()
        .iter()
        .filter(|j| j.target.starts_with(&prefix) && j.method != "POST")
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipelined_push_is_answered_locally_and_the_manifest_commits_it() {
    let e = pipelined(|_| {}).await;
    let repo = "pipe/app";
    let t = e
        .keys_token(&[&format!("repository:{repo}:pull,push")])
        .await;
    let data = layer(7, 300 << 10);
    let d = Digest::sha256_of(&data);
    // The session is the adapter's own: nothing reached TCR for it.
    let r = e.start_upload(repo, &t).await;
    assert_eq!(r.status(), 202);
    let loc = common::header(&r, "location");
    assert!(loc.contains("/blobs/uploads/p."), "{loc}");
    assert_eq!(upstream_blob_requests(&e, repo), 0);
    // A chunk that does not start where the session ends is refused; a status read says 0-0.
    let patch = |range: &str, body: &[u8]| {
        e.http
            .patch(&loc)
            .bearer_auth(&t)
            .header("Content-Range", range)
            .body(body.to_vec())
            .send()
    };
    let r = patch("5-9", &data[5..10]).await.unwrap();
    assert_eq!(r.status(), 416);
    let r = patch(&format!("0-{}", 1023), &data[..1024]).await.unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(common::header(&r, "range"), "0-1023");
    let r = e.http.get(&loc).bearer_auth(&t).send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(common::header(&r, "range"), "0-1023");
    assert_eq!(upstream_blob_requests(&e, repo), 0, "the chunk stays here");
    // The last chunk with the digest: 201 at once, and the blob is there for HEAD and GET.
    let r = e
        .http
        .put(common::with_digest(&loc, &d.as_str().replace(':', "%3A")))
        .bearer_auth(&t)
        .body(data[1024..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{:?}", r.text().await);
    assert_eq!(common::header(&r, "docker-content-digest"), d.as_str());
    let (s, len, _) = wan_support::head_blob(&e, repo, &d, &t).await;
    assert_eq!((s, len), (200, Some(data.len().to_string())));
    assert_eq!(pull_blob(&e, repo, &d).await, data);
    // The manifest commits: when it is answered, TCR has every blob, byte for byte.
    let config = config_of(repo);
    e.push_blob(repo, &t, &config, false, true).await;
    let manifest = manifest_of(&config, &[&data]);
    e.put_manifest(repo, "v1", &t, OCI_MANIFEST, manifest.as_bytes())
        .await;
    assert_eq!(uploads_of(&e, &d), 1, "one upload of the layer reached TCR");
    let blob = e.emu.state.storage.blob_file(&d);
    assert_eq!(std::fs::read(blob).unwrap(), data);
    let m = e.adapter_metrics().await;
    assert_eq!(
        metric(
            &m,
            "tcr_adapter_pipeline_jobs_total{kind=\"upload\",result=\"done\"}"
        ),
        2,
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_digest_is_refused_and_nothing_reaches_tcr() {
    let e = pipelined(|_| {}).await;
    let t = e.keys_token(&["repository:pipe/bad:pull,push"]).await;
    let r = e.start_upload("pipe/bad", &t).await;
    let loc = common::header(&r, "location");
    let wrong = Digest::sha256_of(b"something else");
    let r = e
        .http
        .put(common::with_digest(&loc, wrong.as_str()))
        .bearer_auth(&t)
        .body(layer(1, 4096))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("DIGEST_INVALID"));
    let (s, _, _) = wan_support::head_blob(&e, "pipe/bad", &wrong, &t).await;
    assert_eq!(s, 404);
    let puts = |e: &Env| {
        let journal = e.emu.state.journal.entries();
        journal.iter().filter(|j| j.method == "PUT").count()
    };
    assert_eq!(puts(&e), 0, "no upload reached TCR");
    // The session is gone with its bytes, and so is the one opened upstream ahead of need.
    let r = e.http.get(&loc).bearer_auth(&t).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(open_upstream_sessions(&e).await, 0);
}

/// Upload sessions open in TCR, once the adapter's background work has settled (2 s at most).
async fn open_upstream_sessions(e: &Env) -> usize {
    let dir = e.emu.state.cfg.data_dir.join("registry/uploads");
    let count = || std::fs::read_dir(&dir).map_or(0, |d| d.count());
    for _ in 0..20 {
        if count() == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blob_tcr_has_but_the_adapter_never_saw_is_not_sent_again() {
    let e = pipelined(|_| {}).await;
    let repo = "pipe/known";
    let data = layer(51, 256 << 10);
    let d = Digest::sha256_of(&data);
    // Pushed straight to TCR, behind the adapter's back (into a namespace the adapter made).
    push_image(&e, "pipe/warm", &layer(53, 100), &layer(54, 100)).await;
    wan_support::seed(&e, repo, &data).await;
    // Through the pipelined adapter: its HEAD says absent (never heard of), the client uploads
    // to the spool, the background check finds it in TCR and sends nothing.
    assert_eq!(push_image(&e, repo, &data, &layer(52, 1000)).await, 3);
    assert_eq!(uploads_of(&e, &d), 1, "only the direct upload reached TCR");
    assert_eq!(pull_blob(&e, repo, &d).await, data);
    assert_eq!(open_upstream_sessions(&e).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_base_layer_shared_by_ten_repositories_crosses_once_one_by_one_or_all_at_once() {
    let e = pipelined(|_| {}).await;
    let base = layer(11, 512 << 10);
    let bd = Digest::sha256_of(&base);
    for i in 0..5 {
        push_image(&e, &format!("seq/app{i}"), &base, &layer(40 + i, 2048)).await;
    }
    let other = layer(12, 512 << 10);
    let od = Digest::sha256_of(&other);
    let owns: Vec<Vec<u8>> = (0..10).map(|i| layer(60 + i, 2048)).collect();
    let repos: Vec<String> = (0..10).map(|i| format!("wave/app{i}")).collect();
    let jobs = repos
        .iter()
        .zip(&owns)
        .map(|(repo, own)| push_image(&e, repo, &other, own));
    futures_util::future::join_all(jobs).await;
    assert_eq!(uploads_of(&e, &bd), 1, "one at a time");
    assert_eq!(uploads_of(&e, &od), 1, "ten at a time");
    for (repo, d, bytes) in [("seq/app4", &bd, &base), ("wave/app7", &od, &other)] {
        assert_eq!(&pull_blob(&e, repo, d).await, bytes, "{repo}");
    }
    let m = e.adapter_metrics().await;
    assert_eq!(
        metric(&m, "tcr_adapter_dedup_mounts_total{result=\"mounted\"}"),
        4 + 9,
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_background_upload_fails_the_manifest_and_nothing_is_visible() {
    // TCR refuses bodies over 100 KiB: the spooled 200 KiB layer can never be brought in.
    let e = pipelined(|ec| ec.faults.max_body_bytes = 100 << 10).await;
    let repo = "pipe/fail";
    let t = e
        .keys_token(&[&format!("repository:{repo}:pull,push")])
        .await;
    let big = layer(21, 200 << 10);
    let config = config_of(repo);
    e.push_blob(repo, &t, &big, false, true).await; // acknowledged from the spool
    e.push_blob(repo, &t, &config, false, true).await;
    let manifest = manifest_of(&config, &[&big]);
    let r = e
        .req(
            Method::PUT,
            &format!("/v2/{repo}/manifests/v1"),
            Some(&t),
            &[("Content-Type", OCI_MANIFEST)],
            Some(manifest.into_bytes()),
        )
        .await;
    assert_eq!(r.status(), 400);
    let body = r.text().await.unwrap();
    assert!(body.contains("MANIFEST_BLOB_UNKNOWN"), "{body}");
    // Nothing of it is visible in TCR: no manifest was sent, the tag does not exist.
    let manifests_sent = e
        .emu
        .state
        .journal
        .entries()
        .iter()
        .filter(|j| j.method == "PUT" && j.target.contains("/manifests/"))
        .count();
    assert_eq!(manifests_sent, 0);
    assert_eq!(e.head_manifest(repo, "v1", &t).await, 404);
    // The client is told the truth now, so that it uploads again (a Harbor job's pull-scoped
    // HEAD).
    let j = wan_support::job(&e, wan_support::Gen::V2_0);
    assert!(!j.blob_exists(repo, &Digest::sha256_of(&big)).await);
    let m = e.adapter_metrics().await;
    assert_eq!(
        metric(
            &m,
            "tcr_adapter_pipeline_jobs_total{kind=\"upload\",result=\"failed\"}"
        ),
        1,
        "{m}"
    );
}

/// POST + monolithic PUT of `data` through the adapter at `base`.
async fn push_through(http: &reqwest::Client, base: &str, repo: &str, tok: &str, data: &[u8]) {
    let loc = common::start_upload(http, base, repo, tok).await;
    let d = Digest::sha256_of(data);
    let r = http
        .put(common::with_digest(&loc, d.as_str()))
        .bearer_auth(tok)
        .body(data.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_adapter_leaves_no_manifest_that_references_a_missing_blob() {
    let dir = tempfile::tempdir().unwrap();
    let mut ec = common::emulator_config(dir.path());
    ec.faults.bandwidth_kib_per_sec = 128; // the 1 MiB layer needs ~8 s to reach TCR
    let emu = common::start_emulator_with(ec).await;
    let spool = dir.path().join("spool");
    let tail = format!(
        "{}[wan]\npipeline = true\nspool_dir = \"{}\"\n",
        common::demo_keys_toml(),
        spool.display()
    );
    let (adapter, base, cfg) = common::serve_binary(&emu, dir.path(), "", &tail).await;
    let http = reqwest::Client::new();
    let repo = "kill/app";
    let tok = common::token(&base, &format!("repository:{repo}:pull,push")).await;
    let big = layer(31, 1 << 20);
    let config = config_of(repo);
    for blob in [&big, &config] {
        push_through(&http, &base, repo, &tok, blob).await;
    }
    // The manifest waits for the layer to reach TCR; the adapter is killed meanwhile.
    let manifest = manifest_of(&config, &[&big]);
    let put = http
        .put(format!("{base}/v2/{repo}/manifests/v1"))
        .bearer_auth(&tok)
        .header("Content-Type", OCI_MANIFEST)
        .body(manifest.clone())
        .send();
    let kill = async {
        tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
        adapter.kill9();
    };
    let (answer, ()) = tokio::join!(put, kill);
    assert!(answer.is_err(), "the manifest PUT was answered: {answer:?}");
    let manifests_sent = |emu: &tcr_adapter::emulator::EmulatorHandle| {
        emu.state
            .journal
            .entries()
            .iter()
            .filter(|j| j.method == "PUT" && j.target.contains("/manifests/"))
            .count()
    };
    assert_eq!(manifests_sent(&emu), 0, "no manifest reached TCR");
    assert!(!emu
        .state
        .storage
        .blob_file(&Digest::sha256_of(&big))
        .exists());
    // Restarted, the adapter drops the dead run's spool; the client's retry pushes it all.
    let _adapter = common::spawn("serve", &cfg);
    common::wait_up(&format!("{base}/healthz")).await;
    let runs = std::fs::read_dir(&spool).unwrap().count();
    assert_eq!(runs, 1, "only the new run's spool is left");
    for blob in [&big, &config] {
        push_through(&http, &base, repo, &tok, blob).await;
    }
    let r = http
        .put(format!("{base}/v2/{repo}/manifests/v1"))
        .bearer_auth(&tok)
        .header("Content-Type", OCI_MANIFEST)
        .body(manifest)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(manifests_sent(&emu), 1);
    let stored = emu.state.storage.blob_file(&Digest::sha256_of(&big));
    assert_eq!(std::fs::read(stored).unwrap(), big);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_spool_holds_the_client_back_and_a_blob_too_big_for_it_goes_straight_through() {
    let e = Env::start(
        |ec| ec.faults.bandwidth_kib_per_sec = 512, // 700 KiB need ~1.4 s to reach TCR
        |c| {
            c.wan.pipeline = true;
            c.wan.spool_max_bytes = 1 << 20;
        },
    )
    .await;
    let repo = "pipe/full";
    let t = e
        .keys_token(&[&format!("repository:{repo}:pull,push")])
        .await;
    let (a, b) = (layer(41, 700 << 10), layer(42, 700 << 10));
    e.push_blob(repo, &t, &a, false, true).await;
    // The spool holds `a` until TCR has it: `b` is acknowledged only after that.
    e.push_blob(repo, &t, &b, false, true).await;
    let in_tcr = |data: &[u8]| {
        e.emu
            .state
            .storage
            .blob_file(&Digest::sha256_of(data))
            .exists()
    };
    assert!(in_tcr(&a), "b was acknowledged before a left the spool");
    // 1.5 MiB cannot fit a 1 MiB spool: sent to TCR while the client sends it.
    let huge = layer(43, 3 << 19);
    e.push_blob(repo, &t, &huge, false, true).await;
    assert!(in_tcr(&huge), "acknowledged only once TCR had it");
    let config = config_of(repo);
    e.push_blob(repo, &t, &config, false, true).await;
    let manifest = manifest_of(&config, &[&a, &b, &huge]);
    e.put_manifest(repo, "v1", &t, OCI_MANIFEST, manifest.as_bytes())
        .await;
    for data in [&a, &b, &huge] {
        assert_eq!(uploads_of(&e, &Digest::sha256_of(data)), 1);
    }
    let m = e.adapter_metrics().await;
    assert_eq!(metric(&m, "tcr_adapter_pipeline_spool_bytes"), 0, "{m}");
}
