//! Helm chart fixtures shared by the chart suites: a real `helm package`-shaped archive
//! (`<name>/Chart.yaml` first, like Helm writes it) with an optional incompressible payload, and the
//! multipart body Harbor's chart replication (and `helm cm-push`) sends.
#![allow(dead_code)]

use std::io::Write;

/// A gzipped tar chart archive `<name>-<version>.tgz`: `Chart.yaml`, `values.yaml`, one template,
/// and `files/payload.bin` of `payload_bytes` pseudo-random bytes (seeded by name and version, so
/// the same arguments give the same archive).
pub fn chart_archive(name: &str, version: &str, payload_bytes: usize) -> Vec<u8> {
    // Large payloads are random (incompressible anyway): store them, don't deflate them.
    let level = if payload_bytes > 1 << 20 {
        flate2::Compression::none()
    } else {
        flate2::Compression::default()
    };
    let gz = flate2::write::GzEncoder::new(Vec::new(), level);
    let mut tar = tar::Builder::new(gz);
    let chart_yaml = format!(
        "apiVersion: v2\nname: {name}\nversion: {version}\ndescription: test chart {name}\ntype: application\nappVersion: \"1.0.0\"\n"
    );
    add(
        &mut tar,
        &format!("{name}/Chart.yaml"),
        chart_yaml.as_bytes(),
    );
    add(
        &mut tar,
        &format!("{name}/values.yaml"),
        b"replicaCount: 1\n",
    );
    add(
        &mut tar,
        &format!("{name}/templates/configmap.yaml"),
        b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}\ndata:\n  a: b\n",
    );
    if payload_bytes > 0 {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for b in format!("{name}@{version}").bytes() {
            x = (x ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
        let mut payload = Vec::with_capacity(payload_bytes + 8);
        while payload.len() < payload_bytes {
            // xorshift64*: cheap even in debug builds (a 50 MiB chart in well under a second).
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            payload.extend_from_slice(&x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
        }
        payload.truncate(payload_bytes);
        add(&mut tar, &format!("{name}/files/payload.bin"), &payload);
    }
    let gz = tar.into_inner().expect("tar finishes");
    gz.finish().expect("gzip finishes")
}

fn add<W: Write>(tar: &mut tar::Builder<W>, path: &str, data: &[u8]) {
    let mut header = tar::Header::new_gnu();
    header.set_size(data.len() as u64);
    header.set_mode(0o644);
    header.set_mtime(1_700_000_000);
    header.set_cksum();
    tar.append_data(&mut header, path, data)
        .expect("tar entry appends");
}

/// The boundary Go's `mime/multipart` would pick (30 random bytes, hex).
pub const BOUNDARY: &str = "3d6b6a416f9b5e1c2a7d8e9f0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b";

/// `multipart/form-data` as Harbor's `UploadChart` builds it: one part `name="chart"`,
/// `filename="<file_name>"`, `Content-Type: application/octet-stream`. Returns the request's
/// `Content-Type` and body.
pub fn multipart_chart(file_name: &str, archive: &[u8]) -> (String, Vec<u8>) {
    multipart_parts(&[("chart", file_name, archive)])
}

/// A multipart body with several file parts `(field, file_name, bytes)` (e.g. `chart` + `prov`).
pub fn multipart_parts(parts: &[(&str, &str, &[u8])]) -> (String, Vec<u8>) {
    let mut body = Vec::new();
    for (field, file_name, bytes) in parts {
        write!(
            body,
            "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{file_name}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
        )
        .unwrap();
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    write!(body, "--{BOUNDARY}--\r\n").unwrap();
    (format!("multipart/form-data; boundary={BOUNDARY}"), body)
}

/// `sha256:<hex>` of some bytes (Helm's index `digest` is the bare hex of the archive's SHA-256).
pub fn sha256_hex(bytes: &[u8]) -> String {
    tcr_adapter::oci::Digest::sha256_of(bytes)
        .encoded()
        .to_string()
}
