//! Object-storage redirects, as TCR answers blob reads with a 307 to a signed COS URL. The
//! emulator's storage listener sits on another loopback host (127.0.0.2), as COS is another host
//! than the registry, so clients drop `Authorization` when they follow. `tcr.redirects = "relay"`
//! hands the client the storage URL (and nothing of the adapter's credentials); `"follow"` makes
//! the adapter fetch it without `Authorization` and stream the bytes. Both with skopeo and with
//! the Harbor replays of every generation followed by the reads Harbor makes when it pulls.

mod common;
mod harbor;
mod oci_layout;

use crate::common::SendOk;
use harbor::{Env, DOCKER_MANIFEST, OCI_MANIFEST};
use reqwest::{Method, StatusCode};
use tcr_adapter::config::RedirectMode;
use tcr_adapter::oci::Digest;

async fn env(mode: RedirectMode) -> Env {
    Env::start(
        |ec| {
            ec.blob_redirects = true;
            ec.storage_listen = Some("127.0.0.2:0".parse().unwrap());
        },
        |c| c.tcr.redirects = mode,
    )
    .await
}

/// Requests the emulator's storage listener answered, by method.
fn storage_requests(e: &impl HasEmulator, method: &str) -> u64 {
    let m = &e.emulator().state.metrics.registry_requests;
    ["200", "206"]
        .iter()
        .map(|s| m.with_label_values(&["storage", method, s]).get())
        .sum()
}

trait HasEmulator {
    fn emulator(&self) -> &tcr_adapter::emulator::EmulatorHandle;
}

impl HasEmulator for Env {
    fn emulator(&self) -> &tcr_adapter::emulator::EmulatorHandle {
        &self.emu
    }
}

/// An emulator (and its data) without the adapter `Env` started.
struct Tls {
    emu: tcr_adapter::emulator::EmulatorHandle,
    _dir: tempfile::TempDir,
}

impl HasEmulator for Tls {
    fn emulator(&self) -> &tcr_adapter::emulator::EmulatorHandle {
        &self.emu
    }
}

/// A client like Go's `net/http` (Harbor, skopeo): follows redirects and drops
/// `Authorization` when the host changes.
fn following_client() -> reqwest::Client {
    reqwest::Client::new()
}

/// Every blob of the images a Harbor replay pushed into `repo`.
fn replayed_blobs(repo: &str, generation: &str) -> Vec<Vec<u8>> {
    let seeds: Vec<(String, &str)> = match generation {
        "2.0" => ["amd64", "arm64"]
            .iter()
            .map(|a| (format!("{repo}-{a}"), OCI_MANIFEST))
            .collect(),
        _ => vec![(repo.to_string(), DOCKER_MANIFEST)],
    };
    seeds
        .iter()
        .flat_map(|(seed, mt)| {
            let (layer, config, _) = harbor::image(seed, mt);
            [layer, config]
        })
        .collect()
}

async fn replay(e: &Env, generation: &str, repo: &str, user: &str, pass: &str) {
    match generation {
        "1.8" => e.replay_1_8(repo, user, pass).await,
        "1.10" => e.replay_1_10(repo, user, pass).await,
        _ => e.replay_2_0(repo, user, pass).await,
    }
}

