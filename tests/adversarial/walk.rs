//! Every route of every front, each path parameter replaced by each hostile value, with and
//! without credentials; and the denied namespace through every Harbor API route.

use reqwest::Method;

use crate::common::charts::{chart_archive, multipart_chart};
use crate::{api, keys, raw, Guarded};

/// Routes as `(method, template)`; `{0}`… are the parameters, filled with `DEFAULTS` of the
/// same index unless under attack.
const ROUTES: &[(&str, &str)] = &[
    ("GET", "/chartrepo/{0}/charts/{1}"),
    ("HEAD", "/chartrepo/{0}/charts/{1}"),
    ("GET", "/chartrepo/{0}/index.yaml"),
    ("GET", "/api/chartrepo/{0}/charts"),
    ("POST", "/api/chartrepo/{0}/charts"),
    ("GET", "/api/chartrepo/{0}/charts/{1}"),
    ("GET", "/api/chartrepo/{0}/charts/{1}/{2}"),
    ("DELETE", "/api/chartrepo/{0}/charts/{1}/{2}"),
    ("GET", "/api/repositories/{0}/{1}/tags"),
    ("DELETE", "/api/repositories/{0}/{1}/tags/{2}"),
    ("GET", "/v2/{0}/{1}/manifests/{2}"),
    ("HEAD", "/v2/{0}/{1}/manifests/{2}"),
    ("DELETE", "/v2/{0}/{1}/manifests/{2}"),
    ("GET", "/v2/{0}/{1}/blobs/{2}"),
    ("GET", "/v2/{0}/{1}/tags/list"),
    ("GET", "/v2/{0}/{1}/blobs/uploads/{2}"),
    ("PUT", "/v2/{0}/{1}/blobs/uploads/{2}"),
    ("DELETE", "/v2/{0}/{1}/blobs/uploads/{2}"),
];

/// Valid values per route, by parameter (the chart routes' `{1}`/`{2}` differ from the image
/// routes', so each route picks its own).
fn defaults(template: &str) -> [&'static str; 3] {
    if template.starts_with("/chartrepo/") {
        ["proja", "web-1.0.0.tgz", ""]
    } else if template.starts_with("/api/chartrepo/") {
        ["proja", "web", "1.0.0"]
    } else if template.contains("/blobs/uploads/") {
        ["proja", "app", "0123456789abcdef"]
    } else if template.contains("/blobs/") {
        [
            "proja",
            "app",
            "sha256:0000000000000000000000000000000000000000000000000000000000000000",
        ]
    } else {
        ["proja", "app", "v1"]
    }
}

