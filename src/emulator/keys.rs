//! The emulator's RSA signing key (RS256), kept in `data_dir/keys/` so tokens issued before a
//! restart stay valid after it. Used by instance tokens and by the data plane's token realm.

use std::path::Path;

use jsonwebtoken::{DecodingKey, EncodingKey};

pub struct RsaKeys {
    pub encoding: EncodingKey,
    pub decoding: DecodingKey,
    /// libtrust-style key id, sent as `kid`.
    pub kid: String,
}

impl RsaKeys {
    /// Load `dir/signing.pem`, creating it on first start.
    pub fn load_or_create(dir: &Path) -> std::io::Result<RsaKeys> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("signing.pem");
        let pem = match std::fs::read(&path) {
            Ok(p) => p,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let rsa = openssl::rsa::Rsa::generate(2048).map_err(std::io::Error::other)?;
                let pem = rsa.private_key_to_pem().map_err(std::io::Error::other)?;
                let tmp = dir.join("signing.pem.tmp");
                std::fs::write(&tmp, &pem)?;
                std::fs::rename(&tmp, &path)?;
                pem
            }
            Err(e) => return Err(e),
        };
        let rsa = openssl::rsa::Rsa::private_key_from_pem(&pem).map_err(std::io::Error::other)?;
        let public_pem = rsa.public_key_to_pem().map_err(std::io::Error::other)?;
        let der = rsa.public_key_to_der().map_err(std::io::Error::other)?;
        let encoding = EncodingKey::from_rsa_pem(&pem).map_err(std::io::Error::other)?;
        let decoding = DecodingKey::from_rsa_pem(&public_pem).map_err(std::io::Error::other)?;
        Ok(RsaKeys {
            encoding,
            decoding,
            kid: libtrust_kid(&der),
        })
    }
}

/// libtrust key id: base32 of the first 240 bits of sha256(DER), in 12 groups of 4.
fn libtrust_kid(der: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let hash = openssl::sha::sha256(der);
    let bits = &hash[..30];
    let mut out = String::new();
    let mut acc: u64 = 0;
    let mut n = 0;
    for &b in bits {
        acc = (acc << 8) | b as u64;
        n += 8;
        while n >= 5 {
            n -= 5;
            out.push(ALPHABET[((acc >> n) & 31) as usize] as char);
        }
    }
    out.as_bytes()
        .chunks(4)
        .map(|c| std::str::from_utf8(c).unwrap_or_default())
        .collect::<Vec<_>>()
        .join(":")
}
