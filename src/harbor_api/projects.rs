//! `/api/projects`: Harbor projects are TCR namespaces. `GET` lists them (`DescribeNamespaces`)
//! in Harbor's shape — `{project_id, name, metadata:{public}}`, never a `registry_id` (2.5+ would
//! take the project for a proxy cache and skip it) — filtered by `name=` (1.x) or
//! `q=name={a b}` (2.5+), paged with relative `Link`s. `POST` creates one through the namespace
//! provisioner (policy, rename map, dry run, audit, one call per namespace): 201 for the call that
//! created it, 409 when it was already there — both let Harbor go on.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::caller::{self, Anonymous};
use super::charts::chart_api;
use super::names::Project;
use super::HarborFront;
use crate::credentials::ClientIdentity;
use crate::namespaces::Outcome;
use crate::oci::{ErrorCode, OciError};
use crate::tencentcloud::models::TcrNamespaceInfo;
use crate::upstream::ForwardBody;

/// Largest `page_size` honoured (Harbor's own maximum).
const MAX_PAGE_SIZE: usize = 100;

/// The listing's query, parsed leniently (the first value of a repeated key wins).
#[derive(Debug, Default)]
pub struct ListQuery {
    name: Option<String>,
    q: Option<String>,
    page: Option<String>,
    page_size: Option<String>,
}

impl ListQuery {
    fn parse(query: &str) -> ListQuery {
        let mut out = ListQuery::default();
        for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
            let slot = match k.as_ref() {
                "name" => &mut out.name,
                "q" => &mut out.q,
                "page" => &mut out.page,
                "page_size" => &mut out.page_size,
                _ => continue,
            };
            slot.get_or_insert_with(|| v.into_owned());
        }
        out
    }

    /// The exact names asked for, in client names: `name=<n>` or `q=name={a b}` / `q=name=a`.
    fn names(&self) -> Option<Vec<String>> {
        if let Some(n) = self.name.as_deref().filter(|n| !n.is_empty()) {
            return Some(vec![n.to_string()]);
        }
        let q = self.q.as_deref()?;
        let v = q
            .split(',')
            .find_map(|kv| kv.trim().strip_prefix("name="))?;
        let v = v.trim();
        let v = v
            .strip_prefix('{')
            .and_then(|s| s.strip_suffix('}'))
            .or_else(|| v.strip_prefix('~'))
            .unwrap_or(v);
        Some(v.split_whitespace().map(str::to_string).collect())
    }

    fn paging(&self) -> Result<(usize, usize), OciError> {
        let num = |v: &Option<String>, name: &str, default: usize| match v.as_deref() {
            None | Some("") => Ok(default),
            Some(s) => s
                .trim()
                .parse::<usize>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| {
                    OciError::new(
                        ErrorCode::PaginationNumberInvalid,
                        format!("{name}={s:?} is not a positive integer"),
                    )
                    .with_status(StatusCode::BAD_REQUEST)
                }),
        };
        Ok((
            num(&self.page, "page", 1)?,
            num(&self.page_size, "page_size", 10)?.min(MAX_PAGE_SIZE),
        ))
    }
}

/// `GET /api/projects`.
pub async fn list(
    req: HttpRequest,
    front: web::Data<HarborFront>,
) -> Result<HttpResponse, OciError> {
    let query = ListQuery::parse(req.query_string());
    let identity = caller::identify(&req, &front, Anonymous::Refused).await?;
    let (page, size) = query.paging()?;
    let wanted = query.names();
    let projects = match caller::api_keys(&identity, &front) {
        Some(keys) => {
            let filter = wanted
                .as_ref()
                .filter(|w| w.len() == 1)
                .map(|w| front.namespaces.name_to_upstream(&w[0]));
            let all = front
                .namespaces
                .list_namespaces(keys, filter.as_deref())
                .await?;
            all.iter()
                .filter(|n| front.namespaces.is_listed(&n.name))
                .map(|n| project_json(&front, n))
                .collect::<Vec<_>>()
        }
        None => match &wanted {
            Some(names) => probe_projects(&front, &identity, names).await?,
            None => return Err(caller::keys_needed("listing projects")),
        },
    };
    let selected: Vec<Value> = projects
        .into_iter()
        .filter(|p| {
            wanted
                .as_ref()
                .is_none_or(|w| w.iter().any(|n| Some(n.as_str()) == p["name"].as_str()))
        })
        .collect();
    Ok(page_response(&req, selected, page, size))
}

