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

impl NamespaceProvisioner {
    /// Check in the background whether `ns` exists, for `acting` (see the module), unless it is
    /// known, refused by the policy, or there are no keys to look with.
    pub fn look_ahead<'a>(self: &Arc<Self>, ns: &str, acting: impl Into<Acting<'a>>) {
        if self.policy.check(ns).is_err() || self.is_known(ns) {
            return;
        }
        let Some(cloud) = &self.cloud else {
            return;
        };
        let keys = match acting.into() {
            Acting::Keys(k) => Some(k.clone()),
            Acting::Delegated | Acting::LookOnly => cloud.keys.clone(),
        };
        let Some(keys) = keys else {
            return;
        };
        let (me, ns) = (self.clone(), ns.to_string());
        tokio::spawn(async move {
            let lock = me.inflight.entry(ns.clone()).or_default().clone();
            let guard = lock.lock().await;
            if let (false, Some(cloud)) = (me.is_known(&ns), &me.cloud) {
                if let Ok(inst) = me.instance(cloud, &keys).await {
                    if let Ok(true) = me.namespace_exists(&inst, &ns, &keys).await {
                        me.remember(&ns);
                    }
                }
            }
            drop(guard);
            me.inflight.remove_if(&ns, |_, v| Arc::strong_count(v) <= 2);
        });
    }
}

impl NamespaceProvisioner {
    /// Whether `ns` is known to exist, once the look-ahead in flight for it (if any) has
    /// finished. Nothing is asked of the cloud API here.
    pub async fn known_after_look_ahead(&self, ns: &str) -> bool {
        if self.is_known(ns) {
            return true;
        }
        let lock = self.inflight.get(ns).map(|l| l.clone());
        if let Some(lock) = lock {
            drop(lock.lock().await);
        }
        self.is_known(ns)
    }
}
