//! The adapter in front of the real emulator, driven with what Harbor 1.8, 1.10 and 2.0 send on
//! the wire (harbor-adapters.md §1.2–1.6), plus the rest of the OCI surface: chunked uploads,
//! upload status, mounts, ranges, referrers, tags and catalog pagination, errors. The Harbor
//! steps and the adapter/emulator fixture are shared with the other suites (`tests/harbor/`).

#[path = "../common/mod.rs"]
mod common;
#[path = "../harbor/mod.rs"]
mod harbor;

mod big_blob;
mod failures;
mod harbor_flows;
mod oci_surface;

pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
