//! Who acts in the cloud API for a caller ([`Acting`]), and so whether a missing namespace may
//! be created for it: with the caller's own API keys (CAM decides), with the provisioner keys
//! for an instance token (the operator's delegation), or not at all for a `tcr$` service account
//! or an anonymous caller.

use crate::credentials::ClientIdentity;
use crate::oci::{ErrorCode, OciError};
use crate::tencentcloud::ApiCredential;

/// Who acts in the cloud API for a caller, and so whose keys may create a namespace for it.
#[derive(Clone, Copy, Debug)]
pub enum Acting<'a> {
    /// The caller's own API keys: CAM decides what they may do.
    Keys(&'a ApiCredential),
    /// A registry credential the provisioner keys act for (an instance token): the operator's
    /// delegation, bounded by `namespaces.allow`/`deny`. The adapter cannot read the CAM policy
    /// of the sub-account behind an instance token.
    Delegated,
    /// A caller no namespace is ever created for: a `tcr$` service account (TCR limits it to
    /// namespaces that exist) or an anonymous caller. The provisioner keys may look whether the
    /// namespace exists; a missing one is refused.
    LookOnly,
}

impl<'a> From<&'a ClientIdentity> for Acting<'a> {
    fn from(identity: &'a ClientIdentity) -> Self {
        match (&identity.api_keys, &identity.upstream) {
            (Some(keys), _) => Acting::Keys(keys),
            (None, Some(c)) if !is_service_account(&c.username) => Acting::Delegated,
            _ => Acting::LookOnly,
        }
    }
}

/// The caller's own keys when `Some`; `None` is a delegation ([`Acting::Delegated`]).
impl<'a> From<Option<&'a ApiCredential>> for Acting<'a> {
    fn from(keys: Option<&'a ApiCredential>) -> Self {
        keys.map_or(Acting::Delegated, Acting::Keys)
    }
}

/// Whether a registry username names a TCR service account (`tcr$<name>`; TCR adds the prefix,
/// `CreateServiceAccount`).
pub fn is_service_account(username: &str) -> bool {
    username.starts_with("tcr$")
}

/// The refusal of a missing namespace for an [`Acting::LookOnly`] caller.
pub(super) fn not_created(ns: &str) -> OciError {
    OciError::new(
        ErrorCode::Denied,
        format!(
            "namespace {ns:?} does not exist in the TCR instance, and the adapter creates \
             namespaces only for callers with API keys or an instance token: a tcr$ service \
             account is limited by TCR to namespaces that exist. Create the namespace (in the TCR \
             console, or by pushing once with API keys) and give the service account access to it"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;
    use crate::credentials::UpstreamCredential;

    fn registry(username: &str) -> ClientIdentity {
        ClientIdentity {
            upstream: Some(UpstreamCredential {
                username: username.into(),
                password: Secret::new("p"),
            }),
            api_keys: None,
            kind: crate::credentials::KIND_REGISTRY,
        }
    }

    #[test]
    fn service_accounts_and_anonymous_callers_only_look() {
        assert!(matches!(
            Acting::from(&registry("tcr$ci")),
            Acting::LookOnly
        ));
        assert!(matches!(
            Acting::from(&ClientIdentity::anonymous()),
            Acting::LookOnly
        ));
        assert!(matches!(
            Acting::from(&registry("100012345678")),
            Acting::Delegated
        ));
        let keys = ApiCredential::new("AKIDx".to_string(), "k");
        let mut with_keys = registry("100012345678");
        with_keys.api_keys = Some(keys);
        assert!(matches!(Acting::from(&with_keys), Acting::Keys(_)));
        assert!(matches!(Acting::from(None), Acting::Delegated));
    }
}
