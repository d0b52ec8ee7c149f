//! Read-only listings through the cloud API for the Harbor API persona: namespaces
//! (`DescribeNamespaces`, all pages), the repositories of one namespace (`DescribeRepositories`)
//! and the images of one repository (`DescribeImages`). Names stay upstream names here; callers
//! apply the rename map.

use super::{api_error_to_oci, NamespaceProvisioner};
use crate::oci::{ErrorCode, OciError, RepoName};
use crate::tencentcloud::models::{TcrImageInfo, TcrNamespaceInfo, TcrRepositoryInfo};
use crate::tencentcloud::ApiCredential;

/// Items per cloud API page (the API's maximum).
const PAGE: i64 = 100;
/// Pages read at most for one listing.
const MAX_PAGES: i64 = 100;

impl NamespaceProvisioner {
    /// The keys used when the caller presented none (`tcr.secret_id`/`secret_key`), when the
    /// cloud API is configured.
    pub fn fallback_keys(&self) -> Option<&ApiCredential> {
        self.cloud.as_ref().and_then(|c| c.keys.as_ref())
    }

    /// Every namespace of the instance (upstream names), or those whose name contains
    /// `name_filter` (TCR matches substrings).
    pub async fn list_namespaces(
        &self,
        keys: &ApiCredential,
        name_filter: Option<&str>,
    ) -> Result<Vec<TcrNamespaceInfo>, OciError> {
        let cloud = self.listing_cloud()?;
        let inst = self.instance(cloud, keys).await?;
        let mut all: Vec<TcrNamespaceInfo> = Vec::new();
        for page in 0..MAX_PAGES {
            let r = inst
                .client
                .describe_namespaces(keys, &inst.registry_id, name_filter, PAGE, page * PAGE)
                .await;
            let r = match r {
                Ok(r) => r,
                Err(e) if e.code() == Some("ResourceNotFound") => break,
                Err(e) => {
                    return Err(api_error_to_oci(
                        &e,
                        "DescribeNamespaces",
                        &keys.secret_id,
                        "listing namespaces",
                    ))
                }
            };
            let got = r.namespace_list.len() as i64;
            let before = all.len();
            for n in r.namespace_list {
                if !all.iter().any(|m| m.name == n.name) {
                    all.push(n);
                }
            }
            if got < PAGE || all.len() == before || all.len() as i64 >= r.total_count {
                break;
            }
        }
        all.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(all)
    }

    /// The repositories of the upstream namespace `ns`.
    pub async fn list_repositories_in(
        &self,
        keys: &ApiCredential,
        ns: &str,
    ) -> Result<Vec<TcrRepositoryInfo>, OciError> {
        let cloud = self.listing_cloud()?;
        let inst = self.instance(cloud, keys).await?;
        let mut all: Vec<TcrRepositoryInfo> = Vec::new();
        for page in 0..MAX_PAGES {
            let r = inst
                .client
                .describe_repositories(keys, &inst.registry_id, Some(ns), None, PAGE, page * PAGE)
                .await;
            let r = match r {
                Ok(r) => r,
                Err(e) if e.is_not_found() => break,
                Err(e) => {
                    return Err(api_error_to_oci(
                        &e,
                        "DescribeRepositories",
                        &keys.secret_id,
                        &format!("listing the repositories of {ns:?}"),
                    ))
                }
            };
            let got = r.repository_list.len() as i64;
            let before = all.len();
            for repo in r.repository_list {
                if repo.namespace == ns && !all.iter().any(|m| m.name == repo.name) {
                    all.push(repo);
                }
            }
            if got < PAGE || all.len() == before || all.len() as i64 >= r.total_count {
                break;
            }
        }
        all.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(all)
    }

    /// The tagged images of the upstream repository `repo`.
    pub async fn list_images(
        &self,
        keys: &ApiCredential,
        repo: &RepoName,
    ) -> Result<Vec<TcrImageInfo>, OciError> {
        let cloud = self.listing_cloud()?;
        let inst = self.instance(cloud, keys).await?;
        let mut all: Vec<TcrImageInfo> = Vec::new();
        for page in 0..MAX_PAGES {
            let r = inst
                .client
                .describe_images(
                    keys,
                    &inst.registry_id,
                    repo.namespace(),
                    repo.repository(),
                    PAGE,
                    page * PAGE,
                )
                .await;
            let r = match r {
                Ok(r) => r,
                Err(e) if e.is_not_found() => {
                    return Err(OciError::new(
                        ErrorCode::NameUnknown,
                        format!("repository {} not found", self.to_client(repo)),
                    ))
                }
                Err(e) => {
                    return Err(api_error_to_oci(
                        &e,
                        "DescribeImages",
                        &keys.secret_id,
                        &format!("listing the tags of {repo}"),
                    ))
                }
            };
            let got = r.image_info_list.len() as i64;
            let before = all.len();
            for i in r.image_info_list {
                if !all.iter().any(|m| m.image_version == i.image_version) {
                    all.push(i);
                }
            }
            if got < PAGE || all.len() == before || all.len() as i64 >= r.total_count {
                break;
            }
        }
        Ok(all)
    }

    fn listing_cloud(&self) -> Result<&super::Cloud, OciError> {
        self.cloud.as_ref().ok_or_else(|| {
            OciError::new(
                ErrorCode::Unsupported,
                "listing needs the TencentCloud API, which is not configured (tcr.api_endpoint)",
            )
        })
    }
}
