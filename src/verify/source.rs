//! Reading the source: what the old registry holds (repository → tag → manifest digest, and
//! project/chart → version → chart digest). Two kinds: any registry through `/v2/_catalog`,
//! `tags/list` and manifest HEADs; Harbor 1.x through its v1 API (harbor-api-shim.md §1.9:
//! `/api/projects`, `/api/repositories?project_id=`, `/api/repositories/<repo>/tags`, and the
//! ChartMuseum API `/api/chartrepo/<p>/charts[/<name>]`), which gives tag digests in one call
//! per repository.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures_util::{stream, StreamExt, TryStreamExt};
use reqwest::Method;
use tokio::sync::Semaphore;

use super::client::RegistryClient;
use super::options::{Filters, SourceKind};
use super::progress::Progress;
use super::VerifyError;

/// tag (or chart version) → digest.
pub type Versions = BTreeMap<String, String>;

/// What one side holds.
#[derive(Debug, Default, Clone)]
pub struct Inventory {
    /// `project/name` → tags.
    pub images: BTreeMap<String, Versions>,
    /// `project/chart` → versions.
    pub charts: BTreeMap<String, Versions>,
}

/// Decide the source kind: Harbor answers `/api/systeminfo` with JSON naming its version.
pub async fn detect(client: &RegistryClient) -> Result<SourceKind, VerifyError> {
    let resp = client
        .send(Method::GET, "/api/systeminfo", None, "")
        .await?;
    if resp.status().is_success() {
        let v: serde_json::Value = resp.json().await.unwrap_or_default();
        if v.get("harbor_version").is_some() {
            return Ok(SourceKind::Harbor);
        }
    }
    Ok(SourceKind::Registry)
}

/// Read the source through its registry API.
pub async fn read_registry(
    client: Arc<RegistryClient>,
    filters: &Filters,
    concurrency: usize,
    progress: &Progress,
) -> Result<Inventory, VerifyError> {
    let repos: Vec<String> = client
        .catalog()
        .await?
        .into_iter()
        .filter(|r| filters.repo(r))
        .collect();
    progress.start(repos.len());
    let permits = Arc::new(Semaphore::new(concurrency.max(1)));
    let images: Vec<(String, Versions)> = stream::iter(repos)
        .map(|repo| {
            let client = client.clone();
            let permits = permits.clone();
            async move {
                let tags = {
                    let _p = permits.acquire().await.expect("semaphore open");
                    client.tags(&repo).await?
                };
                let tags: Vec<String> = tags.into_iter().filter(|t| filters.tag(t)).collect();
                let digests: Vec<(String, Option<String>)> = stream::iter(tags)
                    .map(|tag| {
                        let client = client.clone();
                        let permits = permits.clone();
                        let repo = repo.clone();
                        async move {
                            let _p = permits.acquire().await.expect("semaphore open");
                            let d = client.manifest_digest(&repo, &tag).await?;
                            Ok::<_, VerifyError>((tag, d))
                        }
                    })
                    .buffer_unordered(concurrency.max(1))
                    .try_collect()
                    .await?;
                progress.tick();
                let versions = digests
                    .into_iter()
                    .filter_map(|(t, d)| d.map(|d| (t, d)))
                    .collect();
                Ok::<_, VerifyError>((repo, versions))
            }
        })
        .buffer_unordered(concurrency.max(1))
        .try_collect()
        .await?;
    Ok(Inventory {
        images: images.into_iter().collect(),
        charts: BTreeMap::new(),
    })
}

/// Every page of a Harbor v1 list (`page`/`page_size`, until a short page).
async fn harbor_pages(
    client: &RegistryClient,
    path: &str,
) -> Result<Vec<serde_json::Value>, VerifyError> {
    const PAGE: usize = 500;
    let sep = if path.contains('?') { '&' } else { '?' };
    let mut out = Vec::new();
    for page in 1.. {
        let url = format!("{path}{sep}page={page}&page_size={PAGE}");
        let Some((v, _)) = client.get_json(&url, "").await? else {
            return Err(VerifyError::Source(format!(
                "{}{path}: 404 (is this a Harbor 1.x v1 API? try --source-kind registry)",
                client.base()
            )));
        };
        let items = v.as_array().cloned().unwrap_or_default();
        let n = items.len();
        out.extend(items);
        if n < PAGE {
            break;
        }
    }
    Ok(out)
}