/// Each generation, with API keys and with a long-term registry token: push through the adapter,
/// then read every blob back the way Harbor's pull does (GET with the adapter's token, following
/// redirects like Go).
async fn replays_then_reads(e: &Env, mode: RedirectMode) {
    let creds = [
        (
            common::DEMO_SECRET_ID.to_string(),
            common::DEMO_SECRET_KEY.to_string(),
        ),
        (e.user.clone(), e.pass.clone()),
    ];
    for (k, (user, pass)) in creds.iter().enumerate() {
        for generation in ["1.8", "1.10", "2.0"] {
            let repo = format!("redir-{k}/app-{}", generation.replace('.', "-"));
            replay(e, generation, &repo, user, pass).await;
            let t = e
                .token_as(user, pass, &[&format!("repository:{repo}:pull")])
                .await;
            for blob in replayed_blobs(&repo, generation) {
                let d = Digest::sha256_of(&blob);
                let path = format!("/v2/{repo}/blobs/{d}");
                // What the adapter answers, unfollowed.
                let raw = e.get(&path, &t).await;
                match mode {
                    RedirectMode::Relay => {
                        assert_eq!(raw.status(), StatusCode::TEMPORARY_REDIRECT, "{path}");
                        let loc = crate::common::header(&raw, "location");
                        let storage = e.emu.storage_url().unwrap();
                        assert!(loc.starts_with(&format!("{storage}/blobs/{d}?")), "{loc}");
                        for secret in [&t, pass, &e.pass] {
                            assert!(!loc.contains(secret.as_str()), "a credential in {loc}");
                        }
                    }
                    RedirectMode::Follow => {
                        assert_eq!(raw.status(), StatusCode::OK, "{path}");
                        assert_eq!(raw.headers()["docker-content-digest"], d.as_str());
                        assert_eq!(raw.bytes().await.unwrap(), blob, "{path}");
                    }
                }
                // What Harbor ends up with.
                let follow = |m: Method| {
                    let url = format!("{}{path}", e.base);
                    following_client().request(m, url).bearer_auth(&t).send_ok()
                };
                let got = follow(Method::GET).await;
                assert_eq!(got.status(), StatusCode::OK, "{path}");
                assert_eq!(got.bytes().await.unwrap(), blob, "{path}");
                let head = follow(Method::HEAD).await;
                assert_eq!(head.status(), StatusCode::OK, "HEAD {path}");
                assert_eq!(
                    head.headers()["content-length"],
                    blob.len().to_string().as_str()
                );
            }
            // A second replication finds the image in place.
            let tag = e
                .token_as(user, pass, &[&format!("repository:{repo}:pull,push")])
                .await;
            assert_eq!(e.head_manifest(&repo, "v1", &tag).await, 200);
        }
    }
}

