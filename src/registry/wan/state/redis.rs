//! The WAN state on the replicas' shared store (`[state] redis_url`): every replica sees where
//! blobs are, which are claimed or being uploaded (a single flight across replicas: ten jobs on
//! three replicas still upload a layer once), each caller's streak, source hint and pushes.
//!
//! Every call falls back to this process's [`LocalState`] when the store does not answer
//! ([`crate::state::Unshared`]): savings shrink to one replica's, correctness does not depend on
//! the store (the rules of SECURITY.md hold either way — TCR decides every write). What is
//! learned is also written to the local state, so a replica whose store goes away keeps what it
//! saw itself.
//!
//! Keys (under `[state] key_prefix`): `wan:blob:<digest>:repos` (ordered set: the first
//! repository learned first), `wan:blob:<digest>:size`, `wan:flight:<digest>` (a claim or an
//! upload in flight: `claim <ms> <repo>` / `upload <asked> <repo>`), `wan:claims:<repo>` (the
//! digests a repository claimed), `wan:streak:<owner>`, `wan:source:<owner>`,
//! `wan:pushed:<owner>:<namespace>`, `wan:layers:<repo>` and `wan:recent:<namespace>`
//! ([`layers`]); the channel `wan:ends` carries the digests of flights that ended (waiters on
//! every replica look again at once). Owners are credential fingerprints; nothing logs in.

mod layers;
mod wait;

use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;

use super::local::{LocalState, PUSHED_TTL};
use super::{Blob, Fut, UploadMark, Waited, WanState};
use crate::oci::{Digest, RepoName};
use crate::state::StateStore;

/// Repositories remembered per digest (as [`LocalState`]).
const REPOS_PER_DIGEST: usize = 4;
/// How long the store remembers a blob's whereabouts after it was last learned.
const BLOB_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// How long a claim holds other HEADs back before its upload has started (as [`LocalState`]).
const CLAIM_TTL: Duration = Duration::from_secs(15);
/// An upload's mark lives this long without a refresh (a replica that died mid-upload holds
/// other jobs back at most this long); a live upload refreshes it every third of it.
const UPLOAD_TTL: Duration = Duration::from_secs(60);
/// How long a HEAD waits for an upload in flight (as [`LocalState`]).
const WAIT_FOR_UPLOAD: Duration = Duration::from_secs(120);
/// Source hints and streaks are forgotten after this long unused.
const OWNER_TTL: Duration = Duration::from_secs(3600);

/// [`RedisState::learn_shared`]: KEYS = the blob's repositories, its size, its flight; ARGV =
/// score, repository, cap, ttl ms, size (or ""), authoritative, settle ("1"/"0"), the channel
/// of flights' ends, the digest. 2: the flight is `repo`'s upload of a blob it asked about.
const LEARN: &str = "redis.call('ZADD', KEYS[1], 'NX', ARGV[1], ARGV[2]) \
    local n = redis.call('ZCARD', KEYS[1]) \
    if n > tonumber(ARGV[3]) then redis.call('ZREMRANGEBYRANK', KEYS[1], 1, n - tonumber(ARGV[3])) end \
    redis.call('PEXPIRE', KEYS[1], ARGV[4]) \
    if ARGV[5] ~= '' then \
      if ARGV[6] == '1' then redis.call('SET', KEYS[2], ARGV[5], 'PX', ARGV[4]) \
      else redis.call('SET', KEYS[2], ARGV[5], 'NX', 'PX', ARGV[4]) end \
    end \
    local f = redis.call('GET', KEYS[3]) \
    if ARGV[7] == '1' and f and string.match(f, '^claim %S+ (.*)$') == ARGV[2] then \
      redis.call('DEL', KEYS[3]) \
      redis.call('PUBLISH', ARGV[8], ARGV[9]) \
    end \
    if f == 'upload 1 ' .. ARGV[2] then return 2 end \
    return 1";

