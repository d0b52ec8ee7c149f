//! Ensure-namespace: the Harbor-project → TCR-namespace rename map, allow/deny policy, TCR's
//! naming rule, and creating a missing namespace on the first write (single flight per
//! namespace, positive results cached with a TTL, failures never cached), plus the catalog and
//! tag deletion answered through the cloud API ([`catalog`]).
//!
//! It decides *whether* a namespace may exist and makes sure it does; it never talks to the
//! registry data plane and never sees a request. Whose keys create a namespace ([`Acting`]): the
//! caller's own API keys; the provisioner keys for an instance token; nobody's for a `tcr$`
//! service account or an anonymous caller.
//!
//! - [`acting`]: who acts for a caller, and so whether a namespace may be created for it
//! - [`policy`]: naming rule, allow/deny patterns, rename map
//! - [`errors`]: cloud API errors → OCI errors a person can act on
//! - [`catalog`]: `/v2/_catalog` from `DescribeRepositories`, tag deletes through `DeleteImage`

mod acting;
pub mod catalog;
pub mod errors;
mod fresh;
mod listing;
mod look_ahead;
mod metrics;
pub mod policy;

use std::sync::{Arc, RwLock};

use dashmap::DashMap;

use crate::clock::{self, SharedClock};
use crate::config::{NamespacesConfig, TcrConfig};
use crate::discovery::{DiscoveryError, InstanceLocator};
use crate::oci::{ErrorCode, OciError, RepoName};
use crate::tencentcloud::{ApiCredential, TcrApiClient};

pub use crate::tencentcloud::secret_id_prefix;

pub use acting::{is_service_account, Acting};
pub use catalog::CatalogPage;
pub use errors::api_error_to_oci;
pub use metrics::Outcome;
pub use policy::{is_valid_namespace, NamespacePolicy, NAMING_RULE};

use metrics::NamespaceMetrics;

/// The instance written into: its id and a client in its region.
struct Instance {
    registry_id: String,
    client: TcrApiClient,
}

/// The cloud side of the provisioner: client, the (shared) instance locator and the
/// provisioner's own keys.
struct Cloud {
    client: TcrApiClient,
    /// The configured `RegistryId` ("" = look it up), kept to rebuild the locator.
    registry_id: String,
    keys: Option<ApiCredential>,
    locator: Arc<InstanceLocator>,
}

type CreateHook = Arc<dyn Fn(&str) + Send + Sync>;

/// Makes sure upstream namespaces exist before writes into them. Share it behind an `Arc`.
pub struct NamespaceProvisioner {
    cfg: NamespacesConfig,
    policy: NamespacePolicy,
    cloud: Option<Cloud>,
    clock: SharedClock,
    /// Namespaces known to exist → expiry (ms since the epoch).
    known: DashMap<String, i64>,
    /// Namespaces this process created → when (ms since the epoch; see [`fresh`]).
    fresh: DashMap<String, i64>,
    /// One lock per namespace being ensured: one cloud call in flight per namespace.
    inflight: DashMap<String, Arc<tokio::sync::Mutex<()>>>,
    metrics: NamespaceMetrics,
    before_create: RwLock<Option<CreateHook>>,
    catalogs: catalog::CatalogCache,
}

impl NamespaceProvisioner {
    /// A provisioner without a cloud client: the policy (naming rule, patterns, map) is enforced
    /// and namespaces are assumed to exist. Add the cloud with [`Self::with_cloud`].
    pub fn new(cfg: &NamespacesConfig) -> Self {
        NamespaceProvisioner {
            cfg: cfg.clone(),
            policy: NamespacePolicy::new(cfg),
            cloud: None,
            clock: clock::system(),
            known: DashMap::new(),
            fresh: DashMap::new(),
            inflight: DashMap::new(),
            metrics: NamespaceMetrics::new(),
            before_create: RwLock::new(None),
            catalogs: catalog::CatalogCache::default(),
        }
    }

    /// Use `client` (already set to the instance's region) against instance `registry_id`;
    /// `provisioner_keys` create namespaces for callers that presented no API keys. With an empty
    /// `registry_id`, the instance is looked up (once) from the URL given to
    /// [`Self::with_instance_lookup`]. The adapter shares one locator instead
    /// ([`Self::with_locator`]).
    pub fn with_cloud(
        mut self,
        client: TcrApiClient,
        registry_id: impl Into<String>,
        provisioner_keys: Option<ApiCredential>,
    ) -> Self {
        let registry_id = registry_id.into();
        let locator = Arc::new(InstanceLocator::new(client.clone(), "", &registry_id, ""));
        self.cloud = Some(Cloud {
            client,
            registry_id,
            keys: provisioner_keys,
            locator,
        });
        self
    }

