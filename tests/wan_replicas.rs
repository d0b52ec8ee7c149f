//! Three adapter replicas behind a real nginx round-robin balancer (every request may reach
//! another replica) share the WAN state on a real Redis (`[state] redis_url`, Debian's
//! `redis-server`): Harbor-faithful jobs (per-scope tokens, `wan_support::harbor`) that copy
//! images sharing base layers upload each layer once across the three, whichever replica heard
//! of it first — the blob index, the claims and the memory of pushes are the fleet's. Without
//! the store each replica learns alone and the layers cross again.

#[path = "common/mod.rs"]
mod common;
#[path = "harbor/mod.rs"]
mod harbor;
#[path = "wan_support/mod.rs"]
mod wan_support;

use tcr_adapter::app::AdapterHandle;
use tcr_adapter::config::Secret;
use tcr_adapter::emulator::EmulatorHandle;
use tcr_adapter::oci::Digest;
use wan_support::{config_of, layer, manifest_of, Gen, Job};

const SIGNING_KEY: &str = "cmVwbGljYS10ZXN0LXNpZ25pbmcta2V5LTMyLWJ5dGVzISE=";
const SEALING_KEY: &str = "cmVwbGljYS10ZXN0LXNlYWxpbmcta2V5LTMyYnl0ZXM=";

struct Fleet {
    _redis: Option<common::Proc>,
    replicas: Vec<AdapterHandle>,
    _nginx: common::Proc,
    _dir: tempfile::TempDir,
    _spools: tempfile::TempDir,
    lb: String,
}

/// `n` replicas behind nginx (round robin), sharing Redis when `shared`, pipelined uploads when
/// `pipeline`; each repository served by its owner replica (the default).
async fn fleet(emu: &EmulatorHandle, n: usize, shared: bool, pipeline: bool) -> Fleet {
    fleet_with(emu, n, shared, pipeline, true).await
}

/// [`fleet`], with `[state] forward_by_repository` = `by_repository`.
async fn fleet_with(
    emu: &EmulatorHandle,
    n: usize,
    shared: bool,
    pipeline: bool,
    by_repository: bool,
) -> Fleet {
    let port = common::free_port();
    let lb = format!("http://127.0.0.1:{port}");
    let redis_port = common::free_port();
    let redis = shared.then(|| common::redis_server(redis_port));
    let dir_for_spools = tempfile::tempdir().unwrap();
    let mut replicas = Vec::new();
    for _ in 0..n {
        let mut cfg = common::adapter_config(emu);
        cfg.server.public_url = lb.clone();
        cfg.auth.signing_key = Secret::new(SIGNING_KEY);
        cfg.auth.sealing_key = Secret::new(SEALING_KEY);
        cfg.wan.pipeline = pipeline;
        if pipeline {
            let spool = dir_for_spools.path().join(format!("r{}", replicas.len()));
            cfg.wan.spool_dir = spool.to_string_lossy().into_owned();
        }
        if shared {
            cfg.state.redis_url = Secret::new(format!("redis://127.0.0.1:{redis_port}/0"));
            cfg.state.key_prefix = "fleet".into();
            cfg.state.forward_by_repository = by_repository;
        } else {
            // Alone: each replica's Locations name itself, so a job sent to one replica stays
            // there (the control below must not reach the replica that knows the layers).
            cfg.state = Default::default();
            cfg.server.public_url = String::new();
        }
        replicas.push(common::start_adapter(cfg).await.0);
    }
    let dir = tempfile::tempdir().unwrap();
    let servers: String = replicas
        .iter()
        .map(|r| format!("server {}; ", r.addr))
        .collect();
    let nginx = common::nginx(dir.path(), port, &servers, "");
    if shared {
        // Every replica has read every other's beat from the store.
        tokio::time::sleep(std::time::Duration::from_millis(2200)).await;
    }
    Fleet {
        _spools: dir_for_spools,
        _redis: redis,
        replicas,
        _nginx: nginx,
        _dir: dir,
        lb,
    }
}

/// Two replicas sharing a Redis of their own, each reached directly (no balancer, no
/// forwarding by repository: a request is served by the replica it is sent to).
async fn direct_pair(emu: &EmulatorHandle) -> (common::Proc, Vec<AdapterHandle>) {
    let redis_port = common::free_port();
    let redis = common::redis_server(redis_port);
    let mut replicas = Vec::new();
    for _ in 0..2 {
        let mut cfg = common::adapter_config(emu);
        cfg.state.redis_url = Secret::new(format!("redis://127.0.0.1:{redis_port}/0"));
        cfg.state.forward_by_repository = false;
        replicas.push(common::start_adapter(cfg).await.0);
    }
    (redis, replicas)
}

