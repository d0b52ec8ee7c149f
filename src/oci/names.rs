//! Validated repository names, tags, digests and references.

use std::fmt;
use std::str::FromStr;

/// Why a name, tag or digest was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("invalid repository name {0:?}: components are [a-z0-9] runs joined by '.', '_', '__' or '-', separated by '/', at most 255 characters")]
    Repo(String),
    #[error("invalid tag {0:?}: [a-zA-Z0-9_][a-zA-Z0-9._-]{{0,127}}")]
    Tag(String),
    #[error("invalid digest {0:?}: expected <algorithm>:<hex>, e.g. sha256:<64 lowercase hex>")]
    Digest(String),
}

/// A client value cut to at most 64 characters (`…` marks the cut), for error messages: a
/// 10 kB name is not echoed back whole.
pub fn clip(value: &str) -> String {
    let cut: String = value.chars().take(64).collect();
    if cut.len() < value.len() {
        format!("{cut}…")
    } else {
        cut
    }
}

/// [`clip`], quoted and escaped (control characters as `\n`, `\u{1b}`…).
pub fn excerpt(value: &str) -> String {
    format!("{:?}", clip(value))
}

/// A repository name such as `team-a/app`. The first component is the TCR namespace.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RepoName(String);

fn valid_component(c: &str) -> bool {
    // [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*
    let b = c.as_bytes();
    if b.is_empty() || !is_alnum(b[0]) || !is_alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if is_alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !is_alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

fn is_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

impl RepoName {
    pub fn parse(s: &str) -> Result<Self, NameError> {
        if s.is_empty() || s.len() > 255 || !s.split('/').all(valid_component) {
            return Err(NameError::Repo(clip(s)));
        }
        Ok(RepoName(s.to_string()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// First path component (the TCR namespace / Harbor project).
    pub fn namespace(&self) -> &str {
        self.0.split('/').next().unwrap_or(&self.0)
    }
    /// Everything after the namespace (`""` for a single-component name).
    pub fn repository(&self) -> &str {
        self.0.split_once('/').map(|(_, r)| r).unwrap_or("")
    }
    /// The same repository under another namespace.
    pub fn with_namespace(&self, ns: &str) -> RepoName {
        match self.0.split_once('/') {
            Some((_, rest)) => RepoName(format!("{ns}/{rest}")),
            None => RepoName(ns.to_string()),
        }
    }
}

impl fmt::Display for RepoName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for RepoName {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RepoName::parse(s)
    }
}

/// A tag: `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag(String);

impl Tag {
    pub fn parse(s: &str) -> Result<Self, NameError> {
        let b = s.as_bytes();
        let ok = !b.is_empty()
            && b.len() <= 128
            && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
            && b[1..]
                .iter()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'));
        if ok {
            Ok(Tag(s.to_string()))
        } else {
            Err(NameError::Tag(clip(s)))
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A content digest `algorithm:encoded`. `sha256` and `sha512` are checked strictly.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(String);

impl Digest {
    pub fn parse(s: &str) -> Result<Self, NameError> {
        let err = || NameError::Digest(clip(s));
        let (alg, enc) = s.split_once(':').ok_or_else(err)?;
        let alg_ok = !alg.is_empty()
            && alg
                .split(['+', '.', '_', '-'])
                .all(|p| !p.is_empty() && p.bytes().all(is_alnum));
        let enc_ok = !enc.is_empty()
            && enc
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'=' | b'_' | b'-'));
        if !alg_ok || !enc_ok {
            return Err(err());
        }
        let hex_len = match alg {
            "sha256" => Some(64),
            "sha512" => Some(128),
            _ => None,
        };
        if let Some(n) = hex_len {
            if enc.len() != n
                || !enc
                    .bytes()
                    .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
            {
                return Err(err());
            }
        }
        Ok(Digest(s.to_string()))
    }

    /// The sha256 digest of `data`.
    pub fn sha256_of(data: &[u8]) -> Digest {
        let h = openssl::sha::sha256(data);
        Digest(format!("sha256:{}", hex::encode(h)))
    }

    /// Build from a finished sha256 hash.
    pub fn from_sha256(hash: [u8; 32]) -> Digest {
        Digest(format!("sha256:{}", hex::encode(hash)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
    pub fn algorithm(&self) -> &str {
        self.0.split_once(':').map(|(a, _)| a).unwrap_or("")
    }
    pub fn encoded(&self) -> &str {
        self.0.split_once(':').map(|(_, e)| e).unwrap_or("")
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A manifest reference: a tag or a digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Reference {
    Tag(Tag),
    Digest(Digest),
}

impl Reference {
    pub fn parse(s: &str) -> Result<Self, NameError> {
        if s.contains(':') {
            Digest::parse(s).map(Reference::Digest)
        } else {
            Tag::parse(s).map(Reference::Tag)
        }
    }
    pub fn as_str(&self) -> &str {
        match self {
            Reference::Tag(t) => t.as_str(),
            Reference::Digest(d) => d.as_str(),
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_names() {
        for ok in [
            "a",
            "team-a/app",
            "a/b/c",
            "a__b",
            "a--b/c.d",
            "library/nginx",
        ] {
            assert!(RepoName::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "", "A", "a/", "/a", "a//b", "a..b", "-a", "a-", "a___b", "a:b",
        ] {
            assert!(RepoName::parse(bad).is_err(), "{bad}");
        }
        let r = RepoName::parse("team-a/app/web").unwrap();
        assert_eq!(r.namespace(), "team-a");
        assert_eq!(r.repository(), "app/web");
        assert_eq!(r.with_namespace("x").as_str(), "x/app/web");
    }

    #[test]
    fn digests_and_tags() {
        let hex = "a".repeat(64);
        assert!(Digest::parse(&format!("sha256:{hex}")).is_ok());
        assert!(Digest::parse(&format!("sha256:{}", "A".repeat(64))).is_err());
        assert!(Digest::parse("sha256:totallywrong").is_err());
        assert!(Digest::parse("nocolon").is_err());
        assert_eq!(
            Digest::sha256_of(b"{}").as_str(),
            "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
        assert!(Tag::parse("v1.0_rc-1").is_ok());
        assert!(Tag::parse(".INVALID_MANIFEST_NAME").is_err());
        assert!(matches!(Reference::parse("latest"), Ok(Reference::Tag(_))));
        assert!(matches!(
            Reference::parse(&format!("sha256:{hex}")),
            Ok(Reference::Digest(_))
        ));
    }
}
