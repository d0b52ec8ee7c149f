//! The checks that talk to TCR (cloud API and data plane) and the in-process adapter
//! end-to-end run of what Harbor's "Test connection" does.

use tcr_adapter::clock::SharedClock;
use tcr_adapter::config::Config;
use tcr_adapter::discovery::{find_instance, DiscoveryError, InstanceInfo};
use tcr_adapter::tencentcloud::models::{DescribeInstancesRequest, DescribeInstancesResponse};
use tcr_adapter::tencentcloud::{ApiCredential, ApiError, InstanceToken, TcrApiClient, TokenType};
use tcr_adapter::upstream::error_chain;

use super::{api_advice, basic, http_client, Report, PROBE_NAMESPACE};

/// `realm` and `service` of a `Bearer` challenge among the `WWW-Authenticate` values.
fn bearer_of(resp: &reqwest::Response) -> Option<(String, String)> {
    resp.headers()
        .get_all(reqwest::header::WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(parse_bearer)
}

/// `Bearer realm="…",service="…"` → (realm, service).
fn parse_bearer(v: &str) -> Option<(String, String)> {
    let (scheme, rest) = v.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let param = |k: &str| {
        let start = rest.find(&format!("{k}=\""))? + k.len() + 2;
        let end = rest[start..].find('"')?;
        Some(rest[start..start + end].to_string())
    };
    Some((param("realm")?, param("service").unwrap_or_default()))
}

fn fail_api(r: &mut Report, cfg: &Config, name: &str, action: &str, e: &ApiError) {
    let (cause, fix) = api_advice(e, action, cfg);
    r.fail(
        name,
        e.humanize_with(action, &cfg.tcr.secret_id),
        cause,
        fix,
    );
}

pub(super) async fn run(cfg: &Config, clock: SharedClock, r: &mut Report) {
    let http = match http_client(cfg) {
        Ok(h) => h,
        Err(e) => {
            r.fail(
                "upstream HTTP client",
                e,
                "tcr.ca_file is unusable",
                "fix tcr.ca_file (see above)",
            );
            return;
        }
    };
    let keys = (!cfg.tcr.secret_id.is_empty())
        .then(|| ApiCredential::new(cfg.tcr.secret_id.clone(), cfg.tcr.secret_key.expose()));
    let mut instance: Option<InstanceInfo> = None;
    let mut token: Option<InstanceToken> = None;
    match (&keys, TcrApiClient::from_config(&cfg.tcr, clock.clone())) {
        (None, _) => {
            let why = "no provisioner keys (tcr.secret_id / tcr.secret_key): the cloud API is not checked; Harbor's own keys are tested by its \"Test connection\"";
            for n in [
                "cloud API keys",
                "TCR instance",
                "CreateInstanceToken",
                "CreateNamespace",
                "cloud API paging",
            ] {
                r.skip(n, why);
            }
        }
        (Some(_), Err(e)) => {
            let (cause, fix) = api_advice(&e, "DescribeInstances", cfg);
            r.fail("cloud API client", e.to_string(), cause, fix);
        }
        (Some(keys), Ok(api)) => {
            let api = api.with_retry_policy(tcr_adapter::tencentcloud::RetryPolicy {
                max_attempts: 2,
                base_delay: std::time::Duration::from_millis(200),
            });
            let keys_ok = check_keys(cfg, &api, keys, r).await;
            if keys_ok {
                instance = check_instance(cfg, &api, keys, r).await;
            } else {
                r.skip("TCR instance", "the API keys do not work (see above)");
            }
            match &instance {
                Some(i) => {
                    let api = api.with_region(&i.region);
                    token = check_token(cfg, &api, keys, &i.registry_id, r).await;
                    check_create_namespace(cfg, &api, keys, &i.registry_id, r).await;
                    super::paging::check_paging(&api, keys, &i.registry_id, r).await;
                }
                None => {
                    for n in ["CreateInstanceToken", "CreateNamespace", "cloud API paging"] {
                        r.skip(n, "no instance (see above)");
                    }
                }
            }
        }
    }
    check_data_plane(cfg, &http, token.as_ref(), r).await;
    super::harbor::check_chart_repository(&cfg.tcr.registry_url, &http, token.as_ref(), r).await;
    check_adapter(cfg, clock, keys.as_ref(), instance.as_ref(), r).await;
}

/// Signature and key validity: one `DescribeInstances`.
async fn check_keys(
    cfg: &Config,
    api: &TcrApiClient,
    keys: &ApiCredential,
    r: &mut Report,
) -> bool {
    let req = DescribeInstancesRequest {
        registry_ids: (!cfg.tcr.registry_id.is_empty()).then(|| vec![cfg.tcr.registry_id.clone()]),
        limit: Some(1),
        all_region: Some(cfg.tcr.registry_id.is_empty()),
        ..Default::default()
    };
    let name = "cloud API keys";
    let id: String = keys.secret_id.chars().take(8).collect();
    match api
        .call::<_, DescribeInstancesResponse>(keys, "DescribeInstances", &req)
        .await
    {
        Ok(_) => {
            r.ok(
                name,
                format!(
                    "SecretId {id}… signature accepted by {} (DescribeInstances)",
                    api.endpoint()
                ),
            );
            true
        }
        Err(e)
            if e.code()
                .is_some_and(|c| c.contains("UnauthorizedOperation")) =>
        {
            if cfg.tcr.registry_id.is_empty() || cfg.tcr.region.is_empty() {
                fail_api(r, cfg, name, "DescribeInstances", &e);
                r.items.last_mut().expect("just pushed").detail.push_str(
                    " (the signature is valid; DescribeInstances is needed to find the instance unless tcr.registry_id and tcr.region are set)",
                );
            } else {
                r.ok(name, format!("SecretId {id}… signature accepted (the key may not call DescribeInstances; not needed: tcr.registry_id and tcr.region are set)"));
            }
            true
        }
        Err(e) => {
            fail_api(r, cfg, name, "DescribeInstances", &e);
            false
        }
    }
}

async fn check_instance(
    cfg: &Config,
    api: &TcrApiClient,
    keys: &ApiCredential,
    r: &mut Report,
) -> Option<InstanceInfo> {
    let name = "TCR instance";
    match find_instance(
        api,
        keys,
        &cfg.tcr.registry_url,
        Some(&cfg.tcr.registry_id),
        Some(&cfg.tcr.region),
    )
    .await
    {
        Ok(i) => {
            let how = if i.status == "Unchecked" {
                "configured (tcr.registry_id, tcr.region)"
            } else {
                "found with DescribeInstances, Running"
            };
            r.ok(name, format!("{} in {} ({how})", i.registry_id, i.region));
            Some(i)
        }
        Err(DiscoveryError::Api(m, e)) => {
            let (cause, fix) = api_advice(&e, "DescribeInstances", cfg);
            r.fail(name, m, cause, fix);
            None
        }
        Err(e @ DiscoveryError::NotRunning { .. }) => {
            r.fail(
                name,
                e.to_string(),
                "the instance is stopped, isolated (unpaid) or being created",
                "check the instance in the TCR console",
            );
            None
        }
        Err(e) => {
            r.fail(
                name,
                e.to_string(),
                "tcr.registry_url does not name an instance this key can see (wrong host, other account, or a custom domain)",
                "set tcr.registry_url to https://<instance>.tencentcloudcr.com, or set tcr.registry_id and tcr.region",
            );
            None
        }
    }
}

async fn check_token(
    cfg: &Config,
    api: &TcrApiClient,
    keys: &ApiCredential,
    registry_id: &str,
    r: &mut Report,
) -> Option<InstanceToken> {
    match api
        .create_instance_token(keys, registry_id, TokenType::Temp)
        .await
    {
        Ok(t) => {
            let exp = chrono::DateTime::from_timestamp_millis(t.exp_ms)
                .map(|d| d.to_rfc3339())
                .unwrap_or_else(|| t.exp_ms.to_string());
            r.ok(
                "CreateInstanceToken",
                format!(
                    "temporary registry credential for user {} (expires {exp})",
                    t.username
                ),
            );
            Some(t)
        }
        Err(e) => {
            fail_api(r, cfg, "CreateInstanceToken", "CreateInstanceToken", &e);
            None
        }
    }
}

/// Probe `tcr:CreateNamespace` with a name TCR refuses: CAM is checked before the parameters.
async fn check_create_namespace(
    cfg: &Config,
    api: &TcrApiClient,
    keys: &ApiCredential,
    registry_id: &str,
    r: &mut Report,
) {
    let name = "CreateNamespace";
    let how = format!("probed by creating the invalid name {PROBE_NAMESPACE:?}: CAM is checked before the name, so nothing is created");
    if !cfg.namespaces.auto_create {
        r.skip(
            name,
            "namespaces.auto_create = false: the adapter never creates namespaces",
        );
        return;
    }
    match api
        .create_namespace(keys, registry_id, PROBE_NAMESPACE, false)
        .await
    {
        Err(e) if e.code().is_some_and(|c| c.starts_with("InvalidParameter")) => {
            r.ok(name, format!("permission granted ({how}; TCR rejected the name as expected)"))
        }
        Err(e) if e.is_conflict() => r.ok(name, format!("permission granted ({how}; it already exists)")),
        Ok(()) => r.ok(
            name,
            format!("permission granted, but TCR accepted the name {PROBE_NAMESPACE:?}: delete that namespace in the console"),
        ),
        Err(e) => {
            let (cause, fix) = api_advice(&e, "CreateNamespace", cfg);
            let cause = if e.code().is_some_and(|c| c.contains("UnauthorizedOperation")) {
                format!("{cause}: the adapter cannot create missing namespaces with these keys, so the first push into a new Harbor project is refused")
            } else {
                cause
            };
            r.fail(name, format!("{} ({how})", e.humanize_with("CreateNamespace", &cfg.tcr.secret_id)), cause, fix);
        }
    }
}

/// `GET /v2/` → 401 + Bearer challenge, then the realm with the instance token → 200.
async fn check_data_plane(
    cfg: &Config,
    http: &reqwest::Client,
    token: Option<&InstanceToken>,
    r: &mut Report,
) {
    let url = format!("{}/v2/", cfg.tcr.registry_url.trim_end_matches('/'));
    let resp = match http.get(&url).send().await {
        Ok(resp) => resp,
        Err(e) => return data_plane_unreachable(cfg, &url, &e, r).await,
    };
    if let Some((realm, service)) = read_challenge(&url, resp, r) {
        check_realm(http, &realm, &service, token, r).await;
    }
}

/// Why `GET /v2/` got no answer, in plain words (a TLS failure diagnosed).
async fn data_plane_unreachable(cfg: &Config, url: &str, e: &reqwest::Error, r: &mut Report) {
    let name = "data plane";
    let url = url.to_string();
    let chain = error_chain(e);
    let tls = tcr_adapter::upstream::tls_diag::looks_like_tls(&chain);
    let ca = cfg.tcr.ca_file.as_ref().and_then(|p| std::fs::read(p).ok());
    let diag_url = url.clone();
    let explained = if tls {
        tokio::task::spawn_blocking(move || {
            tcr_adapter::upstream::tls_diag::diagnose(&diag_url, ca.as_deref())
        })
        .await
        .ok()
        .and_then(Result::ok)
        .flatten()
    } else {
        None
    };
    if let Some(words) = explained {
        r.fail(
                name,
                format!("GET {url}: {words}"),
                "the data plane's TLS certificate does not verify",
                "do what the message above says (the adapter refuses to send credentials over an unverified connection)",
            );
        r.skip(
            "token realm",
            "the data plane's certificate does not verify",
        );
        return;
    }
    r.fail(
            name,
            format!("GET {url}: no answer ({chain})"),
            if tls {
                "the data plane's TLS certificate is not trusted"
            } else {
                "wrong host or port, DNS, firewall, or the instance's public access is off (TCR allows the public endpoint only from whitelisted IPs)"
            },
            if tls {
                "set tcr.ca_file to the CA bundle signing it"
            } else {
                "check tcr.registry_url; in the TCR console enable public access and whitelist this host's egress IP (or use the VPC endpoint)"
            },
        );
    r.skip("token realm", "the data plane is unreachable");
}

/// The data plane's answer to `GET /v2/`: the Bearer challenge's realm and service, if any.
fn read_challenge(url: &str, resp: reqwest::Response, r: &mut Report) -> Option<(String, String)> {
    let name = "data plane";
    let status = resp.status();
    let challenge = bearer_of(&resp);
    match (status.as_u16(), challenge) {
        (401, Some((realm, service))) => {
            r.ok(
                name,
                format!(
                    "GET {url} → 401 with a Bearer challenge (realm {realm}, service {service})"
                ),
            );
            Some((realm, service))
        }
        (s, _) if (200..300).contains(&s) => {
            r.ok(
                name,
                format!("GET {url} → {status} without authentication (no token realm)"),
            );
            r.skip("token realm", "the data plane asks for no credentials");
            None
        }
        _ => {
            r.fail(
                name,
                format!("GET {url} → {status}, expected 401 with a Bearer challenge"),
                "tcr.registry_url does not point at a registry (or a proxy in between answers instead)",
                "set tcr.registry_url to the instance's data plane, e.g. https://<instance>.tencentcloudcr.com",
            );
            r.skip("token realm", "no Bearer challenge");
            None
        }
    }
}

/// The realm with the instance token (or without credentials).
async fn check_realm(
    http: &reqwest::Client,
    realm: &str,
    service: &str,
    token: Option<&InstanceToken>,
    r: &mut Report,
) {
    let mut req = http.get(realm).query(&[("service", service)]);
    let with = match token {
        Some(t) => {
            req = req.header(
                reqwest::header::AUTHORIZATION,
                basic(&t.username, t.token.expose()),
            );
            "with the instance token"
        }
        None => "without credentials",
    };
    match req.send().await {
        Err(e) => r.fail(
            "token realm",
            format!("GET {realm}: no answer ({})", error_chain(&e)),
            "the realm announced by the data plane is not reachable from here",
            "allow this host to reach the realm's host (usually the same as tcr.registry_url)",
        ),
        Ok(resp) => {
            let s = resp.status().as_u16();
            match (token.is_some(), s) {
                (true, 200) => r.ok("token realm", format!("GET {realm} {with} → 200")),
                (false, 401) | (false, 200) => r.ok(
                    "token realm",
                    format!("GET {realm} {with} → {s} (reachable; no credential to test)"),
                ),
                (true, 401) | (true, 403) => r.fail(
                    "token realm",
                    format!("GET {realm} {with} → {s}"),
                    "the data plane refused a token just issued by CreateInstanceToken: the instance id (tcr.registry_id) belongs to another instance than tcr.registry_url",
                    "make tcr.registry_id and tcr.registry_url name the same instance (or leave registry_id empty)",
                ),
                _ => r.fail(
                    "token realm",
                    format!("GET {realm} {with} → {s}"),
                    "the token service is failing",
                    "retry later; check the instance status in the TCR console",
                ),
            }
        }
    }
}

/// Start the adapter in-process and replay Harbor's "Test connection".
async fn check_adapter(
    cfg: &Config,
    clock: SharedClock,
    keys: Option<&ApiCredential>,
    instance: Option<&InstanceInfo>,
    r: &mut Report,
) {
    let name = "adapter (Harbor \"Test connection\")";
    let (Some(keys), Some(inst)) = (keys, instance) else {
        r.skip(name, "needs working API keys and an instance (see above)");
        return;
    };
    let mut c = cfg.clone();
    c.server.listen = "127.0.0.1:0".parse().expect("static address");
    c.server.tls = Default::default();
    // Same realm as the real listener announces.
    c.server.public_url = cfg.server.public_base();
    c.server.workers = 1;
    c.tcr.registry_id = inst.registry_id.clone();
    c.tcr.region = inst.region.clone();
    let adapter = match tcr_adapter::app::start(c, clock).await {
        Ok(a) => a,
        Err(e) => {
            r.fail(
                name,
                format!("the adapter does not start: {e}"),
                "a setting above is wrong",
                "fix the failures above",
            );
            return;
        }
    };
    let base = format!("http://{}", adapter.addr);
    let result = harbor_test_connection(&base, &cfg.server.public_base(), keys).await;
    let provider = super::harbor::harbor_provider_calls(&base, keys).await;
    adapter.stop().await;
    match result {
        Ok(()) => r.ok(name, "GET /v2/ → 401 Bearer, GET /service/token with the API keys → 200, GET /v2/ with the token → 200"),
        Err(e) => r.fail(name, e, "see the failures above", "fix the failures above; the adapter's log says more"),
    }
    let name = "adapter (Harbor provider API)";
    match provider {
        Ok(()) => r.ok(name, "GET /api/version → 404 (v1 persona), /api/systeminfo with_chartmuseum, /api/labels and /api/projects → 200"),
        Err(e) => r.fail(name, e, "Harbor's \"Harbor\" provider would fail its first run", "fix the failures above; the adapter's log says more"),
    }
}

async fn harbor_test_connection(
    base: &str,
    public: &str,
    keys: &ApiCredential,
) -> Result<(), String> {
    let http = reqwest::Client::new();
    let err = |e: reqwest::Error| error_chain(&e);
    let resp = http.get(format!("{base}/v2/")).send().await.map_err(err)?;
    let (realm, service) = match (resp.status().as_u16(), bearer_of(&resp)) {
        (401, Some(c)) => c,
        (s, _) => {
            return Err(format!(
                "GET /v2/ → {s}, expected 401 with a Bearer challenge"
            ))
        }
    };
    if realm != format!("{public}/service/token") {
        return Err(format!(
            "the challenge's realm is {realm}, expected {public}/service/token"
        ));
    }
    let resp = http
        .get(format!("{base}/service/token"))
        .query(&[("service", service.as_str())])
        .header(
            reqwest::header::AUTHORIZATION,
            basic(&keys.secret_id, keys.secret_key.expose()),
        )
        .send()
        .await
        .map_err(err)?;
    let s = resp.status();
    let body = resp.text().await.unwrap_or_default();
    if s != 200 {
        return Err(format!("GET /service/token → {s}: {body}"));
    }
    let token = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["token"].as_str().map(str::to_string))
        .ok_or("the token response has no token")?;
    let resp = http
        .get(format!("{base}/v2/"))
        .bearer_auth(token)
        .send()
        .await
        .map_err(err)?;
    match resp.status().as_u16() {
        200 => Ok(()),
        s => Err(format!(
            "GET /v2/ with the token → {s}: {}",
            resp.text().await.unwrap_or_default()
        )),
    }
}
