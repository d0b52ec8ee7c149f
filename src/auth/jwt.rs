//! The adapter's own JWTs (HS256, `jsonwebtoken`): access tokens carrying the granted `access`
//! (docker format) and refresh tokens; both carry the client's credential sealed in `cred`.
//! Only HS256 is accepted (`alg: none` and RS256 swaps fail); time is checked against the
//! injected clock, not by `jsonwebtoken`.

use std::collections::HashSet;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use super::Access;

/// `token_use` of access tokens.
pub const USE_ACCESS: &str = "access";
/// `token_use` of refresh tokens.
pub const USE_REFRESH: &str = "refresh";
/// Clock skew tolerated between replicas on `nbf`, seconds.
const NBF_LEEWAY_SECS: i64 = 30;

/// Claims of every adapter token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    pub iss: String,
    /// Upstream username (UIN for API keys), `""` when anonymous.
    pub sub: String,
    /// The adapter's `service`, as a string (distribution 2.x requires a string).
    pub aud: String,
    pub exp: i64,
    pub nbf: i64,
    pub iat: i64,
    pub jti: String,
    /// Granted access, docker format. Empty for refresh tokens.
    #[serde(default)]
    pub access: Vec<Access>,
    /// The client's original credential, sealed (absent when anonymous).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cred: Option<String>,
    /// `access` or `refresh`: a refresh token is never accepted on `/v2/` and vice versa.
    pub token_use: String,
}

/// Why a token was refused; all render as `error="invalid_token"`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("token is malformed, not signed by this adapter, or uses another algorithm")]
    Signature,
    #[error("token has expired")]
    Expired,
    #[error("token is not valid yet")]
    NotYetValid,
    #[error("token is a {0} token, not usable here")]
    WrongUse(String),
    #[error("token credential cannot be opened")]
    Sealed,
}

/// HS256 keys and the fixed validation rules.
#[derive(Clone)]
pub struct TokenCodec {
    header: Header,
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for TokenCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenCodec(HS256, <redacted>)")
    }
}

impl TokenCodec {
    pub fn new(key: &[u8], issuer: &str, audience: &str) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.leeway = 0;
        validation.set_audience(&[audience]);
        validation.set_issuer(&[issuer]);
        validation.required_spec_claims =
            HashSet::from(["exp".to_string(), "aud".to_string(), "iss".to_string()]);
        TokenCodec {
            header: Header {
                typ: Some("JWT".into()),
                ..Header::new(Algorithm::HS256)
            },
            encoding: EncodingKey::from_secret(key),
            decoding: DecodingKey::from_secret(key),
            validation,
        }
    }

    pub fn encode(&self, claims: &Claims) -> String {
        jsonwebtoken::encode(&self.header, claims, &self.encoding)
            .expect("HS256 over serializable claims cannot fail")
    }

    /// Verify signature, algorithm, issuer, audience, use and time (`now_secs` from the clock).
    pub fn decode(
        &self,
        token: &str,
        now_secs: i64,
        token_use: &str,
    ) -> Result<Claims, TokenError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|_| TokenError::Signature)?;
        let claims = data.claims;
        if claims.token_use != token_use {
            return Err(TokenError::WrongUse(claims.token_use));
        }
        if now_secs >= claims.exp {
            return Err(TokenError::Expired);
        }
        if claims.nbf > now_secs + NBF_LEEWAY_SECS {
            return Err(TokenError::NotYetValid);
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;

    fn claims(exp: i64, token_use: &str) -> Claims {
        Claims {
            iss: "iss".into(),
            sub: "u".into(),
            aud: "svc".into(),
            exp,
            nbf: 0,
            iat: 0,
            jti: "j".into(),
            access: vec![Access::repository("a/b", &["pull"])],
            cred: None,
            token_use: token_use.into(),
        }
    }

    #[test]
    fn round_trip_and_time_checks() {
        let c = TokenCodec::new(b"0123456789abcdef0123456789abcdef", "iss", "svc");
        let t = c.encode(&claims(100, USE_ACCESS));
        assert_eq!(
            c.decode(&t, 99, USE_ACCESS).unwrap(),
            claims(100, USE_ACCESS)
        );
        assert_eq!(c.decode(&t, 100, USE_ACCESS), Err(TokenError::Expired));
        assert!(matches!(
            c.decode(&t, 1, USE_REFRESH),
            Err(TokenError::WrongUse(_))
        ));
    }

    #[test]
    fn other_keys_audiences_and_algorithms_fail() {
        let key = b"0123456789abcdef0123456789abcdef";
        let c = TokenCodec::new(key, "iss", "svc");
        let t = c.encode(&claims(100, USE_ACCESS));
        let other = TokenCodec::new(b"another-key-another-key-another!", "iss", "svc");
        assert_eq!(other.decode(&t, 1, USE_ACCESS), Err(TokenError::Signature));
        let aud = TokenCodec::new(key, "iss", "other-svc");
        assert_eq!(aud.decode(&t, 1, USE_ACCESS), Err(TokenError::Signature));
        // alg: none with the same payload.
        let payload = t.split('.').nth(1).unwrap();
        let none = format!(
            "{}.{payload}.",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#)
        );
        assert_eq!(c.decode(&none, 1, USE_ACCESS), Err(TokenError::Signature));
    }
}
