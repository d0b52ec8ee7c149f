//! One tail pattern (`/v2/{tail:.*}`) parsed into a typed [`Endpoint`], and the access each
//! request needs (distribution's rules: GET/HEAD → pull; POST/PUT/PATCH → pull+push;
//! DELETE → delete; a mount also needs pull on its source; `_catalog` → `registry:catalog:*`).

use crate::auth::Access;
use crate::oci::{Digest, ErrorCode, OciError, Reference, RepoName};
use crate::upstream::UpstreamPath;

/// What a `/v2/...` path addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `/v2/`
    Base,
    /// `/v2/_catalog`
    Catalog,
    /// `/v2/<name>/manifests/<reference>`
    Manifest {
        name: RepoName,
        reference: Reference,
    },
    /// `/v2/<name>/blobs/<digest>`
    Blob { name: RepoName, digest: Digest },
    /// `/v2/<name>/blobs/uploads/`
    UploadStart { name: RepoName },
    /// `/v2/<name>/blobs/uploads/<id>` (the id is opaque upstream state)
    Upload { name: RepoName, id: String },
    /// `/v2/<name>/tags/list`
    Tags { name: RepoName },
    /// `/v2/<name>/referrers/<digest>`
    Referrers { name: RepoName, digest: Digest },
}

impl Endpoint {
    /// Parse the part of the path after `/v2/` (already percent-decoded).
    pub fn parse(tail: &str) -> Result<Endpoint, OciError> {
        if tail.is_empty() {
            return Ok(Endpoint::Base);
        }
        if tail == "_catalog" {
            return Ok(Endpoint::Catalog);
        }
        let markers = ["/manifests/", "/blobs/", "/tags/list", "/referrers/"];
        let (pos, marker) = markers
            .iter()
            .filter_map(|m| tail.rfind(m).map(|p| (p, *m)))
            .max_by_key(|(p, _)| *p)
            .ok_or_else(|| not_found(tail))?;
        let name = RepoName::parse(&tail[..pos])
            .map_err(|e| OciError::new(ErrorCode::NameInvalid, e.to_string()))?;
        let rest = &tail[pos + marker.len()..];
        let bad_digest =
            |e: crate::oci::NameError| OciError::new(ErrorCode::DigestInvalid, e.to_string());
        match marker {
            "/manifests/" => {
                let reference = Reference::parse(rest).map_err(|e| match e {
                    crate::oci::NameError::Digest(_) => bad_digest(e),
                    e => OciError::new(ErrorCode::TagInvalid, e.to_string()),
                })?;
                Ok(Endpoint::Manifest { name, reference })
            }
            "/blobs/" => {
                if rest == "uploads" || rest == "uploads/" {
                    Ok(Endpoint::UploadStart { name })
                } else if let Some(id) = rest.strip_prefix("uploads/") {
                    if !is_upload_id(id) {
                        return Err(OciError::new(
                            ErrorCode::BlobUploadUnknown,
                            "invalid upload id: [a-zA-Z0-9-_.=]+, at most 512 characters",
                        )
                        .with_status(actix_web::http::StatusCode::NOT_FOUND));
                    }
                    Ok(Endpoint::Upload {
                        name,
                        id: id.to_string(),
                    })
                } else {
                    let digest = Digest::parse(rest).map_err(bad_digest)?;
                    Ok(Endpoint::Blob { name, digest })
                }
            }
            "/tags/list" if rest.is_empty() => Ok(Endpoint::Tags { name }),
            "/referrers/" => {
                let digest = Digest::parse(rest).map_err(bad_digest)?;
                Ok(Endpoint::Referrers { name, digest })
            }
            _ => Err(not_found(tail)),
        }
    }

    /// The repository, if any.
    pub fn name(&self) -> Option<&RepoName> {
        match self {
            Endpoint::Base | Endpoint::Catalog => None,
            Endpoint::Manifest { name, .. }
            | Endpoint::Blob { name, .. }
            | Endpoint::UploadStart { name }
            | Endpoint::Upload { name, .. }
            | Endpoint::Tags { name }
            | Endpoint::Referrers { name, .. } => Some(name),
        }
    }

    /// The upstream path for this endpoint with the repository renamed to `upstream`, built
    /// segment by segment (every part is a validated value).
    pub fn upstream_path(&self, upstream: Option<&RepoName>) -> UpstreamPath {
        let v2 = UpstreamPath::root().lit("v2");
        let repo = |n: &RepoName| v2.clone().repo(upstream.unwrap_or(n));
        let seg = |p: UpstreamPath, s: &str| p.push(s).expect("validated values are segments");
        match self {
            Endpoint::Base => v2.slash(),
            Endpoint::Catalog => v2.lit("_catalog"),
            Endpoint::Manifest { name, reference } => {
                seg(repo(name).lit("manifests"), &reference.to_string())
            }
            Endpoint::Blob { name, digest } => seg(repo(name).lit("blobs"), digest.as_str()),
            Endpoint::UploadStart { name } => repo(name).lit("blobs").lit("uploads").slash(),
            Endpoint::Upload { name, id } => seg(repo(name).lit("blobs").lit("uploads"), id),
            Endpoint::Tags { name } => repo(name).lit("tags").lit("list"),
            Endpoint::Referrers { name, digest } => {
                seg(repo(name).lit("referrers"), digest.as_str())
            }
        }
    }

