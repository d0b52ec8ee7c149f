//! The world every permission test starts from: an emulator whose accounts are limited as a
//! migration team's would be in TCR (a read-only and a namespace-limited CAM sub-account, a
//! read-only and a namespace-limited `tcr$` service account), an adapter in front of it, and
//! seeded content in `team-a` and `team-b` (an image `app:v1` and a chart `web-1.0.0` each),
//! put there with the unlimited demo keys. Then a fingerprint of everything the emulator holds.

use std::collections::BTreeMap;

use tcr_adapter::config::{EmulatorAccount, EmulatorServiceAccount, RegistryAction, Secret};
use tcr_adapter::oci::Digest;

use crate::common::charts::{chart_archive, multipart_chart};
use crate::common::{self, basic, SendOk};
use crate::harbor::Env;
use crate::wan_support::{config_of, layer, manifest_of, push_image};

/// API keys of a CAM sub-account that may read everything and write nothing.
pub const RO_KEYS: (&str, &str) = (
    "AKIDpermREADONLY0000000000000000",
    "readonly-secret-key-000000000000",
);
/// API keys of a CAM sub-account limited to the namespaces `team-a*`.
pub const TEAM_KEYS: (&str, &str) = (
    "AKIDpermTEAMA0000000000000000000",
    "team-a-secret-key-00000000000000",
);
/// A service account that may pull everywhere.
pub const RO_SA: (&str, &str) = ("tcr$reader", "reader-password-0000000000000000");
/// A service account that may pull and push in `team-a*`.
pub const TEAM_SA: (&str, &str) = ("tcr$team-a-ci", "team-a-ci-password-0000000000000");

/// The seeded image of `<ns>/app:v1`: its blobs and manifest.
pub struct Seeded {
    pub base: Vec<u8>,
    pub own: Vec<u8>,
    pub manifest: Vec<u8>,
}

impl Seeded {
    pub fn of(ns: &str) -> Seeded {
        let repo = format!("{ns}/app");
        let base = layer(1, 4096);
        let own = layer(if ns == "team-a" { 2 } else { 3 }, 2048);
        let config = config_of(&repo);
        let manifest = manifest_of(&config, &[&base, &own]).into_bytes();
        Seeded {
            base,
            own,
            manifest,
        }
    }
    pub fn manifest_digest(&self) -> Digest {
        Digest::sha256_of(&self.manifest)
    }
}

/// The emulator's accounts: the demo account (unlimited) plus the limited ones.
fn limit_accounts(ec: &mut tcr_adapter::config::EmulatorConfig) {
    let read = [
        "DescribeInstances",
        "CreateInstanceToken",
        "DescribeNamespaces",
        "DescribeRepositories",
        "DescribeImages",
    ];
    ec.accounts.push(EmulatorAccount {
        secret_id: RO_KEYS.0.into(),
        secret_key: Secret::new(RO_KEYS.1),
        uin: "100000000002".into(),
        actions: read.iter().map(|a| a.to_string()).collect(),
        registry: vec![RegistryAction::Pull],
        ..Default::default()
    });
    ec.accounts.push(EmulatorAccount {
        secret_id: TEAM_KEYS.0.into(),
        secret_key: Secret::new(TEAM_KEYS.1),
        uin: "100000000003".into(),
        namespaces: vec!["team-a*".into()],
        ..Default::default()
    });
    ec.service_accounts.push(EmulatorServiceAccount {
        name: RO_SA.0.trim_start_matches("tcr$").into(),
        password: Secret::new(RO_SA.1),
        namespaces: Vec::new(),
        registry: vec![RegistryAction::Pull],
    });
    ec.service_accounts.push(EmulatorServiceAccount {
        name: TEAM_SA.0.trim_start_matches("tcr$").into(),
        password: Secret::new(TEAM_SA.1),
        namespaces: vec!["team-a*".into()],
        registry: vec![RegistryAction::Pull, RegistryAction::Push],
    });
}

pub struct World {
    pub e: Env,
}

/// How the adapter runs.
#[derive(Clone, Copy, Debug)]
pub struct Mode {
    /// `wan.pipeline` (`wan.dedup` stays at its default, on, either way).
    pub pipeline: bool,
    /// Provisioner keys (`tcr.secret_id`, the unlimited demo keys) configured.
    pub provisioner: bool,
}

