//! Read-only listings through the cloud API for the Harbor API persona: namespaces
//! (`DescribeNamespaces`), the repositories of one namespace (`DescribeRepositories`) and the
//! images of one repository (`DescribeImages`), every page through the one pager
//! ([`crate::tencentcloud::pager`]). Names stay upstream names here; callers apply the rename map.

use super::{api_error_to_oci, NamespaceProvisioner};
use crate::oci::{ErrorCode, OciError, RepoName};
use crate::tencentcloud::models::{TcrImageInfo, TcrNamespaceInfo, TcrRepositoryInfo};
use crate::tencentcloud::pager::PAGE_LIMIT;
use crate::tencentcloud::ApiCredential;

impl NamespaceProvisioner {
    /// The keys used when the caller presented none (`tcr.secret_id`/`secret_key`), when the
    /// cloud API is configured.
    pub fn fallback_keys(&self) -> Option<&ApiCredential> {
        self.cloud.as_ref().and_then(|c| c.keys.as_ref())
    }

    /// Every namespace of the instance (upstream names), or those whose name contains
    /// `name_filter` (TCR's filter may match a part of the name: callers compare exactly).
    pub async fn list_namespaces(
        &self,
        keys: &ApiCredential,
        name_filter: Option<&str>,
    ) -> Result<Vec<TcrNamespaceInfo>, OciError> {
        let cloud = self.listing_cloud()?;
        let inst = self.instance(cloud, keys).await?;
        let mut all = inst
            .client
            .all_namespaces(keys, &inst.registry_id, name_filter, PAGE_LIMIT)
            .await
            .map_err(|e| {
                api_error_to_oci(
                    &e,
                    "DescribeNamespaces",
                    &keys.secret_id,
                    "listing namespaces",
                )
            })?
            .items;
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
        let mut all = inst
            .client
            .all_repositories(keys, &inst.registry_id, Some(ns), PAGE_LIMIT)
            .await
            .map_err(|e| {
                api_error_to_oci(
                    &e,
                    "DescribeRepositories",
                    &keys.secret_id,
                    &format!("listing the repositories of {ns:?}"),
                )
            })?
            .items;
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
        match inst
            .client
            .all_images(
                keys,
                &inst.registry_id,
                repo.namespace(),
                repo.repository(),
                PAGE_LIMIT,
            )
            .await
        {
            Ok(listed) => Ok(listed.items),
            Err(e) if e.is_not_found() => Err(OciError::new(
                ErrorCode::NameUnknown,
                format!("repository {} not found", self.to_client(repo)),
            )),
            Err(e) => Err(api_error_to_oci(
                &e,
                "DescribeImages",
                &keys.secret_id,
                &format!("listing the tags of {repo}"),
            )),
        }
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
