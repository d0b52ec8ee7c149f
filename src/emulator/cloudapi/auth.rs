//! TC3-HMAC-SHA256 verification of a received cloud API request, in TencentCloud's order:
//! malformed header, unknown SecretId, clock skew (> 5 minutes), signature, CAM permission (per
//! action here; per namespace in [`check_namespace`], called by the actions that write).
//! The canonical request is rebuilt from the received headers named in `SignedHeaders`.

use actix_web::http::Method;
use actix_web::HttpRequest;

use super::params::Fault;
use super::EmulatorState;
use crate::config::EmulatorAccount;
use crate::tencentcloud::signer::{self, SigningInput, UNSIGNED_PAYLOAD};

/// Largest accepted distance between `X-TC-Timestamp` and the emulator's clock.
pub const MAX_SKEW_SECS: i64 = 300;

fn invalid_authorization(why: impl std::fmt::Display) -> Fault {
    Fault::new(
        "AuthFailure.InvalidAuthorization",
        format!("The Authorization header is invalid: {why}."),
    )
}

fn signature_failure() -> Fault {
    Fault::new(
        "AuthFailure.SignatureFailure",
        "The provided credentials could not be validated. Please check your signature is correct.",
    )
}

/// Verify the request's signature; the account that signed it, allowed to call `action`.
pub fn verify<'s>(
    state: &'s EmulatorState,
    req: &HttpRequest,
    body: &[u8],
    action: &str,
) -> Result<&'s EmulatorAccount, Fault> {
    let parsed = parse_authorization_header(req)?;
    let account = find_account(state, &parsed)?;
    reject_session_token(req)?;
    let timestamp = check_timestamp(state, req)?;
    check_signature(req, body, account, &parsed, timestamp)?;
    check_permission(account, action)?;
    Ok(account)
}

fn header<'r>(req: &'r HttpRequest, name: &str) -> Option<&'r str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

/// The `Authorization` header, parsed: scope service `tcr`, `content-type` and `host` signed.
fn parse_authorization_header(req: &HttpRequest) -> Result<signer::ParsedAuthorization, Fault> {
    let authorization =
        header(req, "authorization").ok_or_else(|| invalid_authorization("it is missing"))?;
    let parsed =
        signer::parse_authorization(authorization).map_err(|e| invalid_authorization(e.0))?;
    if parsed.service != "tcr" {
        return Err(invalid_authorization(format_args!(
            "the credential scope names service `{}`, expected `tcr`",
            parsed.service
        )));
    }
    for required in ["content-type", "host"] {
        if !parsed.signed_headers.iter().any(|h| h == required) {
            return Err(invalid_authorization(format_args!(
                "SignedHeaders must include {required}"
            )));
        }
    }
    Ok(parsed)
}

fn find_account<'s>(
    state: &'s EmulatorState,
    parsed: &signer::ParsedAuthorization,
) -> Result<&'s EmulatorAccount, Fault> {
    state
        .cfg
        .accounts
        .iter()
        .find(|a| a.secret_id == parsed.secret_id)
        .ok_or_else(|| {
            Fault::new(
                "AuthFailure.SecretIdNotFound",
                "The SecretId is not found, please ensure that your SecretId is correct.",
            )
        })
}

/// Temporary credentials (`X-TC-Token`) are refused: long-term API keys only.
fn reject_session_token(req: &HttpRequest) -> Result<(), Fault> {
    if header(req, "x-tc-token").is_some_and(|t| !t.is_empty()) {
        return Err(Fault::new(
            "AuthFailure.TokenFailure",
            "The X-TC-Token is invalid: the emulator accepts long-term API keys only.",
        ));
    }
    Ok(())
}

/// `X-TC-Timestamp`, at most [`MAX_SKEW_SECS`] from the emulator's clock.
fn check_timestamp(state: &EmulatorState, req: &HttpRequest) -> Result<i64, Fault> {
    let timestamp = match header(req, "x-tc-timestamp") {
        Some(t) => t
            .trim()
            .parse::<i64>()
            .map_err(|_| Fault::invalid_type("X-TC-Timestamp", "Integer"))?,
        None => return Err(Fault::missing("X-TC-Timestamp")),
    };
    let now = state.clock.now_secs();
    if (now - timestamp).abs() > MAX_SKEW_SECS {
        return Err(Fault::new(
            "AuthFailure.SignatureExpire",
            format!(
                "The signature is expired, please request again. (request timestamp {timestamp}, server time {now}, more than {MAX_SKEW_SECS} s apart)"
            ),
        ));
    }
    Ok(timestamp)
}

/// Rebuild the canonical request from the received signed headers and compare signatures.
fn check_signature(
    req: &HttpRequest,
    body: &[u8],
    account: &EmulatorAccount,
    parsed: &signer::ParsedAuthorization,
    timestamp: i64,
) -> Result<(), Fault> {
    if parsed.date != signer::utc_date(timestamp) {
        return Err(signature_failure());
    }
    let mut values = Vec::with_capacity(parsed.signed_headers.len());
    for name in &parsed.signed_headers {
        values.push((
            name.as_str(),
            header(req, name).ok_or_else(signature_failure)?,
        ));
    }
    let is_get = req.method() == Method::GET;
    let payload: &[u8] = if header(req, "x-tc-content-sha256") == Some(UNSIGNED_PAYLOAD) {
        UNSIGNED_PAYLOAD.as_bytes()
    } else if is_get {
        b""
    } else {
        body
    };
    let method = req.method().as_str().to_string();
    let computed = signer::sign(
        account.secret_key.expose(),
        &SigningInput {
            method: &method,
            canonical_uri: "/",
            canonical_query: if is_get { req.query_string() } else { "" },
            headers: &values,
            payload,
            service: "tcr",
            timestamp,
        },
    );
    if !signer::signatures_equal(&computed.signature, &parsed.signature) {
        return Err(signature_failure());
    }
    Ok(())
}

/// CAM: may `account` call `action`?
fn check_permission(account: &EmulatorAccount, action: &str) -> Result<(), Fault> {
    match account.may(action) {
        true => Ok(()),
        false => Err(cam_refusal(action, "*")),
    }
}

/// CAM, resource level: may the signing account do `action` on namespace `ns`? The resource is
/// the namespace's repositories, `qcs::tcr:<region>:uin/<uin>:repository/<instance>/<ns>/*`, as
/// in TCR's CAM guide (enterprise resource type `repository`). Checked before the parameters'
/// values, as CAM runs before the action.
pub fn check_namespace(
    state: &EmulatorState,
    account: &EmulatorAccount,
    action: &str,
    ns: &str,
) -> Result<(), Fault> {
    if account.may_namespace(ns) {
        return Ok(());
    }
    let cfg = &state.cfg;
    let resource = format!(
        "qcs::tcr:{}:uin/{}:repository/{}/{ns}/*",
        cfg.region, account.uin, cfg.registry_id
    );
    Err(cam_refusal(action, &resource))
}

/// TencentCloud's CAM refusal: `AuthFailure.UnauthorizedOperation`, its fixed sentence, then the
/// operation and the resource (the shape of a real answer quoted in
/// TencentCloud/tencentcloud-sdk-java#78: `you are not authorized to perform operation
/// (sms:SendSms)\nresource (*) has no permission`).
fn cam_refusal(action: &str, resource: &str) -> Fault {
    Fault::new(
        "AuthFailure.UnauthorizedOperation",
        format!(
            "You are not authorized to perform this operation. Check your CAM policies, and ensure that you are using the correct access keys. [you are not authorized to perform operation (tcr:{action})\nresource ({resource}) has no permission]"
        ),
    )
}
