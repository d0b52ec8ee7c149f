//! A ≥1 GiB blob through a separate adapter process: streamed, digest verified, bounded RSS.

use crate::common;
use crate::common::SendOk;
use reqwest::Client;
use tcr_adapter::oci::Digest;

/// A deterministic blob of `mib` MiB, generated chunk by chunk (never held whole in memory).
fn big_chunks(mib: usize) -> impl Iterator<Item = Vec<u8>> {
    let mut block = vec![0u8; 1 << 20];
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for b in block.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = (x >> 24) as u8;
    }
    (0..mib).map(move |i| {
        let mut c = block.clone();
        c[..8].copy_from_slice(&(i as u64).to_le_bytes());
        c
    })
}

fn rss_kib(pid: u32, field: &str) -> u64 {
    common::rss_kib(pid, field)
}

/// A ≥1 GiB blob pushed and pulled through the adapter running as its own process; its peak
/// RSS stays small because bodies are streamed (size: `TCR_BIG_BLOB_MIB`, default 1024).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn big_blob_streams_through_a_separate_adapter_process_in_bounded_memory() {
    let mib: usize = std::env::var("TCR_BIG_BLOB_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let max_rss_mib: u64 = std::env::var("TCR_BIG_BLOB_MAX_RSS_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    let emu = common::start_emulator().await;
    let dir = tempfile::tempdir().unwrap();
    let tail = format!("{}[log]\nlevel = \"warn\"\n", common::demo_keys_toml());
    let (adapter, base, _) = common::serve_binary(&emu, dir.path(), "workers = 2\n", &tail).await;
    let pid = adapter.pid();
    let http = Client::new();

    // Sample RSS while the transfer runs.
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let (peak, stop) = (peak.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                peak.fetch_max(rss_kib(pid, "VmRSS:"), std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        })
    };

    let (user, pass) = common::instance_credentials(&emu.handle);
    let t = common::token_as(&http, &base, &user, &pass, "repository:big/blob:pull,push").await;
    let mut h = openssl::sha::Sha256::new();
    for c in big_chunks(mib) {
        h.update(&c);
    }
    let digest = Digest::from_sha256(h.finish()).to_string();
    let size = (mib as u64) << 20;

    let started = std::time::Instant::now();
    let r = http
        .post(format!("{base}/v2/big/blob/blobs/uploads/"))
        .bearer_auth(&t)
        .header("Content-Length", "0")
        .send_ok()
        .await;
    assert_eq!(r.status(), 202);
    let loc = crate::common::header(&r, "location");
    let sep = if loc.contains('?') { '&' } else { '?' };
    let body = reqwest::Body::wrap_stream(futures_util::stream::iter(
        big_chunks(mib).map(Ok::<_, std::io::Error>),
    ));
    let r = http
        .put(format!("{loc}{sep}digest={digest}"))
        .bearer_auth(&t)
        .header("Content-Length", size.to_string())
        .body(body)
        .send_ok()
        .await;
    assert_eq!(r.status(), 201, "{:?}", r.text().await);
    let push_secs = started.elapsed().as_secs_f64();

    let started = std::time::Instant::now();
    let r = http
        .get(format!("{base}/v2/big/blob/blobs/{digest}"))
        .bearer_auth(&t)
        .send_ok()
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-length"], size.to_string().as_str());
    let mut stream = r.bytes_stream();
    let mut h = openssl::sha::Sha256::new();
    let mut got = 0u64;
    use futures_util::StreamExt;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        got += chunk.len() as u64;
        h.update(&chunk);
    }
    let pull_secs = started.elapsed().as_secs_f64();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    sampler.await.unwrap();
    assert_eq!(got, size);
    assert_eq!(Digest::from_sha256(h.finish()).to_string(), digest);
    let hwm = rss_kib(pid, "VmHWM:");
    let sampled = peak.load(std::sync::atomic::Ordering::Relaxed);
    println!(
        "big blob: {mib} MiB pushed in {push_secs:.1}s, pulled in {pull_secs:.1}s; adapter peak RSS {:.1} MiB (VmHWM), {:.1} MiB (sampled)",
        hwm as f64 / 1024.0,
        sampled as f64 / 1024.0
    );
    assert!(
        hwm / 1024 < max_rss_mib,
        "adapter VmHWM {} KiB is not below {max_rss_mib} MiB",
        hwm
    );
}
