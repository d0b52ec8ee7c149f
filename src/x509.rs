//! Certificate facts both sides need: the emulator (is its certificate current for its names?)
//! and the upstream's TLS diagnosis (which names does TCR's certificate carry?).

use std::net::IpAddr;

use openssl::x509::X509Ref;

/// The subject alternative names of `cert`: DNS names, and IP addresses in their usual text form.
pub fn subject_alt_names(cert: &X509Ref) -> Vec<String> {
    let Some(names) = cert.subject_alt_names() else {
        return Vec::new();
    };
    names
        .iter()
        .filter_map(|n| {
            n.dnsname().map(str::to_string).or_else(|| {
                let ip = match n.ipaddress()? {
                    b if b.len() == 4 => IpAddr::from(<[u8; 4]>::try_from(b).ok()?),
                    b if b.len() == 16 => IpAddr::from(<[u8; 16]>::try_from(b).ok()?),
                    _ => return None,
                };
                Some(ip.to_string())
            })
        })
        .collect()
}
