//! 02_push_test.go (v1.1.1): 29 specs.

use crate::client::{blob_path, manifest_path, Req, Resp};
use crate::fixtures::{TestBlob, EMPTY_LAYER_TEST_TAG, NONEXISTENT_MANIFEST, OCI_MANIFEST};
use crate::report::{Category, Status};
use crate::suite::{
    delete_blobs, put_manifest, spec, spec_keep, want, want_2xx, want_eq, want_header, Ctx, PASS,
};
use reqwest::Method;

const OCTET: &str = "application/octet-stream";
const UPLOADS: &str = "/v2/<name>/blobs/uploads/";

pub async fn run(x: &mut Ctx) {
    let mut last: Option<Resp> = None;
    let mut empty_layer_ref = String::new();

    x.section(Category::Push, "Blob Upload Streamed");
    spec_keep!(
        x,
        last,
        "PATCH request with blob in body should yield 202 response",
        {
            let resp = x.c.call(Method::POST, UPLOADS).await?;
            want_header(&resp, "Location")?;
            let req =
                x.c.req(Method::PATCH, &resp.relative_location())
                    .header("Content-Type", OCTET)
                    .body(&x.f.blob_a.content);
            let resp = x.c.go(req).await?;
            want(&resp, &[202])?;
            Ok(resp)
        }
    );
    spec!(
        x,
        "PUT request to session URL with digest should yield 201 response",
        {
            let prev = previous(&last)?;
            let req =
                x.c.req(Method::PUT, &prev.relative_location())
                    .query("digest", &x.f.blob_a.digest)
                    .header("Content-Type", OCTET)
                    .header("Content-Length", &x.f.blob_a.len());
            let resp = x.c.go(req).await?;
            want(&resp, &[201])?;
            want_header(&resp, "Location")?;
            PASS
        }
    );

    x.section(Category::Push, "Blob Upload Monolithic");
    spec!(x, "GET nonexistent blob should result in 404 response", {
        let resp = x.c.call(Method::GET, &blob_path(&x.f.dummy_digest)).await?;
        want(&resp, &[404])?;
        PASS
    });
    let cfg1 = x.f.configs[1].clone();
    spec_keep!(
        x,
        last,
        "POST request with digest and blob should yield a 201 or 202",
        {
            let req = x.c.req(Method::POST, UPLOADS).whole_blob(&cfg1);
            let resp = x.c.go(req).await?;
            want_header(&resp, "Location")?;
            want(&resp, &[201, 202])?;
            Ok(resp)
        }
    );
    spec!(
        x,
        "GET request to blob URL from prior request should yield 200 or 404 based on response code",
        {
            let prev = previous(&last)?;
            let resp = x.c.call(Method::GET, &blob_path(&cfg1.digest)).await?;
            if prev.code() == 202 {
                want(&resp, &[404]).map_err(|e| format!("after a 202 single POST: {e}"))?;
            } else {
                want(&resp, &[200])?;
            }
            PASS
        }
    );
    spec_keep!(x, last, "POST request should yield a session ID", {
        let resp = x.c.call(Method::POST, UPLOADS).await?;
        want(&resp, &[202])?;
        Ok(resp)
    });
    spec!(x, "PUT upload of a blob should yield a 201 Response", {
        let prev = previous(&last)?;
        put_blob_201(x, &prev.relative_location(), &cfg1).await
    });
    let r = get_blob_200(x, &cfg1.digest).await;
    x.record("GET request to existing blob should yield 200 response", r);
    spec!(
        x,
        "PUT upload of a layer blob should yield a 201 Response",
        {
            let resp = x.c.call(Method::POST, UPLOADS).await?;
            put_blob_201(x, &resp.relative_location(), &x.f.layer).await
        }
    );
    let layer = x.f.layer.digest.clone();
    let r = get_blob_200(x, &layer).await;
    x.record("GET request to existing layer should yield 200 response", r);

    x.section(Category::Push, "Blob Upload Chunked");
    spec!(x, "Out-of-order blob upload should return 416", {
        let resp = x.c.go(empty_post(x)).await?;
        want_header(&resp, "Location")?;
        // OCI-Chunk-Min-Length: the 42-byte blob is kept; a minimum above 22 would fail here.
        let min = resp.header("OCI-Chunk-Min-Length");
        if !min.is_empty() && min.parse::<usize>().map_err(|e| e.to_string())? > x.f.chunk1.len() {
            return Err(format!(
                "OCI-Chunk-Min-Length {min} is above the suite's chunk size"
            ));
        }
        let req = patch_chunk(x, &resp.relative_location(), &x.f.chunk2, &x.f.chunk2_range);
        want(&x.c.go(req).await?, &[416])?;
        PASS
    });
    let mut prev: Option<Resp> = None;
    let r = async {
        let post = x.c.go(empty_post(x)).await?;
        want_header(&post, "Location")?;
        let req = patch_chunk(x, &post.relative_location(), &x.f.chunk1, &x.f.chunk1_range);
        let resp = x.c.go(req).await?;
        Ok((post, resp))
    }
    .await;
    let r = match r {
        Ok((post, resp)) => {
            prev = Some(post);
            let check = want(&resp, &[202])
                .and_then(|_| want_eq("Range", &resp.header("Range"), &x.f.chunk1_range));
            if check.is_ok() {
                last = Some(resp);
            }
            check.map(|_| Status::Pass)
        }
        Err(e) => Err(e),
    };
    x.record("PATCH request with first chunk should return 202", r);
    spec!(x, "Retry previous blob chunk should return 416", {
        let p = prev.as_ref().ok_or("no POST response")?;
        let req = patch_chunk(x, &p.relative_location(), &x.f.chunk1, &x.f.chunk1_range);
        want(&x.c.go(req).await?, &[416])?;
        PASS
    });
    spec_keep!(
        x,
        last,
        "Get on stale blob upload should return 204 with a range and location",
        {
            let p = prev.as_ref().ok_or("no POST response")?;
            let resp = x.c.call(Method::GET, &p.relative_location()).await?;
            want(&resp, &[204])?;
            want_header(&resp, "Location")?;
            want_eq("Range", &resp.header("Range"), &x.f.chunk1_range)?;
            Ok(resp)
        }
    );
    spec_keep!(
        x,
        last,
        "PATCH request with second chunk should return 202",
        {
            let l = previous(&last)?;
            let req = patch_chunk(x, &l.relative_location(), &x.f.chunk2, &x.f.chunk2_range);
            let resp = x.c.go(req).await?;
            want(&resp, &[202])?;
            want_header(&resp, "Location")?;
            Ok(resp)
        }
    );
    spec!(x, "PUT request with digest should return 201", {
        let l = previous(&last)?;
        let req =
            x.c.req(Method::PUT, &l.relative_location())
                .header("Content-Length", "0")
                .header("Content-Type", OCTET)
                .query("digest", &x.f.blob_b.digest);
        let resp = x.c.go(req).await?;
        want(&resp, &[201])?;
        want_header(&resp, "Location")?;
        PASS
    });

    x.section(Category::Push, "Cross-Repository Blob Mount");
    spec!(
        x,
        "Cross-mounting of a blob without the from argument should yield session id",
        {
            let req =
                x.c.req_named(Method::POST, "/v2/<name>/blobs/uploads/", &x.crossmount)
                    .query("mount", &x.f.dummy_digest);
            let resp = x.c.go(req).await?;
            want(&resp, &[202])?;
            if resp.absolute_location().is_empty() {
                return Err(format!("202 without Location: {}", resp.describe()));
            }
            PASS
        }
    );
    spec_keep!(
        x,
        last,
        "POST request to mount another repository's blob should return 201 or 202",
        {
            let req =
                x.c.req_named(Method::POST, "/v2/<name>/blobs/uploads/", &x.crossmount)
                    .query("mount", &x.f.blob_a.digest)
                    .query("from", &x.c.name);
            let resp = x.c.go(req).await?;
            want(&resp, &[201, 202])?;
            Ok(resp)
        }
    );
    let mount_code = last.as_ref().map(|l| l.code()).unwrap_or(0);
    spec!(
        x,
        "GET request to test digest within cross-mount namespace should return 200",
        {
            if mount_code != 201 {
                return Ok(Status::Skip(format!("mount answered {mount_code}")));
            }
            let l = last.as_ref().unwrap();
            let expected = format!("/v2/{}/blobs/{}", x.crossmount, x.f.blob_a.digest);
            want_eq("mount Location", &l.relative_location(), &expected)?;
            let resp = x.c.call(Method::GET, &l.relative_location()).await?;
            want(&resp, &[200])?;
            PASS
        }
    );
    spec!(
        x,
        "Cross-mounting of nonexistent blob should yield session id",
        {
            if mount_code != 202 {
                return Ok(Status::Skip(format!("mount answered {mount_code}")));
            }
            let loc = last.as_ref().unwrap().relative_location();
            let prefix = format!("/v2/{}/blobs/uploads/", x.crossmount);
            if !loc.starts_with(&prefix) {
                return Err(format!("Location {loc:?} does not start with {prefix:?}"));
            }
            PASS
        }
    );
    for name in [
        "Cross-mounting without from, and automatic content discovery enabled should return a 201",
        "Cross-mounting without from, and automatic content discovery disabled should return a 202",
    ] {
        x.record(
            name,
            Ok(Status::Skip("OCI_AUTOMATIC_CROSSMOUNT unset".into())),
        );
    }

    x.section(Category::Push, "Manifest Upload");
    spec!(x, "GET nonexistent manifest should return 404", {
        let resp =
            x.c.call(Method::GET, &manifest_path(NONEXISTENT_MANIFEST))
                .await?;
        want(&resp, &[404])?;
        PASS
    });
    spec!(x, "PUT should accept a manifest upload", {
        for i in 0..4 {
            let resp =
                put_manifest(x, &format!("test{i}"), OCI_MANIFEST, &x.f.manifests[1]).await?;
            want_header(&resp, "Location").map_err(|e| format!("tag test{i}: {e}"))?;
            want(&resp, &[201]).map_err(|e| format!("tag test{i}: {e}"))?;
        }
        PASS
    });
    let r = async {
        let m = &x.f.empty_layer_manifest;
        let resp = put_manifest(x, EMPTY_LAYER_TEST_TAG, OCI_MANIFEST, m).await?;
        if resp.code() == 201 {
            let loc = want_header(&resp, "Location")?;
            Ok((loc, Status::Pass))
        } else {
            Ok((
                String::new(),
                Status::Warn(format!(
                    "image manifest with no layers is not supported: {}",
                    resp.describe()
                )),
            ))
        }
    }
    .await;
    let r = r.map(|(loc, s)| {
        empty_layer_ref = loc;
        s
    });
    x.record("Registry should accept a manifest upload with no layers", r);
    spec!(
        x,
        "GET request to manifest URL (digest) should yield 200 response",
        {
            let req =
                x.c.req(Method::GET, &manifest_path(&x.f.manifests[1].digest))
                    .header("Accept", OCI_MANIFEST);
            want(&x.c.go(req).await?, &[200])?;
            PASS
        }
    );

    x.section(Category::Push, "Teardown");
    spec!(x, "Delete manifest created in tests", {
        let d = &x.f.manifests[1].digest;
        let resp = x.c.call(Method::DELETE, &manifest_path(d)).await?;
        want_2xx(&resp, &[405])?;
        if !empty_layer_ref.is_empty() {
            let d = &x.f.empty_layer_manifest.digest;
            let resp = x.c.call(Method::DELETE, &manifest_path(d)).await?;
            want_2xx(&resp, &[405]).map_err(|e| format!("empty-layer manifest: {e}"))?;
        }
        PASS
    });
    let blobs = vec![
        (cfg1.digest.clone(), "Delete config blob created in tests"),
        (layer.clone(), "Delete layer blob created in setup"),
    ];
    delete_blobs(x, blobs, &[404, 405]).await;
}

