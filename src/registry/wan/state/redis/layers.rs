//! The layers of the manifests pushed lately, on the store: `wan:layers:<repo>` (the last
//! manifest's layers, digests separated by spaces) and `wan:recent:<namespace>` (a list of the
//! namespace's latest manifests' layers, newest first). So a replica guesses mounts ahead from
//! manifests any replica saw pushed (see `ahead::mounts`). Each call falls back to the
//! replica's own memory, which learns what it writes.

use std::time::Duration;

use super::super::{WanState, RECENT_MANIFESTS};
use super::RedisState;
use crate::oci::{Digest, RepoName};

/// How long a repository's or namespace's layers are remembered after its last manifest.
const LAYERS_TTL: Duration = Duration::from_secs(24 * 3600);

fn joined(layers: &[Digest]) -> String {
    layers
        .iter()
        .map(Digest::as_str)
        .collect::<Vec<_>>()
        .join(" ")
}

fn split(text: &str) -> Vec<Digest> {
    text.split(' ')
        .filter_map(|d| Digest::parse(d).ok())
        .collect()
}

impl RedisState {
    pub(super) async fn note_layers_shared(&self, repo: &RepoName, layers: &[Digest]) {
        self.local.note_layers(repo, layers).await;
        let value = joined(layers);
        let repo_key = self.key(&["layers", repo.as_str()]);
        let recent_key = self.key(&["recent", repo.namespace()]);
        let (a, b) = futures_util::join!(
            self.store.set(&repo_key, value.as_bytes(), LAYERS_TTL),
            self.store
                .list_push(&recent_key, &value, RECENT_MANIFESTS, LAYERS_TTL)
        );
        let _ = (a, b);
    }

    pub(super) async fn layers_of_shared(&self, repo: &RepoName) -> Vec<Digest> {
        match self.store.get(&self.key(&["layers", repo.as_str()])).await {
            Ok(Some(v)) => std::str::from_utf8(&v).map(split).unwrap_or_default(),
            Ok(None) => Vec::new(),
            Err(_) => self.local.layers_of(repo).await,
        }
    }

    pub(super) async fn recent_layers_shared(&self, namespace: &str) -> Vec<Vec<Digest>> {
        match self.store.list_all(&self.key(&["recent", namespace])).await {
            Ok(all) => all.iter().map(|m| split(m)).collect(),
            Err(_) => self.local.recent_layers(namespace).await,
        }
    }
}
