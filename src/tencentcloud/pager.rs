//! The one pager of every cloud-API listing. TCR's sources disagree on what `Offset` means
//! (docs/tcr-contract.md, "Paging"): a page number from 1 (the API reference for
//! `DescribeRepositories`/`DescribeImages`, Harbor's TCR provider), a page index from 0 (Harbor's
//! provider for `DescribeNamespaces`) or an item offset (Terraform's provider). The pager asks
//! offset 0, then offset 1, and tells the mode from how the two answers overlap:
//!
//! - the same items again → a page number from 1 (0 and 1 are both the first page);
//! - the first answer shifted by one item → an item offset;
//! - nothing in common → a page index from 0.
//!
//! It then keeps asking in that mode, drops items it already holds (by name), and stops when it
//! holds `TotalCount` items, on an empty page, on a page with nothing new, or after
//! [`MAX_PAGES`] calls. The mode is noted on the client ([`TcrApiClient::paging`]: logged,
//! and shown by `check`).

use std::collections::HashSet;
use std::future::Future;

use super::models::{TcrImageInfo, TcrNamespaceInfo, TcrRepositoryInfo};
use super::{ApiCredential, ApiError, PagingMode, TcrApiClient};

/// Items asked per call (the documented maximum of `DescribeRepositories`).
pub const PAGE_LIMIT: i64 = 100;
/// Calls made at most for one listing (100 000 items at [`PAGE_LIMIT`]).
pub const MAX_PAGES: usize = 1000;

/// One answer: its items and `TotalCount`.
pub struct Answer<T> {
    pub items: Vec<T>,
    pub total: i64,
}

/// A whole listing.
#[derive(Debug)]
pub struct Listed<T> {
    /// Every item once, in the order first seen.
    pub items: Vec<T>,
    /// The mode told from the answers; `None` when one page held everything.
    pub mode: Option<PagingMode>,
    /// Calls made.
    pub calls: usize,
}

/// Page through `fetch(offset)` (see the module comment); `key` names an item. Item offsets
/// advance by what each page held, and a short page is no end while `TotalCount` says more, so a
/// server that caps `Limit` below what was asked is paged right too.
pub async fn list_all<T, F, Fut>(
    key: impl Fn(&T) -> String,
    mut fetch: F,
) -> Result<Listed<T>, ApiError>
where
    F: FnMut(i64) -> Fut,
    Fut: Future<Output = Result<Answer<T>, ApiError>>,
{
    let mut seen = HashSet::new();
    let mut out = Listed {
        items: Vec::new(),
        mode: None,
        calls: 0,
    };
    // Adds the new items of a page; how many were new.
    let mut add = |items: Vec<T>, out: &mut Listed<T>| -> usize {
        let before = out.items.len();
        for item in items {
            if seen.insert(key(&item)) {
                out.items.push(item);
            }
        }
        out.items.len() - before
    };
    let done = |out: &Listed<T>, total: i64| total > 0 && out.items.len() as i64 >= total;

    out.calls += 1;
    let first = match fetch(0).await {
        Ok(a) => a,
        // A server reading page numbers from 1 may refuse 0: start at 1.
        Err(e) if e.code().is_some_and(|c| c.starts_with("InvalidParameter")) => {
            out.calls += 1;
            let a = fetch(1).await.map_err(|_| e)?;
            out.mode = Some(PagingMode::PageFromOne);
            let total = a.total;
            add(a.items, &mut out);
            return page_on(out, total, 2, &mut fetch, &mut add, done).await;
        }
        Err(e) => return Err(e),
    };
    let mut total = first.total;
    if first.items.is_empty() {
        if total <= 0 {
            return Ok(out);
        }
        // Empty at 0 while items exist: 0 is no page here, 1 is the first.
        out.calls += 1;
        let a = fetch(1).await?;
        out.mode = Some(PagingMode::PageFromOne);
        add(a.items, &mut out);
        return page_on(out, a.total, 2, &mut fetch, &mut add, done).await;
    }
    let first_keys: HashSet<String> = first.items.iter().map(&key).collect();
    add(first.items, &mut out);
    if done(&out, total) {
        return Ok(out);
    }
    out.calls += 1;
    let second = fetch(1).await?;
    total = second.total.max(total);
    if second.items.is_empty() {
        return Ok(out);
    }
    let mode = classify(&first_keys, second.items.iter().map(&key));
    let next = match mode {
        PagingMode::Items => 1 + second.items.len() as i64,
        _ => 2,
    };
    out.mode = Some(mode);
    add(second.items, &mut out);
    page_on(out, total, next, &mut fetch, &mut add, done).await
}

