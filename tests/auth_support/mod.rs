//! Fixtures of the auth tests: a fake registry-credential validator, an in-process app with the
//! token routes and a protected `/v2/` route, and small request helpers.
#![allow(dead_code)]

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{test, web, HttpRequest, HttpResponse};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use futures_util::future::LocalBoxFuture;
use serde_json::Value;

use tcr_adapter::auth::{scope, AuthService, TokenResponse};
use tcr_adapter::clock::{self, SharedClock};
use tcr_adapter::config::{Config, Secret};
use tcr_adapter::credentials::{
    ClientSecret, CredentialResolver, RegistryCredentialValidator, UpstreamCredential,
};
use tcr_adapter::namespaces::NamespaceProvisioner;
use tcr_adapter::oci::OciError;
use tcr_adapter::tencentcloud::{RetryPolicy, TcrApiClient};

pub const USER: &str = "tcr$robot";
pub const PASS: &str = "robot-password-123";
pub const SERVICE: &str = "tcr-adapter";
pub const REALM: &str = "http://adapter.test/service/token";

/// Accepts exactly USER/PASS; counts calls.
#[derive(Default)]
pub struct FakeValidator {
    pub calls: AtomicUsize,
}

impl RegistryCredentialValidator for FakeValidator {
    fn validate<'a>(
        &'a self,
        cred: &'a UpstreamCredential,
    ) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let ok = cred.username == USER && cred.password.expose() == PASS;
        Box::pin(async move {
            if ok {
                Ok(())
            } else {
                Err("TCR's token realm answered 401".to_string())
            }
        })
    }
}

pub fn config(signing: u8, sealing: u8) -> Config {
    let mut cfg = Config::default();
    cfg.server.public_url = "http://adapter.test/".into();
    cfg.auth.signing_key = Secret::new(STANDARD.encode([signing; 32]));
    cfg.auth.sealing_key = Secret::new(STANDARD.encode([sealing; 32]));
    cfg.auth.token_ttl_secs = 900;
    cfg.namespaces.deny = vec!["forbidden*".into()];
    cfg
}

pub struct Fixture {
    pub auth: Arc<AuthService>,
    pub validator: Arc<FakeValidator>,
}

pub fn fixture_with(cfg: &Config, api: Option<Arc<TcrApiClient>>, clock: SharedClock) -> Fixture {
    let validator = Arc::new(FakeValidator::default());
    let resolver = Arc::new(CredentialResolver::new(
        api,
        "tcr-emulator".into(),
        validator.clone(),
        clock.clone(),
    ));
    let namespaces = Arc::new(NamespaceProvisioner::new(&cfg.namespaces));
    let auth = AuthService::new(cfg, resolver, namespaces, clock).expect("auth service");
    Fixture {
        auth: Arc::new(auth),
        validator,
    }
}

pub fn fixture() -> Fixture {
    fixture_with(&config(1, 2), None, clock::system())
}

/// A protected route: `GET /v2/check?need=<scopes>` authorizes `need` and echoes the grant.
pub async fn protected(
    req: HttpRequest,
    auth: web::Data<AuthService>,
) -> Result<HttpResponse, OciError> {
    let need: Vec<String> = url::form_urlencoded::parse(req.query_string().as_bytes())
        .filter(|(k, _)| k == "need")
        .map(|(_, v)| v.into_owned())
        .collect();
    let needed = scope::parse_all(need.iter().map(String::as_str));
    let grant = auth.authorize(&req, &needed).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "subject": grant.subject,
        "kind": grant.identity.kind,
        "upstream_user": grant.identity.upstream.as_ref().map(|u| u.username.clone()),
        "access": grant.access,
    })))
}

/// What a client observes of one response.
pub struct Reply {
    pub status: StatusCode,
    pub headers: actix_web::http::header::HeaderMap,
    pub body: Value,
}

impl Reply {
    pub fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default()
    }
}

pub type Call = Box<dyn Fn(test::TestRequest) -> LocalBoxFuture<'static, Reply>>;

/// The app under test (token routes plus the protected route), behind a plain call function.
pub struct Client {
    pub call: Call,
}