impl World {
    pub async fn start(mode: Mode) -> World {
        let e = Env::start(limit_accounts, |c| {
            c.wan.pipeline = mode.pipeline;
            if !mode.provisioner {
                c.tcr.secret_id.clear();
                c.tcr.secret_key = Secret::default();
            }
        })
        .await;
        let w = World { e };
        w.seed().await;
        w.settle_seed().await;
        w
    }

    /// The seed is complete when the upload sessions the adapter opened ahead for the seeding
    /// writer (parked for blobs that did not come) have been given back: their cancellations
    /// are sent in the background and must not land inside the window the attacks are judged in.
    async fn settle_seed(&self) {
        let uploads = self.e.emu.state.cfg.data_dir.join("registry/uploads");
        let open = || std::fs::read_dir(&uploads).map_or(0, |d| d.count());
        let started = std::time::Instant::now();
        // A parked session nobody takes is cancelled after 30 s at the latest.
        while open() > 0 && started.elapsed() < std::time::Duration::from_secs(40) {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// `team-a/app:v1`, `team-b/app:v1` and the chart `web-1.0.0` in both, with the demo keys.
    async fn seed(&self) {
        for ns in ["team-a", "team-b"] {
            let s = Seeded::of(ns);
            push_image(&self.e, &format!("{ns}/app"), &s.base, &s.own).await;
            let archive = chart_archive("web", "1.0.0", 1024);
            let (ct, body) = multipart_chart("web-1.0.0.tgz", &archive);
            let r = self
                .e
                .http
                .post(format!("{}/api/chartrepo/{ns}/charts", self.e.base))
                .header(
                    "Authorization",
                    basic(common::DEMO_SECRET_ID, common::DEMO_SECRET_KEY),
                )
                .header("Content-Type", ct)
                .body(body)
                .send_ok()
                .await;
            assert_eq!(r.status(), 201, "seed chart in {ns}");
        }
    }

    /// Every file the emulator holds (path under its data dir → SHA-256), keys and TLS aside:
    /// namespaces, repository indexes (tags, manifests, linked blobs), blobs, upload sessions,
    /// charts.
    pub fn fingerprint(&self) -> BTreeMap<String, String> {
        fn walk(root: &std::path::Path, dir: &std::path::Path, out: &mut BTreeMap<String, String>) {
            for entry in std::fs::read_dir(dir).unwrap().flatten() {
                let path = entry.path();
                let rel = path
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .to_string();
                if rel == "keys" || rel == "tls" {
                    continue;
                }
                if path.is_dir() {
                    walk(root, &path, out);
                } else if let Ok(bytes) = std::fs::read(&path) {
                    out.insert(rel, Digest::sha256_of(&bytes).to_string());
                }
            }
        }
        let root = self.e.emu.state.cfg.data_dir.clone();
        let mut out = BTreeMap::new();
        walk(&root, &root, &mut out);
        out
    }

    /// Successful cloud API writes so far (`CreateNamespace`, `CreateRepository`, `DeleteImage`,
    /// `DeleteNamespace`).
    pub async fn api_writes(&self) -> u64 {
        let mut n = 0;
        for action in [
            "CreateNamespace",
            "CreateRepository",
            "DeleteImage",
            "DeleteNamespace",
        ] {
            n += self
                .e
                .api_calls(&[&format!("action=\"{action}\""), "result=\"ok\""])
                .await;
        }
        n
    }

    /// Namespaces in the emulator, sorted.
    pub fn namespaces(&self) -> Vec<String> {
        self.e.namespaces()
    }
}

/// What the emulator held before an attack, to compare with after it.
pub struct Before {
    files: BTreeMap<String, String>,
    api_writes: u64,
}

impl World {
    pub async fn before(&self) -> Before {
        Before {
            files: self.fingerprint(),
            api_writes: self.api_writes().await,
        }
    }

    /// Nothing new, nothing gone, nothing changed; no cloud API write succeeded.
    pub async fn assert_unchanged(&self, before: &Before, who: &str) {
        let after = self.fingerprint();
        let changed: Vec<_> = after
            .iter()
            .filter(|(k, v)| before.files.get(*k) != Some(v))
            .map(|(k, _)| k.clone())
            .chain(
                before
                    .files
                    .keys()
                    .filter(|k| !after.contains_key(*k))
                    .map(|k| format!("{k} (removed)")),
            )
            .collect();
        assert!(
            changed.is_empty(),
            "{who}: the emulator's content changed: {changed:?}"
        );
        assert_eq!(
            self.api_writes().await,
            before.api_writes,
            "{who}: a cloud API write succeeded"
        );
    }
}
