//! Namespaces created on first push, catalog and deletes through the cloud API: the provisioner
//! against the real emulator's control plane, observed through the emulator's `/metrics` and its
//! namespace store.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{
    emulator_config, start_emulator, start_emulator_with, start_emulator_with_namespaces,
    DEMO_SECRET_ID, DEMO_SECRET_KEY,
};
use tcr_adapter::clock;
use tcr_adapter::config::{EmulatorAccount, NamespacesConfig, Secret};
use tcr_adapter::discovery::{find_instance, DiscoveryError};
use tcr_adapter::emulator::storage::ManifestMeta;
use tcr_adapter::emulator::EmulatorHandle;
use tcr_adapter::namespaces::{NamespaceProvisioner, Outcome, NAMING_RULE};
use tcr_adapter::oci::{Digest, RepoName};
use tcr_adapter::tencentcloud::{ApiCredential, RetryPolicy, TcrApiClient};

fn demo_keys() -> ApiCredential {
    ApiCredential::new(DEMO_SECRET_ID, DEMO_SECRET_KEY)
}

fn client(h: &EmulatorHandle, qps: u32) -> TcrApiClient {
    TcrApiClient::new(
        &h.api_url(),
        "ap-guangzhou",
        qps,
        Duration::from_secs(10),
        clock::system(),
    )
    .unwrap()
}

fn provisioner(h: &EmulatorHandle, cfg: NamespacesConfig) -> NamespaceProvisioner {
    NamespaceProvisioner::new(&cfg).with_cloud(
        client(h, 1000),
        h.state.cfg.registry_id.clone(),
        Some(demo_keys()),
    )
}

/// `tcr_emulator_api_calls_total` summed over the series whose labels contain all `labels`.
async fn api_calls(h: &EmulatorHandle, labels: &[&str]) -> u64 {
    common::api_calls(h, labels).await
}