/// The mode told by the answer at offset 1 (its item names `second`, non-empty) after the
/// answer at offset 0 (`first`): all seen → page number from 1; some → item offset; none → page
/// index from 0.
fn classify(first: &HashSet<String>, second: impl Iterator<Item = String>) -> PagingMode {
    let (mut n, mut overlap) = (0, 0);
    for k in second {
        n += 1;
        overlap += usize::from(first.contains(&k));
    }
    if overlap == n {
        PagingMode::PageFromOne
    } else if overlap > 0 {
        PagingMode::Items
    } else {
        PagingMode::PageFromZero
    }
}

/// Tell the mode from two calls only (offsets 0 and 1; `fetch` should ask a small `Limit`,
/// e.g. 2): `None` when the first answer holds everything (fewer items than a page and one).
pub async fn probe<T, F, Fut>(
    key: impl Fn(&T) -> String,
    mut fetch: F,
) -> Result<Option<PagingMode>, ApiError>
where
    F: FnMut(i64) -> Fut,
    Fut: Future<Output = Result<Answer<T>, ApiError>>,
{
    let first = match fetch(0).await {
        Ok(a) => a,
        Err(e) if e.code().is_some_and(|c| c.starts_with("InvalidParameter")) => {
            return fetch(1)
                .await
                .map(|_| Some(PagingMode::PageFromOne))
                .map_err(|_| e)
        }
        Err(e) => return Err(e),
    };
    if first.items.is_empty() {
        return Ok((first.total > 0).then_some(PagingMode::PageFromOne));
    }
    if first.items.len() as i64 >= first.total {
        return Ok(None);
    }
    let second = fetch(1).await?;
    if second.items.is_empty() {
        return Ok(None);
    }
    let first: HashSet<String> = first.items.iter().map(&key).collect();
    Ok(Some(classify(&first, second.items.iter().map(key))))
}

/// Keep paging from `offset` in `out.mode` until done.
async fn page_on<T, F, Fut>(
    mut out: Listed<T>,
    mut total: i64,
    mut offset: i64,
    fetch: &mut F,
    add: &mut impl FnMut(Vec<T>, &mut Listed<T>) -> usize,
    done: impl Fn(&Listed<T>, i64) -> bool,
) -> Result<Listed<T>, ApiError>
where
    F: FnMut(i64) -> Fut,
    Fut: Future<Output = Result<Answer<T>, ApiError>>,
{
    while !done(&out, total) {
        if out.calls >= MAX_PAGES {
            tracing::warn!(
                calls = out.calls,
                items = out.items.len(),
                total,
                "cloud API listing stopped after {MAX_PAGES} pages"
            );
            break;
        }
        out.calls += 1;
        let page = fetch(offset).await?;
        total = page.total.max(total);
        let got = page.items.len() as i64;
        if got == 0 || add(page.items, &mut out) == 0 {
            break;
        }
        offset += match out.mode {
            Some(PagingMode::Items) => got,
            _ => 1,
        };
    }
    Ok(out)
}

/// `ns/repo` whether or not the API prefixed the name with its namespace.
pub fn full_name(r: &TcrRepositoryInfo) -> String {
    if r.name.contains('/') || r.namespace.is_empty() {
        r.name.clone()
    } else {
        format!("{}/{}", r.namespace, r.name)
    }
}

impl TcrApiClient {
    fn noted<T>(&self, action: &str, listed: Listed<T>) -> Listed<T> {
        if let Some(mode) = listed.mode {
            self.paging().note(action, mode, self.endpoint());
        }
        listed
    }

