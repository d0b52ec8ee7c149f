//! The TCR contract (docs/tcr-contract.md) as tests: each item through the official Python SDK
//! (`tests/python/test_contract_tcr.py`, among them Harbor's TCR provider's own paging loops)
//! against the emulator under every `[emulator.quirks]` setting, and `tcr-adapter check` naming
//! the paging mode the emulator speaks.

mod common;

use tcr_adapter::config::{EmulatorConfig, EmulatorQuirks, NameFilter, Paging};
use tcr_adapter::emulator::storage::ManifestMeta;
use tcr_adapter::emulator::EmulatorHandle;
use tcr_adapter::oci::Digest;

const N: usize = 45;
const PAGINGS: [(Paging, &str); 5] = [
    (Paging::Documented, "documented"),
    (Paging::PageFromZero, "page_from_zero"),
    (Paging::PageFromOne, "page_from_one"),
    (Paging::PageFromOneStrict, "page_from_one_strict"),
    (Paging::Items, "items"),
];

/// A data dir with namespaces `cn-00`…`cn-44`; `cn-00` holds `r00`…`r44`; `cn-00/r00` holds
/// `t00`…`t44`. Made once (an emulator's first start makes its keys, seeding fsyncs every
/// file); each setting runs on a copy.
async fn template() -> (tempfile::TempDir, std::path::PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("emulator");
    let emu = common::start_emulator_with(common::emulator_config(&data)).await;
    let s = &emu.state;
    let body = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}"#;
    let digest = Digest::sha256_of(body);
    let meta = || -> ManifestMeta {
        serde_json::from_value(serde_json::json!({
            "media_type": "application/vnd.oci.image.manifest.v1+json",
            "size": body.len(), "created_ms": 0,
        }))
        .unwrap()
    };
    for i in 0..N {
        s.namespaces.create(&format!("cn-{i:02}"), false).unwrap();
        s.storage
            .put_manifest(&format!("cn-00/r{i:02}"), &digest, body, meta(), Some("v1"))
            .unwrap();
    }
    for t in 0..N {
        s.storage
            .put_manifest(
                "cn-00/r00",
                &digest,
                body,
                meta(),
                Some(&format!("t{t:02}")),
            )
            .unwrap();
    }
    s.storage.delete_tag("cn-00/r00", "v1").await.unwrap();
    emu.stop().await;
    (tmp, data)
}

/// An emulator with `quirks` on a copy of the data dir `seeded`, in `dir`.
async fn seeded(
    seeded: &std::path::Path,
    dir: &std::path::Path,
    paging: Paging,
    name_filter: NameFilter,
) -> EmulatorHandle {
    let data = dir.join("emulator");
    let ok = std::process::Command::new("cp")
        .arg("-a")
        .arg(seeded)
        .arg(&data)
        .status()
        .unwrap()
        .success();
    assert!(ok, "cp -a {}", seeded.display());
    let mut cfg: EmulatorConfig = common::emulator_config(&data);
    cfg.quirks = EmulatorQuirks {
        limit_cap: None,
        paging,
        name_filter,
    };
    common::start_emulator_with(cfg).await
}

