//! The `/v2/` answers that come from TCR's cloud API rather than its data plane: the catalog
//! (`DescribeRepositories`: TCR's data plane lists nothing for ordinary users) for callers that
//! hold API keys, and tag deletion (`DeleteImage`: TCR refuses `DELETE …/manifests/<tag>`).

use actix_web::HttpResponse;
use percent_encoding::percent_decode_str;

use super::RegistryFront;
use crate::oci::{ErrorCode, OciError, RepoName};
use crate::tencentcloud::ApiCredential;

/// `GET /v2/_catalog?n=&last=` from `DescribeRepositories` with the caller's keys: client names,
/// sorted, with a relative `Link: </v2/_catalog?last=…&n=…>; rel="next"` when more follow.
pub async fn catalog(
    front: &RegistryFront,
    keys: &ApiCredential,
    query: &str,
) -> Result<HttpResponse, OciError> {
    let mut n = None;
    let mut last = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = percent_decode_str(&v.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned();
        match k {
            "n" if !v.is_empty() => {
                n = Some(v.trim().parse::<usize>().map_err(|_| {
                    OciError::new(
                        ErrorCode::PaginationNumberInvalid,
                        format!("n={v:?} is not a non-negative integer"),
                    )
                })?)
            }
            "last" if !v.is_empty() => last = Some(v),
            _ => {}
        }
    }
    let page = front.namespaces.catalog(keys, n, last.as_deref()).await?;
    let mut out = HttpResponse::Ok();
    out.content_type("application/json");
    if let Some(next) = &page.next {
        out.insert_header(("Link", format!("<{next}>; rel=\"next\"")));
    }
    let body = serde_json::json!({ "repositories": page.repositories });
    Ok(out.body(body.to_string()))
}

/// `DELETE /v2/<name>/manifests/<tag>` through `DeleteImage`: 202, the manifest stays by digest.
pub async fn delete_tag(
    front: &RegistryFront,
    keys: &ApiCredential,
    upstream: &RepoName,
    tag: &str,
) -> Result<HttpResponse, OciError> {
    front.namespaces.delete_tag(keys, upstream, tag).await?;
    Ok(HttpResponse::Accepted().finish())
}
