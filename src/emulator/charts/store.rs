//! The emulator's chart storage: `<data_dir>/charts/<ns>/<chart>/<version>.tgz` (plus `.prov`)
//! and `<version>.json` holding the Helm `ChartVersion` record, committed with rename so a dropped
//! upload leaves nothing visible, and read back from disk so charts survive restarts. No HTTP here.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::archive::{self, ChartFacts};
use crate::clock::SharedClock;
use crate::config::ChartDuplicates as Duplicates;
use crate::emulator::storage::files;

/// The stored record of one chart version.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredVersion {
    /// Helm's `ChartVersion`: `Chart.yaml` fields plus `urls`, `created`, `digest`.
    pub chart_version: Map<String, Value>,
    pub values: Value,
    pub values_text: Option<String>,
    /// A provenance file was uploaded with it.
    pub signed: bool,
    pub created_ms: i64,
}

impl StoredVersion {
    pub fn version(&self) -> &str {
        self.chart_version
            .get("version")
            .and_then(Value::as_str)
            .unwrap_or("")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} already exists")]
    Exists(String),
    #[error("{0}")]
    Io(String),
}

pub struct ChartStore {
    root: PathBuf,
    clock: SharedClock,
    commit: Mutex<()>,
}

/// The archive's file name: `<name>-<version>.tgz`.
pub fn file_name(name: &str, version: &str) -> String {
    format!("{name}-{version}.tgz")
}

impl ChartStore {
    pub fn open(data_dir: &Path, clock: SharedClock) -> std::io::Result<ChartStore> {
        let root = data_dir.join("charts");
        std::fs::create_dir_all(root.join(".uploads"))?;
        // Leftovers of uploads cut by a crash are never visible: drop them.
        for e in std::fs::read_dir(root.join(".uploads"))?.flatten() {
            let _ = std::fs::remove_file(e.path());
        }
        Ok(ChartStore {
            root,
            clock,
            commit: Mutex::new(()),
        })
    }

    /// A fresh temporary path for an incoming upload part.
    pub fn temp_path(&self) -> PathBuf {
        self.root
            .join(".uploads")
            .join(uuid::Uuid::new_v4().simple().to_string())
    }

    fn dir(&self, ns: &str, name: &str) -> PathBuf {
        self.root.join(ns).join(name)
    }

    /// Make the uploaded archive (and provenance) visible as `facts.name`/`facts.version`.
    pub fn commit(
        &self,
        ns: &str,
        facts: ChartFacts,
        digest_hex: &str,
        archive_tmp: &Path,
        prov_tmp: Option<&Path>,
        duplicates: Duplicates,
    ) -> Result<(), StoreError> {
        let io = |e: std::io::Error| StoreError::Io(e.to_string());
        let dir = self.dir(ns, &facts.name);
        let file = file_name(&facts.name, &facts.version);
        let _guard = self.commit.lock().unwrap_or_else(|e| e.into_inner());
        let meta_path = dir.join(format!("{}.json", facts.version));
        if meta_path.exists() && duplicates == Duplicates::Conflict {
            return Err(StoreError::Exists(format!("{ns}/{file}")));
        }
        std::fs::create_dir_all(&dir).map_err(io)?;
        let now = self.clock.now_ms();
        let mut cv = facts.chart_yaml;
        cv.insert("urls".into(), Value::from(vec![format!("charts/{file}")]));
        cv.insert("created".into(), Value::from(rfc3339(now)));
        cv.insert("digest".into(), Value::from(digest_hex));
        let record = StoredVersion {
            chart_version: cv,
            values: facts.values,
            values_text: facts.values_text,
            signed: prov_tmp.is_some(),
            created_ms: now,
        };
        std::fs::rename(archive_tmp, dir.join(format!("{}.tgz", facts.version))).map_err(io)?;
        let prov = dir.join(format!("{}.tgz.prov", facts.version));
        match prov_tmp {
            Some(p) => std::fs::rename(p, &prov).map_err(io)?,
            None => {
                let _ = std::fs::remove_file(&prov);
            }
        }
        let bytes = serde_json::to_vec(&record).map_err(|e| StoreError::Io(e.to_string()))?;
        files::write_atomic(&meta_path, &bytes).map_err(io)
    }

