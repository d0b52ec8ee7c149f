//! 04_management_test.go (v1.1.1): 10 specs.

use crate::discovery::tag_list;
use crate::fixtures::{OCI_MANIFEST, TEST_TAG_NAME};
use crate::report::{Category, Status};
use crate::suite::{post_put_blob, want, want_2xx, Ctx, PASS};
use reqwest::Method;

pub async fn run(x: &mut Ctx) {
    let tag_to_delete = TEST_TAG_NAME;
    let mut num_tags = 0usize;
    let mut blob_delete_allowed = true;

    x.section(Category::ContentManagement, "Setup");
    let r = async {
        let c = &x.f.configs[3];
        want_2xx(&post_put_blob(&x.c, &c.digest, &c.content).await?, &[])?;
        PASS
    }
    .await;
    x.record("Populate registry with test config blob", r);
    let r = async {
        let l = &x.f.layer;
        want_2xx(&post_put_blob(&x.c, &l.digest, &l.content).await?, &[])?;
        PASS
    }
    .await;
    x.record("Populate registry with test layer", r);
    let r = async {
        let req =
            x.c.req(
                Method::PUT,
                &format!("/v2/<name>/manifests/{tag_to_delete}"),
            )
            .header("Content-Type", OCI_MANIFEST)
            .body(&x.f.manifests[3].content);
        want_2xx(&x.c.go(req).await?, &[])?;
        PASS
    }
    .await;
    x.record("Populate registry with test tag", r);
    let r = async {
        let resp = x.c.go(x.c.req(Method::GET, "/v2/<name>/tags/list")).await?;
        want(&resp, &[200])?;
        serde_json::from_slice::<serde_json::Value>(&resp.body)
            .map_err(|e| format!("tags list JSON: {e}: {}", resp.text()))?;
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
    let r = async {
        let resp =
            x.c.go(x.c.req(
                Method::DELETE,
                &format!("/v2/<name>/manifests/{tag_to_delete}"),
            ))
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
    }
    .await;
    x.record(
        "DELETE request to manifest tag should return 202, unless tag deletion is disallowed (400/405)",
        r,
    );
    let m3 = x.f.manifests[3].digest.clone();
    let r = async {
        let resp =
            x.c.go(x
                .c
                .req(Method::DELETE, &format!("/v2/<name>/manifests/{m3}")))
                .await?;
        want(&resp, &[202, 404])?;
        PASS
    }
    .await;
    x.record(
        "DELETE request to manifest (digest) should yield 202 response unless already deleted",
        r,
    );
    let r = async {
        let resp =
            x.c.go(x.c.req(Method::GET, &format!("/v2/<name>/manifests/{m3}")))
                .await?;
        want(&resp, &[404, 200])?;
        PASS
    }
    .await;
    x.record(
        "GET request to deleted manifest URL should yield 404 response, unless delete is disallowed",
        r,
    );
    let r = async {
        let resp = x.c.go(x.c.req(Method::GET, "/v2/<name>/tags/list")).await?;
        want(&resp, &[200])?;
        serde_json::from_slice::<serde_json::Value>(&resp.body)
            .map_err(|e| format!("tags list JSON: {e}: {}", resp.text()))?;
        let tags = tag_list(&resp);
        if tags.len() >= num_tags {
            return Err(format!(
                "tags list did not shrink: {} tags before, now {tags:?}",
                num_tags
            ));
        }
        PASS
    }
    .await;
    x.record(
        "GET request to tags list should reflect manifest deletion",
        r,
    );

    x.section(Category::ContentManagement, "Blob delete");
    let r = async {
        let c3 = &x.f.configs[3].digest;
        let resp =
            x.c.go(x.c.req(Method::DELETE, &format!("/v2/<name>/blobs/{c3}")))
                .await?;
        want(&resp, &[202, 404, 405]).map_err(|e| format!("config blob: {e}"))?;
        let l = &x.f.layer.digest;
        let resp =
            x.c.go(x.c.req(Method::DELETE, &format!("/v2/<name>/blobs/{l}")))
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
    let r = async {
        if !blob_delete_allowed {
            return Ok(Status::Skip("blob delete answered 405".into()));
        }
        let c3 = &x.f.configs[3].digest;
        let resp =
            x.c.go(x.c.req(Method::GET, &format!("/v2/<name>/blobs/{c3}")))
                .await?;
        want(&resp, &[404])?;
        PASS
    }
    .await;
    x.record(
        "GET request to deleted blob URL should yield 404 response",
        r,
    );
}
