//! Pipelined jobs every replica sees. A job's state lives at `fleet:job:<repo>:<digest>`
//! (`pending <replica>`, `done`, `failed <why>`); an upload job is also offered under its digest
//! (`fleet:offers:<digest>`: `<repo> <owner> <size> <replica>`), so that a blob HEAD for the same
//! layer on another replica — for the same caller, who may read the repository it goes into —
//! is answered "found" at once and the layer mounted once the job is done, as the replica
//! running the job does with its own (bytes cross the WAN once whichever replica each HEAD
//! reaches).

use std::time::Duration;

use super::Fleet;
use crate::oci::{Digest, RepoName};

/// How long the store remembers a job's end, and its offer.
const JOB_TTL: Duration = Duration::from_secs(3600);
/// How often a waiter looks at another replica's job again.
const POLL: Duration = Duration::from_millis(10);
/// How often a waiter checks that the replica running the job is still registered.
const ALIVE_CHECK: Duration = Duration::from_secs(1);
/// Offers remembered per digest.
const OFFERS_PER_DIGEST: usize = 16;

/// What the store says of a pipelined job on some replica.
#[derive(Debug, PartialEq)]
enum Remote {
    Pending { replica: String },
    Done,
    Failed(String),
}

/// A job another replica runs, offered to other repositories of the same caller.
#[derive(Debug, Clone, PartialEq)]
pub struct Offer {
    /// The repository it brings the blob into.
    pub repo: RepoName,
    pub size: u64,
    replica: String,
}

impl Fleet {
    fn job_key(&self, repo: &RepoName, digest: &Digest) -> String {
        self.store
            .key(&["fleet", "job", repo.as_str(), digest.as_str()])
    }

    fn offers_key(&self, digest: &Digest) -> String {
        self.store.key(&["fleet", "offers", digest.as_str()])
    }

    /// A pipelined job for `digest` into `repo` started here.
    pub async fn job_started(&self, repo: &RepoName, digest: &Digest) {
        let value = format!("pending {}", self.id);
        let key = self.job_key(repo, digest);
        let _ = self.store.set(&key, value.as_bytes(), JOB_TTL).await;
    }

    /// It ended: `Ok` when TCR has the blob, else why not.
    pub async fn job_ended(&self, repo: &RepoName, digest: &Digest, result: Result<(), &str>) {
        let value = match result {
            Ok(()) => "done".to_string(),
            Err(e) => format!("failed {e}"),
        };
        let key = self.job_key(repo, digest);
        let _ = self.store.set(&key, value.as_bytes(), JOB_TTL).await;
    }

    /// An upload job bringing `digest` (`size` bytes) into `repo` for `owner` ([`Caller::of`](crate::registry::wan::Caller::of))
    /// runs here: offered to the other replicas. TCR opened the session it came through, so
    /// `owner` writes into that namespace (remembered for [`Self::writes_into`]).
    pub async fn offer(&self, repo: &RepoName, digest: &Digest, owner: Option<&str>, size: u64) {
        let member = format!("{repo} {} {size} {}", owner.unwrap_or("-"), self.id);
        let key = self.offers_key(digest);
        let _ = self
            .store
            .set_add(
                &key,
                &member,
                self.store.now_ms(),
                OFFERS_PER_DIGEST,
                JOB_TTL,
            )
            .await;
        if let Some(o) = owner {
            let key = self.store.key(&["fleet", "writes", o, repo.namespace()]);
            let _ = self.store.set(&key, b"1", JOB_TTL).await;
        }
    }

    /// Whether TCR accepted an upload of `owner`'s into `namespace` on some replica lately.
    pub async fn writes_into(&self, owner: Option<&str>, namespace: &str) -> bool {
        let Some(o) = owner else {
            return false;
        };
        let key = self.store.key(&["fleet", "writes", o, namespace]);
        matches!(self.store.get(&key).await, Ok(Some(_)))
    }

