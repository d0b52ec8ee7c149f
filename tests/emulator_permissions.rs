//! The emulator's permissions as TCR has them, asked directly (no adapter): a limited account's
//! instance tokens and `tcr$` service accounts get from the token realm the subset of a scope
//! they may use (Harbor's token service), the registry refuses the rest with `401 UNAUTHORIZED
//! "unauthorized to access repository: <repo>, action: <action>"` (Harbor's v2auth), the chart
//! repository with 403, and the cloud API refuses writes outside the account's namespaces with
//! CAM's `AuthFailure.UnauthorizedOperation`, before looking at the parameters' values.
//! docs/tcr-contract.md (§ Permissions) names the sources.

#[path = "common/mod.rs"]
mod common;

use base64::Engine;
use serde_json::{json, Value};
use tcr_adapter::config::{
    Config, EmulatorAccount, EmulatorServiceAccount, RegistryAction, Secret,
};
use tcr_adapter::emulator::{EmulatorHandle, TokenKind};
use tcr_adapter::tencentcloud::{ApiCredential, TcrApiClient};

use common::charts::{chart_archive, multipart_chart};
use common::{basic, SendOk};

const READER_UIN: &str = "100000000002";
const TEAM: (&str, &str) = ("AKIDpermTEAMA0000000000000000000", "team-a-secret-key");
const TEAM_UIN: &str = "100000000003";

async fn emulator(dir: &std::path::Path) -> EmulatorHandle {
    let mut cfg = common::emulator_config(dir);
    cfg.accounts.push(EmulatorAccount {
        secret_id: "AKIDpermREADER00000000000000000".into(),
        secret_key: Secret::new("reader-secret-key"),
        uin: READER_UIN.into(),
        registry: vec![RegistryAction::Pull],
        ..Default::default()
    });
    cfg.accounts.push(EmulatorAccount {
        secret_id: TEAM.0.into(),
        secret_key: Secret::new(TEAM.1),
        uin: TEAM_UIN.into(),
        namespaces: vec!["team-a*".into()],
        ..Default::default()
    });
    cfg.service_accounts.push(EmulatorServiceAccount {
        name: "ci".into(),
        password: Secret::new("ci-password"),
        namespaces: vec!["team-a*".into()],
        registry: vec![RegistryAction::Pull, RegistryAction::Push],
    });
    let emu = common::start_emulator_with(cfg).await;
    for ns in ["team-a", "team-b"] {
        emu.state.namespaces.create(ns, false).unwrap();
    }
    emu
}

/// The realm's token for `scopes` as `user:pass`, and the `access` claim it carries.
async fn realm(
    emu: &EmulatorHandle,
    (user, pass): (&str, &str),
    scopes: &[&str],
) -> (String, Value) {
    let mut q = vec![("service", "harbor-registry")];
    q.extend(scopes.iter().map(|s| ("scope", *s)));
    let r = reqwest::Client::new()
        .get(format!("{}/service/token", emu.registry_url()))
        .query(&q)
        .header("Authorization", basic(user, pass))
        .send_ok()
        .await;
    assert_eq!(r.status(), 200, "token for {user}");
    let v: Value = r.json().await.unwrap();
    let token = v["token"].as_str().unwrap().to_string();
    let payload = token.split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    (token, claims["access"].clone())
}

/// The actions granted per resource name.
fn granted(access: &Value) -> Vec<(String, Vec<String>)> {
    access
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            let actions = a["actions"].as_array().unwrap();
            let actions = actions.iter().map(|x| x.as_str().unwrap().to_string());
            (a["name"].as_str().unwrap().to_string(), actions.collect())
        })
        .collect()
}

/// An upload start on the data plane with `auth`: (status, OCI code, message, challenge).
async fn start_upload(
    emu: &EmulatorHandle,
    repo: &str,
    auth: &str,
) -> (u16, String, String, String) {
    let r = reqwest::Client::new()
        .post(format!("{}/v2/{repo}/blobs/uploads/", emu.registry_url()))
        .header("Authorization", auth)
        .send_ok()
        .await;
    let status = r.status().as_u16();
    let chal = r
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    let code = v["errors"][0]["code"].as_str().unwrap_or("").to_string();
    let msg = v["errors"][0]["message"].as_str().unwrap_or("").to_string();
    (status, code, msg, chal)
}

