//! The background half of pipelined uploads: each acknowledged blob becomes a job that brings it
//! into TCR — an upload of the spooled bytes (`wan.max_parallel_uploads` at once, three
//! attempts, each on a fresh upstream session) or a mount from a repository that has it (after
//! that repository's own job, when it has one). A job ends `Done` or `Failed`; the manifest PUT
//! waits for the jobs of the blobs it references (the commit point).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::web;
use tokio::sync::{watch, Semaphore};

use super::spool::Reservation;
use crate::oci::{Digest, RepoName};
use crate::registry::wan::calls::{Caller, Calls, Mounted};
use crate::registry::wan::task::{settled, Ahead};
use crate::registry::RegistryFront;
use crate::upstream::BasicAuth;

/// Attempts per background upload.
const ATTEMPTS: u32 = 3;
/// Finished jobs nobody committed are forgotten after this long.
const KEEP_FINISHED: Duration = Duration::from_secs(900);

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum State {
    Pending,
    Done,
    Failed(String),
}

/// A blob on its way into one repository.
#[derive(Clone)]
pub struct Job {
    pub size: u64,
    pub state: watch::Receiver<State>,
    /// The spooled bytes while they wait (an upload job).
    pub file: Option<PathBuf>,
    /// Whose credential runs it (a mount from it is offered to the same caller only).
    owner: Option<String>,
    started: Instant,
}

impl Job {
    /// A job another replica runs (`fleet`), its end told by `state`.
    pub fn remote(size: u64, state: watch::Receiver<State>) -> Job {
        Job {
            size,
            state,
            file: None,
            owner: None,
            started: Instant::now(),
        }
    }

    pub fn current(&self) -> State {
        self.state.borrow().clone()
    }

    /// Wait until the job has ended (bounded by `limit`).
    pub async fn outcome(&mut self, limit: Duration) -> State {
        let ended = tokio::time::timeout(limit, self.state.wait_for(|s| *s != State::Pending));
        match ended.await {
            Ok(Ok(s)) => s.clone(),
            Ok(Err(_)) => State::Failed("the transfer was abandoned".into()),
            Err(_) => State::Failed(format!("still not in TCR after {}s", limit.as_secs())),
        }
    }
}

/// `tcr_adapter_pipeline_*`.
#[derive(Clone)]
pub struct PipelineMetrics {
    pub spool_bytes: prometheus::IntGauge,
    pub in_flight: prometheus::IntGauge,
    pub jobs: prometheus::IntCounterVec,
}

impl Default for PipelineMetrics {
    fn default() -> Self {
        let jobs = prometheus::IntCounterVec::new(
            prometheus::Opts::new(
                "tcr_adapter_pipeline_jobs_total",
                "Pipelined blobs brought into TCR in the background, by kind (upload, mount) and \
                 result (done, failed)",
            ),
            &["kind", "result"],
        )
        .expect("valid metric");
        for k in ["upload", "mount"] {
            for r in ["done", "failed"] {
                jobs.with_label_values(&[k, r]);
            }
        }
        PipelineMetrics {
            spool_bytes: prometheus::IntGauge::new(
                "tcr_adapter_pipeline_spool_bytes",
                "Bytes reserved in the upload spool (sessions and blobs waiting for TCR)",
            )
            .expect("valid metric"),
            in_flight: prometheus::IntGauge::new(
                "tcr_adapter_pipeline_uploads_in_flight",
                "Background uploads to TCR running now",
            )
            .expect("valid metric"),
            jobs,
        }
    }
}

impl PipelineMetrics {
    pub fn register(&self, r: &prometheus::Registry) -> prometheus::Result<()> {
        r.register(Box::new(self.spool_bytes.clone()))?;
        r.register(Box::new(self.in_flight.clone()))?;
        r.register(Box::new(self.jobs.clone()))
    }
}

pub struct Jobs {
    /// Per digest, the repositories it is on its way into (or was brought into lately).
    map: dashmap::DashMap<Digest, Vec<(RepoName, Job)>>,
    parallel: Arc<Semaphore>,
    last_prune: std::sync::Mutex<Instant>,
    pub metrics: PipelineMetrics,
}