fn str_field<'a>(v: &'a serde_json::Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(|s| s.as_str())
}

/// Read a Harbor 1.x source through its v1 API (images and charts).
pub async fn read_harbor(
    client: Arc<RegistryClient>,
    filters: &Filters,
    concurrency: usize,
    with_charts: bool,
    progress: &Progress,
) -> Result<Inventory, VerifyError> {
    let projects: Vec<(i64, String)> = harbor_pages(&client, "/api/projects")
        .await?
        .iter()
        .filter_map(|p| {
            let id = p.get("project_id").and_then(|i| i.as_i64())?;
            let name = str_field(p, "name")?.to_string();
            filters.project(&name).then_some((id, name))
        })
        .collect();
    let mut repos = Vec::new();
    for (id, _) in &projects {
        let list = harbor_pages(&client, &format!("/api/repositories?project_id={id}")).await?;
        repos.extend(
            list.iter()
                .filter_map(|r| str_field(r, "name").map(str::to_string))
                .filter(|r| filters.repo(r)),
        );
    }
    let chart_projects: Vec<String> = if with_charts {
        projects.into_iter().map(|(_, n)| n).collect()
    } else {
        Vec::new()
    };
    progress.start(repos.len() + chart_projects.len());
    let images: Vec<(String, Versions)> = stream::iter(repos)
        .map(|repo| {
            let client = client.clone();
            async move {
                let path = format!("/api/repositories/{repo}/tags");
                let tags = match client.get_json(&path, "").await? {
                    Some((v, _)) => v.as_array().cloned().unwrap_or_default(),
                    None => Vec::new(),
                };
                progress.tick();
                let versions = tags
                    .iter()
                    .filter_map(|t| {
                        let name = str_field(t, "name")?;
                        let digest = str_field(t, "digest")?;
                        filters
                            .tag(name)
                            .then(|| (name.to_string(), digest.to_string()))
                    })
                    .collect();
                Ok::<_, VerifyError>((repo, versions))
            }
        })
        .buffer_unordered(concurrency.max(1))
        .try_collect()
        .await?;
    let mut charts = BTreeMap::new();
    for project in chart_projects {
        charts.extend(read_charts(&client, &project, filters, concurrency).await?);
        progress.tick();
    }
    Ok(Inventory {
        images: images.into_iter().collect(),
        charts,
    })
}

/// The charts of one project through the ChartMuseum API (`project/chart` → version → digest);
/// a project without a chart repository (404) has none. Used for both sides.
pub async fn read_charts(
    client: &RegistryClient,
    project: &str,
    filters: &Filters,
    concurrency: usize,
) -> Result<BTreeMap<String, Versions>, VerifyError> {
    let Some((list, _)) = client
        .get_json(&format!("/api/chartrepo/{project}/charts"), "")
        .await?
    else {
        return Ok(BTreeMap::new());
    };
    let names: Vec<String> = list
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|c| str_field(c, "name").map(str::to_string))
                .filter(|n| filters.repo(&format!("{project}/{n}")))
                .collect()
        })
        .unwrap_or_default();
    stream::iter(names)
        .map(|name| async move {
            let path = format!("/api/chartrepo/{project}/charts/{name}");
            let versions = match client.get_json(&path, "").await? {
                Some((v, _)) => v.as_array().cloned().unwrap_or_default(),
                None => Vec::new(),
            };
            let versions: Versions = versions
                .iter()
                .filter_map(|v| {
                    let version = str_field(v, "version")?;
                    let digest = str_field(v, "digest")?;
                    filters
                        .tag(version)
                        .then(|| (version.to_string(), digest.to_string()))
                })
                .collect();
            Ok::<_, VerifyError>((format!("{project}/{name}"), versions))
        })
        .buffer_unordered(concurrency.max(1))
        .try_collect()
        .await
}
