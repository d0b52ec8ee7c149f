//! Replicas that share a store (`[state] redis_url`) serve one client together, whatever
//! replica a balancer picks for each request (no session affinity):
//!
//! - **Each repository has one owner.** Every replica beats in the store (`fleet:members`, an
//!   ordered set scored by time, and `fleet:replica:<id>` → its address, `[state]
//!   advertise_url`), and reads the live members back at each beat. A request for a repository
//!   goes to the member that rendezvous hashing (SHA-256 of replica id and repository name,
//!   highest wins) names; another replica streams it there as it is ([`forward`]; the adapter's
//!   own token goes along and is checked again there) and its answer back
//!   (`[state] forward_by_repository`, on by default). So one replica per repository holds the
//!   TCR realm tokens for it (tokens are secrets: the store never holds them), the upload
//!   sessions opened ahead and the pipelined jobs — TCR sees one adapter's requests. A replica
//!   that stops answering is left out of the hash for a beat's lifetime; a request without a
//!   body is then served where it arrived.
//! - **Pipelined sessions answer from any replica.** A session's id names the replica that holds
//!   its spool (`p.<replica>.<uuid>`); a request for it is streamed to that replica. A replica
//!   that is gone (its registration expired) takes only its open sessions with it: the client is
//!   told `BLOB_UPLOAD_UNKNOWN` and starts that blob again.
//! - **Jobs are seen by every replica** ([`jobs`]): a pipelined blob's background job is noted in
//!   the store (`pending`, then `done` or `failed`) and offered under its digest, so a blob HEAD
//!   on another replica is answered from it (then mounted after it, as on the replica running
//!   it), and a manifest PUT that reaches another replica waits for it as the owner would.
//!
//! The store holds replica ids, their advertised URLs, repository names, digests, sizes and
//! credential fingerprints; no secret.

mod forward;
mod jobs;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::oci::RepoName;
use crate::state::StateStore;

pub use forward::Routed;
pub use jobs::Offer;

/// How long a replica's registration lives without renewal, and how often it is renewed (a
/// store that restarted empty has every live replica back within one beat).
const ALIVE_TTL: Duration = Duration::from_secs(5);
const HEARTBEAT: Duration = Duration::from_secs(1);
/// How long a request for a session waits for its replica's registration to (re)appear.
const FIND_WAIT: Duration = Duration::from_millis(2500);
/// Marks a request one replica sent another (never forwarded again).
pub const FORWARDED: &str = "x-tcr-adapter-forwarded";

pub struct Fleet {
    /// This replica's id (12 hex digits, new at every start).
    pub id: String,
    store: StateStore,
    http: reqwest::Client,
    heartbeat: tokio::task::JoinHandle<()>,
    forwards: prometheus::IntCounterVec,
    members: Arc<RwLock<Members>>,
    by_repository: bool,
}

impl Drop for Fleet {
    fn drop(&mut self) {
        self.heartbeat.abort();
    }
}

/// The replicas that beat lately, as this one last read them.
#[derive(Default)]
struct Members {
    /// (id, address), in the store's order.
    live: Vec<(String, String)>,
    /// Replicas a forward could not reach, left out until then.
    unreachable: HashMap<String, tokio::time::Instant>,
}

/// Rendezvous weight of `replica` for `repo`.
fn weight(replica: &str, repo: &str) -> [u8; 32] {
    let mut m = Vec::with_capacity(replica.len() + repo.len() + 1);
    m.extend_from_slice(replica.as_bytes());
    m.push(0);
    m.extend_from_slice(repo.as_bytes());
    openssl::sha::sha256(&m)
}

