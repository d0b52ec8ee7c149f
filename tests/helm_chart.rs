//! The Helm chart in deploy/helm/tcr-adapter, rendered offline by the real Helm library
//! (PyPI `helm-python-sdk`, installed by scripts/install-test-deps.sh): it lints clean, its
//! Deployment's environment is a configuration the adapter accepts (every variable names a real
//! key, secrets come from the chart's Secret), replicas share keys, probes hit the adapter's health
//! routes, and missing keys are refused at render time with a clear message.

use std::collections::HashMap;

use serde_json::{json, Value};
use tcr_adapter::config::Config;

fn render(values: Value) -> Value {
    let chart = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/helm/tcr-adapter");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/render_chart.py");
    let out = std::process::Command::new("python3")
        .args([script, chart, &values.to_string()])
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "rendering failed (is helm-python-sdk installed? run scripts/install-test-deps.sh): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let errors = v["lint"]["errors"].as_array().unwrap();
    assert!(errors.is_empty(), "helm lint --strict: {errors:?}");
    for m in v["lint"]["messages"].as_array().unwrap() {
        assert!(m["severity"].as_i64().unwrap() < 2, "helm lint: {m}");
    }
    v
}

fn kind<'a>(docs: &'a Value, kind: &str) -> &'a Value {
    docs["docs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} rendered"))
}

fn values() -> Value {
    json!({
        "replicaCount": 3,
        "publicUrl": "https://tcr-adapter.example.com",
        "tcr": {"registryUrl": "https://myreg.tencentcloudcr.com"},
        "namespaces": {"allow": "team-*,ops", "dryRun": true},
        "secret": {"values": {
            "signingKey": "c2lnbmluZy1rZXktZm9yLXRoZS1jaGFydC10ZXN0IQ==",
            "sealingKey": "c2VhbGluZy1rZXktMzItYnl0ZXMtY2hhcnQtdGVzdCE=",
            "tcrSecretId": "AKIDchart", "tcrSecretKey": "chart-key"
        }}
    })
}

#[test]
fn the_deployment_environment_is_a_valid_adapter_configuration() {
    let docs = render(values());
    let deploy = kind(&docs, "Deployment");
    let secret = kind(&docs, "Secret");
    assert_eq!(deploy["spec"]["replicas"], 3);
    let container = &deploy["spec"]["template"]["spec"]["containers"][0];
    let mut env = HashMap::new();
    for e in container["env"].as_array().unwrap() {
        let name = e["name"].as_str().unwrap().to_string();
        let value = if let Some(v) = e["value"].as_str() {
            v.to_string()
        } else {
            let r = &e["valueFrom"]["secretKeyRef"];
            assert_eq!(
                r["name"], secret["metadata"]["name"],
                "{name} reads the chart's Secret"
            );
            secret["stringData"][r["key"].as_str().unwrap()]
                .as_str()
                .unwrap_or_else(|| panic!("{name}: key {} missing from the Secret", r["key"]))
                .to_string()
        };
        env.insert(name, value);
    }
    let cfg = Config::load_with_env(None, env).expect("the chart's environment loads");
    assert_eq!(cfg.server.listen.to_string(), "0.0.0.0:5000");
    assert_eq!(cfg.server.public_base(), "https://tcr-adapter.example.com");
    assert!(cfg.server.trust_forwarded_headers);
    assert_eq!(cfg.server.shutdown_grace_secs, 290);
    assert_eq!(cfg.tcr.registry_url, "https://myreg.tencentcloudcr.com");
    assert_eq!(cfg.tcr.secret_id, "AKIDchart");
    assert_eq!(cfg.tcr.secret_key.expose(), "chart-key");
    assert_eq!(cfg.namespaces.allow, vec!["team-*", "ops"]);
    assert!(cfg.namespaces.dry_run);
    assert!(!cfg.auth.signing_key.is_empty() && !cfg.auth.sealing_key.is_empty());

    // Probes hit the adapter's own health routes on the named port the Service targets.
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(container["ports"][0]["name"], "http");
    assert_eq!(container["ports"][0]["containerPort"], 5000);
    let service = kind(&docs, "Service");
    assert_eq!(service["spec"]["ports"][0]["targetPort"], "http");
    assert_eq!(
        service["spec"]["selector"],
        deploy["spec"]["selector"]["matchLabels"]
    );
    let pdb = kind(&docs, "PodDisruptionBudget");
    assert_eq!(pdb["spec"]["selector"], deploy["spec"]["selector"]);
    // Runs as the Dockerfile's non-root user.
    assert_eq!(
        deploy["spec"]["template"]["spec"]["securityContext"]["runAsUser"],
        10001
    );
}

#[test]
fn missing_shared_keys_are_refused_when_rendering() {
    let mut v = values();
    v["secret"]["values"]["signingKey"] = json!("");
    let out = render(v);
    let err = out["error"].as_str().expect("rendering must fail");
    assert!(err.contains("signingKey is required"), "{err}");
}

