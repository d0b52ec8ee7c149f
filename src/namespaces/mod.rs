//! Ensure-namespace: the Harbor-project → TCR-namespace rename map, allow/deny policy, TCR's
//! naming rule, and creating a missing namespace on the first write (single flight, cached).
//!
//! INTERFACE STUB: the signatures are the contract the registry front codes against; the policy
//! and the cloud calls are filled in by the namespaces work.

use crate::config::NamespacesConfig;
use crate::oci::{OciError, RepoName};
use crate::tencentcloud::ApiCredential;

pub struct NamespaceProvisioner {
    cfg: NamespacesConfig,
}

impl NamespaceProvisioner {
    pub fn new(cfg: &NamespacesConfig) -> Self {
        NamespaceProvisioner { cfg: cfg.clone() }
    }

    /// The name a client's repository has upstream (rename map applied to the namespace).
    pub fn to_upstream(&self, repo: &RepoName) -> RepoName {
        match self.cfg.map.get(repo.namespace()) {
            Some(ns) => repo.with_namespace(ns),
            None => repo.clone(),
        }
    }

    /// The name an upstream repository has for clients (reverse of [`Self::to_upstream`]).
    pub fn to_client(&self, repo: &RepoName) -> RepoName {
        match self
            .cfg
            .map
            .iter()
            .find(|(_, v)| v.as_str() == repo.namespace())
        {
            Some((k, _)) => repo.with_namespace(k),
            None => repo.clone(),
        }
    }

    /// Make sure the upstream namespace exists before a write into it. `keys` are the caller's
    /// own API keys when it presented some.
    pub async fn ensure(
        &self,
        _upstream_namespace: &str,
        _keys: Option<&ApiCredential>,
    ) -> Result<(), OciError> {
        Ok(())
    }
}