impl Fleet {
    /// The fleet this replica joins: registered at `advertise` (renewed in the background).
    /// `by_repository`: requests are served by their repository's owner.
    pub fn join(
        store: StateStore,
        advertise: &str,
        by_repository: bool,
        registry: &prometheus::Registry,
    ) -> Fleet {
        let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_string();
        let members = Arc::new(RwLock::new(Members::default()));
        let heartbeat = {
            let key = store.key(&["fleet", "replica", &id]);
            let set = store.key(&["fleet", "members"]);
            let member = format!("{id} {advertise}");
            let (store, url, members) = (store.clone(), advertise.to_string(), members.clone());
            tokio::spawn(async move {
                loop {
                    let _ = store.set(&key, url.as_bytes(), ALIVE_TTL).await;
                    let live = store.beat(&set, &member, store.now_ms(), ALIVE_TTL).await;
                    let live: Vec<(String, String)> = live
                        .unwrap_or_default()
                        .iter()
                        .filter_map(|m| m.split_once(' '))
                        .filter(|(id, url)| id.len() == 12 && url.starts_with("http"))
                        .map(|(id, url)| (id.to_string(), url.to_string()))
                        .collect();
                    if let Ok(mut m) = members.write() {
                        m.live = live;
                        let now = tokio::time::Instant::now();
                        m.unreachable.retain(|_, until| *until > now);
                    }
                    tokio::time::sleep(HEARTBEAT).await;
                }
            })
        };
        let forwards = prometheus::IntCounterVec::new(
            prometheus::Opts::new(
                "tcr_adapter_fleet_forwards_total",
                "Requests streamed to another replica (its repository's owner, or the holder of a pipelined upload session), by result: forwarded, gone (the session's replica is not registered any more), failed (it did not answer)",
            ),
            &["result"],
        )
        .expect("valid metric");
        for r in ["forwarded", "gone", "failed"] {
            forwards.with_label_values(&[r]);
        }
        let _ = registry.register(Box::new(forwards.clone()));
        Fleet {
            id,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .connect_timeout(Duration::from_secs(2))
                .build()
                .expect("HTTP client"),
            store,
            heartbeat,
            forwards,
            members,
            by_repository,
        }
    }

    /// The replica that holds session `id`, when it is another one.
    pub fn elsewhere<'a>(&self, id: &'a str) -> Option<&'a str> {
        let owner = id.strip_prefix("p.")?.split('.').next()?;
        (owner.len() == 12 && owner != self.id).then_some(owner)
    }

    /// The owner of `repo` (id, address) when it is another live replica; `None`: this one
    /// serves it (it owns it, forwarding by repository is off, or no other replica is known).
    pub fn owner_of(&self, repo: &RepoName) -> Option<(String, String)> {
        if !self.by_repository {
            return None;
        }
        let m = self.members.read().ok()?;
        let now = tokio::time::Instant::now();
        let (id, url) = m
            .live
            .iter()
            .filter(|(id, _)| *id == self.id || m.unreachable.get(id).is_none_or(|t| *t <= now))
            .max_by_key(|(id, _)| weight(id, repo.as_str()))?;
        (*id != self.id).then(|| (id.clone(), url.clone()))
    }

    /// Leave `replica` out of the hash until its registration would have expired.
    fn unreachable(&self, replica: &str) {
        if let Ok(mut m) = self.members.write() {
            let until = tokio::time::Instant::now() + ALIVE_TTL;
            m.unreachable.insert(replica.to_string(), until);
        }
    }

    async fn address_of(&self, replica: &str) -> Option<String> {
        let key = self.store.key(&["fleet", "replica", replica]);
        let raw = self.store.get(&key).await.ok()??;
        String::from_utf8(raw).ok()
    }

    /// [`Self::address_of`], waiting a little for a registration that is not there (yet):
    /// a store that came back empty is refilled by the next heartbeat.
    async fn find(&self, replica: &str) -> Option<String> {
        let started = tokio::time::Instant::now();
        loop {
            if let Some(a) = self.address_of(replica).await {
                return Some(a);
            }
            if started.elapsed() >= FIND_WAIT {
                return None;
            }
            tokio::time::sleep(HEARTBEAT / 4).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendezvous_spreads_repositories_and_moves_only_a_lost_replicas_share() {
        let ids = ["aaaaaaaaaaaa", "bbbbbbbbbbbb", "cccccccccccc"];
        let pick = |live: &[&str], repo: &str| -> String {
            live.iter()
                .max_by_key(|id| weight(id, repo))
                .unwrap()
                .to_string()
        };
        let repos: Vec<String> = (0..300).map(|i| format!("team/app{i}")).collect();
        let mut per = HashMap::new();
        for r in &repos {
            *per.entry(pick(&ids, r)).or_insert(0) += 1;
        }
        assert_eq!(per.len(), 3, "{per:?}");
        assert!(per.values().all(|n| *n > 60), "{per:?}");
        // Without the third replica, only its repositories move.
        for r in &repos {
            let before = pick(&ids, r);
            let after = pick(&ids[..2], r);
            if before != ids[2] {
                assert_eq!(before, after, "{r}");
            }
        }
    }
}
