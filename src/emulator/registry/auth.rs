//! Harbor-style authentication of the data plane, as TCR does it: the token realm
//! `GET /service/token` (Basic = UIN + instance token, or anonymous), RS256 docker-token JWTs
//! (`aud` "harbor-registry" as a string, libtrust `kid`), and the per-request check on `/v2/...`
//! (Bearer token, or Basic credentials directly). Namespaces are enforced here: any request into a
//! missing namespace is `401 UNAUTHORIZED "project <ns> not found"`, like Harbor.
//!
//! Permissions as Harbor (and so TCR) has them: the realm grants the subset of each requested
//! scope the credential may do (an instance token its account's namespaces and actions, a
//! `tcr$` service account its own; Harbor `src/core/service/token/creator.go` `repositoryFilter`
//! leaves `actions` empty rather than failing), and a request the token (or Basic credential)
//! does not cover is `401 UNAUTHORIZED "unauthorized to access repository: <repo>, action:
//! <action>"` (Harbor `src/server/middleware/v2auth/auth.go` `reqChecker.check`).

use actix_web::http::header::HeaderName;
use actix_web::{HttpRequest, HttpResponse};
use jsonwebtoken::{Algorithm, Header, Validation};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{query_pairs, HandlerResult, State};
use crate::config::RegistryAction;
use crate::emulator::http::basic_credentials;
use crate::emulator::instance_tokens::{authenticate, Principal};
use crate::emulator::EmulatorState;
use crate::oci::{ErrorCode, OciError, RepoName};

pub(crate) const SERVICE: &str = "harbor-registry";
const ISSUER: &str = "tcr-emulator";

/// One granted resource, as in the docker token `access` claim.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Access {
    #[serde(rename = "type")]
    pub typ: String,
    pub name: String,
    pub actions: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    iss: String,
    sub: String,
    aud: String,
    exp: i64,
    nbf: i64,
    iat: i64,
    jti: String,
    access: Vec<Access>,
}

/// Who is calling.
#[derive(Debug)]
pub(crate) enum Identity {
    Anonymous,
    /// Valid Basic credentials (UIN + instance token, or a `tcr$` service account).
    Account(Principal),
    /// A bearer token from our realm.
    Bearer(Vec<Access>),
}

/// What a request needs on a repository.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Action {
    Pull,
    Push,
    Delete,
}

impl Action {
    fn as_str(self) -> &'static str {
        self.registry().as_str()
    }
    fn registry(self) -> RegistryAction {
        match self {
            Action::Pull => RegistryAction::Pull,
            Action::Push => RegistryAction::Push,
            Action::Delete => RegistryAction::Delete,
        }
    }
    /// The scope actions advertised in the challenge.
    fn challenge(self) -> &'static str {
        match self {
            Action::Pull | Action::Push => "pull,push",
            Action::Delete => "delete",
        }
    }
}

fn challenge(state: &EmulatorState, scope: Option<&str>, error: Option<&str>) -> String {
    let mut c = format!(
        "Bearer realm=\"{}/service/token\",service=\"{SERVICE}\"",
        state.registry_url
    );
    if let Some(s) = scope {
        c.push_str(&format!(",scope=\"{s}\""));
    }
    if let Some(e) = error {
        c.push_str(&format!(",error=\"{e}\""));
    }
    c
}

fn unauthorized(
    state: &EmulatorState,
    msg: &str,
    scope: Option<&str>,
    err: Option<&str>,
) -> OciError {
    OciError::new(ErrorCode::Unauthorized, msg).with_header(
        HeaderName::from_static("www-authenticate"),
        &challenge(state, scope, err),
    )
}

fn bearer(req: &HttpRequest) -> Option<String> {
    let v = req.headers().get("authorization")?.to_str().ok()?;
    let (scheme, rest) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| rest.trim().to_string())
}

/// Identify the caller; `Err(())` when credentials were sent but are not valid.
fn identify(req: &HttpRequest, state: &EmulatorState) -> Result<Identity, ()> {
    if let Some(t) = bearer(req) {
        let mut v = Validation::new(Algorithm::RS256);
        v.validate_exp = false;
        v.validate_nbf = false;
        v.required_spec_claims.clear();
        v.set_audience(&[SERVICE]);
        v.set_issuer(&[ISSUER]);
        let data = jsonwebtoken::decode::<Claims>(&t, &state.keys.decoding, &v).map_err(|_| ())?;
        let now = state.clock.now_secs();
        if data.claims.exp <= now || data.claims.nbf > now + 60 {
            return Err(());
        }
        return Ok(Identity::Bearer(data.claims.access));
    }
    if req.headers().contains_key("authorization") {
        let (u, p) = basic_credentials(req).ok_or(())?;
        return authenticate(state, &u, &p)
            .map(Identity::Account)
            .map_err(|_| ());
    }
    Ok(Identity::Anonymous)
}

