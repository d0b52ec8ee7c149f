//! Upload sessions: `uploads/<uuid>/data` plus `info.json`. Bytes are appended while hashed
//! (the running sha256 is kept in memory and recomputed from the file after a restart); a commit
//! verifies the digest, then renames the fsynced file into `blobs/`, so a blob appears whole or
//! not at all.

use bytes::Bytes;
use futures_util::Stream;
use openssl::sha::Sha256;
use serde::{Deserialize, Serialize};

use super::files::{self, io};
use super::{Storage, StorageError};
use crate::oci::Digest;

/// An open upload session.
#[derive(Debug, Clone, PartialEq)]
pub struct UploadInfo {
    /// Repository the session was opened in.
    pub repo: String,
    /// Bytes received so far.
    pub size: u64,
}

#[derive(Serialize, Deserialize)]
struct SessionFile {
    repo: String,
    started_ms: i64,
}

pub(crate) fn valid_uuid(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.' | b'='))
        && !id.starts_with('.')
}

impl Storage {
    fn session_dir(&self, id: &str) -> std::path::PathBuf {
        self.root.join("uploads").join(id)
    }

    fn hashers(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, (Sha256, u64)>> {
        self.hashers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Remove the upload sessions with no activity (no new bytes, no start) for `max_age_ms`, as
    /// registries purge abandoned uploads; returns how many were removed.
    pub fn purge_uploads(&self, max_age_ms: i64) -> usize {
        let now = self.clock.now_ms();
        let Ok(dir) = std::fs::read_dir(self.root.join("uploads")) else {
            return 0;
        };
        let mut purged = 0;
        for entry in dir.flatten() {
            let id = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            let started = std::fs::read(path.join("info.json"))
                .ok()
                .and_then(|b| serde_json::from_slice::<SessionFile>(&b).ok())
                .map_or(0, |s| s.started_ms);
            let touched = std::fs::metadata(path.join("data"))
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_millis() as i64);
            if now - started.max(touched) > max_age_ms && std::fs::remove_dir_all(&path).is_ok() {
                self.hashers().remove(&id);
                purged += 1;
            }
        }
        purged
    }

    /// Open a new upload session in `repo`; returns its id.
    pub fn new_upload(&self, repo: &str) -> Result<String, StorageError> {
        let id = uuid::Uuid::new_v4().to_string();
        let dir = self.session_dir(&id);
        std::fs::create_dir_all(&dir).map_err(io)?;
        std::fs::File::create(dir.join("data")).map_err(io)?;
        let info = SessionFile {
            repo: repo.to_string(),
            started_ms: self.clock.now_ms(),
        };
        let bytes = serde_json::to_vec(&info).map_err(|e| StorageError::Io(e.to_string()))?;
        files::write_atomic(&dir.join("info.json"), &bytes).map_err(io)?;
        self.hashers().insert(id.clone(), (Sha256::new(), 0));
        Ok(id)
    }

    /// The session `id`, when it exists.
    pub async fn upload_info(&self, id: &str) -> Option<UploadInfo> {
        if !valid_uuid(id) {
            return None;
        }
        let dir = self.session_dir(id);
        let info: SessionFile =
            serde_json::from_slice(&tokio::fs::read(dir.join("info.json")).await.ok()?).ok()?;
        let size = tokio::fs::metadata(dir.join("data")).await.ok()?.len();
        Some(UploadInfo {
            repo: info.repo,
            size,
        })
    }

    async fn running_hash(&self, id: &str, size: u64) -> Result<Sha256, StorageError> {
        match self.hashers().remove(id) {
            Some((h, n)) if n == size => return Ok(h),
            _ => {}
        }
        files::hash_file(&self.session_dir(id).join("data")).await
    }

    /// Append a body to session `id`. With `start`, the chunk must begin exactly where the
    /// session ends (else [`StorageError::OutOfOrder`]). Returns the new size.
    pub async fn append_upload<E: std::fmt::Display>(
        &self,
        id: &str,
        start: Option<u64>,
        body: impl Stream<Item = Result<Bytes, E>> + Unpin,
        limit: u64,
    ) -> Result<u64, StorageError> {
        let info = self
            .upload_info(id)
            .await
            .ok_or_else(|| StorageError::NotFound(id.to_string()))?;
        if let Some(s) = start {
            if s != info.size {
                return Err(StorageError::OutOfOrder { size: info.size });
            }
        }
        let mut hasher = self.running_hash(id, info.size).await?;
        let path = self.session_dir(id).join("data");
        let size = files::append_stream(&path, info.size, body, Some(&mut hasher), limit).await?;
        self.hashers().insert(id.to_string(), (hasher, size));
        Ok(size)
    }

    /// Verify the session's content against `digest` and publish it as a blob linked into the
    /// session's repository. On a mismatch the session is discarded and nothing becomes visible.
    pub async fn commit_upload(&self, id: &str, digest: &Digest) -> Result<u64, StorageError> {
        let info = self
            .upload_info(id)
            .await
            .ok_or_else(|| StorageError::NotFound(id.to_string()))?;
        let hasher = self.running_hash(id, info.size).await?;
        let computed = Digest::from_sha256(hasher.finish());
        if &computed != digest {
            self.cancel_upload(id).await;
            return Err(StorageError::DigestMismatch {
                computed: computed.to_string(),
            });
        }
        let data = self.session_dir(id).join("data");
        let target = self.blob_file(digest);
        if tokio::fs::metadata(&target).await.is_err() {
            if let Some(parent) = target.parent() {
                tokio::fs::create_dir_all(parent).await.map_err(io)?;
            }
            let f = tokio::fs::File::open(&data).await.map_err(io)?;
            f.sync_all().await.map_err(io)?;
            tokio::fs::rename(&data, &target).await.map_err(io)?;
        }
        self.cancel_upload(id).await;
        self.link_blob(&info.repo, digest)?;
        Ok(info.size)
    }

    /// Drop a session and its bytes; false when it did not exist.
    pub async fn cancel_upload(&self, id: &str) -> bool {
        if !valid_uuid(id) {
            return false;
        }
        self.hashers().remove(id);
        tokio::fs::remove_dir_all(self.session_dir(id))
            .await
            .is_ok()
    }

    /// Monolithic upload: stream `body` into a fresh session and commit it under `digest`.
    pub async fn put_blob<S, E>(
        &self,
        repo: &str,
        digest: &Digest,
        body: S,
        limit: u64,
    ) -> Result<u64, StorageError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let id = self.new_upload(repo)?;
        if let Err(e) = self.append_upload(&id, None, body, limit).await {
            self.cancel_upload(&id).await;
            return Err(e);
        }
        self.commit_upload(&id, digest).await
    }
}