fn project_json(front: &HarborFront, n: &TcrNamespaceInfo) -> Value {
    json!({
        "project_id": n.namespace_id,
        "name": front.namespaces.name_to_client(&n.name),
        "metadata": {"public": n.public.to_string()},
        "creation_time": n.creation_time,
        "deleted": false,
    })
}

/// Without API keys, existence is read from TCR's data plane: the chart repository of a
/// namespace answers 404 when the namespace does not exist.
async fn probe_projects(
    front: &HarborFront,
    identity: &ClientIdentity,
    names: &[String],
) -> Result<Vec<Value>, OciError> {
    let mut found = Vec::new();
    for name in names {
        // A name that is no project, or that the policy refuses, is simply not listed.
        let Ok(project) = Project::parse(name) else {
            continue;
        };
        let Ok(upstream) = front.namespaces.admit(project.as_str()) else {
            continue;
        };
        if namespace_exists(front, identity, &upstream).await? {
            found.push(
                json!({"project_id": 0, "name": project.as_str(), "metadata": {"public": "false"}}),
            );
        }
    }
    Ok(found)
}

/// Whether TCR has the upstream namespace `ns`, asked with the caller's registry credential.
async fn namespace_exists(
    front: &HarborFront,
    identity: &ClientIdentity,
    ns: &str,
) -> Result<bool, OciError> {
    let resp = front
        .upstream
        .send_basic(
            reqwest::Method::GET,
            &chart_api(ns, &[])?,
            Default::default(),
            ForwardBody::Empty,
            caller::upstream_basic(identity).as_ref(),
            "chart_api",
        )
        .await?;
    match resp.status().as_u16() {
        200..=299 => Ok(true),
        404 => Ok(false),
        s => Err(OciError::new(
            ErrorCode::Unavailable,
            format!("cannot tell whether namespace {ns} exists: TCR answered {s}"),
        )
        .with_status(StatusCode::BAD_GATEWAY)),
    }
}

/// One page of `items` with a relative `Link` to the next (and `X-Total-Count`).
fn page_response(req: &HttpRequest, items: Vec<Value>, page: usize, size: usize) -> HttpResponse {
    let total = items.len();
    let start = (page - 1).saturating_mul(size).min(total);
    let end = start.saturating_add(size).min(total);
    let mut out = HttpResponse::Ok();
    out.insert_header(("X-Total-Count", total.to_string()));
    if end < total {
        let mut q: Vec<(String, String)> =
            url::form_urlencoded::parse(req.query_string().as_bytes())
                .into_owned()
                .filter(|(k, _)| k != "page" && k != "page_size")
                .collect();
        q.push(("page".into(), (page + 1).to_string()));
        q.push(("page_size".into(), size.to_string()));
        let qs = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(q)
            .finish();
        out.insert_header(("Link", format!("<{}?{qs}>; rel=\"next\"", req.path())));
    }
    out.json(&items[start..end])
}

/// The body of `POST /api/projects`.
#[derive(Debug, Deserialize)]
pub struct NewProject {
    project_name: String,
    #[serde(default)]
    metadata: Option<Map<String, Value>>,
}

