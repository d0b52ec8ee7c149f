//! The adapter's side of Docker token auth: the `/service/token` endpoint, the adapter's JWTs
//! (HS256) carrying the granted access and the client's credential sealed with AES-256-GCM, and
//! [`AuthService::authorize`], which every `/v2/` handler calls.
//!
//! Stateless by design: any replica holding the same signing and sealing keys accepts any
//! replica's tokens. It never forwards anything upstream itself (that is `upstream`'s job) and
//! never logs a secret.
//!
//! Anonymous callers (no `Authorization` on `/service/token`) get a token granting at most
//! `pull` on the repositories they ask for (status 200): the namespace may be public, and only
//! TCR knows. Such tokens carry no credential, their requests go upstream anonymously, and an
//! upstream refusal becomes a 401 challenge so that the client logs in. On `/v2/` a request with
//! no credentials at all is always challenged (401, Bearer).

mod challenge;
pub mod forwarded;
pub mod jwt;
pub mod scope;
pub mod seal;
mod token_service;

use std::sync::Arc;

use actix_web::HttpRequest;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::clock::SharedClock;
use crate::config::{Config, Secret};
use crate::credentials::{ClientIdentity, ClientSecret, CredentialError, CredentialResolver};
use crate::namespaces::NamespaceProvisioner;
use crate::oci::{OciError, RepoName};

pub use challenge::{bearer_challenge, presented, Presented};
pub use forwarded::{challenge_on, request_base};
pub use jwt::{Claims, TokenCodec, TokenError};
pub use seal::Sealer;
pub use token_service::{configure_token_routes, TokenResponse};

/// One resource and the actions on it, in docker's token format.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Access {
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    pub actions: Vec<String>,
}

impl Access {
    /// `repository:<name>:<actions>`; `name` is the client's repository name.
    pub fn repository(name: &str, actions: &[&str]) -> Self {
        Access {
            kind: "repository".into(),
            name: name.into(),
            actions: actions.iter().map(|a| a.to_string()).collect(),
        }
    }

    /// `registry:catalog:*`.
    pub fn catalog() -> Self {
        Access {
            kind: "registry".into(),
            name: "catalog".into(),
            actions: vec!["*".into()],
        }
    }

    /// Whether this access covers `action` (`*` covers any action).
    pub fn permits(&self, action: &str) -> bool {
        self.actions.iter().any(|a| a == action || a == "*")
    }
}

/// What an authorized request may do, and who made it.
#[derive(Clone, Debug)]
pub struct Grant {
    pub access: Vec<Access>,
    pub identity: ClientIdentity,
    /// `sub` of the token: upstream username (UIN for API keys), `""` when anonymous.
    pub subject: String,
}

impl Grant {
    /// Whether every action of `needed` is granted on its resource (`*` satisfies any action).
    pub fn allows(&self, needed: &Access) -> bool {
        covers(&self.access, needed)
    }
}

fn covers(granted: &[Access], needed: &Access) -> bool {
    needed.actions.iter().all(|act| {
        granted
            .iter()
            .any(|g| g.kind == needed.kind && g.name == needed.name && g.permits(act))
    })
}

