//! 01_pull_test.go (v1.1.1): 24 specs.

use crate::client::{blob_path, manifest_path};
use crate::fixtures::{ERROR_CODES, NONEXISTENT_MANIFEST, OCI_MANIFEST, TEST_TAG_NAME};
use crate::report::{Category, Status};
use crate::suite::{
    delete_blobs, push_blobs, put_manifest, spec, want, want_2xx, want_eq, Ctx, PASS,
};
use reqwest::Method;

pub async fn run(x: &mut Ctx) {
    x.section(Category::Pull, "Setup");
    let blobs = vec![
        (x.f.configs[0].clone(), "Populate registry with test blob"),
        (x.f.configs[1].clone(), "Populate registry with test blob"),
        (x.f.layer.clone(), "Populate registry with test layer"),
    ];
    push_blobs(x, blobs).await;
    let tag = TEST_TAG_NAME.to_string();
    for (i, reference) in [(0, tag.clone()), (1, x.f.manifests[1].digest.clone())] {
        spec!(x, "Populate registry with test manifest", {
            let resp = put_manifest(x, &reference, OCI_MANIFEST, &x.f.manifests[i]).await?;
            want_2xx(&resp, &[])?;
            PASS
        });
    }
    x.record(
        "Get tag name from environment",
        Ok(Status::Skip("runPullSetup".into())),
    );

    x.section(Category::Pull, "Pull blobs");
    let dummy = x.f.dummy_digest.clone();
    let cfg0 = x.f.configs[0].digest.clone();
    for (method, name, digest, code) in [
        (
            Method::HEAD,
            "HEAD request to nonexistent blob should result in 404 response",
            &dummy,
            404,
        ),
        (
            Method::HEAD,
            "HEAD request to existing blob should yield 200",
            &cfg0,
            200,
        ),
        (
            Method::GET,
            "GET nonexistent blob should result in 404 response",
            &dummy,
            404,
        ),
        (
            Method::GET,
            "GET request to existing blob URL should yield 200",
            &cfg0,
            200,
        ),
    ] {
        spec!(x, name, {
            let resp = x.c.call(method.clone(), &blob_path(digest)).await?;
            want(&resp, &[code])?;
            let h = resp.header("Docker-Content-Digest");
            if method == Method::HEAD && code == 200 && !h.is_empty() {
                want_eq("Docker-Content-Digest", &h, digest)?;
            }
            PASS
        });
    }

    x.section(Category::Pull, "Pull manifests");
    let m0 = x.f.manifests[0].digest.clone();
    let m1 = x.f.manifests[1].digest.clone();
    let specs: [(Method, &'static str, &str, u16, Option<&str>); 8] = [
        (
            Method::HEAD,
            "HEAD request to nonexistent manifest should return 404",
            NONEXISTENT_MANIFEST,
            404,
            None,
        ),
        (
            Method::HEAD,
            "HEAD request to manifest[0] path (digest) should yield 200 response",
            &m0,
            200,
            Some(&m0),
        ),
        (
            Method::HEAD,
            "HEAD request to manifest[1] path (digest) should yield 200 response",
            &m1,
            200,
            Some(&m1),
        ),
        (
            Method::HEAD,
            "HEAD request to manifest path (tag) should yield 200 response",
            &tag,
            200,
            Some(&m0),
        ),
        (
            Method::GET,
            "GET nonexistent manifest should return 404",
            NONEXISTENT_MANIFEST,
            404,
            None,
        ),
        (
            Method::GET,
            "GET request to manifest[0] path (digest) should yield 200 response",
            &m0,
            200,
            None,
        ),
        (
            Method::GET,
            "GET request to manifest[1] path (digest) should yield 200 response",
            &m1,
            200,
            None,
        ),
        (
            Method::GET,
            "GET request to manifest path (tag) should yield 200 response",
            &tag,
            200,
            None,
        ),
    ];
    for (method, name, reference, code, dcd) in specs {
        spec!(x, name, {
            let mut req = x.c.req(method, &manifest_path(reference));
            if code == 200 {
                req = req.header("Accept", OCI_MANIFEST);
            }
            let resp = x.c.go(req).await?;
            want(&resp, &[code])?;
            let h = resp.header("Docker-Content-Digest");
            if let (Some(d), false) = (dcd, h.is_empty()) {
                want_eq("Docker-Content-Digest", &h, d)?;
            }
            PASS
        });
    }

    x.section(Category::Pull, "Error codes");
    spec!(
        x,
        "400 response body should contain OCI-conforming JSON message",
        {
            let req =
                x.c.req(Method::GET, "/v2/<name>/manifests/sha256:totallywrong")
                    .header("Content-Type", OCI_MANIFEST)
                    .body(b"blablabla");
            let resp = x.c.go(req).await?;
            want(&resp, &[400, 404])?;
            if resp.code() == 400 {
                let codes = resp.error_codes()?;
                let first = codes.first().ok_or("400 with an empty `errors` array")?;
                if !ERROR_CODES.contains(&first.as_str()) {
                    return Err(format!("400 with unknown error code {first:?}"));
                }
            }
            PASS
        }
    );

    x.section(Category::Pull, "Teardown");
    for (i, name) in [
        (0, "Delete manifest[0] created in setup"),
        (1, "Delete manifest[1] created in setup"),
    ] {
        spec!(x, name, {
            let d = &x.f.manifests[i].digest;
            let resp = x.c.call(Method::DELETE, &manifest_path(d)).await?;
            want_2xx(&resp, &[405])?;
            PASS
        });
    }
    let blobs = vec![
        (
            x.f.configs[0].digest.clone(),
            "Delete config[0] blob created in setup",
        ),
        (
            x.f.configs[1].digest.clone(),
            "Delete config[1] blob created in setup",
        ),
        (
            x.f.layer.digest.clone(),
            "Delete layer blob created in setup",
        ),
    ];
    delete_blobs(x, blobs, &[404, 405]).await;
}