    /// Every namespace (or those the filter `name_filter` passes: partial or exact, compare
    /// names yourself), `limit` per call. `ResourceNotFound` (exactly: no namespace; not
    /// `ResourceNotFound.TcrResourceNotFound`, no instance) is an empty listing, as Terraform's
    /// provider reads it.
    pub async fn all_namespaces(
        &self,
        cred: &ApiCredential,
        registry_id: &str,
        name_filter: Option<&str>,
        limit: i64,
    ) -> Result<Listed<TcrNamespaceInfo>, ApiError> {
        let listed = list_all(
            |n: &TcrNamespaceInfo| n.name.clone(),
            |offset| async move {
                match self
                    .describe_namespaces(cred, registry_id, name_filter, limit, offset)
                    .await
                {
                    Ok(r) => Ok(Answer {
                        items: r.namespace_list,
                        total: r.total_count,
                    }),
                    Err(e) if e.code() == Some("ResourceNotFound") => Ok(Answer {
                        items: Vec::new(),
                        total: 0,
                    }),
                    Err(e) => Err(e),
                }
            },
        )
        .await?;
        Ok(self.noted("DescribeNamespaces", listed))
    }

    /// The namespace named exactly `name`, if any: `DescribeNamespaces` filtered by the name
    /// (a partial filter may match many: every page is read) and compared exactly.
    pub async fn find_namespace(
        &self,
        cred: &ApiCredential,
        registry_id: &str,
        name: &str,
    ) -> Result<Option<TcrNamespaceInfo>, ApiError> {
        let listed = self
            .all_namespaces(cred, registry_id, Some(name), PAGE_LIMIT)
            .await?;
        Ok(listed.items.into_iter().find(|n| n.name == name))
    }

    /// Every repository of `namespace` (all namespaces: `None`), `limit` per call. Only
    /// repositories of `namespace` are kept; a missing namespace has none (a `ResourceNotFound…`
    /// without a namespace is an error: the instance is missing).
    pub async fn all_repositories(
        &self,
        cred: &ApiCredential,
        registry_id: &str,
        namespace: Option<&str>,
        limit: i64,
    ) -> Result<Listed<TcrRepositoryInfo>, ApiError> {
        let mut listed = list_all(full_name, |offset| async move {
            match self
                .describe_repositories(cred, registry_id, namespace, None, limit, offset)
                .await
            {
                Ok(r) => Ok(Answer {
                    items: r.repository_list,
                    total: r.total_count,
                }),
                Err(e) if e.is_not_found() && (namespace.is_some() || offset > 0) => Ok(Answer {
                    items: Vec::new(),
                    total: 0,
                }),
                Err(e) => Err(e),
            }
        })
        .await?;
        if let Some(ns) = namespace {
            listed
                .items
                .retain(|r| r.namespace.is_empty() || r.namespace == ns);
        }
        Ok(self.noted("DescribeRepositories", listed))
    }