/// Why the auth service could not be built.
#[derive(Debug, thiserror::Error)]
pub enum AuthSetupError {
    #[error("auth.{which}: {why}")]
    Key { which: &'static str, why: String },
}

/// Why a token could not be issued.
#[derive(Debug)]
pub enum IssueError {
    /// The credential was refused or could not be checked.
    Credential(CredentialError),
    /// A namespace needed for `push` could not be ensured (the provisioner's own error).
    Namespace(OciError),
}

/// A freshly issued token, before rendering.
#[derive(Debug, Clone)]
pub struct Issued {
    pub token: String,
    pub expires_in: u64,
    /// RFC 3339 with timezone, seconds precision.
    pub issued_at: String,
    pub refresh_token: Option<String>,
    pub access: Vec<Access>,
}

/// Token issuing and verification. Cheap to share (`Arc`/`web::Data`).
pub struct AuthService {
    codec: TokenCodec,
    sealer: Sealer,
    issuer: String,
    service: String,
    realm: String,
    /// `server.public_url` (or the listen address), no trailing slash.
    public_base: String,
    /// `server.trust_forwarded_headers`.
    trust_forwarded: bool,
    token_ttl_secs: u64,
    refresh_ttl_secs: u64,
    resolver: Arc<CredentialResolver>,
    namespaces: Arc<NamespaceProvisioner>,
    clock: SharedClock,
}

impl AuthService {
    /// Keys come from `cfg.auth.signing_key` / `sealing_key` (base64); empty ones are generated,
    /// with a warning that tokens then die with the process and replicas cannot share them.
    pub fn new(
        cfg: &Config,
        resolver: Arc<CredentialResolver>,
        namespaces: Arc<NamespaceProvisioner>,
        clock: SharedClock,
    ) -> Result<Self, AuthSetupError> {
        let auth = &cfg.auth;
        let signing = load_key(&auth.signing_key, "signing_key", 32)?;
        let sealing: [u8; 32] = load_key(&auth.sealing_key, "sealing_key", 32)?
            .try_into()
            .map_err(|_| AuthSetupError::Key {
                which: "sealing_key",
                why: "must be exactly 32 bytes (base64 of 32 random bytes)".into(),
            })?;
        Ok(AuthService {
            codec: TokenCodec::new(&signing, &auth.issuer, &auth.service),
            sealer: Sealer::new(sealing),
            issuer: auth.issuer.clone(),
            service: auth.service.clone(),
            realm: format!("{}/service/token", cfg.server.public_base()),
            public_base: cfg.server.public_base(),
            trust_forwarded: cfg.server.trust_forwarded_headers,
            token_ttl_secs: auth.token_ttl_secs.max(60),
            refresh_ttl_secs: auth.refresh_token_ttl_secs.max(60),
            resolver,
            namespaces,
            clock,
        })
    }

    /// The `service` (audience) of the adapter's tokens.
    pub fn service(&self) -> &str {
        &self.service
    }

    /// The token realm, `<public_url>/service/token`.
    pub fn realm(&self) -> &str {
        &self.realm
    }

    /// Move the realm of `err`'s challenge onto the base URL `req` reached the adapter at
    /// ([`request_base`]: `X-Forwarded-*` when trusted).
    pub fn for_request(&self, req: &HttpRequest, err: OciError) -> OciError {
        let base = request_base(req.headers(), &self.public_base, self.trust_forwarded);
        challenge_on(err, &self.public_base, &base)
    }

    /// The `WWW-Authenticate` value for a request needing `needed`.
    pub fn challenge(&self, needed: &[Access], error: Option<&str>) -> String {
        bearer_challenge(&self.realm, &self.service, needed, error)
    }

    pub(crate) fn unauthorized(
        &self,
        needed: &[Access],
        error: Option<&str>,
        msg: impl Into<String>,
    ) -> OciError {
        challenge::unauthorized(self.challenge(needed, error), needed, msg)
    }

    pub(crate) fn credential_failure(
        &self,
        needed: &[Access],
        error: Option<&str>,
        err: &CredentialError,
    ) -> OciError {
        challenge::credential_failure(self.challenge(needed, error), needed, err)
    }

    /// Authorize a `/v2/` request needing `needed` (empty for `GET /v2/`). Accepts an adapter
    /// Bearer token, or Basic credentials straight on `/v2/`.
    pub async fn authorize(&self, req: &HttpRequest, needed: &[Access]) -> Result<Grant, OciError> {
        match presented(req) {
            Presented::Nothing => Err(self.unauthorized(
                needed,
                None,
                "authentication required: get a token from the realm in WWW-Authenticate",
            )),
            Presented::Malformed(why) => Err(self.unauthorized(needed, None, why)),
            Presented::Bearer(token) => self.authorize_bearer(token, needed).await,
            Presented::Basic(secret) => {
                let identity = self
                    .resolver
                    .resolve(&secret)
                    .await
                    .map_err(|e| self.credential_failure(needed, None, &e))?;
                let mut access = scope::intersect(needed, true);
                self.ensure_namespaces(&access, &identity).await?;
                self.apply_namespace_policy(&mut access);
                if let Some(missing) = needed.iter().find(|n| !covers(&access, n)) {
                    return Err(self.unauthorized(
                        needed,
                        Some("insufficient_scope"),
                        format!("access to {} is not allowed", scope::render(missing)),
                    ));
                }
                Ok(Grant {
                    access,
                    subject: identity.subject().to_string(),
                    identity,
                })
            }
        }
    }