#[tokio::test]
async fn an_instance_token_carries_its_accounts_limits() {
    let dir = tempfile::tempdir().unwrap();
    let emu = emulator(dir.path()).await;
    let t = emu.state.tokens.issue(READER_UIN, TokenKind::Temp);
    let reader = (t.username.as_str(), t.token.as_str());
    let (bearer, access) = realm(
        &emu,
        reader,
        &[
            "repository:team-a/app:pull,push,delete",
            "repository:team-b/app:*",
        ],
    )
    .await;
    assert_eq!(
        granted(&access),
        [
            ("team-a/app".to_string(), vec!["pull".to_string()]),
            ("team-b/app".to_string(), vec!["pull".to_string()]),
        ]
    );
    // The push it was not granted: Harbor's 401, with the bearer token and with Basic.
    for auth in [format!("Bearer {bearer}"), basic(reader.0, reader.1)] {
        let (s, code, msg, chal) = start_upload(&emu, "team-a/app", &auth).await;
        assert_eq!((s, code.as_str()), (401, "UNAUTHORIZED"), "{msg}");
        assert_eq!(
            msg,
            "unauthorized to access repository: team-a/app, action: push"
        );
        assert!(
            chal.contains("scope=\"repository:team-a/app:pull,push\""),
            "{chal}"
        );
    }
    // Reading is allowed: an absent manifest is a 404, not a refusal.
    let r = reqwest::Client::new()
        .get(format!("{}/v2/team-a/app/manifests/v1", emu.registry_url()))
        .bearer_auth(&bearer)
        .send_ok()
        .await;
    assert_eq!(r.status(), 404);
    // The namespace-limited account's token: everything in team-a, nothing in team-b.
    let t = emu.state.tokens.issue(TEAM_UIN, TokenKind::LongTerm);
    let (_, access) = realm(
        &emu,
        (&t.username, &t.token),
        &["repository:team-a/app:*", "repository:team-b/app:pull,push"],
    )
    .await;
    assert_eq!(
        granted(&access),
        [
            ("team-a/app".to_string(), vec!["*".to_string()]),
            ("team-b/app".to_string(), vec![]),
        ]
    );
    let (s, code, msg, _) = start_upload(&emu, "team-a/app", &basic(&t.username, &t.token)).await;
    assert_eq!((s, code.as_str()), (202, ""), "{msg}");
    let (s, _, msg, _) = start_upload(&emu, "team-b/app", &basic(&t.username, &t.token)).await;
    assert_eq!(s, 401, "{msg}");
}

#[tokio::test]
async fn a_service_account_may_do_what_it_lists_where_it_lists() {
    let dir = tempfile::tempdir().unwrap();
    let emu = emulator(dir.path()).await;
    let sa = ("tcr$ci", "ci-password");
    let (_, access) = realm(
        &emu,
        sa,
        &[
            "repository:team-a/app:pull,push,delete",
            "repository:team-b/app:pull",
        ],
    )
    .await;
    assert_eq!(
        granted(&access),
        [
            (
                "team-a/app".to_string(),
                vec!["pull".to_string(), "push".to_string()]
            ),
            ("team-b/app".to_string(), vec![]),
        ]
    );
    let (s, _, _, _) = start_upload(&emu, "team-a/app", &basic(sa.0, sa.1)).await;
    assert_eq!(s, 202);
    // A wrong password, and a service account that does not exist, are refused outright.
    for (user, pass) in [("tcr$ci", "wrong"), ("tcr$nobody", "ci-password")] {
        let r = reqwest::Client::new()
            .get(format!(
                "{}/service/token?service=harbor-registry",
                emu.registry_url()
            ))
            .header("Authorization", basic(user, pass))
            .send_ok()
            .await;
        assert_eq!(r.status(), 401, "{user}");
    }
    // Charts: upload where it may push, not where it may not; no delete at all.
    let upload = |ns: &'static str| {
        let (ct, body) = multipart_chart("web-1.0.0.tgz", &chart_archive("web", "1.0.0", 256));
        reqwest::Client::new()
            .post(format!("{}/api/chartrepo/{ns}/charts", emu.registry_url()))
            .header("Authorization", basic(sa.0, sa.1))
            .header("Content-Type", ct)
            .body(body)
            .send_ok()
    };
    assert_eq!(upload("team-a").await.status(), 201);
    let r = upload("team-b").await;
    assert_eq!(r.status(), 403);
    let r = reqwest::Client::new()
        .delete(format!(
            "{}/api/chartrepo/team-a/charts/web/1.0.0",
            emu.registry_url()
        ))
        .header("Authorization", basic(sa.0, sa.1))
        .send_ok()
        .await;
    assert_eq!(r.status(), 403);
    assert!(emu.state.charts.get("team-a", "web", "1.0.0").is_some());
}

