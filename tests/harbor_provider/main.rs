//! The adapter as a destination of Harbor's **"Harbor"** replication provider (1.8.0, 1.10, 2.0,
//! 2.3, 2.5 — `harbor-api-shim.md` §1), against the real emulator: each generation's own calls in
//! its own order with its own success checks (test connection, `Info`, `PrepareForPush`, images
//! over `/v2/`, ChartMuseum charts, deletions), plus the pull direction, racing project creation,
//! the chart pitfalls of §5 and a real Helm client.

#[path = "../common/mod.rs"]
mod common;
#[path = "../harbor/mod.rs"]
mod harbor;

mod big_chart;
mod charts;
mod projects;
mod replays;

use crate::common::SendOk;
use reqwest::{Method, Response, StatusCode};
use serde_json::Value;

use common::charts::multipart_chart;
use harbor::{basic, Env};

/// A Harbor generation, as far as its "harbor" adapter's wire behaviour differs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Gen {
    V1_8,
    V1_10,
    V2_0,
    V2_3,
    V2_5,
}

impl Gen {
    pub fn is_v2(self) -> bool {
        self >= Gen::V2_0
    }
    fn user_agent(self) -> &'static str {
        if self.is_v2() {
            "Go-http-client/1.1"
        } else {
            "harbor-replication-service"
        }
    }
}

/// The endpoint's Access ID / Access Secret.
#[derive(Clone, Debug)]
pub struct Creds {
    pub user: String,
    pub pass: String,
}

impl Creds {
    pub fn api_keys() -> Creds {
        Creds {
            user: common::DEMO_SECRET_ID.into(),
            pass: common::DEMO_SECRET_KEY.into(),
        }
    }
    pub fn long_term(e: &Env) -> Creds {
        Creds {
            user: e.user.clone(),
            pass: e.pass.clone(),
        }
    }
}

impl Gen {
    /// This generation's "harbor" adapter talking to the adapter of `e` with the endpoint's `c`.
    pub fn at<'a>(self, e: &'a Env, c: &'a Creds) -> Harbor<'a> {
        Harbor { e, g: self, c }
    }
}

/// One Harbor generation's "harbor" adapter with its endpoint credentials.
pub struct Harbor<'a> {
    e: &'a Env,
    g: Gen,
    c: &'a Creds,
}

impl Harbor<'_> {
    /// What Harbor's harbor adapter sends to `/api/...` and `/chartrepo/...`: pre-emptive Basic.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<(String, Vec<u8>)>,
    ) -> Response {
        let mut r = self
            .e
            .http
            .request(method, format!("{}{path}", self.e.base))
            .header("Authorization", basic(&self.c.user, &self.c.pass))
            .header("User-Agent", self.g.user_agent());
        if let Some((ctype, b)) = body {
            r = r.header("Content-Type", ctype).body(b);
        }
        r.send_ok().await
    }

    /// `GET <path>`.
    pub async fn get(&self, path: &str) -> Response {
        self.call(Method::GET, path, None).await
    }

    /// `GET <path>`, the answer as JSON.
    pub async fn get_json(&self, path: &str) -> (StatusCode, Value) {
        json(self.get(path).await).await
    }

    /// `POST /api/projects` of `value` as JSON.
    pub async fn post_project(&self, value: &Value) -> Response {
        let body = ("application/json".into(), value.to_string().into_bytes());
        self.call(Method::POST, "/api/projects", Some(body)).await
    }

    /// `POST /api/projects` of `{"project_name": name, "metadata": {"public": public}}`.
    pub async fn create_project(&self, name: &str, public: Value) -> Response {
        let body = serde_json::json!({"project_name": name, "metadata": {"public": public}});
        self.post_project(&body).await
    }
}

/// The `message` of the first entry of a Harbor/OCI error body (`""` when there is none).
pub fn error_message(v: &Value) -> &str {
    v["errors"][0]["message"].as_str().unwrap_or("")
}

