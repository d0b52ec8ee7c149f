//! A Prometheus server on loopback scrapes the running adapter binary (its own emulator process
//! behind it): every metric family the dashboard and the rules query is scraped, readiness is 1,
//! no alert fires while TCR answers, and `TcrAdapterNotReady` and `TcrAdapterUpstreamUnreachable`
//! fire once the emulator is stopped and traffic keeps coming.

use super::{common, families, oci_layout, DASHBOARD, RULES};
use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

async fn prom_get(base: &str, path: &str) -> serde_json::Value {
    match reqwest::get(format!("{base}{path}")).await {
        Ok(r) => r.json().await.unwrap_or_default(),
        Err(_) => serde_json::Value::Null,
    }
}

/// The rules with every `for:` shortened to 1 s, so that a test sees alerts fire.
fn fast_rules() -> String {
    std::fs::read_to_string(RULES)
        .unwrap()
        .lines()
        .map(|l| {
            let indent = &l[..l.len() - l.trim_start().len()];
            if l.trim_start().starts_with("for: ") {
                format!("{indent}for: 1s")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn start_prometheus(dir: &std::path::Path, target_port: u16) -> (KillOnDrop, String) {
    common::require_tool("prometheus");
    let rules = dir.join("rules.yml");
    std::fs::write(&rules, fast_rules()).unwrap();
    let cfg = dir.join("prometheus.yml");
    std::fs::write(
        &cfg,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\nscrape_configs:\n  - job_name: tcr-adapter\n    static_configs:\n      - targets: ['127.0.0.1:{target_port}']\n",
            rules.display()
        ),
    )
    .unwrap();
    let port = free_port();
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", cfg.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("tsdb").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start prometheus");
    (KillOnDrop(child), format!("http://127.0.0.1:{port}"))
}

async fn start_adapter(
    dir: &std::path::Path,
    emu: &tcr_adapter::emulator::EmulatorHandle,
) -> (KillOnDrop, u16) {
    let port = free_port();
    let config = dir.join("adapter.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\n[tcr]\nregistry_url = \"{}\"\napi_endpoint = \"{}\"\nregistry_id = \"{}\"\nregion = \"{}\"\nsecret_id = \"{}\"\nsecret_key = \"{}\"\n",
            emu.registry_url(),
            emu.api_url(),
            emu.state.cfg.registry_id,
            emu.state.cfg.region,
            common::DEMO_SECRET_ID,
            common::DEMO_SECRET_KEY
        ),
    )
    .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_tcr-adapter"))
        .args(["serve", "--config", config.to_str().unwrap()])
        .env_remove("TCR_ADAPTER_CONFIG")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let guard = KillOnDrop(child);
    let up = Instant::now();
    while reqwest::get(format!("http://127.0.0.1:{port}/healthz"))
        .await
        .is_err()
    {
        assert!(
            up.elapsed() < Duration::from_secs(20),
            "adapter did not start"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (guard, port)
}

/// Metric families Prometheus has scraped so far.
async fn scraped(prom: &str) -> BTreeSet<String> {
    let names = prom_get(prom, "/api/v1/label/__name__/values").await;
    names["data"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|n| n.as_str())
                .flat_map(families)
                .collect()
        })
        .unwrap_or_default()
}

async fn firing(prom: &str) -> BTreeSet<String> {
    let alerts = prom_get(prom, "/api/v1/alerts").await;
    alerts["data"]["alerts"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|a| a["state"] == "firing")
                .filter_map(|a| a["labels"]["alertname"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_every_queried_metric_and_fires_alerts_when_tcr_goes_away() {
    common::require_tool("skopeo");
    let wanted: BTreeSet<String> = families(&std::fs::read_to_string(DASHBOARD).unwrap())
        .union(&families(&std::fs::read_to_string(RULES).unwrap()))
        .cloned()
        .collect();
    let tmp = tempfile::tempdir().unwrap();
    let emu = common::start_emulator_with(common::emulator_config(&tmp.path().join("emu"))).await;
    let (adapter, port) = start_adapter(tmp.path(), &emu).await;
    let base = format!("http://127.0.0.1:{port}");

    // Traffic: pushes into two new namespaces and a pull, then a readiness probe.
    let layout_dir = tmp.path().join("layout");
    let mut layout = oci_layout::Layout::new(&layout_dir);
    layout.tag_image("v1", 7);
    layout.finish();
    let creds = format!("{}:{}", common::DEMO_SECRET_ID, common::DEMO_SECRET_KEY);
    for ns in ["mon-a", "mon-b"] {
        let dest = format!("127.0.0.1:{port}/{ns}/app:v1");
        common::skopeo_push(&layout_dir, "v1", &dest, &creds).await;
    }
    common::skopeo_raw_manifest(&format!("127.0.0.1:{port}/mon-a/app:v1"), &creds).await;
    assert_eq!(
        reqwest::get(format!("{base}/readyz"))
            .await
            .unwrap()
            .status(),
        200
    );

    let (prom, prom_url) = start_prometheus(tmp.path(), port);
    let start = Instant::now();
    let missing = loop {
        let have = scraped(&prom_url).await;
        let missing: Vec<String> = wanted.difference(&have).cloned().collect();
        if missing.is_empty() || start.elapsed() > Duration::from_secs(60) {
            break missing;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(missing.is_empty(), "queried but never scraped: {missing:?}");
    let ready = prom_get(&prom_url, "/api/v1/query?query=tcr_adapter_ready").await;
    assert_eq!(ready["data"]["result"][0]["value"][1], "1", "{ready}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let quiet = firing(&prom_url).await;
    assert!(
        quiet.is_empty(),
        "alerts firing while TCR answers: {quiet:?}"
    );

    // Fault: TCR goes away; probes and pulls keep coming as a load balancer and Harbor would send.
    emu.stop().await;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let want = ["TcrAdapterNotReady", "TcrAdapterUpstreamUnreachable"];
    let start = Instant::now();
    loop {
        let _ = http.get(format!("{base}/readyz")).send().await;
        let _ = http
            .get(format!("{base}/v2/mon-a/app/manifests/v1"))
            .basic_auth(common::DEMO_SECRET_ID, Some(common::DEMO_SECRET_KEY))
            .send()
            .await;
        let now = firing(&prom_url).await;
        if want.iter().all(|w| now.contains(*w)) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "still not firing all of {want:?}: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    drop(prom);
    drop(adapter);
}
