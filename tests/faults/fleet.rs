//! Three adapter **processes** sharing a real Redis behind a real nginx round-robin balancer
//! (`[state] redis_url`, `wan.pipeline = true`, no session affinity), twelve images copied ten at
//! a time by Harbor-faithful jobs (`wan_support::harbor`, per-scope tokens). Half way, one
//! adapter is killed with -9 and Redis is killed and started again. Every image completes
//! through the client's own retries (Harbor's jobservice runs a failed replication task again:
//! `MaxFails() = 3`, goharbor/harbor v2.9.5 `src/jobservice/job/impl/replication/replication.go`),
//! TCR then holds every manifest with every blob it references, and `tcr-adapter verify`
//! against the source (a CNCF distribution holding the same twelve images) says complete.

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::lifecycle::{adapter_toml, free_port, spawn, wait_up};
use crate::wan_support::{config_of, layer, manifest_of, Gen, Job};
use crate::{common, harbor, record};

/// Harbor runs a failed replication task again, three times in all.
const ATTEMPTS: usize = 3;
/// The pause before a task runs again. Harbor's jobservice schedules the retry through
/// gocraft/work, whose default backoff is fails⁴ + 15 + rand(30)·(fails + 1) seconds (at least
/// 16 s); shorter here, so that the test stays harsher than Harbor while a restarted Redis and a
/// dead replica's registration settle.
const RETRY_PAUSE: Duration = Duration::from_secs(5);

/// Copy one image as a Harbor task, run again (with a fresh client) when it fails.
async fn replicate_with_retries(
    lb: String,
    repo: String,
    blobs: Vec<Vec<u8>>,
    failures: Arc<AtomicUsize>,
) {
    let config = config_of(&repo);
    let refs: Vec<&[u8]> = blobs.iter().map(|b| b.as_slice()).collect();
    let manifest = manifest_of(&config, &refs);
    for attempt in 1..=ATTEMPTS {
        let (lb, task_repo, config, blobs, manifest) = (
            lb.clone(),
            repo.clone(),
            config.clone(),
            blobs.clone(),
            manifest.clone(),
        );
        let task = tokio::spawn(async move {
            let mut all: Vec<&[u8]> = vec![&config];
            all.extend(blobs.iter().map(|b| b.as_slice()));
            Job::new(
                Gen::V2_0,
                &lb,
                common::DEMO_SECRET_ID,
                common::DEMO_SECRET_KEY,
            )
            .copy_image(
                &task_repo,
                "v1",
                &all,
                harbor::OCI_MANIFEST,
                manifest.as_bytes(),
            )
            .await
        });
        match task.await {
            Ok(_) => return,
            Err(_) if attempt < ATTEMPTS => {
                failures.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(RETRY_PAUSE).await;
            }
            Err(e) => panic!("{repo}: every attempt failed: {e}"),
        }
    }
}

/// The source registry: a CNCF distribution (no auth) holding `repo:v1` for each image, the
/// same bytes the migration copies.
async fn source_with(
    dir: &std::path::Path,
    images: &[(String, Vec<Vec<u8>>)],
) -> (common::Proc, String) {
    let (proc, base) = common::distribution(dir, "fleet-verify-secret", "").await;
    let http = reqwest::Client::new();
    for (repo, blobs) in images {
        let config = config_of(repo);
        let refs: Vec<&[u8]> = blobs.iter().map(|b| b.as_slice()).collect();
        let manifest = manifest_of(&config, &refs);
        for b in std::iter::once(&config).chain(blobs) {
            let d = tcr_adapter::oci::Digest::sha256_of(b);
            let r = common::upload_blob(&http, &base, repo, b, d.as_str()).await;
            assert_eq!(r.status(), 201, "source blob in {repo}");
        }
        let r = http
            .put(format!("{base}/v2/{repo}/manifests/v1"))
            .header("content-type", harbor::OCI_MANIFEST)
            .body(manifest.into_bytes())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "source manifest {repo}:v1");
    }
    (proc, base)
}

