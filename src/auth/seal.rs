//! Sealing of the client's original credential inside the adapter's tokens: AES-256-GCM
//! (`openssl`), a random 12-byte nonce, a 16-byte tag and the AAD `tcr-adapter/v1`, encoded as
//! base64url(nonce || ciphertext || tag). Any replica holding the same key can unseal; nobody
//! without it can read or alter the credential. No logging here.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use openssl::symm::{decrypt_aead, encrypt_aead, Cipher};
use serde::{Deserialize, Serialize};

use crate::config::Secret;
use crate::credentials::ClientSecret;
use crate::tencentcloud::ApiCredential;

const AAD: &[u8] = b"tcr-adapter/v1";
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

/// Why a sealed value could not be opened (tampered, wrong key, malformed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("sealed credential cannot be opened: {0}")]
pub struct UnsealError(&'static str);

/// Wire form of a [`ClientSecret`] inside the seal.
#[derive(Serialize, Deserialize)]
struct Plain<'a> {
    /// `k` = API keys, `r` = registry credentials.
    t: &'a str,
    u: &'a str,
    p: &'a str,
}

/// AES-256-GCM with one key.
#[derive(Clone)]
pub struct Sealer {
    key: [u8; 32],
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(<redacted>)")
    }
}

impl Sealer {
    pub fn new(key: [u8; 32]) -> Self {
        Sealer { key }
    }

    /// Encrypt `plain` into base64url(nonce || ciphertext || tag).
    pub fn seal_bytes(&self, plain: &[u8]) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        openssl::rand::rand_bytes(&mut nonce).expect("the OS random source works");
        let mut tag = [0u8; TAG_LEN];
        let ct = encrypt_aead(
            Cipher::aes_256_gcm(),
            &self.key,
            Some(&nonce),
            AAD,
            plain,
            &mut tag,
        )
        .expect("AES-256-GCM with a 32-byte key and 12-byte nonce cannot fail");
        let mut out = Vec::with_capacity(NONCE_LEN + ct.len() + TAG_LEN);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        out.extend_from_slice(&tag);
        URL_SAFE_NO_PAD.encode(out)
    }

    /// Reverse of [`Self::seal_bytes`]; fails on any alteration or a different key.
    pub fn open_bytes(&self, sealed: &str) -> Result<Vec<u8>, UnsealError> {
        let raw = URL_SAFE_NO_PAD
            .decode(sealed)
            .map_err(|_| UnsealError("not base64url"))?;
        if raw.len() < NONCE_LEN + TAG_LEN {
            return Err(UnsealError("too short"));
        }
        let (nonce, rest) = raw.split_at(NONCE_LEN);
        let (ct, tag) = rest.split_at(rest.len() - TAG_LEN);
        decrypt_aead(Cipher::aes_256_gcm(), &self.key, Some(nonce), AAD, ct, tag)
            .map_err(|_| UnsealError("authentication failed (tampered or sealed with another key)"))
    }

    /// Seal a client's credential.
    pub fn seal(&self, secret: &ClientSecret) -> String {
        let plain = match secret {
            ClientSecret::ApiKeys(k) => Plain {
                t: "k",
                u: &k.secret_id,
                p: k.secret_key.expose(),
            },
            ClientSecret::Registry { username, password } => Plain {
                t: "r",
                u: username,
                p: password.expose(),
            },
        };
        let json = serde_json::to_vec(&plain).expect("plain strings serialize");
        self.seal_bytes(&json)
    }

    /// Open a credential sealed by [`Self::seal`].
    pub fn open(&self, sealed: &str) -> Result<ClientSecret, UnsealError> {
        let json = self.open_bytes(sealed)?;
        let plain: Plain<'_> =
            serde_json::from_slice(&json).map_err(|_| UnsealError("unreadable content"))?;
        match plain.t {
            "k" => Ok(ClientSecret::ApiKeys(ApiCredential {
                secret_id: plain.u.to_string(),
                secret_key: Secret::new(plain.p),
            })),
            "r" => Ok(ClientSecret::Registry {
                username: plain.u.to_string(),
                password: Secret::new(plain.p),
            }),
            _ => Err(UnsealError("unknown credential kind")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_hides_the_secret() {
        let s = Sealer::new([7; 32]);
        let secret = ClientSecret::from_basic("AKIDx", "topsecret").unwrap();
        let sealed = s.seal(&secret);
        assert!(!sealed.contains("topsecret"));
        assert_eq!(s.open(&sealed).unwrap(), secret);
        // Random nonce: sealing twice differs.
        assert_ne!(sealed, s.seal(&secret));
    }

    #[test]
    fn tampering_or_another_key_fails() {
        let s = Sealer::new([7; 32]);
        let sealed = s.seal(&ClientSecret::from_basic("user", "pw").unwrap());
        let mut raw = URL_SAFE_NO_PAD.decode(&sealed).unwrap();
        raw[14] ^= 1;
        assert!(s.open(&URL_SAFE_NO_PAD.encode(raw)).is_err());
        assert!(Sealer::new([8; 32]).open(&sealed).is_err());
        assert!(s.open("AAAA").is_err());
    }
}
