//! The dashboard and the alert rules, checked with the real tools: `promtool check rules` and
//! `promtool test rules` (a unit test of every alert, firing and not), every metric family the
//! dashboard and the rules query is exported by a running adapter that has seen traffic, and a
//! real Prometheus server scraping the adapter binary sees them all and fires alerts when TCR
//! goes away (`monitoring_scrape/`).

mod common;
#[path = "harbor/mod.rs"]
mod harbor;
mod monitoring_scrape;
mod oci_layout;

use std::collections::BTreeSet;

pub(crate) const RULES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/deploy/prometheus/tcr-adapter-rules.yml"
);
const RULE_TESTS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/deploy/prometheus/tests/tcr-adapter-rules-test.yml"
);
pub(crate) const DASHBOARD: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/deploy/grafana/tcr-adapter-dashboard.json"
);

fn promtool(args: &[&str]) -> String {
    common::require_tool("promtool");
    let out = std::process::Command::new("promtool")
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?}:\n{text}");
    text
}

#[test]
fn the_rules_are_valid_and_every_alert_fires_when_it_should() {
    let checked = promtool(&["check", "rules", RULES]);
    assert!(checked.contains("SUCCESS: 7 rules found"), "{checked}");
    let tested = promtool(&["test", "rules", RULE_TESTS]);
    assert!(tested.contains("SUCCESS"), "{tested}");
}

/// `tcr_adapter_*` metric families named in a text (histogram suffixes folded).
pub(crate) fn families(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("tcr_adapter_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let name = &tail[..end];
        let family = ["_bucket", "_count", "_sum"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(name);
        out.insert(family.to_string());
        rest = &tail[end..];
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_queried_metric_is_exported() {
    let wanted: BTreeSet<String> = families(&std::fs::read_to_string(DASHBOARD).unwrap())
        .union(&families(&std::fs::read_to_string(RULES).unwrap()))
        .cloned()
        .collect();
    assert!(wanted.len() >= 10, "{wanted:?}");
    // Traffic that touches every family: pushes with API keys into new namespaces (cloud API
    // calls, instance tokens, namespace creation), and a readiness probe. Series that only count
    // failures (retries, throttling, give-ups) are exported from zero.
    let e = harbor::Env::default().await;
    let (user, pass) = (common::DEMO_SECRET_ID, common::DEMO_SECRET_KEY);
    for i in 0..3 {
        e.replay_1_10(&format!("mon-{i}/app"), user, pass).await;
    }
    let r = reqwest::get(format!("{}/readyz", e.base)).await.unwrap();
    assert_eq!(r.status(), 200);
    let metrics = e.adapter_metrics().await;
    let exported: BTreeSet<String> = metrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect();
    let missing: Vec<&String> = wanted.difference(&exported).collect();
    assert!(
        missing.is_empty(),
        "queried but not exported: {missing:?}\n{metrics}"
    );
    assert!(metrics.contains("tcr_adapter_ready 1"), "{metrics}");
    e.adapter.stop().await;
}