    async fn authorize_bearer(&self, token: &str, needed: &[Access]) -> Result<Grant, OciError> {
        let claims = self
            .codec
            .decode(token, self.clock.now_secs(), jwt::USE_ACCESS)
            .map_err(|e| self.unauthorized(needed, Some("invalid_token"), e.to_string()))?;
        if let Some(missing) = needed.iter().find(|n| !covers(&claims.access, n)) {
            return Err(self.unauthorized(
                needed,
                Some("insufficient_scope"),
                format!(
                    "the token does not grant {}; request a token with this scope",
                    scope::render(missing)
                ),
            ));
        }
        let identity = match &claims.cred {
            None => ClientIdentity::anonymous(),
            Some(sealed) => {
                let secret = self.sealer.open(sealed).map_err(|_| {
                    self.unauthorized(
                        needed,
                        Some("invalid_token"),
                        TokenError::Sealed.to_string(),
                    )
                })?;
                self.resolver
                    .resolve(&secret)
                    .await
                    .map_err(|e| self.credential_failure(needed, Some("invalid_token"), &e))?
            }
        };
        Ok(Grant {
            access: claims.access,
            identity,
            subject: claims.sub,
        })
    }

    /// Ensure the upstream namespace of every repository granted `push`.
    async fn ensure_namespaces(
        &self,
        access: &[Access],
        identity: &ClientIdentity,
    ) -> Result<(), OciError> {
        let mut done: Vec<String> = Vec::new();
        for a in access.iter().filter(|a| a.kind == "repository") {
            if !a.actions.iter().any(|x| x == "push") {
                continue;
            }
            let Ok(repo) = RepoName::parse(&a.name) else {
                continue;
            };
            let upstream = self.namespaces.to_upstream(&repo);
            let ns = upstream.namespace();
            if done.iter().any(|d| d == ns) {
                continue;
            }
            self.namespaces.ensure(ns, identity).await?;
            done.push(ns.to_string());
        }
        Ok(())
    }

    /// Repositories a credentialed caller may read but was not granted push on: their
    /// namespaces' existence is checked in the background, ahead of the push token that may
    /// follow (`namespaces::look_ahead`; pushes were ensured above).
    fn look_ahead_namespaces(&self, access: &[Access], identity: &ClientIdentity) {
        for a in access.iter().filter(|a| a.kind == "repository") {
            if a.actions.is_empty() || a.actions.iter().any(|x| x == "push") {
                continue;
            }
            if let Ok(repo) = RepoName::parse(&a.name) {
                let upstream = self.namespaces.to_upstream(&repo);
                self.namespaces.look_ahead(upstream.namespace(), identity);
            }
        }
    }

    /// Drop every action on repositories whose upstream namespace the policy refuses
    /// (allow/deny patterns, TCR's naming rule). Pushes were already refused with the
    /// provisioner's message by [`Self::ensure_namespaces`]; this keeps reads out too.
    fn apply_namespace_policy(&self, access: &mut [Access]) {
        for a in access.iter_mut().filter(|a| a.kind == "repository") {
            if a.actions.is_empty() {
                continue;
            }
            let allowed = RepoName::parse(&a.name).is_ok_and(|repo| {
                let upstream = self.namespaces.to_upstream(&repo);
                self.namespaces.policy().check(upstream.namespace()).is_ok()
            });
            if !allowed {
                a.actions.clear();
            }
        }
    }