/// [`RedisState::uploading`]: KEYS = the blob's flight; ARGV = repository, ttl ms. The flight
/// becomes `upload <asked> <repo>` (asked: it was `repo`'s own claim), in one round trip; the
/// answer is `asked` (1/0).
const UPLOADING: &str = "local f = redis.call('GET', KEYS[1]) \
    local asked = 0 \
    if f and string.match(f, '^claim %S+ (.*)$') == ARGV[1] then asked = 1 end \
    redis.call('SET', KEYS[1], 'upload ' .. asked .. ' ' .. ARGV[1], 'PX', ARGV[2]) \
    return asked";

/// A flight ends: KEYS = the flight; ARGV = its value, the channel, the digest. Deleted only
/// while it still holds the value; its end is published for the waiters of every replica.
const END_FLIGHT: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then \
      redis.call('DEL', KEYS[1]) \
      redis.call('PUBLISH', ARGV[2], ARGV[3]) \
      return 1 \
    end \
    return 0";

pub struct RedisState {
    store: StateStore,
    local: Arc<LocalState>,
}

/// What `wan:flight:<digest>` says.
#[derive(Debug, Clone, PartialEq)]
enum Flight {
    Claim { at_ms: i64, repo: RepoName },
    Upload { asked: bool, repo: RepoName },
}

impl Flight {
    fn encode(&self) -> String {
        match self {
            Flight::Claim { at_ms, repo } => format!("claim {at_ms} {repo}"),
            Flight::Upload { asked, repo } => format!("upload {} {repo}", u8::from(*asked)),
        }
    }

    fn decode(raw: &[u8]) -> Option<Flight> {
        let text = std::str::from_utf8(raw).ok()?;
        let mut parts = text.splitn(3, ' ');
        let (kind, n, repo) = (parts.next()?, parts.next()?, parts.next()?);
        let repo = RepoName::parse(repo).ok()?;
        match kind {
            "claim" => Some(Flight::Claim {
                at_ms: n.parse().ok()?,
                repo,
            }),
            "upload" => Some(Flight::Upload {
                asked: n == "1",
                repo,
            }),
            _ => None,
        }
    }

    fn repo(&self) -> &RepoName {
        match self {
            Flight::Claim { repo, .. } | Flight::Upload { repo, .. } => repo,
        }
    }
}

/// Ends an upload's mark in the store when dropped; refreshes it while alive.
struct StoreMark {
    _local: UploadMark,
    refresh: tokio::task::JoinHandle<()>,
    store: StateStore,
    key: String,
    value: String,
    /// Where the end is published, and what (the digest).
    channel: String,
    digest: String,
}

impl Drop for StoreMark {
    fn drop(&mut self) {
        self.refresh.abort();
        let (store, key, value) = (self.store.clone(), self.key.clone(), self.value.clone());
        let (channel, digest) = (self.channel.clone(), self.digest.clone());
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let args = [value.as_str(), channel.as_str(), digest.as_str()];
                let _ = store.script(END_FLIGHT, &[&key], &args).await;
            });
        }
    }
}

impl RedisState {
    pub fn new(store: StateStore, capacity: usize) -> Self {
        RedisState {
            store,
            local: Arc::new(LocalState::new(capacity)),
        }
    }

    fn key(&self, parts: &[&str]) -> String {
        let mut all = vec!["wan"];
        all.extend_from_slice(parts);
        self.store.key(&all)
    }

    fn flight_key(&self, digest: &Digest) -> String {
        self.key(&["flight", digest.as_str()])
    }

    /// The channel on which flights' ends are published (their digests).
    fn ends_channel(&self) -> String {
        self.key(&["ends"])
    }

    async fn flight(&self, digest: &Digest) -> Result<Option<Flight>, ()> {
        match self.store.get(&self.flight_key(digest)).await {
            Ok(v) => Ok(v.as_deref().and_then(Flight::decode)),
            Err(_) => Err(()),
        }
    }