/// Copy `repo:v1` (config, the two base layers, its own layer) as a Harbor 2.0 job through the
/// balancer.
async fn copy(lb: &str, repo: &str, base: &[&[u8]], own: &[u8]) {
    let config = config_of(repo);
    let mut layers: Vec<&[u8]> = base.to_vec();
    layers.push(own);
    let manifest = manifest_of(&config, &layers);
    let mut blobs: Vec<&[u8]> = vec![&config];
    blobs.extend_from_slice(&layers);
    Job::new(
        Gen::V2_0,
        lb,
        common::DEMO_SECRET_ID,
        common::DEMO_SECRET_KEY,
    )
    .copy_image(
        repo,
        "v1",
        &blobs,
        harbor::OCI_MANIFEST,
        manifest.as_bytes(),
    )
    .await;
}

/// Six images with two shared base layers: the first job alone through the first replica
/// itself, then five at once through `rest` (the balancer, or one other replica).
async fn migrate(emu: &EmulatorHandle, fleet: &Fleet, rest: &str) -> (usize, usize) {
    let (b1, b2) = (layer(1, 96 << 10), layer(2, 64 << 10));
    let first = format!("http://{}", fleet.replicas[0].addr);
    copy(&first, "team/app0", &[&b1, &b2], &layer(10, 4096)).await;
    let jobs = (1..6).map(|i| {
        let (rest, b1, b2) = (rest.to_string(), b1.clone(), b2.clone());
        async move {
            let own = layer(10 + i as u8, 4096);
            copy(&rest, &format!("team/app{i}"), &[&b1, &b2], &own).await;
        }
    });
    futures_util::future::join_all(jobs).await;
    (
        common::uploads_into_tcr(emu, &Digest::sha256_of(&b1)),
        common::uploads_into_tcr(emu, &Digest::sha256_of(&b2)),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_sharing_redis_send_each_base_layer_once() {
    let emu = common::start_emulator_with_namespaces(&[("team", false)]).await;
    let fleet = fleet(&emu.handle, 3, true, false).await;
    let (b1, b2) = migrate(&emu.handle, &fleet, &fleet.lb).await;
    assert_eq!((b1, b2), (1, 1), "each base layer crossed once");
    assert!(
        metric_sum(&fleet, "tcr_adapter_dedup_mounts_total{", &["mounted"]).await >= 10,
        "the other five images mounted both"
    );
    // Every image is complete in TCR.
    for i in 0..6 {
        common::assert_image_in_tcr(&emu.handle, &format!("team/app{i}"), "v1").await;
    }
}

async fn metric_sum(fleet: &Fleet, name: &str, labels: &[&str]) -> u64 {
    let mut n = 0;
    for r in &fleet.replicas {
        let m = common::get_text(&format!("http://{}/metrics", r.addr)).await;
        n += common::sum_metric(&m, name, labels);
    }
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pipelined_sessions_work_through_any_replica_of_a_fleet_sharing_redis() {
    let emu = common::start_emulator_with_namespaces(&[("team", false)]).await;
    let fleet = fleet(&emu.handle, 3, true, true).await;
    let (b1, b2) = migrate(&emu.handle, &fleet, &fleet.lb).await;
    // Every image committed, and nothing committed references a blob TCR lacks.
    for i in 0..6 {
        common::assert_image_in_tcr(&emu.handle, &format!("team/app{i}"), "v1").await;
    }
    assert!(
        metric_sum(&fleet, "tcr_adapter_fleet_forwards_total{", &["forwarded"]).await > 0,
        "some session requests reached another replica than the one holding the session"
    );
    assert_eq!(
        metric_sum(&fleet, "tcr_adapter_fleet_forwards_total{", &["gone"]).await,
        0
    );
    eprintln!("base layers sent: {b1}, {b2}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_the_store_replicas_learn_alone_and_layers_cross_again() {
    let emu = common::start_emulator_with_namespaces(&[("team", false)]).await;
    let fleet = fleet(&emu.handle, 3, false, false).await;
    // The rest through another replica (deterministic: it has never heard of the layers).
    let other = format!("http://{}", fleet.replicas[1].addr);
    let (b1, b2) = migrate(&emu.handle, &fleet, &other).await;
    assert_eq!(
        (b1, b2),
        (2, 2),
        "with per-replica memory the other replica uploads each base layer again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_that_dies_takes_only_its_open_session_and_the_retry_completes() {
    let emu = common::start_emulator_with_namespaces(&[("team", false)]).await;
    // Each replica serves what reaches it: the session opened below lives on the first one
    // (with forwarding by repository it would live on the repository's owner).
    let mut fleet = fleet_with(&emu.handle, 2, true, true, false).await;
    let repo = "team/survivor";
    let data = layer(7, 200 << 10);
    let d = Digest::sha256_of(&data);
    // A session opened on the first replica (its id names it), which then goes away.
    let dying = format!("http://{}", fleet.replicas[0].addr);
    let on_dying = Job::new(
        Gen::V2_0,
        &dying,
        common::DEMO_SECRET_ID,
        common::DEMO_SECRET_KEY,
    );
    let loc = on_dying.initiate(repo).await;
    fleet.replicas.remove(0).stop().await;

    // The client goes on through the balancer: the session is gone, said in the protocol's words.
    let job = Job::new(
        Gen::V2_0,
        &fleet.lb,
        common::DEMO_SECRET_ID,
        common::DEMO_SECRET_KEY,
    );
    let url = job.upload_url(&loc, Some(&d));
    let headers = [("Content-Length", data.len().to_string())];
    let r = job
        .send(
            reqwest::Method::PUT,
            &url,
            &headers,
            Some(data.clone().into()),
        )
        .await;
    assert_eq!(r.status(), 404);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["errors"][0]["code"], "BLOB_UPLOAD_UNKNOWN", "{body}");

    // Its retry starts over on a live replica and the image commits.
    let config = config_of(repo);
    let manifest = manifest_of(&config, &[&data]);
    let copied = job
        .copy_image(
            repo,
            "v1",
            &[&config, &data],
            harbor::OCI_MANIFEST,
            manifest.as_bytes(),
        )
        .await;
    assert_eq!(copied.uploaded, 2);
    common::assert_image_in_tcr(&emu.handle, repo, "v1").await;
    assert_eq!(
        common::uploads_into_tcr(&emu.handle, &d),
        1,
        "only the retry reached TCR"
    );
}

/// Realm tokens TCR issued (`GET /token`) while six images are migrated as in [`migrate`].
async fn tokens_for_migration(emu: &EmulatorHandle, fleet: &Fleet) -> u64 {
    let before = common::registry_requests(emu, &["route=\"token\""]).await;
    let (b1, b2) = migrate(emu, fleet, &fleet.lb).await;
    assert_eq!((b1, b2), (1, 1), "each base layer crossed once");
    for i in 0..6 {
        common::assert_image_in_tcr(emu, &format!("team/app{i}"), "v1").await;
    }
    common::registry_requests(emu, &["route=\"token\""]).await - before
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fleet_serving_each_repository_from_one_replica_asks_tcr_for_one_adapters_tokens() {
    // One adapter (a fleet of one behind the same balancer) against three replicas.
    let one = {
        let emu = common::start_emulator_with_namespaces(&[("team", false)]).await;
        let fleet = fleet(&emu.handle, 1, true, false).await;
        tokens_for_migration(&emu.handle, &fleet).await
    };
    let emu = common::start_emulator_with_namespaces(&[("team", false)]).await;
    let fleet = fleet(&emu.handle, 3, true, false).await;
    let three = tokens_for_migration(&emu.handle, &fleet).await;
    // Each replica holds its own tokens (they are secrets, never in the store): a repository
    // whose requests reach three replicas costs up to three times the tokens.
    assert!(
        three <= one + 2,
        "three replicas asked TCR for {three} realm tokens, one adapter for {one}"
    );
    assert!(
        metric_sum(&fleet, "tcr_adapter_fleet_forwards_total{", &["forwarded"]).await > 0,
        "requests reaching another replica than their repository's were streamed there"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_head_on_one_replica_is_answered_from_another_replicas_pipelined_upload() {
    // A slow TCR: the first job's background upload is still running when the second job asks.
    let dir = tempfile::tempdir().unwrap();
    let mut ecfg = common::emulator_config(dir.path());
    ecfg.faults.latency_ms = 400;
    let emu = common::start_emulator_with(ecfg).await;
    emu.state.namespaces.create("team", false).unwrap();
    // Each replica serves what reaches it: the HEAD below is on another replica than the job.
    let fleet = fleet_with(&emu, 2, true, true, false).await;
    let base = layer(3, 256 << 10);
    let d = Digest::sha256_of(&base);
    let job = |i: usize| {
        Job::new(
            Gen::V2_0,
            &format!("http://{}", fleet.replicas[i].addr),
            common::DEMO_SECRET_ID,
            common::DEMO_SECRET_KEY,
        )
    };
    let (first, second) = (job(0), job(1));
    // The first job sends the layer into team/one through replica 0 (acknowledged at once, its
    // upload to TCR runs in the background there).
    first.push_blob("team/one", &base).await;
    // The second job, through replica 1, asks about it for team/two: found, nothing to send.
    let r = second.head_blob("team/two", &d).await;
    assert_eq!(
        r.status(),
        200,
        "the layer on its way through replica 0 is found"
    );
    let config = config_of("team/two");
    let manifest = manifest_of(&config, &[&base]);
    let copied = second
        .copy_image(
            "team/two",
            "v1",
            &[&config, &base],
            harbor::OCI_MANIFEST,
            manifest.as_bytes(),
        )
        .await;
    assert_eq!(copied.uploaded, 1, "only the config is sent: {copied:?}");
    common::assert_image_in_tcr(&emu, "team/two", "v1").await;
    assert_eq!(
        common::uploads_into_tcr(&emu, &d),
        1,
        "the layer crossed once, through replica 0; replica 1 mounted it"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn repositories_of_a_replica_that_died_are_served_by_the_others() {
    let emu = common::start_emulator_with_namespaces(&[("team", false)]).await;
    let mut fleet = fleet(&emu.handle, 3, true, false).await;
    // Three repositories the first replica owns (as the others see it), three it does not.
    let dying = fleet.replicas[0].addr.to_string();
    let other = fleet.replicas[1].state.front.wan.fleet.clone().unwrap();
    let owned_by_dying = |repo: &str| {
        let repo = tcr_adapter::oci::RepoName::parse(repo).unwrap();
        other
            .owner_of(&repo)
            .is_some_and(|(_, url)| url.ends_with(&dying))
    };
    let mut repos: Vec<String> = (0..100)
        .map(|i| format!("team/after{i}"))
        .filter(|r| owned_by_dying(r))
        .take(3)
        .collect();
    repos.extend(
        (0..100)
            .map(|i| format!("team/after{i}"))
            .filter(|r| !owned_by_dying(r))
            .take(3),
    );
    assert_eq!(repos.len(), 6);
    // It goes away while the others still count it among the live ones.
    fleet.replicas.remove(0).stop().await;
    let (b1, b2) = (layer(4, 64 << 10), layer(5, 32 << 10));
    let jobs = repos.iter().enumerate().map(|(i, repo)| {
        let (lb, b1, b2) = (fleet.lb.clone(), b1.clone(), b2.clone());
        async move {
            let own = layer(40 + i as u8, 4096);
            copy(&lb, repo, &[&b1, &b2], &own).await;
        }
    });
    futures_util::future::join_all(jobs).await;
    // Every image is complete: a repository the dead replica owned was served by a live one
    // (its first request, without a body, where it arrived; the rest by the new owner).
    for repo in &repos {
        common::assert_image_in_tcr(&emu.handle, repo, "v1").await;
    }
    assert!(
        metric_sum(&fleet, "tcr_adapter_fleet_forwards_total{", &["failed"]).await > 0,
        "a forward to the dead replica was tried and given up"
    );
}

/// A migration team's Tencent Cloud API keys (an account of its own in the emulator).
const MIGRATOR: (&str, &str) = (
    "AKIDmigrationteam0000000000000000001",
    "migration-team-secret-key-000000001",
);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_job_retried_on_another_replica_mounts_what_its_keys_pushed_through_the_first() {
    // API-key callers: each replica logs in to TCR with a temporary credential of its own
    // making; the fleet must still know them as one caller. The keys are a migration team's
    // own, not the adapter's (which every replica exchanges as it starts).
    let dir = tempfile::tempdir().unwrap();
    let mut ecfg = common::emulator_config(dir.path());
    ecfg.accounts.push(tcr_adapter::config::EmulatorAccount {
        secret_id: MIGRATOR.0.into(),
        secret_key: Secret::new(MIGRATOR.1),
        uin: "100000000009".into(),
        ..Default::default()
    });
    let emu = common::start_emulator_with(ecfg).await;
    emu.state.namespaces.create("team", false).unwrap();
    // Two replicas sharing Redis, each reached directly (its own token realm, so each exchanges
    // the keys for a credential of its own): the retry reaches the other one.
    let (_redis, replicas) = direct_pair(&emu).await;
    let job = |i: usize| {
        Job::new(
            Gen::V2_0,
            &format!("http://{}", replicas[i].addr),
            MIGRATOR.0,
            MIGRATOR.1,
        )
    };
    let base = layer(6, 128 << 10);
    let d = Digest::sha256_of(&base);
    // Through replica 0: an image into team/one, and the config of team/two (the first attempt
    // of a job that replica 0 did not finish).
    let first = job(0);
    let config_one = config_of("team/one");
    let manifest_one = manifest_of(&config_one, &[&base]);
    first
        .copy_image(
            "team/one",
            "v1",
            &[&config_one, &base],
            harbor::OCI_MANIFEST,
            manifest_one.as_bytes(),
        )
        .await;
    let config_two = config_of("team/two");
    first.push_blob("team/two", &config_two).await;
    // The retry, through replica 1 with fresh tokens: its config is there, and its base layer's
    // HEAD (pull-scoped, this caller's first question about it on replica 1) finds the layer
    // mounted, because the store knows these keys pushed into `team` through replica 0.
    // A second later: TCR's temporary credential for replica 1 differs from replica 0's (the
    // emulator's JWTs differ by their issue time, in seconds; TCR's by more).
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let retry = job(1);
    assert!(
        retry
            .blob_exists("team/two", &Digest::sha256_of(&config_two))
            .await
    );
    let r = retry.head_blob("team/two", &d).await;
    assert_eq!(r.status(), 200, "the base layer is mounted, not sent again");
    let manifest_two = manifest_of(&config_two, &[&base]);
    let copied = retry
        .copy_image(
            "team/two",
            "v1",
            &[&config_two, &base],
            harbor::OCI_MANIFEST,
            manifest_two.as_bytes(),
        )
        .await;
    assert_eq!(copied.uploaded, 0, "nothing left to send: {copied:?}");
    common::assert_image_in_tcr(&emu, "team/two", "v1").await;
    assert_eq!(
        common::uploads_into_tcr(&emu, &d),
        1,
        "the layer crossed once"
    );
}

/// Mounts made ahead are guessed from the manifests any replica saw pushed: three images on one
/// base pushed through one replica, a fourth image's manifest HEAD through another (sharing the
/// store, reached directly) has the namespace's base layers mounted into the new repository
/// while Harbor uploads its config; their HEADs find them there. Per-replica evidence would
/// leave the second replica guessing nothing (each HEAD then waits for its own mount).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_image_on_another_replica_has_the_namespace_base_layers_mounted_ahead() {
    let emu = common::start_emulator_with_namespaces(&[("nsb", false)]).await;
    let (_redis, replicas) = direct_pair(&emu.handle).await;
    let (b1, b2) = (layer(80, 32 << 10), layer(81, 16 << 10));
    let (d1, d2) = (Digest::sha256_of(&b1), Digest::sha256_of(&b2));
    let first = format!("http://{}", replicas[0].addr);
    for i in 0..3u8 {
        copy(
            &first,
            &format!("nsb/a{i}"),
            &[&b1, &b2],
            &layer(82 + i, 2000),
        )
        .await;
    }
    let job = Job::new(
        Gen::V2_0,
        &format!("http://{}", replicas[1].addr),
        common::DEMO_SECRET_ID,
        common::DEMO_SECRET_KEY,
    );
    // The job's first write into the namespace through this replica (its config), then the
    // manifest HEAD of its new image, as Harbor asks it.
    job.push_blob("nsb/new", &config_of("nsb/new")).await;
    let (status, _) = job.head_manifest("nsb/new", "v1").await;
    assert_eq!(status, 404);
    let mounted = |d: &Digest| common::mounts_into_tcr(&emu.handle, "nsb/new", d);
    let mut ahead = false;
    for _ in 0..250 {
        if mounted(&d1) == 1 && mounted(&d2) == 1 {
            ahead = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(
        ahead,
        "the base layers were not mounted at the manifest HEAD"
    );
    for (d, b) in [(&d1, &b1), (&d2, &b2)] {
        let r = job.head_blob("nsb/new", d).await;
        assert_eq!(r.status(), 200);
        let len = r
            .headers()
            .get("content-length")
            .map(|v| v.to_str().unwrap().to_string());
        assert_eq!(len, Some(b.len().to_string()));
        assert_eq!(mounted(d), 1, "mounted twice");
    }
    assert_eq!(common::uploads_into_tcr(&emu.handle, &d1), 1);
    assert_eq!(common::uploads_into_tcr(&emu.handle, &d2), 1);
}