/// Hostile values, as they appear in the request target (encoded forms included).
fn hostile() -> Vec<String> {
    let mut v: Vec<String> = [
        "..",
        ".",
        "%2e%2e",
        "%2E%2E",
        ".%2e",
        "%2e.",
        "..%2f..%2fv2%2f_catalog",
        "..%2F..%2F..%2Fmetrics",
        "..%5c..%5cv2%5c_catalog",
        "%5c..%5c..%5cservice%5ctoken",
        "..%2f..%2fapi%2fchartrepo%2fprojb%2fcharts",
        "proja%2f..%2fprojb",
        "%252e%252e%252f%252e%252e%252fv2%252f_catalog",
        "%25252e%25252e",
        "a%2fb",
        "a%2Fb",
        "a%5cb",
        "a%3fscope%3dx",
        "a%23b",
        "a%0d%0aX-Injected:%201",
        "a%0ab",
        "a%00b",
        "a%09b",
        "%c0%ae%c0%ae",
        "%ef%bc%8f",
        "a;b",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.push("a".repeat(10_000));
    v.push("%2e".repeat(2_000));
    v
}

fn fill(template: &str, values: &[String; 3]) -> String {
    template
        .replace("{0}", &values[0])
        .replace("{1}", &values[1])
        .replace("{2}", &values[2])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_hostile_path_parameter_gets_past_the_edge_of_any_route() {
    let g = Guarded::start().await;
    let archive = chart_archive("web", "9.9.9", 512);
    let (ct, chart_body) = multipart_chart("web-9.9.9.tgz", &archive);
    let mut sent = 0;
    for auth in [Some(keys()), None] {
        for (method, template) in ROUTES {
            let d = defaults(template);
            let params = template.matches('{').count();
            for at in 0..params {
                let mut values: Vec<String> = hostile();
                if at == 0 {
                    values.extend(["projb", "sneaky"].map(String::from));
                }
                for value in values {
                    let mut p = d.map(String::from);
                    p[at] = value.clone();
                    let target = fill(template, &p);
                    let mut headers = vec![];
                    if let Some(a) = &auth {
                        headers.push(("Authorization", a.clone()));
                    }
                    let body: &[u8] = if *method == "POST" {
                        headers.push(("Content-Type", ct.clone()));
                        &chart_body
                    } else {
                        b""
                    };
                    let (status, text) = raw(g.addr, method, &target, &headers, body).await;
                    sent += 1;
                    let shown: String = target.chars().take(120).collect();
                    assert!(
                        (400..500).contains(&status),
                        "{method} {shown} answered {status}: {}",
                        text.chars().take(300).collect::<String>()
                    );
                    assert!(
                        text.len() < 2048,
                        "{method} {shown}: a {}-byte error body",
                        text.len()
                    );
                }
            }
        }
    }
    println!("{sent} hostile requests, all refused");
    // `a%2fb` decodes to a valid repository name inside `proja` (`proja/a/b`), which /v2/
    // forwards like any name: deleting what does not exist there is allowed, nothing else.
    g.assert_journal_clean(true);
    g.assert_untouched().await;
    let deleted = crate::credentials::api_calls_ok(&g.env, "DeleteImage");
    assert_eq!(deleted, 0, "DeleteImage deleted something");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_namespace_is_untouchable_through_every_harbor_api_route() {
    let g = Guarded::start().await;
    let e = &g.env;
    for ns in ["projb", "sneaky"] {
        for (method, path) in [
            (Method::GET, format!("/api/repositories/{ns}/app/tags")),
            (
                Method::DELETE,
                format!("/api/repositories/{ns}/app/tags/v1"),
            ),
            (Method::GET, format!("/api/chartrepo/{ns}/charts")),
            (Method::GET, format!("/api/chartrepo/{ns}/charts/secret")),
            (
                Method::GET,
                format!("/api/chartrepo/{ns}/charts/secret/1.0.0"),
            ),
            (
                Method::DELETE,
                format!("/api/chartrepo/{ns}/charts/secret/1.0.0"),
            ),
            (Method::GET, format!("/chartrepo/{ns}/index.yaml")),
            (
                Method::GET,
                format!("/chartrepo/{ns}/charts/secret-1.0.0.tgz"),
            ),
        ] {
            let (s, v) = api(e, method.clone(), &path).await;
            assert_eq!(s, 403, "{method} {path}: {v}");
            assert_eq!(v["errors"][0]["code"], "DENIED", "{method} {path}: {v}");
        }
        let archive = chart_archive("other", "1.0.0", 256);
        let (ct, body) = multipart_chart("other-1.0.0.tgz", &archive);
        let (s, _) = crate::post_chart(e, ns, &ct, body).await;
        assert_eq!(s, 403, "upload into {ns}");
    }
    // Listings never show it (nor `proja`, which the map renames to `alias`).
    let (s, v) = api(e, Method::GET, "/api/projects?page_size=100").await;
    assert_eq!(s, 200, "{v}");
    let names: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert!(names.contains(&"alias"), "{names:?}");
    for hidden in ["projb", "sneaky", "proja"] {
        assert!(!names.contains(&hidden), "{hidden} listed: {names:?}");
    }
    for q in ["name=projb", "name=sneaky", "q=name%3D%7Bprojb%20sneaky%7D"] {
        let (s, v) = api(e, Method::GET, &format!("/api/projects?{q}")).await;
        assert_eq!((s, v.clone()), (200, serde_json::json!([])), "{q}");
    }
    // The renamed namespace is reachable by its client name only.
    let (s, v) = api(e, Method::GET, "/api/chartrepo/alias/charts/web/1.0.0").await;
    assert_eq!(s, 200, "{v}");
    g.assert_journal_clean(false);
    g.assert_untouched().await;
}
