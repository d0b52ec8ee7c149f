//! The rest of the OCI surface through the adapter: tag deletes and catalog pagination, chunked
//! uploads, upload status, mounts, ranges and referrers.

use crate::harbor::{image, Env, OCI_MANIFEST};
use reqwest::Method;
use serde_json::json;
use tcr_adapter::oci::Digest;

#[tokio::test]
async fn delete_tags_and_catalog() {
    let e = Env::default().await;
    let t = e
        .token(&[
            "repository:projd/app:pull,push,delete",
            "repository:projd/other:pull,push",
            "registry:catalog:*",
        ])
        .await;
    let (layer, config, manifest) = image("d", OCI_MANIFEST);
    for repo in ["projd/app", "projd/other"] {
        e.push_blob(repo, &t, &layer, false, true).await;
        e.push_blob(repo, &t, &config, false, true).await;
    }
    for tag in ["a", "b", "c"] {
        e.put_manifest("projd/app", tag, &t, OCI_MANIFEST, &manifest)
            .await;
    }
    e.put_manifest("projd/other", "x", &t, OCI_MANIFEST, &manifest)
        .await;
    // Tags, paginated.
    let r = e.get("/v2/projd/app/tags/list", &t).await;
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v, json!({"name": "projd/app", "tags": ["a", "b", "c"]}));
    let r = e.get("/v2/projd/app/tags/list?n=2", &t).await;
    assert_eq!(r.status(), 200);
    if let Some(link) = r.headers().get("link") {
        let link = link.to_str().unwrap();
        assert!(link.starts_with("</v2/projd/app/tags/list?"), "{link}");
    }
    // Catalog with a relative Link (Harbor 1.x appends it to the endpoint).
    let r = e.get("/v2/_catalog?n=1", &t).await;
    assert_eq!(r.status(), 200);
    let link = crate::common::header(&r, "link");
    assert!(
        link.starts_with("</v2/_catalog?") && link.ends_with("rel=\"next\""),
        "{link}"
    );
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["repositories"], json!(["projd/app"]));
    let next = &link[1..link.find('>').unwrap()];
    let r = e.get(next, &t).await;
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["repositories"], json!(["projd/other"]));
    // Delete by digest: 202, then absent.
    let d = Digest::sha256_of(&manifest).to_string();
    let r = e.delete(&format!("/v2/projd/app/manifests/{d}"), &t).await;
    assert_eq!(r.status(), 202, "{:?}", r.text().await);
    let r = e.head(&format!("/v2/projd/app/manifests/{d}"), &t).await;
    assert_eq!(r.status(), 404);
    // A pull-only token may not delete: 401 with the full scope.
    let pull = e.token(&["repository:projd/other:pull"]).await;
    let r = e
        .delete(&format!("/v2/projd/other/manifests/{d}"), &pull)
        .await;
    assert_eq!(r.status(), 401);
    let chal = r.headers()["www-authenticate"].to_str().unwrap();
    assert!(
        chal.contains("scope=\"repository:projd/other:delete\""),
        "{chal}"
    );
    e.adapter.stop().await;
}

#[tokio::test]
async fn chunked_upload_status_mount_range_and_referrers() {
    let e = Env::default().await;
    let t = e.token_to_push(&["projc/app", "projc/copy"]).await;
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let d = Digest::sha256_of(&data).to_string();
    let r = e.start_upload("projc/app", &t).await;
    assert_eq!(r.status(), 202);
    let mut loc = crate::common::header(&r, "location");
    let mut offset = 0usize;
    for chunk in data.chunks(100_000) {
        let range = format!("{}-{}", offset, offset + chunk.len() - 1);
        let r = e
            .req(
                Method::PATCH,
                &loc,
                Some(&t),
                &[
                    ("Content-Range", &range),
                    ("Content-Type", "application/octet-stream"),
                ],
                Some(chunk.to_vec()),
            )
            .await;
        assert_eq!(r.status(), 202, "{:?}", r.text().await);
        assert_eq!(
            r.headers()["range"],
            format!("0-{}", offset + chunk.len() - 1).as_str()
        );
        loc = crate::common::header(&r, "location");
        assert!(loc.starts_with(&e.base));
        offset += chunk.len();
        // Upload status.
        let s = e.get(&loc, &t).await;
        assert_eq!(s.status(), 204);
        assert_eq!(s.headers()["range"], format!("0-{}", offset - 1).as_str());
    }
    // The relative form of the Location works as well.
    let rel = loc.strip_prefix(&e.base).unwrap().to_string();
    let sep = if rel.contains('?') { '&' } else { '?' };
    let r = e
        .req(
            Method::PUT,
            &format!("{rel}{sep}digest={d}"),
            Some(&t),
            &[],
            None,
        )
        .await;
    assert_eq!(r.status(), 201, "{:?}", r.text().await);
    // Range: 206 with the exact slice.
    let r = e
        .get_range(&format!("/v2/projc/app/blobs/{d}"), &t, "bytes=10-19")
        .await;
    assert_eq!(r.status(), 206);
    assert_eq!(
        r.headers()["content-range"],
        format!("bytes 10-19/{}", data.len()).as_str()
    );
    assert_eq!(r.bytes().await.unwrap().as_ref(), &data[10..20]);
    // Mount: without pull on the source, 401 names both scopes.
    let only_copy = e.token(&["repository:projc/copy:pull,push"]).await;
    let mount = format!("/v2/projc/copy/blobs/uploads/?mount={d}&from=projc/app");
    let r = e.req(Method::POST, &mount, None, &[], None).await;
    assert_eq!(r.status(), 401);
    let chal = crate::common::header(&r, "www-authenticate");
    assert!(
        chal.contains("repository:projc/copy:pull,push")
            && chal.contains("repository:projc/app:pull"),
        "{chal}"
    );
    let r = e
        .req(Method::POST, &mount, Some(&only_copy), &[], None)
        .await;
    assert_eq!(r.status(), 401);
    let r = e.req(Method::POST, &mount, Some(&t), &[], None).await;
    assert_eq!(r.status(), 201, "{:?}", r.text().await);
    assert_eq!(
        r.headers()["location"],
        format!("{}/v2/projc/copy/blobs/{d}", e.base).as_str()
    );
    // Referrers: an artifact whose subject is an image.
    let (layer, config, manifest) = image("r", OCI_MANIFEST);
    e.push_blob("projc/app", &t, &layer, false, true).await;
    e.push_blob("projc/app", &t, &config, false, true).await;
    e.put_manifest("projc/app", "img", &t, OCI_MANIFEST, &manifest)
        .await;
    let subject = Digest::sha256_of(&manifest).to_string();
    let empty = b"{}".to_vec();
    e.push_blob("projc/app", &t, &empty, false, true).await;
    let artifact = json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": "application/vnd.example.sig",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": Digest::sha256_of(&empty).to_string(), "size": 2},
        "layers": [{"mediaType": "application/vnd.oci.empty.v1+json", "digest": Digest::sha256_of(&empty).to_string(), "size": 2}],
        "subject": {"mediaType": OCI_MANIFEST, "digest": subject, "size": manifest.len()},
    }).to_string().into_bytes();
    let ad = Digest::sha256_of(&artifact).to_string();
    e.put_manifest("projc/app", &ad, &t, OCI_MANIFEST, &artifact)
        .await;
    let r = e
        .get(&format!("/v2/projc/app/referrers/{subject}"), &t)
        .await;
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["manifests"][0]["digest"], ad.as_str());
    assert_eq!(
        v["manifests"][0]["artifactType"],
        "application/vnd.example.sig"
    );
    e.adapter.stop().await;
}
