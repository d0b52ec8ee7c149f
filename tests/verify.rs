//! `tcr-adapter verify` end to end: a real CNCF distribution holds 30 images (single-platform
//! manifests and two-platform indexes); skopeo copies only some of them through the adapter into
//! the emulator (one tag with other content, one index as a single platform, one tag only at the
//! destination, and a namespace renamed by the map). The binary must list exactly what is
//! missing, different, platform-converted and extra, exit 1, then 0 once the rest is copied, and
//! 2 when the source cannot be reached.

mod common;
mod verify_support;

use std::collections::BTreeSet;

use tcr_adapter::app;
use tcr_adapter::clock;

use verify_support::*;

/// The verify configuration: TCR = the emulator, its demo keys, `lib` renamed to `core`.
fn verify_config(dir: &std::path::Path, emu: &tcr_adapter::emulator::EmulatorHandle) -> String {
    common::verify_toml(dir, emu, 50, "\n[namespaces.map]\nlib = \"core\"\n")
        .display()
        .to_string()
}

/// skopeo copy of `<repo>:<tag>` for each of `tags` to the same name through the adapter.
async fn copy_tags(dist: &str, adapter: &str, repo: &str, tags: &[String], all: bool) {
    for tag in tags {
        let name = format!("{repo}:{tag}");
        skopeo_copy(dist, adapter, &name, &name, all).await;
    }
}

/// `prefix<n>` for each `n`.
fn tags(prefix: &str, ns: impl IntoIterator<Item = u32>) -> Vec<String> {
    ns.into_iter().map(|n| format!("{prefix}{n}")).collect()
}

type Key = [String; 4];

fn items(json: &serde_json::Value) -> BTreeSet<Key> {
    item_fields(json, ["status", "repository", "tag", "destination"])
}

