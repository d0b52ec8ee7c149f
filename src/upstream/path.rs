//! The one builder of upstream paths. Every path the adapter sends to TCR (data plane `/v2/…`,
//! the chart repository `/api/chartrepo/…` and `/chartrepo/…`) is built here segment by segment,
//! each segment percent-encoded, so that no byte of a value — decoded from a client's path, read
//! from a `Chart.yaml`, or anything else — can add a segment, climb out with `..`, start a query
//! or a fragment. A segment that is empty, `.` or `..` is refused outright: typed names never
//! produce one, so meeting one is a bug worth an error rather than a silent encoding.

use std::fmt;

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use crate::oci::RepoName;

/// Bytes left as they are in a segment: RFC 3986 unreserved characters plus `:` `@` `+`
/// (legal in a segment, and carried by digests, `sha256:…`, and SemVer build metadata). Every
/// other byte — `/`, `\`, `%`, `?`, `#`, `;`, spaces, controls, non-ASCII — is encoded.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b':')
    .remove(b'@')
    .remove(b'+');

/// A segment that must not be sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("an empty, '.' or '..' path segment cannot be sent upstream")]
pub struct UnsafeSegment;

/// An absolute upstream path with an optional (already encoded) query.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct UpstreamPath {
    path: String,
    query: String,
    /// A trailing slash (`/v2/`, `…/blobs/uploads/`).
    trailing_slash: bool,
}

impl UpstreamPath {
    /// `/`.
    pub fn root() -> Self {
        UpstreamPath::default()
    }

    /// The path made of `segments`, each encoded.
    pub fn of<S: AsRef<str>>(segments: impl IntoIterator<Item = S>) -> Result<Self, UnsafeSegment> {
        segments
            .into_iter()
            .try_fold(UpstreamPath::root(), |p, s| p.push(s.as_ref()))
    }

    /// Append one segment, encoded.
    pub fn push(mut self, segment: &str) -> Result<Self, UnsafeSegment> {
        if segment.is_empty() || segment == "." || segment == ".." {
            return Err(UnsafeSegment);
        }
        self.path.push('/');
        self.path
            .extend(utf8_percent_encode(segment, SEGMENT).map(|s| s.to_string()));
        self.trailing_slash = false;
        Ok(self)
    }

    /// Append a segment that is a compile-time constant of the protocol (`v2`, `manifests`).
    pub fn lit(self, segment: &'static str) -> Self {
        self.push(segment)
            .expect("protocol literals are non-empty names")
    }

    /// Append a repository name, one segment per component (components are validated names).
    pub fn repo(self, repo: &RepoName) -> Self {
        repo.as_str().split('/').fold(self, |p, c| {
            p.push(c)
                .expect("repository components are non-empty names")
        })
    }

    /// End the path with `/`.
    pub fn slash(mut self) -> Self {
        self.trailing_slash = true;
        self
    }

    /// Set the query (already `application/x-www-form-urlencoded`; empty: none).
    pub fn with_query(mut self, encoded_query: &str) -> Self {
        self.query = encoded_query.to_string();
        self
    }

    /// Set the query from pairs, encoding them.
    pub fn with_pairs<'a>(self, pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let q = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish();
        self.with_query(&q)
    }

    /// The path without the query.
    pub fn path(&self) -> String {
        let mut p = if self.path.is_empty() {
            String::from("/")
        } else {
            self.path.clone()
        };
        if self.trailing_slash && !p.ends_with('/') {
            p.push('/');
        }
        p
    }

    /// Path and query, as sent.
    pub fn to_path_and_query(&self) -> String {
        match self.query.is_empty() {
            true => self.path(),
            false => format!("{}?{}", self.path(), self.query),
        }
    }
}

impl fmt::Display for UpstreamPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_path_and_query())
    }
}

impl fmt::Debug for UpstreamPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UpstreamPath({:?})", self.to_path_and_query())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_encoded_and_dot_segments_refused() {
        let p = UpstreamPath::root()
            .lit("api")
            .lit("chartrepo")
            .push("a/b\\c?d#e%2F")
            .unwrap();
        assert_eq!(p.path(), "/api/chartrepo/a%2Fb%5Cc%3Fd%23e%252F");
        assert_eq!(UpstreamPath::root().push(".."), Err(UnsafeSegment));
        assert_eq!(UpstreamPath::root().push("."), Err(UnsafeSegment));
        assert_eq!(UpstreamPath::root().push(""), Err(UnsafeSegment));
        // Dots inside a segment are harmless and kept.
        assert_eq!(UpstreamPath::of(["a..b"]).unwrap().path(), "/a..b");
    }

    #[test]
    fn registry_paths() {
        let r = RepoName::parse("team/app").unwrap();
        let p = UpstreamPath::root()
            .lit("v2")
            .repo(&r)
            .lit("blobs")
            .push("sha256:ab")
            .unwrap();
        assert_eq!(p.to_path_and_query(), "/v2/team/app/blobs/sha256:ab");
        let u = UpstreamPath::root()
            .lit("v2")
            .repo(&r)
            .lit("blobs")
            .lit("uploads")
            .slash()
            .with_pairs([("mount", "sha256:ab"), ("from", "x/y")]);
        assert_eq!(
            u.to_string(),
            "/v2/team/app/blobs/uploads/?mount=sha256%3Aab&from=x%2Fy"
        );
        assert_eq!(UpstreamPath::root().lit("v2").slash().path(), "/v2/");
        assert_eq!(UpstreamPath::root().path(), "/");
    }
}
