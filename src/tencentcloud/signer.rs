//! TC3-HMAC-SHA256, the request signature of TencentCloud API 3.0: pure functions from the
//! request's parts to the `Authorization` value, with every intermediate exposed for tests.
//! The client signs with it and the emulator verifies with it (rebuilding the canonical request
//! from the headers named in `SignedHeaders`). It performs no I/O and never logs.

use openssl::hash::MessageDigest;
use openssl::pkey::PKey;
use openssl::sign::Signer;

/// The only algorithm TC3 knows.
pub const ALGORITHM: &str = "TC3-HMAC-SHA256";
/// The literal hashed instead of the body when `X-TC-Content-SHA256: UNSIGNED-PAYLOAD` is sent.
pub const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";

/// Everything a TC3 signature covers.
#[derive(Debug, Clone)]
pub struct SigningInput<'a> {
    /// `POST` or `GET`.
    pub method: &'a str,
    /// Always `/` for TencentCloud API 3.0.
    pub canonical_uri: &'a str,
    /// `""` for POST; the received query string for GET.
    pub canonical_query: &'a str,
    /// The signed headers as (name, value), in the order they appear in `SignedHeaders`.
    /// Names and values are lower-cased and trimmed by the signer.
    pub headers: &'a [(&'a str, &'a str)],
    /// The bytes hashed as the payload (the body, or [`UNSIGNED_PAYLOAD`]).
    pub payload: &'a [u8],
    /// Credential-scope service, e.g. `tcr` (never taken from the host).
    pub service: &'a str,
    /// `X-TC-Timestamp`, Unix seconds.
    pub timestamp: i64,
}

/// A computed signature and every intermediate value of the algorithm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tc3Signature {
    pub hashed_payload: String,
    pub canonical_request: String,
    pub hashed_canonical_request: String,
    /// `YYYY-MM-DD` (UTC date of the timestamp).
    pub date: String,
    /// `date/service/tc3_request`.
    pub credential_scope: String,
    pub string_to_sign: String,
    pub signed_headers: String,
    /// Hex of `HMAC("TC3"+key, date)`.
    pub secret_date_hex: String,
    pub secret_service_hex: String,
    pub secret_signing_hex: String,
    /// Lower-case hex of the final HMAC.
    pub signature: String,
}

impl Tc3Signature {
    /// The `Authorization` header value for `secret_id`.
    pub fn authorization(&self, secret_id: &str) -> String {
        format!(
            "{ALGORITHM} Credential={secret_id}/{}, SignedHeaders={}, Signature={}",
            self.credential_scope, self.signed_headers, self.signature
        )
    }
}

/// Lower-case hex SHA-256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(openssl::sha::sha256(data))
}

/// HMAC-SHA256 of `msg` under `key`.
pub fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    let pkey = PKey::hmac(key).expect("HMAC key of any length is valid");
    let mut signer = Signer::new(MessageDigest::sha256(), &pkey).expect("sha256 HMAC signer");
    signer.update(msg).expect("HMAC update");
    let mut out = [0u8; 32];
    let bytes = signer.sign_to_vec().expect("HMAC finish");
    out.copy_from_slice(&bytes);
    out
}

/// The UTC date (`YYYY-MM-DD`) of a Unix timestamp, as used in the credential scope.
pub fn utc_date(timestamp: i64) -> String {
    chrono::DateTime::from_timestamp(timestamp, 0)
        .unwrap_or_default()
        .format("%Y-%m-%d")
        .to_string()
}