fn grants(access: &[Access], typ: &str, name: &str, action: &str) -> bool {
    access.iter().any(|a| {
        a.typ == typ && a.name == name && a.actions.iter().any(|x| x == action || x == "*")
    })
}

/// Check the caller may do `action` on `repo`. A missing namespace is refused first.
pub(crate) fn authorize(
    req: &HttpRequest,
    state: &EmulatorState,
    repo: &RepoName,
    action: Action,
) -> Result<(), OciError> {
    authorize_also(req, state, repo, action, None)
}

/// [`authorize`], with `extra` access advertised in the challenge next to the repository's own
/// (space-separated, like distribution's access records): a mount's 401 asks for
/// `repository:<from>:pull` too, so a client that requests exactly the challenged scope gets a
/// token that lets the mount happen.
pub(crate) fn authorize_also(
    req: &HttpRequest,
    state: &EmulatorState,
    repo: &RepoName,
    action: Action,
    extra: Option<&str>,
) -> Result<(), OciError> {
    let mut scope = format!("repository:{}:{}", repo, action.challenge());
    if let Some(e) = extra {
        scope.push(' ');
        scope.push_str(e);
    }
    let ns = repo.namespace();
    let Some(info) = state.namespaces.get(ns) else {
        // A HEAD response cannot carry the message, and clients (containers/image) abort on a
        // 401 existence check with a bare "authentication required". Answer "absent" instead, so
        // the push goes on to the POST, whose 401 body shows `project <ns> not found`.
        if req.method() == actix_web::http::Method::HEAD {
            return Err(OciError::new(
                ErrorCode::NameUnknown,
                format!("project {ns} not found"),
            ));
        }
        return Err(unauthorized(
            state,
            &format!("project {ns} not found"),
            Some(&scope),
            None,
        ));
    };
    let id = identify(req, state).map_err(|_| {
        unauthorized(
            state,
            "invalid credentials or token",
            Some(&scope),
            Some("invalid_token"),
        )
    })?;
    if action == Action::Pull && info.public {
        return Ok(());
    }
    let refused = || {
        unauthorized(
            state,
            &format!(
                "unauthorized to access repository: {repo}, action: {}",
                action.as_str()
            ),
            Some(&scope),
            Some("insufficient_scope"),
        )
    };
    match id {
        Identity::Account(p) if p.may(ns, action.registry()) => Ok(()),
        Identity::Account(_) => Err(refused()),
        Identity::Bearer(a) if grants(&a, "repository", repo.as_str(), action.as_str()) => Ok(()),
        Identity::Bearer(_) => Err(refused()),
        Identity::Anonymous => Err(unauthorized(
            state,
            "authentication required",
            Some(&scope),
            None,
        )),
    }
}

/// Whether the caller could pull `repo`, without failing (used for mount sources).
pub(crate) fn can_pull(req: &HttpRequest, state: &EmulatorState, repo: &RepoName) -> bool {
    authorize(req, state, repo, Action::Pull).is_ok()
}

/// `_catalog` needs `registry:catalog:*`; any authenticated account has it.
pub(crate) fn authorize_catalog(req: &HttpRequest, state: &EmulatorState) -> Result<(), OciError> {
    let scope = "registry:catalog:*";
    match identify(req, state) {
        Ok(Identity::Account(_)) => Ok(()),
        Ok(Identity::Bearer(a)) if grants(&a, "registry", "catalog", "*") => Ok(()),
        Ok(Identity::Bearer(_)) => Err(unauthorized(
            state,
            "catalog access not granted",
            Some(scope),
            Some("insufficient_scope"),
        )),
        Ok(Identity::Anonymous) => Err(unauthorized(
            state,
            "authentication required",
            Some(scope),
            None,
        )),
        Err(()) => Err(unauthorized(
            state,
            "invalid token",
            Some(scope),
            Some("invalid_token"),
        )),
    }
}

/// `GET /v2/`: 200 for any valid credential, else the challenge.
pub(crate) fn base(req: &HttpRequest, state: &State) -> HandlerResult {
    match identify(req, state) {
        Ok(Identity::Anonymous) => Err(unauthorized(state, "authentication required", None, None)),
        Ok(_) => Ok(HttpResponse::Ok()
            .content_type("application/json")
            .body("{}")),
        Err(()) => Err(unauthorized(
            state,
            "invalid token",
            None,
            Some("invalid_token"),
        )),
    }
}

