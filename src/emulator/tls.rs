//! TLS for the emulator's listeners, like TCR's HTTPS-only endpoints: `mode = "self-signed"`
//! generates once a CA and a server certificate for the listeners' names and addresses under
//! `<data_dir>/tls/` (`ca.pem`, `ca-key.pem`, `cert.pem`, `key.pem`) and reuses them on restart
//! (the server certificate is reissued by the same CA when it no longer covers a name or is
//! about to expire); `cert_file`/`key_file` serve your own. Certificate issuing is public so
//! tests can make expired and wrong-name certificates with the same code.

use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::ssl::{SslAcceptor, SslAcceptorBuilder, SslFiletype, SslMethod};
use openssl::x509::extension::{
    BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName,
};
use openssl::x509::{X509NameBuilder, X509};

use crate::config::{EmulatorConfig, EmulatorTlsMode};

/// The files the listeners serve.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The CA that signed `cert` (self-signed mode): what a client must trust.
    pub ca: Option<PathBuf>,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TlsFiles {
    /// An acceptor serving this certificate.
    pub fn acceptor(&self) -> io::Result<SslAcceptorBuilder> {
        let mut b =
            SslAcceptor::mozilla_intermediate_v5(SslMethod::tls()).map_err(io::Error::other)?;
        b.set_private_key_file(&self.key, SslFiletype::PEM)
            .map_err(|e| {
                io::Error::other(format!("emulator TLS key {}: {e}", self.key.display()))
            })?;
        b.set_certificate_chain_file(&self.cert).map_err(|e| {
            io::Error::other(format!(
                "emulator TLS certificate {}: {e}",
                self.cert.display()
            ))
        })?;
        b.check_private_key().map_err(|e| {
            io::Error::other(format!(
                "emulator TLS key does not match the certificate: {e}"
            ))
        })?;
        Ok(b)
    }
}

/// The TLS files of `cfg` (generating them in self-signed mode), or `None` for plain HTTP.
pub fn prepare(cfg: &EmulatorConfig) -> io::Result<Option<TlsFiles>> {
    if let (Some(cert), Some(key)) = (&cfg.tls.cert_file, &cfg.tls.key_file) {
        return Ok(Some(TlsFiles {
            ca: None,
            cert: cert.clone(),
            key: key.clone(),
        }));
    }
    if cfg.tls.mode == EmulatorTlsMode::Off {
        return Ok(None);
    }
    let dir = cfg.data_dir.join("tls");
    std::fs::create_dir_all(&dir)?;
    let names = server_names(cfg);
    let ca = Ca::load_or_create(&dir)?;
    let files = TlsFiles {
        ca: Some(dir.join("ca.pem")),
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
    };
    if !current(&files.cert, &ca.cert, &names) {
        let (cert, key) = ca
            .issue(&names, days(-1)?, days(825)?)
            .map_err(io::Error::other)?;
        write_private(
            &files.key,
            &key.private_key_to_pem_pkcs8().map_err(io::Error::other)?,
        )?;
        std::fs::write(&files.cert, cert.to_pem().map_err(io::Error::other)?)?;
        tracing::info!(cert = %files.cert.display(), ?names, "emulator TLS certificate issued");
    }
    Ok(Some(files))
}

/// `127.0.0.1`, `::1`, `localhost`, the listeners' specific addresses and the public URL's host.
fn server_names(cfg: &EmulatorConfig) -> Vec<String> {
    let mut names = vec!["localhost".to_string(), "127.0.0.1".into(), "::1".into()];
    let storage = cfg.storage_listen.map(|a| a.ip());
    for ip in [
        Some(cfg.registry_listen.ip()),
        Some(cfg.api_listen.ip()),
        storage,
    ]
    .into_iter()
    .flatten()
    {
        if !ip.is_unspecified() {
            names.push(ip.to_string());
        }
    }
    if let Ok(u) = url::Url::parse(&cfg.public_url) {
        if let Some(h) = u.host_str() {
            names.push(h.trim_matches(['[', ']']).to_string());
        }
    }
    names.sort();
    names.dedup();
    names
}

/// Whether the certificate at `path` is signed by `ca`, covers every name and is valid for 30
/// more days.
fn current(path: &Path, ca: &X509, names: &[String]) -> bool {
    let Ok(pem) = std::fs::read(path) else {
        return false;
    };
    let Ok(cert) = X509::from_pem(&pem) else {
        return false;
    };
    let signed = ca
        .public_key()
        .and_then(|k| cert.verify(&k))
        .unwrap_or(false);
    let fresh = days(30).map(|t| cert.not_after() > t).unwrap_or(false);
    let sans = crate::x509::subject_alt_names(&cert);
    signed && fresh && names.iter().all(|n| sans.contains(n))
}