/// Compute the TC3 signature of `input` under `secret_key`.
pub fn sign(secret_key: &str, input: &SigningInput<'_>) -> Tc3Signature {
    let hashed_payload = sha256_hex(input.payload);
    let mut canonical_headers = String::new();
    let mut names = Vec::with_capacity(input.headers.len());
    for (name, value) in input.headers {
        let name = name.trim().to_ascii_lowercase();
        canonical_headers.push_str(&name);
        canonical_headers.push(':');
        canonical_headers.push_str(&value.trim().to_lowercase());
        canonical_headers.push('\n');
        names.push(name);
    }
    let signed_headers = names.join(";");
    let canonical_request = format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        input.method,
        input.canonical_uri,
        input.canonical_query,
        canonical_headers,
        signed_headers,
        hashed_payload
    );
    let hashed_canonical_request = sha256_hex(canonical_request.as_bytes());
    let date = utc_date(input.timestamp);
    let credential_scope = format!("{date}/{}/tc3_request", input.service);
    let string_to_sign = format!(
        "{ALGORITHM}\n{}\n{credential_scope}\n{hashed_canonical_request}",
        input.timestamp
    );
    let secret_date = hmac_sha256(format!("TC3{secret_key}").as_bytes(), date.as_bytes());
    let secret_service = hmac_sha256(&secret_date, input.service.as_bytes());
    let secret_signing = hmac_sha256(&secret_service, b"tc3_request");
    let signature = hex::encode(hmac_sha256(&secret_signing, string_to_sign.as_bytes()));
    Tc3Signature {
        hashed_payload,
        canonical_request,
        hashed_canonical_request,
        date,
        credential_scope,
        string_to_sign,
        signed_headers,
        secret_date_hex: hex::encode(secret_date),
        secret_service_hex: hex::encode(secret_service),
        secret_signing_hex: hex::encode(secret_signing),
        signature,
    }
}

/// A parsed `Authorization: TC3-HMAC-SHA256 Credential=.., SignedHeaders=.., Signature=..`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedAuthorization {
    pub secret_id: String,
    pub date: String,
    pub service: String,
    /// Lower-case header names, in the order given.
    pub signed_headers: Vec<String>,
    pub signature: String,
}

/// Why an `Authorization` value could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed Authorization: {0}")]
pub struct MalformedAuthorization(pub &'static str);

/// Parse an `Authorization` header value (tolerates missing spaces after the commas).
pub fn parse_authorization(value: &str) -> Result<ParsedAuthorization, MalformedAuthorization> {
    let rest = value
        .trim()
        .strip_prefix(ALGORITHM)
        .ok_or(MalformedAuthorization(
            "the algorithm is not TC3-HMAC-SHA256",
        ))?;
    if !rest.starts_with(' ') {
        return Err(MalformedAuthorization(
            "the algorithm is not TC3-HMAC-SHA256",
        ));
    }
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let (k, v) = part
            .trim()
            .split_once('=')
            .ok_or(MalformedAuthorization("expected key=value parts"))?;
        match k.trim() {
            "Credential" => credential = Some(v.trim()),
            "SignedHeaders" => signed = Some(v.trim()),
            "Signature" => signature = Some(v.trim()),
            _ => return Err(MalformedAuthorization("unknown part")),
        }
    }
    let credential = credential.ok_or(MalformedAuthorization("no Credential"))?;
    let signed = signed.ok_or(MalformedAuthorization("no SignedHeaders"))?;
    let signature = signature.ok_or(MalformedAuthorization("no Signature"))?;
    let parts: Vec<&str> = credential.split('/').collect();
    if parts.len() != 4 || parts[3] != "tc3_request" || parts.iter().any(|p| p.is_empty()) {
        return Err(MalformedAuthorization(
            "Credential must be SecretId/Date/service/tc3_request",
        ));
    }
    if signed.is_empty() || signature.len() != 64 || hex::decode(signature).is_err() {
        return Err(MalformedAuthorization("bad SignedHeaders or Signature"));
    }
    Ok(ParsedAuthorization {
        secret_id: parts[0].to_string(),
        date: parts[1].to_string(),
        service: parts[2].to_string(),
        signed_headers: signed.split(';').map(|h| h.to_ascii_lowercase()).collect(),
        signature: signature.to_ascii_lowercase(),
    })
}

