//! API keys on the data path, an oversized manifest, the metrics they leave, and an unreachable
//! upstream (502 naming the URL).

use crate::common;
use crate::common::SendOk;
use crate::harbor::{adapter_config, basic, image, Env, OCI_MANIFEST};
use reqwest::{Client, Method, StatusCode};
use tcr_adapter::app;
use tcr_adapter::clock;

#[tokio::test]
async fn api_keys_and_oversized_manifest_and_metrics() {
    let e = Env::default().await;
    let t = e
        .token_as(
            common::DEMO_SECRET_ID,
            common::DEMO_SECRET_KEY,
            &["repository:projk/app:pull,push"],
        )
        .await;
    let (layer, config, manifest) = image("k", OCI_MANIFEST);
    e.push_blob("projk/app", &t, &layer, false, true).await;
    e.push_blob("projk/app", &t, &config, false, true).await;
    e.put_manifest("projk/app", "v1", &t, OCI_MANIFEST, &manifest)
        .await;
    let big = vec![b' '; 4 * 1024 * 1024 + 1];
    let r = e
        .req(
            Method::PUT,
            "/v2/projk/app/manifests/big",
            Some(&t),
            &[("Content-Type", OCI_MANIFEST)],
            Some(big),
        )
        .await;
    assert_eq!(r.status(), 413);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["errors"][0]["code"], "MANIFEST_INVALID");
    let r = e.get_anon("/metrics").await;
    let text = r.text().await.unwrap();
    assert!(
        text.contains(
            "tcr_adapter_requests_total{method=\"PUT\",route=\"manifest\",status=\"201\"} 1"
        ),
        "{text}"
    );
    assert!(text.contains("tcr_adapter_upstream_token_cache_total{result=\"hit\"}"));
    assert!(text.contains("tcr_adapter_bytes_in_total"));
    e.adapter.stop().await;
}

#[tokio::test]
async fn unreachable_upstream_is_a_502_with_the_url() {
    let emu = common::start_emulator().await;
    let mut cfg = adapter_config(&emu.handle);
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);
    cfg.tcr.registry_url = dead_url.clone();
    let adapter = app::start(cfg, clock::system()).await.unwrap();
    let base = format!("http://{}", adapter.addr);
    // API keys are exchanged at the (live) cloud API, so a token is issued; the data plane is dead.
    let r = Client::new()
        .get(format!(
            "{base}/service/token?service=tcr-adapter&scope=repository:deadns/app:pull"
        ))
        .header(
            "Authorization",
            basic(common::DEMO_SECRET_ID, common::DEMO_SECRET_KEY),
        )
        .send_ok()
        .await;
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    let t = v["token"].as_str().unwrap();
    let r = Client::new()
        .get(format!("{base}/v2/deadns/app/manifests/latest"))
        .bearer_auth(t)
        .send_ok()
        .await;
    assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["errors"][0]["code"], "UNAVAILABLE");
    let msg = v["errors"][0]["message"].as_str().unwrap();
    // The client is told what failed, never the upstream's internal URL or socket error.
    assert!(
        !msg.contains(&dead_url) && msg.contains("could not be reached"),
        "{msg}"
    );
    adapter.stop().await;
}
