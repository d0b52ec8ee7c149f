//! The parts of Harbor's API that describe the "Harbor" itself: `/api/version` (a 404: the v1
//! persona, so Harbor 2.x picks its v1 adapter and the `/api/...` paths of 1.x), `/api/systeminfo`
//! (`with_chartmuseum: true`: charts are a supported resource) and `/api/labels` (none).

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use super::HarborFront;
use crate::auth::request_base;
use crate::oci::{ErrorCode, OciError};

/// `GET /api/version`: 404, whoever asks (Harbor 2.x then uses `/api` without a version).
pub async fn version() -> Result<HttpResponse, OciError> {
    Err(OciError::new(
        ErrorCode::NameUnknown,
        "this is the Harbor v1 API persona of tcr-adapter: /api/version is not served",
    )
    .with_status(StatusCode::NOT_FOUND))
}

/// `GET /api/systeminfo`: only `with_chartmuseum` is read by Harbor's adapters. The adapter's
/// own URL comes from `server.public_url`; forwarded headers only when they are trusted.
pub async fn systeminfo(req: HttpRequest, front: web::Data<HarborFront>) -> HttpResponse {
    let base = request_base(req.headers(), &front.public_base, front.trust_forwarded);
    let host = base.split_once("://").map_or(base.as_str(), |(_, h)| h);
    HttpResponse::Ok().json(json!({
        "with_chartmuseum": true,
        "with_notary": false,
        "with_clair": false,
        "auth_mode": "db_auth",
        "registry_url": host,
        "external_url": base,
        "project_creation_restriction": "everyone",
        "self_registration": false,
        "has_ca_root": false,
        "read_only": false,
        "harbor_version": concat!("tcr-adapter-", env!("CARGO_PKG_VERSION")),
        "registry_storage_provider_name": "tcr",
    }))
}

/// `GET /api/labels?scope=g`: no labels.
pub async fn labels() -> HttpResponse {
    HttpResponse::Ok().json(json!([]))
}
