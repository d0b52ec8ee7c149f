//! A Prometheus server on loopback scrapes the running adapter binary (its own emulator process
//! behind it): every metric family the dashboard and the rules query is scraped, readiness is 1,
//! no alert fires while TCR answers, and `TcrAdapterNotReady` and `TcrAdapterUpstreamUnreachable`
//! fire once the emulator is stopped and traffic keeps coming.

use super::{common, families, oci_layout, DASHBOARD, RULES};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

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
    let (adapter, base, _) =
        common::serve_binary(&emu, tmp.path(), "", &common::demo_keys_toml()).await;
    let port: u16 = base.rsplit(':').next().unwrap().parse().unwrap();

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

    let (prom, prom_url) = common::prometheus(tmp.path(), port, &fast_rules());
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
