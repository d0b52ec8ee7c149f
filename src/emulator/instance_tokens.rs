//! Instance tokens as TCR issues them through `CreateInstanceToken`: RS256 JWTs with
//! `ownerUin`/`operatorUin`, temp (1 h by default) or long-term (10 years, with a `tokenId`).
//! The data plane's token realm accepts them as Basic credentials: username = the operator UIN,
//! password = the token. [`authenticate`] also takes service accounts (`tcr$<name>` + password)
//! and says what the credential may do: a token inherits its account's limits
//! (`[[emulator.accounts]]` `namespaces`/`registry`), a service account has its own.

use std::sync::Arc;

use jsonwebtoken::{Algorithm, Header, Validation};
use serde::{Deserialize, Serialize};

use super::keys::RsaKeys;
use super::EmulatorState;
use crate::clock::SharedClock;
use crate::config::{EmulatorAccount, EmulatorServiceAccount, RegistryAction};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    Temp,
    LongTerm,
}

/// What `CreateInstanceToken` returns.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    pub username: String,
    pub token: String,
    /// Expiry, milliseconds since the epoch (as TCR's `ExpTime`).
    pub exp_ms: i64,
    /// `""` for temp tokens.
    pub token_id: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    #[serde(rename = "ownerUin")]
    owner_uin: String,
    #[serde(rename = "operatorUin")]
    operator_uin: String,
    exp: i64,
    nbf: i64,
    iat: i64,
    #[serde(rename = "tokenId", skip_serializing_if = "Option::is_none", default)]
    token_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InstanceTokenError {
    #[error("the password is not a valid instance token")]
    Malformed,
    #[error("the instance token has expired")]
    Expired,
    #[error("the instance token belongs to another user")]
    WrongUser,
    #[error("invalid username or password")]
    BadPassword,
}

/// Who valid Basic credentials are, and so what they may do on the data plane.
#[derive(Debug, Clone)]
pub enum Principal {
    /// An instance token of `uin`; `account` is the configured account with that UIN (`None`:
    /// none is configured, so the instance's owner: unlimited).
    Account {
        uin: String,
        account: Option<EmulatorAccount>,
    },
    /// A service account (`tcr$<name>`).
    Service(EmulatorServiceAccount),
}

impl Principal {
    /// The username it authenticated with.
    pub fn name(&self) -> String {
        match self {
            Principal::Account { uin, .. } => uin.clone(),
            Principal::Service(sa) => sa.username(),
        }
    }

    /// Whether it may do `action` in namespace `ns`.
    pub fn may(&self, ns: &str, action: RegistryAction) -> bool {
        match self {
            Principal::Account { account: None, .. } => true,
            Principal::Account {
                account: Some(a), ..
            } => a.may_registry(ns, action),
            Principal::Service(sa) => sa.may_registry(ns, action),
        }
    }
}

/// Check Basic credentials: an instance token (username = its operator UIN) or a service account
/// (`tcr$<name>` + its password).
pub fn authenticate(
    state: &EmulatorState,
    username: &str,
    password: &str,
) -> Result<Principal, InstanceTokenError> {
    if username.starts_with(EmulatorServiceAccount::PREFIX) {
        let found =
            state.cfg.service_accounts.iter().find(|sa| {
                sa.username() == username && same_secret(sa.password.expose(), password)
            });
        return found
            .cloned()
            .map(Principal::Service)
            .ok_or(InstanceTokenError::BadPassword);
    }
    let uin = state.tokens.verify(username, password)?;
    let account = state.cfg.accounts.iter().find(|a| a.uin == uin).cloned();
    Ok(Principal::Account { uin, account })
}

/// Constant-time equality of two secrets (lengths compared first).
fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len() && openssl::memcmp::eq(a.as_bytes(), b.as_bytes())
}

pub struct InstanceTokens {
    keys: Arc<RsaKeys>,
    clock: SharedClock,
    temp_ttl_secs: i64,
}

const LONGTERM_TTL_SECS: i64 = 315_360_000;

impl InstanceTokens {
    pub fn new(keys: Arc<RsaKeys>, clock: SharedClock, temp_ttl_secs: u64) -> Self {
        InstanceTokens {
            keys,
            clock,
            temp_ttl_secs: temp_ttl_secs as i64,
        }
    }

    pub fn issue(&self, uin: &str, kind: TokenKind) -> IssuedToken {
        let now = self.clock.now_secs();
        let (ttl, token_id) = match kind {
            TokenKind::Temp => (self.temp_ttl_secs, None),
            TokenKind::LongTerm => (
                LONGTERM_TTL_SECS,
                Some(uuid::Uuid::new_v4().simple().to_string()[..20].to_string()),
            ),
        };
        let claims = Claims {
            owner_uin: uin.to_string(),
            operator_uin: uin.to_string(),
            exp: now + ttl,
            nbf: now,
            iat: now,
            token_id: token_id.clone(),
        };
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(self.keys.kid.clone());
        let token = jsonwebtoken::encode(&header, &claims, &self.keys.encoding)
            .expect("RS256 encoding with a valid key");
        IssuedToken {
            username: uin.to_string(),
            token,
            exp_ms: (now + ttl) * 1000,
            token_id: token_id.unwrap_or_default(),
        }
    }

    /// Check Basic credentials: returns the UIN they authenticate.
    pub fn verify(&self, username: &str, password: &str) -> Result<String, InstanceTokenError> {
        let mut validation = Validation::new(Algorithm::RS256);
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.required_spec_claims.clear();
        let data = jsonwebtoken::decode::<Claims>(password, &self.keys.decoding, &validation)
            .map_err(|_| InstanceTokenError::Malformed)?;
        if data.claims.exp <= self.clock.now_secs() {
            return Err(InstanceTokenError::Expired);
        }
        if data.claims.operator_uin != username {
            return Err(InstanceTokenError::WrongUser);
        }
        Ok(data.claims.operator_uin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    #[test]
    fn temp_tokens_expire_and_bind_the_user() {
        let dir = tempfile::tempdir().unwrap();
        let keys = Arc::new(RsaKeys::load_or_create(dir.path()).unwrap());
        let clock = ManualClock::new(1_700_000_000_000);
        let tokens = InstanceTokens::new(keys, clock.clone(), 3600);
        let t = tokens.issue("100", TokenKind::Temp);
        assert_eq!(t.exp_ms, 1_700_003_600_000);
        assert_eq!(t.token_id, "");
        assert_eq!(tokens.verify("100", &t.token).unwrap(), "100");
        assert_eq!(
            tokens.verify("101", &t.token),
            Err(InstanceTokenError::WrongUser)
        );
        assert_eq!(
            tokens.verify("100", "garbage"),
            Err(InstanceTokenError::Malformed)
        );
        clock.advance_secs(3600);
        assert_eq!(
            tokens.verify("100", &t.token),
            Err(InstanceTokenError::Expired)
        );
        let l = tokens.issue("100", TokenKind::LongTerm);
        assert!(!l.token_id.is_empty());
        assert!(tokens.verify("100", &l.token).is_ok());
    }
}
