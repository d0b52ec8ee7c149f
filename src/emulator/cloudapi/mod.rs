//! The emulator's control plane: TencentCloud API 3.0, version 2019-09-24, on `POST /` (and
//! `GET /` with form parameters). Owns the envelope (always HTTP 200 + `application/json` + a
//! fresh `RequestId`), TC3 verification, the fault knobs and per-action metrics; the actions
//! themselves live in [`instances`], [`namespaces`] and [`repositories`]. It reads and writes the
//! emulator's state only; it never calls the adapter.

mod auth;
mod instances;
mod namespaces;
mod params;
mod repositories;

use actix_web::http::Method;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Map, Value};

use super::EmulatorState;
use crate::config::EmulatorAccount;
use params::{Fault, Params};

/// The only API version served.
pub const VERSION: &str = "2019-09-24";

/// Every action served, for dispatch and metric labels.
pub const ACTIONS: [&str; 9] = [
    "DescribeInstances",
    "CreateInstanceToken",
    "CreateNamespace",
    "DescribeNamespaces",
    "DeleteNamespace",
    "CreateRepository",
    "DescribeRepositories",
    "DescribeImages",
    "DeleteImage",
];

/// Mount the control plane (the app carries `web::Data<EmulatorState>`).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.app_data(web::PayloadConfig::new(1 << 20))
        .route("/", web::post().to(api))
        .route("/", web::get().to(api))
        .route("/metrics", web::get().to(metrics));
}

async fn metrics(state: web::Data<EmulatorState>) -> HttpResponse {
    crate::telemetry::metrics_response(&state.metrics.registry)
}

/// What one call may use: its parameters, the signing account and the region it was sent to.
pub struct Call<'a> {
    pub params: Params,
    pub account: &'a EmulatorAccount,
    pub region: String,
}

async fn api(req: HttpRequest, body: web::Bytes, state: web::Data<EmulatorState>) -> HttpResponse {
    state.faults.delay().await;
    let request_id = uuid::Uuid::new_v4().to_string();
    let (label, result) = handle(&req, &body, &state).await;
    let response = match result {
        Ok(mut fields) => {
            state.metrics.api_call(label, "ok");
            fields.insert("RequestId".into(), Value::String(request_id));
            Value::Object(fields)
        }
        Err(fault) => {
            state.metrics.api_call(label, &fault.code);
            tracing::debug!(action = label, code = %fault.code, "cloud API error");
            json!({"Error": {"Code": fault.code, "Message": fault.message}, "RequestId": request_id})
        }
    };
    HttpResponse::Ok()
        .content_type("application/json")
        .body(json!({ "Response": response }).to_string())
}

async fn handle(
    req: &HttpRequest,
    body: &[u8],
    state: &EmulatorState,
) -> (&'static str, Result<Map<String, Value>, Fault>) {
    let is_get = req.method() == Method::GET;
    let query = if is_get {
        Params::from_form(req.query_string())
    } else {
        Params(Map::new())
    };
    // A common parameter travels in its X-TC-* header (or, for GET, in the query).
    let common = |header: &str, name: &str| -> Option<String> {
        req.headers()
            .get(header)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .or_else(|| query.opt_str(name).ok().flatten().map(str::to_string))
    };
    let version = common("x-tc-version", "Version");
    let region = common("x-tc-region", "Region");
    let Some(action) = common("x-tc-action", "Action") else {
        return ("unknown", Err(Fault::missing("Action")));
    };
    let label = ACTIONS
        .iter()
        .copied()
        .find(|a| *a == action)
        .unwrap_or("unknown");
    let result = async {
        match version {
            None => return Err(Fault::missing("Version")),
            Some(v) if v != VERSION => {
                return Err(Fault::new(
                    "NoSuchVersion",
                    format!("The requested version `{v}` of service `tcr` does not exist."),
                ))
            }
            Some(_) => {}
        }
        if label == "unknown" {
            return Err(Fault::new("InvalidAction", "The request `Action` is invalid or not found."));
        }
        let account = auth::verify(state, req, body, label)?;
        if state.faults.api_throttled() {
            return Err(Fault::new(
                "RequestLimitExceeded",
                format!(
                    "Your request rate is too high: more than {} calls per second. Please reduce the frequency of calls.",
                    state.faults.cfg.api_qps_limit
                ),
            ));
        }
        let region = region.ok_or_else(|| Fault::missing("Region"))?;
        let params = if is_get { query } else { Params::from_json(body)? };
        let call = Call { params, account, region };
        dispatch(state, label, &call).await
    }
    .await;
    (label, result)
}

async fn dispatch(
    state: &EmulatorState,
    action: &str,
    call: &Call<'_>,
) -> Result<Map<String, Value>, Fault> {
    match action {
        "DescribeInstances" => instances::describe_instances(state, call),
        "CreateInstanceToken" => instances::create_instance_token(state, call),
        "CreateNamespace" => namespaces::create(state, call),
        "DescribeNamespaces" => namespaces::describe(state, call),
        "DeleteNamespace" => namespaces::delete(state, call).await,
        "CreateRepository" => repositories::create(state, call).await,
        "DescribeRepositories" => repositories::describe(state, call).await,
        "DescribeImages" => repositories::describe_images(state, call).await,
        "DeleteImage" => repositories::delete_image(state, call).await,
        _ => Err(Fault::new(
            "InvalidAction",
            "The request `Action` is invalid or not found.",
        )),
    }
}

/// Check `RegistryId` names the emulated instance, in the region the call was sent to.
pub fn require_instance(state: &EmulatorState, call: &Call<'_>) -> Result<(), Fault> {
    let id = call.params.str("RegistryId")?;
    if id != state.cfg.registry_id || call.region != state.cfg.region {
        return Err(Fault::not_found(format_args!(
            "The TCR instance `{id}` in region `{}`",
            call.region
        )));
    }
    Ok(())
}

/// Turn a `json!` object into the response fields.
pub fn fields(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}