/// `n` days from now (negative: in the past).
pub fn days(n: i64) -> io::Result<Asn1Time> {
    let t = chrono::Utc::now().timestamp() + n * 86_400;
    Asn1Time::from_unix(t).map_err(io::Error::other)
}

fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)
}

/// A certificate authority: its certificate and key.
pub struct Ca {
    pub cert: X509,
    key: PKey<Private>,
}

/// A fresh RSA key and a v3 certificate builder for it: subject `CN=<cn>`, random serial.
fn new_certificate(
    cn: &str,
) -> Result<
    (
        PKey<Private>,
        openssl::x509::X509Name,
        openssl::x509::X509Builder,
    ),
    openssl::error::ErrorStack,
> {
    let key = PKey::from_rsa(Rsa::generate(2048)?)?;
    let mut name = X509NameBuilder::new()?;
    name.append_entry_by_text("CN", cn)?;
    let name = name.build();
    let mut b = X509::builder()?;
    b.set_version(2)?;
    let serial = serial()?;
    b.set_serial_number(&serial)?;
    b.set_subject_name(&name)?;
    b.set_pubkey(&key)?;
    Ok((key, name, b))
}

impl Ca {
    /// A new CA named `cn`, valid ten years.
    pub fn generate(cn: &str) -> Result<Ca, openssl::error::ErrorStack> {
        let (key, name, mut b) = new_certificate(cn)?;
        b.set_issuer_name(&name)?;
        let not_before = Asn1Time::from_unix(chrono::Utc::now().timestamp() - 86_400)?;
        let not_after = Asn1Time::days_from_now(3650)?;
        b.set_not_before(&not_before)?;
        b.set_not_after(&not_after)?;
        b.append_extension(BasicConstraints::new().critical().ca().build()?)?;
        b.append_extension(
            KeyUsage::new()
                .critical()
                .key_cert_sign()
                .crl_sign()
                .build()?,
        )?;
        b.sign(&key, MessageDigest::sha256())?;
        Ok(Ca {
            cert: b.build(),
            key,
        })
    }

    /// The CA in `dir` (`ca.pem` + `ca-key.pem`), created when absent.
    fn load_or_create(dir: &Path) -> io::Result<Ca> {
        let (cert_path, key_path) = (dir.join("ca.pem"), dir.join("ca-key.pem"));
        if let (Ok(c), Ok(k)) = (std::fs::read(&cert_path), std::fs::read(&key_path)) {
            let cert = X509::from_pem(&c).map_err(io::Error::other)?;
            let key = PKey::private_key_from_pem(&k).map_err(io::Error::other)?;
            return Ok(Ca { cert, key });
        }
        let ca = Ca::generate("tcr-adapter emulator CA").map_err(io::Error::other)?;
        write_private(
            &key_path,
            &ca.key
                .private_key_to_pem_pkcs8()
                .map_err(io::Error::other)?,
        )?;
        std::fs::write(&cert_path, ca.cert.to_pem().map_err(io::Error::other)?)?;
        Ok(ca)
    }

    /// A server certificate for `names` (DNS names or IP addresses), valid between the two times.
    pub fn issue(
        &self,
        names: &[String],
        not_before: Asn1Time,
        not_after: Asn1Time,
    ) -> Result<(X509, PKey<Private>), openssl::error::ErrorStack> {
        let cn = names.first().map_or("localhost", String::as_str);
        let (key, _, mut b) = new_certificate(cn)?;
        b.set_issuer_name(self.cert.subject_name())?;
        b.set_not_before(&not_before)?;
        b.set_not_after(&not_after)?;
        b.append_extension(BasicConstraints::new().build()?)?;
        b.append_extension(
            KeyUsage::new()
                .critical()
                .digital_signature()
                .key_encipherment()
                .build()?,
        )?;
        b.append_extension(ExtendedKeyUsage::new().server_auth().build()?)?;
        let mut san = SubjectAlternativeName::new();
        for n in names {
            if n.parse::<IpAddr>().is_ok() {
                san.ip(n);
            } else {
                san.dns(n);
            }
        }
        let san = san.build(&b.x509v3_context(Some(&self.cert), None))?;
        b.append_extension(san)?;
        b.sign(&self.key, MessageDigest::sha256())?;
        Ok((b.build(), key))
    }
}

fn serial() -> Result<openssl::asn1::Asn1Integer, openssl::error::ErrorStack> {
    let mut bn = BigNum::new()?;
    bn.rand(127, MsbOption::MAYBE_ZERO, false)?;
    bn.to_asn1_integer()
}
