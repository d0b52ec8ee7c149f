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

/// Every attempt was refused. The table of answers is printed.
fn assert_all_refused(who: &str, attempts: &[Attempt]) {
    for a in attempts {
        let body = a.body.trim();
        println!("{who:>24} | {:<50} | {} | {body}", a.route, a.status);
    }
    let accepted: Vec<&Attempt> = attempts.iter().filter(|a| !is_refusal(a)).collect();
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

/// Cloud API writes asked for so far, whatever their answer: for a registry credential none may
/// be made at all (the provisioner's keys never write past its limits).
async fn api_writes_asked(w: &World) -> u64 {
    let mut n = 0;
    for action in ["CreateNamespace", "CreateRepository", "DeleteImage"] {
        n += w.e.api_calls(&[&format!("action=\"{action}\"")]).await;
    }
    n
}

/// `case` tries every write into each of its targets and creates its `fresh` namespace through
/// `/api/projects`: nothing is accepted, nothing changes in the emulator, TCR's own refusal
/// reaches the client, and for a registry credential no cloud API write is even asked.
async fn refused_everywhere(mode: Mode, case: Case) {
    let (who, cred) = (case.who, case.cred);
    let w = World::start(mode).await;
    let before = w.before().await;
    let asked = api_writes_asked(&w).await;
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
    assert_all_refused(who, &attempts);
    assert_eq!(w.namespaces(), namespaces, "{who}: a namespace appeared");
    w.assert_unchanged(&before, who).await;
    if !case.cam {
        assert_eq!(
            api_writes_asked(&w).await,
            asked,
            "{who}: a cloud API write was made for a registry credential"
        );
    }
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
    refused_everywhere(DEDUP, RO_KEYS_CASE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_api_keys_write_nothing_pipelined() {
    refused_everywhere(PIPELINE, RO_KEYS_CASE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn team_api_keys_write_nothing_elsewhere() {
    refused_everywhere(DEDUP, TEAM_KEYS_CASE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn team_api_keys_write_nothing_elsewhere_pipelined() {
    refused_everywhere(PIPELINE, TEAM_KEYS_CASE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_service_account_writes_nothing() {
    refused_everywhere(NO_PROVISIONER, RO_SA_CASE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_service_account_writes_nothing_pipelined() {
    refused_everywhere(NO_PROVISIONER_PIPELINE, RO_SA_CASE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn team_service_account_writes_nothing_elsewhere() {
    refused_everywhere(NO_PROVISIONER, TEAM_SA_CASE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn team_service_account_writes_nothing_elsewhere_pipelined() {
    refused_everywhere(NO_PROVISIONER_PIPELINE, TEAM_SA_CASE).await;
}

/// The attempt whose route contains `route`.
fn attempt<'a>(attempts: &'a [Attempt], route: &str) -> &'a Attempt {
    attempts
        .iter()
        .find(|a| a.route.contains(route))
        .unwrap_or_else(|| panic!("no attempt on {route}: {attempts:#?}"))
}

/// TCR's refusal passed on: 403 `DENIED` (the adapter's form of an upstream 401 on a write)
/// with TCR's own message.
fn assert_tcr_refusal(who: &str, a: &Attempt, tcr_says: &str) {
    assert_eq!(
        (a.status, a.oci_code().as_deref()),
        (403, Some("DENIED")),
        "{who}: {a:#?}"
    );
    assert!(a.body.contains(tcr_says), "{who}: {a:#?}");
}

/// A chunked upload with `wan.pipeline` into a repository TCR refuses the caller: TCR's
/// refusal of the upstream session (opened at the POST) reaches the client at its first PATCH,
/// not a `201` from the spool; the spooled bytes are dropped and nothing reaches TCR.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_uploads_pass_on_the_refusal() {
    for (mode, case) in [
        (PIPELINE, RO_KEYS_CASE),
        (NO_PROVISIONER_PIPELINE, TEAM_SA_CASE),
    ] {
        let w = World::start(mode).await;
        let before = w.before().await;
        let attempts = attacks::data_plane(&w, case.cred, "team-b", true).await;
        let chunked = attempt(&attempts, "(chunked");
        assert_tcr_refusal(
            case.who,
            chunked,
            "unauthorized to access repository: team-b/new, action: push",
        );
        settle(&w, 0).await;
        w.assert_unchanged(&before, case.who).await;
        let m = w.e.adapter_metrics().await;
        assert_eq!(
            wan_support::metric(&m, "tcr_adapter_pipeline_spool_bytes "),
            0,
            "{}: spooled bytes kept",
            case.who
        );
    }
}

/// `DELETE /api/repositories/<repo>/tags/<tag>` by a `tcr$` account that may not touch the
/// repository: TCR's refusal reaches the client, not a 404 saying the tag does not exist —
/// without provisioner keys (the tag is read on the data plane: TCR refuses the pull) and with
/// them (TCR's realm grants no `delete`: no `DeleteImage` is asked).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_tag_delete_passes_on_the_refusal() {
    for (mode, tcr_says) in [
        (
            NO_PROVISIONER,
            "unauthorized to access repository: team-b/app, action: pull",
        ),
        (
            DEDUP,
            "unauthorized to access repository: team-b/app, action: delete",
        ),
    ] {
        let w = World::start(mode).await;
        let before = w.before().await;
        let asked = api_writes_asked(&w).await;
        let attempts = attacks::harbor_api(&w, TEAM_SA, "team-b", "other-ns").await;
        let a = attempt(&attempts, "DELETE /api/repositories/");
        assert_tcr_refusal("team-a tcr$ account", a, tcr_says);
        assert!(!a.body.contains("not found"), "{a:#?}");
        w.assert_unchanged(&before, "team-a tcr$ account").await;
        assert_eq!(api_writes_asked(&w).await, asked, "{mode:?}");
    }
}

/// With provisioner keys configured, nothing a `tcr$` account asks is done with them past its
/// limits: a tag `DELETE` (`/v2/` and `/api/repositories`) is refused with what TCR's realm
/// granted it (no `DeleteImage`), and no namespace is created for it (`POST /api/projects`, a
/// push into a namespace that does not exist), while the namespaces it may use keep working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_accounts_write_nothing_with_provisioner_keys() {
    refused_everywhere(DEDUP, RO_SA_CASE).await;
    refused_everywhere(DEDUP, TEAM_SA_CASE).await;
    let w = World::start(DEDUP).await;
    let t =
        w.e.token_as(
            RO_SA.0,
            RO_SA.1,
            &["repository:team-a/app:pull,push,delete"],
        )
        .await;
    let r = w.e.delete("/v2/team-a/app/manifests/v1", &t).await;
    let a = Attempt {
        route: "DELETE manifests/<tag>".into(),
        status: r.status().as_u16(),
        body: r.text().await.unwrap(),
    };
    assert_tcr_refusal(
        "read-only tcr$ account",
        &a,
        "unauthorized to access repository: team-a/app, action: delete",
    );
    let r =
        w.e.try_token(
            TEAM_SA.0,
            TEAM_SA.1,
            &["repository:team-a-fresh/app:pull,push"],
        )
        .await;
    let (status, body) = r.expect_err("a push token into a namespace nobody created");
    assert_eq!(status.as_u16(), 403, "{body}");
    assert!(body.contains("does not exist"), "{body}");
    assert!(!w.namespaces().contains(&"team-a-fresh".to_string()));
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
/// (created by the adapter with the caller's own keys; the `tcr$` one pushes there once it
/// exists, as TCR limits service accounts to existing namespaces). An instance token of the
/// unlimited account still has namespaces created and tags deleted with the provisioner's keys
/// (its realm grant includes `delete`).
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
            ("team-a tcr$", TEAM_SA, "team-a-new/by-sa"),
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
        let (user, pass) = (w.e.user.clone(), w.e.pass.clone());
        push_as(&w, (&user, &pass), "by-token/app").await;
        assert!(w.namespaces().contains(&"by-token".to_string()), "{mode:?}");
        let t =
            w.e.token_as(&user, &pass, &["repository:by-token/app:pull,delete"])
                .await;
        let deletes = || w.e.api_calls(&["action=\"DeleteImage\"", "result=\"ok\""]);
        let before_deletes = deletes().await;
        let r = w.e.delete("/v2/by-token/app/manifests/v1", &t).await;
        assert_eq!(r.status(), 202, "instance token deletes a tag ({mode:?})");
        push_as(&w, (&user, &pass), "by-token/api").await;
        let r =
            w.e.http
                .delete(format!(
                    "{}/api/repositories/by-token/api/tags/v1",
                    w.e.base
                ))
                .header("Authorization", basic(&user, &pass))
                .send_ok()
                .await;
        assert_eq!(
            r.status(),
            200,
            "instance token deletes through /api ({mode:?})"
        );
        assert_eq!(
            w.e.emu.state.storage.resolve_tag("by-token/api", "v1"),
            None,
            "{mode:?}"
        );
        assert_eq!(
            deletes().await,
            before_deletes + 2,
            "both through DeleteImage with the provisioner's keys ({mode:?})"
        );
        assert_eq!(
            w.e.emu.state.storage.resolve_tag("by-token/app", "v1"),
            None,
            "{mode:?}"
        );
    }
}
