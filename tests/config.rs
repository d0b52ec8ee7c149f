//! The configuration contract: TOML file + `TCR_ADAPTER__<SECTION>__<KEY>` overrides, unknown keys
//! named in the error, `*_file` secrets, and the shipped `config.example.toml` staying loadable.

use std::io::Write;

use tcr_adapter::config::{Config, LogFormat};

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn file(text: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(text.as_bytes()).unwrap();
    f
}

/// The error of loading `file` (if any) with `vars` as the environment, as text (it must fail).
fn load_err(file: Option<&tempfile::NamedTempFile>, vars: Vec<(String, String)>) -> String {
    Config::load_with_env(file.map(|f| f.path()), vars)
        .unwrap_err()
        .to_string()
}

#[test]
fn defaults_need_no_file_and_no_environment() {
    let cfg = Config::load_with_env(None, env(&[])).unwrap();
    assert_eq!(cfg.server.listen.to_string(), "127.0.0.1:5000");
    assert_eq!(cfg.server.public_base(), "http://127.0.0.1:5000");
    assert!(
        cfg.tcr.registry_url.is_empty(),
        "no TCR configured: serve starts the emulator"
    );
    assert_eq!(cfg.emulator.accounts.len(), 1);
    assert_eq!(cfg.tcr.api_qps, 10);
}

#[test]
fn every_documented_environment_override_lands() {
    let cfg = Config::load_with_env(
        None,
        env(&[
            ("TCR_ADAPTER__SERVER__LISTEN", "127.0.0.1:6000"),
            ("TCR_ADAPTER__SERVER__PUBLIC_URL", "https://reg.example.com"),
            ("TCR_ADAPTER__SERVER__TRUST_FORWARDED_HEADERS", "true"),
            ("TCR_ADAPTER__AUTH__TOKEN_TTL_SECS", "120"),
            ("TCR_ADAPTER__AUTH__SERVICE", "my-svc"),
            (
                "TCR_ADAPTER__TCR__REGISTRY_URL",
                "https://x.tencentcloudcr.com",
            ),
            ("TCR_ADAPTER__TCR__SECRET_ID", "AKIDxyz"),
            ("TCR_ADAPTER__TCR__SECRET_KEY", "k3y"),
            ("TCR_ADAPTER__TCR__API_QPS", "5"),
            ("TCR_ADAPTER__NAMESPACES__PUBLIC", "true"),
            ("TCR_ADAPTER__NAMESPACES__DRY_RUN", "true"),
            ("TCR_ADAPTER__NAMESPACES__ALLOW", "team-*,ops"),
            ("TCR_ADAPTER__EMULATOR__DATA_DIR", "/tmp/emu"),
            ("TCR_ADAPTER__EMULATOR__FAULTS__API_QPS_LIMIT", "3"),
            ("TCR_ADAPTER__EMULATOR__TLS__MODE", "self-signed"),
            ("TCR_ADAPTER__LOG__FORMAT", "json"),
            ("TCR_ADAPTER__LOG__LEVEL", "debug"),
            ("UNRELATED", "ignored"),
        ]),
    )
    .unwrap();
    assert_eq!(cfg.server.listen.to_string(), "127.0.0.1:6000");
    assert_eq!(cfg.server.public_base(), "https://reg.example.com");
    assert!(cfg.server.trust_forwarded_headers);
    assert_eq!(cfg.auth.token_ttl_secs, 120);
    assert_eq!(cfg.auth.service, "my-svc");
    assert_eq!(cfg.tcr.registry_url, "https://x.tencentcloudcr.com");
    assert_eq!(cfg.tcr.secret_id, "AKIDxyz");
    assert_eq!(cfg.tcr.secret_key.expose(), "k3y");
    assert_eq!(cfg.tcr.api_qps, 5);
    assert!(cfg.namespaces.public);
    assert!(cfg.namespaces.dry_run);
    assert_eq!(cfg.namespaces.allow, vec!["team-*", "ops"]);
    assert_eq!(cfg.emulator.data_dir.to_str(), Some("/tmp/emu"));
    assert_eq!(cfg.emulator.faults.api_qps_limit, 3);
    assert_eq!(
        cfg.emulator.tls.mode,
        tcr_adapter::config::EmulatorTlsMode::SelfSigned
    );
    assert_eq!(cfg.log.format, LogFormat::Json);
    assert_eq!(cfg.log.level, "debug");
}

#[test]
fn environment_overrides_the_file() {
    let f = file("[server]\nlisten = \"127.0.0.1:7000\"\n[tcr]\napi_qps = 7\n");
    let cfg = Config::load_with_env(
        Some(f.path()),
        env(&[("TCR_ADAPTER__SERVER__LISTEN", "127.0.0.1:7001")]),
    )
    .unwrap();
    assert_eq!(cfg.server.listen.to_string(), "127.0.0.1:7001");
    assert_eq!(cfg.tcr.api_qps, 7);
}

