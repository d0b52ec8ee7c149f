//! Chart uploads that must lose nothing: a crafted `Chart.yaml`, truncated and aborted
//! re-uploads, TCR failing half way through a replacement, and multipart read as TCR reads it.

use std::io::Write;

use reqwest::Method;

use crate::common::charts::{chart_archive, multipart_chart, multipart_parts, sha256_hex};
use crate::{api, keys, raw, upload_ok, upstream_chart, Guarded};

/// A gzip tar with one `c/Chart.yaml` naming `name` and `version` (no validation).
fn crafted(name: &str, version: &str) -> Vec<u8> {
    let mut t = tar::Builder::new(Vec::new());
    let y = format!("apiVersion: v2\nname: '{name}'\nversion: '{version}'\n");
    let mut h = tar::Header::new_gnu();
    h.set_size(y.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    t.append_data(&mut h, "c/Chart.yaml", y.as_bytes()).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&t.into_inner().unwrap()).unwrap();
    gz.finish().unwrap()
}

async fn post_chart(g: &Guarded, ns: &str, ct: &str, body: Vec<u8>) -> (u16, String) {
    crate::post_chart(&g.env, ns, ct, body).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crafted_chart_yaml_deletes_nothing() {
    let g = Guarded::start().await;
    let digest = g.seeded[1].1.clone(); // projb/app:v1
    for (name, version) in [
        (
            format!("..\\..\\..\\v2\\projb\\app\\manifests\\{digest}"),
            "1.0.0".to_string(),
        ),
        (
            "web".to_string(),
            format!("1.0.0/../../../../v2/projb/app/manifests/{digest}"),
        ),
        (
            "../../../v2/projb/app/manifests".to_string(),
            digest.clone(),
        ),
        ("web%2F..%2F..".to_string(), "1.0.0".to_string()),
    ] {
        let (ct, body) = multipart_chart("c.tgz", &crafted(&name, &version));
        let (s, text) = post_chart(&g, "proja", &ct, body).await;
        assert_eq!(s, 400, "{name} {version}: {text}");
    }
    g.assert_journal_clean(false);
    g.assert_untouched().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_reupload_leaves_the_existing_version_byte_identical() {
    let g = Guarded::start().await;
    let old = upload_ok(&g.env, "proja", "site", "2.0.0").await;
    let kept = || async { upstream_chart(&g.env, "proja", "site-2.0.0.tgz").await };
    assert_eq!(kept().await, sha256_hex(&old));
    let new = chart_archive("site", "2.0.0", 300 << 10);
    let (ct, body) = multipart_chart("site-2.0.0.tgz", &new);

    // Truncated: the gzip stream ends early (TCR would say "incomplete deflate stream").
    let cut = new[..new.len() - 100].to_vec();
    let (tct, tbody) = multipart_chart("site-2.0.0.tgz", &cut);
    let (s, text) = post_chart(&g, "proja", &tct, tbody).await;
    assert_eq!(s, 400, "{text}");
    assert!(
        text.contains("not a complete gzip-compressed tar"),
        "{text}"
    );
    assert_eq!(kept().await, sha256_hex(&old), "after a truncated upload");

    // Not gzip at all, and no chart part.
    let (s, _) = post_chart(&g, "proja", &ct, b"{\"error\": \"not found\"}".to_vec()).await;
    assert_eq!(s, 400);
    let (nct, nbody) = multipart_parts(&[("file", "site-2.0.0.tgz", &new)]);
    let (s, _) = post_chart(&g, "proja", &nct, nbody).await;
    assert_eq!(s, 400);
    assert_eq!(kept().await, sha256_hex(&old), "after invalid uploads");

    // Aborted: the client declares the whole body, sends half of it and goes away.
    {
        let mut s = tokio::net::TcpStream::connect(g.addr).await.unwrap();
        let head = format!(
            "POST /api/chartrepo/proja/charts HTTP/1.1\r\nHost: x\r\nAuthorization: {}\r\n\
             Content-Type: {ct}\r\nContent-Length: {}\r\n\r\n",
            keys(),
            body.len()
        );
        use tokio::io::AsyncWriteExt;
        s.write_all(head.as_bytes()).await.unwrap();
        s.write_all(&body[..body.len() / 2]).await.unwrap();
        s.flush().await.unwrap();
    }
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(kept().await, sha256_hex(&old), "after an aborted upload");

    // TCR fails half way through the replacement: the new copy is refused after the old one
    // was deleted. The old one is put back, byte for byte, and the client is told it failed.
    g.env
        .emu
        .state
        .faults
        .script_chart_uploads([None, Some(503)]);
    let (s, text) = post_chart(&g, "proja", &ct, body.clone()).await;
    assert!(s >= 500, "a failed replacement must fail: {s} {text}");
    assert_eq!(
        kept().await,
        sha256_hex(&old),
        "after TCR refused the new copy"
    );
    let (s, v) = api(
        &g.env,
        Method::GET,
        "/api/chartrepo/alias/charts/site/2.0.0",
    )
    .await;
    assert_eq!(s, 200, "{v}");

    // And an ordinary replacement works.
    let (s, text) = post_chart(&g, "proja", &ct, body).await;
    assert_eq!(s, 201, "{text}");
    assert_eq!(kept().await, sha256_hex(&new), "after the replacement");
    g.assert_untouched().await;
}

/// A chart upload of the multipart `parts` into `proja`: it must be created (201).
async fn post_parts_created(g: &Guarded, parts: &[(&str, &str, &[u8])]) {
    let (ct, body) = multipart_parts(parts);
    let (s, text) = post_chart(g, "proja", &ct, body).await;
    assert_eq!(s, 201, "{text}");
}

/// In `proja`, TCR holds `stored.0` with exactly the bytes `stored.1`, and no `absent` file.
async fn assert_only_chart_reached_tcr(g: &Guarded, stored: (&str, &[u8]), absent: &str) {
    assert_eq!(
        upstream_chart(&g.env, "proja", stored.0).await,
        sha256_hex(stored.1)
    );
    assert!(upstream_chart(&g.env, "proja", absent)
        .await
        .starts_with("absent"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_is_read_as_tcr_reads_it() {
    let g = Guarded::start().await;
    let decoy = chart_archive("decoy", "1.0.0", 256);
    let real = chart_archive("real", "1.0.0", 256);
    // `filename="chart"` in another part is not the chart part.
    post_parts_created(
        &g,
        &[("file", "chart", &decoy), ("chart", "real.tgz", &real)],
    )
    .await;
    assert_only_chart_reached_tcr(&g, ("real-1.0.0.tgz", &real), "decoy-1.0.0.tgz").await;
    // An unquoted form name is valid (RFC 7578 takes a token).
    let other = chart_archive("plain", "1.0.0", 256);
    let mut body = b"--B0\r\nContent-Disposition: form-data; name=chart; filename=plain.tgz\r\n\
         Content-Type: application/octet-stream\r\n\r\n"
        .to_vec();
    body.extend_from_slice(&other);
    body.extend_from_slice(b"\r\n--B0--\r\n");
    let (s, text) = post_chart(&g, "proja", "multipart/form-data; boundary=B0", body).await;
    assert_eq!(s, 201, "{text}");
    assert_eq!(
        upstream_chart(&g.env, "proja", "plain-1.0.0.tgz").await,
        sha256_hex(&other)
    );
    // Two chart parts: the first one counts, and only it reaches TCR.
    let one = chart_archive("first", "1.0.0", 256);
    let two = chart_archive("second", "1.0.0", 256);
    post_parts_created(&g, &[("chart", "a.tgz", &one), ("chart", "b.tgz", &two)]).await;
    assert_only_chart_reached_tcr(&g, ("first-1.0.0.tgz", &one), "second-1.0.0.tgz").await;
    let _ = raw; // the raw client is used by the other modules
}
