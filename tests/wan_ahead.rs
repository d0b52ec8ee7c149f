//! Work done ahead of TCR with layer dedup (`wan.dedup`, the default, without the pipeline):
//! "absent" said before TCR is asked once TCR has said it three times in a row to a caller (and
//! a blob TCR turned out to have is not sent on), the base layers that follow a mounted one
//! mounted at the same time, and upload sessions parked beside a manifest HEAD given back when
//! the image is there. Harbor's side is `wan_support::harbor` (a token per request scope: its
//! HEADs are pull-scoped). TCR is the emulator, whose request journal shows what reached it.

#[path = "common/mod.rs"]
mod common;
#[path = "harbor/mod.rs"]
mod harbor;
#[path = "wan_support/mod.rs"]
mod wan_support;

use std::time::Duration;

use tcr_adapter::oci::Digest;

use harbor::Env;
use wan_support::{
    job, job_head_blob, layer, metric, pull_blob, push_image, replicate, seed, uploads_of, Gen,
};

/// Poll `what` (up to 5 s) until it holds.
async fn eventually(what: impl Fn() -> bool) -> bool {
    for _ in 0..250 {
        if what() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    what()
}

/// Requests that reached TCR with this method whose target starts with `prefix`.
fn journal_count(e: &Env, method: &str, prefix: &str) -> usize {
    e.emu
        .state
        .journal
        .entries()
        .iter()
        .filter(|j| j.method == method && j.target.starts_with(prefix))
        .count()
}

async fn absent_ahead_metric(e: &Env, tcr: &str) -> u64 {
    let m = e.adapter_metrics().await;
    metric(
        &m,
        &format!("tcr_adapter_dedup_absent_ahead_total{{tcr=\"{tcr}\"}}"),
    )
}

/// Poll (up to 5 s) until `tcr_adapter_dedup_absent_ahead_total{tcr}` is `n`.
async fn metric_reaches(e: &Env, tcr: &str, n: u64) -> bool {
    for _ in 0..250 {
        if absent_ahead_metric(e, tcr).await == n {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_three_absent_answers_the_next_new_blob_is_absent_ahead_and_one_tcr_has_is_not_sent_again(
) {
    let e = Env::default().await;
    // A namespace that was there before the adapter (one it created itself counts as new:
    // see the next test).
    e.emu.state.namespaces.create("ahead", false).unwrap();
    // Blobs TCR has never seen, asked about through the adapter by a Harbor job: once the
    // credential has pushed into the namespace (its config), TCR says "absent" to it three times.
    let warm = [layer(1, 100), layer(2, 100), layer(9, 100)];
    replicate(&e, Gen::V2_0, "ahead/warm", &[&warm[0], &warm[1], &warm[2]]).await;
    assert_eq!(absent_ahead_metric(&e, "absent").await, 0);
    assert_eq!(absent_ahead_metric(&e, "present").await, 0);
    let repo = "ahead/known";
    let (had, also) = (layer(3, 64 << 10), layer(4, 1000));
    seed(&e, repo, &had).await;
    seed(&e, repo, &also).await;
    let j = job(&e, Gen::V2_0);
    // The adapter has never heard of `had`: "absent" before TCR (which has it) is asked.
    let hd = Digest::sha256_of(&had);
    assert!(!j.blob_exists(repo, &hd).await);
    assert!(
        metric_reaches(&e, "present", 1).await,
        "the background check did not find the blob in TCR"
    );
    // The client uploads it all the same: answered, not sent on to TCR.
    j.push_blob(repo, &had).await;
    assert_eq!(
        uploads_of(&e, &hd),
        1,
        "only the upload behind the adapter's back"
    );
    // The session its POST got in TCR is given back.
    let uploads = format!("/v2/{repo}/blobs/uploads/");
    assert!(eventually(|| journal_count(&e, "DELETE", &uploads) == 1).await);
    assert_eq!(pull_blob(&e, repo, &hd).await, had);
    let m = e.adapter_metrics().await;
    assert!(
        metric(&m, "tcr_adapter_dedup_bytes_saved_total") >= had.len() as u64,
        "{m}"
    );
    // TCR said "present": the streak is over, the next question goes to TCR (which says 200).
    let (status, len, _) = job_head_blob(&j, repo, &Digest::sha256_of(&also)).await;
    assert_eq!((status, len), (200, Some(also.len().to_string())));
    // Three more "absent" from TCR, and the fourth new blob is answered ahead again.
    for seed_byte in 10..13 {
        let d = Digest::sha256_of(&layer(seed_byte, 500));
        assert!(!j.blob_exists(repo, &d).await);
    }
    assert_eq!(absent_ahead_metric(&e, "absent").await, 0);
    let d = Digest::sha256_of(&layer(13, 500));
    assert!(!j.blob_exists(repo, &d).await);
    assert!(
        metric_reaches(&e, "absent", 1).await,
        "the fourth new blob was not answered ahead of TCR"
    );
}

/// In a namespace the adapter created itself (it was not in TCR before the first push), a
/// pusher's first question about a blob nobody has heard of is answered "absent" ahead of TCR,
/// with no streak of TCR's "absent" before it; TCR asked in the background. Once TCR says such
/// a blob is there (something else writes into the namespace), the namespace no longer counts
/// as new: the next question goes to TCR.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_namespace_the_adapter_created_the_first_new_blob_is_absent_ahead() {
    let e = Env::default().await;
    assert!(e.emu.state.namespaces.get("born").is_none());
    let j = job(&e, Gen::V2_0);
    j.push_blob("born/app", &layer(70, 100)).await;
    assert!(
        e.emu.state.namespaces.get("born").is_some(),
        "the push created it"
    );
    let heads = |e: &Env| journal_count(e, "HEAD", "/v2/born/");
    assert_eq!(heads(&e), 0);
    let d = Digest::sha256_of(&layer(71, 1000));
    assert!(!j.blob_exists("born/app", &d).await);
    assert!(
        metric_reaches(&e, "absent", 1).await,
        "the first new blob was not answered ahead of TCR"
    );
    // TCR was asked once, in the background.
    assert_eq!(heads(&e), 1);
    // A blob pushed straight into TCR: the adapter says "absent" (it cannot know), TCR says
    // "present" in the background...
    let had = layer(72, 2000);
    seed(&e, "born/other", &had).await;
    assert!(!j.blob_exists("born/other", &Digest::sha256_of(&had)).await);
    assert!(metric_reaches(&e, "present", 1).await);
    // ...and from then on TCR answers: the next new blob's HEAD is relayed, not said ahead.
    let d = Digest::sha256_of(&layer(73, 1000));
    assert!(!j.blob_exists("born/app", &d).await);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(absent_ahead_metric(&e, "absent").await, 1);
    assert_eq!(heads(&e), 3);
}

/// A pusher (its mounts through the adapter came from somewhere) asks about an image in a
/// namespace it has not pushed into yet, one TCR has: sessions are parked there for the
/// image's blobs once the namespace is known to exist, and its first upload takes one without a
/// round trip. Before it has pushed anything, the same question parks nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pushers_first_image_in_a_namespace_new_to_it_finds_sessions_parked() {
    let e = Env::default().await;
    e.emu.state.namespaces.create("proj2", false).unwrap();
    let posts = |e: &Env| journal_count(e, "POST", "/v2/proj2/");
    let (status, _) = job(&e, Gen::V2_0).head_manifest("proj2/early", "v1").await;
    assert_eq!(status, 404);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(posts(&e), 0, "a credential that never pushed parks nothing");
    let base = layer(60, 32 << 10);
    push_layers(&e, "proj1/a", &[&base, &layer(61, 100)]).await;
    push_layers(&e, "proj1/b", &[&base, &layer(62, 100)]).await;
    assert_eq!(mounts_into(&e, "proj1/b", &Digest::sha256_of(&base)), 1);
    let j = job(&e, Gen::V2_0);
    let (status, _) = j.head_manifest("proj2/app", "v1").await;
    assert_eq!(status, 404);
    assert!(
        eventually(|| posts(&e) == 2).await,
        "sessions parked in proj2: {} upload starts",
        posts(&e)
    );
    let config = layer(63, 300);
    j.push_blob("proj2/app", &config).await;
    assert_eq!(posts(&e), 2, "the upload took a parked session");
    let d = Digest::sha256_of(&config);
    assert_eq!(uploads_of(&e, &d), 1);
    assert_eq!(pull_blob(&e, "proj2/app", &d).await, config);
}

/// Replicate `repo:v1` made of `layers` (and a config) as Harbor 2.0 does; how many blobs it
/// uploaded.
async fn push_layers(e: &Env, repo: &str, layers: &[&[u8]]) -> usize {
    replicate(e, Gen::V2_0, repo, layers).await
}

/// Mounts of `d` into `repo` that reached TCR.
fn mounts_into(e: &Env, repo: &str, d: &Digest) -> usize {
    common::mounts_into_tcr(&e.emu, repo, d)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_base_layers_after_a_mounted_one_are_mounted_before_they_are_asked_for() {
    let e = Env::default().await;
    let (b1, b2) = (layer(20, 32 << 10), layer(21, 16 << 10));
    let (d1, d2) = (Digest::sha256_of(&b1), Digest::sha256_of(&b2));
    let own: Vec<Vec<u8>> = (0..3).map(|i| layer(30 + i, 2000)).collect();
    assert_eq!(push_layers(&e, "base/a0", &[&b1, &b2, &own[0]]).await, 4);
    push_layers(&e, "base/a1", &[&b1, &b2, &own[1]]).await;
    // Both base layers are in two repositories now. The third image's first base layer:
    let j = job(&e, Gen::V2_0);
    assert!(j.blob_exists("base/a2", &d1).await);
    // The second one is mounted too, before the client asks about it...
    assert!(
        eventually(|| mounts_into(&e, "base/a2", &d2) == 1).await,
        "the next base layer was not mounted ahead"
    );
    // ...and the HEAD for it finds it there, without a second mount.
    let (status, len, dig) = job_head_blob(&j, "base/a2", &d2).await;
    assert_eq!(
        (status, len, dig),
        (200, Some(b2.len().to_string()), Some(d2.to_string()))
    );
    assert_eq!(mounts_into(&e, "base/a2", &d2), 1);
    // A layer of one image only (the source's own) is not mounted on a guess.
    for o in &own[..2] {
        assert_eq!(mounts_into(&e, "base/a2", &Digest::sha256_of(o)), 0);
    }
    assert_eq!(pull_blob(&e, "base/a2", &d2).await, b2);
    assert_eq!(
        uploads_of(&e, &d1) + uploads_of(&e, &d2),
        2,
        "each base layer crossed once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_parked_beside_a_manifest_head_are_given_back_when_the_image_is_there() {
    let e = Env::default().await;
    let repo = "parked/app";
    push_image(&e, repo, &layer(40, 1000), &layer(41, 1000)).await;
    let uploads = format!("/v2/{repo}/blobs/uploads/");
    // The session parked at the last blob's PUT is given back when the manifest is pushed.
    assert!(eventually(|| journal_count(&e, "DELETE", &uploads) == 1).await);
    let (opened, cancelled) = (
        journal_count(&e, "POST", &uploads),
        journal_count(&e, "DELETE", &uploads),
    );
    // A Harbor 2.0 job re-running the image: its manifest HEAD (pull scope) finds it.
    let (status, _) = job(&e, Gen::V2_0).head_manifest(repo, "v1").await;
    assert_eq!(status, 200);
    // Sessions were opened for the image's blobs while TCR was asked, and given back at once
    // when it said the image is there (not 30 s later).
    assert!(
        eventually(|| journal_count(&e, "POST", &uploads) == opened + 2
            && journal_count(&e, "DELETE", &uploads) == cancelled + 2)
        .await,
        "opened {} (before {opened}), cancelled {} (before {cancelled})",
        journal_count(&e, "POST", &uploads),
        journal_count(&e, "DELETE", &uploads)
    );
    // The journal notes a DELETE as it arrives; the emulator removes the session right after.
    let uploads_dir = e.emu.state.cfg.data_dir.join("registry/uploads");
    let leftovers = || std::fs::read_dir(&uploads_dir).map_or(0, |d| d.count());
    assert!(
        eventually(|| leftovers() == 0).await,
        "an upload session was left open in TCR: {}",
        leftovers()
    );
}

/// Realm requests that reached TCR asking exactly `scopes` (in that order).
fn realm_asks(e: &Env, scopes: &[&str]) -> usize {
    e.emu
        .state
        .journal
        .entries()
        .iter()
        .filter(|j| j.method == "GET" && j.target.starts_with("/service/token"))
        .filter(|j| {
            let query = j.target.split_once('?').map_or("", |(_, q)| q);
            let asked: Vec<String> = url::form_urlencoded::parse(query.as_bytes())
                .filter(|(k, _)| k == "scope")
                .map(|(_, v)| v.into_owned())
                .collect();
            asked == scopes
        })
        .count()
}

/// A pusher whose mounts came from `tok/a` lately asks about a manifest in a namespace it has
/// not pushed into (pull-scoped, as every Harbor job starts): the realm token its upload there
/// will ask for (pull and push there, pull on the source) is fetched while the HEAD is
/// answered, not after the client's `POST` arrives; a token is not a write: nothing else
/// reaches TCR for that repository.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_an_upload_will_ask_for_is_fetched_at_the_manifest_head() {
    let e = Env::default().await;
    let base = layer(50, 32 << 10);
    push_layers(&e, "tok/a", &[&base, &layer(51, 100)]).await;
    push_layers(&e, "tok/b", &[&base, &layer(52, 100)]).await;
    assert_eq!(
        mounts_into(&e, "tok/b", &Digest::sha256_of(&base)),
        1,
        "the base layer was mounted from tok/a"
    );
    let want = ["repository:fresh/c:pull,push", "repository:tok/a:pull"];
    assert_eq!(realm_asks(&e, &want), 0);
    let (status, _) = job(&e, Gen::V2_0).head_manifest("fresh/c", "v1").await;
    assert_eq!(status, 404);
    assert!(
        eventually(|| realm_asks(&e, &want) == 1).await,
        "the upload's token was not fetched ahead"
    );
    for method in ["POST", "PUT", "PATCH"] {
        assert_eq!(journal_count(&e, method, "/v2/fresh/"), 0, "{method}");
    }
}

/// Job A is to upload a blob (TCR said "absent" to it); job B asks about the same blob in
/// another repository and waits for A's upload to mount from there. The realm token of that
/// mount (pull and push in B's repository, pull in A's) is fetched while B waits, not after
/// A's upload lands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_waiting_for_another_jobs_upload_has_its_mount_token_fetched_meanwhile() {
    let e = Env::default().await;
    // The credential pushes into the namespace (no mount yet: no source hint).
    push_layers(&e, "wait/warm", &[&layer(60, 100)]).await;
    let blob = layer(61, 64 << 10);
    let d = Digest::sha256_of(&blob);
    let a = job(&e, Gen::V2_0);
    assert!(!a.blob_exists("wait/a", &d).await);
    let b = job(&e, Gen::V2_0);
    let bd = d.clone();
    let waiting = tokio::spawn(async move { b.blob_exists("wait/b", &bd).await });
    let want = ["repository:wait/b:pull,push", "repository:wait/a:pull"];
    assert!(
        eventually(|| realm_asks(&e, &want) == 1).await,
        "the mount's token was not fetched while waiting"
    );
    assert_eq!(mounts_into(&e, "wait/b", &d), 0, "A has not uploaded yet");
    a.push_blob("wait/a", &blob).await;
    assert!(
        waiting.await.unwrap(),
        "B's HEAD was not answered by a mount"
    );
    assert_eq!(mounts_into(&e, "wait/b", &d), 1);
    assert_eq!(
        realm_asks(&e, &want),
        1,
        "one token for the wait and the mount"
    );
    assert_eq!(uploads_of(&e, &d), 1);
    assert_eq!(pull_blob(&e, "wait/b", &d).await, blob);
}

/// A blob whose size the adapter does not know (an upload's answer carries none) is mounted
/// for a pull-scoped HEAD: its size is asked of the source repository while the mount is made,
/// not of the target after it; the HEAD answers the right `Content-Length`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mounted_blobs_size_is_asked_of_its_source_during_the_mount() {
    let e = Env::default().await;
    push_layers(&e, "size/warm", &[&layer(70, 100)]).await;
    let x = layer(71, 48 << 10);
    let d = Digest::sha256_of(&x);
    let j = job(&e, Gen::V2_0);
    j.push_blob("size/a", &x).await;
    let (status, len, _) = job_head_blob(&j, "size/b", &d).await;
    assert_eq!((status, len), (200, Some(x.len().to_string())));
    assert_eq!(mounts_into(&e, "size/b", &d), 1);
    let heads_in = |repo: &str| journal_count(&e, "HEAD", &format!("/v2/{repo}/blobs/{d}"));
    assert_eq!(heads_in("size/b"), 0, "the size was asked of the target");
    assert_eq!(
        heads_in("size/a"),
        1,
        "the size was not asked of the source"
    );
}

/// Without the pipeline, an upload's last `PUT` parks a session for the image's next blob while
/// its bytes travel: the next `POST` is answered with it (TCR sees no second `POST` for it), and
/// the one left after the last blob is given back when the manifest is pushed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uploads_put_parks_a_session_for_the_next_blob() {
    let e = Env::default().await;
    let repo = "next/app";
    let uploads = format!("/v2/{repo}/blobs/uploads/");
    let (one, two) = (layer(80, 20 << 10), layer(81, 3000));
    let j = job(&e, Gen::V2_0);
    j.push_blob(repo, &one).await;
    assert!(
        eventually(|| journal_count(&e, "POST", &uploads) == 2).await,
        "no session was opened for the next blob during the PUT ({} POSTs)",
        journal_count(&e, "POST", &uploads)
    );
    j.push_blob(repo, &two).await;
    // The client's POST took the parked session; its PUT parked one more.
    assert!(eventually(|| journal_count(&e, "POST", &uploads) == 3).await);
    let config = wan_support::config_of(repo);
    j.push_blob(repo, &config).await;
    let manifest = wan_support::manifest_of(&config, &[&one, &two]);
    j.push_manifest(repo, "v1", harbor::OCI_MANIFEST, manifest.as_bytes())
        .await;
    assert!(
        eventually(|| journal_count(&e, "DELETE", &uploads) == 1).await,
        "the session left after the last blob was not given back at the manifest"
    );
    assert_eq!(journal_count(&e, "POST", &uploads), 4);
    for blob in [&one, &two, &config] {
        assert_eq!(pull_blob(&e, repo, &Digest::sha256_of(blob)).await, *blob);
    }
}

