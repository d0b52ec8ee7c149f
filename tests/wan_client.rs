//! The Harbor-faithful client the WAN tests drive the adapter with (`wan_support::harbor`), held
//! to what Harbor sends: a token per request scope, cached by scope string with Harbor's expiry
//! rule, one unauthenticated ping per job, each generation's upload URL and body framing, and
//! Harbor 2.9's chunk boundaries. Observed on the wire by a recorder
//! (`wan_support::recorder`), and once against the adapter's own token endpoint.

#[path = "common/mod.rs"]
mod common;
#[path = "harbor/mod.rs"]
mod harbor;
#[path = "wan_support/mod.rs"]
mod wan_support;

use tcr_adapter::oci::Digest;

use wan_support::harbor::{scopes_for, Gen, Job};
use wan_support::recorder::{Recorder, STATE};
use wan_support::{config_of, layer, manifest_of};

const MT: &str = "application/vnd.oci.image.manifest.v1+json";

fn scopes(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// Replicate `repo:v1` (a config and `layers`) with a new job of `gen` against the recorder.
async fn copy(rec: &Recorder, gen: Gen, repo: &str, layers: &[&[u8]]) -> Job {
    let job = Job::new(gen, &rec.base, "AKIDuser", "secret");
    let config = config_of(repo);
    let manifest = manifest_of(&config, layers);
    let mut blobs: Vec<&[u8]> = vec![&config];
    blobs.extend_from_slice(layers);
    job.copy_image(repo, "v1", &blobs, MT, manifest.as_bytes())
        .await;
    job
}

#[test]
fn scopes_follow_method_and_path_per_generation() {
    let u = |p: &str| url::Url::parse(&format!("http://h{p}")).unwrap();
    let d = Digest::sha256_of(b"x");
    for gen in [Gen::V1_10, Gen::V2_0] {
        let s = |m: reqwest::Method, p: &str| scopes_for(gen, &m, &u(p));
        use reqwest::Method as M;
        assert_eq!(
            s(M::HEAD, &format!("/v2/ns/a/blobs/{d}")),
            scopes(&["repository:ns/a:pull"])
        );
        assert_eq!(
            s(M::GET, "/v2/ns/a/manifests/v1"),
            scopes(&["repository:ns/a:pull"])
        );
        assert_eq!(
            s(M::POST, "/v2/ns/a/blobs/uploads/"),
            scopes(&["repository:ns/a:pull,push"])
        );
        assert_eq!(
            s(M::PATCH, "/v2/ns/a/blobs/uploads/u1?_state=x"),
            scopes(&["repository:ns/a:pull,push"])
        );
        assert_eq!(
            s(M::PUT, "/v2/ns/a/manifests/v1"),
            scopes(&["repository:ns/a:pull,push"])
        );
        assert_eq!(
            s(M::DELETE, "/v2/ns/a/manifests/v1"),
            scopes(&["repository:ns/a:*"])
        );
        assert_eq!(s(M::GET, "/v2/_catalog"), scopes(&["registry:catalog:*"]));
        assert_eq!(s(M::GET, "/v2/"), Vec::<String>::new());
        assert_eq!(
            s(
                M::POST,
                &format!("/v2/ns/b/blobs/uploads/?mount={d}&from=ns/a")
            ),
            scopes(&["repository:ns/a:pull", "repository:ns/b:pull,push"])
        );
    }
    // `from=` counts on any path for 1.10 (tokenauthorizer.go), on uploads only for 2.x.
    let odd = u("/v2/ns/a/manifests/v1?from=ns/z");
    assert_eq!(scopes_for(Gen::V1_10, &reqwest::Method::GET, &odd).len(), 2);
    assert_eq!(scopes_for(Gen::V2_0, &reqwest::Method::GET, &odd).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_per_request_scope_cached_by_scope_string() {
    for gen in [Gen::V1_10, Gen::V2_0] {
        let rec = Recorder::start(300).await;
        let (base, own) = (layer(1, 3000), layer(2, 2000));
        let job = copy(&rec, gen, "ns/a", &[&base, &own]).await;
        let seen = rec.seen();
        // The ping first, without credentials; then HEAD manifest, 3 × (HEAD, POST, PUT), PUT.
        assert_eq!(
            (seen[0].method.as_str(), seen[0].target.as_str()),
            ("GET", "/v2/")
        );
        assert_eq!(seen[0].header("authorization"), None);
        assert_eq!(seen.len(), 1 + 1 + 3 * 3 + 1, "{gen:?}: {seen:#?}");
        // Two tokens, one per scope string: every HEAD carried the pull token, every write the
        // pull,push one.
        assert_eq!(
            rec.issued(),
            vec![
                scopes(&["repository:ns/a:pull"]),
                scopes(&["repository:ns/a:pull,push"])
            ],
            "{gen:?}"
        );
        for r in &seen[1..] {
            let want = if r.method == "HEAD" {
                "pull"
            } else {
                "pull,push"
            };
            assert_eq!(
                rec.scopes_of(r),
                Some(vec![format!("repository:ns/a:{want}")]),
                "{gen:?} {} {}",
                r.method,
                r.target
            );
        }
        let rc = job.record();
        assert_eq!(
            (rc.pings, rc.fetched.len(), rc.cache_hits),
            (1, 2, 9),
            "{gen:?}"
        );
        // DELETE asks for `*`.
        job.send(reqwest::Method::DELETE, "/v2/ns/a/manifests/v1", &[], None)
            .await;
        assert_eq!(
            rec.issued().last().unwrap(),
            &scopes(&["repository:ns/a:*"])
        );
        // A mount names two scopes: 2.x caches the pair (key joined by '#'), 1.10 never caches
        // a request with several scopes.
        let d = Digest::sha256_of(&base);
        let before = rec.issued().len();
        for _ in 0..2 {
            assert_eq!(job.mount_blob("ns/a", &d, "ns/b").await, 202);
        }
        let fetched = rec.issued().len() - before;
        assert_eq!(fetched, if gen.v1() { 2 } else { 1 }, "{gen:?}");
        assert_eq!(
            rec.issued().last().unwrap(),
            &scopes(&["repository:ns/a:pull", "repository:ns/b:pull,push"])
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_past_issued_at_plus_expires_in_minus_ten_seconds_is_fetched_again() {
    // expires_in = 10: valid until issued_at + 0 s, i.e. already stale when next used.
    for gen in [Gen::V1_10, Gen::V2_0] {
        let rec = Recorder::start(10).await;
        let job = copy(&rec, gen, "ns/a", &[&layer(3, 1000)]).await;
        let n = rec.seen().len() - 1; // every request but the ping
        assert_eq!(rec.issued().len(), n, "{gen:?}: one token per request");
        assert_eq!(job.record().cache_hits, 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_generation_frames_the_monolithic_put_its_own_way() {
    let data = layer(4, 5000);
    let d = Digest::sha256_of(&data);
    for gen in [Gen::V1_8, Gen::V1_10, Gen::V2_0, Gen::V2_9 { chunk: None }] {
        let rec = Recorder::start(300).await;
        copy(&rec, gen, "ns/a", &[&data]).await;
        let put = rec
            .seen()
            .into_iter()
            .find(|r| r.method == "PUT" && r.target.contains(&d.as_str()[7..]))
            .unwrap();
        assert_eq!(put.body_len, data.len());
        let (path, query) = put.target.split_once('?').unwrap();
        assert!(path.starts_with("/v2/ns/a/blobs/uploads/u"), "{path}");
        match gen {
            // 1.x: "&digest=" appended to the Location as it came, digest unencoded.
            Gen::V1_8 | Gen::V1_10 => assert_eq!(query, format!("_state={STATE}&digest={d}")),
            // 2.x: query parsed, digest set, re-encoded with sorted keys.
            _ => assert_eq!(
                query,
                format!("_state={STATE}&digest={}", d.as_str().replace(':', "%3A"))
            ),
        }
        let chunked = put.header("transfer-encoding") == Some("chunked");
        assert_eq!(chunked, gen == Gen::V1_8, "{gen:?}");
        assert_eq!(put.header("content-length").is_none(), gen == Gen::V1_8);
        let ua = put.header("user-agent").unwrap();
        assert_eq!(
            ua,
            if gen.v1() {
                "harbor-replication-service"
            } else {
                "harbor-registry-client"
            }
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn harbor_2_9_copies_by_chunk_at_replication_chunk_size() {
    let rec = Recorder::start(300).await;
    let chunk = 100 << 10;
    let (big, small) = (layer(5, 250 << 10), layer(6, 50 << 10));
    let (bd, sd) = (Digest::sha256_of(&big), Digest::sha256_of(&small));
    copy(
        &rec,
        Gen::V2_9 { chunk: Some(chunk) },
        "ns/c",
        &[&big, &small],
    )
    .await;
    let seen = rec.seen();
    let line = |r: &wan_support::recorder::Seen| {
        format!(
            "{} {} {} {}",
            r.method,
            r.target,
            r.header("content-range").unwrap_or("-"),
            r.body_len
        )
    };
    let lines: Vec<String> = seen.iter().map(line).collect();
    let enc = |d: &Digest| d.as_str().replace(':', "%3A");
    // The config and the small layer fit one chunk: monolithic, without a HEAD first.
    let want = vec![
        "GET /v2/ - 0".to_string(),
        "HEAD /v2/ns/c/manifests/v1 - 0".into(),
        "POST /v2/ns/c/blobs/uploads/ - 0".into(),
        format!(
            "PUT /v2/ns/c/blobs/uploads/u1?_state={STATE}&digest={} - {}",
            enc(&Digest::sha256_of(&config_of("ns/c"))),
            config_of("ns/c").len()
        ),
        format!("HEAD /v2/ns/c/blobs/{bd} - 0"),
        "POST /v2/ns/c/blobs/uploads/ - 0".into(),
        format!("PATCH /v2/ns/c/blobs/uploads/u2?_state={STATE} 0-102399 102400"),
        format!("PATCH /v2/ns/c/blobs/uploads/u2?_state={STATE} 102400-204799 102400"),
        format!(
            "PUT /v2/ns/c/blobs/uploads/u2?_state={STATE}&digest={} 204800-255999 51200",
            enc(&bd)
        ),
        "POST /v2/ns/c/blobs/uploads/ - 0".into(),
        format!(
            "PUT /v2/ns/c/blobs/uploads/u3?_state={STATE}&digest={} - 51200",
            enc(&sd)
        ),
        "PUT /v2/ns/c/manifests/v1 - ".to_string()
            + &manifest_of(&config_of("ns/c"), &[&big, &small])
                .len()
                .to_string(),
    ];
    assert_eq!(lines, want);
    for r in &seen {
        if r.method == "PATCH" {
            assert_eq!(r.header("content-length"), Some("102400"));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn against_the_adapter_each_scope_gets_its_own_token() {
    // The adapter's token endpoint answers each scope Harbor asks; a HEAD with the pull token
    // and an upload with the pull,push one both go through.
    let e = harbor::Env::default().await;
    let j = wan_support::job(&e, Gen::V2_0);
    let own = layer(7, 4000);
    let config = config_of("hc/app");
    let manifest = manifest_of(&config, &[&own]);
    let done = j
        .copy_image("hc/app", "v1", &[&config, &own], MT, manifest.as_bytes())
        .await;
    assert_eq!(done.uploaded, 2);
    let rc = j.record();
    assert_eq!(rc.pings, 1);
    assert_eq!(
        rc.fetched,
        vec![
            scopes(&["repository:hc/app:pull"]),
            scopes(&["repository:hc/app:pull,push"])
        ]
    );
    let (s, dig) = j.head_manifest("hc/app", "v1").await;
    assert_eq!(s, 200);
    assert_eq!(
        dig.as_deref(),
        Some(Digest::sha256_of(manifest.as_bytes()).as_str())
    );
}