/// What a background job brings into TCR, and as whom.
pub struct Transfer {
    pub repo: RepoName,
    pub digest: Digest,
    pub size: u64,
    pub credential: Option<BasicAuth>,
    /// Who the caller is ([`Caller::of`]).
    pub owner: Option<String>,
    /// An upload session opened ahead (for the first attempt).
    pub session: Option<Ahead<Result<String, String>>>,
    /// Whether TCR had the blob already, asked when its HEAD was answered ahead of TCR.
    pub probe: Option<Ahead<bool>>,
    /// Repositories known to hold the blob: a mount from one of them (with the caller's
    /// credential) is tried before any byte is sent, and the spooled bytes are sent only if
    /// TCR mounts from none.
    pub sources: Vec<RepoName>,
}

impl Transfer {
    /// Who the caller is ([`Caller::of`]).
    fn owner(&self) -> Option<String> {
        self.owner.clone()
    }

    fn caller(&self) -> Caller {
        Caller {
            credential: self.credential.clone(),
            owner: self.owner.clone(),
        }
    }
}

impl Jobs {
    pub fn new(parallel: usize, metrics: PipelineMetrics) -> Self {
        Jobs {
            map: dashmap::DashMap::new(),
            parallel: Arc::new(Semaphore::new(parallel.max(1))),
            last_prune: std::sync::Mutex::new(Instant::now()),
            metrics,
        }
    }

    pub fn get(&self, repo: &RepoName, digest: &Digest) -> Option<Job> {
        let jobs = self.map.get(digest)?;
        jobs.iter().find(|(r, _)| r == repo).map(|(_, j)| j.clone())
    }

    pub fn remove(&self, repo: &RepoName, digest: &Digest) {
        if let Some(mut jobs) = self.map.get_mut(digest) {
            jobs.retain(|(r, _)| r != repo);
        }
        self.map.remove_if(digest, |_, v| v.is_empty());
    }

    /// A job (not failed) of the same `owner` bringing `digest` into another repository than
    /// `except`: a mount from there will be allowed once it is done.
    pub fn elsewhere(
        &self,
        digest: &Digest,
        except: &RepoName,
        owner: Option<&str>,
    ) -> Option<(RepoName, Job)> {
        let jobs = self.map.get(digest)?;
        jobs.iter()
            .filter(|(r, j)| r != except && j.owner.as_deref() == owner)
            .find(|(_, j)| !matches!(j.current(), State::Failed(_)))
            .map(|(r, j)| (r.clone(), j.clone()))
    }

    /// Forget finished jobs older than [`KEEP_FINISHED`] (at most every ten seconds).
    fn prune(&self) {
        {
            let mut last = self.last_prune.lock().unwrap_or_else(|p| p.into_inner());
            if last.elapsed() < Duration::from_secs(10) {
                return;
            }
            *last = Instant::now();
        }
        self.map.retain(|_, jobs| {
            jobs.retain(|(_, j)| {
                j.current() == State::Pending || j.started.elapsed() < KEEP_FINISHED
            });
            !jobs.is_empty()
        });
    }

    /// Register a job unless a live one exists; its sender.
    fn register(&self, t: &Transfer, file: Option<PathBuf>) -> Option<watch::Sender<State>> {
        self.prune();
        let mut jobs = self.map.entry(t.digest.clone()).or_default();
        if let Some(i) = jobs.iter().position(|(r, _)| r == &t.repo) {
            if !matches!(jobs[i].1.current(), State::Failed(_)) {
                return None;
            }
            jobs.remove(i);
        }
        let (tx, rx) = watch::channel(State::Pending);
        let job = Job {
            size: t.size,
            state: rx,
            file,
            owner: t.owner(),
            started: Instant::now(),
        };
        jobs.push((t.repo.clone(), job));
        Some(tx)
    }

