//! STUB (to be replaced by the data-plane work; keep these public signatures): content-addressed,
//! crash-safe storage of blobs, manifests, tags and upload sessions under `data_dir`.

use crate::clock::SharedClock;

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
}

pub struct Storage {}

impl Storage {
    pub fn open(_data_dir: &std::path::Path, _clock: SharedClock) -> std::io::Result<Self> {
        Ok(Storage {})
    }

    /// Every repository, sorted by name.
    pub async fn list_repositories(&self) -> Vec<RepoSummary> {
        Vec::new()
    }

    /// Create an empty repository; `Ok(false)` when it already existed.
    pub async fn create_repository(&self, _name: &str) -> Result<bool, StorageError> {
        Ok(true)
    }

    /// Delete a repository with all its tags and manifests.
    pub async fn delete_repository(&self, name: &str) -> Result<(), StorageError> {
        Err(StorageError::NotFound(name.to_string()))
    }

    /// Tags of a repository, sorted by tag.
    pub async fn list_tag_summaries(&self, repo: &str) -> Result<Vec<TagSummary>, StorageError> {
        Err(StorageError::NotFound(repo.to_string()))
    }

    /// Remove one tag (the manifest stays reachable by digest).
    pub async fn delete_tag(&self, _repo: &str, tag: &str) -> Result<(), StorageError> {
        Err(StorageError::NotFound(tag.to_string()))
    }
}
