//! 04_management_test.go (v1.1.1): 10 specs.

use crate::client::{blob_path, manifest_path, Resp};
use crate::discovery::tag_list;
use crate::fixtures::{OCI_MANIFEST, TEST_TAG_NAME};
use crate::report::{Category, Status};
use crate::suite::{push_blobs, put_manifest, spec, want, want_2xx, Ctx, PASS};
use reqwest::Method;

pub async fn run(x: &mut Ctx) {
    let tag_to_delete = TEST_TAG_NAME;
    let mut num_tags = 0usize;
    let mut blob_delete_allowed = true;

    x.section(Category::ContentManagement, "Setup");
    let blobs = vec![
        (
            x.f.configs[3].clone(),
            "Populate registry with test config blob",
        ),
        (x.f.layer.clone(), "Populate registry with test layer"),
    ];
    push_blobs(x, blobs).await;
    spec!(x, "Populate registry with test tag", {
        let resp = put_manifest(x, tag_to_delete, OCI_MANIFEST, &x.f.manifests[3]).await?;
        want_2xx(&resp, &[])?;
        PASS
    });
    let r = async {
        let resp = get_tags_json(x).await?;
        Ok(tag_list(&resp).len())
    }
    .await;
    let r = r.map(|n| {
        num_tags = n;
        Status::Pass
    });
    x.record(
        "Check how many tags there are before anything gets deleted",
        r,
    );

    x.section(Category::ContentManagement, "Manifest delete");
    spec!(x, "DELETE request to manifest tag should return 202, unless tag deletion is disallowed (400/405)", {
        let resp =
            x.c.call(Method::DELETE, &manifest_path(tag_to_delete))
                .await?;
        want(&resp, &[400, 202, 405])?;
        if resp.code() == 400 {
            let codes = resp.error_codes()?;
            match codes.first() {
                Some(c) if c == "UNSUPPORTED" => {}
                other => return Err(format!("400 must carry UNSUPPORTED, got {other:?}")),
            }
        }
        PASS
    });
    let m3 = x.f.manifests[3].digest.clone();
    spec!(
        x,
        "DELETE request to manifest (digest) should yield 202 response unless already deleted",
        {
            let resp = x.c.call(Method::DELETE, &manifest_path(&m3)).await?;
            want(&resp, &[202, 404])?;
            PASS
        }
    );
    spec!(x, "GET request to deleted manifest URL should yield 404 response, unless delete is disallowed", {
        let resp = x.c.call(Method::GET, &manifest_path(&m3)).await?;
        want(&resp, &[404, 200])?;
        PASS
    });
    spec!(
        x,
        "GET request to tags list should reflect manifest deletion",
        {
            let resp = get_tags_json(x).await?;
            let tags = tag_list(&resp);
            if tags.len() >= num_tags {
                return Err(format!(
                    "tags list did not shrink: {} tags before, now {tags:?}",
                    num_tags
                ));
            }
            PASS
        }
    );

    x.section(Category::ContentManagement, "Blob delete");
    let r = async {
        let resp =
            x.c.call(Method::DELETE, &blob_path(&x.f.configs[3].digest))
                .await?;
        want(&resp, &[202, 404, 405]).map_err(|e| format!("config blob: {e}"))?;
        let resp =
            x.c.call(Method::DELETE, &blob_path(&x.f.layer.digest))
                .await?;
        want(&resp, &[202, 404, 405]).map_err(|e| format!("layer blob: {e}"))?;
        Ok(resp.code() != 405)
    }
    .await;
    let r = r.map(|allowed| {
        blob_delete_allowed = allowed;
        Status::Pass
    });
    x.record("DELETE request to blob URL should yield 202 response", r);
    spec!(
        x,
        "GET request to deleted blob URL should yield 404 response",
        {
            if !blob_delete_allowed {
                return Ok(Status::Skip("blob delete answered 405".into()));
            }
            let resp =
                x.c.call(Method::GET, &blob_path(&x.f.configs[3].digest))
                    .await?;
            want(&resp, &[404])?;
            PASS
        }
    );
}

/// `GET /v2/<name>/tags/list`: 200 with a JSON body.
async fn get_tags_json(x: &Ctx) -> Result<Resp, String> {
    let resp = x.c.call(Method::GET, "/v2/<name>/tags/list").await?;
    want(&resp, &[200])?;
    serde_json::from_slice::<serde_json::Value>(&resp.body)
        .map_err(|e| format!("tags list JSON: {e}: {}", resp.text()))?;
    Ok(resp)
}
