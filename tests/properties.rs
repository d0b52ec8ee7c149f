//! Hostile input, generated (proptest): every parser at the adapter's edge — repository names,
//! tags, digests, references, `/v2/` paths, token scopes, the upload query, `Location` and `Link`
//! rewriting with a rename map, adapter JWTs, TC3 `Authorization` headers, the chart upload
//! peek — never panics, round-trips where a round trip exists, and refuses with the OCI code a
//! client gets.

use proptest::prelude::*;
use tcr_adapter::auth::{scope, TokenCodec};
use tcr_adapter::config::NamespacesConfig;
use tcr_adapter::namespaces::NamespaceProvisioner;
use tcr_adapter::oci::{Digest, ErrorCode, Reference, RepoName, Tag};
use tcr_adapter::registry::rewrite;
use tcr_adapter::registry::Endpoint;
use tcr_adapter::tencentcloud::signer;

fn mapped() -> NamespaceProvisioner {
    NamespaceProvisioner::new(&NamespacesConfig {
        map: [("library".to_string(), "lib-tcr".to_string())].into(),
        ..Default::default()
    })
}

/// Valid repository names: lowercase components separated by `.`, `_`, `__` or dashes.
fn repo_name() -> impl Strategy<Value = String> {
    let component = "[a-z0-9]{1,8}([._-][a-z0-9]{1,8}){0,2}";
    prop::collection::vec(component, 1..4).prop_map(|c| c.join("/"))
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 512,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn names_tags_digests_never_panic_and_round_trip(s in ".{0,300}") {
        if let Ok(n) = RepoName::parse(&s) { prop_assert_eq!(n.as_str(), s.as_str()); }
        if let Ok(t) = Tag::parse(&s) { prop_assert_eq!(t.as_str(), s.as_str()); }
        if let Ok(d) = Digest::parse(&s) { prop_assert_eq!(d.as_str(), s.as_str()); }
        if let Ok(r) = Reference::parse(&s) { prop_assert_eq!(r.as_str(), s.as_str()); }
    }

    #[test]
    fn valid_names_parse(name in repo_name()) {
        let n = RepoName::parse(&name).unwrap();
        prop_assert_eq!(n.as_str(), name.as_str());
        prop_assert!(name.starts_with(n.namespace()));
    }

    #[test]
    fn digests_of_any_bytes_round_trip(data in prop::collection::vec(any::<u8>(), 0..256)) {
        let d = Digest::sha256_of(&data);
        prop_assert_eq!(Digest::parse(d.as_str()).unwrap(), d);
    }

    #[test]
    fn v2_paths_parse_or_get_an_oci_code(tail in "[a-zA-Z0-9/._:@%+-]{0,200}") {
        match Endpoint::parse(&tail) {
            Ok(e) => { let _ = e.label(); }
            Err(e) => prop_assert!(matches!(
                e.code,
                ErrorCode::NameInvalid | ErrorCode::NameUnknown | ErrorCode::TagInvalid
                    | ErrorCode::DigestInvalid | ErrorCode::Unsupported | ErrorCode::ManifestUnknown
                    | ErrorCode::BlobUnknown | ErrorCode::BlobUploadUnknown
            ), "{:?}", e.code),
        }
    }

    #[test]
    fn scopes_round_trip(name in repo_name(), push in any::<bool>(), extra in ".{0,60}") {
        let actions: &[&str] = if push { &["pull", "push"] } else { &["pull"] };
        let text = format!("repository:{name}:{}", actions.join(","));
        let parsed = scope::parse_one(&text).unwrap();
        prop_assert_eq!(scope::parse_one(&scope::render(&parsed)).unwrap(), parsed);
        let _ = scope::parse_one(&extra);
        let _ = scope::parse_all([extra.as_str(), text.as_str()]);
    }

    #[test]
    fn the_upload_query_is_rewritten_or_refused_as_digest_invalid(q in ".{0,200}") {
        match rewrite::upstream_query(&q, &mapped()) {
            Ok((out, _)) => prop_assert!(
                url::Url::parse(&format!("http://tcr.example/v2/a/blobs/uploads/?{out}")).is_ok(),
                "{}", out
            ),
            Err(e) => prop_assert!(matches!(e.code, ErrorCode::DigestInvalid | ErrorCode::NameInvalid), "{:?}", e.code),
        }
    }

    #[test]
    fn locations_and_links_keep_the_query_and_map_the_namespace(
        repo in repo_name(), query in "[a-zA-Z0-9_=&.-]{0,80}", junk in ".{0,120}"
    ) {
        let p = mapped();
        let up = "http://tcr.example:5000";
        let loc = format!("{up}/v2/lib-tcr/{repo}/blobs/uploads/abc?{query}");
        let out = rewrite::location(&loc, up, "https://adapter.example", &p);
        prop_assert_eq!(out, format!("https://adapter.example/v2/library/{repo}/blobs/uploads/abc?{query}"));
        let other = format!("https://cos.example/x?{query}");
        prop_assert_eq!(rewrite::location(&other, up, "https://a", &p), other.clone());
        let link = format!("<{up}/v2/lib-tcr/{repo}/tags/list?n=10&last=x>; rel=\"next\"");
        let l = rewrite::link(&link, up, &p);
        prop_assert!(l.starts_with(&format!("</v2/library/{repo}/tags/list?")), "{}", l);
        let _ = rewrite::location(&junk, up, "https://a", &p);
        let _ = rewrite::link(&junk, up, &p);
    }

    #[test]
    fn jwts_are_refused_not_panicked_on(token in ".{0,400}", parts in prop::collection::vec("[A-Za-z0-9_-]{0,60}", 3)) {
        let codec = TokenCodec::new(b"0123456789abcdef0123456789abcdef", "tcr-adapter", "tcr-adapter");
        prop_assert!(codec.decode(&token, 1_700_000_000, "access").is_err());
        prop_assert!(codec.decode(&parts.join("."), 1_700_000_000, "access").is_err());
    }

    #[test]
    fn tc3_headers_parse_round_trip_or_are_refused(
        id in "AKID[A-Za-z0-9]{4,30}", date in "20[0-9]{2}-[01][0-9]-[0-3][0-9]",
        sig in "[0-9a-f]{64}", junk in ".{0,300}"
    ) {
        let header = format!(
            "TC3-HMAC-SHA256 Credential={id}/{date}/tcr/tc3_request, SignedHeaders=content-type;host, Signature={sig}"
        );
        let p = signer::parse_authorization(&header).unwrap();
        prop_assert_eq!(&p.secret_id, &id);
        prop_assert_eq!(&p.date, &date);
        prop_assert_eq!(&p.signature, &sig);
        prop_assert_eq!(p.signed_headers, vec!["content-type".to_string(), "host".to_string()]);
        let _ = signer::parse_authorization(&junk);
    }

    #[test]
    fn the_upstream_path_builder_never_lets_a_value_change_the_path(
        value in "(%2[eEfF]|%5[cC]|%25|[./\\\\?#%;: a-zA-Z0-9\\x00-\\x1f\\u{80}-\\u{10ffff}]){0,40}"
    ) {
        use tcr_adapter::upstream::UpstreamPath;
        let built = UpstreamPath::root().lit("api").lit("chartrepo").push(&value);
        match built {
            Err(_) => prop_assert!(value.is_empty() || value == "." || value == ".."),
            Ok(p) => {
                let s = p.to_path_and_query();
                let segs: Vec<&str> = s.split('/').collect();
                prop_assert_eq!(segs.len(), 4, "{}", s);
                prop_assert!(!s.contains(['\\', '?', '#', ' ']) && !s.chars().any(char::is_control));
                let decoded = percent_encoding::percent_decode_str(segs[3]).decode_utf8().unwrap();
                prop_assert_eq!(decoded.as_ref(), value.as_str());
                prop_assert!(segs[3] != "." && segs[3] != "..");
            }
        }
    }

    #[test]
    fn typed_harbor_names_hold_no_separator_or_dot_segment(
        value in "(\\.\\.|[./\\\\?#%a-zA-Z0-9+_-]|\\n|\\u{0}){0,30}"
    ) {
        use tcr_adapter::harbor_api::{ChartFile, ChartName, ChartVersion, Project};
        let safe = |s: &str| !s.contains(['/', '\\', '?', '#', '%', '\n', '\0']) && !s.contains("..") && !s.is_empty() && s != ".";
        if Project::parse(&value).is_ok() { prop_assert!(safe(&value)); }
        if ChartName::parse(&value).is_ok() { prop_assert!(safe(&value)); }
        if ChartVersion::parse(&value).is_ok() { prop_assert!(safe(&value)); }
        if ChartFile::parse(&value).is_ok() { prop_assert!(safe(&value)); }
    }

    #[test]
    fn the_chart_archive_check_never_panics(
        body in prop::collection::vec(any::<u8>(), 0..2048),
        gzip_prefix in any::<bool>()
    ) {
        let mut bytes = if gzip_prefix { vec![0x1f, 0x8b] } else { Vec::new() };
        bytes.extend_from_slice(&body);
        match tcr_adapter::harbor_api::inspect_archive(&bytes) {
            Ok(c) => {
                prop_assert!(!c.name.as_str().contains(['/', '\\']));
                prop_assert!(!c.version.as_str().contains(".."));
            }
            Err(e) => prop_assert_eq!(e.status.as_u16(), 400),
        }
    }
}
