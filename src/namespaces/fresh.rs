//! Namespaces this adapter created: the audit line of each creation, and which count as new.
//! A namespace that did not exist until this process created it holds only what was pushed into
//! it since, and pushes through the adapter are what its layer index learns from: a blob the
//! index has never heard of is, in such a namespace, almost surely absent. The WAN room uses
//! that as its evidence for answering a pusher's first blob HEADs "absent" ahead of TCR
//! (`registry::wan::ahead::absent`), the evidence a streak of TCR's "absent" gives elsewhere.
//! The mark ends after [`FRESH_FOR_MS`], or as soon as TCR says a blob the adapter did not know
//! of is present in it ([`NamespaceProvisioner::not_fresh`]): something else writes there.
//! Being wrong costs bytes sent again, never a wrong answer: "present" is never said on this
//! evidence. Per process: another replica, or a restart, falls back to the streak.

use super::{secret_id_prefix, Instance, NamespaceProvisioner};
use crate::tencentcloud::ApiCredential;

/// How long a namespace counts as freshly created.
pub const FRESH_FOR_MS: i64 = 60 * 60 * 1000;

impl NamespaceProvisioner {
    /// This process created `ns` within [`FRESH_FOR_MS`], and TCR has not said since that a
    /// blob unknown to the adapter is there.
    pub fn created_lately(&self, ns: &str) -> bool {
        let now = self.clock.now_ms();
        match self.fresh.get(ns).map(|at| *at) {
            Some(at) if now.saturating_sub(at) < FRESH_FOR_MS => true,
            Some(_) => {
                self.fresh.remove(ns);
                false
            }
            None => false,
        }
    }

    /// TCR has something in `ns` the adapter did not put there: it is no longer counted fresh.
    pub fn not_fresh(&self, ns: &str) {
        self.fresh.remove(ns);
    }

    /// `ns` was just created by this process (in `inst`, with `keys`): an audit line, and the
    /// namespace counts as fresh.
    pub(super) fn note_created(&self, inst: &Instance, ns: &str, keys: &ApiCredential) {
        self.audit_created(inst, ns, keys);
        self.fresh.insert(ns.to_string(), self.clock.now_ms());
    }

    fn audit_created(&self, inst: &Instance, ns: &str, keys: &ApiCredential) {
        let at = chrono::DateTime::from_timestamp_millis(self.clock.now_ms())
            .unwrap_or_default()
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        tracing::info!(
            target: "audit",
            event = "namespace_created",
            namespace = ns,
            visibility = self.visibility(),
            registry_id = %inst.registry_id,
            secret_id = %secret_id_prefix(&keys.secret_id),
            at = %at,
            "namespace created"
        );
    }
}
