//! The local spool of pipelined uploads: upload sessions the adapter answers itself (their
//! bytes in `<spool_dir>/sessions/<id>`), digests verified while the bytes arrive, and a byte
//! budget (`wan.spool_max_bytes`) that makes a client wait when the spool is full instead of
//! dropping anything. Only the `run-*` directories below the spool directory are the adapter's:
//! a dead run's is removed at start (what was spooled and not yet in TCR was never acknowledged by a
//! manifest, so nothing is lost that a client did not get an error for). Several adapters may
//! share one spool directory: each has its own `run-<pid>-<random>` inside.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use actix_web::web;
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::oci::{Digest, ErrorCode, OciError, RepoName};

/// The budget's unit.
const UNIT: u64 = 64 * 1024;
/// How long a client waits for room in a full spool before it is told to retry.
const WAIT_FOR_ROOM: Duration = Duration::from_secs(120);
/// A session nobody has touched for this long is dropped (its bytes freed).
const IDLE_SESSION: Duration = Duration::from_secs(3600);
/// Open sessions at most (each costs a little memory even without bytes).
const MAX_SESSIONS: usize = 10_000;

/// Bytes of the spool held by one session or one blob waiting for its upload.
#[derive(Default)]
pub struct Reservation {
    permits: Vec<OwnedSemaphorePermit>,
    bytes: u64,
}

impl Reservation {
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

/// One upload session answered by the adapter.
pub struct Session {
    /// The repository it uploads into (upstream name).
    pub repo: RepoName,
    pub file: PathBuf,
    pub size: u64,
    hasher: openssl::sha::Sha256,
    pub reservation: Reservation,
    pub touched: Instant,
    /// The upstream session opened for it ahead of need.
    pub upstream: Option<crate::registry::wan::task::Ahead<Result<String, String>>>,
}

pub struct Spool {
    dir: PathBuf,
    budget: Arc<Semaphore>,
    pub max_bytes: u64,
    /// Open sessions by id, with the repository each belongs to.
    pub sessions: dashmap::DashMap<String, (RepoName, Arc<tokio::sync::Mutex<Session>>)>,
    pub bytes: prometheus::IntGauge,
    /// What session ids start with: `p.`, or `p.<replica>.` when replicas share a store (the
    /// id then names the replica that holds the session).
    pub session_prefix: String,
}

impl Spool {
    /// A fresh spool of this process under `dir` (`run-<pid>-<random>/`); what earlier runs
    /// left there (their process is gone, or it had this process's id) is removed.
    pub fn open(dir: &Path, max_bytes: u64, bytes: prometheus::IntGauge) -> std::io::Result<Spool> {
        std::fs::create_dir_all(dir)?;
        let me = std::process::id();
        for entry in std::fs::read_dir(dir)?.flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            let Some(pid) = name
                .strip_prefix("run-")
                .and_then(|r| r.split('-').next())
                .and_then(|p| p.parse::<u32>().ok())
            else {
                continue;
            };
            let earlier_me = pid == me && !runs().contains(&name);
            if earlier_me || !Path::new(&format!("/proc/{pid}")).exists() {
                match std::fs::remove_dir_all(entry.path()) {
                    // Another spool opening at the same time removed it first.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    other => other?,
                }
            }
        }
        let run = format!("run-{me}-{}", uuid::Uuid::new_v4().simple());
        runs().insert(run.clone());
        let dir = dir.join(run);
        for sub in ["sessions", "blobs"] {
            std::fs::create_dir_all(dir.join(sub))?;
        }
        let units = (max_bytes / UNIT).max(1) as usize;
        Ok(Spool {
            dir,
            budget: Arc::new(Semaphore::new(units.min(Semaphore::MAX_PERMITS))),
            max_bytes,
            sessions: dashmap::DashMap::new(),
            bytes,
            session_prefix: "p.".into(),
        })
    }