    /// Use `client` and the shared `locator` (the instance the credential resolver uses too).
    pub fn with_locator(
        mut self,
        client: TcrApiClient,
        locator: Arc<InstanceLocator>,
        provisioner_keys: Option<ApiCredential>,
    ) -> Self {
        self.cloud = Some(Cloud {
            client,
            registry_id: String::new(),
            keys: provisioner_keys,
            locator,
        });
        self
    }

    /// Find the instance from `registry_url` (`tcr.registry_url`) with
    /// [`crate::discovery::find_instance`] on first use when no `registry_id` was configured.
    /// Call after [`Self::with_cloud`].
    pub fn with_instance_lookup(mut self, registry_url: &str) -> Self {
        if let Some(c) = self.cloud.as_mut() {
            c.locator = Arc::new(InstanceLocator::new(
                c.client.clone(),
                registry_url,
                &c.registry_id,
                "",
            ));
        }
        self
    }

    /// The instance's `RegistryId`, looked up with `keys` if needed (successes are kept).
    pub async fn registry_id(&self, keys: &ApiCredential) -> Result<String, OciError> {
        let cloud = self.cloud.as_ref().ok_or_else(|| {
            OciError::new(
                ErrorCode::Unavailable,
                "the TencentCloud API is not configured",
            )
        })?;
        Ok(self.instance(cloud, keys).await?.registry_id)
    }

    async fn instance(&self, cloud: &Cloud, keys: &ApiCredential) -> Result<Instance, OciError> {
        match cloud.locator.locate(keys).await {
            Ok(l) => Ok(Instance {
                registry_id: l.info.registry_id,
                client: l.client,
            }),
            Err(DiscoveryError::InvalidUrl(u)) if u.is_empty() => Err(OciError::new(
                ErrorCode::Unavailable,
                "the TCR instance is unknown: set tcr.registry_id and tcr.region, or \
                 tcr.registry_url so that it can be looked up",
            )),
            Err(e) => Err(e.to_oci()),
        }
    }

    /// Read time (cache expiry, audit timestamps) from `clock`.
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// The provisioner keys of the `tcr` section, when both halves are set.
    pub fn provisioner_keys(tcr: &TcrConfig) -> Option<ApiCredential> {
        (!tcr.secret_id.is_empty() && !tcr.secret_key.is_empty())
            .then(|| ApiCredential::new(tcr.secret_id.clone(), tcr.secret_key.expose()))
    }

    /// The compiled policy (naming rule, patterns, rename map).
    pub fn policy(&self) -> &NamespacePolicy {
        &self.policy
    }

    /// Register the provisioner's counters (`tcr_adapter_namespace_ensures_total{outcome}`).
    pub fn register(&self, registry: &prometheus::Registry) -> prometheus::Result<()> {
        self.metrics.register(registry)
    }

    /// How many ensures ended with `outcome` so far.
    pub fn outcome_count(&self, outcome: Outcome) -> u64 {
        self.metrics.get(outcome)
    }