/// Constant-time comparison of two hex signatures.
pub fn signatures_equal(a: &str, b: &str) -> bool {
    a.len() == b.len() && openssl::memcmp::eq(a.as_bytes(), b.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CVM_BODY: &str =
        r#"{"Limit": 1, "Filters": [{"Values": ["\u672a\u547d\u540d"], "Name": "instance-name"}]}"#;
    const TCR_BODY: &str =
        r#"{"RegistryId":"tcr-12345678","NamespaceName":"team-a","IsPublic":false}"#;
    const EXAMPLE_KEY: &str = "Gu5t9xGARNpq86cd98joQYCN3EXAMPLE";

    fn post<'a>(
        headers: &'a [(&'a str, &'a str)],
        body: &'a str,
        service: &'a str,
        ts: i64,
    ) -> SigningInput<'a> {
        SigningInput {
            method: "POST",
            canonical_uri: "/",
            canonical_query: "",
            headers,
            payload: body.as_bytes(),
            service,
            timestamp: ts,
        }
    }

    #[test]
    fn official_worked_example_current_revision() {
        let headers = [
            ("Content-Type", "application/json; charset=utf-8"),
            ("Host", "cvm.tencentcloudapi.com"),
            ("X-TC-Action", "DescribeInstances"),
        ];
        let s = sign(
            &"*".repeat(32),
            &post(&headers, CVM_BODY, "cvm", 1551113065),
        );
        assert_eq!(
            s.hashed_payload,
            "35e9c5b0e3ae67532d3c9f17ead6c90222632e5b1ff7f6e89887f1398934f064"
        );
        assert_eq!(
            s.canonical_request,
            "POST\n/\n\ncontent-type:application/json; charset=utf-8\nhost:cvm.tencentcloudapi.com\nx-tc-action:describeinstances\n\ncontent-type;host;x-tc-action\n35e9c5b0e3ae67532d3c9f17ead6c90222632e5b1ff7f6e89887f1398934f064"
        );
        assert_eq!(
            s.hashed_canonical_request,
            "7019a55be8395899b900fb5564e4200d984910f34794a27cb3fb7d10ff6a1e84"
        );
        assert_eq!(
            s.string_to_sign,
            "TC3-HMAC-SHA256\n1551113065\n2019-02-25/cvm/tc3_request\n7019a55be8395899b900fb5564e4200d984910f34794a27cb3fb7d10ff6a1e84"
        );
        assert_eq!(
            s.secret_date_hex,
            "da98fb70dcf6b112dc21038d1eeeb3a95c74b4dcb12c1131f864f6066bd02be0"
        );
        assert_eq!(
            s.secret_service_hex,
            "8d70cbefb03939f929db64d32dc2ba89b1095620119fe3e050e2b18c5bd2752f"
        );
        assert_eq!(
            s.secret_signing_hex,
            "b596b923aad85185e2d1f6659d2a062e0a86731226e021e61bfe06f7ed05f5af"
        );
        assert_eq!(
            s.signature,
            "10b1a37a7301a02ca19a647ad722d5e43b4b3cff309d421d85b46093f6ab6c4f"
        );
        assert_eq!(
            s.authorization(&format!("AKID{}", "*".repeat(32))),
            "TC3-HMAC-SHA256 Credential=AKID********************************/2019-02-25/cvm/tc3_request, SignedHeaders=content-type;host;x-tc-action, Signature=10b1a37a7301a02ca19a647ad722d5e43b4b3cff309d421d85b46093f6ab6c4f"
        );
    }

    #[test]
    fn official_worked_example_older_revision() {
        let headers = [
            ("Content-Type", "application/json; charset=utf-8"),
            ("Host", "cvm.tencentcloudapi.com"),
        ];
        let s = sign(EXAMPLE_KEY, &post(&headers, CVM_BODY, "cvm", 1551113065));
        assert_eq!(
            s.canonical_request,
            "POST\n/\n\ncontent-type:application/json; charset=utf-8\nhost:cvm.tencentcloudapi.com\n\ncontent-type;host\n35e9c5b0e3ae67532d3c9f17ead6c90222632e5b1ff7f6e89887f1398934f064"
        );
        assert_eq!(
            s.hashed_canonical_request,
            "5ffe6a04c0664d6b969fab9a13bdab201d63ee709638e2749d62a09ca18d7031"
        );
        assert_eq!(
            s.signature,
            "72e494ea809ad7a8c8f7a4507b9bddcbaa8e581f516e8da2f66e2c5a96525168"
        );
        let masked = sign(
            "Gu5t9xGARNpq86cd98joQYCN3*******",
            &post(&headers, CVM_BODY, "cvm", 1551113065),
        );
        assert_eq!(
            masked.signature,
            "2230eefd229f582d8b1b891af7107b91597240707d778ab3738f756258d7652c"
        );
    }

    #[test]
    fn tcr_vector_a_charset_and_action_signed() {
        let headers = [
            ("Content-Type", "application/json; charset=utf-8"),
            ("Host", "tcr.tencentcloudapi.com"),
            ("X-TC-Action", "CreateNamespace"),
        ];
        let s = sign(EXAMPLE_KEY, &post(&headers, TCR_BODY, "tcr", 1700000000));
        assert_eq!(
            s.hashed_payload,
            "edf8952d607a55b75fa5e4c3d4bec43b963b0d2844a33599a9c0e02a5950a7bf"
        );
        assert_eq!(s.credential_scope, "2023-11-14/tcr/tc3_request");
        assert_eq!(
            s.hashed_canonical_request,
            "dcd8fea70fb50e46009f7006b84d9ce0426dcecf5b54eefd261e875c08c91593"
        );
        assert_eq!(
            s.signature,
            "1a27fdefab3f83f6ada0c46f48d92de968125f61754447a7907802f013620c15"
        );
    }

    #[test]
    fn tcr_vector_b_sdk_style() {
        let headers = [
            ("Content-Type", "application/json"),
            ("Host", "tcr.tencentcloudapi.com"),
        ];
        let s = sign(EXAMPLE_KEY, &post(&headers, TCR_BODY, "tcr", 1700000000));
        assert_eq!(
            s.hashed_canonical_request,
            "364cc7042b69ac173e0a8b5fd2c91c70c1c3782785dd24f492daee239ec7119e"
        );
        assert_eq!(
            s.signature,
            "1833377009600e78db85f3b93b9e4559c05ec7e00b95204565755b045bfde0ee"
        );
        assert_eq!(s.signed_headers, "content-type;host");
    }

    #[test]
    fn authorization_round_trips_through_the_parser() {
        let headers = [
            ("Content-Type", "application/json"),
            ("Host", "tcr.tencentcloudapi.com"),
        ];
        let s = sign(EXAMPLE_KEY, &post(&headers, TCR_BODY, "tcr", 1700000000));
        let p = parse_authorization(&s.authorization("AKIDexample")).unwrap();
        assert_eq!(p.secret_id, "AKIDexample");
        assert_eq!(p.date, "2023-11-14");
        assert_eq!(p.service, "tcr");
        assert_eq!(p.signed_headers, vec!["content-type", "host"]);
        assert!(signatures_equal(&p.signature, &s.signature));
        // No spaces after the commas is tolerated.
        let tight = s.authorization("AKIDexample").replace(", ", ",");
        assert_eq!(parse_authorization(&tight).unwrap(), p);
    }

    #[test]
    fn malformed_authorizations_are_refused() {
        for bad in [
            "",
            "Basic abc",
            "TC3-HMAC-SHA256",
            "TC3-HMAC-SHA256 Credential=AKID/2023-11-14/tcr, SignedHeaders=host, Signature=00",
            "TC3-HMAC-SHA256 Credential=AKID/2023-11-14/tcr/tc3_request, SignedHeaders=host",
            "TC3-HMAC-SHA256 Credential=AKID/2023-11-14/tcr/tc3_request, SignedHeaders=host, Signature=zz",
        ] {
            assert!(parse_authorization(bad).is_err(), "{bad}");
        }
    }
}
