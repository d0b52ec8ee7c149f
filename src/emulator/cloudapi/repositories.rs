//! `CreateRepository`, `DescribeRepositories`, `DescribeImages` and `DeleteImage`, over the
//! emulator's storage. Repository names in answers are namespace-prefixed, times in the formats
//! TCR uses.

use serde_json::{json, Map, Value};

use super::params::{name_matches, paginate, Fault, Listing, Offset};
use super::{fields, require_instance, Call, EmulatorState};
use crate::config::NameFilter;
use crate::emulator::storage::StorageError;

/// Go's `time.Time.String()` of a UTC instant: `2024-12-10 14:30:36.806 +0000 UTC`
/// (fractional seconds without trailing zeros).
pub fn go_time_string(ms: i64) -> String {
    let t = chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default();
    let frac = format!("{:03}", ms.rem_euclid(1000));
    let frac = frac.trim_end_matches('0');
    let dot = if frac.is_empty() { "" } else { "." };
    format!("{}{dot}{frac} +0000 UTC", t.format("%Y-%m-%d %H:%M:%S"))
}

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn storage_fault(e: StorageError, what: &str) -> Fault {
    match e {
        StorageError::NotFound(_) => Fault::not_found(what),
        other => Fault::new("InternalError", other.to_string()),
    }
}

/// The namespace must exist; returns whether it is public.
fn namespace(state: &EmulatorState, name: &str) -> Result<bool, Fault> {
    state
        .namespaces
        .get(name)
        .map(|n| n.public)
        .ok_or_else(|| Fault::not_found(format_args!("The namespace `{name}`")))
}

fn valid_repository_name(name: &str) -> bool {
    let seps = |c: char| matches!(c, '.' | '_' | '-' | '/');
    name.len() > 2
        && name.len() < 245
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || seps(c))
        && name.split(seps).all(|part| !part.is_empty())
}

pub async fn create(state: &EmulatorState, call: &Call<'_>) -> Result<Map<String, Value>, Fault> {
    require_instance(state, call)?;
    let p = &call.params;
    let ns = p.str("NamespaceName")?;
    let repo = p.str("RepositoryName")?;
    super::auth::check_namespace(state, call.account, "CreateRepository", ns)?;
    namespace(state, ns)?;
    if !valid_repository_name(repo) {
        return Err(Fault::new(
            "InvalidParameter.ErrorTcrInvalidParameter",
            format!("The repository name `{repo}` is invalid: it must be 3 to 244 characters of lower-case letters, digits and single `.`, `_`, `-` or `/` separators."),
        ));
    }
    let full = format!("{ns}/{repo}");
    match state.storage.create_repository(&full).await {
        Ok(true) => Ok(Map::new()),
        Ok(false) => Err(Fault::new(
            "FailedOperation.ErrorTcrResourceConflict",
            format!("The repository named {full} already exists"),
        )),
        Err(e) => Err(Fault::new("InternalError", e.to_string())),
    }
}

pub async fn describe(state: &EmulatorState, call: &Call<'_>) -> Result<Map<String, Value>, Fault> {
    require_instance(state, call)?;
    let p = &call.params;
    let quirks = state.cfg.quirks;
    let page = p.page(
        (20, 100),
        Offset::of(quirks.paging, Listing::Repositories),
        quirks.limit_cap,
    )?;
    let ns_filter = p.opt_str("NamespaceName")?.filter(|s| !s.is_empty());
    let repo_filter = p.opt_str("RepositoryName")?.unwrap_or("");
    if let Some(ns) = ns_filter {
        namespace(state, ns)?;
    }
    let mut repos: Vec<_> = state
        .storage
        .list_repositories()
        .await
        .into_iter()
        .filter_map(|r| {
            let (ns, name) = r.name.split_once('/')?;
            let keep = ns_filter.is_none_or(|f| f == ns)
                && name_matches(quirks.name_filter, name, repo_filter);
            let ns = ns.to_string();
            keep.then_some((ns, r))
        })
        .collect();
    match p.opt_str("SortBy")?.unwrap_or("") {
        "-creation_time" => repos.sort_by_key(|(_, r)| std::cmp::Reverse(r.created_ms)),
        "-update_time" => repos.sort_by_key(|(_, r)| std::cmp::Reverse(r.updated_ms)),
        "-name" => repos.sort_by(|a, b| b.1.name.cmp(&a.1.name)),
        _ => repos.sort_by(|a, b| a.1.name.cmp(&b.1.name)),
    }
    let total = repos.len();
    let list: Vec<Value> = paginate(repos, page)
        .into_iter()
        .map(|(ns, r)| {
            let public = state.namespaces.get(&ns).map(|n| n.public).unwrap_or(false);
            json!({
                "Name": r.name,
                "Namespace": ns,
                "CreationTime": go_time_string(r.created_ms),
                "UpdateTime": go_time_string(r.updated_ms),
                "Public": public,
                "Description": "",
                "BriefDescription": "",
            })
        })
        .collect();
    Ok(fields(json!({"RepositoryList": list, "TotalCount": total})))
}