    /// A new session for `repo`: its id (`p.<32 hex>`, a valid upload id).
    pub fn create(
        &self,
        repo: &RepoName,
        upstream: crate::registry::wan::task::Ahead<Result<String, String>>,
    ) -> Result<String, OciError> {
        self.sweep();
        if self.sessions.len() >= MAX_SESSIONS {
            return Err(OciError::new(
                ErrorCode::TooManyRequests,
                "too many open upload sessions on this adapter; finish or cancel some",
            )
            .with_status(StatusCode::TOO_MANY_REQUESTS));
        }
        let id = format!("{}{}", self.session_prefix, uuid::Uuid::new_v4().simple());
        let session = Session {
            repo: repo.clone(),
            file: self.dir.join("sessions").join(&id),
            size: 0,
            hasher: openssl::sha::Sha256::new(),
            reservation: Reservation::default(),
            touched: Instant::now(),
            upstream: Some(upstream),
        };
        self.sessions.insert(
            id.clone(),
            (repo.clone(), Arc::new(tokio::sync::Mutex::new(session))),
        );
        Ok(id)
    }

    /// The session `id` in `repo` (another repository's session is unknown here).
    pub fn get(
        &self,
        id: &str,
        repo: &RepoName,
    ) -> Result<Arc<tokio::sync::Mutex<Session>>, OciError> {
        let unknown = || {
            OciError::new(
                ErrorCode::BlobUploadUnknown,
                "upload unknown (pipelined sessions live on the replica that opened them)",
            )
            .with_status(StatusCode::NOT_FOUND)
        };
        match self.sessions.get(id) {
            Some(s) if &s.value().0 == repo => Ok(s.value().1.clone()),
            _ => Err(unknown()),
        }
    }

    /// Drop a session (locked by the caller) and its bytes.
    pub async fn discard(&self, id: &str, s: &mut Session) {
        self.sessions.remove(id);
        let _ = tokio::fs::remove_file(&s.file).await;
        self.release(std::mem::take(&mut s.reservation));
    }

    /// Free a reservation.
    pub fn release(&self, r: Reservation) {
        self.bytes.sub(r.bytes as i64);
        drop(r.permits);
    }

    fn sweep(&self) {
        let idle: Vec<String> = self
            .sessions
            .iter()
            .filter(|s| {
                s.value()
                    .1
                    .try_lock()
                    .is_ok_and(|g| g.touched.elapsed() > IDLE_SESSION)
            })
            .map(|s| s.key().clone())
            .collect();
        for id in idle {
            if let Some((_, (_, s))) = self.sessions.remove(&id) {
                if let Ok(mut g) = s.try_lock() {
                    let _ = std::fs::remove_file(&g.file);
                    let r = std::mem::take(&mut g.reservation);
                    self.release(r);
                }
            }
        }
    }

    /// Room for `n` more bytes in `r`, waiting (bounded) while the spool is full.
    async fn reserve(&self, r: &mut Reservation, n: u64) -> Result<(), OciError> {
        let units = n.div_ceil(UNIT).max(1);
        if (r.bytes + n) > self.max_bytes {
            return Err(OciError::new(
                ErrorCode::SizeInvalid,
                "this blob is larger than the adapter's spool (wan.spool_max_bytes)",
            )
            .with_status(StatusCode::PAYLOAD_TOO_LARGE));
        }
        let permit = tokio::time::timeout(
            WAIT_FOR_ROOM,
            self.budget.clone().acquire_many_owned(units as u32),
        )
        .await;
        match permit {
            Ok(Ok(p)) => {
                r.permits.push(p);
                r.bytes += units * UNIT;
                self.bytes.add((units * UNIT) as i64);
                Ok(())
            }
            _ => Err(OciError::new(
                ErrorCode::TooManyRequests,
                "the adapter's upload spool is full; retry shortly",
            )
            .with_status(StatusCode::SERVICE_UNAVAILABLE)),
        }
    }

