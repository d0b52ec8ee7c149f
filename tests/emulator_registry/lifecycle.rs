//! Namespaces, restarts, dropped connections, fault knobs.

use super::*;

#[actix_rt::test]
async fn namespaces_are_enforced_like_tcr() {
    let (t, c) = emulator_with_namespaces(&[("private", false), ("public", true)]).await;
    let anon = Client::anonymous(&t);
    let r = c.call(Method::POST, "/v2/nope/app/blobs/uploads/").await;
    assert!(header(&r, "WWW-Authenticate").starts_with("Bearer realm="));
    assert_eq!(
        error_code(r).await,
        (
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED".into(),
            "project nope not found".into()
        )
    );
    // HEAD cannot carry the message: it reports "absent" so clients go on to the POST.
    let r = c.call(Method::HEAD, "/v2/nope/app/manifests/latest").await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = c.call(Method::GET, "/v2/nope/app/manifests/latest").await;
    assert_eq!(error_code(r).await.2, "project nope not found");

    for ns in ["private", "public"] {
        let (m, _) = push_image(&c, &format!("{ns}/app"), ns).await;
        c.put_manifest_created(&format!("{ns}/app"), "v1", &m).await;
    }
    let r = anon.call(Method::GET, "/v2/private/app/manifests/v1").await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = anon.call(Method::GET, "/v2/public/app/manifests/v1").await;
    assert_eq!(r.status(), StatusCode::OK);
    // Anonymous may not push even into a public namespace.
    let r = anon
        .call(Method::POST, "/v2/public/app/blobs/uploads/")
        .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // Anonymous tokens carry pull on public namespaces only.
    let realm = format!(
        "{}/service/token?scope=repository:public/app:pull,push&scope=repository:private/app:pull",
        t.handle.registry_url()
    );
    let body: Value = reqwest::get(realm).await.unwrap().json().await.unwrap();
    let claims = body["token"]
        .as_str()
        .unwrap()
        .split('.')
        .nth(1)
        .unwrap()
        .to_string();
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(claims)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["access"][0]["actions"], json!(["pull"]));
    assert_eq!(claims["access"][1]["actions"], json!([]));

    // Metrics count requests per route.
    let text = common::get_text(&format!("{}/metrics", t.handle.registry_url())).await;
    assert!(text.contains("tcr_emulator_registry_requests_total{method=\"GET\",route=\"manifest\",status=\"200\"}"), "{text}");
    t.handle.stop().await;
}

#[actix_rt::test]
async fn state_survives_a_restart() {
    let TestEmulator { handle, dir } = start_emulator().await;
    handle.state.namespaces.create("ns", false).unwrap();
    let t = TestEmulator { handle, dir };
    let c = Client::basic(&t);
    let (m, d) = push_image(&c, "ns/app", "persist").await;
    c.put_manifest_created("ns/app", "v1", &m).await;
    let loc = c.start_upload("ns/app").await;
    c.call_body(Method::PATCH, &loc, b"half".to_vec()).await;
    let TestEmulator { handle, dir } = t;
    handle.stop().await;

    let handle = start_emulator_with(common::emulator_config(dir.path())).await;
    let t = TestEmulator { handle, dir };
    let c2 = Client {
        base: t.handle.registry_url(),
        ..c
    };
    let r = c2.call(Method::GET, "/v2/ns/app/manifests/v1").await;
    assert_eq!(header(&r, "Docker-Content-Digest"), d.as_str());
    assert_eq!(r.bytes().await.unwrap().to_vec(), m);
    let loc = loc.clone();
    let r = c2.call(Method::GET, &loc).await;
    assert_eq!(
        (r.status(), header(&r, "Range")),
        (StatusCode::NO_CONTENT, "0-3")
    );
    let r = c2
        .call_body(Method::PATCH, &loc, b" and rest".to_vec())
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let full = Digest::sha256_of(b"half and rest");
    let r = c2.call(Method::PUT, &format!("{loc}?digest={full}")).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let summaries = t
        .handle
        .state
        .storage
        .list_tag_summaries("ns/app")
        .await
        .unwrap();
    assert_eq!(summaries.len(), 1);
    assert_eq!(summaries[0].digest, d.as_str());
    assert!(summaries[0].size > m.len() as u64);
    assert_eq!(
        t.handle.state.storage.list_repositories().await[0].name,
        "ns/app"
    );
    t.handle.stop().await;
}

#[actix_rt::test]
async fn a_dropped_upload_leaves_nothing_visible() {
    use tokio::io::AsyncWriteExt;
    let (t, c) = emulator_with_ns().await;
    let data = vec![7u8; 1_000_000];
    let d = Digest::sha256_of(&data);
    let mut s = tokio::net::TcpStream::connect(t.handle.registry_addr)
        .await
        .unwrap();
    let head = format!(
        "POST /v2/ns/app/blobs/uploads/?digest={d} HTTP/1.1\r\nHost: x\r\nAuthorization: {}\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
        c.auth.as_ref().unwrap(),
        data.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(&data[..500_000]).await.unwrap();
    s.flush().await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    drop(s);
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let r = c.blob(Method::GET, "ns/app", &d).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert!(t.handle.state.storage.stored_size(&d).await.is_none());
    let uploads = std::fs::read_dir(t.dir.path().join("registry/uploads"))
        .unwrap()
        .count();
    assert_eq!(uploads, 0, "the aborted session was cleaned up");
    // The same blob pushed properly afterwards works.
    c.push_blob("ns/app", &data).await;
    let r = c.blob(Method::GET, "ns/app", &d).await;
    assert_eq!(r.bytes().await.unwrap().len(), data.len());
    t.handle.stop().await;
}

#[actix_rt::test]
async fn fault_knobs_limit_bodies() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = common::emulator_config(dir.path());
    cfg.faults.max_body_bytes = 10;
    let handle = start_emulator_with(cfg).await;
    handle.state.namespaces.create("ns", false).unwrap();
    let t = TestEmulator { handle, dir };
    let c = Client::basic(&t);
    let body = vec![1u8; 20];
    let r = c.post_blob("ns/app", Digest::sha256_of(&body), body).await;
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    t.handle.stop().await;
}
