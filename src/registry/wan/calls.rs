//! The upstream calls the adapter makes on its own account rather than relaying a client's
//! request: a blob HEAD, a cross-repository mount, an upload session opened, completed or
//! cancelled. Each runs with the caller's own credential (TCR decides what it may do) and every
//! path is built by the shared builder. Used by layer dedup and by pipelined uploads.

use super::state::fingerprint;
use crate::auth::Grant;
use crate::oci::{Digest, RepoName};
use crate::registry::RegistryFront;
use crate::upstream::{BasicAuth, Forward, ForwardBody, UpstreamPath};

/// Who a request's caller is upstream: its credential (`None`: anonymous) and who that is, as
/// a fingerprint: the key the room (and every replica sharing its store) remembers it by.
#[derive(Clone)]
pub struct Caller {
    pub credential: Option<BasicAuth>,
    pub owner: Option<String>,
}

impl Caller {
    /// A caller with Tencent Cloud API keys gets a temporary registry credential of each
    /// replica's own making, renewed as it expires: its keys' fingerprint names it, the same on
    /// every replica and across renewals. Any other caller: its registry credential's.
    pub fn of(grant: &Grant) -> Caller {
        let credential = credential_of(grant);
        let owner = match &grant.identity.api_keys {
            Some(keys) => Some(fingerprint(&BasicAuth {
                username: format!("api-keys\0{}", keys.secret_id),
                password: keys.secret_key.clone(),
            })),
            None => credential.as_ref().map(fingerprint),
        };
        Caller { credential, owner }
    }
}

/// Who the calls run as, and where.
pub struct Calls<'a> {
    pub front: &'a RegistryFront,
    pub credential: Option<BasicAuth>,
    owner: Option<String>,
}

/// What TCR said to a mount.
#[derive(PartialEq, Eq)]
pub enum Mounted {
    Yes,
    /// Refused (no read permission on the source, or the blob is not there).
    No,
    /// The caller's credential may not write the target (401/403): the source is not to blame.
    Denied,
    /// No answer, or a server error.
    Error,
}

/// The caller's upstream credential (`None`: anonymous).
pub fn credential_of(grant: &Grant) -> Option<BasicAuth> {
    grant.identity.upstream.as_ref().map(|c| BasicAuth {
        username: c.username.clone(),
        password: c.password.clone(),
    })
}

fn uploads(repo: &RepoName) -> UpstreamPath {
    UpstreamPath::root()
        .lit("v2")
        .repo(repo)
        .lit("blobs")
        .lit("uploads")
}

fn push_scope(repo: &RepoName) -> String {
    format!("repository:{repo}:pull,push")
}

/// The scopes of a pusher's requests in `repo` with `hint`, the repository its mounts came
/// from lately (the same set the `/v2/` plan asks, so that one realm token serves both).
pub fn push_scopes(repo: &RepoName, hint: Option<&RepoName>) -> Vec<String> {
    let mut s = vec![push_scope(repo)];
    if let Some(h) = hint.filter(|h| *h != repo) {
        s.push(format!("repository:{h}:pull"));
    }
    s
}

