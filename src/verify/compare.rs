//! Comparing the two inventories: every source tag and chart version against the destination
//! by digest (manifest digests as stored), each difference an [`Item`] with its [`Status`];
//! totals per namespace. A digest that differs only because Harbor 1.x replicated one platform
//! of a multi-arch index (or the reverse) is recognised from the manifests themselves.

use std::collections::BTreeMap;

use serde::Serialize;

use super::client::{Manifest, RegistryClient};
use super::options::Filters;
use super::source::Inventory;
use super::VerifyError;

/// What became of one source item at the destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// Same digest on both sides.
    Ok,
    /// Absent at the destination.
    Missing,
    /// Present with another digest.
    Different,
    /// One side holds a multi-arch index, the other one of its platforms (Harbor 1.x
    /// replicated a single platform): same content for that platform, not a mismatch.
    PlatformConverted,
    /// At the destination only.
    Extra,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Missing => "missing",
            Status::Different => "different",
            Status::PlatformConverted => "platform-converted",
            Status::Extra => "extra",
        }
    }
    /// Does this status make the migration incomplete?
    pub fn fails(self) -> bool {
        matches!(self, Status::Missing | Status::Different)
    }
}

/// An image tag or a chart version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Image,
    Chart,
}

/// One compared item.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Item {
    /// Destination namespace.
    pub namespace: String,
    pub kind: Kind,
    /// Repository or chart as the source names it (`project/name`).
    pub repository: String,
    /// Repository or chart at the destination (after the rename map).
    pub destination: String,
    /// Tag or chart version.
    pub tag: String,
    pub status: Status,
    pub source_digest: Option<String>,
    pub destination_digest: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Counts of one namespace (or of everything).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    pub ok: usize,
    pub missing: usize,
    pub different: usize,
    pub platform_converted: usize,
    pub extra: usize,
}

impl Totals {
    pub fn add(&mut self, s: Status) {
        match s {
            Status::Ok => self.ok += 1,
            Status::Missing => self.missing += 1,
            Status::Different => self.different += 1,
            Status::PlatformConverted => self.platform_converted += 1,
            Status::Extra => self.extra += 1,
        }
    }
    pub fn failed(&self) -> usize {
        self.missing + self.different
    }
}

/// The comparison.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Comparison {
    pub items: Vec<Item>,
    pub namespaces: BTreeMap<String, Totals>,
    pub totals: Totals,
}

impl Comparison {
    fn push(&mut self, item: Item) {
        self.namespaces
            .entry(item.namespace.clone())
            .or_default()
            .add(item.status);
        self.totals.add(item.status);
        self.items.push(item);
    }
    pub fn complete(&self) -> bool {
        self.totals.failed() == 0
    }
}

/// Chart digests: ChartMuseum gives bare hex; compare without an algorithm prefix.
fn bare(d: &str) -> &str {
    d.strip_prefix("sha256:").unwrap_or(d)
}

/// Compare `source` (source names) with `dest` (destination names); `to_dest` maps a source
/// repository name to the destination's. Differing image digests are looked at through both
/// registries for a platform conversion.
pub async fn compare(
    source: &Inventory,
    dest: &Inventory,
    to_dest: &(dyn Fn(&str) -> String + Sync),
    to_source: &(dyn Fn(&str) -> String + Sync),
    filters: &Filters,
    source_registry: &RegistryClient,
    dest_registry: &RegistryClient,
) -> Result<Comparison, VerifyError> {
    let mut out = Comparison::default();
    for (kind, src, dst) in [
        (Kind::Image, &source.images, &dest.images),
        (Kind::Chart, &source.charts, &dest.charts),
    ] {
        for (repo, tags) in src {
            let target = to_dest(repo);
            let namespace = target.split('/').next().unwrap_or("").to_string();
            let there = dst.get(&target);
            for (tag, digest) in tags {
                let found = there.and_then(|t| t.get(tag));
                let (status, note) = match found {
                    None => (Status::Missing, None),
                    Some(d) if kind == Kind::Chart && bare(d) == bare(digest) => (Status::Ok, None),
                    Some(d) if d == digest => (Status::Ok, None),
                    Some(_) if kind == Kind::Chart => (Status::Different, None),
                    Some(d) => {
                        converted(source_registry, repo, digest, dest_registry, &target, d).await?
                    }
                };
                out.push(Item {
                    namespace: namespace.clone(),
                    kind,
                    repository: repo.clone(),
                    destination: target.clone(),
                    tag: tag.clone(),
                    status,
                    source_digest: Some(digest.clone()),
                    destination_digest: found.cloned(),
                    note,
                });
            }
        }
        for (target, tags) in dst {
            let repo = to_source(target);
            let known = src.get(&repo);
            for (tag, digest) in tags {
                if !filters.tag(tag) || known.is_some_and(|k| k.contains_key(tag)) {
                    continue;
                }
                out.push(Item {
                    namespace: target.split('/').next().unwrap_or("").to_string(),
                    kind,
                    repository: repo.clone(),
                    destination: target.clone(),
                    tag: tag.clone(),
                    status: Status::Extra,
                    source_digest: None,
                    destination_digest: Some(digest.clone()),
                    note: None,
                });
            }
        }
    }
    out.items.sort();
    Ok(out)
}

/// The child manifest digests of an index (or manifest list); `None` if it is not one.
pub fn index_children(m: &Manifest) -> Option<Vec<String>> {
    let v: serde_json::Value = serde_json::from_slice(&m.body).ok()?;
    let list = v.get("manifests")?.as_array()?;
    Some(
        list.iter()
            .filter_map(|c| c.get("digest")?.as_str().map(str::to_string))
            .collect(),
    )
}

/// Different digests: is one side an index holding the other side's manifest?
async fn converted(
    source: &RegistryClient,
    repo: &str,
    src_digest: &str,
    dest: &RegistryClient,
    target: &str,
    dst_digest: &str,
) -> Result<(Status, Option<String>), VerifyError> {
    let (s, d) = tokio::try_join!(source.manifest(repo, src_digest), async {
        dest.manifest(target, dst_digest)
            .await
            .map_err(|e| VerifyError::Destination(e.to_string()))
    })?;
    let (Some(s), Some(d)) = (s, d) else {
        return Ok((Status::Different, None));
    };
    if index_children(&d).is_some_and(|c| c.iter().any(|x| x == &s.digest)) {
        return Ok((
            Status::PlatformConverted,
            Some("the source holds one platform of the destination's multi-arch index".into()),
        ));
    }
    if index_children(&s).is_some_and(|c| c.iter().any(|x| x == &d.digest)) {
        return Ok((
            Status::PlatformConverted,
            Some("the destination holds one platform of the source's multi-arch index (Harbor 1.x replicated a single platform)".into()),
        ));
    }
    Ok((Status::Different, None))
}
