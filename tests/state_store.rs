//! Replicas that share a real Redis (`[state] redis_url`, Debian's `redis-server` on a loopback
//! port): a credential refused by one replica is answered from memory by the other without an
//! upstream call; a store that goes away degrades (counted, shown in `/readyz`, requests still
//! served from each replica's own memory) and is picked up again when it comes back.

mod common;

use std::time::Duration;

use tcr_adapter::app::AdapterHandle;
use tcr_adapter::config::Secret;

async fn replica(emu: &common::TestEmulator, redis_port: u16) -> (AdapterHandle, String) {
    let mut cfg = common::adapter_config(&emu.handle);
    cfg.state.redis_url = Secret::new(format!("redis://127.0.0.1:{redis_port}/0"));
    cfg.state.timeout_ms = 300;
    cfg.state.key_prefix = format!("refusals-{redis_port}");
    common::start_adapter(cfg).await
}

async fn token_status(base: &str, user: &str, pass: &str) -> u16 {
    reqwest::Client::new()
        .get(format!(
            "{base}/service/token?service=tcr-adapter&scope=repository:ns/app:pull"
        ))
        .header("Authorization", common::basic(user, pass))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn metric(base: &str, name: &str, labels: &[&str]) -> u64 {
    let text = common::get_text(&format!("{base}/metrics")).await;
    common::sum_metric(&text, name, labels)
}

async fn readyz(base: &str) -> (u16, serde_json::Value) {
    let r = reqwest::get(format!("{base}/readyz")).await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_credential_refused_by_one_replica_costs_the_other_no_upstream_call() {
    let emu = common::start_emulator().await;
    let port = common::free_port();
    let _redis = common::redis_server(port);
    let (_a, base_a) = replica(&emu, port).await;
    let (_b, base_b) = replica(&emu, port).await;
    let bad_key = "AKIDnobodyHasThisKey000000000000";

    assert_eq!(token_status(&base_a, bad_key, "wrong").await, 401);
    let calls_after_a = common::api_calls(&emu.handle, &["CreateInstanceToken"]).await;
    assert!(calls_after_a >= 1, "replica A asked the cloud API");

    // Replica B has never seen the key: it knows the refusal from the shared store.
    assert_eq!(token_status(&base_b, bad_key, "wrong").await, 401);
    assert_eq!(
        common::api_calls(&emu.handle, &["CreateInstanceToken"]).await,
        calls_after_a,
        "replica B answered from the shared memory"
    );
    assert_eq!(
        metric(
            &base_b,
            "tcr_adapter_credential_failures_total{",
            &["remembered"]
        )
        .await,
        1
    );
    // Good keys still work through B, and the store is reported healthy.
    let (id, key) = (common::DEMO_SECRET_ID, common::DEMO_SECRET_KEY);
    assert_eq!(token_status(&base_b, id, key).await, 200);
    let (status, body) = readyz(&base_b).await;
    assert_eq!(status, 200);
    assert_eq!(body["checks"]["state_store"], "ok (redis)");
    assert_eq!(
        metric(&base_b, "tcr_adapter_state_store_errors_total", &[]).await,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_goes_away_degrades_and_is_picked_up_again() {
    let emu = common::start_emulator().await;
    let port = common::free_port();
    let redis = common::redis_server(port);
    let (_a, base) = replica(&emu, port).await;
    let (id, key) = (common::DEMO_SECRET_ID, common::DEMO_SECRET_KEY);
    assert_eq!(token_status(&base, id, key).await, 200);

    redis.kill9();
    // Requests go on from the replica's own memory; a bad key is still refused (and remembered
    // locally: the second try costs no cloud call).
    assert_eq!(token_status(&base, id, key).await, 200);
    let bad_key = "AKIDnobodyHasThisKeyEither000000";
    assert_eq!(token_status(&base, bad_key, "wrong").await, 401);
    let calls = common::api_calls(&emu.handle, &["CreateInstanceToken"]).await;
    assert_eq!(token_status(&base, bad_key, "wrong").await, 401);
    assert_eq!(
        common::api_calls(&emu.handle, &["CreateInstanceToken"]).await,
        calls
    );

    let (status, body) = readyz(&base).await;
    assert_eq!(
        status, 200,
        "a missing store never makes the adapter unready: {body}"
    );
    let shown = body["checks"]["state_store"].as_str().unwrap().to_string();
    assert!(shown.starts_with("degraded"), "{shown}");
    assert!(metric(&base, "tcr_adapter_state_store_errors_total", &[]).await >= 1);
    assert_eq!(metric(&base, "tcr_adapter_state_store_up", &[]).await, 0);

    // Back on the same port: picked up again by the next probe.
    let _redis = common::redis_server(port);
    let mut shown = String::new();
    for _ in 0..50 {
        let (_, body) = readyz(&base).await;
        shown = body["checks"]["state_store"].as_str().unwrap().to_string();
        if shown == "ok (redis)" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(shown, "ok (redis)");
    assert_eq!(metric(&base, "tcr_adapter_state_store_up", &[]).await, 1);
}

/// The WAN state on Redis as two replicas see it: a claim is a single flight across them (the
/// second replica's claim on the same blob loses and waits for the first one's upload), what one
/// learns the other looks up, the end of an upload is published to every replica, and a store
/// that goes away leaves each replica its own memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wan_state_is_one_for_replicas_sharing_redis() {
    use tcr_adapter::oci::{Digest, RepoName};
    use tcr_adapter::registry::wan::state::redis::RedisState;
    use tcr_adapter::registry::wan::state::{Waited, WanState};
    use tcr_adapter::state::StateStore;

    let port = common::free_port();
    let redis = common::redis_server(port);
    let cfg = tcr_adapter::config::StateConfig {
        redis_url: Secret::new(format!("redis://127.0.0.1:{port}/0")),
        key_prefix: "unit".into(),
        ..Default::default()
    };
    let store = |_: u8| StateStore::from_config(&cfg, &prometheus::Registry::new()).unwrap();
    let (a, b) = (
        RedisState::new(store(1), 100),
        RedisState::new(store(2), 100),
    );
    let d = Digest::sha256_of(b"base layer");
    let (one, two) = (
        RepoName::parse("ns/one").unwrap(),
        RepoName::parse("ns/two").unwrap(),
    );

    // Flights' ends are published: a waiter on any replica hears one at once.
    let listener = store(3);
    let mut ends = listener
        .subscribe("unit:wan:ends")
        .expect("a store is configured");
    tokio::time::sleep(Duration::from_millis(300)).await; // subscribed before anything ends

    assert!(a.claim(&d, &one).await, "the first claim wins");
    assert!(!b.claim(&d, &two).await, "the other replica's claim loses");
    assert!(b.lookup(&d).await.in_flight);
    // The first replica's upload runs and ends; the second one's wait sees it end.
    let mark = a.uploading(&d, &one).await;
    let two_ = two.clone();
    let waiter = tokio::spawn(async move { b.wait_for_upload(&d, &two_).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    a.uploaded(&Digest::sha256_of(b"base layer"), &one).await;
    drop(mark);
    assert_eq!(waiter.await.unwrap(), Waited::Upload(one.clone()));
    let heard = tokio::time::timeout(Duration::from_secs(5), ends.recv()).await;
    let d = Digest::sha256_of(b"base layer");
    assert_eq!(heard.expect("the end was published").unwrap(), d.as_str());
    let b = RedisState::new(store(2), 100);
    let known = b.lookup(&Digest::sha256_of(b"base layer")).await;
    assert_eq!(known.repos, vec![one.clone()]);
    assert!(!known.in_flight);

    // Streaks and pushes are the fleet's too.
    a.told("fp:x", false).await;
    b.told("fp:x", false).await;
    assert!(a.expects_absent("fp:x", 2).await);
    a.pushed("fp:x", "ns").await;
    assert!(b.has_pushed("fp:x", "ns").await);

    // The store goes away: each replica answers from its own memory, nothing hangs.
    redis.kill9();
    let started = std::time::Instant::now();
    let e = Digest::sha256_of(b"another");
    assert!(
        b.claim(&e, &two).await,
        "local single flight without the store"
    );
    assert!(b.lookup(&e).await.in_flight);
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// The catalog's listing is the replicas' (`catalog:<fingerprint of the keys>` on the store):
/// the next page of a catalog listed on one replica is answered by the other from it, without
/// another `DescribeRepositories`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_catalog_listed_by_one_replica_pages_on_the_other_without_listing_again() {
    let emu = common::start_emulator_with_namespaces(&[("cat", false)]).await;
    let port = common::free_port();
    let _redis = common::redis_server(port);
    let (_a, base_a) = replica(&emu, port).await;
    let (_b, base_b) = replica(&emu, port).await;
    async fn get(base: &str, path: &str) -> (u16, serde_json::Value) {
        let http = reqwest::Client::new();
        let token: serde_json::Value = http
            .get(format!(
                "{base}/service/token?service=tcr-adapter&scope=registry:catalog:*"
            ))
            .header(
                "Authorization",
                common::basic(common::DEMO_SECRET_ID, common::DEMO_SECRET_KEY),
            )
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let r = http
            .get(format!("{base}{path}"))
            .bearer_auth(token["token"].as_str().unwrap())
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or_default())
    }
    let listings = || common::api_calls(&emu.handle, &[r#"action="DescribeRepositories""#]);

    let (status, first) = get(&base_a, "/v2/_catalog?n=1").await;
    assert_eq!(status, 200, "{first}");
    let listed = listings().await;
    assert!(listed >= 1, "replica A listed the repositories");
    // The next page (whatever it holds) on replica B: from the shared listing.
    let (status, next) = get(&base_b, "/v2/_catalog?n=1&last=cat/zzz").await;
    assert_eq!(status, 200, "{next}");
    assert_eq!(next["repositories"], serde_json::json!([]));
    assert_eq!(
        listings().await,
        listed,
        "replica B paged the listing replica A made"
    );
}
