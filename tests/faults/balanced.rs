//! Two adapter **processes** (same keys) behind a real nginx, the first one killed with -9 while
//! a chunked upload streams through it: the client asks for the upload's status, nginx sends it
//! to the other process, which answers from the sealed `Location`, and the upload finishes there.

use crate::common::SendOk;
use std::time::Duration;

use tcr_adapter::oci::Digest;

use crate::lifecycle::{adapter_toml, free_port, spawn, wait_up};
use crate::{common, record};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_survives_the_death_of_the_process_that_started_it() {
    let emu = common::start_emulator().await;
    let dir = tempfile::tempdir().unwrap();
    let (lb, a_port, b_port) = (free_port(), free_port(), free_port());
    let base = format!("http://127.0.0.1:{lb}");
    let config = |port: u16| {
        let path = dir.path().join(format!("adapter-{port}.toml"));
        std::fs::write(
            &path,
            adapter_toml(
                &emu,
                &format!("listen = \"127.0.0.1:{port}\"\npublic_url = \"{base}\"\n"),
                "",
            ),
        )
        .unwrap();
        path
    };
    let a = spawn("serve", &config(a_port));
    let b = spawn("serve", &config(b_port));
    wait_up(&format!("http://127.0.0.1:{a_port}/healthz")).await;
    wait_up(&format!("http://127.0.0.1:{b_port}/healthz")).await;
    let _nginx = common::nginx(
        dir.path(),
        lb,
        &format!("server 127.0.0.1:{a_port} max_fails=1 fail_timeout=30s; server 127.0.0.1:{b_port} backup;"),
        "proxy_next_upstream error timeout;",
    );
    wait_up(&format!("{base}/healthz")).await;

    let http = reqwest::Client::new();
    let blob: Vec<u8> = (0..2_000_000u32).map(|i| (i % 253) as u8).collect();
    let digest = Digest::sha256_of(&blob);
    let (tok, loc) = crate::push_session(&http, &base, "balanced/app").await;
    assert!(loc.starts_with(&base), "{loc}");
    let first = http.patch(&loc).bearer_auth(&tok);
    let loc = crate::patch_accepted(first.body(blob[..1_000_000].to_vec())).await;
    // A PATCH streams through the first process, which dies half-way.
    let (tx, cut) = common::streaming_patch(&http, &loc, &tok);
    tx.send(Ok(blob[1_000_000..1_500_000].to_vec()))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    a.kill9();
    drop(tx);
    let cut = cut.await.unwrap();
    assert!(cut.as_ref().map_or(true, |s| !s.is_success()), "{cut:?}");
    // Connections to the dead process are gone: start afresh, as a client reconnecting does.
    let http = reqwest::Client::new();
    // The client asks where the upload stands: the other process answers.
    let r = http.get(&loc).bearer_auth(&tok).send_ok().await;
    assert_eq!(r.status(), 204, "{:?}", r.text().await);
    let range = crate::common::header(&r, "range");
    let done = range.trim_start_matches("0-").parse::<usize>().unwrap() + 1;
    assert!(done >= 1_000_000, "{range}");
    let loc = crate::common::header(&r, "location");
    crate::assert_upload_completes(&emu.handle, (&loc, &tok), &blob, done, &digest).await;
    record(
        "one of two adapter processes behind nginx killed with SIGKILL during a streamed PATCH",
        "1 kill -9",
        &format!("the cut PATCH failed; the upload status came from the other process (Range {range})"),
        "the upload finished through the surviving process; the blob's digest verified by the registry",
    );
    drop(b);
    emu.handle.stop().await;
}
