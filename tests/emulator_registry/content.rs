//! Manifests, referrers, tags and catalog.

use super::*;

#[actix_rt::test]
async fn manifests_keep_exact_bytes_and_deletes_behave() {
    let (t, c) = emulator_with_ns().await;
    let (m, d) = push_image(&c, "ns/app", "one").await;
    let r = c.put_manifest("ns/app", "v1", &m, OCI_MANIFEST).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(header(&r, "Location"), format!("/v2/ns/app/manifests/{d}"));
    assert_eq!(header(&r, "Docker-Content-Digest"), d.as_str());
    for reference in ["v1".to_string(), d.to_string()] {
        let r = c.manifest(Method::GET, "ns/app", &reference).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(header(&r, "Content-Type"), OCI_MANIFEST);
        assert_eq!(header(&r, "Docker-Content-Digest"), d.as_str());
        assert_eq!(r.bytes().await.unwrap().to_vec(), m);
        let r = c.manifest(Method::HEAD, "ns/app", &reference).await;
        assert_eq!(header(&r, "Content-Length"), m.len().to_string());
        assert_eq!(header(&r, "Docker-Content-Digest"), d.as_str());
    }
    // Push by digest: the body must hash to it.
    let r = c.put_manifest("ns/app", d.as_str(), &m, OCI_MANIFEST).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let other = Digest::sha256_of(b"x");
    let r = c
        .put_manifest("ns/app", other.as_str(), &m, OCI_MANIFEST)
        .await;
    assert_eq!(error_code(r).await.1, "DIGEST_INVALID");
    // Missing layer → MANIFEST_BLOB_UNKNOWN; oversized → 413.
    let dangling = json!({"schemaVersion":2,"mediaType":OCI_MANIFEST,
        "config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":other.to_string(),"size":1},"layers":[]});
    let r = c
        .put_manifest(
            "ns/app",
            "bad",
            dangling.to_string().as_bytes(),
            OCI_MANIFEST,
        )
        .await;
    assert_eq!(error_code(r).await.1, "MANIFEST_BLOB_UNKNOWN");
    let huge = vec![b' '; 4 * 1024 * 1024 + 1];
    let r = c.put_manifest("ns/app", "huge", &huge, OCI_MANIFEST).await;
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // Invalid tag and malformed digest.
    for m in [Method::GET, Method::HEAD] {
        let r = c
            .call(m, "/v2/ns/app/manifests/.INVALID_MANIFEST_NAME")
            .await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
    }
    let r = c
        .call(Method::GET, "/v2/ns/app/manifests/sha256:totallywrong")
        .await;
    assert_eq!(error_code(r).await.1, "DIGEST_INVALID");

    // A second tag, then untag v1: the digest and v2 stay.
    c.put_manifest_created("ns/app", "v2", &m).await;
    let r = c.call(Method::DELETE, "/v2/ns/app/manifests/v1").await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(
        c.call(Method::GET, "/v2/ns/app/manifests/v1")
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        c.manifest(Method::GET, "ns/app", &d).await.status(),
        StatusCode::OK
    );
    // Delete by digest removes its tags.
    let r = c.manifest(Method::DELETE, "ns/app", &d).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(
        c.manifest(Method::GET, "ns/app", &d).await.status(),
        StatusCode::NOT_FOUND
    );
    let r = c.call(Method::GET, "/v2/ns/app/tags/list").await;
    assert_eq!(r.json::<Value>().await.unwrap()["tags"], json!([]));
    let r = c.manifest(Method::DELETE, "ns/app", &d).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    t.handle.stop().await;
}