    /// Metrics / log label.
    pub fn label(&self) -> &'static str {
        match self {
            Endpoint::Base => "base",
            Endpoint::Catalog => "catalog",
            Endpoint::Manifest { .. } => "manifest",
            Endpoint::Blob { .. } => "blob",
            Endpoint::UploadStart { .. } => "upload_start",
            Endpoint::Upload { .. } => "upload",
            Endpoint::Tags { .. } => "tags",
            Endpoint::Referrers { .. } => "referrers",
        }
    }

    /// Whether a request with this method only reads.
    pub fn is_read(method: &actix_web::http::Method) -> bool {
        method == actix_web::http::Method::GET || method == actix_web::http::Method::HEAD
    }

    /// The access the client's token must grant (`mount_from` = the `from=` of a mount).
    pub fn needed(
        &self,
        method: &actix_web::http::Method,
        mount_from: Option<&RepoName>,
    ) -> Vec<Access> {
        use actix_web::http::Method;
        let Some(name) = self.name() else {
            return match self {
                Endpoint::Catalog => vec![Access::catalog()],
                _ => Vec::new(),
            };
        };
        let actions: &[&str] = match *method {
            Method::GET | Method::HEAD => &["pull"],
            Method::DELETE => &["delete"],
            _ => &["pull", "push"],
        };
        let mut needed = vec![Access::repository(name.as_str(), actions)];
        if let Some(from) = mount_from {
            if from != name {
                needed.push(Access::repository(from.as_str(), &["pull"]));
            }
        }
        needed
    }
}

/// distribution's upload id rule (`[a-zA-Z0-9-_.=]+`), bounded, and never a dot-segment.
fn is_upload_id(id: &str) -> bool {
    (1..=512).contains(&id.len())
        && id != "."
        && id != ".."
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'='))
}

fn not_found(tail: &str) -> OciError {
    OciError::new(
        ErrorCode::NameUnknown,
        format!("no such endpoint: /v2/{}", crate::oci::excerpt(tail)),
    )
    .with_status(actix_web::http::StatusCode::NOT_FOUND)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_endpoint() {
        let d = format!("sha256:{}", "a".repeat(64));
        assert_eq!(Endpoint::parse("").unwrap(), Endpoint::Base);
        assert_eq!(Endpoint::parse("_catalog").unwrap(), Endpoint::Catalog);
        assert!(matches!(
            Endpoint::parse("a/manifests/b/manifests/latest").unwrap(),
            Endpoint::Manifest { name, .. } if name.as_str() == "a/manifests/b"
        ));
        assert!(matches!(
            Endpoint::parse(&format!("ns/r/blobs/{d}")).unwrap(),
            Endpoint::Blob { .. }
        ));
        assert!(matches!(
            Endpoint::parse("ns/r/blobs/uploads/").unwrap(),
            Endpoint::UploadStart { .. }
        ));
        assert!(matches!(
            Endpoint::parse("ns/r/blobs/uploads").unwrap(),
            Endpoint::UploadStart { .. }
        ));
        assert!(matches!(
            Endpoint::parse("ns/r/blobs/uploads/abc-1=").unwrap(),
            Endpoint::Upload { id, .. } if id == "abc-1="
        ));
        assert!(matches!(
            Endpoint::parse("ns/r/tags/list").unwrap(),
            Endpoint::Tags { .. }
        ));
        assert!(matches!(
            Endpoint::parse(&format!("ns/r/referrers/{d}")).unwrap(),
            Endpoint::Referrers { .. }
        ));
        assert_eq!(
            Endpoint::parse("ns/r/blobs/nope").unwrap_err().code,
            ErrorCode::DigestInvalid
        );
        assert_eq!(
            Endpoint::parse("NS/manifests/x").unwrap_err().code,
            ErrorCode::NameInvalid
        );
        assert_eq!(
            Endpoint::parse("ns/r/other").unwrap_err().status.as_u16(),
            404
        );
        for bad in ["..", ".", "a/b", "a\\b", "a?b", "a%2Fb", "a b", "a\nb"] {
            let e = Endpoint::parse(&format!("ns/r/blobs/uploads/{bad}")).unwrap_err();
            assert_eq!(e.status.as_u16(), 404, "{bad}");
        }
        assert_eq!(
            Endpoint::parse("ns/r/blobs/uploads/x")
                .unwrap()
                .upstream_path(Some(&RepoName::parse("up/r").unwrap()))
                .to_string(),
            "/v2/up/r/blobs/uploads/x"
        );
    }

    #[test]
    fn access_rules() {
        use actix_web::http::Method;
        let e = Endpoint::parse("ns/r/blobs/uploads/").unwrap();
        let from = RepoName::parse("other/src").unwrap();
        let needed = e.needed(&Method::POST, Some(&from));
        assert_eq!(needed.len(), 2);
        assert_eq!(needed[0].actions, vec!["pull", "push"]);
        assert_eq!(needed[1].name, "other/src");
        assert_eq!(
            Endpoint::Catalog.needed(&Method::GET, None)[0].kind,
            "registry"
        );
        assert!(Endpoint::Base.needed(&Method::GET, None).is_empty());
    }
}