    /// Issue an access token (and a refresh token when `offline`) for `secret` (`None` =
    /// anonymous), granting the intersection of `requested` with the policy.
    pub async fn issue(
        &self,
        secret: Option<&ClientSecret>,
        requested: &[Access],
        offline: bool,
    ) -> Result<Issued, IssueError> {
        let identity = match secret {
            Some(s) => self
                .resolver
                .resolve(s)
                .await
                .map_err(IssueError::Credential)?,
            None => ClientIdentity::anonymous(),
        };
        let mut access = scope::intersect(requested, !identity.is_anonymous());
        self.ensure_namespaces(&access, &identity)
            .await
            .map_err(IssueError::Namespace)?;
        self.apply_namespace_policy(&mut access);
        if !identity.is_anonymous() {
            self.look_ahead_namespaces(&access, &identity);
        }
        let sealed = secret.map(|s| self.sealer.seal(s));
        let now = self.clock.now_secs();
        let mut claims = Claims {
            iss: self.issuer.clone(),
            sub: identity.subject().to_string(),
            aud: self.service.clone(),
            exp: now + self.token_ttl_secs as i64,
            nbf: now,
            iat: now,
            jti: uuid::Uuid::new_v4().simple().to_string(),
            access,
            cred: sealed,
            token_use: jwt::USE_ACCESS.into(),
        };
        let token = self.codec.encode(&claims);
        let refresh_token = offline.then(|| {
            let access = std::mem::take(&mut claims.access);
            let refresh = Claims {
                exp: now + self.refresh_ttl_secs as i64,
                jti: uuid::Uuid::new_v4().simple().to_string(),
                token_use: jwt::USE_REFRESH.into(),
                ..claims.clone()
            };
            claims.access = access;
            self.codec.encode(&refresh)
        });
        Ok(Issued {
            token,
            expires_in: self.token_ttl_secs,
            issued_at: rfc3339(now),
            refresh_token,
            access: claims.access,
        })
    }

    /// The credential inside a refresh token (`None` when it was issued anonymously).
    pub fn open_refresh_token(&self, token: &str) -> Result<Option<ClientSecret>, TokenError> {
        let claims = self
            .codec
            .decode(token, self.clock.now_secs(), jwt::USE_REFRESH)?;
        claims
            .cred
            .map(|c| self.sealer.open(&c).map_err(|_| TokenError::Sealed))
            .transpose()
    }

    /// Decode and verify an access token (for tools and tests).
    pub fn verify_token(&self, token: &str) -> Result<Claims, TokenError> {
        self.codec
            .decode(token, self.clock.now_secs(), jwt::USE_ACCESS)
    }
}

fn rfc3339(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Decode a base64 key (standard or URL-safe, padded or not), or generate one when empty.
fn load_key(
    secret: &Secret,
    which: &'static str,
    min_len: usize,
) -> Result<Vec<u8>, AuthSetupError> {
    if secret.is_empty() {
        tracing::warn!(
            key = which,
            "auth.{which} is not set: generated a random key; tokens die with this process and replicas will not share tokens"
        );
        let mut key = vec![0u8; 32];
        openssl::rand::rand_bytes(&mut key).map_err(|e| AuthSetupError::Key {
            which,
            why: format!("cannot generate a key: {e}"),
        })?;
        return Ok(key);
    }
    let text = secret.expose().trim();
    let key = [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
        .iter()
        .find_map(|e| e.decode(text).ok())
        .ok_or_else(|| AuthSetupError::Key {
            which,
            why: "is not valid base64".into(),
        })?;
    if key.len() < min_len {
        return Err(AuthSetupError::Key {
            which,
            why: format!("decodes to {} bytes, needs at least {min_len}", key.len()),
        });
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn star_satisfies_any_action() {
        let granted = [Access::repository("a/b", &["*"]), Access::catalog()];
        assert!(covers(
            &granted,
            &Access::repository("a/b", &["pull", "push", "delete"])
        ));
        assert!(covers(&granted, &Access::catalog()));
        assert!(!covers(&granted, &Access::repository("a/c", &["pull"])));
        let pull = [Access::repository("a/b", &["pull"])];
        assert!(!covers(
            &pull,
            &Access::repository("a/b", &["pull", "push"])
        ));
        assert!(covers(&pull, &Access::repository("a/b", &[])));
    }

    #[test]
    fn issued_at_is_rfc3339_utc() {
        assert_eq!(rfc3339(1_795_832_160), "2026-11-28T02:16:00Z");
    }

    #[test]
    fn keys_must_be_base64_of_enough_bytes() {
        assert!(load_key(&Secret::new("c2hvcnQ="), "signing_key", 32).is_err());
        assert!(load_key(&Secret::new("!!!"), "signing_key", 32).is_err());
        let k = STANDARD.encode([1u8; 32]);
        assert_eq!(
            load_key(&Secret::new(k), "sealing_key", 32).unwrap(),
            vec![1u8; 32]
        );
    }
}