/// Three images on one base were pushed into a namespace; a fourth image's manifest HEAD is
/// answered "absent" by TCR: the namespace's base layers (those every recent manifest there
/// references) are mounted into the new repository while Harbor uploads its config, and the
/// HEADs that come for them find them there. The other images' own layers are not guessed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_images_namespace_base_layers_are_mounted_at_its_manifest_head() {
    let e = Env::default().await;
    let (b1, b2) = (layer(90, 32 << 10), layer(91, 16 << 10));
    let (d1, d2) = (Digest::sha256_of(&b1), Digest::sha256_of(&b2));
    let own: Vec<Vec<u8>> = (0..3).map(|i| layer(92 + i, 2000)).collect();
    for (i, o) in own.iter().enumerate() {
        push_layers(&e, &format!("nsb/a{i}"), &[&b1, &b2, o]).await;
    }
    let j = job(&e, Gen::V2_0);
    let (status, _) = j.head_manifest("nsb/new", "v1").await;
    assert_eq!(status, 404);
    assert!(
        eventually(|| mounts_into(&e, "nsb/new", &d1) == 1 && mounts_into(&e, "nsb/new", &d2) == 1)
            .await,
        "the namespace's base layers were not mounted at the manifest HEAD"
    );
    for o in &own {
        assert_eq!(mounts_into(&e, "nsb/new", &Digest::sha256_of(o)), 0);
    }
    for (d, b) in [(&d1, &b1), (&d2, &b2)] {
        let (status, len, _) = job_head_blob(&j, "nsb/new", d).await;
        assert_eq!((status, len), (200, Some(b.len().to_string())));
        assert_eq!(mounts_into(&e, "nsb/new", d), 1, "mounted twice");
    }
    assert_eq!(uploads_of(&e, &d1) + uploads_of(&e, &d2), 2);
}