    /// Upload the spooled `file` in the background. `false`: a job for it was already running
    /// (the file and its reservation are freed).
    pub fn start_upload(
        &self,
        front: web::Data<RegistryFront>,
        mut t: Transfer,
        file: PathBuf,
        reservation: Reservation,
    ) -> bool {
        let Some(tx) = self.register(&t, Some(file.clone())) else {
            let spool = &super::of(&front).spool;
            let _ = std::fs::remove_file(&file);
            spool.release(reservation);
            return false;
        };
        let parallel = self.parallel.clone();
        actix_web::rt::spawn(async move {
            let pipeline = super::of(&front);
            noted(&front, &t, None).await;
            let slot = parallel.acquire_owned().await;
            pipeline.jobs.metrics.in_flight.inc();
            let result = match mounted_instead(&front, &mut t).await {
                true => Ok(()),
                false => upload_with_retries(&front, &mut t, &file).await,
            };
            pipeline.jobs.metrics.in_flight.dec();
            drop(slot);
            let _ = tokio::fs::remove_file(&file).await;
            pipeline.spool.release(reservation);
            let outcome = ended(&pipeline.jobs.metrics, "upload", result);
            noted(&front, &t, Some(&outcome)).await;
            if outcome == State::Done {
                if let Some(index) = &front.wan.index {
                    index.learn(&t.digest, &t.repo, Some(t.size)).await;
                    index.pushed(t.owner().as_deref(), t.repo.namespace()).await;
                }
            }
            let _ = tx.send(outcome);
        });
        true
    }

    /// Mount `digest` into `t.repo` from `source` in the background, once `source`'s own job
    /// (if any) has brought it into TCR.
    pub fn start_mount(
        &self,
        front: web::Data<RegistryFront>,
        t: Transfer,
        source: RepoName,
        source_job: Option<Job>,
    ) {
        let Some(tx) = self.register(&t, None) else {
            return;
        };
        actix_web::rt::spawn(async move {
            noted(&front, &t, None).await;
            let result = mount_after(&front, &t, &source, source_job).await;
            let pipeline = super::of(&front);
            let outcome = ended(&pipeline.jobs.metrics, "mount", result);
            noted(&front, &t, Some(&outcome)).await;
            let _ = tx.send(outcome);
        });
    }
}

/// Tell the other replicas (when they share a store) that `t` started (`None`) or ended.
async fn noted(front: &RegistryFront, t: &Transfer, outcome: Option<&State>) {
    let Some(fleet) = front.wan.fleet.as_deref() else {
        return;
    };
    match outcome {
        None | Some(State::Pending) => fleet.job_started(&t.repo, &t.digest).await,
        Some(State::Done) => fleet.job_ended(&t.repo, &t.digest, Ok(())).await,
        Some(State::Failed(e)) => fleet.job_ended(&t.repo, &t.digest, Err(e)).await,
    }
}

/// Count the outcome and log a failure.
fn ended(metrics: &PipelineMetrics, kind: &str, result: Result<(), String>) -> State {
    match result {
        Ok(()) => {
            metrics.jobs.with_label_values(&[kind, "done"]).inc();
            State::Done
        }
        Err(e) => {
            metrics.jobs.with_label_values(&[kind, "failed"]).inc();
            tracing::warn!(kind, error = %e, "pipelined blob not brought into TCR");
            State::Failed(e)
        }
    }
}

/// A mount from one of the blob's known sources instead of sending it (the session opened
/// for the upload, if any, cancelled). Whether TCR mounted it.
async fn mounted_instead(front: &RegistryFront, t: &mut Transfer) -> bool {
    let Some(index) = front.wan.index.as_ref() else {
        return false;
    };
    let calls = Calls::new(front, t.caller());
    let owner = t.owner();
    for source in std::mem::take(&mut t.sources) {
        match calls.mount(&t.repo, &source, &t.digest).await {
            Mounted::Yes => {
                index
                    .mounted(
                        &t.digest,
                        (&t.repo, &source),
                        owner.as_deref(),
                        Some(t.size),
                    )
                    .await;
                if let Some(Ok(location)) = opened_location(t.session.take()).await {
                    calls.cancel(&t.repo, &location).await;
                }
                return true;
            }
            Mounted::No => index.refused(&t.digest, &source).await,
            Mounted::Denied => {
                index.denied();
                return false;
            }
            Mounted::Error => {
                index.mount_failed();
                return false;
            }
        }
    }
    false
}

