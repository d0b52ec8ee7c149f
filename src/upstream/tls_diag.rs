//! Explains a failed TLS handshake with the upstream in words a user can act on: a certificate
//! not signed by a trusted CA (→ `tcr.ca_file`), an expired (or not yet valid) certificate, a
//! certificate for other names. It opens one diagnostic connection that records every
//! verification error instead of stopping at the first, and reads the peer certificate. Used by
//! `check` and, through [`explain`], by the data path (results cached per origin for 30 s, so a
//! broken upstream costs one probe, not one per request).

use std::collections::HashMap;
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode};
use openssl::x509::{X509Ref, X509VerifyResult, X509};

const TIMEOUT: Duration = Duration::from_secs(3);
const CACHE_TTL: Duration = Duration::from_secs(30);

type Cache = Mutex<HashMap<String, (Instant, Option<String>)>>;

/// Extra CA bundles trusted per upstream origin (registered by the upstream client).
fn trust() -> &'static Mutex<HashMap<String, Vec<u8>>> {
    static T: OnceLock<Mutex<HashMap<String, Vec<u8>>>> = OnceLock::new();
    T.get_or_init(Default::default)
}

fn cache() -> &'static Cache {
    static C: OnceLock<Cache> = OnceLock::new();
    C.get_or_init(Default::default)
}

fn origin(url: &str) -> Option<String> {
    let u = url::Url::parse(url).ok()?;
    Some(format!(
        "{}://{}:{}",
        u.scheme(),
        u.host_str()?,
        u.port_or_known_default()?
    ))
}

/// Remember the CA bundle the client of `base` trusts besides the system roots.
pub fn remember_trust(base: &str, ca_pem: Option<&[u8]>) {
    if let (Some(o), Some(pem)) = (origin(base), ca_pem) {
        trust()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(o, pem.to_vec());
    }
}

/// Whether a transport error's text is about TLS.
pub fn looks_like_tls(reason: &str) -> bool {
    let r = reason.to_ascii_lowercase();
    ["certificate", "ssl", "tls", "handshake"]
        .iter()
        .any(|w| r.contains(w))
}

/// The plain-words explanation of a TLS failure talking to `url`, when `reason` is one and the
/// diagnosis finds a cause. Blocking (one connection, 3 s timeouts), cached per origin.
pub fn explain(url: &str, reason: &str) -> Option<String> {
    if !looks_like_tls(reason) || !url.starts_with("https://") {
        return None;
    }
    let origin = origin(url)?;
    if let Some((at, v)) = cache()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&origin)
    {
        if at.elapsed() < CACHE_TTL {
            return v.clone();
        }
    }
    let ca = trust()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&origin)
        .cloned();
    let found = diagnose(url, ca.as_deref()).ok().flatten();
    cache()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(origin, (Instant::now(), found.clone()));
    found
}

/// Connect to `url`'s host, verify its certificate against the system roots plus `ca_pem`,
/// and explain every problem found (`Ok(None)`: the certificate verifies).
pub fn diagnose(url: &str, ca_pem: Option<&[u8]>) -> Result<Option<String>, String> {
    let u = url::Url::parse(url).map_err(|e| e.to_string())?;
    let host = u.host_str().ok_or("no host")?.trim_matches(['[', ']']);
    let port = u.port_or_known_default().ok_or("no port")?;
    let addr = (host, port)
        .to_socket_addrs()
        .map_err(|e| e.to_string())?
        .next()
        .ok_or("no address")?;
    let tcp = TcpStream::connect_timeout(&addr, TIMEOUT).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(TIMEOUT))
        .map_err(|e| e.to_string())?;
    tcp.set_write_timeout(Some(TIMEOUT))
        .map_err(|e| e.to_string())?;

    let mut b = SslConnector::builder(SslMethod::tls()).map_err(|e| e.to_string())?;
    if let Some(pem) = ca_pem {
        for cert in X509::stack_from_pem(pem).map_err(|e| e.to_string())? {
            b.cert_store_mut()
                .add_cert(cert)
                .map_err(|e| e.to_string())?;
        }
    }
    let errors: Arc<Mutex<Vec<X509VerifyResult>>> = Arc::default();
    let seen = errors.clone();
    b.set_verify_callback(SslVerifyMode::PEER, move |ok, ctx| {
        if !ok {
            seen.lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(ctx.error());
        }
        true // go on: collect every problem, then read the certificate
    });
    let stream = b
        .build()
        .connect(host, tcp)
        .map_err(|e| format!("TLS handshake: {e}"))?;
    let leaf = stream
        .ssl()
        .peer_certificate()
        .ok_or("the server sent no certificate")?;
    let errors = errors.lock().unwrap_or_else(|e| e.into_inner()).clone();
    Ok(describe(host, &leaf, &errors, ca_pem.is_some()))
}

/// Words for the verification errors of `leaf` served for `host`.
fn describe(
    host: &str,
    leaf: &X509Ref,
    errors: &[X509VerifyResult],
    has_ca: bool,
) -> Option<String> {
    // Codes from OpenSSL's x509_vfy.h.
    const UNTRUSTED: [i32; 7] = [2, 7, 18, 19, 20, 21, 24];
    const NOT_YET_VALID: i32 = 9;
    const EXPIRED: i32 = 10;
    const NAME: [i32; 3] = [62, 63, 64];
    let has = |codes: &[i32]| errors.iter().any(|e| codes.contains(&e.as_raw()));
    let mut out = Vec::new();
    if has(&UNTRUSTED) {
        let also = if has_ca {
            " (the CA in tcr.ca_file did not sign it)"
        } else {
            ""
        };
        out.push(format!(
            "TCR's certificate (issued by {}) is not signed by a CA the adapter trusts{also}: set tcr.ca_file to the PEM file of the CA that signed it",
            name_of(leaf.issuer_name())
        ));
    }
    if has(&[EXPIRED]) {
        out.push(format!(
            "TCR's certificate for {host} expired on {}: renew it on the server (or correct this host's clock)",
            leaf.not_after()
        ));
    }
    if has(&[NOT_YET_VALID]) {
        out.push(format!(
            "TCR's certificate for {host} is not valid before {}: check this host's clock",
            leaf.not_before()
        ));
    }
    if has(&NAME) {
        out.push(format!(
            "TCR's certificate is for {}, not {host}: use one of those names in tcr.registry_url, or reissue the certificate for {host}",
            names_of(leaf)
        ));
    }
    let known: Vec<i32> = UNTRUSTED
        .iter()
        .chain(&NAME)
        .chain(&[EXPIRED, NOT_YET_VALID])
        .copied()
        .collect();
    for e in errors.iter().filter(|e| !known.contains(&e.as_raw())) {
        out.push(format!("TCR's certificate: {}", e.error_string()));
    }
    out.dedup();
    (!out.is_empty()).then(|| out.join("; "))
}

fn name_of(n: &openssl::x509::X509NameRef) -> String {
    n.entries()
        .map(|e| {
            format!(
                "{}={}",
                e.object().nid().short_name().unwrap_or("?"),
                String::from_utf8_lossy(e.data().as_slice())
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The subject alternative names of `cert` (DNS names and IP addresses), else its CN.
fn names_of(cert: &X509Ref) -> String {
    let sans = crate::x509::subject_alt_names(cert);
    if sans.is_empty() {
        name_of(cert.subject_name())
    } else {
        sans.join(", ")
    }
}
