//! Measurement (not a test): how long `verify` takes over a 10,000-tag source.
//!
//! A CNCF distribution (`/usr/bin/docker-registry`, no auth, loopback port) gets one small image
//! per repository, tagged `TAGS / REPOS` times through the registry API; the embedded emulator
//! gets the same tags written into its storage. Then `tcr_adapter::verify::run` compares them
//! with the default settings (8 requests in flight, cloud API at `tcr.api_qps` = 10 calls/s) and
//! the wall-clock time is printed.
//!
//!     cargo run --release --example verify_10k [-- <tags> <repos>]

use std::time::Instant;

#[path = "../tests/common/mod.rs"]
mod common;

use clap::Parser;
use futures_util::{stream, StreamExt};
use tcr_adapter::config::{Config, EmulatorAccount, EmulatorConfig, Secret};
use tcr_adapter::emulator::storage::ManifestMeta;
use tcr_adapter::oci::Digest;

fn sha(b: &[u8]) -> String {
    format!("sha256:{}", hex::encode(openssl::sha::sha256(b)))
}

async fn put_blob(http: &reqwest::Client, base: &str, repo: &str, data: &[u8]) -> String {
    let digest = sha(data);
    let r = common::upload_blob(http, base, repo, data, &digest).await;
    assert_eq!(r.status(), 201);
    digest
}

#[derive(Parser)]
struct Args {
    #[arg(default_value_t = 10_000)]
    tags: usize,
    #[arg(default_value_t = 100)]
    repos: usize,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let per_repo = args.tags / args.repos;
    let tmp = tempfile::tempdir().unwrap();
    let (dist, base) = common::distribution(tmp.path(), "bench", "").await;
    let http = reqwest::Client::new();
    let emu_dir = tmp.path().join("emu");
    let emu = tcr_adapter::emulator::start(
        EmulatorConfig {
            registry_listen: "127.0.0.1:0".parse().unwrap(),
            api_listen: "127.0.0.1:0".parse().unwrap(),
            data_dir: emu_dir,
            ..EmulatorConfig::default()
        },
        tcr_adapter::clock::system(),
    )
    .await
    .unwrap();

    let fill = Instant::now();
    let layer = b"bench layer".to_vec();
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#
            .to_vec();
    let repos: Vec<String> = (0..args.repos)
        .map(|i| format!("bench{}/app{i}", i % 10))
        .collect();
    for ns in 0..10.min(args.repos) {
        emu.state
            .namespaces
            .create(&format!("bench{ns}"), false)
            .unwrap();
    }
    let mut manifest_digest = String::new();
    let mut manifest = Vec::new();
    for repo in &repos {
        let l = put_blob(&http, &base, repo, &layer).await;
        let c = put_blob(&http, &base, repo, &config).await;
        manifest = serde_json::json!({
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": c, "size": config.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": l, "size": layer.len()}],
        }).to_string().into_bytes();
        manifest_digest = sha(&manifest);
    }
    let puts: Vec<(String, String)> = repos
        .iter()
        .flat_map(|r| (0..per_repo).map(move |t| (r.clone(), format!("t{t}"))))
        .collect();
    let total = puts.len();
    stream::iter(puts.clone())
        .map(|(repo, tag)| {
            let http = http.clone();
            let base = base.clone();
            let body = manifest.clone();
            async move {
                let r = http
                    .put(format!("{base}/v2/{repo}/manifests/{tag}"))
                    .header("content-type", "application/vnd.oci.image.manifest.v1+json")
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 201);
            }
        })
        .buffer_unordered(16)
        .collect::<()>()
        .await;
    let digest = Digest::parse(&manifest_digest).unwrap();
    for (repo, tag) in &puts {
        let meta = ManifestMeta {
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            size: manifest.len() as u64,
            refs_size: (layer.len() + config.len()) as u64,
            subject: None,
            artifact_type: None,
            annotations: None,
            created_ms: chrono::Utc::now().timestamp_millis(),
        };
        emu.state
            .storage
            .put_manifest(repo, &digest, &manifest, meta, Some(tag))
            .unwrap();
    }
    eprintln!(
        "filled {total} tags in {} repositories on both sides in {:.1} s",
        repos.len(),
        fill.elapsed().as_secs_f64()
    );

    let mut cfg = Config::default();
    cfg.tcr.registry_url = emu.registry_url();
    cfg.tcr.api_endpoint = emu.api_url();
    cfg.tcr.registry_id = emu.state.cfg.registry_id.clone();
    cfg.tcr.region = emu.state.cfg.region.clone();
    cfg.tcr.secret_id = EmulatorAccount::DEMO_SECRET_ID.into();
    cfg.tcr.secret_key = Secret::new(EmulatorAccount::DEMO_SECRET_KEY);
    #[derive(Parser)]
    struct V {
        #[command(flatten)]
        a: tcr_adapter::verify::VerifyArgs,
    }
    let v = V::parse_from(["verify", "--source", &base, "--format", "json"]);
    let t = Instant::now();
    let out = tcr_adapter::verify::run(&v.a, cfg, tcr_adapter::clock::system())
        .await
        .unwrap();
    let secs = t.elapsed().as_secs_f64();
    let json: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    println!(
        "verify: {total} tags in {} repositories compared in {secs:.1} s (complete: {}, ok: {}, concurrency 8, tcr.api_qps {})",
        repos.len(), out.complete, json["totals"]["ok"], Config::default().tcr.api_qps
    );
    emu.stop().await;
    drop(dist);
}
