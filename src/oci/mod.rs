//! Domain values of the OCI distribution protocol shared by the adapter's front and the emulator:
//! repository names, references, digests, media types and the OCI error envelope. Parsing happens
//! here, once, at the edge; everything inside trusts these types. No I/O here.

mod error;
mod names;
mod range;

pub use error::{ErrorCode, OciError};
pub use names::{clip, excerpt, Digest, NameError, Reference, RepoName, Tag};
pub use range::{content_range, parse_content_range};

/// `Docker-Distribution-API-Version` value sent on every registry response.
pub const API_VERSION_HEADER: (&str, &str) = ("Docker-Distribution-API-Version", "registry/2.0");

/// Largest manifest accepted (distribution uses the same).
pub const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;

pub mod media {
    pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
    pub const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
    pub const DOCKER_SCHEMA1_SIGNED: &str =
        "application/vnd.docker.distribution.manifest.v1+prettyjws";
    pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    pub const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";
}
