//! Realm tokens fetched ahead of the requests that need them. Harbor asks about an image's
//! manifest first (pull-scoped), then uploads into the same repository with a push-scoped
//! token; the adapter's upstream requests for that upload ask the realm for pull and push in
//! the repository and pull on the repository the caller's mounts came from lately (the source
//! hint), a scope set the manifest HEAD's own token does not cover. The realm round trip for it
//! used to sit between the client's `POST` and TCR; it is now made at the manifest HEAD, in the
//! background, with the caller's own credential. A token is a read: it grants what TCR's realm
//! grants that credential, nothing more, and stays in this process's token cache.

use crate::auth::Grant;
use crate::oci::RepoName;
use crate::registry::wan::calls::{Caller, Calls};
use crate::registry::RegistryFront;

/// A credentialed caller asks about a manifest in `target`: the token its uploads there will
/// ask for (pull and push in `target`, pull on its source hint) is fetched now, when it has a
/// hint (a caller that mounted lately: a pusher); without one, the manifest HEAD's own token is
/// that token already.
pub async fn for_manifest_head(front: &RegistryFront, target: &RepoName, grant: &Grant) {
    let Some(index) = front.wan.index.as_ref() else {
        return;
    };
    let caller = Caller::of(grant);
    if caller.credential.is_none() {
        return;
    }
    let Some(hint) = index.source_hint(caller.owner.as_deref()).await else {
        return;
    };
    if &hint != target {
        Calls::new(front, caller).prefetch_token(target, Some(&hint));
    }
}
