//! Hostile and careless clients against the adapter binary: 200 slow-header connections
//! (slowloris) while ordinary requests keep being served, then 20 clients that drop their
//! connection in the middle of a blob upload; afterwards the adapter's open files and memory are
//! back where they were (within a tolerance) and nothing half-uploaded is visible.

use crate::common::SendOk;
use std::time::Duration;

use tokio::io::AsyncWriteExt;

use crate::lifecycle::{serve_binary, token, tokio_stream_of};
use crate::{common, record};

fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

fn rss_kib(pid: u32) -> u64 {
    common::rss_kib(pid, "VmRSS:")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_vanishing_clients_leave_no_trace() {
    let emu = common::start_emulator().await;
    let dir = tempfile::tempdir().unwrap();
    let (adapter, base, _) = serve_binary(
        &emu,
        dir.path(),
        "workers = 2\n",
        "[log]\nlevel = \"warn\"\n",
    )
    .await;
    let pid = adapter.0.id();
    let port: u16 = base.rsplit(':').next().unwrap().parse().unwrap();
    let repo = "clients/app";
    let tok = token(&base, &format!("repository:{repo}:pull,push")).await;
    let http = reqwest::Client::new();
    let normal = |i: u32| {
        let (http, base, tok) = (http.clone(), base.clone(), tok.clone());
        async move {
            let r = http
                .head(format!("{base}/v2/{repo}/blobs/sha256:{:064x}", i))
                .bearer_auth(&tok)
                .send_ok()
                .await;
            r.status().as_u16()
        }
    };
    // Warm up, then the baseline.
    for i in 0..20 {
        assert_eq!(normal(i).await, 404);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (fds0, rss0) = (fds(pid), rss_kib(pid));

    // 200 slowloris connections: a request line, then one header byte every 200 ms.
    let mut slow = Vec::new();
    for _ in 0..200 {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        slow.push(tokio::spawn(async move {
            let _ = s
                .write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                .await;
            for _ in 0..15 {
                tokio::time::sleep(Duration::from_millis(200)).await;
                if s.write_all(b"a").await.is_err() {
                    return;
                }
            }
        }));
    }
    let mut served = 0;
    for i in 0..30 {
        if normal(100 + i).await == 404 {
            served += 1;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        served, 30,
        "ordinary requests are served while 200 connections dribble headers"
    );
    for s in slow {
        let _ = s.await;
    }

    // 20 clients vanish in the middle of an upload.
    let mut vanishing = Vec::new();
    for i in 0..20u8 {
        let (http, base, tok) = (http.clone(), base.clone(), tok.clone());
        vanishing.push(tokio::spawn(async move {
            let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
            let digest = format!("sha256:{:064x}", 1000 + u32::from(i));
            let req = tokio::spawn(async move {
                http.post(format!("{base}/v2/{repo}/blobs/uploads/?digest={digest}"))
                    .bearer_auth(&tok)
                    .header("Content-Length", "10000000")
                    .body(reqwest::Body::wrap_stream(tokio_stream_of(rx)))
                    .send()
                    .await
            });
            for _ in 0..4 {
                let _ = tx.send(Ok(vec![i; 256 * 1024])).await;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            req.abort(); // the client goes away with 9 MB still to send
        }));
    }
    for v in vanishing {
        v.await.unwrap();
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    for i in 0..5 {
        assert_eq!(normal(200 + i).await, 404);
    }
    let (fds1, rss1) = (fds(pid), rss_kib(pid));
    println!("adapter fds {fds0} → {fds1}, RSS {rss0} KiB → {rss1} KiB");
    assert!(fds1 <= fds0 + 8, "open files grew: {fds0} → {fds1}");
    assert!(rss1 <= rss0 + 32 * 1024, "RSS grew: {rss0} → {rss1} KiB");
    // Sessions holding bytes (an empty one may be parked by the adapter for the next upload:
    // `wan.dedup` opens one beside a pusher's blob HEAD and cancels it unused after 30 s).
    let leftovers = std::fs::read_dir(emu.dir.path().join("registry/uploads")).map_or(0, |d| {
        d.flatten()
            .filter(|s| std::fs::metadata(s.path().join("data")).is_ok_and(|m| m.len() > 0))
            .count()
    });
    assert_eq!(leftovers, 0, "no half-written upload left in TCR's storage");
    record(
        "200 slowloris connections (a header byte every 200 ms), then 20 clients dropping mid-upload",
        "200 slow connections; 20 × 1 MB of 10 MB sent, then the connection closed",
        "30 of 30 ordinary requests served during the slowloris",
        &format!("adapter open fds {fds0} → {fds1}, RSS {} → {} MiB; no upload left half-written in the emulator", rss0 / 1024, rss1 / 1024),
    );
    drop(adapter);
    emu.handle.stop().await;
}
