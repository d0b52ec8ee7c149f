//! CNCF distribution 2.8 (`/usr/bin/docker-registry`) as a second, independent upstream with
//! token auth: it trusts the emulator's token realm (a self-signed certificate over the
//! emulator's RSA key), and the adapter forwards to it. skopeo pushes and pulls an image
//! through the adapter; every digest survives, and distribution's own absolute, `_state`-carrying
//! upload `Location`s are rewritten and replayed correctly.

mod common;
mod oci_layout;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tcr_adapter::app;
use tcr_adapter::clock;
use tcr_adapter::config::{Config, Secret};
use tcr_adapter::emulator::TokenKind;

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A self-signed X.509 certificate over the emulator's token signing key.
fn certificate_for(key_pem: &[u8]) -> Vec<u8> {
    use openssl::asn1::Asn1Time;
    use openssl::bn::BigNum;
    use openssl::hash::MessageDigest;
    use openssl::pkey::PKey;
    use openssl::x509::{X509Builder, X509NameBuilder};
    let key = PKey::private_key_from_pem(key_pem).unwrap();
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_text("CN", "tcr-emulator").unwrap();
    let name = name.build();
    let mut b = X509Builder::new().unwrap();
    b.set_version(2).unwrap();
    b.set_serial_number(&BigNum::from_u32(1).unwrap().to_asn1_integer().unwrap())
        .unwrap();
    b.set_subject_name(&name).unwrap();
    b.set_issuer_name(&name).unwrap();
    b.set_pubkey(&key).unwrap();
    b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    b.set_not_after(&Asn1Time::days_from_now(30).unwrap())
        .unwrap();
    b.sign(&key, MessageDigest::sha256()).unwrap();
    b.build().to_pem().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distribution_2_8_behind_the_adapter_keeps_digests() {
    common::require_tool("docker-registry");
    common::require_tool("skopeo");
    let emu = common::start_emulator().await;
    emu.handle.state.namespaces.create("dist", false).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let key_pem = std::fs::read(emu.dir.path().join("keys/signing.pem")).unwrap();
    let cert = tmp.path().join("cert.pem");
    std::fs::write(&cert, certificate_for(&key_pem)).unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let config = tmp.path().join("config.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n  secret: adapter-test-secret\nauth:\n  token:\n    realm: {}/service/token\n    service: harbor-registry\n    issuer: tcr-emulator\n    rootcertbundle: {}\n",
            tmp.path().join("data").display(),
            emu.handle.registry_url(),
            cert.display()
        ),
    )
    .unwrap();
    let child = Command::new("/usr/bin/docker-registry")
        .arg("serve")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("docker-registry starts");
    let _guard = KillOnDrop(child);
    let dist_url = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let mut up = false;
    for _ in 0..100 {
        if let Ok(r) = http.get(format!("{dist_url}/v2/")).send().await {
            assert_eq!(r.status(), 401, "distribution asks for a token");
            let chal = r.headers()["www-authenticate"]
                .to_str()
                .unwrap()
                .to_string();
            assert!(chal.contains(&emu.handle.registry_url()), "{chal}");
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(up, "distribution listens");

    let mut cfg = Config::default();
    cfg.server.listen = "127.0.0.1:0".parse().unwrap();
    cfg.tcr.registry_url = dist_url.clone();
    cfg.tcr.api_endpoint = emu.handle.api_url();
    cfg.tcr.registry_id = emu.handle.state.cfg.registry_id.clone();
    cfg.tcr.region = emu.handle.state.cfg.region.clone();
    cfg.tcr.secret_id = common::DEMO_SECRET_ID.into();
    cfg.tcr.secret_key = Secret::new(common::DEMO_SECRET_KEY);
    let adapter = app::start(cfg, clock::system()).await.unwrap();
    let host = adapter.addr.to_string();
    let tok = emu
        .handle
        .state
        .tokens
        .issue(common::DEMO_UIN, TokenKind::LongTerm);
    let creds = format!("{}:{}", tok.username, tok.token);

    let src = tmp.path().join("src");
    let mut layout = oci_layout::Layout::new(&src);
    let single = layout.tag_image("v1", 7);
    let multi = layout.tag_index("multi", 8);
    layout.finish();
    for (tag, digest) in [("v1", &single), ("multi", &multi)] {
        common::skopeo_push(&src, tag, &format!("{host}/dist/app:{tag}"), &creds).await;
        let via = common::skopeo_raw_manifest(&format!("{host}/dist/app:{tag}"), &creds).await;
        let direct =
            common::skopeo_raw_manifest(&format!("127.0.0.1:{port}/dist/app:{tag}"), &creds).await;
        assert_eq!(via, direct);
        assert_eq!(
            tcr_adapter::oci::Digest::sha256_of(via.as_bytes()).to_string(),
            digest.to_string()
        );
    }
    let out = tmp.path().join("pulled");
    common::skopeo_pull(&format!("{host}/dist/app:multi"), &out, "multi", &creds).await;
    let pulled = oci_layout::blobs(&out);
    let source = oci_layout::blobs(&src);
    for (k, v) in &pulled {
        assert_eq!(Some(v), source.get(k), "blob {k}");
    }
    assert!(
        pulled.len() >= 10,
        "index, 3 manifests, 3 configs, 3 layers: {}",
        pulled.len()
    );
    adapter.stop().await;
}