pub async fn json(r: Response) -> (StatusCode, Value) {
    let s = r.status();
    let text = r.text().await.unwrap();
    (
        s,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// Adapter creation (2.x: `GET /api/version` → 404 picks the v1 adapter) and the health check:
/// the token flow and `HEAD /v2/` (1.x, exactly 200) or `GET /v2/` (2.x).
pub async fn test_connection(e: &Env, g: Gen, c: &Creds) {
    if g.is_v2() {
        let r = g.at(e, c).get("/api/version").await;
        assert_eq!(
            r.status(),
            404,
            "{g:?}: /api/version must be 404 (v1 persona)"
        );
    }
    let t = e.token_as(&c.user, &c.pass, &[]).await;
    let m = if g.is_v2() { Method::GET } else { Method::HEAD };
    let r = e.req(m, "/v2/", Some(&t), &[], None).await;
    assert_eq!(r.status(), 200, "{g:?}: health check");
}

/// `Info()` as the 2.3+ copy and deletion flows call it on the destination every run.
pub async fn info(e: &Env, g: Gen, c: &Creds) {
    let (s, v) = g.at(e, c).get_json("/api/systeminfo").await;
    assert_eq!(
        (s, v["with_chartmuseum"].as_bool()),
        (StatusCode::OK, Some(true)),
        "{v}"
    );
    if g >= Gen::V1_10 {
        let (s, v) = g.at(e, c).get_json("/api/labels?scope=g").await;
        assert_eq!(s, StatusCode::OK);
        assert!(v.is_array(), "{v}");
    }
}

/// `PrepareForPush`: one `POST /api/projects` per distinct project (2.5+: after a lookup).
pub async fn prepare_for_push(e: &Env, g: Gen, c: &Creds, projects: &[&str]) {
    let mut missing: Vec<&str> = projects.to_vec();
    if g >= Gen::V2_5 {
        let q = format!("name={{{}}}", projects.join(" "));
        let path = format!(
            "/api/projects?q={}&with_detail=false",
            url::form_urlencoded::byte_serialize(q.as_bytes()).collect::<String>()
        );
        let (s, v) = g.at(e, c).get_json(&path).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        for p in v.as_array().unwrap() {
            assert!(
                p.get("registry_id")
                    .is_none_or(|r| r.as_i64().unwrap_or(0) == 0),
                "a registry_id would make Harbor skip the project: {p}"
            );
            missing.retain(|m| Some(*m) != p["name"].as_str());
        }
    }
    for p in missing {
        let metadata = match g {
            // 1.8 passes the source project's whole metadata map, values as strings.
            Gen::V1_8 => serde_json::json!({"public": "false", "enable_content_trust": "false",
                "prevent_vul": "false", "severity": "low", "auto_scan": "false"}),
            _ => serde_json::json!({"public": "true"}),
        };
        let body = serde_json::json!({"project_name": p, "metadata": metadata});
        let r = g.at(e, c).post_project(&body).await;
        let s = r.status();
        assert!(
            s == 201 || s == 409,
            "{g:?}: POST /api/projects {p}: {s} {}",
            r.text().await.unwrap()
        );
    }
}

/// What one chart replication did.
#[derive(Debug, PartialEq, Eq)]
pub enum ChartRun {
    Uploaded,
    Skipped,
}

/// `ChartExist` then (absent, or `override`) `UploadChart`, as the chart transfer does.
pub async fn replicate_chart(
    e: &Env,
    g: Gen,
    c: &Creds,
    project: &str,
    (name, version): (&str, &str),
    archive: &[u8],
    overwrite: bool,
) -> ChartRun {
    let path = format!("/api/chartrepo/{project}/charts/{name}/{version}");
    let r = g.at(e, c).get(&path).await;
    let exists = match r.status().as_u16() {
        200..=299 => {
            let v: Value = r.json().await.expect("a 2xx ChartExist must be JSON");
            assert!(v.is_object());
            true
        }
        404 => false,
        s => panic!("{g:?}: ChartExist answered {s}: Harbor fails the task"),
    };
    if exists && !overwrite {
        return ChartRun::Skipped;
    }
    let body = multipart_chart(&format!("{name}.tgz"), archive);
    let r = g
        .at(e, c)
        .call(
            Method::POST,
            &format!("/api/chartrepo/{project}/charts"),
            Some(body),
        )
        .await;
    let s = r.status();
    assert!(
        s.is_success(),
        "{g:?}: UploadChart: {s} {}",
        r.text().await.unwrap()
    );
    ChartRun::Uploaded
}

/// The archive as the emulator (TCR) holds it, read with an instance token.
pub async fn emulator_chart(e: &Env, ns: &str, file: &str) -> (StatusCode, Vec<u8>) {
    let r = common::tcr_chart_file(&e.http, &e.emu, ns, file).await;
    (r.status(), r.bytes().await.unwrap().to_vec())
}

/// Chart requests of one method counted by the emulator's registry listener.
pub async fn emulator_chart_calls(e: &Env, method: &str) -> u64 {
    common::registry_requests(
        &e.emu,
        &[r#"route="chart_api""#, &format!("method=\"{method}\"")],
    )
    .await
}