impl<'a> Calls<'a> {
    pub fn new(front: &'a RegistryFront, caller: Caller) -> Calls<'a> {
        let Caller { credential, owner } = caller;
        Calls {
            front,
            credential,
            owner,
        }
    }

    /// The caller's scopes in `repo` (see [`push_scopes`]).
    async fn scopes(&self, repo: &RepoName) -> Vec<String> {
        let hint = match (&self.front.wan.index, &self.credential) {
            (Some(index), Some(_)) => index.source_hint(self.owner.as_deref()).await,
            _ => None,
        };
        push_scopes(repo, hint.as_ref())
    }

    fn forward(&self, method: reqwest::Method, path: UpstreamPath, scopes: Vec<String>) -> Forward {
        let mut headers = reqwest::header::HeaderMap::new();
        if method == reqwest::Method::POST {
            headers.insert(reqwest::header::CONTENT_LENGTH, 0.into());
        }
        Forward {
            method,
            path,
            headers,
            body: ForwardBody::Empty,
            scopes,
            credential: self.credential.clone(),
            route: "adapter_call",
        }
    }

    /// `POST /v2/<target>/blobs/uploads/?mount=<digest>&from=<source>`; a session TCR opened
    /// instead (the mount was refused) is cancelled.
    pub async fn mount(&self, target: &RepoName, source: &RepoName, digest: &Digest) -> Mounted {
        let path = uploads(target)
            .slash()
            .with_pairs([("mount", digest.as_str()), ("from", source.as_str())]);
        let scopes = push_scopes(target, Some(source));
        let mut fwd = self.forward(reqwest::Method::POST, path, scopes);
        fwd.route = "dedup_mount";
        let resp = match self.front.upstream.send(fwd).await {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(error = %e, "mount failed");
                return Mounted::Error;
            }
        };
        match resp.status().as_u16() {
            201 => Mounted::Yes,
            202 => {
                if let Some(loc) = location(&resp) {
                    self.cancel(target, &loc).await;
                }
                Mounted::No
            }
            401 | 403 => Mounted::Denied,
            s if (400..500).contains(&s) => Mounted::No,
            _ => Mounted::Error,
        }
    }

    /// `DELETE` an upload session TCR opened (best effort).
    pub async fn cancel(&self, repo: &RepoName, location: &str) {
        let Some(path) = session_path(repo, location) else {
            return;
        };
        let path = path.with_query("");
        let fwd = self.forward(reqwest::Method::DELETE, path, self.scopes(repo).await);
        let _ = self.front.upstream.send(fwd).await;
    }

    /// The blob's size: `known`, else from a HEAD in `repo`.
    pub async fn size_of(
        &self,
        repo: &RepoName,
        digest: &Digest,
        known: Option<u64>,
    ) -> Option<u64> {
        match known {
            Some(n) => Some(n),
            None => self.head_size(repo, digest).await,
        }
    }

    /// The blob's size from a HEAD in `repo` (`None`: not there, or no answer).
    pub async fn head_size(&self, repo: &RepoName, digest: &Digest) -> Option<u64> {
        let scopes = self.scopes(repo).await;
        self.head_size_as(repo, digest, scopes).await
    }

    /// The size of `digest` from a HEAD in `source`, asked while it is mounted from there into
    /// `target`: with the mount's own realm token (its scopes pull `source` too), so that the
    /// HEAD needs no token of its own.
    pub async fn source_size(
        &self,
        target: &RepoName,
        source: &RepoName,
        digest: &Digest,
    ) -> Option<u64> {
        self.head_size_as(source, digest, push_scopes(target, Some(source)))
            .await
    }

    /// Fetch now, in the background, the realm token the caller's requests in `repo` will ask
    /// for, with `source` (a mount from there) when given (see [`push_scopes`]).
    pub fn prefetch_token(&self, repo: &RepoName, source: Option<&RepoName>) {
        self.front
            .upstream
            .prefetch(self.credential.clone(), push_scopes(repo, source));
    }

    async fn head_size_as(
        &self,
        repo: &RepoName,
        digest: &Digest,
        scopes: Vec<String>,
    ) -> Option<u64> {
        let path = UpstreamPath::root()
            .lit("v2")
            .repo(repo)
            .lit("blobs")
            .push(digest.as_str())
            .ok()?;
        let mut fwd = self.forward(reqwest::Method::HEAD, path, scopes);
        fwd.route = "blob";
        let resp = self.front.upstream.send(fwd).await.ok()?;
        if resp.status().as_u16() != 200 {
            return None;
        }
        resp.headers()
            .get(reqwest::header::CONTENT_LENGTH)?
            .to_str()
            .ok()?
            .parse()
            .ok()
    }

