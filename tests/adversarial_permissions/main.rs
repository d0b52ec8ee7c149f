//! Permissions as TCR has them (issue 25, item 3), tried through the adapter. The emulator
//! limits a read-only and a `team-a*` CAM sub-account (API keys, and the instance tokens the
//! adapter gets for them) and a read-only and a `team-a*` `tcr$` service account. Each of them
//! tries every route of the adapter that can write ([`attacks`]), with the WAN dedup on (the
//! default) and with `wan.pipeline`; no write may be accepted: the emulator must hold exactly
//! what it held (every file of its data dir, no successful cloud API write), and the client must
//! get TCR's own refusal (401/403 with the OCI code, TCR's message passed on). What the same
//! credentials may do still works: pull with the read-only ones, push into `team-a*` with the
//! limited ones.
//!
//! Checked once by disabling the emulator's enforcement (`Principal::may` always true and
//! `check_namespace` always `Ok`): every `*_write_nothing*` test then fails.

#[path = "../common/mod.rs"]
mod common;
#[path = "../harbor/mod.rs"]
mod harbor;
#[path = "../wan_support/mod.rs"]
mod wan_support;

mod attacks;
mod world;

use tcr_adapter::oci::Digest;

use attacks::Attempt;
use common::{basic, SendOk};
use harbor::OCI_MANIFEST;
use wan_support::{config_of, harbor_push_blob, layer, manifest_of};
use world::{Mode, Seeded, World, RO_KEYS, RO_SA, TEAM_KEYS, TEAM_SA};

const DEDUP: Mode = Mode {
    pipeline: false,
    provisioner: true,
};
const PIPELINE: Mode = Mode {
    pipeline: true,
    provisioner: true,
};

/// Whether `a` is a refusal as TCR gives it, passed on: 401/403 with the OCI code
/// `UNAUTHORIZED`/`DENIED` (a HEAD has no body: anything but 200).
fn is_refusal(a: &Attempt) -> bool {
    if a.route.starts_with("HEAD") {
        return a.status != 200;
    }
    matches!(a.status, 401 | 403)
        && matches!(a.oci_code().as_deref(), Some("UNAUTHORIZED" | "DENIED"))
}

/// Every attempt was refused; the table of answers is printed either way.
fn assert_all_refused(who: &str, attempts: &[Attempt]) {
    for a in attempts {
        println!(
            "{who:>24} | {:<50} | {} | {}",
            a.route,
            a.status,
            a.body.trim()
        );
    }
    let accepted: Vec<&Attempt> = attempts.iter().filter(|a| !is_refusal(a)).collect();
    assert!(
        accepted.is_empty(),
        "{who}: writes not refused as TCR refuses them: {accepted:#?}"
    );
}

