//! Processes dying and coming back: the adapter killed with -9 in the middle of a chunked upload
//! and restarted (the client finishes with the same `Location` and token: the upload state lives
//! in the sealed `Location`), the emulator killed with -9 mid-push and restarted on its data
//! (nothing half-visible, the re-push completes), and abandoned upload sessions purged.

use crate::common::SendOk;
use std::time::Duration;

use reqwest::StatusCode;
use tcr_adapter::oci::Digest;

use crate::{common, record};

pub use crate::common::{
    adapter_toml, free_port, serve_binary, spawn, stream_of as tokio_stream_of, token, wait_up,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_adapter_killed_mid_upload_restarts_and_the_upload_finishes() {
    let emu = common::start_emulator().await;
    let dir = tempfile::tempdir().unwrap();
    let (adapter, base, cfg) = serve_binary(&emu, dir.path(), "", "").await;
    let http = reqwest::Client::new();
    let blob: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let digest = Digest::sha256_of(&blob);
    let (tok, loc) = crate::push_session(&http, &base, "killed/app").await;
    let first = http.patch(&loc).bearer_auth(&tok);
    let first = first.header("Content-Range", format!("0-{}", 1_000_000 - 1));
    let loc = crate::patch_accepted(first.body(blob[..1_000_000].to_vec())).await;
    // A second PATCH is cut by kill -9 while its body streams.
    let (tx, cut) = common::streaming_patch(&http, &loc, &tok);
    tx.send(Ok(vec![7u8; 100_000])).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    adapter.kill9();
    drop(tx);
    let _ = cut.await.unwrap(); // cut by the kill: an error or a 5xx, never a success we rely on
    assert_eq!(
        emu.handle.state.storage.stored_size(&digest).await,
        None,
        "nothing half-visible"
    );
    // Restart on the same port: the client resumes from the upload's status with its token.
    let adapter = spawn("serve", &cfg);
    wait_up(&format!("{base}/healthz")).await;
    // Connections to the dead process are gone: start afresh, as a client reconnecting does.
    let http = reqwest::Client::new();
    let r = http.get(&loc).bearer_auth(&tok).send_ok().await;
    assert_eq!(
        r.status(),
        204,
        "the upload session survived the adapter's death"
    );
    let range = crate::common::header(&r, "range");
    let done: usize = range.trim_start_matches("0-").parse::<usize>().unwrap() + 1;
    assert!(done >= 1_000_000, "{range}");
    let loc = crate::common::header(&r, "location");
    assert_eq!(done, 1_000_000, "partial chunk kept: {range}");
    crate::assert_upload_completes(&emu.handle, (&loc, &tok), &blob, done, &digest).await;
    record(
        "adapter process killed with SIGKILL during a chunked upload, restarted",
        "1 kill -9 mid-PATCH",
        "the cut PATCH failed; after the restart the same Location and token answered the upload status (204, Range 0-999999)",
        "the rest was PUT through the new process; the blob's digest verified by the registry; nothing visible before",
    );
    drop(adapter);
    emu.handle.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_emulator_killed_mid_push_restarts_without_half_written_blobs() {
    let dir = tempfile::tempdir().unwrap();
    let (reg, api) = (free_port(), free_port());
    let cfg = common::emulator_toml(
        dir.path(),
        &format!("127.0.0.1:{reg}"),
        &format!("127.0.0.1:{api}"),
    );
    let emu = spawn("emulator", &cfg);
    wait_up(&format!("http://127.0.0.1:{reg}/v2/")).await;
    let mut acfg = tcr_adapter::config::Config::default();
    acfg.server.listen = "127.0.0.1:0".parse().unwrap();
    acfg.tcr.registry_url = format!("http://127.0.0.1:{reg}");
    acfg.tcr.api_endpoint = format!("http://127.0.0.1:{api}");
    acfg.tcr.registry_id = "tcr-emulator".into();
    acfg.tcr.region = "ap-guangzhou".into();
    let adapter = tcr_adapter::app::start(acfg, tcr_adapter::clock::system())
        .await
        .unwrap();
    let base = format!("http://{}", adapter.addr);
    let repo = "restarted/app";
    let tok = token(&base, &format!("repository:{repo}:pull,push")).await;
    let blob: Vec<u8> = (0..8_000_000u32).map(|i| (i % 241) as u8).collect();
    let digest = Digest::sha256_of(&blob);
    let http = reqwest::Client::new();
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(2);
    let push = tokio::spawn({
        let (http, base, tok, digest) = (http.clone(), base.clone(), tok.clone(), digest.clone());
        async move {
            let body = reqwest::Body::wrap_stream(tokio_stream_of(rx));
            http.post(format!("{base}/v2/{repo}/blobs/uploads/?digest={digest}"))
                .bearer_auth(&tok)
                .header("Content-Length", blob_len())
                .body(body)
                .send()
                .await
                .map(|r| r.status())
        }
    });
    for c in blob[..2_000_000].chunks(500_000) {
        tx.send(Ok(c.to_vec())).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    emu.kill9();
    drop(tx);
    let cut = push.await.unwrap();
    assert!(
        cut.as_ref().map_or(true, |s| *s != StatusCode::CREATED),
        "{cut:?}"
    );
    let emu = spawn("emulator", &cfg);
    wait_up(&format!("http://127.0.0.1:{reg}/v2/")).await;
    let head = http
        .head(format!("{base}/v2/{repo}/blobs/{digest}"))
        .bearer_auth(&tok)
        .send_ok()
        .await;
    assert_eq!(head.status(), 404, "no half-written blob after the crash");
    let r = http
        .post(format!("{base}/v2/{repo}/blobs/uploads/?digest={digest}"))
        .bearer_auth(&tok)
        .body(blob.clone())
        .send_ok()
        .await;
    assert_eq!(r.status(), 201, "{:?}", r.text().await);
    let got = http
        .get(format!("{base}/v2/{repo}/blobs/{digest}"))
        .bearer_auth(&tok)
        .send_ok()
        .await
        .bytes()
        .await
        .unwrap();
    assert_eq!(Digest::sha256_of(&got), digest);
    record(
        "emulator (TCR) process killed with SIGKILL during a monolithic 8 MB blob push, restarted on its data",
        "1 kill -9 after 2 MB",
        "the cut push failed (no 201)",
        "after the restart the blob was absent (404, nothing half-written); the re-push gave 201 and read back with its digest",
    );
    adapter.stop().await;
    drop(emu);
}

fn blob_len() -> String {
    8_000_000.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_uploads_are_purged_and_active_ones_kept() {
    let dir = tempfile::tempdir().unwrap();
    let mut ec = common::emulator_config(dir.path());
    ec.upload_purge_after_secs = 2;
    let emu = common::start_emulator_with(ec).await;
    emu.state.namespaces.create("purge", false).unwrap();
    let tok = emu
        .state
        .tokens
        .issue(common::DEMO_UIN, tcr_adapter::emulator::TokenKind::Temp);
    let auth = common::basic(&tok.username, &tok.token);
    let http = reqwest::Client::new();
    let start = || async {
        let r = http
            .post(format!(
                "{}/v2/purge/app/blobs/uploads/",
                emu.registry_url()
            ))
            .header("Authorization", &auth)
            .send_ok()
            .await;
        assert_eq!(r.status(), 202);
        let loc = crate::common::header(&r, "location");
        if loc.starts_with("http") {
            loc
        } else {
            format!("{}{loc}", emu.registry_url())
        }
    };
    let abandoned = start().await;
    let active = start().await;
    for i in 0..10 {
        let r = http
            .patch(&active)
            .header("Authorization", &auth)
            .body(vec![i as u8; 1000])
            .send_ok()
            .await;
        assert_eq!(r.status(), 202);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let status = |loc: String| {
        let (http, auth) = (http.clone(), auth.clone());
        async move {
            http.get(loc)
                .header("Authorization", auth)
                .send_ok()
                .await
                .status()
        }
    };
    assert_eq!(status(abandoned).await, 404, "idle > 2 s: purged");
    assert_eq!(status(active).await, 204, "written every 0.5 s: kept");
    let sessions = std::fs::read_dir(dir.path().join("registry/uploads"))
        .unwrap()
        .count();
    assert_eq!(sessions, 1, "the purged session's bytes are gone from disk");
    record(
        "abandoned upload session (emulator.upload_purge_after_secs = 2)",
        "1 session left idle for 5 s, 1 written every 0.5 s",
        "the idle session's status: 404 BLOB_UPLOAD_UNKNOWN; the active one: 204",
        "one session directory left on disk",
    );
    emu.stop().await;
}
