//! A 200 MiB chart (Harbor sends the whole archive in one request, goharbor/harbor#17139)
//! through the adapter running as its own process: it lands byte-identical in TCR while the
//! adapter's peak RSS stays far below the body's size, because the upload is streamed.

use crate::common::SendOk;
use reqwest::StatusCode;

use crate::common::charts::{self, sha256_hex};
use crate::common::{self};
use crate::harbor::basic;

fn vm_hwm_kib(pid: u32) -> u64 {
    common::rss_kib(pid, "VmHWM:")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_200_mib_chart_streams_through_a_separate_adapter_process() {
    let archive = charts::chart_archive("huge", "1.0.0", 200 << 20);
    let (ctype, body) = charts::multipart_chart("huge.tgz", &archive);
    let emu = common::start_emulator().await;
    let dir = tempfile::tempdir().unwrap();
    let tail = format!("{}[log]\nlevel = \"warn\"\n", common::demo_keys_toml());
    let (adapter, base, _) = common::serve_binary(&emu, dir.path(), "workers = 2\n", &tail).await;
    let pid = adapter.pid();
    let http = reqwest::Client::new();
    let before = vm_hwm_kib(pid);
    let auth = basic(common::DEMO_SECRET_ID, common::DEMO_SECRET_KEY);
    let r = http
        .post(format!("{base}/api/chartrepo/bigcharts/charts"))
        .header("Authorization", &auth)
        .header("Content-Type", ctype)
        .body(body)
        .send_ok()
        .await;
    assert_eq!(
        r.status(),
        StatusCode::CREATED,
        "{}",
        r.text().await.unwrap()
    );
    let peak = vm_hwm_kib(pid);
    println!(
        "200 MiB chart upload: adapter peak RSS (VmHWM) {:.1} MiB (before the upload {:.1} MiB)",
        peak as f64 / 1024.0,
        before as f64 / 1024.0
    );
    assert!(
        peak > 0 && peak < 100 * 1024,
        "peak RSS {peak} KiB: the upload was buffered"
    );

    let r = common::tcr_chart_file(&http, &emu.handle, "bigcharts", "huge-1.0.0.tgz").await;
    assert_eq!(r.status(), StatusCode::OK);
    let stored = r.bytes().await.unwrap();
    assert_eq!(stored.len(), archive.len());
    assert_eq!(
        sha256_hex(&stored),
        sha256_hex(&archive),
        "byte-identical in TCR"
    );
    emu.handle.stop().await;
}