/// `who` (`cred`) tries every write into each of `targets` (`(namespace, exists)`) and creates
/// `fresh` through `/api/projects`: nothing is accepted, nothing changes.
async fn refused_everywhere(
    mode: Mode,
    who: &str,
    cred: (&str, &str),
    targets: &[(&str, bool)],
    fresh: &str,
) {
    let w = World::start(mode).await;
    let before = w.before().await;
    let namespaces = w.namespaces();
    let mut attempts = Vec::new();
    for (ns, exists) in targets {
        attempts.extend(attacks::data_plane(&w, cred, ns, *exists).await);
        if *exists {
            attempts.extend(attacks::harbor_api(&w, cred, ns, fresh).await);
        }
    }
    // Let a pipelined upload that was wrongly acknowledged reach TCR before looking.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_all_refused(who, &attempts);
    assert_eq!(w.namespaces(), namespaces, "{who}: a namespace appeared");
    w.assert_unchanged(&before, who).await;
    // TCR's own words reached the client: the data plane's refusal, and CAM's.
    let said = |text: &str| attempts.iter().any(|a| a.body.contains(text));
    assert!(
        said("unauthorized to access repository"),
        "{who}: TCR's data-plane refusal was not passed on"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_api_keys_write_nothing() {
    let targets = [("team-a", true), ("team-b", true), ("fresh-ns", false)];
    refused_everywhere(DEDUP, "read-only API keys", RO_KEYS, &targets, "fresh-ns").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_api_keys_write_nothing_pipelined() {
    let targets = [("team-a", true), ("team-b", true), ("fresh-ns", false)];
    refused_everywhere(
        PIPELINE,
        "read-only API keys",
        RO_KEYS,
        &targets,
        "fresh-ns",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn team_api_keys_write_nothing_elsewhere() {
    let targets = [("team-b", true), ("other-ns", false)];
    refused_everywhere(DEDUP, "team-a API keys", TEAM_KEYS, &targets, "other-ns").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn team_api_keys_write_nothing_elsewhere_pipelined() {
    let targets = [("team-b", true), ("other-ns", false)];
    refused_everywhere(PIPELINE, "team-a API keys", TEAM_KEYS, &targets, "other-ns").await;
}

const NO_PROVISIONER: Mode = Mode {
    pipeline: false,
    provisioner: false,
};
const NO_PROVISIONER_PIPELINE: Mode = Mode {
    pipeline: true,
    provisioner: false,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_service_account_writes_nothing() {
    let targets = [("team-a", true), ("team-b", true), ("fresh-ns", false)];
    refused_everywhere(
        NO_PROVISIONER,
        "read-only tcr$ account",
        RO_SA,
        &targets,
        "fresh-ns",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_service_account_writes_nothing_pipelined() {
    let targets = [("team-a", true), ("team-b", true), ("fresh-ns", false)];
    refused_everywhere(
        NO_PROVISIONER_PIPELINE,
        "read-only tcr$ account",
        RO_SA,
        &targets,
        "fresh-ns",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn team_service_account_writes_nothing_elsewhere() {
    let targets = [("team-b", true), ("other-ns", false)];
    refused_everywhere(
        NO_PROVISIONER,
        "team-a tcr$ account",
        TEAM_SA,
        &targets,
        "other-ns",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn team_service_account_writes_nothing_elsewhere_pipelined() {
    let targets = [("team-b", true), ("other-ns", false)];
    refused_everywhere(
        NO_PROVISIONER_PIPELINE,
        "team-a tcr$ account",
        TEAM_SA,
        &targets,
        "other-ns",
    )
    .await;
}

/// With provisioner keys configured, a `tcr$` caller's cloud API writes (namespace creation,
/// tag deletion through `/api/repositories`) are made with the provisioner's keys: the service
/// account's own limits are never asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "adapter gap: with provisioner keys, /api/projects POST, /api/repositories tag DELETE and the namespace auto-create act for a tcr$ caller with the provisioner's keys, past the service account's limits (reported to the lead)"]
async fn read_only_service_account_writes_nothing_with_provisioner_keys() {
    let targets = [("team-a", true), ("team-b", true), ("fresh-ns", false)];
    refused_everywhere(DEDUP, "read-only tcr$ account", RO_SA, &targets, "fresh-ns").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "adapter gap: with provisioner keys, /api/projects POST, /api/repositories tag DELETE and the namespace auto-create act for a tcr$ caller with the provisioner's keys, past the service account's limits (reported to the lead)"]
async fn team_service_account_writes_nothing_elsewhere_with_provisioner_keys() {
    let targets = [("team-b", true), ("other-ns", false)];
    refused_everywhere(DEDUP, "team-a tcr$ account", TEAM_SA, &targets, "other-ns").await;
}

/// Push `repo:v1` (two layers and a config, Harbor 2.0's way) as `cred`.
async fn push_as(w: &World, cred: (&str, &str), repo: &str) -> Digest {
    let t = w.e.push_token(repo, cred.0, cred.1).await;
    let (a, b) = (layer(40, 1500), layer(41, 700));
    let config = config_of(repo);
    for blob in [&a, &b, &config] {
        harbor_push_blob(&w.e, repo, &t, blob).await;
    }
    let manifest = manifest_of(&config, &[&a, &b]);
    w.e.put_manifest(repo, "v1", &t, OCI_MANIFEST, manifest.as_bytes())
        .await;
    Digest::sha256_of(manifest.as_bytes())
}

/// What the limited credentials may do still works, in both modes: the read-only ones pull
/// images and charts; the `team-a*` ones push into `team-a` and into a new `team-a-*` namespace
/// (created by the adapter with the caller's own keys, or the provisioner's for the `tcr$` one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_is_allowed_still_works() {
    for mode in [DEDUP, PIPELINE] {
        let w = World::start(mode).await;
        let seeded = Seeded::of("team-b");
        for (who, cred) in [("read-only API keys", RO_KEYS), ("read-only tcr$", RO_SA)] {
            let t =
                w.e.token_as(cred.0, cred.1, &["repository:team-b/app:pull"])
                    .await;
            let r =
                w.e.req(
                    reqwest::Method::GET,
                    "/v2/team-b/app/manifests/v1",
                    Some(&t),
                    &[("Accept", OCI_MANIFEST)],
                    None,
                )
                .await;
            assert_eq!(r.status(), 200, "{who} pulls ({mode:?})");
            assert_eq!(
                r.bytes().await.unwrap().as_ref(),
                seeded.manifest.as_slice()
            );
            let r =
                w.e.http
                    .get(format!("{}/chartrepo/team-b/index.yaml", w.e.base))
                    .header("Authorization", basic(cred.0, cred.1))
                    .send_ok()
                    .await;
            assert_eq!(r.status(), 200, "{who} reads the chart index ({mode:?})");
            assert!(r.text().await.unwrap().contains("web"), "{who}");
        }
        for (who, cred, repo) in [
            ("team-a API keys", TEAM_KEYS, "team-a/by-keys"),
            ("team-a API keys", TEAM_KEYS, "team-a-new/by-keys"),
            ("team-a tcr$", TEAM_SA, "team-a/by-sa"),
            ("team-a tcr$", TEAM_SA, "team-a-other/by-sa"),
        ] {
            let d = push_as(&w, cred, repo).await;
            let (ns, name) = repo.split_once('/').unwrap();
            let stored =
                w.e.emu
                    .state
                    .storage
                    .resolve_tag(&format!("{ns}/{name}"), "v1");
            assert_eq!(stored, Some(d), "{who} pushed {repo} ({mode:?})");
        }
        let r =
            w.e.http
                .post(format!("{}/api/projects", w.e.base))
                .header("Authorization", basic(TEAM_KEYS.0, TEAM_KEYS.1))
                .body(serde_json::json!({"project_name": "team-a-extra"}).to_string())
                .send_ok()
                .await;
        assert_eq!(
            r.status(),
            201,
            "team-a API keys create team-a-extra ({mode:?})"
        );
        assert!(w.namespaces().contains(&"team-a-extra".to_string()));
    }
}