/// The registry action a scope action names (`*` is expanded by [`repository_grant`]).
fn scope_action(a: &str) -> Option<RegistryAction> {
    match a {
        "pull" => Some(RegistryAction::Pull),
        "push" => Some(RegistryAction::Push),
        "delete" => Some(RegistryAction::Delete),
        _ => None,
    }
}

/// The actions granted on a repository for `wanted`, given what the caller `may` do.
fn repository_grant(wanted: &[&str], may: impl Fn(RegistryAction) -> bool) -> Vec<String> {
    const ALL: [RegistryAction; 3] = [
        RegistryAction::Pull,
        RegistryAction::Push,
        RegistryAction::Delete,
    ];
    let mut out: Vec<String> = Vec::new();
    for a in wanted {
        let granted: Vec<&str> = match (*a, scope_action(a)) {
            ("*", _) if ALL.into_iter().all(&may) => vec!["*"],
            ("*", _) => ALL
                .into_iter()
                .filter(|x| may(*x))
                .map(RegistryAction::as_str)
                .collect(),
            (_, Some(x)) if may(x) => vec![*a],
            _ => Vec::new(),
        };
        for g in granted {
            if !out.iter().any(|o| o == g) {
                out.push(g.to_string());
            }
        }
    }
    out
}

/// Grant the intersection of one requested resource scope and what the caller may do. `*` on a
/// repository stands for everything the caller may do there: Harbor's token service answers
/// any repository scope with the actions the caller has (`repositoryFilter.filter` sets
/// `a.Actions` to `resourceScopes`), so a reader asking for `*` gets `pull`.
fn grant(state: &EmulatorState, account: Option<&Principal>, scope: &str) -> Option<Access> {
    let (typ, rest) = scope.split_once(':')?;
    let (name, actions) = rest.rsplit_once(':')?;
    let wanted: Vec<&str> = actions.split(',').filter(|a| !a.is_empty()).collect();
    let allowed: Vec<String> = match typ {
        "repository" => {
            let repo = RepoName::parse(name).ok()?;
            match (state.namespaces.get(repo.namespace()), account) {
                (None, _) => Vec::new(),
                (Some(_), Some(p)) => repository_grant(&wanted, |x| p.may(repo.namespace(), x)),
                (Some(info), None) => wanted
                    .iter()
                    .filter(|a| info.public && **a == "pull")
                    .map(|a| a.to_string())
                    .collect(),
            }
        }
        "registry" if name == "catalog" && account.is_some() => wanted
            .iter()
            .filter(|a| **a == "*")
            .map(|a| a.to_string())
            .collect(),
        _ => Vec::new(),
    };
    Some(Access {
        typ: typ.to_string(),
        name: name.to_string(),
        actions: allowed,
    })
}

/// `GET /service/token?service=..&scope=..` (repeatable, space-separated).
pub(crate) async fn token(req: HttpRequest, state: State) -> HandlerResult {
    state.faults.delay().await;
    if state.faults.registry_fail() {
        return Err(OciError::new(ErrorCode::Unavailable, "injected failure"));
    }
    let account = match basic_credentials(&req) {
        Some((u, p)) => match authenticate(&state, &u, &p) {
            Ok(principal) => Some(principal),
            Err(e) => {
                return Err(OciError::new(
                    ErrorCode::Unauthorized,
                    format!("invalid credentials: {e}"),
                ))
            }
        },
        None if req.headers().contains_key("authorization") => {
            return Err(OciError::new(
                ErrorCode::Unauthorized,
                "unsupported authorization scheme: use Basic (UIN + instance token, or a tcr$ service account)",
            ))
        }
        None => None,
    };
    let access: Vec<Access> = query_pairs(&req)
        .into_iter()
        .filter(|(k, _)| k == "scope")
        .flat_map(|(_, v)| {
            v.split(' ')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .filter_map(|s| grant(&state, account.as_ref(), &s))
        .collect();
    let now = state.clock.now_secs();
    let ttl = state.cfg.faults.registry_token_ttl_secs as i64;
    let claims = Claims {
        iss: ISSUER.into(),
        sub: account.as_ref().map(Principal::name).unwrap_or_default(),
        aud: SERVICE.into(),
        exp: now + ttl,
        nbf: now,
        iat: now,
        jti: uuid::Uuid::new_v4().to_string(),
        access,
    };
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(state.keys.kid.clone());
    let token = jsonwebtoken::encode(&header, &claims, &state.keys.encoding)
        .map_err(|e| OciError::new(ErrorCode::Unknown, format!("signing failed: {e}")))?;
    let issued_at = chrono::DateTime::from_timestamp(now, 0)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    Ok(HttpResponse::Ok().json(json!({
        "token": token,
        "access_token": token,
        "expires_in": ttl,
        "issued_at": issued_at,
    })))
}
