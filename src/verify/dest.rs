//! Reading the destination, TCR as configured: the cloud API answers what it has cheaply
//! (`DescribeRepositories` per namespace, `DescribeImages` per repository: tag → digest, through
//! the client's rate limiter and the one pager, whatever `Offset` means to the endpoint), the data plane (with a `CreateInstanceToken` credential) serves
//! manifests when a digest differs and the chart repository (`/api/chartrepo/<ns>/charts/...`).
//! Everything here is keyed by the destination's (upstream) names.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use futures_util::{stream, StreamExt, TryStreamExt};

use crate::clock::SharedClock;
use crate::config::Config;
use crate::discovery::InstanceLocator;
use crate::namespaces::NamespaceProvisioner;
use crate::tencentcloud::pager::{full_name, PAGE_LIMIT};
use crate::tencentcloud::{ApiCredential, ApiError, TcrApiClient, TokenType};

use super::client::RegistryClient;
use super::options::{Creds, Filters};
use super::source::{read_charts, Inventory, Versions};
use super::VerifyError;

/// TCR, ready to be read.
pub struct Destination {
    api: TcrApiClient,
    keys: ApiCredential,
    registry_id: String,
    /// The data plane, with an instance-token credential.
    pub registry: Arc<RegistryClient>,
}

fn api_err(action: &str, e: ApiError) -> VerifyError {
    VerifyError::Destination(format!("{action}: {e}"))
}

impl Destination {
    /// Connect to the TCR of `cfg` (its `tcr.secret_id`/`secret_key` read the cloud API).
    pub async fn connect(cfg: &Config, clock: SharedClock) -> Result<Destination, VerifyError> {
        let keys = NamespaceProvisioner::provisioner_keys(&cfg.tcr).ok_or_else(|| {
            VerifyError::Usage(
                "verify reads TCR through the cloud API: set tcr.secret_id and tcr.secret_key (or TCR_ADAPTER__TCR__SECRET_ID / __SECRET_KEY)".into(),
            )
        })?;
        let api = TcrApiClient::from_config(&cfg.tcr, clock)
            .map_err(|e| api_err("cloud API client", e))?;
        let located = InstanceLocator::new(
            api,
            &cfg.tcr.registry_url,
            &cfg.tcr.registry_id,
            &cfg.tcr.region,
        )
        .locate(&keys)
        .await
        .map_err(|e| VerifyError::Destination(format!("finding the TCR instance: {e}")))?;
        let registry_id = located.info.registry_id.clone();
        let api = located.client;
        let token = api
            .create_instance_token(&keys, &registry_id, TokenType::Temp)
            .await
            .map_err(|e| api_err("CreateInstanceToken", e))?;
        let creds = Creds {
            user: token.username.clone(),
            password: token.token.expose().to_string(),
        };
        let insecure = false;
        let registry = Arc::new(
            RegistryClient::new(&cfg.tcr.registry_url, Some(creds), insecure)?.preemptive_basic(),
        );
        Ok(Destination {
            api,
            keys,
            registry_id,
            registry,
        })
    }

    /// The repositories of one namespace (full names); a missing namespace has none.
    async fn repositories(&self, namespace: &str) -> Result<Vec<String>, VerifyError> {
        let listed = self
            .api
            .all_repositories(&self.keys, &self.registry_id, Some(namespace), PAGE_LIMIT)
            .await
            .map_err(|e| api_err("DescribeRepositories", e))?;
        Ok(listed.items.iter().map(full_name).collect())
    }

    /// tag → digest of one repository (`namespace/name`); a missing repository has none.
    async fn images(&self, full: &str) -> Result<Versions, VerifyError> {
        let (ns, repo) = full.split_once('/').unwrap_or((full, ""));
        match self
            .api
            .all_images(&self.keys, &self.registry_id, ns, repo, PAGE_LIMIT)
            .await
        {
            Ok(listed) => Ok(listed
                .items
                .into_iter()
                .map(|i| (i.image_version, i.digest))
                .collect()),
            Err(e) if e.is_not_found() => Ok(Versions::new()),
            Err(e) => Err(api_err("DescribeImages", e)),
        }
    }

    /// Read the namespaces `namespaces` (destination names): every repository in them whose
    /// source name (`to_source`) is in scope, with its tags, and the charts in scope.
    pub async fn read(
        &self,
        namespaces: &BTreeSet<String>,
        to_source: &(dyn Fn(&str) -> String + Sync),
        filters: &Filters,
        concurrency: usize,
        with_charts: bool,
    ) -> Result<Inventory, VerifyError> {
        let mut repos = Vec::new();
        for ns in namespaces {
            repos.extend(
                self.repositories(ns)
                    .await?
                    .into_iter()
                    .filter(|r| filters.repo(&to_source(r))),
            );
        }
        let images: BTreeMap<String, Versions> = stream::iter(repos)
            .map(|r| async move {
                let tags = self.images(&r).await?;
                let tags = tags.into_iter().filter(|(t, _)| filters.tag(t)).collect();
                Ok::<_, VerifyError>((r, tags))
            })
            .buffer_unordered(concurrency.max(1))
            .try_collect()
            .await?;
        let mut charts = BTreeMap::new();
        if with_charts {
            for ns in namespaces {
                let found = read_charts(&self.registry, ns, &Filters::default(), concurrency)
                    .await
                    .map_err(|e| VerifyError::Destination(format!("chart repository: {e}")))?;
                charts.extend(
                    found
                        .into_iter()
                        .filter(|(name, _)| filters.repo(&to_source(name))),
                );
            }
        }
        Ok(Inventory { images, charts })
    }
}
