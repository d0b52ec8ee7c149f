//! Object storage in front of the blobs, as TCR has COS behind its data plane. With
//! `blob_redirects`, blob GET/HEAD on the registry answer **307** to a short-lived signed URL on
//! this listener (`storage_listen`), which serves the bytes to whoever holds the URL. Like
//! COS/S3 it refuses a request that also carries `Authorization` (one auth mechanism per
//! request), an expired or tampered URL, and a method other than the one signed. Errors are
//! COS-style XML, not OCI JSON: the client is talking to a bucket now. HEAD answers from the
//! file's metadata (no byte read); GET bodies go through the WAN model ([`super::wan`]).

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use openssl::hash::MessageDigest;
use openssl::pkey::PKey;
use openssl::sign::Signer;

use super::registry::{serve_blob_file, State};
use crate::oci::Digest;

/// How long a signed URL stays valid, seconds.
pub const URL_TTL_SECS: i64 = 300;

/// Signs and checks storage URLs with a key made at start (URLs die with the process).
pub struct Presigner {
    key: [u8; 32],
    /// `http(s)://host:port` of the storage listener.
    pub base: String,
}

impl Presigner {
    pub fn new(base: String) -> Presigner {
        let mut key = [0u8; 32];
        openssl::rand::rand_bytes(&mut key).expect("the system RNG works");
        Presigner { key, base }
    }

    fn signature(&self, method: &str, digest: &str, expires: i64) -> String {
        let pkey = PKey::hmac(&self.key).expect("an HMAC key");
        let mut signer = Signer::new(MessageDigest::sha256(), &pkey).expect("an HMAC signer");
        let text = format!("{method}\n{digest}\n{expires}");
        hex::encode(
            signer
                .sign_oneshot_to_vec(text.as_bytes())
                .expect("HMAC signs"),
        )
    }

    /// The URL a client may `method` the blob at until `now_secs + URL_TTL_SECS`.
    pub fn url(&self, method: &str, digest: &Digest, now_secs: i64) -> String {
        let expires = now_secs + URL_TTL_SECS;
        let sig = self.signature(method, digest.as_str(), expires);
        format!(
            "{}/blobs/{digest}?q-method={method}&q-expires={expires}&q-signature={sig}",
            self.base
        )
    }

    fn check(&self, method: &str, digest: &str, q: &SignedQuery, now: i64) -> Result<(), Refusal> {
        let want = self.signature(method, digest, q.expires);
        let same = want.len() == q.signature.len()
            && openssl::memcmp::eq(want.as_bytes(), q.signature.as_bytes());
        if !same || q.method != method {
            return Err(Refusal::forbidden(
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you provided",
            ));
        }
        if q.expires < now {
            return Err(Refusal::forbidden("AccessDenied", "Request has expired"));
        }
        Ok(())
    }
}

#[derive(serde::Deserialize)]
struct SignedQuery {
    #[serde(rename = "q-method")]
    method: String,
    #[serde(rename = "q-expires")]
    expires: i64,
    #[serde(rename = "q-signature")]
    signature: String,
}

/// A COS-style error answer.
struct Refusal {
    status: StatusCode,
    code: &'static str,
    message: &'static str,
}

impl Refusal {
    fn forbidden(code: &'static str, message: &'static str) -> Refusal {
        Refusal {
            status: StatusCode::FORBIDDEN,
            code,
            message,
        }
    }

    fn respond(&self, req: &HttpRequest) -> HttpResponse {
        let body = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{}</Code><Message>{}</Message><Resource>{}</Resource></Error>",
            self.code,
            self.message,
            req.path()
        );
        HttpResponse::build(self.status)
            .content_type("application/xml")
            .body(body)
    }
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("")
            .wrap_fn(|req, srv| {
                let state = req.app_data::<State>().cloned();
                let fut = actix_web::dev::Service::call(srv, req);
                async move {
                    let res = fut.await?;
                    Ok(match state {
                        Some(s) => super::wan::meter_response(res, &s, "storage"),
                        None => res.map_into_boxed_body(),
                    })
                }
            })
            .route("/blobs/{digest}", web::route().to(object)),
    );
}

/// `GET|HEAD /blobs/<digest>?q-method&q-expires&q-signature`.
async fn object(req: HttpRequest, state: State, digest: web::Path<String>) -> HttpResponse {
    let method = req.method().as_str().to_string();
    let answer = serve(&req, &state, &digest).await;
    let resp = match answer {
        Ok(r) => r,
        Err(refusal) => refusal.respond(&req),
    };
    state
        .metrics
        .registry_request("storage", &method, resp.status().as_u16());
    resp
}

async fn serve(req: &HttpRequest, state: &State, digest: &str) -> Result<HttpResponse, Refusal> {
    if !matches!(req.method().as_str(), "GET" | "HEAD") {
        return Err(Refusal {
            status: StatusCode::METHOD_NOT_ALLOWED,
            code: "MethodNotAllowed",
            message: "The specified method is not allowed against this resource",
        });
    }
    if req.headers().contains_key("authorization") {
        return Err(Refusal {
            status: StatusCode::BAD_REQUEST,
            code: "InvalidArgument",
            message: "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, Signature query string parameter or the Authorization header should be specified",
        });
    }
    let presigner = state.presigner.as_ref().ok_or(Refusal::forbidden(
        "AccessDenied",
        "This bucket serves no signed URLs",
    ))?;
    let query = web::Query::<SignedQuery>::from_query(req.query_string()).map_err(|_| {
        Refusal::forbidden(
            "AccessDenied",
            "Query-string authentication requires q-method, q-expires and q-signature",
        )
    })?;
    presigner.check(
        req.method().as_str(),
        digest,
        &query,
        state.clock.now_secs(),
    )?;
    let not_found = || Refusal {
        status: StatusCode::NOT_FOUND,
        code: "NoSuchKey",
        message: "The specified key does not exist.",
    };
    let d = Digest::parse(digest).map_err(|_| not_found())?;
    let size = tokio::fs::metadata(state.storage.blob_file(&d))
        .await
        .map_err(|_| not_found())?
        .len();
    serve_blob_file(req, state, &d, size)
        .await
        .map_err(|_| Refusal {
            status: StatusCode::RANGE_NOT_SATISFIABLE,
            code: "InvalidRange",
            message: "The requested range is not satisfiable",
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(url: &str) -> SignedQuery {
        let q = url.split_once('?').unwrap().1;
        web::Query::<SignedQuery>::from_query(q)
            .unwrap()
            .into_inner()
    }

    #[test]
    fn urls_hold_for_their_method_digest_and_lifetime_only() {
        let p = Presigner::new("http://127.0.0.2:9".into());
        let d = Digest::sha256_of(b"x");
        let url = p.url("GET", &d, 1000);
        let q = query(&url);
        assert!(p.check("GET", d.as_str(), &q, 1000 + URL_TTL_SECS).is_ok());
        let expired = p
            .check("GET", d.as_str(), &q, 1001 + URL_TTL_SECS)
            .unwrap_err();
        assert_eq!(expired.message, "Request has expired");
        assert!(p.check("HEAD", d.as_str(), &q, 1000).is_err());
        let other = Digest::sha256_of(b"y");
        assert!(p.check("GET", other.as_str(), &q, 1000).is_err());
        // Another process (another key) does not honour this one's URLs.
        let p2 = Presigner::new("http://127.0.0.2:9".into());
        assert!(p2.check("GET", d.as_str(), &q, 1000).is_err());
    }
}
