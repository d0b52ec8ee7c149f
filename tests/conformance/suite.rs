//! `run_suite`: the four workflows of the v1.1.1 suite, in the Go suite's order, against one
//! registry. Every spec records Pass/Warn/Skip/Fail; nothing here panics on a registry's answer.

use crate::client::{blob_path, manifest_path, Reggie, Resp};
use crate::fixtures::{Fixtures, TestBlob};
use crate::report::{Category, Report, SpecResult, Status};
use crate::{discovery, management, pull, push};

pub type Outcome = Result<Status, String>;
pub const PASS: Outcome = Ok(Status::Pass);

/// Shared state of one run: the client, the data, and what earlier specs left behind.
pub struct Ctx {
    pub c: Reggie,
    pub f: Fixtures,
    pub crossmount: String,
    pub report: Report,
    category: Category,
    context: &'static str,
}

impl Ctx {
    pub fn section(&mut self, category: Category, context: &'static str) {
        self.category = category;
        self.context = context;
    }
    pub fn record(&mut self, name: &'static str, outcome: Outcome) {
        let status = match outcome {
            Ok(s) => s,
            Err(m) => Status::Fail(m),
        };
        self.report.specs.push(SpecResult {
            category: self.category,
            context: self.context,
            name,
            status,
        });
    }
    /// Record a spec whose response later specs use: on success it replaces `last`; a failure
    /// keeps the previous response (`lastResponse` is only assigned on success in the Go suite).
    pub fn record_keep(
        &mut self,
        name: &'static str,
        r: Result<Resp, String>,
        last: &mut Option<Resp>,
    ) {
        match r {
            Ok(resp) => {
                self.record(name, PASS);
                *last = Some(resp);
            }
            Err(e) => self.record(name, Err(e)),
        }
    }
}

/// `spec!(x, name, { ... })`: one spec — run the body as an `async` block yielding an
/// [`Outcome`], and record it under `name`.
macro_rules! spec {
    ($x:ident, $name:expr, { $($body:tt)* }) => {{
        let r = async { $($body)* }.await;
        $x.record($name, r);
    }};
}
pub(crate) use spec;

/// `spec_keep!(x, last, name, { ... })`: a spec whose body yields the response later specs use
/// ([`Ctx::record_keep`] into `last`).
macro_rules! spec_keep {
    ($x:ident, $last:ident, $name:expr, { $($body:tt)* }) => {{
        let r = async { $($body)* }.await;
        $x.record_keep($name, r, &mut $last);
    }};
}
pub(crate) use spec_keep;

/// `Expect(resp.StatusCode()).To(SatisfyAny(Equal(a), Equal(b), ...))`.
pub fn want(r: &Resp, codes: &[u16]) -> Result<(), String> {
    if codes.contains(&r.code()) {
        Ok(())
    } else {
        Err(format!("expected status {codes:?}, got {}", r.describe()))
    }
}

/// `SatisfyAny(SatisfyAll(>=200, <300), Equal(extra)...)`.
pub fn want_2xx(r: &Resp, extra: &[u16]) -> Result<(), String> {
    if r.status.is_success() || extra.contains(&r.code()) {
        Ok(())
    } else {
        Err(format!("expected 2xx or {extra:?}, got {}", r.describe()))
    }
}

/// `Expect(resp.Header().Get(name)).ToNot(BeEmpty())`.
pub fn want_header(r: &Resp, name: &str) -> Result<String, String> {
    let v = r.header(name);
    if v.is_empty() {
        Err(format!("missing {name} header: {}", r.describe()))
    } else {
        Ok(v)
    }
}

pub fn want_eq(what: &str, got: &str, expected: &str) -> Result<(), String> {
    if got == expected {
        Ok(())
    } else {
        Err(format!("{what}: expected {expected:?}, got {got:?}"))
    }
}

/// The POST + monolithic PUT every setup spec uses.
pub async fn post_put_blob(c: &Reggie, digest: &str, content: &[u8]) -> Result<Resp, String> {
    use reqwest::Method;
    let resp = c.call(Method::POST, "/v2/<name>/blobs/uploads/").await?;
    let req = c
        .req(Method::PUT, &resp.relative_location())
        .query("digest", digest)
        .octet(content);
    c.go(req).await
}

/// A setup push of blob `b` ([`post_put_blob`]): the PUT must answer 2xx.
pub async fn push_blob(x: &Ctx, b: &TestBlob, what: &str) -> Outcome {
    want_2xx(&post_put_blob(&x.c, &b.digest, &b.content).await?, &[])
        .map_err(|e| format!("{what}: {e}"))?;
    PASS
}

/// Setup specs that push blobs, one spec per `(blob, name)` ([`push_blob`]).
pub async fn push_blobs(x: &mut Ctx, blobs: Vec<(TestBlob, &'static str)>) {
    for (b, name) in blobs {
        let r = push_blob(x, &b, name).await;
        x.record(name, r);
    }
}

/// `PUT /v2/<name>/manifests/<tag>` (a tag or a digest) of `m` as `ct`: the response.
pub async fn put_manifest(x: &Ctx, tag: &str, ct: &str, m: &TestBlob) -> Result<Resp, String> {
    let req =
        x.c.req(reqwest::Method::PUT, &manifest_path(tag))
            .header("Content-Type", ct)
            .body(&m.content);
    x.c.go(req).await
}

/// The teardown specs that delete blobs, one spec per `(digest, name)`: the DELETE must answer
/// 2xx or one of `also`.
pub async fn delete_blobs(x: &mut Ctx, blobs: Vec<(String, &'static str)>, also: &[u16]) {
    for (d, name) in blobs {
        let r = async {
            let resp = x.c.call(reqwest::Method::DELETE, &blob_path(&d)).await?;
            want_2xx(&resp, also)?;
            PASS
        }
        .await;
        x.record(name, r);
    }
}

/// Run every spec of the four categories against `base_url`, with `namespace` as the repository
/// under test (OCI_NAMESPACE) and `crossmount_namespace` as the mount target.
pub async fn run_suite(
    base_url: &str,
    username: &str,
    password: &str,
    namespace: &str,
    crossmount_namespace: &str,
) -> Report {
    run_suite_trusting(
        base_url,
        None,
        username,
        password,
        namespace,
        crossmount_namespace,
    )
    .await
}

/// [`run_suite`] over HTTPS, trusting `ca_pem` (PEM) besides the system roots.
pub async fn run_suite_trusting(
    base_url: &str,
    ca_pem: Option<&[u8]>,
    username: &str,
    password: &str,
    namespace: &str,
    crossmount_namespace: &str,
) -> Report {
    let mut ctx = Ctx {
        c: Reggie::new(base_url, ca_pem, namespace, username, password),
        f: Fixtures::new(),
        crossmount: crossmount_namespace.to_string(),
        report: Report {
            target: format!("{base_url} (name {namespace}, crossmount {crossmount_namespace})"),
            specs: Vec::new(),
        },
        category: Category::Pull,
        context: "",
    };
    pull::run(&mut ctx).await;
    push::run(&mut ctx).await;
    discovery::run(&mut ctx).await;
    management::run(&mut ctx).await;
    ctx.report
}