/// Send the spooled blob. A blob the client was told was absent before TCR was asked (the
/// probe) waits for TCR's answer first, bounded by [`PROBE_WAIT`]: the probe was sent at the
/// HEAD, so it has had the client's whole upload to settle and the wait is nearly always none,
/// and a blob TCR had is never sent again however the machine is loaded. Past the bound the
/// blob is sent all the same, and the sending stops as soon as the probe finds it in TCR.
async fn upload_with_retries(
    front: &RegistryFront,
    t: &mut Transfer,
    file: &PathBuf,
) -> Result<(), String> {
    let calls = Calls::new(front, t.caller());
    let opened = t.session.take();
    let Some(probe) = t.probe.take() else {
        return send_with_retries(&calls, t, file, opened, &Mutex::new(None)).await;
    };
    if found_before_sending(&probe).await {
        if let Some(Ok(location)) = opened_location(opened).await {
            calls.cancel(&t.repo, &location).await;
        }
        return Ok(()); // TCR had it: nothing to send
    }
    let current = Mutex::new(None);
    let upload = send_with_retries(&calls, t, file, opened, &current);
    let found_there = async {
        if settled(probe).await != Some(true) {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        biased;
        () = found_there => {
            let left = current.lock().map(|mut c| c.take()).unwrap_or_default();
            if let Some(location) = left {
                calls.cancel(&t.repo, &location).await;
            }
            Ok(()) // TCR had it: the rest is not sent
        }
        sent = upload => sent,
    }
}

/// How long a background upload waits for the probe of a blob answered absent ahead of TCR.
const PROBE_WAIT: Duration = Duration::from_secs(10);

/// Whether the check found the blob in TCR before anything is sent (waited for, bounded).
async fn found_before_sending(probe: &Ahead<bool>) -> bool {
    let answer = tokio::time::timeout(PROBE_WAIT, settled(probe.clone())).await;
    matches!(answer, Ok(Some(true)))
}

/// Upload into a session (the one opened ahead, else a fresh one per attempt); `current` holds
/// the session being written, for whoever stops the upload half way.
async fn send_with_retries(
    calls: &Calls<'_>,
    t: &Transfer,
    file: &PathBuf,
    mut opened: Option<Ahead<Result<String, String>>>,
    current: &Mutex<Option<String>>,
) -> Result<(), String> {
    let mut last = String::new();
    for attempt in 0..ATTEMPTS {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(250 << attempt)).await;
        }
        let location = match opened_location(opened.take()).await {
            Some(Ok(l)) => Ok(l),
            _ => calls.open_session(&t.repo).await,
        };
        let location = match location {
            Ok(l) => l,
            Err(e) => {
                last = e;
                continue;
            }
        };
        let body = match tokio::fs::File::open(file).await {
            Ok(f) => reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::with_capacity(
                f,
                256 * 1024,
            )),
            Err(e) => return Err(format!("the spooled blob is gone: {e}")),
        };
        if let Ok(mut c) = current.lock() {
            *c = Some(location.clone());
        }
        let sent = calls
            .complete(&t.repo, &location, &t.digest, body, t.size)
            .await;
        if let Ok(mut c) = current.lock() {
            *c = None;
        }
        match sent {
            Ok(()) => return Ok(()),
            Err(e) => {
                calls.cancel(&t.repo, &location).await;
                last = e;
            }
        }
    }
    Err(last)
}

async fn opened_location(
    opened: Option<Ahead<Result<String, String>>>,
) -> Option<Result<String, String>> {
    settled(opened?).await
}

async fn mount_after(
    front: &RegistryFront,
    t: &Transfer,
    source: &RepoName,
    source_job: Option<Job>,
) -> Result<(), String> {
    if let Some(mut job) = source_job {
        if let State::Failed(e) = job.outcome(super::COMMIT_WAIT).await {
            return Err(format!("the blob's upload into {source} failed: {e}"));
        }
    }
    let calls = Calls::new(front, t.caller());
    let index = front.wan.index.as_ref();
    match calls.mount(&t.repo, source, &t.digest).await {
        Mounted::Yes => {
            if let Some(index) = index {
                let owner = t.owner();
                index.pushed(owner.as_deref(), t.repo.namespace()).await;
                index
                    .mounted(&t.digest, (&t.repo, source), owner.as_deref(), Some(t.size))
                    .await;
            }
            Ok(())
        }
        Mounted::No => {
            if let Some(index) = index {
                index.refused(&t.digest, source).await;
            }
            Err(format!("TCR refused to mount it from {source}"))
        }
        Mounted::Denied => {
            if let Some(index) = index {
                index.denied();
            }
            Err(format!("TCR refused the caller a mount into {}", t.repo))
        }
        Mounted::Error => Err(format!("the mount from {source} got no answer")),
    }
}
