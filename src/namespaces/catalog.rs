//! `/v2/_catalog` answered from `DescribeRepositories`, and tag deletion through `DeleteImage`
//! (TCR's data plane refuses `DELETE /v2/<name>/manifests/<tag>`; Harbor's own TCR provider
//! deletes through the API as well).
//!
//! `DescribeRepositories` is paged by the one pager ([`crate::tencentcloud::pager`]: it tells
//! from the answers whether `Offset` is a page number or an item offset). The full list is
//! fetched on the first catalog page and reused (per SecretId, briefly) for the pages that
//! follow, so a paginating client costs one listing, not one per page. Replicas that share a
//! store (`[state] redis_url`) share the listing too (`catalog:<fingerprint of the keys>`:
//! repository names, no secret), so the next page may reach any replica; a store that does not
//! answer leaves each replica its own.

use std::collections::BTreeSet;
use std::sync::Arc;

use dashmap::DashMap;

use super::{api_error_to_oci, NamespaceProvisioner};
use crate::oci::{ErrorCode, OciError, RepoName};
use crate::state::StateStore;
use crate::tencentcloud::pager::{full_name, PAGE_LIMIT};
use crate::tencentcloud::{ApiCredential, ApiError, TcrApiClient};

/// How long a listing is reused for the following catalog pages, milliseconds.
const LISTING_TTL_MS: i64 = 30_000;
/// Largest `n` honoured.
pub const MAX_N: usize = 10_000;

/// One page of `/v2/_catalog`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogPage {
    /// Client names (rename map applied), sorted.
    pub repositories: Vec<String>,
    /// Relative target of the `Link: <…>; rel="next"` header: `/v2/_catalog?last=..&n=..`.
    pub next: Option<String>,
}

/// Listings by SecretId: (expiry ms, sorted client names); on the replicas' store as well when
/// they share one.
#[derive(Default)]
pub(super) struct CatalogCache {
    local: DashMap<String, (i64, Arc<Vec<String>>)>,
    shared: std::sync::OnceLock<StateStore>,
}

/// The store key of `keys`' listing: a fingerprint of the keys, never the keys.
fn shared_key(store: &StateStore, keys: &ApiCredential) -> String {
    let mut material = b"tcr-adapter catalog v1\0".to_vec();
    material.extend_from_slice(keys.secret_id.as_bytes());
    material.push(0);
    material.extend_from_slice(keys.secret_key.expose().as_bytes());
    let d = crate::oci::Digest::sha256_of(&material);
    store.key(&["catalog", &d.encoded()[..32]])
}

impl CatalogCache {
    /// The listing of `keys` while it is fresh: this replica's, else the store's.
    async fn get(&self, keys: &ApiCredential, now_ms: i64) -> Option<Arc<Vec<String>>> {
        let local = self
            .local
            .get(&keys.secret_id)
            .filter(|e| e.0 > now_ms)
            .map(|e| e.1.clone());
        if local.is_some() {
            return local;
        }
        let store = self.shared.get()?;
        let raw = store.get(&shared_key(store, keys)).await.ok()??;
        let text = String::from_utf8(raw).ok()?;
        let names: Vec<String> = text
            .split('\n')
            .filter(|n| !n.is_empty())
            .map(str::to_string)
            .collect();
        Some(Arc::new(names))
    }

    async fn put(&self, keys: &ApiCredential, now_ms: i64, all: Arc<Vec<String>>) {
        self.local.insert(
            keys.secret_id.clone(),
            (now_ms + LISTING_TTL_MS, all.clone()),
        );
        if let Some(store) = self.shared.get() {
            let ttl = std::time::Duration::from_millis(LISTING_TTL_MS as u64);
            let _ = store
                .set(&shared_key(store, keys), all.join("\n").as_bytes(), ttl)
                .await;
        }
    }

    async fn forget(&self, keys: &ApiCredential) {
        self.local.remove(&keys.secret_id);
        if let Some(store) = self.shared.get() {
            let _ = store.delete(&shared_key(store, keys)).await;
        }
    }
}

/// Every repository visible to `keys` (upstream names, sorted), through the one pager.
pub async fn list_all_repositories(
    client: &TcrApiClient,
    keys: &ApiCredential,
    registry_id: &str,
) -> Result<Vec<String>, ApiError> {
    let listed = client
        .all_repositories(keys, registry_id, None, PAGE_LIMIT)
        .await?;
    let names: BTreeSet<String> = listed.items.iter().map(full_name).collect();
    Ok(names.into_iter().collect())
}