#[tokio::test]
async fn cam_refuses_writes_outside_the_accounts_namespaces() {
    let dir = tempfile::tempdir().unwrap();
    let emu = emulator(dir.path()).await;
    let api = TcrApiClient::new(
        &emu.api_url(),
        &emu.state.cfg.region,
        100,
        std::time::Duration::from_secs(10),
        tcr_adapter::clock::system(),
    )
    .unwrap();
    let keys = ApiCredential::new(TEAM.0, TEAM.1);
    let id = emu.state.cfg.registry_id.clone();
    let refused = |action: &str, body: Value| {
        let (api, keys) = (&api, &keys);
        let action = action.to_string();
        async move {
            let r: Result<Value, _> = api.call(keys, &action, &body).await;
            r.expect_err(&action)
        }
    };
    for (action, body) in [
        (
            "CreateNamespace",
            json!({"RegistryId": id, "NamespaceName": "team-b2", "IsPublic": false}),
        ),
        // CAM is asked before the name is: an invalid one is refused the same way.
        (
            "CreateNamespace",
            json!({"RegistryId": id, "NamespaceName": "-bad-", "IsPublic": false}),
        ),
        (
            "CreateRepository",
            json!({"RegistryId": id, "NamespaceName": "team-b", "RepositoryName": "app"}),
        ),
        (
            "DeleteImage",
            json!({"RegistryId": id, "NamespaceName": "team-b", "RepositoryName": "app", "ImageVersion": "v1"}),
        ),
        (
            "DeleteNamespace",
            json!({"RegistryId": id, "NamespaceName": "team-b"}),
        ),
    ] {
        let e = refused(action, body.clone()).await;
        assert_eq!(
            e.code(),
            Some("AuthFailure.UnauthorizedOperation"),
            "{action}: {e}"
        );
        let ns = body["NamespaceName"].as_str().unwrap();
        let resource = format!(
            "resource (qcs::tcr:{}:uin/{TEAM_UIN}:repository/{id}/{ns}/*) has no permission",
            emu.state.cfg.region
        );
        assert!(e.to_string().contains(&format!("(tcr:{action})")), "{e}");
        assert!(e.to_string().contains(&resource), "{e}");
    }
    let mut names = common::namespace_names(&emu);
    names.sort();
    assert_eq!(names, ["team-a", "team-b"]);
    // Inside its namespaces the same account may write.
    api.create_namespace(&keys, &id, "team-a2", false)
        .await
        .unwrap();
    let _: Value = api
        .call(
            &keys,
            "CreateRepository",
            &json!({"RegistryId": id, "NamespaceName": "team-a2", "RepositoryName": "app"}),
        )
        .await
        .unwrap();
    assert!(common::namespace_names(&emu).contains(&"team-a2".to_string()));
}

#[test]
fn service_accounts_are_checked_when_the_configuration_loads() {
    let dir = tempfile::tempdir().unwrap();
    for (entry, why) in [
        (
            "name = \"ci\"\npassword = \"p\"\nregistry = [\"pull\", \"delete\"]",
            "not delete",
        ),
        (
            "name = \"tcr$ci\"\npassword = \"p\"",
            "without the tcr$ prefix",
        ),
        ("name = \"ci\"\npassword = \"\"", "password is empty"),
        (
            "name = \"ci\"\npassword = \"p\"\nnamespaces = [\"a[\"]",
            "namespace pattern",
        ),
    ] {
        let path = dir.path().join("c.toml");
        std::fs::write(&path, format!("[[emulator.service_accounts]]\n{entry}\n")).unwrap();
        let e = Config::load_with_env(Some(&path), Vec::new()).unwrap_err();
        assert!(e.to_string().contains(why), "{entry}: {e}");
    }
    let path = dir.path().join("ok.toml");
    std::fs::write(
        &path,
        "[[emulator.service_accounts]]\nname = \"ci\"\npassword = \"p\"\nnamespaces = [\"team-*\"]\n",
    )
    .unwrap();
    let cfg = Config::load_with_env(Some(&path), Vec::new()).unwrap();
    let sa = &cfg.emulator.service_accounts[0];
    assert_eq!(sa.username(), "tcr$ci");
    assert_eq!(
        sa.registry,
        [RegistryAction::Pull, RegistryAction::Push],
        "pull and push by default"
    );
}