/// The response an earlier spec kept (`lastResponse`).
fn previous(last: &Option<Resp>) -> Result<&Resp, String> {
    last.as_ref()
        .ok_or_else(|| "no previous response".to_string())
}

/// `POST /v2/<name>/blobs/uploads/` with an empty body, as the chunked specs open a session.
fn empty_post(x: &Ctx) -> Req {
    x.c.req(Method::POST, UPLOADS).header("Content-Length", "0")
}

/// A PATCH of one chunk to the session at `loc`, with its `Content-Range`.
fn patch_chunk(x: &Ctx, loc: &str, chunk: &[u8], range: &str) -> Req {
    x.c.req(Method::PATCH, loc)
        .header("Content-Range", range)
        .octet(chunk)
}

/// A monolithic PUT `?digest=` of `b` to the session at `loc`: 201 with a `Location`.
async fn put_blob_201(x: &Ctx, loc: &str, b: &TestBlob) -> crate::suite::Outcome {
    let req = x.c.req(Method::PUT, loc).whole_blob(b);
    let resp = x.c.go(req).await?;
    want_header(&resp, "Location")?;
    want(&resp, &[201])?;
    PASS
}

async fn get_blob_200(x: &Ctx, d: &str) -> crate::suite::Outcome {
    let resp = x.c.call(Method::GET, &blob_path(d)).await?;
    want(&resp, &[200])?;
    PASS
}