    /// Test hook: called with the namespace right before `CreateNamespace` is sent.
    #[doc(hidden)]
    pub fn set_before_create_hook(&self, hook: impl Fn(&str) + Send + Sync + 'static) {
        *self
            .before_create
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(hook));
    }

    /// The name a client's repository has upstream (rename map applied to the namespace).
    pub fn to_upstream(&self, repo: &RepoName) -> RepoName {
        self.policy.to_upstream(repo)
    }

    /// The name an upstream repository has for clients (reverse of [`Self::to_upstream`]).
    pub fn to_client(&self, repo: &RepoName) -> RepoName {
        self.policy.to_client(repo)
    }

    /// [`Self::to_upstream`] on a string (`ns/repo…` or a bare namespace).
    pub fn name_to_upstream(&self, name: &str) -> String {
        map_first_component(name, |ns| self.policy.ns_to_upstream(ns))
    }

    /// [`Self::to_client`] on a string.
    pub fn name_to_client(&self, name: &str) -> String {
        map_first_component(name, |ns| self.policy.ns_to_client(ns))
    }

    /// Rewrite the repository of a `/v2/<name>/…` path (with any query, kept intact) from its
    /// upstream name to the client's: for `Location` and `Link` headers. Other paths (including
    /// `/v2/_catalog`) come back unchanged.
    pub fn path_to_client(&self, path_and_query: &str) -> String {
        rewrite_v2_path(path_and_query, |ns| self.policy.ns_to_client(ns))
    }

    /// The reverse of [`Self::path_to_client`].
    pub fn path_to_upstream(&self, path_and_query: &str) -> String {
        rewrite_v2_path(path_and_query, |ns| self.policy.ns_to_upstream(ns))
    }

    /// The policy gate every route passes (reads, listings, deletes and uploads alike): the
    /// client's namespace through the rename map, then TCR's naming rule and the allow/deny
    /// patterns. The upstream namespace, or the same `DENIED` refusal `/v2/` gives.
    pub fn admit(&self, client_namespace: &str) -> Result<String, OciError> {
        let upstream = self.policy.ns_to_upstream(client_namespace).to_string();
        self.policy.check(&upstream)?;
        Ok(upstream)
    }

    /// Whether an upstream namespace may be shown to clients: the policy admits it and the rename
    /// map does not shadow it (a namespace renamed away is reachable only by its client name).
    pub fn is_listed(&self, upstream_namespace: &str) -> bool {
        let client = self.policy.ns_to_client(upstream_namespace);
        self.policy.ns_to_upstream(client) == upstream_namespace
            && self.policy.check(upstream_namespace).is_ok()
    }

    /// Forget that `upstream_namespace` exists (e.g. the upstream said it does not).
    pub fn invalidate(&self, upstream_namespace: &str) {
        self.known.remove(upstream_namespace);
    }

    /// The `DENIED` error for a namespace that could not be checked or created for lack of keys.
    pub fn keys_needed_error(&self, upstream_namespace: &str) -> OciError {
        OciError::new(
            ErrorCode::Denied,
            format!(
                "creating namespace {upstream_namespace:?} needs TencentCloud API keys: set \
                 tcr.secret_id and tcr.secret_key in the adapter's configuration, or log in with a \
                 SecretId/SecretKey pair (AKID…) instead of registry credentials"
            ),
        )
    }

    fn is_known(&self, ns: &str) -> bool {
        let now = self.clock.now_ms();
        self.known.get(ns).is_some_and(|exp| *exp > now)
    }

    fn remember(&self, ns: &str) {
        let ttl_ms = i64::try_from(self.cfg.cache_ttl_secs)
            .unwrap_or(i64::MAX / 1000)
            .saturating_mul(1000);
        self.known
            .insert(ns.to_string(), self.clock.now_ms().saturating_add(ttl_ms));
    }

    /// Make sure the upstream namespace exists before a write into it, for `acting` (the
    /// caller's identity, or `Some(keys)`/`None` = its own keys / a delegation, see [`Acting`]).
    ///
    /// Without a cloud client, or without any keys (caller presented registry credentials and no
    /// provisioner keys are configured), the namespace cannot be checked: the policy is applied
    /// and the write goes on (a missing namespace is then refused by TCR itself; answer it with
    /// [`Self::keys_needed_error`]). For [`Acting::LookOnly`] a missing one is refused.
    pub async fn ensure<'a>(
        &self,
        upstream_namespace: &str,
        acting: impl Into<Acting<'a>>,
    ) -> Result<(), OciError> {
        self.ensure_outcome(upstream_namespace, acting)
            .await
            .map(|_| ())
    }

    /// [`Self::ensure`], telling what happened: [`Outcome::Created`] only for the one call that
    /// created the namespace; `Exists*`/`Conflict` when it was already there; `Unchecked` when
    /// there were no keys (or no cloud API) to check it with.
    pub async fn ensure_outcome<'a>(
        &self,
        upstream_namespace: &str,
        acting: impl Into<Acting<'a>>,
    ) -> Result<Outcome, OciError> {
        let acting = acting.into();
        let ns = upstream_namespace;
        if let Err(e) = self.policy.check(ns) {
            self.metrics.inc(Outcome::Denied);
            tracing::info!(namespace = ns, reason = %e.message, "namespace refused by policy");
            return Err(e);
        }
        if self.is_known(ns) {
            self.metrics.inc(Outcome::ExistsCached);
            return Ok(Outcome::ExistsCached);
        }
        let Some(cloud) = &self.cloud else {
            self.metrics.inc(Outcome::Unchecked);
            return Ok(Outcome::Unchecked);
        };
        let (keys, may_create) = match acting {
            Acting::Keys(k) => (Some(k), true),
            Acting::Delegated => (cloud.keys.as_ref(), true),
            Acting::LookOnly => (cloud.keys.as_ref(), false),
        };
        let Some(keys) = keys else {
            self.metrics.inc(Outcome::Unchecked);
            tracing::debug!(
                namespace = ns,
                "no API keys: namespace existence not checked (TCR refuses the push if it is missing)"
            );
            return Ok(Outcome::Unchecked);
        };
        let lock = self.inflight.entry(ns.to_string()).or_default().clone();
        let guard = lock.lock().await;
        let result = if self.is_known(ns) {
            self.metrics.inc(Outcome::ExistsCached);
            Ok(Outcome::ExistsCached)
        } else {
            let r = self.ensure_locked(cloud, ns, keys, may_create).await;
            let outcome = match &r {
                Ok(o) => *o,
                Err((o, _)) => *o,
            };
            self.metrics.inc(outcome);
            r.map_err(|(_, e)| e)
        };
        drop(guard);
        self.inflight
            .remove_if(ns, |_, v| Arc::strong_count(v) <= 2);
        result
    }

    async fn ensure_locked(
        &self,
        cloud: &Cloud,
        ns: &str,
        keys: &ApiCredential,
        may_create: bool,
    ) -> Result<Outcome, (Outcome, OciError)> {
        let inst = self
            .instance(cloud, keys)
            .await
            .map_err(|e| (denied_or_error(&e), e))?;
        if self.namespace_exists(&inst, ns, keys).await? {
            self.remember(ns);
            return Ok(Outcome::Exists);
        }
        if !may_create {
            tracing::info!(
                namespace = ns,
                "missing namespace not created for a look-only caller"
            );
            return Err((Outcome::Denied, acting::not_created(ns)));
        }
        self.check_may_create(ns, keys)?;
        self.run_before_create_hook(ns);
        self.create_namespace(&inst, ns, keys).await
    }

    /// `DescribeNamespaces`: is `ns` already in the instance?
    async fn namespace_exists(
        &self,
        inst: &Instance,
        ns: &str,
        keys: &ApiCredential,
    ) -> Result<bool, (Outcome, OciError)> {
        Ok(inst
            .client
            .find_namespace(keys, &inst.registry_id, ns)
            .await
            .map_err(|e| {
                ensure_failed(
                    e,
                    "DescribeNamespaces",
                    format!("checking whether namespace {ns:?} exists"),
                    ns,
                    keys,
                )
            })?
            .is_some())
    }

    /// Refuse a missing namespace when `auto_create` is off or in dry-run mode (which audits
    /// what it would have created).
    fn check_may_create(&self, ns: &str, keys: &ApiCredential) -> Result<(), (Outcome, OciError)> {
        let visibility = self.visibility();
        if !self.cfg.auto_create {
            return Err((
                Outcome::Denied,
                OciError::new(
                    ErrorCode::Denied,
                    format!(
                        "namespace {ns:?} does not exist in the TCR instance and \
                         namespaces.auto_create is false: create it in the TCR console first"
                    ),
                ),
            ));
        }
        if self.cfg.dry_run {
            tracing::info!(
                target: "audit",
                event = "namespace_would_create",
                namespace = ns,
                visibility,
                secret_id = %secret_id_prefix(&keys.secret_id),
                "dry run: namespace would be created"
            );
            return Err((
                Outcome::DryRun,
                OciError::new(
                    ErrorCode::Denied,
                    format!(
                        "dry run (namespaces.dry_run = true): namespace {ns:?} does not exist and \
                         would be created ({visibility}); nothing was created and this push is refused"
                    ),
                ),
            ));
        }
        Ok(())
    }

    fn visibility(&self) -> &'static str {
        if self.cfg.public {
            "public"
        } else {
            "private"
        }
    }

    fn run_before_create_hook(&self, ns: &str) {
        let hook = self
            .before_create
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Some(h) = hook {
            h(ns);
        }
    }

    /// `CreateNamespace`; a conflict (created concurrently) is confirmed with a lookup.
    async fn create_namespace(
        &self,
        inst: &Instance,
        ns: &str,
        keys: &ApiCredential,
    ) -> Result<Outcome, (Outcome, OciError)> {
        let context = format!("creating namespace {ns:?}");
        match inst
            .client
            .create_namespace(keys, &inst.registry_id, ns, self.cfg.public)
            .await
        {
            Ok(()) => {
                self.remember(ns);
                self.note_created(inst, ns, keys);
                Ok(Outcome::Created)
            }
            Err(e) if e.is_conflict() => {
                self.confirm_concurrent_create(inst, ns, keys, e, context)
                    .await
            }
            Err(e) => Err(ensure_failed(e, "CreateNamespace", context, ns, keys)),
        }
    }

    /// Someone else created it meanwhile: make sure it is really there.
    async fn confirm_concurrent_create(
        &self,
        inst: &Instance,
        ns: &str,
        keys: &ApiCredential,
        e: crate::tencentcloud::ApiError,
        context: String,
    ) -> Result<Outcome, (Outcome, OciError)> {
        match inst
            .client
            .find_namespace(keys, &inst.registry_id, ns)
            .await
        {
            Ok(Some(_)) | Err(_) => {
                tracing::info!(namespace = ns, code = ?e.code(), "namespace already exists (created concurrently)");
                self.remember(ns);
                Ok(Outcome::Conflict)
            }
            Ok(None) => Err(ensure_failed(e, "CreateNamespace", context, ns, keys)),
        }
    }
}