    async fn send(&self, fwd: Forward) -> Result<reqwest::Response, String> {
        self.front
            .upstream
            .send(fwd)
            .await
            .map_err(|e| e.to_string())
    }

    /// `POST /v2/<repo>/blobs/uploads/`: a new session, as TCR's `Location`.
    pub async fn open_session(&self, repo: &RepoName) -> Result<String, String> {
        let scopes = self.scopes(repo).await;
        let fwd = self.forward(reqwest::Method::POST, uploads(repo).slash(), scopes);
        let resp = self.send(fwd).await?;
        match (resp.status().as_u16(), location(&resp)) {
            (202, Some(loc)) => Ok(loc),
            (s, _) => Err(format!("TCR answered {s} to an upload start")),
        }
    }

    /// `PUT <session>?digest=` with the whole blob (`len` bytes): the upload completed.
    pub async fn complete(
        &self,
        repo: &RepoName,
        location: &str,
        digest: &Digest,
        body: reqwest::Body,
        len: u64,
    ) -> Result<(), String> {
        let path = session_path(repo, location)
            .ok_or_else(|| "TCR's upload Location is not usable".to_string())?;
        let query = append_digest(path_query(location), digest);
        let scopes = self.scopes(repo).await;
        let mut fwd = self.forward(reqwest::Method::PUT, path.with_query(&query), scopes);
        fwd.route = "upload";
        fwd.headers
            .insert(reqwest::header::CONTENT_LENGTH, len.into());
        fwd.headers.insert(
            reqwest::header::CONTENT_TYPE,
            reqwest::header::HeaderValue::from_static("application/octet-stream"),
        );
        fwd.body = ForwardBody::Stream(body);
        let resp = self.send(fwd).await?;
        match resp.status().as_u16() {
            201 => Ok(()),
            s => Err(format!(
                "TCR answered {s} to the upload: {}",
                crate::upstream::error_message(&resp.bytes().await.unwrap_or_default())
            )),
        }
    }
}

/// TCR's `Location` header.
fn location(resp: &reqwest::Response) -> Option<String> {
    resp.headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// The upload session a `Location` names, as a path in `repo` (its last segment is the
/// session id; anything that is not a safe segment is refused).
fn session_path(repo: &RepoName, location: &str) -> Option<UpstreamPath> {
    let path = location.split(['?', '#']).next()?;
    let id = path.rsplit_once("/blobs/uploads/")?.1;
    if id.is_empty() || id.contains('/') {
        return None;
    }
    uploads(repo).push(id).ok()
}

/// The (encoded) query of a `Location`.
fn path_query(location: &str) -> &str {
    location
        .split_once('?')
        .map(|(_, q)| q.split('#').next().unwrap_or(""))
        .unwrap_or("")
}

/// `query` with `digest=<digest>` appended.
fn append_digest(query: &str, digest: &Digest) -> String {
    let pair = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("digest", digest.as_str())
        .finish();
    match query.is_empty() {
        true => pair,
        false => format!("{query}&{pair}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_location_becomes_a_safe_path_and_keeps_its_query() {
        let repo = RepoName::parse("ns/app").unwrap();
        let loc = "https://tcr.example/v2/ns/app/blobs/uploads/abc-1?_state=x%3D%3D";
        let p = session_path(&repo, loc).unwrap();
        assert_eq!(p.path(), "/v2/ns/app/blobs/uploads/abc-1");
        let d = Digest::sha256_of(b"x");
        assert_eq!(
            append_digest(path_query(loc), &d),
            format!("_state=x%3D%3D&digest=sha256%3A{}", d.encoded())
        );
        assert!(session_path(&repo, "/v2/ns/app/blobs/uploads/").is_none());
        assert!(session_path(&repo, "/v2/ns/app/blobs/uploads/..").is_none());
        assert!(session_path(&repo, "/v2/ns/app/manifests/x").is_none());
    }
}
