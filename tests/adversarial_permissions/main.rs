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
use wan_support::{config_of, head_blob, layer, manifest_of};
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

/// Every attempt was refused, but those on the `unjudged` routes (a known adapter gap, tested
/// strictly by an ignored test; the emulator's content is checked either way). The table of
/// answers is printed.
fn assert_all_refused(who: &str, attempts: &[Attempt], unjudged: &[&str]) {
    for a in attempts {
        let body = a.body.trim();
        println!("{who:>24} | {:<50} | {} | {body}", a.route, a.status);
    }
    let accepted: Vec<&Attempt> = attempts
        .iter()
        .filter(|a| !is_refusal(a) && !unjudged.contains(&a.route.as_str()))
        .collect();
    assert!(
        accepted.is_empty(),
        "{who}: writes not refused as TCR refuses them: {accepted:#?}"
    );
}

/// Wait until the pipeline has run a job for each of the `acknowledged` uploads and none is in
/// flight (bounded), so that what it sends reaches TCR before the emulator is looked at.
async fn settle(w: &World, acknowledged: usize) {
    for _ in 0..200 {
        let m = w.e.adapter_metrics().await;
        let jobs = common::sum_metric(&m, "tcr_adapter_pipeline_jobs_total{", &[]);
        let busy = wan_support::metric(&m, "tcr_adapter_pipeline_uploads_in_flight");
        if jobs as usize >= acknowledged && busy == 0 {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// A limited credential and where it must not write.
struct Case {
    who: &'static str,
    cred: (&'static str, &'static str),
    /// `(namespace, exists)`: existing ones hold a seeded image and chart.
    targets: &'static [(&'static str, bool)],
    /// A namespace that does not exist, for `POST /api/projects`.
    fresh: &'static str,
    /// API keys: CAM's refusal (`AuthFailure.UnauthorizedOperation`) must reach the client.
    cam: bool,
}

const READ_ONLY_TARGETS: &[(&str, bool)] =
    &[("team-a", true), ("team-b", true), ("fresh-ns", false)];
const TEAM_TARGETS: &[(&str, bool)] = &[("team-b", true), ("other-ns", false)];

const RO_KEYS_CASE: Case = Case {
    who: "read-only API keys",
    cred: RO_KEYS,
    targets: READ_ONLY_TARGETS,
    fresh: "fresh-ns",
    cam: true,
};
const TEAM_KEYS_CASE: Case = Case {
    who: "team-a API keys",
    cred: TEAM_KEYS,
    targets: TEAM_TARGETS,
    fresh: "other-ns",
    cam: true,
};
const RO_SA_CASE: Case = Case {
    who: "read-only tcr$ account",
    cred: RO_SA,
    targets: READ_ONLY_TARGETS,
    fresh: "fresh-ns",
    cam: false,
};
const TEAM_SA_CASE: Case = Case {
    who: "team-a tcr$ account",
    cred: TEAM_SA,
    targets: TEAM_TARGETS,
    fresh: "other-ns",
    cam: false,
};

/// The pipeline acknowledges a chunked upload's last PUT (201) before TCR has seen it; TCR
/// then refuses the background upload and the manifest PUT, so nothing lands, but the client
/// was told the blob is stored.
const PIPELINED_ACK: &str = "PUT <session>?digest= (chunked: end)";

/// A tag DELETE through the Harbor API by a registry credential that may not read the
/// repository: the adapter resolves the tag on the data plane, TCR refuses the read, and the
/// client is told `404 MANIFEST_UNKNOWN "tag … not found"` instead of TCR's refusal (nothing is
/// deleted).
const API_TAG_DELETE: &str = "DELETE /api/repositories/<repo>/tags/<tag>";

/// `case` tries every write into each of its targets and creates its `fresh` namespace through
/// `/api/projects`: nothing is accepted (but on `unjudged` routes), nothing changes in the
/// emulator, and TCR's own refusal reaches the client.
async fn refused_everywhere(mode: Mode, case: Case, unjudged: &[&str]) {
    let (who, cred) = (case.who, case.cred);
    let w = World::start(mode).await;
    let before = w.before().await;
    let namespaces = w.namespaces();
    let mut attempts = Vec::new();
    for (ns, exists) in case.targets {
        attempts.extend(attacks::data_plane(&w, cred, ns, *exists).await);
        if *exists {
            attempts.extend(attacks::harbor_api(&w, cred, ns, case.fresh).await);
        }
    }
    if mode.pipeline {
        settle(&w, attempts.iter().filter(|a| a.status == 201).count()).await;
    }
    assert_all_refused(who, &attempts, unjudged);
    assert_eq!(w.namespaces(), namespaces, "{who}: a namespace appeared");
    w.assert_unchanged(&before, who).await;
    let said = |text: &str| attempts.iter().any(|a| a.body.contains(text));
    assert!(
        said("unauthorized to access repository"),
        "{who}: TCR's data-plane refusal was not passed on"
    );
    assert!(
        !case.cam || said("AuthFailure.UnauthorizedOperation"),
        "{who}: CAM's refusal was not passed on"
    );
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
async fn read_only_api_keys_write_nothing() {
    refused_everywhere(DEDUP, RO_KEYS_CASE, &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_api_keys_write_nothing_pipelined() {
    refused_everywhere(PIPELINE, RO_KEYS_CASE, &[PIPELINED_ACK]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn team_api_keys_write_nothing_elsewhere() {
    refused_everywhere(DEDUP, TEAM_KEYS_CASE, &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn team_api_keys_write_nothing_elsewhere_pipelined() {
    refused_everywhere(PIPELINE, TEAM_KEYS_CASE, &[PIPELINED_ACK]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_service_account_writes_nothing() {
    refused_everywhere(NO_PROVISIONER, RO_SA_CASE, &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_service_account_writes_nothing_pipelined() {
    refused_everywhere(NO_PROVISIONER_PIPELINE, RO_SA_CASE, &[PIPELINED_ACK]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn team_service_account_writes_nothing_elsewhere() {
    refused_everywhere(NO_PROVISIONER, TEAM_SA_CASE, &[API_TAG_DELETE]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn team_service_account_writes_nothing_elsewhere_pipelined() {
    refused_everywhere(
        NO_PROVISIONER_PIPELINE,
        TEAM_SA_CASE,
        &[PIPELINED_ACK, API_TAG_DELETE],
    )
    .await;
}

/// The pipelined chunked upload, judged: TCR's refusal must reach the client, not a 201.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "adapter gap (src/registry pipeline): with wan.pipeline a chunked upload's final PUT is acknowledged 201 from the spool before TCR refuses the push; nothing lands in TCR and the manifest PUT is refused, but the client is told the blob is stored (reported to the lead)"]
async fn pipelined_uploads_pass_on_the_refusal() {
    refused_everywhere(PIPELINE, RO_KEYS_CASE, &[]).await;
    refused_everywhere(PIPELINE, TEAM_SA_CASE, &[]).await;
}

/// The Harbor API's tag DELETE by a `tcr$` account that may not read the repository, judged:
/// TCR's refusal must reach the client, not a 404 that says the tag does not exist.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "adapter gap (src/harbor_api/repositories.rs resolve_digest): a tag DELETE by a registry credential that may not read the repository answers 404 MANIFEST_UNKNOWN (tag not found) instead of passing on TCR's 401 (nothing is deleted; reported to the lead)"]
async fn api_tag_delete_passes_on_the_refusal() {
    refused_everywhere(NO_PROVISIONER, TEAM_SA_CASE, &[]).await;
}

/// With provisioner keys configured, a `tcr$` caller's cloud API writes (namespace creation on
/// push and through `/api/projects`, tag deletion through `/api/repositories`) are made with the
/// provisioner's keys: the service account's own limits are never asked. A read-only `tcr$`
/// account so deletes tags (`DELETE /v2/<repo>/manifests/<tag>` → `DeleteImage`, 202) and
/// creates namespaces (`POST /api/projects`, 201).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "adapter gap (src/registry/handlers.rs answer_locally, src/harbor_api/projects.rs, src/namespaces): with provisioner keys configured, DELETE /v2/<repo>/manifests/<tag> (DeleteImage), POST /api/projects and the namespace auto-create on push act for a tcr$ caller with the provisioner's API keys, past the service account's limits: a read-only tcr$ account deletes tags and creates namespaces (reported to the lead)"]
async fn service_accounts_write_nothing_with_provisioner_keys() {
    refused_everywhere(DEDUP, RO_SA_CASE, &[]).await;
    refused_everywhere(DEDUP, TEAM_SA_CASE, &[]).await;
}

/// A blob into `repo` with one push token: HEAD, and when absent a monolithic upload.
async fn push_blob_with(e: &harbor::Env, repo: &str, token: &str, data: &[u8]) {
    let d = Digest::sha256_of(data);
    let (s, _, _) = head_blob(e, repo, &d, token).await;
    if s != 200 {
        assert_eq!(s, 404, "{repo}");
        e.push_blob(repo, token, data, false, true).await;
    }
}

/// Push `repo:v1` (two layers and a config) as `cred`.
async fn push_as(w: &World, cred: (&str, &str), repo: &str) -> Digest {
    let t = w.e.push_token(repo, cred.0, cred.1).await;
    let (a, b) = (layer(40, 1500), layer(41, 700));
    let config = config_of(repo);
    for blob in [&a, &b, &config] {
        push_blob_with(&w.e, repo, &t, blob).await;
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
