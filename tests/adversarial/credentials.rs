//! Bad credentials are cheap: repeated refusals cost no cloud call, identical concurrent ones
//! share one, and a flood of never-seen keys spends its own budget, not everyone's.

use crate::harbor::{basic, Env};
use crate::Guarded;

/// Cloud API calls of `action` the emulator answered so far (every result).
pub fn api_calls(env: &Env, action: &str) -> u64 {
    let text = tcr_adapter::telemetry::render(&env.emu.state.metrics.registry);
    text.lines()
        .filter(|l| l.starts_with("tcr_emulator_api_calls_total{"))
        .filter(|l| l.contains(&format!("action=\"{action}\"")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// Cloud API calls of `action` that succeeded.
pub fn api_calls_ok(env: &Env, action: &str) -> u64 {
    let text = tcr_adapter::telemetry::render(&env.emu.state.metrics.registry);
    text.lines()
        .filter(|l| l.starts_with("tcr_emulator_api_calls_total{"))
        .filter(|l| l.contains(&format!("action=\"{action}\"")) && l.contains("result=\"ok\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

async fn projects(env: &Env, auth: &str) -> u16 {
    env.http
        .get(format!("{}/api/projects", env.base))
        .header("Authorization", auth)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_keys_cost_at_most_two_cloud_calls() {
    let g = Guarded::start().await;
    let e = &g.env;
    let wrong = basic(crate::common::DEMO_SECRET_ID, "not-the-key");
    let before = api_calls(e, "CreateInstanceToken");
    for _ in 0..20 {
        assert_eq!(projects(e, &wrong).await, 401);
    }
    let sequential = api_calls(e, "CreateInstanceToken") - before;
    assert!(
        sequential <= 2,
        "20 identical wrong keys cost {sequential} calls"
    );

    let wrong2 = basic(crate::common::DEMO_SECRET_ID, "another-wrong-key");
    let before = api_calls(e, "CreateInstanceToken");
    let all = futures_util::future::join_all((0..20).map(|_| projects(e, &wrong2))).await;
    assert!(all.iter().all(|s| *s == 401), "{all:?}");
    let concurrent = api_calls(e, "CreateInstanceToken") - before;
    assert!(
        concurrent <= 2,
        "20 concurrent wrong keys cost {concurrent} calls"
    );

    // A flood of never-seen SecretIds: past the budget they are refused without a call.
    let before = api_calls(e, "CreateInstanceToken");
    let flood = (0..80).map(|i| basic(&format!("AKIDflood{i:06}xxxxxxxxxxxxxxxx"), "k"));
    let flood: Vec<String> = flood.collect();
    let all = futures_util::future::join_all(flood.iter().map(|a| projects(e, a))).await;
    let spent = api_calls(e, "CreateInstanceToken") - before;
    assert!(all.iter().all(|s| *s == 401 || *s == 429), "{all:?}");
    assert!(all.contains(&429), "the budget never ran out: {all:?}");
    assert!(spent < 40, "80 random keys cost {spent} cloud calls");
    let metrics = e.adapter_metrics().await;
    assert!(
        metrics.lines().any(|l| l
            .starts_with("tcr_adapter_credential_failures_total{result=\"over_budget\"}")
            && !l.ends_with(" 0")),
        "no over_budget count in /metrics"
    );
    // The known-good caller is unaffected.
    assert_eq!(projects(e, &crate::keys()).await, 200);
}
