//! Content-addressed, crash-safe storage of the emulator's data plane under `data_dir/registry`:
//! - `blobs/<alg>/<xx>/<hex>`: blob and manifest bytes, written by rename after fsync, so a blob
//!   is either complete and verified or absent;
//! - `repos/<name with '/' as '+'>.json`: one small index per repository (blob links, manifests
//!   with their metadata, tags), rewritten atomically on every change;
//! - `uploads/<uuid>/{data,info.json}`: upload sessions, so they survive a restart.
//!
//! Blobs are shared by digest but visible per repository through links: a blob DELETE unlinks
//! it from one repository. Nothing is garbage-collected. It owns no HTTP concerns.

pub(crate) mod files;
mod uploads;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::clock::SharedClock;
use crate::oci::Digest;

pub use uploads::UploadInfo;

/// A repository as the control plane lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct RepoSummary {
    /// Full name, namespace-prefixed: `ns/repo`.
    pub name: String,
    pub created_ms: i64,
    pub updated_ms: i64,
}

/// A tag as `DescribeImages` lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct TagSummary {
    pub tag: String,
    pub digest: String,
    /// Size of the manifest plus the blobs it references, bytes.
    pub size: u64,
    pub media_type: String,
    pub updated_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StorageError {
    #[error("{0} not found")]
    NotFound(String),
    #[error("storage I/O: {0}")]
    Io(String),
    /// The uploaded content does not hash to the digest the client named.
    #[error("digest did not match content: computed {computed}")]
    DigestMismatch { computed: String },
    /// The body exceeded the configured size limit.
    #[error("request body too large")]
    TooLarge,
    /// The client's body stream broke off (dropped connection).
    #[error("request body aborted: {0}")]
    BodyAborted(String),
    /// A chunk did not start where the session ends (`size` bytes so far).
    #[error("chunk out of order: upload holds {size} bytes")]
    OutOfOrder { size: u64 },
}