/// The page of `all` (sorted) after `last`, at most `n` names, with the next link.
pub fn paginate(all: &[String], n: Option<usize>, last: Option<&str>) -> CatalogPage {
    let start = match last {
        Some(l) => all.partition_point(|x| x.as_str() <= l),
        None => 0,
    };
    let rest = &all[start..];
    let n = n.map(|n| n.min(MAX_N));
    let take = n.unwrap_or(rest.len()).min(rest.len());
    let repositories = rest[..take].to_vec();
    let next = match (n, repositories.last()) {
        (Some(n), Some(l)) if n > 0 && take < rest.len() => {
            Some(format!("/v2/_catalog?last={l}&n={n}"))
        }
        _ => None,
    };
    CatalogPage { repositories, next }
}

impl NamespaceProvisioner {
    /// Share catalog listings through `store` (replicas sharing one; else nothing changes).
    pub fn share_catalogs(&self, store: &StateStore) {
        if store.is_shared() {
            let _ = self.catalogs.shared.set(store.clone());
        }
    }

    fn cloud_or_unsupported(&self, what: &str) -> Result<&super::Cloud, OciError> {
        self.cloud.as_ref().ok_or_else(|| {
            OciError::new(
                ErrorCode::Unsupported,
                format!("{what} needs the TencentCloud API, which is not configured"),
            )
        })
    }

    /// One page of `/v2/_catalog` for `keys`: client names, sorted, after `last`, at most `n`.
    pub async fn catalog(
        &self,
        keys: &ApiCredential,
        n: Option<usize>,
        last: Option<&str>,
    ) -> Result<CatalogPage, OciError> {
        let cloud = self.cloud_or_unsupported("listing the catalog")?;
        if n == Some(0) {
            return Ok(CatalogPage {
                repositories: Vec::new(),
                next: None,
            });
        }
        let now = self.clock.now_ms();
        let cached = match last {
            Some(_) => self.catalogs.get(keys, now).await,
            None => None,
        };
        let all = match cached {
            Some(all) => all,
            None => {
                let inst = self.instance(cloud, keys).await?;
                let upstream = list_all_repositories(&inst.client, keys, &inst.registry_id)
                    .await
                    .map_err(|e| {
                        api_error_to_oci(
                            &e,
                            "DescribeRepositories",
                            &keys.secret_id,
                            "listing repositories",
                        )
                    })?;
                let mut names: Vec<String> = upstream
                    .iter()
                    .filter_map(|s| RepoName::parse(s).ok())
                    .filter(|r| self.policy.is_visible(r))
                    .map(|r| self.policy.to_client(&r).as_str().to_string())
                    .collect();
                names.sort();
                names.dedup();
                let all = Arc::new(names);
                self.catalogs.put(keys, now, all.clone()).await;
                all
            }
        };
        Ok(paginate(&all, n, last))
    }

    /// Delete the tag `tag` of the upstream repository `repo_upstream` through `DeleteImage`.
    pub async fn delete_tag(
        &self,
        keys: &ApiCredential,
        repo_upstream: &RepoName,
        tag: &str,
    ) -> Result<(), OciError> {
        let cloud = self.cloud_or_unsupported("deleting a tag")?;
        let (ns, repo) = (repo_upstream.namespace(), repo_upstream.repository());
        if repo.is_empty() {
            return Err(OciError::new(
                ErrorCode::NameInvalid,
                format!("{repo_upstream}: TCR repositories are <namespace>/<repository>"),
            ));
        }
        let inst = self.instance(cloud, keys).await?;
        match inst
            .client
            .delete_image(keys, &inst.registry_id, ns, repo, tag)
            .await
        {
            Ok(()) => {
                tracing::info!(
                    target: "audit",
                    event = "tag_deleted",
                    repository = %repo_upstream,
                    tag,
                    secret_id = %super::secret_id_prefix(&keys.secret_id),
                    "tag deleted"
                );
                self.catalogs.forget(keys).await;
                Ok(())
            }
            Err(e) if e.is_not_found() => Err(OciError::new(
                ErrorCode::ManifestUnknown,
                format!(
                    "tag {tag:?} of {} not found",
                    self.policy.to_client(repo_upstream)
                ),
            )),
            Err(e) => Err(api_error_to_oci(
                &e,
                "DeleteImage",
                &keys.secret_id,
                &format!("deleting {repo_upstream}:{tag}"),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pagination_links() {
        let all: Vec<String> = ["a/1", "a/2", "b/1", "c/9"].map(String::from).to_vec();
        let p = paginate(&all, Some(2), None);
        assert_eq!(p.repositories, ["a/1", "a/2"]);
        assert_eq!(p.next.as_deref(), Some("/v2/_catalog?last=a/2&n=2"));
        let p = paginate(&all, Some(2), Some("a/2"));
        assert_eq!(p.repositories, ["b/1", "c/9"]);
        assert_eq!(p.next, None);
        let p = paginate(&all, None, Some("a/10"));
        assert_eq!(p.repositories, ["a/2", "b/1", "c/9"]);
        assert_eq!(paginate(&all, Some(10), None).next, None);
    }
}