#[test]
fn an_existing_secret_can_be_used_instead() {
    let mut v = values();
    v["secret"] = json!({"create": false, "existingSecret": "my-keys", "values": {}});
    let docs = render(v);
    assert!(docs["docs"]
        .as_array()
        .unwrap()
        .iter()
        .all(|d| d["kind"] != "Secret"));
    let deploy = kind(&docs, "Deployment");
    let env = deploy["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap();
    let refs: Vec<&Value> = env
        .iter()
        .filter_map(|e| e.get("valueFrom"))
        .map(|f| &f["secretKeyRef"]["name"])
        .collect();
    assert!(!refs.is_empty() && refs.iter().all(|n| *n == "my-keys"));
}

#[test]
fn the_dashboard_and_the_alert_rules_ship_in_the_chart() {
    let mut v = values();
    v["grafana"] = json!({"dashboard": {"enabled": true}});
    v["prometheus"] = json!({"rules": {"enabled": true}});
    let docs = render(v);
    let cm = docs["docs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["kind"] == "ConfigMap" && d["metadata"]["labels"]["grafana_dashboard"] == "1")
        .expect("the dashboard ConfigMap");
    let dash: Value =
        serde_json::from_str(cm["data"]["tcr-adapter-dashboard.json"].as_str().unwrap()).unwrap();
    assert_eq!(dash["uid"], "tcr-adapter");
    assert!(dash["panels"].as_array().unwrap().len() >= 10);
    let rule = kind(&docs, "PrometheusRule");
    let rules = rule["spec"]["groups"][0]["rules"].as_array().unwrap();
    assert_eq!(rules.len(), 7, "{rule}");
    // Off by default.
    let plain = render(values());
    assert!(!plain["docs"]
        .as_array()
        .unwrap()
        .iter()
        .any(|d| d["kind"] == "PrometheusRule"));
}

#[test]
fn a_bundled_redis_is_the_replicas_shared_store_and_an_existing_one_comes_from_a_secret() {
    let mut v = values();
    v["redis"] = json!({"bundled": {"enabled": true}});
    let docs = render(v);
    let all = docs["docs"].as_array().unwrap();
    let redis = all
        .iter()
        .find(|d| d["kind"] == "Deployment" && d["metadata"]["name"] == "tcr-tcr-adapter-redis")
        .unwrap_or_else(|| panic!("the bundled Redis Deployment: {docs}"));
    let svc = all
        .iter()
        .find(|d| d["kind"] == "Service" && d["metadata"]["name"] == "tcr-tcr-adapter-redis")
        .expect("the bundled Redis Service");
    assert_eq!(
        svc["spec"]["selector"],
        redis["spec"]["selector"]["matchLabels"]
    );
    // The adapter's own Service and PDB never select the Redis pod.
    let adapter = all
        .iter()
        .find(|d| d["kind"] == "Deployment" && d["metadata"]["name"] == "tcr-tcr-adapter")
        .expect("the adapter Deployment");
    assert_ne!(
        adapter["spec"]["selector"]["matchLabels"],
        redis["spec"]["template"]["metadata"]["labels"]
    );
    let env = adapter["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap();
    let url = env
        .iter()
        .find(|e| e["name"] == "TCR_ADAPTER__STATE__REDIS_URL")
        .expect("the adapter is given the store");
    assert_eq!(url["value"], "redis://tcr-tcr-adapter-redis:6379/0");
    let vars = HashMap::from([(
        "TCR_ADAPTER__STATE__REDIS_URL".to_string(),
        url["value"].as_str().unwrap().to_string(),
    )]);
    let cfg = Config::load_with_env(None, vars).expect("the URL is a valid [state] redis_url");
    assert!(!cfg.state.redis_url.is_empty());

    let mut v = values();
    v["redis"] = json!({"existingSecret": "ops-redis", "existingSecretKey": "url"});
    let docs = render(v);
    assert!(!docs["docs"]
        .as_array()
        .unwrap()
        .iter()
        .any(|d| d["metadata"]["name"] == "tcr-tcr-adapter-redis"));
    let deploy = kind(&docs, "Deployment");
    let env = deploy["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap();
    let url = env
        .iter()
        .find(|e| e["name"] == "TCR_ADAPTER__STATE__REDIS_URL")
        .expect("the adapter is given the store");
    assert_eq!(url["valueFrom"]["secretKeyRef"]["name"], "ops-redis");
    assert_eq!(url["valueFrom"]["secretKeyRef"]["key"], "url");
    // Off by default.
    let plain = render(values());
    let env =
        kind(&plain, "Deployment")["spec"]["template"]["spec"]["containers"][0]["env"].clone();
    assert!(!env
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["name"] == "TCR_ADAPTER__STATE__REDIS_URL"));
}