    /// Another replica's job (not failed) bringing `digest` into a repository for `owner`
    /// ([`Caller::of`](crate::registry::wan::Caller::of)):
    /// into `target` itself first, else into another one.
    pub async fn offered(
        &self,
        digest: &Digest,
        target: &RepoName,
        owner: Option<&str>,
    ) -> Option<Offer> {
        let members = self
            .store
            .set_members(&self.offers_key(digest))
            .await
            .ok()?;
        let mut offers: Vec<Offer> = Vec::new();
        for m in &members {
            let mut parts = m.split(' ');
            let (Some(repo), Some(who), Some(size), Some(replica)) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            let (Ok(repo), Ok(size)) = (RepoName::parse(repo), size.parse()) else {
                continue;
            };
            if who != owner.unwrap_or("-") || replica == self.id {
                continue;
            }
            offers.push(Offer {
                repo,
                size,
                replica: replica.to_string(),
            });
        }
        offers.sort_by_key(|o| o.repo != *target);
        for o in offers {
            match self.remote(&o.repo, digest).await {
                Some(Remote::Failed(_)) => continue,
                Some(Remote::Pending { replica }) if self.address_of(&replica).await.is_none() => {
                    continue
                }
                _ => return Some(o),
            }
        }
        None
    }

    /// Wait (up to `limit`) for the job of `offer`: `Err` when it failed, its replica is gone,
    /// or it did not end in time. A job not noted yet is pending on the offering replica.
    pub async fn follow(
        &self,
        offer: &Offer,
        digest: &Digest,
        limit: Duration,
    ) -> Result<(), String> {
        let mut wait = Waiting::new(limit);
        loop {
            let replica = match self.remote(&offer.repo, digest).await {
                Some(Remote::Done) => return Ok(()),
                Some(Remote::Failed(e)) => return Err(e),
                Some(Remote::Pending { replica }) => replica,
                None => offer.replica.clone(),
            };
            let other = (replica != self.id).then_some(replica.as_str());
            wait.next(self, other).await?;
        }
    }

    async fn remote(&self, repo: &RepoName, digest: &Digest) -> Option<Remote> {
        let raw = self.store.get(&self.job_key(repo, digest)).await.ok()??;
        let text = String::from_utf8(raw).ok()?;
        Some(match text.split_once(' ') {
            Some(("pending", r)) => Remote::Pending {
                replica: r.to_string(),
            },
            Some(("failed", e)) => Remote::Failed(e.to_string()),
            _ if text == "done" => Remote::Done,
            _ => return None,
        })
    }

    /// Wait (up to `limit`) for another replica's job bringing `digest` into `repo`: `Err`
    /// when it failed, its replica is gone, or it did not end in time.
    pub async fn wait_remote(
        &self,
        repo: &RepoName,
        digest: &Digest,
        limit: Duration,
    ) -> Result<(), String> {
        let mut wait = Waiting::new(limit);
        loop {
            match self.remote(repo, digest).await {
                None | Some(Remote::Done) => return Ok(()),
                Some(Remote::Failed(e)) => return Err(e),
                // This replica's own jobs are waited for by the pipeline itself.
                Some(Remote::Pending { replica }) if replica == self.id => return Ok(()),
                Some(Remote::Pending { replica }) => wait.next(self, Some(&replica)).await?,
            }
        }
    }
}

/// A wait for another replica's job: bounded by `limit`, and given up when the replica sending
/// the blob is no longer alive (looked at every [`ALIVE_CHECK`]).
struct Waiting {
    started: tokio::time::Instant,
    checked: Option<tokio::time::Instant>,
    limit: Duration,
}

impl Waiting {
    fn new(limit: Duration) -> Waiting {
        Waiting {
            started: tokio::time::Instant::now(),
            checked: None,
            limit,
        }
    }

    /// After a look that found the job pending on `replica` (`None`: on this one): `Err` when
    /// that replica is gone or time is up, else a pause before the next look.
    async fn next(&mut self, fleet: &Fleet, replica: Option<&str>) -> Result<(), String> {
        if let Some(replica) = replica {
            if self.checked.is_none_or(|t| t.elapsed() >= ALIVE_CHECK) {
                if fleet.find(replica).await.is_none() {
                    return Err("the adapter replica sending it is gone".into());
                }
                self.checked = Some(tokio::time::Instant::now());
            }
        }
        if self.started.elapsed() >= self.limit {
            return Err(format!("still not in TCR after {}s", self.limit.as_secs()));
        }
        tokio::time::sleep(POLL).await;
        Ok(())
    }
}
