//! Blob uploads: monolithic, POST+PUT, chunked, digests, ranges, mounts.

use super::*;
use crate::common::SendOk;

#[actix_rt::test]
async fn monolithic_and_post_put_uploads_round_trip() {
    let (t, c) = emulator_with_ns().await;
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let d = Digest::sha256_of(&data);
    let r = c.post_blob("ns/app", &d, data.clone()).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(header(&r, "Location"), format!("/v2/ns/app/blobs/{d}"));
    assert_eq!(header(&r, "Docker-Content-Digest"), d.as_str());

    let r = c.blob(Method::GET, "ns/app", &d).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, "Docker-Content-Digest"), d.as_str());
    assert_eq!(r.bytes().await.unwrap().to_vec(), data);
    let r = c.blob(Method::HEAD, "ns/app", &d).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, "Content-Length"), "100000");

    // POST then PUT with the whole body.
    let r = c.call(Method::POST, "/v2/ns/app/blobs/uploads/").await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(header(&r, "Range"), "0-0");
    let loc = header(&r, "Location").to_string();
    assert!(loc.starts_with("/v2/ns/app/blobs/uploads/"), "{loc}");
    assert_eq!(
        loc.rsplit('/').next().unwrap(),
        header(&r, "Docker-Upload-UUID")
    );
    let body = b"post then put".to_vec();
    let d2 = Digest::sha256_of(&body);
    let r = c
        .call_body(Method::PUT, &format!("{loc}?digest={d2}"), body.clone())
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(header(&r, "Location"), format!("/v2/ns/app/blobs/{d2}"));
    let r = c.blob(Method::GET, "ns/app", &d2).await;
    assert_eq!(r.bytes().await.unwrap().to_vec(), body);

    // Streamed PATCH without Content-Range, then an empty PUT; then cancel another session.
    let loc = c.start_upload("ns/app").await;
    let r = c
        .call_body(Method::PATCH, &loc, b"streamed ".to_vec())
        .await;
    assert_eq!(
        (r.status(), header(&r, "Range")),
        (StatusCode::ACCEPTED, "0-8")
    );
    let r = c.call_body(Method::PATCH, &loc, b"body".to_vec()).await;
    assert_eq!(header(&r, "Range"), "0-12");
    let d3 = Digest::sha256_of(b"streamed body");
    let r = c.call(Method::PUT, &format!("{loc}?digest={d3}")).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let loc = c.start_upload("ns/app").await;
    assert_eq!(
        c.call(Method::DELETE, &loc).await.status(),
        StatusCode::NO_CONTENT
    );
    let r = c.call(Method::GET, &loc).await;
    assert_eq!(error_code(r).await.1, "BLOB_UPLOAD_UNKNOWN");
    t.handle.stop().await;
}

#[actix_rt::test]
async fn chunked_upload_enforces_order_and_reports_progress() {
    let (t, c) = emulator_with_ns().await;
    let blob: Vec<u8> = (0..42u8).collect();
    let (c1, c2) = blob.split_at(22);
    let r = c
        .req(Method::POST, "/v2/ns/app/blobs/uploads/")
        .header("Content-Length", "0")
        .send_ok()
        .await;
    let loc = header(&r, "Location").to_string();
    let r = c.patch_range(&loc, "22-41", c2).await;
    assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    let r = c.patch_range(&loc, "0-21", c1).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(header(&r, "Range"), "0-21");
    let r = c.patch_range(&loc, "0-21", c1).await;
    assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    let r = c.call(Method::GET, &loc).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(header(&r, "Location"), loc);
    assert_eq!(header(&r, "Range"), "0-21");
    let r = c.patch_range(&loc, "22-41", c2).await;
    assert_eq!(
        (r.status(), header(&r, "Range")),
        (StatusCode::ACCEPTED, "0-41")
    );
    let d = Digest::sha256_of(&blob);
    let r = c
        .req(Method::PUT, &format!("{loc}?digest={d}"))
        .header("Content-Length", "0")
        .send_ok()
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = c.blob(Method::GET, "ns/app", &d).await;
    assert_eq!(r.bytes().await.unwrap().to_vec(), blob);
    t.handle.stop().await;
}

#[actix_rt::test]
async fn wrong_digest_ranges_and_mounts() {
    let (t, c) = emulator_with_namespaces(&[("ns", false), ("other", false)]).await;
    let body = b"some content".to_vec();
    let real = Digest::sha256_of(&body);
    let wrong = Digest::sha256_of(b"something else");
    let r = c.post_blob("ns/app", &wrong, body.clone()).await;
    assert_eq!(error_code(r).await.1, "DIGEST_INVALID");
    for d in [&real, &wrong] {
        let r = c.blob(Method::GET, "ns/app", &d).await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
    }
    assert!(t.handle.state.storage.stored_size(&real).await.is_none());

    let data: Vec<u8> = (0..=255u8).collect();
    let d = c.push_blob("ns/app", &data).await;
    let r = c.get_range("ns/app", &d, "bytes=10-19").await;
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(header(&r, "Content-Range"), "bytes 10-19/256");
    assert_eq!(r.bytes().await.unwrap().to_vec(), data[10..20].to_vec());
    let r = c.get_range("ns/app", &d, "bytes=250-").await;
    assert_eq!(r.bytes().await.unwrap().to_vec(), data[250..].to_vec());
    let r = c.get_range("ns/app", &d, "bytes=300-400").await;
    assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(header(&r, "Content-Range"), "bytes */256");

    // Mount from a repository holding the blob: 201 and readable; unknown blob or no from: 202.
    let r = c.mount("other/copy", &d, Some("ns/app")).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(header(&r, "Location"), format!("/v2/other/copy/blobs/{d}"));
    let r = c.blob(Method::GET, "other/copy", &d).await;
    assert_eq!(r.bytes().await.unwrap().to_vec(), data);
    let r = c.mount("other/copy2", &d, None).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert!(header(&r, "Location").starts_with("/v2/other/copy2/blobs/uploads/"));
    let r = c.mount("other/copy2", &wrong, Some("ns/app")).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);

    // Blob delete unlinks from one repository only.
    let r = c.blob(Method::DELETE, "other/copy", &d).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let r = c.blob(Method::GET, "other/copy", &d).await;
    assert_eq!(error_code(r).await.1, "BLOB_UNKNOWN");
    let r = c.blob(Method::HEAD, "ns/app", &d).await;
    assert_eq!(r.status(), StatusCode::OK);
    t.handle.stop().await;
}