    /// Append the client's body to the session, hashing it on the way.
    pub async fn receive(
        &self,
        s: &mut Session,
        mut payload: web::Payload,
    ) -> Result<(), OciError> {
        let mut file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&s.file)
            .await
            .map_err(spool_error)?;
        while let Some(chunk) = payload.next().await {
            let chunk = chunk.map_err(|e| {
                OciError::new(
                    ErrorCode::BlobUploadInvalid,
                    format!("reading the body: {e}"),
                )
                .with_status(StatusCode::BAD_REQUEST)
            })?;
            let need = (s.size + chunk.len() as u64).saturating_sub(s.reservation.bytes);
            if need > 0 {
                self.reserve(&mut s.reservation, need).await?;
            }
            s.hasher.update(&chunk);
            file.write_all(&chunk).await.map_err(spool_error)?;
            s.size += chunk.len() as u64;
        }
        file.flush().await.map_err(spool_error)?;
        s.touched = Instant::now();
        Ok(())
    }

    /// Check the session's bytes against `digest` and move them out of the session into a
    /// blob file of their own, with their reservation.
    pub async fn seal(
        &self,
        id: &str,
        s: &mut Session,
        digest: &Digest,
    ) -> Result<(PathBuf, Reservation), OciError> {
        let actual = match digest.algorithm() {
            "sha256" => Digest::from_sha256(s.hasher.clone().finish()),
            _ => file_digest(&s.file, digest).await?,
        };
        if &actual != digest {
            self.discard(id, s).await;
            return Err(OciError::new(
                ErrorCode::DigestInvalid,
                format!("the uploaded bytes have digest {actual}, not {digest}"),
            ));
        }
        let blob = self.dir.join("blobs").join(id);
        if s.size == 0 {
            tokio::fs::File::create(&s.file)
                .await
                .map_err(spool_error)?;
        }
        tokio::fs::rename(&s.file, &blob)
            .await
            .map_err(spool_error)?;
        self.sessions.remove(id);
        Ok((blob, std::mem::take(&mut s.reservation)))
    }
}

/// The spools this process opened (several adapters may run in one process, e.g. in tests).
fn runs() -> std::sync::MutexGuard<'static, std::collections::HashSet<String>> {
    static RUNS: std::sync::OnceLock<std::sync::Mutex<std::collections::HashSet<String>>> =
        std::sync::OnceLock::new();
    RUNS.get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner())
}

/// The digest of a spooled file with `like`'s algorithm (sha512; others are refused).
async fn file_digest(path: &Path, like: &Digest) -> Result<Digest, OciError> {
    if like.algorithm() != "sha512" {
        return Err(OciError::new(
            ErrorCode::Unsupported,
            format!("digest algorithm {} is not supported", like.algorithm()),
        ));
    }
    use tokio::io::AsyncReadExt;
    let mut file = tokio::fs::File::open(path).await.map_err(spool_error)?;
    let mut hasher = openssl::sha::Sha512::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).await.map_err(spool_error)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Digest::parse(&format!("sha512:{}", hex::encode(hasher.finish())))
        .map_err(|e| OciError::new(ErrorCode::DigestInvalid, e.to_string()))
}

fn spool_error(e: std::io::Error) -> OciError {
    tracing::error!(error = %e, "spool I/O failed");
    OciError::new(
        ErrorCode::Unavailable,
        "the adapter could not write its upload spool; retry",
    )
    .with_status(StatusCode::SERVICE_UNAVAILABLE)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Adapters starting together on one spool folder (tests in one process, replicas on one
    /// volume) all start, whoever removes a dead run's leftovers first.
    #[test]
    fn spools_opening_together_share_the_cleanup() {
        let root = tempfile::tempdir().unwrap();
        for i in 0..32 {
            // u32::MAX is above any Linux pid: a run whose process is gone.
            let dead = root.path().join(format!("run-{}-{i}/blobs/x", u32::MAX));
            std::fs::create_dir_all(dead).unwrap();
        }
        let opened: Vec<_> = (0..8)
            .map(|_| {
                let dir = root.path().to_path_buf();
                std::thread::spawn(move || {
                    let gauge = prometheus::IntGauge::new("g", "g").unwrap();
                    Spool::open(&dir, 1 << 20, gauge).map(|s| s.dir)
                })
            })
            .collect();
        for t in opened {
            let dir = t.join().unwrap().expect("every spool opens");
            assert!(dir.join("blobs").is_dir());
        }
        let left: Vec<_> = std::fs::read_dir(root.path()).unwrap().flatten().collect();
        assert_eq!(
            left.len(),
            8,
            "the dead runs' folders are gone, the eight live ones stay"
        );
    }
}
