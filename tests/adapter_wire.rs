//! What the adapter puts on the wire towards the upstream, observed with a recording fake
//! registry (no auth): Content-Length kept or chunked passed through, hop-by-hop headers and the
//! client's Authorization never forwarded, Accept lines merged, 307 relayed untouched, bodyless
//! reads retried on 503 honouring Retry-After, a missing Docker-Content-Digest computed, and an
//! upstream 401 on a read turned into a 404.

mod common;

use common::SendOk;
use std::sync::{Arc, Mutex};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use base64::Engine;
use futures_util::StreamExt;
use reqwest::Method;
use tcr_adapter::app;
use tcr_adapter::clock;
use tcr_adapter::config::Config;
use tcr_adapter::oci::Digest;

#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    query: String,
    headers: Vec<(String, String)>,
    body_len: usize,
}

impl Seen {
    fn header(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

type Log = Arc<Mutex<Vec<Seen>>>;

const MANIFEST: &str = r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}"#;

async fn fake(req: HttpRequest, mut body: web::Payload, log: web::Data<Log>) -> HttpResponse {
    let mut n = 0;
    while let Some(c) = body.next().await {
        n += c.map(|c| c.len()).unwrap_or(0);
    }
    let seen = Seen {
        method: req.method().to_string(),
        path: req.path().to_string(),
        query: req.query_string().to_string(),
        headers: req
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
            .collect(),
        body_len: n,
    };
    let count = {
        let mut l = log.lock().unwrap();
        l.push(seen.clone());
        l.iter().filter(|s| s.path == seen.path).count()
    };
    let p = seen.path.as_str();
    match (seen.method.as_str(), p) {
        (_, "/v2/") => HttpResponse::Ok().finish(),
        ("PUT", _) if p.contains("/blobs/uploads/") => HttpResponse::Created()
            .insert_header(("Location", "/v2/ns/app/blobs/sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"))
            .insert_header(("Docker-Content-Digest", "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"))
            .finish(),
        ("GET", _) if p.contains("/blobs/") => HttpResponse::TemporaryRedirect()
            .insert_header(("Location", "https://storage.example/obj?sig=1"))
            .finish(),
        ("GET", "/v2/ns/flaky/manifests/x") if count < 3 => HttpResponse::ServiceUnavailable()
            .insert_header(("Retry-After", "0"))
            .finish(),
        (_, "/v2/ns/flaky/manifests/x") | (_, "/v2/ns/nodigest/manifests/x") => HttpResponse::Ok()
            .content_type("application/vnd.oci.image.manifest.v1+json")
            .body(MANIFEST),
        ("HEAD", "/v2/ns/gone/manifests/x") => HttpResponse::Unauthorized()
            .content_type("application/json")
            .body(r#"{"errors":[{"code":"UNAUTHORIZED","message":"project ns not found"}]}"#),
        _ => HttpResponse::NotFound().finish(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_goes_on_the_wire() {
    let log: Log = Arc::new(Mutex::new(Vec::new()));
    let data = web::Data::new(log.clone());
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let up = l.local_addr().unwrap();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .default_service(web::to(fake))
    })
    .workers(1)
    .listen(l)
    .unwrap()
    .run();
    let sh = server.handle();
    tokio::spawn(server);

    let mut cfg = Config::default();
    cfg.server.listen = "127.0.0.1:0".parse().unwrap();
    cfg.tcr.registry_url = format!("http://{up}");
    cfg.tcr.api_endpoint = String::new();
    let adapter = app::start(cfg, clock::system()).await.unwrap();
    let base = format!("http://{}", adapter.addr);
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("100000000001:whatever")
    );
    let v: serde_json::Value = http
        .get(format!(
            "{base}/service/token?service=tcr-adapter&scope=repository:ns/app:pull,push&scope=repository:ns/flaky:pull&scope=repository:ns/nodigest:pull&scope=repository:ns/gone:pull"
        ))
        .header("Authorization", &basic)
        .send_ok().await
        .json()
        .await
        .unwrap();
    let t = v["token"].as_str().expect("token").to_string();
    let authed = |m: reqwest::Method, url: String| http.request(m, url).bearer_auth(&t);
    let manifest_digest = Digest::sha256_of(MANIFEST.as_bytes());
    let status_and_digest = |r: &reqwest::Response| {
        let d = r.headers()["docker-content-digest"].to_str().unwrap();
        (r.status().as_u16(), d.to_string())
    };
    let d = Digest::sha256_of(b"hello").to_string();

    // Sized PUT: Content-Length forwarded, not chunked; Authorization/Connection not forwarded.
    let r = authed(
        Method::PUT,
        format!("{base}/v2/ns/app/blobs/uploads/u1?_state=a%2Bb&digest={d}"),
    )
    .header("Connection", "keep-alive, X-Secret")
    .header("X-Secret", "hop")
    .header("Proxy-Authorization", "Basic eA==")
    .body(vec![7u8; 100_000])
    .send_ok()
    .await;
    assert_eq!(r.status(), 201);
    assert_eq!(
        r.headers()["location"].to_str().unwrap(),
        format!("{base}/v2/ns/app/blobs/sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb")
    );
    // Chunked PUT (Harbor 1.8.0): passed through chunked.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..5).map(|_| Ok(vec![1u8; 1000])).collect();
    let r = authed(
        Method::PUT,
        format!(
            "{base}/v2/ns/app/blobs/uploads/u2?digest={}",
            d.replace(':', "%3A")
        ),
    )
    .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
        chunks,
    )))
    .send_ok()
    .await;
    assert_eq!(r.status(), 201);
    // Repeated Accept lines merged; 307 relayed as is.
    let r = authed(Method::GET, format!("{base}/v2/ns/app/blobs/{d}"))
        .header("Accept", "a/1")
        .header("Accept", "b/2")
        .send_ok()
        .await;
    assert_eq!(r.status(), 307);
    assert_eq!(r.headers()["location"], "https://storage.example/obj?sig=1");
    // 503 twice, then 200: retried.
    let r = authed(Method::GET, format!("{base}/v2/ns/flaky/manifests/x"))
        .send_ok()
        .await;
    assert_eq!(status_and_digest(&r), (200, manifest_digest.to_string()));
    // No digest upstream on HEAD: computed.
    let r = authed(Method::HEAD, format!("{base}/v2/ns/nodigest/manifests/x"))
        .send_ok()
        .await;
    assert_eq!(status_and_digest(&r), (200, manifest_digest.to_string()));
    assert_eq!(
        r.headers()["content-length"],
        MANIFEST.len().to_string().as_str()
    );
    // Upstream 401 "project not found" on a read: 404 MANIFEST_UNKNOWN.
    let r = authed(Method::HEAD, format!("{base}/v2/ns/gone/manifests/x"))
        .send_ok()
        .await;
    assert_eq!(r.status(), 404);

    let seen = log.lock().unwrap().clone();
    let put1 = seen.iter().find(|s| s.path.ends_with("/u1")).unwrap();
    assert_eq!(put1.header("content-length"), vec!["100000"]);
    assert!(put1.header("transfer-encoding").is_empty());
    assert_eq!(put1.body_len, 100_000);
    assert!(
        put1.header("authorization").is_empty(),
        "no auth towards a no-auth upstream"
    );
    assert!(put1.header("x-secret").is_empty());
    assert!(put1.header("proxy-authorization").is_empty());
    assert_eq!(
        put1.query,
        format!("_state=a%2Bb&digest={}", d.replace(':', "%3A"))
    );
    let put2 = seen.iter().find(|s| s.path.ends_with("/u2")).unwrap();
    assert_eq!(put2.header("transfer-encoding"), vec!["chunked"]);
    assert!(put2.header("content-length").is_empty());
    assert_eq!(put2.body_len, 5000);
    let get = seen
        .iter()
        .find(|s| s.method == "GET" && s.path.contains("/blobs/"))
        .unwrap();
    assert_eq!(get.header("accept"), vec!["a/1, b/2"]);
    assert_eq!(get.header("accept-encoding"), vec!["identity"]);
    let flaky = seen
        .iter()
        .filter(|s| s.path == "/v2/ns/flaky/manifests/x")
        .count();
    assert_eq!(flaky, 3);
    let text = http
        .get(format!("{base}/metrics"))
        .send_ok()
        .await
        .text()
        .await
        .unwrap();
    assert!(
        text.contains("tcr_adapter_upstream_retries_total{cause=\"503\"} 2"),
        "{text}"
    );
    adapter.stop().await;
    sh.stop(true).await;
}