fn require_sdk() {
    let python = std::process::Command::new("python3")
        .args(["-c", "import pytest, tencentcloud.tcr.v20190924.tcr_client"])
        .output();
    match python {
        Ok(o) if o.status.success() => {}
        Ok(o) => panic!(
            "python3 lacks pytest or tencentcloud-sdk-python-tcr ({}): run scripts/install-test-deps.sh",
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Err(e) => panic!("python3 is not installed ({e}): run scripts/install-test-deps.sh"),
    }
}

/// Run the contract's pytest file against `targets`: (emulator, paging, name filter).
async fn pytest(targets: &[(EmulatorHandle, &str, &str)]) -> (bool, String) {
    let list: Vec<serde_json::Value> = targets
        .iter()
        .map(|(emu, paging, filter)| {
            serde_json::json!({"api": emu.api_addr.to_string(), "paging": paging, "name_filter": filter})
        })
        .collect();
    let emu = &targets[0].0;
    let out = tokio::process::Command::new("python3")
        .args([
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests/python/test_contract_tcr.py",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env(
            "TCR_CONTRACT_TARGETS",
            serde_json::Value::from(list).to_string(),
        )
        .env("TCR_SECRET_ID", common::DEMO_SECRET_ID)
        .env("TCR_SECRET_KEY", common::DEMO_SECRET_KEY)
        .env("TCR_UIN", common::DEMO_UIN)
        .env("TCR_REGISTRY_ID", &emu.state.cfg.registry_id)
        .env("TCR_REGION", &emu.state.cfg.region)
        .output()
        .await
        .expect("run pytest");
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_contract_holds_through_the_official_sdk_under_every_quirk() {
    require_sdk();
    let (_tmp, template) = template().await;
    let mut dirs = Vec::new();
    let mut targets = Vec::new();
    for (paging, paging_name) in PAGINGS {
        for (filter, filter_name) in [
            (NameFilter::Partial, "partial"),
            (NameFilter::Exact, "exact"),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let emu = seeded(&template, dir.path(), paging, filter).await;
            targets.push((emu, paging_name, filter_name));
            dirs.push(dir);
        }
    }
    let (ok, out) = pytest(&targets).await;
    println!("{out}");
    assert!(ok, "pytest failed: see its output above");
    assert!(out.contains("passed"), "{out}");
    for (emu, _, _) in targets {
        emu.stop().await;
    }
}

/// `check` against `emu` with the demo keys.
fn check_config(emu: &EmulatorHandle) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n\n[tcr]\nregistry_url = \"{}\"\napi_endpoint = \"{}\"\nsecret_id = \"{}\"\nsecret_key = \"{}\"\n",
        emu.registry_url(),
        emu.api_url(),
        common::DEMO_SECRET_ID,
        common::DEMO_SECRET_KEY
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_names_the_paging_mode_each_listing_speaks() {
    let want = [
        (
            Paging::Documented,
            "DescribeNamespaces: page index from 0; DescribeRepositories: page number from 1; DescribeImages: page number from 1",
        ),
        (
            Paging::PageFromZero,
            "DescribeNamespaces: page index from 0; DescribeRepositories: page index from 0; DescribeImages: page index from 0",
        ),
        (
            Paging::PageFromOne,
            "DescribeNamespaces: page number from 1; DescribeRepositories: page number from 1; DescribeImages: page number from 1",
        ),
        (
            Paging::PageFromOneStrict,
            "DescribeNamespaces: page number from 1; DescribeRepositories: page number from 1; DescribeImages: page number from 1",
        ),
        (
            Paging::Items,
            "DescribeNamespaces: item offset; DescribeRepositories: item offset; DescribeImages: item offset",
        ),
    ];
    let (_tmp, template) = template().await;
    for (paging, modes) in want {
        let dir = tempfile::tempdir().unwrap();
        let emu = seeded(&template, dir.path(), paging, NameFilter::Partial).await;
        let (code, out) = common::run_check(dir.path(), &check_config(&emu)).await;
        assert_eq!(code, 0, "{paging:?}: {out}");
        let line = out
            .lines()
            .find(|l| l.starts_with("[ ok ] cloud API paging:"))
            .unwrap_or_else(|| panic!("{paging:?}: no paging line in\n{out}"));
        assert!(line.contains(modes), "{paging:?}: {line}");
        emu.stop().await;
    }
}

/// §3: a partial `NamespaceName` filter may match more than a page; the namespace named exactly
/// is still found (the adapter reads every page and compares names itself), under every paging.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exact_namespace_past_the_first_page_of_partial_matches_is_found() {
    use tcr_adapter::tencentcloud::{ApiCredential, TcrApiClient};
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("emulator");
    let emu = common::start_emulator_with(common::emulator_config(&data)).await;
    // 120 namespaces containing "zz", sorted before "zz" itself.
    for i in 0..120 {
        emu.state
            .namespaces
            .create(&format!("a-zz-{i:03}"), false)
            .unwrap();
    }
    emu.state.namespaces.create("zz", true).unwrap();
    emu.stop().await;
    let keys = ApiCredential::new(common::DEMO_SECRET_ID, common::DEMO_SECRET_KEY);
    for (paging, _) in PAGINGS {
        let dir = tempfile::tempdir().unwrap();
        let emu = seeded(&data, dir.path(), paging, NameFilter::Partial).await;
        let c = TcrApiClient::new(
            &emu.api_url(),
            &emu.state.cfg.region,
            1000,
            std::time::Duration::from_secs(10),
            tcr_adapter::clock::system(),
        )
        .unwrap();
        let id = &emu.state.cfg.registry_id;
        let found = c.find_namespace(&keys, id, "zz").await.unwrap();
        assert!(
            found.is_some_and(|n| n.name == "zz" && n.public),
            "{paging:?}"
        );
        assert!(c.find_namespace(&keys, id, "z").await.unwrap().is_none());
        let all = c.all_namespaces(&keys, id, Some("zz"), 100).await.unwrap();
        assert_eq!(all.items.len(), 121, "{paging:?}");
        emu.stop().await;
    }
}