#[actix_rt::test]
async fn referrers_list_and_filter_by_artifact_type() {
    let (t, c) = emulator_with_ns().await;
    let (m, d) = push_image(&c, "ns/app", "subject").await;
    c.put_manifest_created("ns/app", "v1", &m).await;
    let empty = c.push_blob("ns/app", b"{}").await;
    assert_eq!(
        empty.as_str(),
        "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
    );
    let artifact = |ty: &str, subject: &Digest, n: u32| {
        json!({"schemaVersion":2,"mediaType":OCI_MANIFEST,"artifactType":ty,
            "config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":empty.to_string(),"size":2},
            "layers":[], "subject":{"mediaType":OCI_MANIFEST,"digest":subject.to_string(),"size":m.len()},
            "annotations":{"n": n.to_string()}})
        .to_string()
    };
    for (i, ty) in [
        "application/vnd.example.sbom",
        "application/vnd.example.sig",
        "application/vnd.example.sig",
    ]
    .iter()
    .enumerate()
    {
        let a = artifact(ty, &d, i as u32);
        let ad = Digest::sha256_of(a.as_bytes());
        let r = c
            .put_manifest("ns/app", ad.as_str(), a.as_bytes(), OCI_MANIFEST)
            .await;
        assert_eq!(r.status(), StatusCode::CREATED);
        assert_eq!(header(&r, "OCI-Subject"), d.as_str());
    }
    // A dangling subject is accepted.
    let ghost = Digest::sha256_of(b"never pushed");
    let a = artifact("application/vnd.example.sbom", &ghost, 9);
    c.put_manifest_created("ns/app", "dangling", a.as_bytes())
        .await;

    let r = c.referrers("ns/app", &d, "").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        header(&r, "Content-Type"),
        "application/vnd.oci.image.index.v1+json"
    );
    assert_eq!(header(&r, "OCI-Filters-Applied"), "");
    let idx: Value = r.json().await.unwrap();
    let list = idx["manifests"].as_array().unwrap();
    assert_eq!(list.len(), 3);
    assert!(list.iter().all(|e| e["mediaType"] == OCI_MANIFEST
        && e["size"].as_u64().unwrap() > 0
        && e["annotations"]["n"].is_string()));
    let r = c
        .call(
            Method::GET,
            &format!("/v2/ns/app/referrers/{d}?artifactType=application/vnd.example.sig"),
        )
        .await;
    assert_eq!(header(&r, "OCI-Filters-Applied"), "artifactType");
    let idx: Value = r.json().await.unwrap();
    assert_eq!(idx["manifests"].as_array().unwrap().len(), 2);
    assert!(idx["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["artifactType"] == "application/vnd.example.sig"));
    let r = c.referrers("ns/app", &ghost, "").await;
    assert_eq!(
        r.json::<Value>().await.unwrap()["manifests"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let r = c
        .call(
            Method::GET,
            &format!("/v2/ns/app/referrers/{}", Digest::sha256_of(b"nothing")),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap()["manifests"], json!([]));
    let r = c
        .call(Method::GET, "/v2/ns/app/referrers/sha256:nothex")
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    t.handle.stop().await;
}

#[actix_rt::test]
async fn tags_and_catalog_paginate_with_link() {
    let (t, c) = emulator_with_ns().await;
    let (m, _) = push_image(&c, "ns/app", "p").await;
    for tag in ["e", "a", "c", "b", "d"] {
        c.put_manifest_created("ns/app", tag, &m).await;
    }
    let r = c.call(Method::GET, "/v2/ns/app/tags/list?n=2").await;
    assert_eq!(
        header(&r, "Link"),
        "</v2/ns/app/tags/list?n=2&last=b>; rel=\"next\""
    );
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"name":"ns/app","tags":["a","b"]})
    );
    let r = c.call(Method::GET, "/v2/ns/app/tags/list?n=2&last=b").await;
    assert_eq!(
        header(&r, "Link"),
        "</v2/ns/app/tags/list?n=2&last=d>; rel=\"next\""
    );
    assert_eq!(r.json::<Value>().await.unwrap()["tags"], json!(["c", "d"]));
    let r = c.call(Method::GET, "/v2/ns/app/tags/list?n=2&last=d").await;
    assert_eq!(header(&r, "Link"), "");
    assert_eq!(r.json::<Value>().await.unwrap()["tags"], json!(["e"]));
    let r = c.call(Method::GET, "/v2/ns/app/tags/list?n=0").await;
    assert_eq!(header(&r, "Link"), "");
    assert_eq!(r.json::<Value>().await.unwrap()["tags"], json!([]));
    let r = c.call(Method::GET, "/v2/ns/app/tags/list?n=x").await;
    assert_eq!(error_code(r).await.1, "PAGINATION_NUMBER_INVALID");

    for repo in ["ns/b", "ns/c/d"] {
        c.push_blob(repo, b"x").await;
    }
    let r = c.call(Method::GET, "/v2/_catalog?n=2").await;
    assert_eq!(
        header(&r, "Link"),
        "</v2/_catalog?n=2&last=ns%2Fb>; rel=\"next\""
    );
    assert_eq!(
        r.json::<Value>().await.unwrap()["repositories"],
        json!(["ns/app", "ns/b"])
    );
    let r = c.call(Method::GET, "/v2/_catalog?n=2&last=ns%2Fb").await;
    assert_eq!(
        r.json::<Value>().await.unwrap()["repositories"],
        json!(["ns/c/d"])
    );
    let r = Client::anonymous(&t)
        .call(Method::GET, "/v2/_catalog")
        .await;
    assert!(header(&r, "WWW-Authenticate").contains("scope=\"registry:catalog:*\""));
    t.handle.stop().await;
}