/// What the registry remembers about a stored manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestMeta {
    pub media_type: String,
    pub size: u64,
    /// Sum of the sizes of the blobs/manifests it references.
    #[serde(default)]
    pub refs_size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<serde_json::Value>,
    pub created_ms: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct TagLink {
    digest: String,
    updated_ms: i64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct RepoIndex {
    created_ms: i64,
    updated_ms: i64,
    #[serde(default)]
    blobs: BTreeSet<String>,
    #[serde(default)]
    manifests: BTreeMap<String, ManifestMeta>,
    #[serde(default)]
    tags: BTreeMap<String, TagLink>,
}

pub struct Storage {
    root: PathBuf,
    clock: SharedClock,
    repos: Mutex<BTreeMap<String, RepoIndex>>,
    hashers: Mutex<std::collections::HashMap<String, (openssl::sha::Sha256, u64)>>,
}

fn repo_file(root: &Path, name: &str) -> PathBuf {
    root.join("repos")
        .join(format!("{}.json", name.replace('/', "+")))
}

impl Storage {
    pub fn open(data_dir: &std::path::Path, clock: SharedClock) -> std::io::Result<Self> {
        let root = data_dir.join("registry");
        for d in ["blobs", "repos", "uploads"] {
            std::fs::create_dir_all(root.join(d))?;
        }
        let mut repos = BTreeMap::new();
        for entry in std::fs::read_dir(root.join("repos"))? {
            let path = entry?.path();
            let Some(file) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            let Some(stem) = file.strip_suffix(".json") else {
                continue;
            };
            if stem.starts_with('.') {
                let _ = std::fs::remove_file(&path); // leftover temp file of a crash
                continue;
            }
            let bytes = std::fs::read(&path)?;
            let idx: RepoIndex = serde_json::from_slice(&bytes).map_err(std::io::Error::other)?;
            repos.insert(stem.replace('+', "/"), idx);
        }
        Ok(Storage {
            root,
            clock,
            repos: Mutex::new(repos),
            hashers: Mutex::new(Default::default()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, RepoIndex>> {
        self.repos.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn persist(&self, name: &str, idx: &RepoIndex) -> Result<(), StorageError> {
        let bytes = serde_json::to_vec(idx).map_err(|e| StorageError::Io(e.to_string()))?;
        files::write_atomic(&repo_file(&self.root, name), &bytes).map_err(files::io)
    }

    /// Run `f` on a repository's index (created when `create`), persisting it afterwards.
    fn update<T>(
        &self,
        name: &str,
        create: bool,
        f: impl FnOnce(&mut RepoIndex, i64) -> T,
    ) -> Result<T, StorageError> {
        let now = self.clock.now_ms();
        let mut repos = self.lock();
        if !repos.contains_key(name) {
            if !create {
                return Err(StorageError::NotFound(name.to_string()));
            }
            repos.insert(
                name.to_string(),
                RepoIndex {
                    created_ms: now,
                    updated_ms: now,
                    ..Default::default()
                },
            );
        }
        let idx = repos.get_mut(name).expect("inserted above");
        let out = f(idx, now);
        let snapshot = idx.clone();
        self.persist(name, &snapshot)?;
        Ok(out)
    }

    fn read<T>(&self, name: &str, f: impl FnOnce(&RepoIndex) -> T) -> Option<T> {
        self.lock().get(name).map(f)
    }

    pub fn blob_file(&self, digest: &Digest) -> PathBuf {
        files::blob_path(&self.root, digest.algorithm(), digest.encoded())
    }

    /// Size of the stored bytes of `digest`, anywhere.
    pub async fn stored_size(&self, digest: &Digest) -> Option<u64> {
        tokio::fs::metadata(self.blob_file(digest))
            .await
            .ok()
            .map(|m| m.len())
    }

    /// Size of a blob when it is linked into `repo` (and its bytes are present).
    pub async fn blob_in_repo(&self, repo: &str, digest: &Digest) -> Option<u64> {
        let linked = self.read(repo, |i| {
            i.blobs.contains(digest.as_str()) || i.manifests.contains_key(digest.as_str())
        })?;
        if !linked {
            return None;
        }
        self.stored_size(digest).await
    }

    /// Make an already stored blob visible in `repo` (creating the repository).
    pub fn link_blob(&self, repo: &str, digest: &Digest) -> Result<(), StorageError> {
        self.update(repo, true, |i, now| {
            i.blobs.insert(digest.to_string());
            i.updated_ms = now;
        })
    }

    /// Unlink a blob from `repo`; false when it was not linked there.
    pub fn unlink_blob(&self, repo: &str, digest: &Digest) -> Result<bool, StorageError> {
        match self.update(repo, false, |i, _| i.blobs.remove(digest.as_str())) {
            Err(StorageError::NotFound(_)) => Ok(false),
            r => r,
        }
    }

    /// Store manifest bytes under their digest and link them into `repo`, tagging when asked.
    pub fn put_manifest(
        &self,
        repo: &str,
        digest: &Digest,
        bytes: &[u8],
        meta: ManifestMeta,
        tag: Option<&str>,
    ) -> Result<(), StorageError> {
        let path = self.blob_file(digest);
        if !path.exists() {
            files::write_atomic(&path, bytes).map_err(files::io)?;
        }
        self.update(repo, true, |i, now| {
            i.manifests.insert(digest.to_string(), meta);
            if let Some(t) = tag {
                i.tags.insert(
                    t.to_string(),
                    TagLink {
                        digest: digest.to_string(),
                        updated_ms: now,
                    },
                );
            }
            i.updated_ms = now;
        })
    }

    /// Resolve a tag in `repo` to a digest.
    pub fn resolve_tag(&self, repo: &str, tag: &str) -> Option<Digest> {
        self.read(repo, |i| i.tags.get(tag).map(|t| t.digest.clone()))
            .flatten()
            .and_then(|d| Digest::parse(&d).ok())
    }

    /// Metadata of a manifest linked into `repo`.
    pub fn manifest_meta(&self, repo: &str, digest: &Digest) -> Option<ManifestMeta> {
        self.read(repo, |i| i.manifests.get(digest.as_str()).cloned())
            .flatten()
    }

    /// Delete a manifest by digest with every tag pointing at it; false when unknown.
    pub fn delete_manifest(&self, repo: &str, digest: &Digest) -> Result<bool, StorageError> {
        let r = self.update(repo, false, |i, now| {
            let found = i.manifests.remove(digest.as_str()).is_some();
            i.tags.retain(|_, t| t.digest != digest.as_str());
            if found {
                i.updated_ms = now;
            }
            found
        });
        match r {
            Err(StorageError::NotFound(_)) => Ok(false),
            r => r,
        }
    }

    /// Tags of a repository, sorted; `None` when the repository does not exist.
    pub fn tags(&self, repo: &str) -> Option<Vec<String>> {
        self.read(repo, |i| i.tags.keys().cloned().collect())
    }

    /// Repository names, sorted.
    pub fn repository_names(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }

    /// Manifests in `repo` whose `subject` is `digest`.
    pub fn referrers(&self, repo: &str, digest: &Digest) -> Vec<(String, ManifestMeta)> {
        self.read(repo, |i| {
            i.manifests
                .iter()
                .filter(|(_, m)| m.subject.as_deref() == Some(digest.as_str()))
                .map(|(d, m)| (d.clone(), m.clone()))
                .collect()
        })
        .unwrap_or_default()
    }

    /// Every repository, sorted by name.
    pub async fn list_repositories(&self) -> Vec<RepoSummary> {
        self.lock()
            .iter()
            .map(|(name, i)| RepoSummary {
                name: name.clone(),
                created_ms: i.created_ms,
                updated_ms: i.updated_ms,
            })
            .collect()
    }

    /// Create an empty repository; `Ok(false)` when it already existed.
    pub async fn create_repository(&self, name: &str) -> Result<bool, StorageError> {
        if self.lock().contains_key(name) {
            return Ok(false);
        }
        self.update(name, true, |_, _| ())?;
        Ok(true)
    }

    /// Delete a repository with all its tags and manifests.
    pub async fn delete_repository(&self, name: &str) -> Result<(), StorageError> {
        let mut repos = self.lock();
        if repos.remove(name).is_none() {
            return Err(StorageError::NotFound(name.to_string()));
        }
        match std::fs::remove_file(repo_file(&self.root, name)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(files::io(e)),
            _ => Ok(()),
        }
    }

    /// Tags of a repository, sorted by tag.
    pub async fn list_tag_summaries(&self, repo: &str) -> Result<Vec<TagSummary>, StorageError> {
        self.read(repo, |i| {
            i.tags
                .iter()
                .map(|(tag, t)| {
                    let m = i.manifests.get(&t.digest);
                    TagSummary {
                        tag: tag.clone(),
                        digest: t.digest.clone(),
                        size: m.map(|m| m.size + m.refs_size).unwrap_or(0),
                        media_type: m.map(|m| m.media_type.clone()).unwrap_or_default(),
                        updated_ms: t.updated_ms,
                    }
                })
                .collect()
        })
        .ok_or_else(|| StorageError::NotFound(repo.to_string()))
    }

    /// Remove one tag (the manifest stays reachable by digest).
    pub async fn delete_tag(&self, repo: &str, tag: &str) -> Result<(), StorageError> {
        let removed = self.update(repo, false, |i, now| {
            let r = i.tags.remove(tag).is_some();
            if r {
                i.updated_ms = now;
            }
            r
        })?;
        if removed {
            Ok(())
        } else {
            Err(StorageError::NotFound(tag.to_string()))
        }
    }
}
