//! The emulator's accounts and what each may do: API-key accounts (`[[emulator.accounts]]`, like
//! CAM sub-accounts: cloud API actions, namespaces, data-plane actions of their instance tokens)
//! and service accounts (`[[emulator.service_accounts]]`, `tcr$<name>` + password, per namespace
//! and action). Parsing, defaults and validation only; the emulator enforces them.

use serde::{Deserialize, Serialize};

use super::{Config, ConfigError, Secret};

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct EmulatorAccount {
    pub secret_id: String,
    pub secret_key: Secret,
    /// Account UIN; the `Username` of its instance tokens.
    pub uin: String,
    /// Cloud API actions this account may call; empty: all.
    #[serde(default)]
    pub actions: Vec<String>,
    /// Namespaces (glob patterns, e.g. `team-a*`) the account may act on, like a CAM policy's
    /// `repository/<instance>/<namespace>/*` resources: on the data plane (its instance tokens)
    /// and in the cloud API's writes (`CreateNamespace`, `CreateRepository`, `DeleteImage`,
    /// `DeleteNamespace`); empty: all.
    #[serde(default)]
    pub namespaces: Vec<String>,
    /// Data-plane actions its instance tokens carry (`pull`, `push`, `delete`); empty: all.
    #[serde(default)]
    pub registry: Vec<RegistryAction>,
}

/// What a credential may do in a repository (and a namespace's chart repository).
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RegistryAction {
    /// Read manifests, blobs, tags, charts (`tcr:PullRepository`, `tcr:DescribeHelmCharts`).
    Pull,
    /// Write blobs, manifests, tags, repositories, charts (`tcr:PushRepository`,
    /// `tcr:CreateRepository`, `tcr:CreateHelmChart`).
    Push,
    /// Delete manifests, tags, blobs, charts (CAM's delete actions; service accounts cannot).
    Delete,
}

impl RegistryAction {
    pub fn as_str(self) -> &'static str {
        match self {
            RegistryAction::Pull => "pull",
            RegistryAction::Push => "push",
            RegistryAction::Delete => "delete",
        }
    }
}

/// A TCR service account: `tcr$<name>` + `password` on the data plane and the chart repository.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EmulatorServiceAccount {
    /// The name without the `tcr$` prefix TCR adds.
    pub name: String,
    pub password: Secret,
    /// Namespaces (glob patterns) it may act on; empty: all.
    #[serde(default)]
    pub namespaces: Vec<String>,
    /// `pull` and/or `push` (TCR's service accounts have no delete action).
    #[serde(default = "EmulatorServiceAccount::default_registry")]
    pub registry: Vec<RegistryAction>,
}

impl EmulatorServiceAccount {
    /// The prefix TCR puts before a service account's name.
    pub const PREFIX: &'static str = "tcr$";

    fn default_registry() -> Vec<RegistryAction> {
        vec![RegistryAction::Pull, RegistryAction::Push]
    }

    /// The data-plane username, `tcr$<name>`.
    pub fn username(&self) -> String {
        format!("{}{}", Self::PREFIX, self.name)
    }
}

impl EmulatorAccount {
    pub const DEMO_SECRET_ID: &'static str = "AKIDtcradapterDEMO0000000000000000";
    pub const DEMO_SECRET_KEY: &'static str = "tcradapterDEMOsecretKEY000000000";
    pub const DEMO_UIN: &'static str = "100000000001";

    pub fn demo() -> Self {
        EmulatorAccount {
            secret_id: Self::DEMO_SECRET_ID.into(),
            secret_key: Secret::new(Self::DEMO_SECRET_KEY),
            uin: Self::DEMO_UIN.into(),
            ..EmulatorAccount::default()
        }
    }

    /// Whether this account may call `action`.
    pub fn may(&self, action: &str) -> bool {
        self.actions.is_empty() || self.actions.iter().any(|a| a == action || a == "*")
    }
}

impl Config {
    /// Emulator accounts' namespace patterns compile; service accounts have a name, a password
    /// and no `delete`.
    pub(super) fn validate_emulator_accounts(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        let accounts = self.emulator.accounts.iter().map(|a| &a.namespaces);
        let services = self.emulator.service_accounts.iter().map(|a| &a.namespaces);
        for pattern in accounts.chain(services).flatten() {
            if let Err(e) = globset::Glob::new(pattern) {
                return bad(format!(
                    "emulator account namespace pattern {pattern:?}: {e}"
                ));
            }
        }
        for sa in &self.emulator.service_accounts {
            if sa.name.is_empty() || sa.name.starts_with(EmulatorServiceAccount::PREFIX) {
                return bad(format!(
                    "emulator.service_accounts: name {:?} must be set, without the tcr$ prefix",
                    sa.name
                ));
            }
            if sa.password.is_empty() {
                return bad(format!(
                    "emulator.service_accounts {:?}: password is empty",
                    sa.name
                ));
            }
            if sa.registry.contains(&RegistryAction::Delete) {
                return bad(format!(
                    "emulator.service_accounts {:?}: TCR's service accounts can pull and push, not delete",
                    sa.name
                ));
            }
        }
        Ok(())
    }
}

/// Whether `ns` matches one of the glob `patterns` (none: every namespace).
pub fn namespace_allowed(patterns: &[String], ns: &str) -> bool {
    patterns.is_empty()
        || patterns
            .iter()
            .any(|p| globset::Glob::new(p).is_ok_and(|g| g.compile_matcher().is_match(ns)))
}

impl EmulatorAccount {
    /// Whether its instance tokens may do `action` in namespace `ns`.
    pub fn may_registry(&self, ns: &str, action: RegistryAction) -> bool {
        self.may_namespace(ns) && (self.registry.is_empty() || self.registry.contains(&action))
    }

    /// Whether its policy covers namespace `ns` (resource-level).
    pub fn may_namespace(&self, ns: &str) -> bool {
        namespace_allowed(&self.namespaces, ns)
    }
}

impl EmulatorServiceAccount {
    /// Whether it may do `action` in namespace `ns`.
    pub fn may_registry(&self, ns: &str, action: RegistryAction) -> bool {
        namespace_allowed(&self.namespaces, ns) && self.registry.contains(&action)
    }
}