    /// `repo` holds `digest` on the store — the repository added to the blob's set, its size
    /// set (or kept, when not `authoritative`), and with `settle` a claim `repo` made on it
    /// freed — in one round trip ([`LEARN`]). `false`: the store did not answer.
    async fn learn_shared(
        &self,
        digest: &Digest,
        repo: &RepoName,
        size: Option<u64>,
        (authoritative, settle): (bool, bool),
    ) -> Result<i64, ()> {
        let repos = self.key(&["blob", digest.as_str(), "repos"]);
        let size_key = self.key(&["blob", digest.as_str(), "size"]);
        let flight = self.flight_key(digest);
        let (score, cap, ttl) = (
            self.store.now_ms().to_string(),
            REPOS_PER_DIGEST.to_string(),
            BLOB_TTL.as_millis().to_string(),
        );
        let size = size.map(|s| s.to_string()).unwrap_or_default();
        let flags = [authoritative, settle].map(|b| if b { "1" } else { "0" });
        let channel = self.ends_channel();
        let args = [&score, repo.as_str(), &cap, &ttl, &size, flags[0], flags[1]];
        let args: Vec<&str> = args
            .into_iter()
            .chain([channel.as_str(), digest.as_str()])
            .collect();
        self.store
            .script(LEARN, &[&repos, &size_key, &flight], &args)
            .await
            .map_err(|_| ())
    }

    /// Free `repo`'s claim on `digest`, if it holds one.
    async fn settle_shared(&self, digest: &Digest, repo: &RepoName) -> bool {
        match self.flight(digest).await {
            Ok(Some(f @ Flight::Claim { .. })) if f.repo() == repo => {
                let (value, channel) = (f.encode(), self.ends_channel());
                let args = [value.as_str(), channel.as_str(), digest.as_str()];
                let _ = self
                    .store
                    .script(END_FLIGHT, &[&self.flight_key(digest)], &args)
                    .await;
                true
            }
            Ok(_) => true,
            Err(()) => false,
        }
    }

    async fn release_shared(&self, repo: &RepoName) -> bool {
        let key = self.key(&["claims", repo.as_str()]);
        let Ok(digests) = self.store.set_members(&key).await else {
            return false;
        };
        for d in digests.iter().filter_map(|d| Digest::parse(d).ok()) {
            self.settle_shared(&d, repo).await;
        }
        let _ = self.store.delete(&key).await;
        true
    }
}