pub async fn describe_images(
    state: &EmulatorState,
    call: &Call<'_>,
) -> Result<Map<String, Value>, Fault> {
    require_instance(state, call)?;
    let p = &call.params;
    let quirks = state.cfg.quirks;
    let page = p.page(
        (20, 100),
        Offset::of(quirks.paging, Listing::Images),
        quirks.limit_cap,
    )?;
    let ns = p.str("NamespaceName")?;
    let repo = p.str("RepositoryName")?;
    namespace(state, ns)?;
    let version = p.opt_str("ImageVersion")?.unwrap_or("");
    let digest = p.opt_str("Digest")?.filter(|d| !d.is_empty());
    let full = format!("{ns}/{repo}");
    let mut tags = state
        .storage
        .list_tag_summaries(&full)
        .await
        .map_err(|e| storage_fault(e, &format!("The repository `{full}`")))?;
    // `ExactMatch: true` asks for the whole tag; otherwise the name-filter quirk decides.
    let exact = p.opt_bool("ExactMatch")?.unwrap_or(false);
    let mode = if exact {
        NameFilter::Exact
    } else {
        quirks.name_filter
    };
    tags.retain(|t| name_matches(mode, &t.tag, version) && digest.is_none_or(|d| d == t.digest));
    tags.sort_by_key(|t| std::cmp::Reverse(t.updated_ms));
    let total = tags.len();
    let list: Vec<Value> = paginate(tags, page)
        .into_iter()
        .map(|t| {
            let kind = if t.media_type.contains("docker") {
                "docker"
            } else {
                "oci"
            };
            json!({
                "Digest": t.digest,
                "Size": t.size,
                "ImageVersion": t.tag,
                "UpdateTime": rfc3339(t.updated_ms),
                "Kind": kind,
            })
        })
        .collect();
    Ok(fields(json!({"ImageInfoList": list, "TotalCount": total})))
}

pub async fn delete_image(
    state: &EmulatorState,
    call: &Call<'_>,
) -> Result<Map<String, Value>, Fault> {
    require_instance(state, call)?;
    let p = &call.params;
    let ns = p.str("NamespaceName")?;
    let repo = p.str("RepositoryName")?;
    let tag = p.str("ImageVersion")?;
    super::auth::check_namespace(state, call.account, "DeleteImage", ns)?;
    namespace(state, ns)?;
    let full = format!("{ns}/{repo}");
    state
        .storage
        .delete_tag(&full, tag)
        .await
        .map_err(|e| storage_fault(e, &format!("The image `{full}:{tag}`")))?;
    Ok(Map::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_time_format() {
        assert_eq!(
            go_time_string(1_733_841_036_806),
            "2024-12-10 14:30:36.806 +0000 UTC"
        );
        assert_eq!(
            go_time_string(1_733_841_036_800),
            "2024-12-10 14:30:36.8 +0000 UTC"
        );
        assert_eq!(
            go_time_string(1_733_841_036_000),
            "2024-12-10 14:30:36 +0000 UTC"
        );
    }
}
