//! `DescribeInstances` (the one emulated instance) and `CreateInstanceToken`.

use serde_json::{json, Map, Value};

use super::params::{paginate, Fault, Offset};
use super::{fields, require_instance, Call, EmulatorState};
use crate::emulator::TokenKind;

/// `RegionId` of the common regions (TencentCloud's numbering).
fn region_id(region: &str) -> u64 {
    match region {
        "ap-guangzhou" => 1,
        "ap-shanghai" => 4,
        "ap-hongkong" => 5,
        "ap-beijing" => 8,
        "ap-singapore" => 9,
        "ap-chengdu" => 16,
        _ => 0,
    }
}

fn registry(state: &EmulatorState) -> Value {
    let cfg = &state.cfg;
    json!({
        "RegistryId": cfg.registry_id,
        "RegistryName": cfg.registry_name,
        "RegistryType": "premium",
        "Status": "Running",
        "PublicDomain": state.public_domain(),
        "CreatedAt": "2024-07-19T15:33:22+08:00",
        "RegionName": cfg.region,
        "RegionId": region_id(&cfg.region),
        "EnableAnonymous": false,
        "TokenValidTime": 87600,
        "InternalEndpoint": "127.0.0.1",
        "TagSpecification": {"ResourceType": "instance", "Tags": []},
        "ExpiredAt": "",
        "PayMod": 0,
        "RenewFlag": 0,
        "DeletionProtection": false,
        "EnableCosMAZ": false,
        "EnableCosVersioning": false,
    })
}

/// `DescribeInstances`: `Registryids`, `Filters` (RegistryName, RegistryId), `AllRegion`,
/// `Offset`/`Limit` (item offset, at most 100).
pub fn describe_instances(
    state: &EmulatorState,
    call: &Call<'_>,
) -> Result<Map<String, Value>, Fault> {
    let p = &call.params;
    let page = p.page((20, 100), Offset::Items, state.cfg.quirks.limit_cap)?;
    let cfg = &state.cfg;
    let mut visible = p.opt_bool("AllRegion")?.unwrap_or(false) || call.region == cfg.region;
    if let Some(ids) = p.opt_str_list("Registryids")? {
        visible &= ids.contains(&cfg.registry_id);
    }
    for (name, values) in p.filters()? {
        let value = match name.as_str() {
            "RegistryName" => &cfg.registry_name,
            "RegistryId" => &cfg.registry_id,
            _ => continue,
        };
        visible &= values.iter().any(|v| v == value);
    }
    let all: Vec<Value> = if visible {
        vec![registry(state)]
    } else {
        Vec::new()
    };
    let total = all.len();
    Ok(fields(
        json!({"TotalCount": total, "Registries": paginate(all, page)}),
    ))
}

/// `CreateInstanceToken`: `temp` (default; `Token` expires per the fault knob, 1 h by default) or
/// `longterm` (with a `TokenId`). `ExpTime` in milliseconds, `Username` the caller's UIN.
pub fn create_instance_token(
    state: &EmulatorState,
    call: &Call<'_>,
) -> Result<Map<String, Value>, Fault> {
    require_instance(state, call)?;
    let kind = match call.params.opt_str("TokenType")?.unwrap_or("temp") {
        "temp" => TokenKind::Temp,
        "longterm" => TokenKind::LongTerm,
        other => {
            return Err(Fault::invalid_value(
                "TokenType",
                format_args!("`{other}` is neither `temp` nor `longterm`"),
            ))
        }
    };
    let t = state.tokens.issue(&call.account.uin, kind);
    Ok(fields(json!({
        "Username": t.username,
        "Token": t.token,
        "ExpTime": t.exp_ms,
        "TokenId": t.token_id,
    })))
}
