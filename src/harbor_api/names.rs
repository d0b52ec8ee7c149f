//! The typed path parameters of the Harbor API and the chart repository, parsed at the edge:
//! a project (Harbor's project-name rule), a chart name and version (Helm's rules, as TCR's
//! chart repository takes them) and a chart file name. Whatever a client sends — percent-encoded
//! separators, dot-segments, `?`, `#`, control characters, 10 kB names — is refused here with a
//! 400 in the front's error format, before any upstream call; the upstream path is then built by
//! [`crate::upstream::UpstreamPath`], which encodes every segment once more.

use std::fmt;

use actix_web::http::StatusCode;

use crate::oci::{ErrorCode, OciError};

/// Longest chart name, version or file name accepted.
const MAX_CHART_PART: usize = 250;

/// A Harbor project name as the client names it (before the rename map).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Project(String);

/// A Helm chart name: letters, digits, `.`, `_`, `-`, starting with a letter or digit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChartName(String);

/// A chart version: SemVer as Helm reads it (an optional `v`, then a digit, then
/// `[0-9A-Za-z.+-]`), with no `..`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChartVersion(String);

/// A file of the chart repository: `<name>-<version>.tgz` or its `.tgz.prov`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChartFile(String);

fn alnum(b: u8) -> bool {
    b.is_ascii_alphanumeric()
}

impl Project {
    /// Letters, digits, `.`, `_` and `-`, starting with a letter or digit, no `..`, at most 255
    /// characters. Harbor's own rule is stricter (lowercase); the rename map may turn other
    /// names into valid namespaces, and the policy gate applies TCR's rule after it.
    pub fn parse(s: &str) -> Result<Self, OciError> {
        let b = s.as_bytes();
        let ok = (1..=255).contains(&b.len())
            && alnum(b[0])
            && b.iter()
                .all(|&c| alnum(c) || matches!(c, b'.' | b'_' | b'-'))
            && !s.contains("..");
        ok.then(|| Project(s.to_string())).ok_or_else(|| {
            invalid(
                "project",
                s,
                "letters, digits, '.', '_' and '-', starting with a letter or digit",
            )
        })
    }
}

impl ChartName {
    pub fn parse(s: &str) -> Result<Self, OciError> {
        let b = s.as_bytes();
        let ok = (1..=MAX_CHART_PART).contains(&b.len())
            && alnum(b[0])
            && b.iter()
                .all(|&c| alnum(c) || matches!(c, b'.' | b'_' | b'-'))
            && !s.contains("..");
        ok.then(|| ChartName(s.to_string())).ok_or_else(|| {
            invalid(
                "chart name",
                s,
                "letters, digits, '.', '_' and '-', starting with a letter or digit",
            )
        })
    }
}

impl ChartVersion {
    pub fn parse(s: &str) -> Result<Self, OciError> {
        let b = s.as_bytes();
        let digits = b.strip_prefix(b"v").unwrap_or(b);
        let ok = (1..=MAX_CHART_PART).contains(&b.len())
            && digits.first().is_some_and(u8::is_ascii_digit)
            && b.iter()
                .all(|&c| alnum(c) || matches!(c, b'.' | b'+' | b'-'))
            && !s.contains("..");
        ok.then(|| ChartVersion(s.to_string())).ok_or_else(|| {
            invalid(
                "chart version",
                s,
                "a SemVer version such as 1.2.3, 1.2.3-rc.1 or 1.2.3+build.5",
            )
        })
    }
}

impl ChartFile {
    pub fn parse(s: &str) -> Result<Self, OciError> {
        let b = s.as_bytes();
        let stem = s
            .strip_suffix(".tgz.prov")
            .or_else(|| s.strip_suffix(".tgz"))
            .unwrap_or("");
        let ok = (1..=2 * MAX_CHART_PART).contains(&b.len())
            && !stem.is_empty()
            && alnum(b[0])
            && b.iter()
                .all(|&c| alnum(c) || matches!(c, b'.' | b'_' | b'+' | b'-'))
            && !s.contains("..");
        ok.then(|| ChartFile(s.to_string())).ok_or_else(|| {
            invalid(
                "chart file",
                s,
                "<name>-<version>.tgz or <name>-<version>.tgz.prov",
            )
        })
    }

    /// The conventional file name of a chart version.
    pub fn of(name: &ChartName, version: &ChartVersion) -> ChartFile {
        ChartFile(format!("{}-{}.tgz", name.0, version.0))
    }
}

macro_rules! as_str {
    ($($t:ty),*) => {$(
        impl $t {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    )*};
}
as_str!(Project, ChartName, ChartVersion, ChartFile);

/// A 400 naming what was refused, quoting at most the first 64 characters, escaped.
fn invalid(what: &str, value: &str, rule: &str) -> OciError {
    OciError::new(
        ErrorCode::NameInvalid,
        format!("invalid {what} {}: {rule}", excerpt(value)),
    )
    .with_status(StatusCode::BAD_REQUEST)
}

pub use crate::oci::excerpt;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_values_are_refused() {
        let hostile = [
            "",
            ".",
            "..",
            "a/b",
            "a\\b",
            "..\\..\\x",
            "a?b",
            "a#b",
            "a%2Fb",
            "a\nb",
            "a b",
            "ä",
        ];
        for h in hostile {
            assert!(Project::parse(h).is_err(), "{h:?}");
            assert!(ChartName::parse(h).is_err(), "{h:?}");
            assert!(ChartVersion::parse(h).is_err(), "{h:?}");
            assert!(ChartFile::parse(h).is_err(), "{h:?}");
        }
        let long = "a".repeat(10_000);
        let e = ChartName::parse(&long).unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert!(e.message.len() < 300, "{}", e.message.len());
        assert!(ChartVersion::parse("1..2").is_err());
        assert!(ChartFile::parse("web-1.0.0.tgz/../x.tgz").is_err());
        assert!(ChartFile::parse(".tgz").is_err());
    }

    #[test]
    fn ordinary_values_pass() {
        assert!(Project::parse("team-a").is_ok());
        assert!(Project::parse("a").is_ok());
        assert!(Project::parse("My_Project").is_ok());
        assert!(ChartName::parse("nginx-ingress").is_ok());
        assert!(ChartName::parse("My_Chart.x").is_ok());
        for v in ["1.2.3", "v1.0.0", "0.1.0-rc.1", "1.0.0+build.5", "2"] {
            assert!(ChartVersion::parse(v).is_ok(), "{v}");
        }
        assert!(ChartVersion::parse("latest").is_err());
        assert!(ChartFile::parse("web-1.2.3.tgz").is_ok());
        assert!(ChartFile::parse("web-1.2.3+b.tgz.prov").is_ok());
        let f = ChartFile::of(
            &ChartName::parse("web").unwrap(),
            &ChartVersion::parse("1.0.0").unwrap(),
        );
        assert_eq!(f.as_str(), "web-1.0.0.tgz");
    }
}
