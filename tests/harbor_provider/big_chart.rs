//! A 200 MiB chart (Harbor sends the whole archive in one request, goharbor/harbor#17139)
//! through the adapter running as its own process: it lands byte-identical in TCR while the
//! adapter's peak RSS stays far below the body's size, because the upload is streamed.

use reqwest::StatusCode;
use tcr_adapter::emulator::TokenKind;

use crate::common::charts::{self, sha256_hex};
use crate::common::{self};
use crate::harbor::basic;

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn vm_hwm_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_200_mib_chart_streams_through_a_separate_adapter_process() {
    let archive = charts::chart_archive("huge", "1.0.0", 200 << 20);
    let (ctype, body) = charts::multipart_chart("huge.tgz", &archive);
    let emu = common::start_emulator().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let cfg_path = dir.path().join("adapter.toml");
    std::fs::write(
        &cfg_path,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\nworkers = 2\n[tcr]\nregistry_url = \"{}\"\napi_endpoint = \"{}\"\nregistry_id = \"{}\"\nregion = \"{}\"\nsecret_id = \"{}\"\nsecret_key = \"{}\"\n[log]\nlevel = \"warn\"\n",
            emu.handle.registry_url(),
            emu.handle.api_url(),
            emu.handle.state.cfg.registry_id,
            emu.handle.state.cfg.region,
            common::DEMO_SECRET_ID,
            common::DEMO_SECRET_KEY,
        ),
    )
    .unwrap();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_tcr-adapter"))
        .args(["serve", "--config"])
        .arg(&cfg_path)
        .env_remove("TCR_ADAPTER_CONFIG")
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("adapter binary starts");
    let pid = child.id();
    let _guard = KillOnDrop(child);
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    for _ in 0..100 {
        if http
            .get(format!("{base}/healthz"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let before = vm_hwm_kib(pid);
    let auth = basic(common::DEMO_SECRET_ID, common::DEMO_SECRET_KEY);
    let r = http
        .post(format!("{base}/api/chartrepo/bigcharts/charts"))
        .header("Authorization", &auth)
        .header("Content-Type", ctype)
        .body(body)
        .send()
        .await
        .unwrap();
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

    let tok = emu
        .handle
        .state
        .tokens
        .issue(common::DEMO_UIN, TokenKind::Temp);
    let r = http
        .get(format!(
            "{}/chartrepo/bigcharts/charts/huge-1.0.0.tgz",
            emu.handle.registry_url()
        ))
        .header("Authorization", basic(&tok.username, &tok.token))
        .send()
        .await
        .unwrap();
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