/// Harbor's `public` metadata: a bool, or the strings `"true"`/`"false"` (also `"1"`/`"0"`).
fn parse_public(metadata: Option<&Map<String, Value>>) -> Result<Option<bool>, OciError> {
    let Some(v) = metadata.and_then(|m| m.get("public")) else {
        return Ok(None);
    };
    match v {
        Value::Bool(b) => Ok(Some(*b)),
        Value::String(s) if matches!(s.as_str(), "true" | "1") => Ok(Some(true)),
        Value::String(s) if matches!(s.as_str(), "false" | "0") => Ok(Some(false)),
        Value::Number(n) if n.as_i64() == Some(1) => Ok(Some(true)),
        Value::Number(n) if n.as_i64() == Some(0) => Ok(Some(false)),
        other => Err(OciError::new(
            ErrorCode::NameInvalid,
            format!("metadata.public must be true or false (a bool or a string), not {other}"),
        )
        .with_status(StatusCode::BAD_REQUEST)),
    }
}

/// `POST /api/projects`: ensure the namespace; 201 when this call created it, 409 otherwise.
pub async fn create(
    req: HttpRequest,
    body: web::Bytes,
    front: web::Data<HarborFront>,
) -> Result<HttpResponse, OciError> {
    let identity = caller::identify(&req, &front, Anonymous::Refused).await?;
    let project: NewProject = serde_json::from_slice(&body).map_err(|e| {
        OciError::new(
            ErrorCode::NameInvalid,
            format!("the body must be {{\"project_name\": \"…\", \"metadata\": {{…}}}}: {e}"),
        )
        .with_status(StatusCode::BAD_REQUEST)
    })?;
    let name = project.project_name.trim();
    let public = parse_public(project.metadata.as_ref())?;
    // The policy gate is the parser here: the rename map, then TCR's naming rule (a 403 naming
    // the rule, as on /v2/), allow and deny.
    let upstream = front.namespaces.admit(name)?;
    tracing::info!(project = %name, namespace = %upstream, harbor_public = ?public, "Harbor asks for a project");
    // Created with the caller's own keys, or the provisioner's for an instance token; never for
    // a tcr$ service account (`namespaces::Acting`).
    let outcome = front
        .namespaces
        .ensure_outcome(&upstream, &identity)
        .await?;
    let created = match outcome {
        Outcome::Created => true,
        Outcome::Unchecked => {
            if !namespace_exists(&front, &identity, &upstream).await? {
                return Err(front.namespaces.keys_needed_error(&upstream));
            }
            false
        }
        _ => false,
    };
    if created {
        return Ok(HttpResponse::Created()
            .insert_header(("Location", format!("/api/projects?name={name}")))
            .finish());
    }
    Err(OciError::new(
        ErrorCode::Denied,
        format!("The project named {name} already exists"),
    )
    .with_status(StatusCode::CONFLICT))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(name: Option<&str>, q: Option<&str>) -> ListQuery {
        ListQuery {
            name: name.map(str::to_string),
            q: q.map(str::to_string),
            ..Default::default()
        }
    }

    #[test]
    fn name_filters_of_every_generation() {
        assert_eq!(q(Some("lib"), None).names(), Some(vec!["lib".to_string()]));
        assert_eq!(
            q(None, Some("name={a b}")).names(),
            Some(vec!["a".to_string(), "b".to_string()])
        );
        assert_eq!(q(None, Some("name=a")).names(), Some(vec!["a".to_string()]));
        assert_eq!(q(None, None).names(), None);
        assert_eq!(q(Some(""), None).names(), None);
    }

    #[test]
    fn public_is_a_bool_or_a_string() {
        let m = |v: Value| {
            let mut m = Map::new();
            m.insert("public".into(), v);
            m
        };
        assert_eq!(parse_public(Some(&m(json!("true")))).unwrap(), Some(true));
        assert_eq!(parse_public(Some(&m(json!(false)))).unwrap(), Some(false));
        assert_eq!(parse_public(None).unwrap(), None);
        let e = parse_public(Some(&m(json!("maybe")))).unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
    }
}