const CREATE_OK: &[&str] = &[r#"action="CreateNamespace""#, r#"result="ok""#];

#[tokio::test]
async fn concurrent_pushes_create_each_namespace_exactly_once() {
    let em = start_emulator().await;
    let h = &em.handle;
    let p = Arc::new(provisioner(h, NamespacesConfig::default()));
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let p = p.clone();
            tokio::spawn(async move {
                let keys = demo_keys();
                p.ensure(&format!("team-{}", i % 8), Some(&keys)).await
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().expect("ensure succeeds");
    }
    assert_eq!(api_calls(h, CREATE_OK).await, 8);
    assert_eq!(
        api_calls(h, &[r#"action="DescribeNamespaces""#]).await,
        8,
        "one check per namespace however many pushes race"
    );
    let names = common::namespace_names(h);
    assert_eq!(
        names,
        (0..8).map(|i| format!("team-{i}")).collect::<Vec<_>>()
    );
    assert!(
        h.state.namespaces.list().iter().all(|n| !n.public),
        "private by default"
    );
    assert_eq!(p.outcome_count(Outcome::Created), 8);
    assert_eq!(p.outcome_count(Outcome::ExistsCached), 56);
    // The cache answers later pushes without a cloud call; metrics are exposed.
    let before = api_calls(h, &[]).await;
    p.ensure("team-3", Some(&demo_keys())).await.unwrap();
    assert_eq!(api_calls(h, &[]).await, before);
    let registry = prometheus::Registry::new();
    p.register(&registry).unwrap();
    let text = tcr_adapter::telemetry::render(&registry);
    assert!(
        text.contains(r#"tcr_adapter_namespace_ensures_total{outcome="created"} 8"#),
        "{text}"
    );
    em.handle.stop().await;
}

#[tokio::test]
async fn existing_namespace_is_found_and_cache_expires() {
    // A substring match (`team-ab`) must not count as the namespace itself.
    let em = start_emulator_with_namespaces(&[("already", true), ("team-ab", false)]).await;
    let h = &em.handle;
    let manual = clock::ManualClock::new(1_700_000_000_000);
    let p = provisioner(
        h,
        NamespacesConfig {
            cache_ttl_secs: 60,
            ..Default::default()
        },
    )
    .with_clock(manual.clone());
    p.ensure("already", None).await.unwrap();
    assert_eq!(p.outcome_count(Outcome::Exists), 1);
    p.ensure("already", None).await.unwrap();
    assert_eq!(p.outcome_count(Outcome::ExistsCached), 1);
    manual.advance_secs(61);
    p.ensure("already", None).await.unwrap();
    assert_eq!(p.outcome_count(Outcome::Exists), 2);
    p.ensure("team-a", None).await.unwrap();
    assert_eq!(p.outcome_count(Outcome::Created), 1);
    assert!(h.state.namespaces.get("team-a").is_some());
    em.handle.stop().await;
}

#[tokio::test]
async fn namespace_created_by_someone_else_meanwhile_is_success() {
    let em = start_emulator().await;
    let h = &em.handle;
    let p = provisioner(h, NamespacesConfig::default());
    let state = h.state.clone();
    p.set_before_create_hook(move |ns| {
        state.namespaces.create(ns, false).unwrap();
    });
    p.ensure("raced", Some(&demo_keys()))
        .await
        .expect("a conflict is success");
    assert_eq!(p.outcome_count(Outcome::Conflict), 1);
    assert_eq!(
        api_calls(h, &[r#"action="CreateNamespace""#, "ResourceConflict"]).await,
        1
    );
    assert_eq!(api_calls(h, CREATE_OK).await, 0);
    // Known now: no further call.
    p.ensure("raced", Some(&demo_keys())).await.unwrap();
    assert_eq!(p.outcome_count(Outcome::ExistsCached), 1);
    em.handle.stop().await;
}

#[tokio::test]
async fn throttled_cloud_api_is_retried_until_namespaces_exist() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = emulator_config(dir.path());
    cfg.faults.api_qps_limit = 2;
    let h = start_emulator_with(cfg).await;
    let c = client(&h, 50).with_retry_policy(RetryPolicy {
        max_attempts: 10,
        base_delay: Duration::from_millis(250),
    });
    let p = Arc::new(
        NamespaceProvisioner::new(&NamespacesConfig::default()).with_cloud(
            c.clone(),
            h.state.cfg.registry_id.clone(),
            Some(demo_keys()),
        ),
    );
    let tasks: Vec<_> = (0..4)
        .map(|i| {
            let p = p.clone();
            tokio::spawn(async move { p.ensure(&format!("busy-{i}"), None).await })
        })
        .collect();
    for t in tasks {
        t.await
            .unwrap()
            .expect("ensure succeeds despite throttling");
    }
    assert_eq!(h.state.namespaces.list().len(), 4);
    assert!(api_calls(&h, &[r#"result="RequestLimitExceeded""#]).await > 0);
    assert!(c.retries_total().throttled > 0);
    assert_eq!(api_calls(&h, CREATE_OK).await, 4);
    h.stop().await;
}

#[tokio::test]
async fn refusals_say_why_and_create_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = emulator_config(dir.path());
    cfg.accounts.push(EmulatorAccount {
        secret_id: "AKIDlimitedKEY000000000000000000000".into(),
        secret_key: Secret::new("limitedSECRETkey0000000000000000"),
        uin: "100000000002".into(),
        actions: vec!["DescribeNamespaces".into(), "CreateInstanceToken".into()],
        ..Default::default()
    });
    let h = start_emulator_with(cfg).await;
    let deny = NamespacesConfig {
        deny: vec!["secret-*".into()],
        allow: vec!["team-*".into(), "secret-*".into(), "ab".into()],
        ..Default::default()
    };
    let p = provisioner(&h, deny);

    let e = p.ensure("ab--c", None).await.unwrap_err();
    assert_eq!(e.status.as_u16(), 403);
    assert!(
        e.message.contains(r#""ab--c""#) && e.message.contains(NAMING_RULE),
        "{e}"
    );
    let e = p.ensure("x", None).await.unwrap_err();
    assert!(e.message.contains("not a valid TCR namespace name"), "{e}");

    let e = p.ensure("secret-stuff", None).await.unwrap_err();
    assert_eq!(e.code.as_str(), "DENIED");
    assert!(
        e.message
            .contains(r#"denied by the pattern "secret-*" in namespaces.deny"#),
        "{e}"
    );
    let e = p.ensure("other", None).await.unwrap_err();
    assert!(
        e.message
            .contains("matches none of the patterns in namespaces.allow (team-*, secret-*, ab)"),
        "{e}"
    );

    let dry = provisioner(
        &h,
        NamespacesConfig {
            dry_run: true,
            ..Default::default()
        },
    );
    let e = dry.ensure("team-dry", None).await.unwrap_err();
    assert_eq!(e.status.as_u16(), 403);
    assert!(
        e.message.contains("dry run (namespaces.dry_run = true)")
            && e.message.contains("would be created (private)")
            && e.message.contains("nothing was created"),
        "{e}"
    );
    assert_eq!(dry.outcome_count(Outcome::DryRun), 1);

    let off = provisioner(
        &h,
        NamespacesConfig {
            auto_create: false,
            ..Default::default()
        },
    );
    let e = off.ensure("team-off", None).await.unwrap_err();
    assert!(e.message.contains("namespaces.auto_create is false"), "{e}");

    let limited = ApiCredential::new(
        "AKIDlimitedKEY000000000000000000000",
        "limitedSECRETkey0000000000000000",
    );
    let e = p.ensure("team-nocam", Some(&limited)).await.unwrap_err();
    assert_eq!(e.status.as_u16(), 403);
    assert!(
        e.message.contains(r#"creating namespace "team-nocam""#)
            && e.message
                .contains("this key may not call CreateNamespace (CAM policy)"),
        "{e}"
    );
    assert!(!e.message.contains("limitedSECRETkey"));

    let unknown = ApiCredential::new("AKIDnobodyKEY0000000000000000000000", "x");
    let e = p.ensure("team-ghost", Some(&unknown)).await.unwrap_err();
    assert_eq!(e.status.as_u16(), 403);
    assert!(
        e.message.contains("the SecretId AKIDnobo… does not exist"),
        "{e}"
    );

    // Nothing was created by any of these.
    assert!(h.state.namespaces.list().is_empty());
    assert_eq!(api_calls(&h, CREATE_OK).await, 0);
    assert!(p.outcome_count(Outcome::Denied) >= 5);
    h.stop().await;
}

#[tokio::test]
async fn without_any_keys_the_namespace_is_not_checked() {
    let em = start_emulator().await;
    let h = &em.handle;
    let p = NamespaceProvisioner::new(&NamespacesConfig::default()).with_cloud(
        client(h, 100),
        h.state.cfg.registry_id.clone(),
        None,
    );
    p.ensure("team-a", None).await.unwrap();
    assert_eq!(p.outcome_count(Outcome::Unchecked), 1);
    assert_eq!(api_calls(h, &[]).await, 0);
    let e = p.keys_needed_error("team-a");
    assert_eq!(e.status.as_u16(), 403);
    assert!(e
        .message
        .contains("creating namespace \"team-a\" needs TencentCloud API keys"));
    assert!(e.message.contains("tcr.secret_id and tcr.secret_key"));
    // Policy still applies.
    assert!(p.ensure("A", None).await.is_err());
    em.handle.stop().await;
}

#[tokio::test]
async fn instance_is_found_from_the_registry_url_alone() {
    let em = start_emulator().await;
    let h = &em.handle;
    let c = client(h, 100);
    let info = find_instance(&c, &demo_keys(), &h.registry_url(), None, None)
        .await
        .unwrap();
    assert_eq!(info.registry_id, h.state.cfg.registry_id);
    assert_eq!(info.region, h.state.cfg.region);
    assert_eq!(info.status, "Running");
    assert_eq!(info.public_domain, h.state.public_domain());

    // Configured id and region: no lookup.
    let before = api_calls(h, &[r#"action="DescribeInstances""#]).await;
    let info = find_instance(
        &c,
        &demo_keys(),
        "https://cr.example.com",
        Some("tcr-x"),
        Some("ap-shanghai"),
    )
    .await
    .unwrap();
    assert_eq!(
        (info.registry_id.as_str(), info.region.as_str()),
        ("tcr-x", "ap-shanghai")
    );
    assert_eq!(
        api_calls(h, &[r#"action="DescribeInstances""#]).await,
        before
    );

    let e = find_instance(
        &c,
        &demo_keys(),
        "https://nope.tencentcloudcr.com",
        None,
        None,
    )
    .await
    .unwrap_err();
    assert!(matches!(e, DiscoveryError::NotFound { .. }), "{e}");
    assert!(
        e.to_string().contains("set tcr.registry_id and tcr.region"),
        "{e}"
    );
    em.handle.stop().await;
}

#[tokio::test]
async fn catalog_pages_through_more_than_100_repositories_with_client_names() {
    let em = start_emulator_with_namespaces(&[("lib-tcr", false), ("team-a", false)]).await;
    let h = &em.handle;
    for i in 0..130 {
        h.state
            .storage
            .create_repository(&format!("team-a/app{i:03}"))
            .await
            .unwrap();
    }
    h.state
        .storage
        .create_repository("lib-tcr/nginx")
        .await
        .unwrap();
    let cfg = NamespacesConfig {
        map: [("library".to_string(), "lib-tcr".to_string())].into(),
        ..Default::default()
    };
    let p = provisioner(h, cfg);
    let keys = demo_keys();
    let all = p.catalog(&keys, None, None).await.unwrap();
    assert_eq!(all.repositories.len(), 131);
    assert_eq!(all.repositories[0], "library/nginx");
    assert_eq!(all.next, None);
    let mut sorted = all.repositories.clone();
    sorted.sort();
    assert_eq!(sorted, all.repositories);

    let first = p.catalog(&keys, Some(100), None).await.unwrap();
    assert_eq!(first.repositories.len(), 100);
    let next = first.next.clone().expect("a next link");
    assert_eq!(
        next,
        format!("/v2/_catalog?last={}&n=100", first.repositories[99])
    );
    let second = p
        .catalog(&keys, Some(100), Some(&first.repositories[99]))
        .await
        .unwrap();
    assert_eq!(second.repositories.len(), 31);
    assert_eq!(second.next, None);
    assert_eq!(second.repositories.last().unwrap(), "team-a/app129");
    em.handle.stop().await;
}

#[tokio::test]
async fn tags_are_deleted_through_the_api() {
    let em = start_emulator_with_namespaces(&[("team-a", false)]).await;
    let h = &em.handle;
    let body = br#"{"schemaVersion":2}"#;
    let digest = Digest::sha256_of(body);
    let meta: ManifestMeta = serde_json::from_value(serde_json::json!({
        "media_type": "application/vnd.oci.image.manifest.v1+json",
        "size": body.len(),
        "created_ms": 0,
    }))
    .unwrap();
    h.state
        .storage
        .put_manifest("team-a/app", &digest, body, meta, Some("v1"))
        .unwrap();
    let p = provisioner(h, NamespacesConfig::default());
    let repo = RepoName::parse("team-a/app").unwrap();
    p.delete_tag(&demo_keys(), &repo, "v1").await.unwrap();
    assert!(h.state.storage.resolve_tag("team-a/app", "v1").is_none());
    assert_eq!(
        api_calls(h, &[r#"action="DeleteImage""#, r#"result="ok""#]).await,
        1
    );
    let e = p.delete_tag(&demo_keys(), &repo, "v1").await.unwrap_err();
    assert_eq!(e.status.as_u16(), 404);
    assert_eq!(e.code.as_str(), "MANIFEST_UNKNOWN");
    em.handle.stop().await;
}

#[tokio::test]
async fn instance_is_looked_up_on_first_use_when_no_registry_id_is_configured() {
    let em = start_emulator().await;
    let h = &em.handle;
    let p = NamespaceProvisioner::new(&NamespacesConfig::default())
        .with_cloud(client(h, 100), "", Some(demo_keys()))
        .with_instance_lookup(&h.registry_url());
    p.ensure("team-a", None).await.unwrap();
    p.ensure("team-b", None).await.unwrap();
    assert!(h.state.namespaces.get("team-b").is_some());
    assert_eq!(
        p.registry_id(&demo_keys()).await.unwrap(),
        h.state.cfg.registry_id
    );
    // Looked up once, in one call: an IP address names no instance, so the PublicDomain match
    // is tried straight away.
    assert_eq!(api_calls(h, &[r#"action="DescribeInstances""#]).await, 1);

    let unknown = NamespaceProvisioner::new(&NamespacesConfig::default()).with_cloud(
        client(h, 100),
        "",
        Some(demo_keys()),
    );
    let e = unknown.ensure("team-c", None).await.unwrap_err();
    assert_eq!(e.status.as_u16(), 503);
    assert!(
        e.message.contains("set tcr.registry_id and tcr.region"),
        "{e}"
    );
    em.handle.stop().await;
}

#[tokio::test]
async fn unreachable_cloud_api_is_a_503_with_retry_after_and_is_not_cached() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let c = TcrApiClient::new(
        &format!("http://127.0.0.1:{port}"),
        "ap-guangzhou",
        100,
        Duration::from_secs(2),
        clock::system(),
    )
    .unwrap()
    .with_retry_policy(RetryPolicy {
        max_attempts: 2,
        base_delay: Duration::from_millis(10),
    });
    let p = NamespaceProvisioner::new(&NamespacesConfig::default()).with_cloud(
        c,
        "tcr-x",
        Some(demo_keys()),
    );
    for _ in 0..2 {
        let e = p.ensure("team-a", None).await.unwrap_err();
        assert_eq!(e.status.as_u16(), 503);
        assert_eq!(e.code.as_str(), "UNAVAILABLE");
        assert!(e.headers.iter().any(|(k, _)| k == "retry-after"));
        assert!(e.message.contains("could not be reached"), "{e}");
    }
    assert_eq!(
        p.outcome_count(Outcome::Error),
        2,
        "failures are not cached"
    );
}