impl Client {
    pub async fn send(&self, req: test::TestRequest) -> Reply {
        (self.call)(req).await
    }
}

#[macro_export]
macro_rules! app {
    ($auth:expr) => {{
        let svc = std::rc::Rc::new(
            actix_web::test::init_service(
                actix_web::App::new()
                    .app_data(actix_web::web::Data::from($auth))
                    .configure(tcr_adapter::auth::configure_token_routes)
                    .route(
                        "/v2/check",
                        actix_web::web::get().to($crate::auth_support::protected),
                    )
                    .route(
                        "/v2/",
                        actix_web::web::get().to($crate::auth_support::protected),
                    ),
            )
            .await,
        );
        let call: $crate::auth_support::Call =
            Box::new(move |req: actix_web::test::TestRequest| {
                let svc = svc.clone();
                Box::pin(async move {
                    let resp = actix_web::test::call_service(&*svc, req.to_request()).await;
                    let status = resp.status();
                    let headers = resp.headers().clone();
                    let bytes = actix_web::test::read_body(resp).await;
                    $crate::auth_support::Reply {
                        status,
                        headers,
                        body: serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
                    }
                })
            });
        $crate::auth_support::Client { call }
    }};
}

pub fn basic(user: &str, pass: &str) -> (&'static str, String) {
    (
        "Authorization",
        format!("Basic {}", STANDARD.encode(format!("{user}:{pass}"))),
    )
}

pub fn bearer(token: &str) -> (&'static str, String) {
    ("Authorization", format!("Bearer {token}"))
}

pub async fn call(app: &Client, req: test::TestRequest) -> (StatusCode, String, Value) {
    let r = app.send(req).await;
    let www = r.header("www-authenticate");
    (r.status, www, r.body)
}

pub async fn get_token(app: &Client, query: &str, user: &str, pass: &str) -> TokenResponse {
    let req = test::TestRequest::get()
        .uri(&format!("/service/token?{query}"))
        .insert_header(basic(user, pass));
    let (status, _, body) = call(app, req).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    serde_json::from_value(body).unwrap()
}

pub fn check_uri(scopes: &[&str]) -> String {
    let q: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(scopes.iter().map(|s| ("need", *s)))
        .finish();
    format!("/v2/check?{q}")
}

pub async fn assert_invalid_token(app: &Client, token: &str) {
    let req = test::TestRequest::get()
        .uri(&check_uri(&[
            "repository:team/app:pull",
            "repository:team/base:pull",
        ]))
        .insert_header(bearer(token));
    let (status, www, body) = call(app, req).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(
        www,
        format!(
            r#"Bearer realm="{REALM}",service="{SERVICE}",scope="repository:team/app:pull repository:team/base:pull",error="invalid_token""#
        )
    );
    assert_eq!(body["errors"][0]["code"], "UNAUTHORIZED");
}

pub async fn post_form(app: &Client, form: &str) -> (StatusCode, Value) {
    let req = test::TestRequest::post()
        .uri("/service/token")
        .insert_header(("Content-Type", "application/x-www-form-urlencoded"))
        .set_payload(form.to_string());
    let (status, _, body) = call(app, req).await;
    (status, body)
}

pub fn api_client(url: &str) -> Arc<TcrApiClient> {
    let c = TcrApiClient::new(
        url,
        "ap-guangzhou",
        1000,
        Duration::from_secs(5),
        clock::system(),
    )
    .expect("client");
    Arc::new(c.with_retry_policy(RetryPolicy {
        max_attempts: 1,
        base_delay: Duration::from_millis(10),
    }))
}

pub fn instance_token_calls(emu: &crate::common::TestEmulator) -> u64 {
    emu.handle
        .state
        .metrics
        .api_calls
        .with_label_values(&["CreateInstanceToken", "ok"])
        .get()
}

pub fn demo_keys() -> ClientSecret {
    ClientSecret::from_basic(
        crate::common::DEMO_SECRET_ID,
        crate::common::DEMO_SECRET_KEY,
    )
    .unwrap()
}
