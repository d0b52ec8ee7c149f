//! File-level primitives of the emulator's storage: atomic small-file writes (temp + fsync +
//! rename), streamed appends with incremental sha256, and blob file placement. No repository
//! logic here.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use openssl::sha::Sha256;
use tokio::io::AsyncWriteExt;

use super::StorageError;

/// Write `bytes` to `path` atomically: a temp file next to it, fsync, rename, fsync the dir.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
        uuid::Uuid::new_v4().simple()
    ));
    let res = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res
}

pub fn io(e: std::io::Error) -> StorageError {
    StorageError::Io(e.to_string())
}

/// Where a blob with this digest lives: `blobs/<alg>/<ab>/<encoded>`.
pub fn blob_path(root: &Path, alg: &str, encoded: &str) -> PathBuf {
    let shard = encoded.get(..2).unwrap_or("00");
    root.join("blobs").join(alg).join(shard).join(encoded)
}

/// Append a body stream to `file_path` (opened for append), hashing it into `hasher` when given.
/// Enforces `limit` bytes for this body (0 = no limit). On any error the file is
/// truncated back to `start` so a dropped connection leaves the session as it was.
pub async fn append_stream<S, E>(
    file_path: &Path,
    start: u64,
    mut body: S,
    mut hasher: Option<&mut Sha256>,
    limit: u64,
) -> Result<u64, StorageError>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let mut f = tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(file_path)
        .await
        .map_err(io)?;
    let mut written = 0u64;
    let result: Result<(), StorageError> = async {
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| StorageError::BodyAborted(e.to_string()))?;
            written += chunk.len() as u64;
            if limit > 0 && written > limit {
                return Err(StorageError::TooLarge);
            }
            if let Some(h) = hasher.as_deref_mut() {
                h.update(&chunk);
            }
            f.write_all(&chunk).await.map_err(io)?;
        }
        f.flush().await.map_err(io)?;
        f.sync_data().await.map_err(io)?;
        Ok(())
    }
    .await;
    if let Err(e) = result {
        drop(f);
        if let Ok(f) = std::fs::OpenOptions::new().write(true).open(file_path) {
            let _ = f.set_len(start);
        }
        return Err(e);
    }
    Ok(start + written)
}

/// sha256 of a whole file, streamed.
pub async fn hash_file(path: &Path) -> Result<Sha256, StorageError> {
    use tokio::io::AsyncReadExt;
    let mut f = tokio::fs::File::open(path).await.map_err(io)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = f.read(&mut buf).await.map_err(io)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h)
}