    /// One version's record.
    pub fn get(&self, ns: &str, name: &str, version: &str) -> Option<StoredVersion> {
        if !archive::valid_name(name) || !archive::valid_version(version) {
            return None;
        }
        let bytes = std::fs::read(self.dir(ns, name).join(format!("{version}.json"))).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// All versions of a chart, newest first.
    pub fn versions(&self, ns: &str, name: &str) -> Vec<StoredVersion> {
        if !archive::valid_name(name) {
            return Vec::new();
        }
        let Ok(rd) = std::fs::read_dir(self.dir(ns, name)) else {
            return Vec::new();
        };
        let mut out: Vec<StoredVersion> = rd
            .flatten()
            .filter_map(|e| {
                let file = e.file_name().to_string_lossy().into_owned();
                let v = file.strip_suffix(".json")?;
                (!v.starts_with('.'))
                    .then(|| self.get(ns, name, v))
                    .flatten()
            })
            .collect();
        out.sort_by(|a, b| archive::newest_first(a.version(), b.version()));
        out
    }

    /// Names of the charts in a namespace that hold at least one version, sorted.
    pub fn chart_names(&self, ns: &str) -> Vec<String> {
        let Ok(rd) = std::fs::read_dir(self.root.join(ns)) else {
            return Vec::new();
        };
        let mut names: Vec<String> = rd
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| archive::valid_name(n) && !self.versions(ns, n).is_empty())
            .collect();
        names.sort();
        names
    }

    /// Remove a version; false when it was not there.
    pub fn delete(&self, ns: &str, name: &str, version: &str) -> Result<bool, StoreError> {
        if self.get(ns, name, version).is_none() {
            return Ok(false);
        }
        let _guard = self.commit.lock().unwrap_or_else(|e| e.into_inner());
        let dir = self.dir(ns, name);
        let removed = std::fs::remove_file(dir.join(format!("{version}.json"))).is_ok();
        let _ = std::fs::remove_file(dir.join(format!("{version}.tgz")));
        let _ = std::fs::remove_file(dir.join(format!("{version}.tgz.prov")));
        let _ = std::fs::remove_dir(&dir); // only when empty
        Ok(removed)
    }

    /// The stored archive (or its `.prov`) behind a repository file name such as
    /// `nginx-1.2.3.tgz`, matched exactly first, then ignoring case.
    pub fn file_for(&self, ns: &str, file: &str) -> Option<PathBuf> {
        let (stem, prov) = match file.strip_suffix(".tgz.prov") {
            Some(s) => (s, true),
            None => (file.strip_suffix(".tgz")?, false),
        };
        let names = self.chart_names(ns);
        let exact = names.iter().map(|n| (n, true));
        let loose = names.iter().map(|n| (n, false));
        for (name, exact) in exact.chain(loose) {
            let Some(version) = split_version(stem, name, exact) else {
                continue;
            };
            if self.get(ns, name, version).is_some() {
                let ext = if prov { "tgz.prov" } else { "tgz" };
                let path = self.dir(ns, name).join(format!("{version}.{ext}"));
                return path.exists().then_some(path);
            }
        }
        None
    }
}

fn split_version<'a>(stem: &'a str, name: &str, exact: bool) -> Option<&'a str> {
    let head = stem.get(..name.len())?;
    let matches = if exact {
        head == name
    } else {
        head.eq_ignore_ascii_case(name)
    };
    if !matches {
        return None;
    }
    stem[name.len()..].strip_prefix('-')
}

/// RFC 3339 UTC with nanosecond-free precision, as Helm writes `created`.
pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