/// [`Outcome::Denied`] for a `DENIED` error, [`Outcome::Error`] otherwise.
fn denied_or_error(e: &OciError) -> Outcome {
    if e.code == ErrorCode::Denied {
        Outcome::Denied
    } else {
        Outcome::Error
    }
}

/// A failed cloud API call while ensuring `ns`: logged, mapped to an OCI error and an outcome.
fn ensure_failed(
    e: crate::tencentcloud::ApiError,
    action: &str,
    context: String,
    ns: &str,
    keys: &ApiCredential,
) -> (Outcome, OciError) {
    let oci = api_error_to_oci(&e, action, &keys.secret_id, &context);
    let outcome = denied_or_error(&oci);
    tracing::warn!(namespace = ns, action, error = %e, "namespace ensure failed");
    (outcome, oci)
}

/// Apply `f` to the first `/`-separated component of `name`.
fn map_first_component<'a>(name: &'a str, f: impl Fn(&'a str) -> &'a str) -> String {
    match name.split_once('/') {
        Some((ns, rest)) => format!("{}/{rest}", f(ns)),
        None => f(name).to_string(),
    }
}

fn rewrite_v2_path<'a>(path_and_query: &'a str, f: impl Fn(&'a str) -> &'a str) -> String {
    let Some(rest) = path_and_query.strip_prefix("/v2/") else {
        return path_and_query.to_string();
    };
    if rest.starts_with('_') {
        return path_and_query.to_string();
    }
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    format!("/v2/{}{}", f(&rest[..end]), &rest[end..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_names_are_rewritten_both_ways() {
        let cfg = NamespacesConfig {
            map: [("library".to_string(), "lib-tcr".to_string())].into(),
            ..Default::default()
        };
        let p = NamespaceProvisioner::new(&cfg);
        assert_eq!(p.name_to_upstream("library/nginx"), "lib-tcr/nginx");
        assert_eq!(p.name_to_client("lib-tcr/a/b"), "library/a/b");
        assert_eq!(p.name_to_upstream("other/x"), "other/x");
        assert_eq!(
            p.path_to_client("/v2/lib-tcr/nginx/blobs/uploads/abc?_state=x&lib-tcr=1"),
            "/v2/library/nginx/blobs/uploads/abc?_state=x&lib-tcr=1"
        );
        assert_eq!(
            p.path_to_upstream("/v2/library/nginx/tags/list?n=10&last=a"),
            "/v2/lib-tcr/nginx/tags/list?n=10&last=a"
        );
        assert_eq!(p.path_to_client("/v2/_catalog?n=1"), "/v2/_catalog?n=1");
        assert_eq!(p.path_to_client("/other"), "/other");
    }
}