/// `tcr-adapter verify --format json` of `source` against TCR (the emulator, its demo keys):
/// exit code and report.
fn verify(
    dir: &std::path::Path,
    emu: &common::TestEmulator,
    source: &str,
) -> (i32, serde_json::Value) {
    let config = common::verify_toml(dir, &emu.handle, 50, "");
    let out = Command::new(env!("CARGO_BIN_EXE_tcr-adapter"))
        .args([
            "verify",
            "--config",
            config.to_str().unwrap(),
            "--source",
            source,
        ])
        .args(["--format", "json"])
        .env_remove("TCR_ADAPTER_CONFIG")
        .output()
        .expect("tcr-adapter verify runs");
    let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
        panic!(
            "verify printed no report: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), report)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fleet_migration_survives_a_killed_adapter_and_a_restarted_redis() {
    let emu = common::start_emulator_with_namespaces(&[("fleet", false)]).await;
    let dir = tempfile::tempdir().unwrap();
    let (lb, redis_port) = (free_port(), free_port());
    let base = format!("http://127.0.0.1:{lb}");
    let mut redis = Some(common::redis_server(redis_port));
    let ports = [free_port(), free_port(), free_port()];
    let mut adapters = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        let spool = dir.path().join(format!("spool-{i}"));
        let path = dir.path().join(format!("adapter-{port}.toml"));
        let tail = format!(
            "[wan]\npipeline = true\nspool_dir = \"{}\"\n[state]\nredis_url = \"redis://127.0.0.1:{redis_port}/0\"\n",
            spool.display()
        );
        let server = format!("listen = \"127.0.0.1:{port}\"\npublic_url = \"{base}\"\n");
        std::fs::write(&path, adapter_toml(&emu, &server, &tail)).unwrap();
        adapters.push(Some(spawn("serve", &path)));
    }
    for port in ports {
        wait_up(&format!("http://127.0.0.1:{port}/healthz")).await;
    }
    let servers: String = ports
        .iter()
        .map(|p| format!("server 127.0.0.1:{p} max_fails=1 fail_timeout=10s; "))
        .collect();
    let _nginx = common::nginx(
        dir.path(),
        lb,
        &servers,
        "proxy_next_upstream error timeout;",
    );
    wait_up(&format!("{base}/healthz")).await;

    let (b1, b2) = (layer(1, 3 << 20), layer(2, 2 << 20));
    let repos: Vec<String> = (0..12).map(|i| format!("fleet/app{i}")).collect();
    let images: Vec<(String, Vec<Vec<u8>>)> = repos
        .iter()
        .enumerate()
        .map(|(i, repo)| {
            let own = layer(20 + i as u8, 512 << 10);
            (repo.clone(), vec![b1.clone(), b2.clone(), own])
        })
        .collect();
    let source_dir = dir.path().join("source");
    std::fs::create_dir_all(&source_dir).unwrap();
    let (_source, source) = source_with(&source_dir, &images).await;
    let failures = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let jobs = images.iter().map(|(repo, blobs)| {
        let blobs = blobs.clone();
        let (lb, repo, failures, done) =
            (base.clone(), repo.clone(), failures.clone(), done.clone());
        async move {
            replicate_with_retries(lb, repo, blobs, failures).await;
            done.fetch_add(1, Ordering::SeqCst);
        }
    });
    // Ten at a time, as a Harbor with ten job workers.
    let migration = async {
        use futures_util::StreamExt;
        futures_util::stream::iter(jobs)
            .buffer_unordered(10)
            .collect::<Vec<()>>()
            .await
    };
    let faults = async {
        // Half way (a few images committed): one adapter dies, Redis dies and comes back.
        while done.load(Ordering::SeqCst) < 3 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        adapters[0].take().unwrap().kill9();
        redis.take().unwrap().kill9();
        tokio::time::sleep(Duration::from_millis(500)).await;
        redis = Some(common::redis_server(redis_port));
    };
    tokio::join!(migration, faults);

    assert_eq!(done.load(Ordering::SeqCst), 12, "every image completed");
    let mut blobs = 0;
    for repo in &repos {
        blobs += common::assert_image_in_tcr(&emu.handle, repo, "v1").await;
    }
    // The migration's own check: every tag of the source in TCR with the same digest.
    let (code, report) = verify(dir.path(), &emu, &source);
    assert_eq!(code, 0, "verify says complete: {report}");
    assert_eq!(report["complete"], true, "{report}");
    assert_eq!(report["totals"]["ok"], 12, "{report}");
    let retried = failures.load(Ordering::SeqCst);
    record(
        "one of three adapter processes (shared Redis, wan.pipeline, nginx round robin) killed with -9 and Redis killed and restarted, half way through a 12-image migration ten at a time",
        "1 kill -9 of an adapter, 1 kill -9 + restart of Redis",
        &format!("{retried} image copies failed and were run again by the client (Harbor's task retry)"),
        &format!("all 12 images in TCR: every manifest and each of its {blobs} referenced blobs read back by digest; `tcr-adapter verify` against the source says complete (12 ok)"),
    );
    drop(adapters);
}
