//! `GET` and `POST /service/token`: the Docker token endpoint (distribution
//! `docs/spec/auth/token.md`) and its OAuth2 form (`oauth.md`). Thin handlers: parse the query
//! or form at the edge, call [`AuthService::issue`], render JSON.
//!
//! GET: Basic credentials; `service`, repeated `scope` (each may hold several space-separated
//! scopes), `offline_token=true` (→ `refresh_token`), `account`, `client_id`. No credentials →
//! an anonymous token (at most `pull` on repositories).
//! POST: `grant_type=password|refresh_token`, `username`, `password`, `refresh_token`, `scope`
//! (space-separated), `service`, `client_id`, `access_type=offline`. OAuth errors are
//! `400 {"error": …}`.

use actix_web::http::header::{CACHE_CONTROL, PRAGMA};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};

use super::{presented, scope, Access, AuthService, IssueError, Issued, Presented};
use crate::credentials::ClientSecret;
use crate::oci::{OciError, API_VERSION_HEADER};

/// JSON answer of the token endpoint. `token` and `access_token` are always equal.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenResponse {
    pub token: String,
    pub access_token: String,
    /// Seconds, integer.
    pub expires_in: u64,
    /// RFC 3339 with timezone.
    pub issued_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// Granted scopes, space-separated (always on POST).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

/// Mount `GET` and `POST /service/token`. Needs `web::Data<AuthService>` in the app.
pub fn configure_token_routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/service/token")
            .route(web::get().to(get_token))
            .route(web::post().to(post_token)),
    );
}

/// Query of `GET /service/token`.
struct TokenQuery {
    scopes: Vec<Access>,
    offline: bool,
}

impl TokenQuery {
    fn parse(query: &str) -> Self {
        let mut raw: Vec<String> = Vec::new();
        let mut offline = false;
        for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
            match &*k {
                "scope" => raw.push(v.into_owned()),
                "offline_token" => offline = v.eq_ignore_ascii_case("true"),
                // `service`, `account` and `client_id` are accepted and not needed: the audience
                // is always this adapter's service, the account comes from the credentials.
                _ => {}
            }
        }
        TokenQuery {
            scopes: scope::parse_all(raw.iter().map(String::as_str)),
            offline,
        }
    }
}

/// Form of `POST /service/token`.
#[derive(Default)]
struct OAuthForm {
    grant_type: Option<String>,
    username: Option<String>,
    password: Option<String>,
    refresh_token: Option<String>,
    scope: Vec<String>,
    offline: bool,
}

impl OAuthForm {
    fn parse(body: &[u8]) -> Self {
        let mut f = OAuthForm::default();
        for (k, v) in url::form_urlencoded::parse(body) {
            let v = v.into_owned();
            match &*k {
                "grant_type" => f.grant_type = Some(v),
                "username" => f.username = Some(v),
                "password" => f.password = Some(v),
                "refresh_token" => f.refresh_token = Some(v),
                "scope" => f.scope.push(v),
                "access_type" => f.offline = v == "offline",
                _ => {}
            }
        }
        f
    }
}

fn respond(issued: Issued, with_scope: bool) -> HttpResponse {
    let scope = with_scope.then(|| scope::render_all(&issued.access));
    let body = TokenResponse {
        access_token: issued.token.clone(),
        token: issued.token,
        expires_in: issued.expires_in,
        issued_at: issued.issued_at,
        refresh_token: issued.refresh_token,
        scope,
    };
    HttpResponse::Ok()
        .insert_header(API_VERSION_HEADER)
        .insert_header((CACHE_CONTROL, "no-store"))
        .insert_header((PRAGMA, "no-cache"))
        .json(body)
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header(API_VERSION_HEADER)
        .insert_header((CACHE_CONTROL, "no-store"))
        .json(serde_json::json!({"error": error, "error_description": description}))
}

/// `GET /service/token` (token.md "Requesting a Token").
async fn get_token(
    req: HttpRequest,
    svc: web::Data<AuthService>,
) -> Result<HttpResponse, OciError> {
    get_token_inner(&req, &svc)
        .await
        .map_err(|e| svc.for_request(&req, e))
}

async fn get_token_inner(req: &HttpRequest, svc: &AuthService) -> Result<HttpResponse, OciError> {
    let q = TokenQuery::parse(req.query_string());
    let secret = match presented(req) {
        Presented::Basic(s) => Some(s),
        Presented::Nothing | Presented::Bearer(_) => None,
        Presented::Malformed(why) => return Err(svc.unauthorized(&q.scopes, None, why)),
    };
    match svc.issue(secret.as_ref(), &q.scopes, q.offline).await {
        Ok(issued) => Ok(respond(issued, false)),
        Err(IssueError::Credential(e)) => Err(svc.credential_failure(&q.scopes, None, &e)),
        Err(IssueError::Namespace(e)) => Err(e),
    }
}

/// `POST /service/token` (oauth.md): password and refresh_token grants.
async fn post_token(
    req: HttpRequest,
    body: web::Bytes,
    svc: web::Data<AuthService>,
) -> Result<HttpResponse, OciError> {
    post_token_inner(&body, &svc)
        .await
        .map_err(|e| svc.for_request(&req, e))
}

async fn post_token_inner(body: &[u8], svc: &AuthService) -> Result<HttpResponse, OciError> {
    let form = OAuthForm::parse(body);
    let requested = scope::parse_all(form.scope.iter().map(String::as_str));
    let bad = |e: &str, d: &str| Ok(oauth_error(StatusCode::BAD_REQUEST, e, d));
    let secret: Option<ClientSecret> = match form.grant_type.as_deref() {
        Some("password") => {
            let user = form.username.as_deref().unwrap_or("");
            let pass = form.password.as_deref().unwrap_or("");
            match ClientSecret::from_basic(user, pass) {
                Some(s) => Some(s),
                None => {
                    return bad(
                        "invalid_request",
                        "username is required for grant_type=password",
                    )
                }
            }
        }
        Some("refresh_token") => {
            let Some(rt) = form.refresh_token.as_deref() else {
                return bad(
                    "invalid_request",
                    "refresh_token is required for grant_type=refresh_token",
                );
            };
            match svc.open_refresh_token(rt) {
                Ok(s) => s,
                Err(e) => return bad("invalid_grant", &format!("refresh token refused: {e}")),
            }
        }
        Some(other) => {
            return bad(
                "unsupported_grant_type",
                &format!("grant_type {other:?} is not supported (use password or refresh_token)"),
            )
        }
        None => return bad("invalid_request", "grant_type is required"),
    };
    match svc.issue(secret.as_ref(), &requested, form.offline).await {
        Ok(issued) => Ok(respond(issued, true)),
        Err(IssueError::Credential(e)) if e.is_rejection() => bad("invalid_grant", &e.to_string()),
        Err(IssueError::Credential(e)) => Err(svc.credential_failure(&requested, None, &e)),
        Err(IssueError::Namespace(e)) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_collects_repeated_and_encoded_scopes() {
        let q = TokenQuery::parse(
            "service=tcr-adapter&scope=repository%3Aa%2Fb%3Apull&scope=repository:c/d:push%20registry:catalog:*&offline_token=true&account=x&client_id=docker",
        );
        assert_eq!(q.scopes.len(), 3);
        assert!(q.offline);
        assert!(TokenQuery::parse("").scopes.is_empty());
    }
}