fn key(s: &str, repo: &str, tag: &str, dest: &str) -> Key {
    [s.into(), repo.into(), tag.into(), dest.into()]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_lists_exactly_what_is_missing_then_passes() {
    common::require_tool("skopeo");
    let tmp = tempfile::tempdir().unwrap();
    let (_dist, dist) = start_distribution(tmp.path()).await;
    // 30 images: 24 single-platform tags, 6 two-platform indexes.
    let mut source = std::collections::BTreeMap::new();
    for repo in ["app/web", "app/api", "lib/base"] {
        for v in 1..=8 {
            let tag = format!("v{v}");
            let d = push_image(&dist, repo, &tag, &format!("{repo}-{tag}"), "amd64").await;
            source.insert((repo.to_string(), tag), d);
        }
    }
    let mut children = Vec::new();
    for m in 1..=6 {
        let tag = format!("m{m}");
        let (d, c) = push_index(&dist, "lib/multi", &tag, &format!("multi-{m}")).await;
        source.insert(("lib/multi".to_string(), tag), d);
        children.push(c);
    }
    assert_eq!(source.len(), 30);

    let emu = common::start_emulator().await;
    let mut cfg = common::adapter_config(&emu.handle);
    cfg.namespaces.map.insert("lib".into(), "core".into());
    let adapter = app::start(cfg, clock::system()).await.unwrap();
    let a = adapter.url();
    copy_tags(&dist, &a, "app/web", &tags("v", 1..=8), false).await;
    copy_tags(&dist, &a, "app/api", &tags("v", 1..=5), false).await;
    copy_tags(
        &dist,
        &a,
        "lib/base",
        &tags("v", [1, 2, 4, 5, 6, 7, 8]),
        false,
    )
    .await;
    // Other content under lib/base:v3.
    skopeo_copy(&dist, &a, "lib/base:v1", "lib/base:v3", false).await;
    copy_tags(&dist, &a, "lib/multi", &tags("m", 1..=4), true).await;
    // One platform of m5 only (what Harbor 1.x does to an index).
    skopeo_copy(&dist, &a, "lib/multi:m5", "lib/multi:m5", false).await;
    // At the destination only.
    skopeo_copy(&dist, &a, "app/web:v1", "app/web:extra", false).await;

    let config = verify_config(tmp.path(), &emu.handle);
    let report = tmp.path().join("report.md");
    let json_args = ["--config", &config, "--source", &dist, "--format", "json"];
    let (code, out, err) =
        run_verify(&[&json_args[..], &["--report", report.to_str().unwrap()]].concat());
    assert_eq!(code, 1, "stdout: {out}\nstderr: {err}");
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    let expected: BTreeSet<Key> = [
        key("missing", "app/api", "v6", "app/api"),
        key("missing", "app/api", "v7", "app/api"),
        key("missing", "app/api", "v8", "app/api"),
        key("missing", "lib/multi", "m6", "core/multi"),
        key("different", "lib/base", "v3", "core/base"),
        key("platform-converted", "lib/multi", "m5", "core/multi"),
        key("extra", "app/web", "extra", "app/web"),
    ]
    .into_iter()
    .collect();
    assert_eq!(items(&json), expected, "{out}");
    for i in json["items"].as_array().unwrap() {
        let repo = i["repository"].as_str().unwrap().to_string();
        let tag = i["tag"].as_str().unwrap().to_string();
        assert_eq!(i["kind"], "image");
        let status = i["status"].as_str().unwrap();
        if status != "extra" {
            assert_eq!(
                i["source_digest"].as_str(),
                Some(source[&(repo, tag)].as_str())
            );
        }
        match status {
            "missing" => assert!(i["destination_digest"].is_null()),
            "different" => {
                assert_eq!(
                    i["destination_digest"].as_str(),
                    Some(source[&("lib/base".to_string(), "v1".to_string())].as_str())
                );
            }
            "platform-converted" => {
                assert_eq!(
                    i["destination_digest"].as_str(),
                    Some(children[4][0].as_str())
                );
                assert!(i["note"].as_str().unwrap().contains("platform"));
            }
            "extra" => assert!(i["source_digest"].is_null()),
            s => panic!("unexpected status {s}"),
        }
    }
    let t = &json["totals"];
    assert_eq!(
        (
            t["ok"].as_u64(),
            t["missing"].as_u64(),
            t["different"].as_u64()
        ),
        (Some(24), Some(4), Some(1))
    );
    assert_eq!(json["namespaces"]["core"]["missing"], 1);
    assert_eq!(json["namespaces"]["app"]["missing"], 3);
    assert_eq!(json["complete"], false);
    let md = std::fs::read_to_string(&report).unwrap();
    assert!(md.contains("# Migration verification"), "{md}");
    assert!(
        md.contains("| missing | image | `app/api:v6` | `app/api:v6` |"),
        "{md}"
    );
    assert!(
        md.contains("| different | image | `lib/base:v3` | `core/base:v3` |"),
        "{md}"
    );
    assert!(md.contains("INCOMPLETE: 4 missing, 1 different"), "{md}");

    // The table names the same items.
    let (code, table, _) = run_verify(&["--config", &config, "--source", &dist]);
    assert_eq!(code, 1);
    println!("{table}");
    assert!(
        table.contains(
            "namespace core: 11 ok, 1 missing, 1 different, 1 platform-converted, 0 extra"
        ),
        "{table}"
    );
    assert!(table.contains("app/api:v6"), "{table}");

    // Filters: one project, one tag glob.
    let filters = ["--project", "app", "--tag", "v[1-5]"];
    let (code, out, _) = run_verify(&[&json_args[..], &filters].concat());
    assert_eq!(code, 0, "{out}");
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["totals"]["ok"], 10);
    assert!(items(&json).is_empty(), "{out}");

    // Copy the rest: complete.
    copy_tags(&dist, &a, "app/api", &tags("v", 6..=8), false).await;
    skopeo_copy(&dist, &a, "lib/base:v3", "lib/base:v3", false).await;
    skopeo_copy(&dist, &a, "lib/multi:m6", "lib/multi:m6", true).await;
    let (code, out, err) = run_verify(&json_args);
    assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["complete"], true);
    assert_eq!(json["totals"]["ok"], 29);
    assert_eq!(
        items(&json),
        [
            key("platform-converted", "lib/multi", "m5", "core/multi"),
            key("extra", "app/web", "extra", "app/web"),
        ]
        .into_iter()
        .collect()
    );
    adapter.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_exits_2_when_the_source_is_unreachable() {
    let emu = common::start_emulator().await;
    let tmp = tempfile::tempdir().unwrap();
    let config = verify_config(tmp.path(), &emu.handle);
    let closed = format!("http://127.0.0.1:{}", free_port());
    let (code, out, err) = run_verify(&["--config", &config, "--source", &closed]);
    assert_eq!(code, 2, "stdout: {out}\nstderr: {err}");
    assert!(err.contains("cannot reach"), "{err}");
    assert!(out.is_empty(), "{out}");
    let (code, _, err) = run_verify(&["--config", &config, "--source", "ftp://x"]);
    assert_eq!(code, 2);
    assert!(err.contains("http or https"), "{err}");
}
