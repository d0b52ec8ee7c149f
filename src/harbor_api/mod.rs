//! Harbor's API persona: the adapter as a destination (and source) for Harbor's **"Harbor"**
//! replication provider, 1.8 to 2.7 (`../shared/reference/harbor-api-shim.md`). It answers the
//! v1 API at the host root — `/api/version` is a 404, so Harbor 2.x also picks its v1 adapter and
//! every generation sends the same paths — with projects backed by TCR namespaces, repositories
//! and tags by the cloud API, and ChartMuseum charts forwarded to TCR's chart repository with the
//! credential swapped. A second front beside `registry/`: it borrows authentication from
//! `credentials`, namespaces from `namespaces`, the data plane from `upstream`, and holds no state.
//! Errors use the `{"errors":[{code,message}]}` envelope (Harbor 2.x's, and OCI's).

mod caller;
mod chart_spool;
mod chart_upload;
mod charts;
mod names;
mod projects;
mod repositories;
mod system;

use std::sync::Arc;

use actix_web::web;

use crate::credentials::CredentialResolver;
use crate::namespaces::NamespaceProvisioner;
use crate::registry::FrontMetrics;
use crate::upstream::UpstreamClient;

pub use chart_spool::{inspect_archive, ChartRef, SpoolLimits};
pub use names::{ChartFile, ChartName, ChartVersion, Project};

/// What the Harbor API handlers share.
pub struct HarborFront {
    pub upstream: Arc<UpstreamClient>,
    pub namespaces: Arc<NamespaceProvisioner>,
    pub resolver: Arc<CredentialResolver>,
    pub metrics: FrontMetrics,
    /// `server.public_base()`: the adapter's own URL in `systeminfo`.
    pub public_base: String,
    /// `server.trust_forwarded_headers`.
    pub trust_forwarded: bool,
    /// Where chart uploads are spooled, and their size cap.
    pub chart_limits: SpoolLimits,
}

/// Mount the `/api/...` and `/chartrepo/...` routes (needs `web::Data<HarborFront>`).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/version", web::get().to(system::version))
        .route("/api/systeminfo", web::get().to(system::systeminfo))
        .route("/api/labels", web::get().to(system::labels))
        .route("/api/projects", web::get().to(projects::list))
        .route("/api/projects", web::post().to(projects::create))
        .route("/api/repositories", web::get().to(repositories::list))
        .route(
            "/api/repositories/{tail:.+}",
            web::get().to(repositories::tags),
        )
        .route(
            "/api/repositories/{tail:.+}",
            web::delete().to(repositories::delete_tag),
        )
        .route("/api/chartrepo/{ns}/charts", web::get().to(charts::list))
        .route(
            "/api/chartrepo/{ns}/charts",
            web::post().to(chart_upload::upload),
        )
        .route(
            "/api/chartrepo/{ns}/charts/{name}",
            web::get().to(charts::versions),
        )
        .route(
            "/api/chartrepo/{ns}/charts/{name}/{version}",
            web::get().to(charts::detail),
        )
        .route(
            "/api/chartrepo/{ns}/charts/{name}/{version}",
            web::delete().to(charts::delete),
        )
        .route("/chartrepo/{ns}/index.yaml", web::get().to(charts::index))
        .route(
            "/chartrepo/{ns}/charts/{file}",
            web::get().to(charts::download),
        )
        .route(
            "/chartrepo/{ns}/charts/{file}",
            web::head().to(charts::download),
        );
}