    /// Every tagged image of `namespace/repository`, `limit` per call. Errors (a missing
    /// repository: `ResourceNotFound…`) are the caller's to read.
    pub async fn all_images(
        &self,
        cred: &ApiCredential,
        registry_id: &str,
        namespace: &str,
        repository: &str,
        limit: i64,
    ) -> Result<Listed<TcrImageInfo>, ApiError> {
        let listed = list_all(
            |i: &TcrImageInfo| i.image_version.clone(),
            |offset| async move {
                self.describe_images(cred, registry_id, namespace, repository, limit, offset)
                    .await
                    .map(|r| Answer {
                        items: r.image_info_list,
                        total: r.total_count,
                    })
            },
        )
        .await?;
        Ok(self.noted("DescribeImages", listed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A server of `n` items named `i0…`, `limit` per page, reading `Offset` as `mode`
    /// (`PageFromOne` answers 0 like 1); counts calls.
    fn server(
        n: usize,
        limit: usize,
        mode: PagingMode,
        calls: &Mutex<Vec<i64>>,
    ) -> impl FnMut(i64) -> std::future::Ready<Result<Answer<String>, ApiError>> + '_ {
        move |offset| {
            calls.lock().unwrap().push(offset);
            let o = offset as usize;
            let skip = match mode {
                PagingMode::Items => o,
                PagingMode::PageFromZero => o * limit,
                PagingMode::PageFromOne => o.saturating_sub(1) * limit,
            };
            let items = (skip..n.min(skip + limit))
                .map(|i| format!("i{i}"))
                .collect();
            std::future::ready(Ok(Answer {
                items,
                total: n as i64,
            }))
        }
    }

    fn run(n: usize, limit: usize, mode: PagingMode) -> (Listed<String>, Vec<i64>) {
        let calls = Mutex::new(Vec::new());
        let listed = futures_util::FutureExt::now_or_never(list_all(
            |s: &String| s.clone(),
            server(n, limit, mode, &calls),
        ))
        .expect("ready futures")
        .expect("no error");
        (listed, calls.into_inner().unwrap())
    }

    #[test]
    fn every_mode_is_told_and_paged_to_the_end_without_duplicates() {
        for mode in [
            PagingMode::Items,
            PagingMode::PageFromZero,
            PagingMode::PageFromOne,
        ] {
            for n in [0, 1, 20, 21, 250] {
                let (listed, calls) = run(n, 20, mode);
                let want: Vec<String> = (0..n).map(|i| format!("i{i}")).collect();
                let mut got = listed.items.clone();
                got.sort_by_key(|s| s[1..].parse::<usize>().unwrap());
                assert_eq!(got, want, "{mode:?} n={n} offsets {calls:?}");
                if n > 20 {
                    assert_eq!(listed.mode, Some(mode), "n={n} offsets {calls:?}");
                }
                assert!(calls.len() <= n / 20 + 3, "{mode:?} n={n}: {calls:?}");
            }
        }
    }

    #[test]
    fn a_server_that_caps_the_limit_is_paged_right() {
        // Asked for 100, answers 30: a short page is not the end while TotalCount says more.
        for mode in [PagingMode::Items, PagingMode::PageFromOne] {
            let (listed, _) = run(95, 30, mode);
            assert_eq!(listed.items.len(), 95, "{mode:?}");
        }
    }

    /// A page-number server that refuses `Offset: 0`, or answers it with nothing.
    fn strict_from_one(
        n: usize,
        refuse: bool,
    ) -> impl FnMut(i64) -> std::future::Ready<Result<Answer<String>, ApiError>> {
        move |offset| {
            if offset == 0 && refuse {
                return std::future::ready(Err(ApiError::Api {
                    code: "InvalidParameterValue".into(),
                    message: "Offset must be at least 1".into(),
                    request_id: "r".into(),
                }));
            }
            let skip = (offset.max(1) as usize - 1) * 20;
            let items = if offset == 0 {
                Vec::new()
            } else {
                (skip..n.min(skip + 20)).map(|i| format!("i{i}")).collect()
            };
            std::future::ready(Ok(Answer {
                items,
                total: n as i64,
            }))
        }
    }

    #[test]
    fn a_server_without_page_zero_is_paged_from_one() {
        for refuse in [true, false] {
            let listed = futures_util::FutureExt::now_or_never(list_all(
                |s: &String| s.clone(),
                strict_from_one(45, refuse),
            ))
            .unwrap()
            .unwrap();
            assert_eq!(listed.items.len(), 45, "refuse={refuse}");
            assert_eq!(listed.mode, Some(PagingMode::PageFromOne));
        }
    }

    #[test]
    fn a_server_repeating_itself_ends_the_loop() {
        // TotalCount larger than what is served, and every offset answers the same page.
        let calls = Mutex::new(0);
        let listed = futures_util::FutureExt::now_or_never(list_all(
            |s: &String| s.clone(),
            |_offset| {
                *calls.lock().unwrap() += 1;
                std::future::ready(Ok::<_, ApiError>(Answer {
                    items: vec!["a".to_string(), "b".to_string()],
                    total: 1000,
                }))
            },
        ))
        .unwrap()
        .unwrap();
        assert_eq!(listed.items, ["a", "b"]);
        assert_eq!(
            *calls.lock().unwrap(),
            3,
            "0, 1 (told: page from 1), 2: nothing new"
        );
    }
}