impl WanState for RedisState {
    fn learn<'a>(
        &'a self,
        digest: &'a Digest,
        repo: &'a RepoName,
        size: Option<u64>,
        authoritative: bool,
    ) -> Fut<'a, ()> {
        async move {
            self.local.learn(digest, repo, size, authoritative).await;
            let flags = (authoritative, authoritative);
            let _ = self.learn_shared(digest, repo, size, flags).await;
        }
        .boxed()
    }

    fn forget<'a>(&'a self, digest: &'a Digest, repo: &'a RepoName) -> Fut<'a, ()> {
        async move {
            self.local.forget(digest, repo).await;
            let key = self.key(&["blob", digest.as_str(), "repos"]);
            let _ = self.store.set_remove(&key, repo.as_str()).await;
        }
        .boxed()
    }

    fn lookup<'a>(&'a self, digest: &'a Digest) -> Fut<'a, Blob> {
        async move {
            let repos_key = self.key(&["blob", digest.as_str(), "repos"]);
            let size_key = self.key(&["blob", digest.as_str(), "size"]);
            let flight_key = self.flight_key(digest);
            // One round trip: the repositories, the size and the flight.
            let read = self
                .store
                .members_and_values(&repos_key, &[&size_key, &flight_key])
                .await;
            let Ok((names, values)) = read else {
                return self.local.lookup(digest).await;
            };
            let mut values = values.into_iter();
            let size = values
                .next()
                .flatten()
                .and_then(|v| std::str::from_utf8(&v).ok()?.parse().ok());
            let flight = values.next().flatten();
            let into = flight.as_deref().and_then(Flight::decode).map(|f| match f {
                Flight::Claim { repo, .. } | Flight::Upload { repo, .. } => repo,
            });
            Blob {
                size,
                repos: names
                    .iter()
                    .filter_map(|n| RepoName::parse(n).ok())
                    .collect(),
                in_flight: into.is_some(),
                into,
            }
        }
        .boxed()
    }

    fn claim<'a>(&'a self, digest: &'a Digest, repo: &'a RepoName) -> Fut<'a, bool> {
        async move {
            let flight = Flight::Claim {
                at_ms: self.store.now_ms(),
                repo: repo.clone(),
            };
            let key = self.flight_key(digest);
            let claimed = self
                .store
                .set_if_absent(&key, flight.encode().as_bytes(), CLAIM_TTL)
                .await;
            let won = match claimed {
                Ok(true) => true,
                // Someone was first: ours only if it is this repository's own claim.
                Ok(false) => matches!(
                    self.flight(digest).await,
                    Ok(Some(Flight::Claim { repo: r, .. })) if &r == repo
                ),
                Err(_) => return self.local.claim(digest, repo).await,
            };
            if won {
                let claims = self.key(&["claims", repo.as_str()]);
                let _ = self
                    .store
                    .set_add(
                        &claims,
                        digest.as_str(),
                        self.store.now_ms(),
                        4096,
                        CLAIM_TTL * 2,
                    )
                    .await;
            }
            won
        }
        .boxed()
    }

    fn settle<'a>(&'a self, digest: &'a Digest, repo: &'a RepoName) -> Fut<'a, ()> {
        async move {
            self.local.settle(digest, repo).await;
            self.settle_shared(digest, repo).await;
        }
        .boxed()
    }

    fn release_claims_of<'a>(&'a self, repo: &'a RepoName) -> Fut<'a, ()> {
        async move {
            self.local.release_claims_of(repo).await;
            self.release_shared(repo).await;
        }
        .boxed()
    }

    fn uploading<'a>(&'a self, digest: &'a Digest, repo: &'a RepoName) -> Fut<'a, UploadMark> {
        async move {
            let local = self.local.uploading(digest, repo).await;
            let key = self.flight_key(digest);
            let ttl = UPLOAD_TTL.as_millis().to_string();
            let asked = match self
                .store
                .script(UPLOADING, &[&key], &[repo.as_str(), &ttl])
                .await
            {
                Ok(n) => n == 1,
                Err(_) => return local,
            };
            let value = Flight::Upload {
                asked,
                repo: repo.clone(),
            }
            .encode();
            let refresh = {
                let (store, key, value) = (self.store.clone(), key.clone(), value.clone());
                tokio::spawn(async move {
                    loop {
                        tokio::time::sleep(UPLOAD_TTL / 3).await;
                        let _ = store.set(&key, value.as_bytes(), UPLOAD_TTL).await;
                    }
                })
            };
            UploadMark::new(StoreMark {
                _local: local,
                refresh,
                store: self.store.clone(),
                key,
                value,
                channel: self.ends_channel(),
                digest: digest.as_str().to_string(),
            })
        }
        .boxed()
    }

    fn uploaded<'a>(&'a self, digest: &'a Digest, repo: &'a RepoName) -> Fut<'a, ()> {
        async move {
            // Learned, and whether the flight is this repository's upload of a blob it asked
            // about, in one round trip.
            let asked = match self.learn_shared(digest, repo, None, (true, true)).await {
                Ok(n) => n == 2,
                Err(()) => return self.local.uploaded(digest, repo).await,
            };
            self.local.learn(digest, repo, None, true).await;
            if !asked {
                self.local.release_claims_of(repo).await;
                self.release_shared(repo).await;
            }
        }
        .boxed()
    }

    fn wait_for_upload<'a>(&'a self, digest: &'a Digest, target: &'a RepoName) -> Fut<'a, Waited> {
        async move {
            match self.wait_shared(digest, target).await {
                Ok(w) => w,
                Err(()) => self.local.wait_for_upload(digest, target).await,
            }
        }
        .boxed()
    }

    fn told<'a>(&'a self, owner: &'a str, present: bool) -> Fut<'a, ()> {
        async move {
            let key = self.key(&["streak", owner]);
            let shared = match present {
                true => self.store.delete(&key).await,
                false => self.store.incr(&key, OWNER_TTL).await.map(|_| ()),
            };
            if shared.is_err() {
                self.local.told(owner, present).await;
            }
        }
        .boxed()
    }

    fn expects_absent<'a>(&'a self, owner: &'a str, streak: u32) -> Fut<'a, bool> {
        async move {
            match self.store.get(&self.key(&["streak", owner])).await {
                Ok(v) => v
                    .and_then(|v| std::str::from_utf8(&v).ok()?.parse::<u32>().ok())
                    .is_some_and(|n| n >= streak),
                Err(_) => self.local.expects_absent(owner, streak).await,
            }
        }
        .boxed()
    }

    fn note_source<'a>(&'a self, owner: &'a str, source: &'a RepoName) -> Fut<'a, ()> {
        async move {
            self.local.note_source(owner, source).await;
            let key = self.key(&["source", owner]);
            let _ = self
                .store
                .set(&key, source.as_str().as_bytes(), OWNER_TTL)
                .await;
        }
        .boxed()
    }

    fn source_hint<'a>(&'a self, owner: &'a str) -> Fut<'a, Option<RepoName>> {
        async move {
            // Asked for every request's token scopes: this replica's own latest hint needs no
            // round trip (a hint only widens a token's scope; any recent one serves).
            if let Some(hint) = self.local.source_hint(owner).await {
                return Some(hint);
            }
            match self.store.get(&self.key(&["source", owner])).await {
                Ok(v) => v.and_then(|v| RepoName::parse(std::str::from_utf8(&v).ok()?).ok()),
                Err(_) => self.local.source_hint(owner).await,
            }
        }
        .boxed()
    }

    fn note_layers<'a>(&'a self, repo: &'a RepoName, layers: &'a [Digest]) -> Fut<'a, ()> {
        self.note_layers_shared(repo, layers).boxed()
    }

    fn layers_of<'a>(&'a self, repo: &'a RepoName) -> Fut<'a, Vec<Digest>> {
        self.layers_of_shared(repo).boxed()
    }

    fn recent_layers<'a>(&'a self, namespace: &'a str) -> Fut<'a, Vec<Vec<Digest>>> {
        self.recent_layers_shared(namespace).boxed()
    }

    fn pushed<'a>(&'a self, owner: &'a str, namespace: &'a str) -> Fut<'a, ()> {
        async move {
            // Every write TCR accepts says so: the store hears it when this replica had not
            // (yet, or any more) — one round trip per caller and namespace, not per write.
            if self.local.has_pushed(owner, namespace).await {
                return;
            }
            self.local.pushed(owner, namespace).await;
            let key = self.key(&["pushed", owner, namespace]);
            let _ = self.store.set(&key, b"1", PUSHED_TTL).await;
        }
        .boxed()
    }

    fn has_pushed<'a>(&'a self, owner: &'a str, namespace: &'a str) -> Fut<'a, bool> {
        async move {
            // What this replica saw itself needs no round trip.
            if self.local.has_pushed(owner, namespace).await {
                return true;
            }
            matches!(
                self.store
                    .get(&self.key(&["pushed", owner, namespace]))
                    .await,
                Ok(Some(_))
            )
        }
        .boxed()
    }
}