#[test]
fn unknown_keys_are_errors_that_name_the_key() {
    let f = file("[server]\nlisen = \"127.0.0.1:7000\"\n");
    let err = load_err(Some(&f), env(&[]));
    assert!(err.contains("lisen"), "{err}");

    let f = file("[servre]\n");
    let err = load_err(Some(&f), env(&[]));
    assert!(err.contains("servre"), "{err}");

    let err = load_err(None, env(&[("TCR_ADAPTER__TCR__SECRETID", "x")]));
    assert!(err.contains("secretid"), "{err}");
}

#[test]
fn secret_files_are_read_and_secrets_never_debug_printed() {
    let key = file("  s3cr3t-from-file\n");
    let f = file(&format!(
        "[tcr]\nsecret_id = \"AKIDabc\"\nsecret_key_file = {:?}\n",
        key.path()
    ));
    let cfg = Config::load_with_env(Some(f.path()), env(&[])).unwrap();
    assert_eq!(cfg.tcr.secret_key.expose(), "s3cr3t-from-file");
    let dbg = format!("{cfg:?}");
    assert!(!dbg.contains("s3cr3t"), "secret leaked into Debug output");
    assert!(!dbg.contains(tcr_adapter::config::EmulatorAccount::DEMO_SECRET_KEY));
}

#[test]
fn invalid_values_are_explained() {
    let err = load_err(
        None,
        env(&[("TCR_ADAPTER__SERVER__PUBLIC_URL", "https://h/prefix")]),
    );
    assert!(err.contains("root of a host"), "{err}");
    let err = load_err(None, env(&[("TCR_ADAPTER__AUTH__TOKEN_TTL_SECS", "10")]));
    assert!(err.contains("token_ttl_secs"), "{err}");
    let err = load_err(None, env(&[("TCR_ADAPTER__TCR__SECRET_ID", "AKIDx")]));
    assert!(err.contains("secret_key"), "{err}");
}

#[test]
fn the_shipped_example_loads() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/config.example.toml");
    let cfg = Config::load_with_env(Some(std::path::Path::new(path)), env(&[])).unwrap();
    assert_eq!(cfg.server.listen.to_string(), "127.0.0.1:5000");
}

/// Every key of the configuration tree appears in config.example.toml (set or commented out).
#[test]
fn every_key_is_documented_in_the_example() {
    fn walk(prefix: &str, v: &toml::Value, out: &mut Vec<(String, String)>) {
        if let toml::Value::Table(t) = v {
            for (k, v) in t {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                if matches!(v, toml::Value::Table(_)) {
                    walk(&path, v, out);
                } else if let Some(first) = v
                    .as_array()
                    .and_then(|a| a.first())
                    .filter(|f| f.is_table())
                {
                    walk(&path, first, out);
                } else {
                    out.push((prefix.to_string(), k.clone()));
                }
            }
        }
    }
    let cfg = Config::load_with_env(None, env(&[])).unwrap();
    let value = toml::Value::try_from(&cfg).unwrap();
    let mut keys = Vec::new();
    walk("", &value, &mut keys);
    let example =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config.example.toml"))
            .unwrap();
    for (section, key) in keys {
        let section_header = format!("[{section}]");
        let in_section = section.is_empty()
            || example.contains(&section_header)
            || example.contains(&format!("[[{section}]]"));
        assert!(
            in_section,
            "section [{section}] missing from config.example.toml"
        );
        let set =
            example.contains(&format!("\n{key} =")) || example.contains(&format!("\n# {key} ="));
        assert!(
            set,
            "key {section}.{key} is not documented in config.example.toml"
        );
    }
    for optional in [
        "cert_file",
        "key_file",
        "signing_key_file",
        "sealing_key_file",
        "secret_key_file",
        "ca_file",
    ] {
        assert!(
            example.contains(&format!("# {optional} =")),
            "{optional} undocumented"
        );
    }
}

/// The README's configuration reference names every key too.
#[test]
fn every_key_is_named_in_the_readme() {
    let cfg = Config::load_with_env(None, env(&[])).unwrap();
    let value = toml::Value::try_from(&cfg).unwrap();
    let mut keys = Vec::new();
    fn walk(v: &toml::Value, out: &mut Vec<String>) {
        let Some(t) = v.as_table() else { return };
        for (k, v) in t {
            match v {
                toml::Value::Table(_) => walk(v, out),
                toml::Value::Array(a) if a.first().is_some_and(|f| f.is_table()) => {
                    walk(&a[0], out)
                }
                _ => out.push(k.clone()),
            }
        }
    }
    walk(&value, &mut keys);
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    for key in keys {
        let named = readme.contains(&format!("`{key}`")) || readme.contains(&format!(".{key}`"));
        assert!(
            named,
            "README's configuration reference does not name `{key}`"
        );
    }
}
