//! `CreateNamespace`, `DescribeNamespaces` (name filter and `Offset` as the quirks say;
//! docs/tcr-contract.md) and `DeleteNamespace`.

use serde_json::{json, Map, Value};

use super::params::{name_matches, paginate, Fault, Listing, Offset};
use super::{fields, require_instance, Call, EmulatorState};
use crate::emulator::namespaces::{NamespaceInfo, NamespaceStoreError};

/// TCR's namespace rule: 2–30 characters, lower-case letters and digits, separated by single
/// `.`, `_` or `-` (not at either end).
pub fn valid_namespace_name(name: &str) -> bool {
    let seps = |c: char| matches!(c, '.' | '_' | '-');
    (2..=30).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || seps(c))
        && name.split(seps).all(|part| !part.is_empty())
}

fn info(n: &NamespaceInfo) -> Value {
    let public = n.public.to_string();
    json!({
        "Name": n.name,
        "CreationTime": n.creation_time,
        "Public": n.public,
        "NamespaceId": n.id,
        "TagSpecification": {"ResourceType": "namespace", "Tags": []},
        "Metadata": [
            {"Key": "auto_scan", "Value": "false"},
            {"Key": "prevent_vul", "Value": "false"},
            {"Key": "public", "Value": public},
        ],
        "CVEWhitelistItems": [],
        "AutoScan": false,
        "PreventVUL": false,
        "Severity": "",
    })
}

pub fn create(state: &EmulatorState, call: &Call<'_>) -> Result<Map<String, Value>, Fault> {
    require_instance(state, call)?;
    let p = &call.params;
    let name = p.str("NamespaceName")?;
    super::auth::check_namespace(state, call.account, "CreateNamespace", name)?;
    let public = p.bool("IsPublic")?;
    if !valid_namespace_name(name) {
        return Err(Fault::new(
            "InvalidParameter.ErrorTcrInvalidParameter",
            format!(
                "The namespace name `{name}` is invalid: it must be 2 to 30 characters of lower-case letters and digits, optionally separated by single `.`, `_` or `-`, and must not start or end with a separator."
            ),
        ));
    }
    match state.namespaces.create(name, public) {
        Ok(_) => Ok(Map::new()),
        Err(NamespaceStoreError::Exists(_)) => Err(Fault::new(
            "FailedOperation.ErrorTcrResourceConflict",
            format!("The project named {name} already exists"),
        )),
        Err(e) => Err(Fault::new("InternalError.DbError", e.to_string())),
    }
}

pub fn describe(state: &EmulatorState, call: &Call<'_>) -> Result<Map<String, Value>, Fault> {
    require_instance(state, call)?;
    let p = &call.params;
    let quirks = state.cfg.quirks;
    let page = p.page(
        (20, 1000),
        Offset::of(quirks.paging, Listing::Namespaces),
        quirks.limit_cap,
    )?;
    let filter = p.opt_str("NamespaceName")?.unwrap_or("");
    let all: Vec<Value> = state
        .namespaces
        .list()
        .iter()
        .filter(|n| name_matches(quirks.name_filter, &n.name, filter))
        .map(info)
        .collect();
    let total = all.len();
    Ok(fields(
        json!({"NamespaceList": paginate(all, page), "TotalCount": total}),
    ))
}

pub async fn delete(state: &EmulatorState, call: &Call<'_>) -> Result<Map<String, Value>, Fault> {
    require_instance(state, call)?;
    let name = call.params.str("NamespaceName")?;
    super::auth::check_namespace(state, call.account, "DeleteNamespace", name)?;
    if state.namespaces.get(name).is_none() {
        return Err(Fault::not_found(format_args!("The namespace `{name}`")));
    }
    let prefix = format!("{name}/");
    let repos = state
        .storage
        .list_repositories()
        .await
        .into_iter()
        .filter(|r| r.name.starts_with(&prefix))
        .count();
    if repos > 0 {
        return Err(Fault::new(
            "FailedOperation.PreconditionFailed",
            format!("The namespace `{name}` still holds {repos} repositories: delete them first."),
        ));
    }
    match state.namespaces.delete(name) {
        Ok(()) => Ok(Map::new()),
        Err(NamespaceStoreError::NotFound(_)) => {
            Err(Fault::not_found(format_args!("The namespace `{name}`")))
        }
        Err(e) => Err(Fault::new("InternalError.DbError", e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::valid_namespace_name;

    #[test]
    fn namespace_naming_rule() {
        for ok in ["ab", "team-a", "a.b_c-d", "a1", &"a".repeat(30)] {
            assert!(valid_namespace_name(ok), "{ok}");
        }
        for bad in [
            "a",
            "Team",
            "-a",
            "a-",
            "a--b",
            "a._b",
            "a/b",
            "",
            &"a".repeat(31),
            "ü1",
        ] {
            assert!(!valid_namespace_name(bad), "{bad}");
        }
    }
}
