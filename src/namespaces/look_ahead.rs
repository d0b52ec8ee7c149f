//! A namespace's existence learnt ahead of the push that needs it. Harbor asks a pull-scoped
//! token for an image's manifest HEAD before the push-scoped one of its first upload, and the
//! push token makes sure the namespace exists ([`NamespaceProvisioner::ensure`]: a cloud API
//! round trip the first time the adapter meets a namespace, on the path of every job that
//! waits for it). When a credentialed caller is issued a token naming a repository of a
//! namespace the adapter does not know yet, that check is made at once, in the background: a
//! read (`DescribeNamespaces`) with the keys `ensure` would use for that caller; nothing is
//! created, and a namespace found missing is left to `ensure`, which decides as always.

use std::sync::Arc;

use super::{Acting, NamespaceProvisioner};
use crate::tencentcloud::ApiCredential;

impl NamespaceProvisioner {
    /// Check in the background whether `ns` exists, for `acting` (see the module), unless it is
    /// known, refused by the policy, or there are no keys to look with.
    pub fn look_ahead<'a>(self: &Arc<Self>, ns: &str, acting: impl Into<Acting<'a>>) {
        let Some(keys) = self.look_keys(ns, acting.into()) else {
            return;
        };
        let (me, ns) = (self.clone(), ns.to_string());
        tokio::spawn(async move { me.look(&ns, &keys).await });
    }

    /// Whether `ns` is known to exist, looked up now (or by the look-ahead already in flight,
    /// single flight per namespace) when it is not known yet. A read; nothing is created.
    pub async fn known_to_exist<'a>(&self, ns: &str, acting: impl Into<Acting<'a>>) -> bool {
        if let Some(keys) = self.look_keys(ns, acting.into()) {
            self.look(ns, &keys).await;
        }
        self.is_known(ns)
    }

    /// The keys to look `ns` up with, unless it is known, refused by the policy, or there are
    /// no keys (or no cloud API) to look with.
    fn look_keys(&self, ns: &str, acting: Acting<'_>) -> Option<ApiCredential> {
        if self.policy.check(ns).is_err() || self.is_known(ns) {
            return None;
        }
        let cloud = self.cloud.as_ref()?;
        match acting {
            Acting::Keys(k) => Some(k.clone()),
            Acting::Delegated | Acting::LookOnly => cloud.keys.clone(),
        }
    }

    /// `DescribeNamespaces` for `ns` with `keys`, one at a time per namespace; a namespace found
    /// is remembered.
    async fn look(&self, ns: &str, keys: &ApiCredential) {
        let lock = self.inflight.entry(ns.to_string()).or_default().clone();
        let guard = lock.lock().await;
        if let (false, Some(cloud)) = (self.is_known(ns), &self.cloud) {
            if let Ok(inst) = self.instance(cloud, keys).await {
                if let Ok(true) = self.namespace_exists(&inst, ns, keys).await {
                    self.remember(ns);
                }
            }
        }
        drop(guard);
        self.inflight
            .remove_if(ns, |_, v| Arc::strong_count(v) <= 2);
    }
}
