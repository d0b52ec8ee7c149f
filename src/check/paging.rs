//! `check`: which paging mode each listing action of the cloud API speaks (what `Offset` means:
//! a page number from 1, a page index from 0 or an item offset; docs/tcr-contract.md). Two calls
//! per action with `Limit` 2 tell it when there are three items or more; the adapter pages every
//! mode right either way, so this is information, never a failure.

use tcr_adapter::tencentcloud::pager::{full_name, probe, Answer};
use tcr_adapter::tencentcloud::{ApiCredential, ApiError, PagingMode, TcrApiClient};

use super::Report;

const NAME: &str = "cloud API paging";
/// `Limit` of the probes.
const PROBE_LIMIT: i64 = 2;

fn told(action: &str, what: &str, mode: Result<Option<PagingMode>, ApiError>) -> String {
    match mode {
        Ok(Some(m)) => format!("{action}: {m}"),
        Ok(None) => format!("{action}: not told (fewer than 3 {what})"),
        Err(e) => format!(
            "{action}: not asked ({})",
            e.code().unwrap_or("unreachable")
        ),
    }
}

pub(super) async fn check_paging(
    api: &TcrApiClient,
    keys: &ApiCredential,
    registry_id: &str,
    r: &mut Report,
) {
    let namespaces = probe(
        |n: &tcr_adapter::tencentcloud::models::TcrNamespaceInfo| n.name.clone(),
        |offset| async move {
            api.describe_namespaces(keys, registry_id, None, PROBE_LIMIT, offset)
                .await
                .map(|a| Answer {
                    items: a.namespace_list,
                    total: a.total_count,
                })
        },
    )
    .await;
    // The repositories of every namespace; their first one for the images.
    let first_repo = std::sync::Mutex::new(None);
    let repositories = probe(full_name, |offset| {
        let first_repo = &first_repo;
        async move {
            let a = api
                .describe_repositories(keys, registry_id, None, None, PROBE_LIMIT, offset)
                .await?;
            if let Some(repo) = a.repository_list.first() {
                first_repo
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get_or_insert_with(|| full_name(repo));
            }
            Ok(Answer {
                items: a.repository_list,
                total: a.total_count,
            })
        }
    })
    .await;
    let repo = first_repo.into_inner().unwrap_or_else(|e| e.into_inner());
    let images = match repo.as_deref().and_then(|f| f.split_once('/')) {
        Some((ns, name)) => told(
            "DescribeImages",
            &format!("tags in {ns}/{name}"),
            probe(
                |i: &tcr_adapter::tencentcloud::models::TcrImageInfo| i.image_version.clone(),
                |offset| async move {
                    api.describe_images(keys, registry_id, ns, name, PROBE_LIMIT, offset)
                        .await
                        .map(|a| Answer {
                            items: a.image_info_list,
                            total: a.total_count,
                        })
                },
            )
            .await,
        ),
        None => "DescribeImages: not told (no repository)".to_string(),
    };
    r.ok(
        NAME,
        format!(
            "Offset is read as: {}; {}; {} (the adapter tells it from the answers and pages every mode)",
            told("DescribeNamespaces", "namespaces", namespaces),
            told("DescribeRepositories", "repositories", repositories),
            images
        ),
    );
}