/// skopeo pushes an image (and a multi-arch index) through the adapter and copies it back out:
/// every blob byte-identical.
async fn skopeo_round_trip(e: &Env) {
    common::require_tool("skopeo");
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let mut layout = oci_layout::Layout::new(&src);
    layout.tag_image("single", 11);
    layout.tag_index("multi", 12);
    layout.finish();
    let host = e.base.trim_start_matches("http://").to_string();
    let creds = format!("{}:{}", common::DEMO_SECRET_ID, common::DEMO_SECRET_KEY);
    for tag in ["single", "multi"] {
        common::skopeo_push(&src, tag, &format!("{host}/redir-skopeo/app:{tag}"), &creds).await;
        let out = dir.path().join(format!("out-{tag}"));
        common::skopeo_pull(&format!("{host}/redir-skopeo/app:{tag}"), &out, tag, &creds).await;
        let source = oci_layout::blobs(&src);
        let pulled = oci_layout::blobs(&out);
        assert!(pulled.len() >= 3, "{tag}: {}", pulled.len());
        for (k, v) in &pulled {
            assert_eq!(Some(v), source.get(k), "{tag}: blob {k}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_hands_clients_the_signed_storage_url_and_they_read_from_storage() {
    let e = env(RedirectMode::Relay).await;
    replays_then_reads(&e, RedirectMode::Relay).await;
    let before = storage_requests(&e, "GET");
    skopeo_round_trip(&e).await;
    // skopeo read the blobs from storage itself.
    assert!(storage_requests(&e, "GET") >= before + 3);
    e.adapter.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_streams_storage_bytes_through_the_adapter() {
    let e = env(RedirectMode::Follow).await;
    replays_then_reads(&e, RedirectMode::Follow).await;
    skopeo_round_trip(&e).await;

    // One storage GET per blob GET the adapter serves; ranges pass through.
    let repo = "redir-0/app-1-10";
    let t = e
        .token_as(
            common::DEMO_SECRET_ID,
            common::DEMO_SECRET_KEY,
            &[&format!("repository:{repo}:pull")],
        )
        .await;
    let layer = &replayed_blobs(repo, "1.10")[0];
    let d = Digest::sha256_of(layer);
    let before = storage_requests(&e, "GET");
    let r = e
        .get_range(&format!("/v2/{repo}/blobs/{d}"), &t, "bytes=10-19")
        .await;
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        r.headers()["content-range"],
        format!("bytes 10-19/{}", layer.len()).as_str()
    );
    assert_eq!(r.bytes().await.unwrap(), layer[10..20]);
    assert_eq!(storage_requests(&e, "GET"), before + 1);
    // An absent blob is still a 404 BLOB_UNKNOWN (TCR answers it before redirecting).
    let absent = Digest::sha256_of(b"absent");
    let r = e.get(&format!("/v2/{repo}/blobs/{absent}"), &t).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["errors"][0]["code"], "BLOB_UNKNOWN");
    e.adapter.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_urls_refuse_a_second_credential_and_tampering() {
    let e = env(RedirectMode::Relay).await;
    let repo = "redir-sig/app";
    e.replay_1_10(repo, &e.user, &e.pass).await;
    let t = e
        .token_as(&e.user, &e.pass, &[&format!("repository:{repo}:pull")])
        .await;
    let layer = &replayed_blobs(repo, "1.10")[0];
    let d = Digest::sha256_of(layer);
    let loc = e.get(&format!("/v2/{repo}/blobs/{d}"), &t).await.headers()["location"]
        .to_str()
        .unwrap()
        .to_string();
    let plain = reqwest::Client::new();
    let ok = plain.get(&loc).send_ok().await;
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.bytes().await.unwrap(), *layer);
    // A client that forwards its registry token to storage is refused, as COS refuses it.
    let r = plain.get(&loc).bearer_auth(&t).send_ok().await;
    assert_eq!(r.status(), 400);
    assert!(r
        .text()
        .await
        .unwrap()
        .contains("<Code>InvalidArgument</Code>"));
    // A URL signed for GET does not serve HEAD; a changed signature serves nothing.
    let r = plain.head(&loc).send_ok().await;
    assert_eq!(r.status(), 403);
    let last = if loc.ends_with('0') { "1" } else { "0" };
    let tampered = format!("{}{last}", &loc[..loc.len() - 1]);
    let r = plain.get(&tampered).send_ok().await;
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("SignatureDoesNotMatch"));
    e.adapter.stop().await;
}

/// The production shape: TCR and COS both HTTPS under a corporate CA. The adapter trusts it with
/// `tcr.ca_file`, in both modes (following, it checks COS's certificate against that CA too); in
/// relay mode skopeo reads from storage over HTTPS itself (without verifying: the adapter's own
/// front is plain HTTP here, which skopeo only accepts with TLS verification off).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_over_https_with_a_custom_ca() {
    common::require_tool("skopeo");
    for mode in [RedirectMode::Relay, RedirectMode::Follow] {
        let mut tls_dir = None;
        let e = Env::start(
            |ec| {
                ec.blob_redirects = true;
                ec.storage_listen = Some("127.0.0.2:0".parse().unwrap());
                ec.tls.mode = tcr_adapter::config::EmulatorTlsMode::SelfSigned;
                tls_dir = Some(ec.data_dir.join("tls"));
            },
            |c| c.tcr.redirects = mode,
        )
        .await;
        let tls = tls_dir.unwrap();
        assert!(e
            .emu
            .storage_url()
            .unwrap()
            .starts_with("https://127.0.0.2:"));
        // The adapter started before the emulator wrote its CA: start one that trusts it.
        let Env {
            emu, adapter, _dir, ..
        } = e;
        adapter.stop().await;
        let e = Tls { emu, _dir };
        let mut c = common::adapter_config(&e.emu);
        c.tcr.redirects = mode;
        c.tcr.ca_file = Some(tls.join("ca.pem"));
        let adapter = tcr_adapter::app::start(c, tcr_adapter::clock::system())
            .await
            .unwrap();
        let host = adapter.url().trim_start_matches("http://").to_string();
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        let mut layout = oci_layout::Layout::new(&src);
        layout.tag_image("v1", 21);
        layout.finish();
        let creds = format!("{}:{}", common::DEMO_SECRET_ID, common::DEMO_SECRET_KEY);
        common::skopeo_push(&src, "v1", &format!("{host}/redir-tls/app:v1"), &creds).await;
        let before = storage_requests(&e, "GET");
        let out = dir.path().join("out");
        common::skopeo_pull(&format!("{host}/redir-tls/app:v1"), &out, "v1", &creds).await;
        let (source, pulled) = (oci_layout::blobs(&src), oci_layout::blobs(&out));
        for (k, v) in &pulled {
            assert_eq!(Some(v), source.get(k), "{mode:?}: blob {k}");
        }
        // Layers and config came from storage, by the client (relay) or the adapter (follow).
        assert!(storage_requests(&e, "GET") >= before + 2, "{mode:?}");
        adapter.stop().await;
    }
}
