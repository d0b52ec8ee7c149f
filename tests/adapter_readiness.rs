//! `/readyz` as a load balancer or Kubernetes sees it: ready only when TCR's data plane and the
//! cloud API both answer, the reason named when not, and the verdict cached so probes cost the
//! upstream one request per few seconds however often they come.

mod common;
mod harbor;

use harbor::Env;
use serde_json::Value;

async fn readyz(env: &Env) -> (u16, Value) {
    let r = env.get_anon("/readyz").await;
    let status = r.status().as_u16();
    assert_eq!(r.headers()["content-type"], "application/json");
    (status, r.json().await.unwrap())
}

/// The adapter with one upstream URL (`set` puts it in the config) on a port nobody listens on:
/// `/readyz` must answer 503. The environment, that URL and the body.
async fn not_ready_with_dead(
    set: impl FnOnce(&mut tcr_adapter::config::Config, String),
) -> (Env, String, Value) {
    let dead = format!("http://127.0.0.1:{}", common::free_port());
    let url = dead.clone();
    let env = Env::start(|_| {}, move |c| set(c, url)).await;
    let (status, body) = readyz(&env).await;
    assert_eq!(status, 503, "{body}");
    (env, dead, body)
}

async fn base_probes(env: &Env) -> u64 {
    common::registry_requests(&env.emu, &[r#"route="base""#]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_when_both_planes_answer_and_probes_are_cached() {
    let env = Env::default().await;
    let before = base_probes(&env).await;
    let (status, body) = readyz(&env).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ready");
    assert_eq!(body["checks"]["data_plane"], "ok");
    assert_eq!(body["checks"]["cloud_api"], "ok");
    for _ in 0..20 {
        assert_eq!(readyz(&env).await.0, 200);
    }
    assert_eq!(
        base_probes(&env).await - before,
        1,
        "21 readiness probes within the cache lifetime reach TCR once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_ready_when_the_cloud_api_is_unreachable_and_says_which() {
    let (env, dead, body) = not_ready_with_dead(|c, url| c.tcr.api_endpoint = url).await;
    assert_eq!(body["status"], "not ready");
    assert_eq!(body["checks"]["data_plane"], "ok");
    let why = body["checks"]["cloud_api"].as_str().unwrap();
    assert!(why.contains(&dead) && why.contains("unreachable"), "{why}");
    // Liveness is unaffected.
    let r = env.get_anon("/healthz").await;
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_ready_when_the_data_plane_is_unreachable() {
    let (_env, dead, body) = not_ready_with_dead(|c, url| c.tcr.registry_url = url).await;
    assert_eq!(body["checks"]["cloud_api"], "ok");
    let why = body["checks"]["data_plane"].as_str().unwrap();
    assert!(why.contains(&dead), "{why}");
}

/// The adapter learns TCR's auth challenge (`GET /v2/`) as it starts, so the first client
/// request after a start does not wait for it: one `GET /v2/` at start, none for the request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upstream_challenge_is_learnt_at_start_not_by_the_first_request() {
    let env = Env::default().await;
    assert_eq!(
        base_probes(&env).await,
        1,
        "GET /v2/ asked once as it started"
    );
    let token = env.token(&["repository:warm/app:pull"]).await;
    let status = env.head_manifest("warm/app", "v1", &token).await;
    assert_eq!(status, 404);
    assert_eq!(
        base_probes(&env).await,
        1,
        "the first request asked no GET /v2/"
    );
}
