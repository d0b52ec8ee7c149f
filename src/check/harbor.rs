//! The checks for Harbor's "Harbor" provider: TCR's chart repository answers the translated
//! credential, and the adapter's Harbor API persona answers what Harbor's "Test connection" and
//! first run call (`/api/version` 404, `/api/systeminfo`, `/api/labels`, `/api/projects`). A green
//! "Test connection" in Harbor only proves `/v2/` (goharbor/harbor#7576): these prove the rest.

use tcr_adapter::tencentcloud::{ApiCredential, InstanceToken};
use tcr_adapter::upstream::error_chain;

use super::{basic, Report};

/// A namespace name TCR's naming rule refuses, so it can never exist: its chart listing must be
/// a 404 when the chart repository is there and accepts the credential.
const PROBE: &str = "-check-";

/// `GET <registry_url>/api/chartrepo/<probe>/charts` with the instance token (Basic).
pub(super) async fn check_chart_repository(
    registry_url: &str,
    http: &reqwest::Client,
    token: Option<&InstanceToken>,
    r: &mut Report,
) {
    let name = "chart repository";
    let Some(t) = token else {
        r.skip(name, "no instance token to test it with (see above)");
        return;
    };
    let url = format!(
        "{}/api/chartrepo/{PROBE}/charts",
        registry_url.trim_end_matches('/')
    );
    let resp = http
        .get(&url)
        .header(
            reqwest::header::AUTHORIZATION,
            basic(&t.username, t.token.expose()),
        )
        .send()
        .await;
    match resp.map(|r| r.status().as_u16()) {
        Ok(200 | 404) => r.ok(name, format!("GET {url} with the instance token → reachable, credential accepted")),
        Ok(s @ (401 | 403)) => r.fail(
            name,
            format!("GET {url} → {s}"),
            "TCR's chart repository refused the registry credential (Helm charts are an Enterprise feature; the instance may not offer it)",
            "check the instance edition and that the account may read charts (CAM tcr:DescribeHelmCharts)",
        ),
        Ok(s) => r.fail(
            name,
            format!("GET {url} → {s}"),
            "the chart repository is not served at tcr.registry_url",
            "point tcr.registry_url at the instance's data plane, https://<instance>.tencentcloudcr.com",
        ),
        Err(e) => r.fail(
            name,
            format!("GET {url}: no answer ({})", error_chain(&e)),
            "the data plane is unreachable (see above)",
            "fix the data plane first",
        ),
    }
}

/// What Harbor's "Harbor" provider calls on the adapter itself; `Err` says which call failed.
pub(super) async fn harbor_provider_calls(base: &str, keys: &ApiCredential) -> Result<(), String> {
    let http = reqwest::Client::new();
    let auth = basic(&keys.secret_id, keys.secret_key.expose());
    let get = |path: &str| {
        http.get(format!("{base}{path}"))
            .header(reqwest::header::AUTHORIZATION, auth.clone())
            .send()
    };
    let status = |p: &'static str, r: Result<reqwest::Response, reqwest::Error>| {
        r.map(|r| r.status().as_u16())
            .map_err(|e| format!("GET {p}: {}", error_chain(&e)))
    };
    match status("/api/version", get("/api/version").await)? {
        404 => {}
        s => {
            return Err(format!(
                "GET /api/version → {s}, expected 404 (Harbor 2.x must pick its v1 adapter)"
            ))
        }
    }
    let info = get("/api/systeminfo").await.map_err(|e| error_chain(&e))?;
    let body: serde_json::Value = info
        .json()
        .await
        .map_err(|e| format!("GET /api/systeminfo: {e}"))?;
    if body["with_chartmuseum"] != true {
        return Err(format!(
            "GET /api/systeminfo does not announce charts: {body}"
        ));
    }
    for path in [
        "/api/labels?scope=g",
        "/api/projects?name=-check-&page=1&page_size=10",
    ] {
        let resp = get(path).await.map_err(|e| error_chain(&e))?;
        let s = resp.status().as_u16();
        if s != 200 {
            let text = resp.text().await.unwrap_or_default();
            return Err(format!("GET {path} → {s}: {text}"));
        }
    }
    Ok(())
}
