//! The adapter's OCI front: the whole distribution v1.1 API under `/v2/`, routed with one tail
//! pattern, authorized by `crate::auth`, forwarded to TCR through `crate::upstream` with
//! streamed bodies and rewritten headers. It holds no per-upload state: the upstream's upload
//! state travels in the rewritten `Location`.

pub mod body;
pub mod cloud;
mod failure;
mod handlers;
pub mod metrics;
mod plan;
mod redirect;
mod request;
mod respond;
pub mod rewrite;
pub mod route;
pub mod wan;

use std::sync::Arc;

use actix_web::web;

use crate::namespaces::NamespaceProvisioner;
use crate::tencentcloud::ApiCredential;
use crate::upstream::UpstreamClient;

pub use metrics::FrontMetrics;
pub use route::Endpoint;

/// What the `/v2/` handlers share.
pub struct RegistryFront {
    pub upstream: Arc<UpstreamClient>,
    pub namespaces: Arc<NamespaceProvisioner>,
    /// `cfg.server.public_base()`: where rewritten `Location`s point.
    pub public_base: String,
    /// `server.trust_forwarded_headers`: build public URLs from `X-Forwarded-Proto`/`-Host`.
    pub trust_forwarded: bool,
    /// The provisioner keys (`tcr.secret_id`/`secret_key`) when the cloud API is configured:
    /// tag deletes for callers without API keys go through them.
    pub provisioner_keys: Option<ApiCredential>,
    pub metrics: FrontMetrics,
    /// `tcr.replay_buffer_bytes`: how much of a streamed body is kept to send it again.
    pub replay_cap: usize,
    /// `tcr.redirects`: relay TCR's redirects to object storage, or follow them.
    pub redirects: crate::config::RedirectMode,
    /// The WAN machinery (`wan.*`): layer dedup, work done ahead, pipelined uploads.
    pub wan: wan::Wan,
}

/// Route and repository of a request, left in its extensions for the access log.
#[derive(Clone, Debug)]
pub struct RouteInfo {
    pub route: &'static str,
    pub repository: String,
}

/// Mount the `/v2/` routes (needs `web::Data<RegistryFront>` and `web::Data<AuthService>`).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/v2").to(handlers::dispatch_base))
        .service(web::resource("/v2/{tail:.*}").to(handlers::dispatch));
}
