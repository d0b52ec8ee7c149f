//! Typed requests and responses of the TCR API 2019-09-24, with TencentCloud's exact field names.
//! Responses are tolerant: unknown fields are ignored, absent ones default.

use serde::{Deserialize, Deserializer, Serialize};

/// `{Name, Values}` filter of the Describe* actions.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct Filter {
    pub name: String,
    pub values: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeInstancesRequest {
    /// Note the lower-case `ids` of the real API.
    #[serde(rename = "Registryids", skip_serializing_if = "Option::is_none")]
    pub registry_ids: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filters: Option<Vec<Filter>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub all_region: Option<bool>,
}

/// One TCR instance (`Registry`).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct Registry {
    pub registry_id: String,
    pub registry_name: String,
    pub registry_type: String,
    pub status: String,
    pub public_domain: String,
    pub created_at: String,
    pub region_name: String,
    pub region_id: u64,
    pub enable_anonymous: bool,
    /// Lifetime of long-term tokens, hours.
    pub token_valid_time: u64,
    pub internal_endpoint: String,
    pub expired_at: String,
    pub pay_mod: i64,
    pub renew_flag: i64,
    pub deletion_protection: bool,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct DescribeInstancesResponse {
    pub total_count: i64,
    pub registries: Vec<Registry>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateInstanceTokenRequest {
    pub registry_id: String,
    pub token_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub desc: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct CreateInstanceTokenResponse {
    /// A string in the API; one doc example has a bare number, so both are accepted.
    #[serde(deserialize_with = "string_or_number")]
    pub username: String,
    /// The registry password: never printed (`Debug` shows `<redacted>`).
    pub token: crate::config::Secret,
    /// Milliseconds since the epoch.
    pub exp_time: i64,
    pub token_id: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateNamespaceRequest {
    pub registry_id: String,
    pub namespace_name: String,
    pub is_public: bool,
}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeNamespacesRequest {
    pub registry_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<i64>,
}

/// `{Key, Value}` pair (namespace `Metadata`).
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase", default)]
pub struct KeyValue {
    pub key: String,
    pub value: String,
}

/// `TcrNamespaceInfo`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct TcrNamespaceInfo {
    pub name: String,
    pub creation_time: String,
    pub public: bool,
    pub namespace_id: i64,
    pub metadata: Vec<KeyValue>,
    pub auto_scan: bool,
    #[serde(rename = "PreventVUL")]
    pub prevent_vul: bool,
    pub severity: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct DescribeNamespacesResponse {
    pub namespace_list: Vec<TcrNamespaceInfo>,
    pub total_count: i64,
}

/// Request of `DeleteNamespace`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct NamespaceRef {
    pub registry_id: String,
    pub namespace_name: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateRepositoryRequest {
    pub registry_id: String,
    pub namespace_name: String,
    pub repository_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub brief_description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeRepositoriesRequest {
    pub registry_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repository_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<i64>,
}

/// `TcrRepositoryInfo`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct TcrRepositoryInfo {
    /// Namespace-prefixed, e.g. `multi-arch/busybox`.
    pub name: String,
    pub namespace: String,
    /// Go `time.String` format, e.g. `2024-12-10 14:30:36.806284 +0000 UTC`.
    pub creation_time: String,
    pub public: bool,
    pub description: String,
    pub brief_description: String,
    pub update_time: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct DescribeRepositoriesResponse {
    pub repository_list: Vec<TcrRepositoryInfo>,
    pub total_count: i64,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeImagesRequest {
    pub registry_id: String,
    pub namespace_name: String,
    pub repository_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<i64>,
}

/// `TcrImageInfo`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct TcrImageInfo {
    pub digest: String,
    pub size: i64,
    pub image_version: String,
    pub update_time: String,
    pub kind: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct DescribeImagesResponse {
    pub image_info_list: Vec<TcrImageInfo>,
    pub total_count: i64,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DeleteImageRequest {
    pub registry_id: String,
    pub namespace_name: String,
    pub repository_name: String,
    pub image_version: String,
}

/// A response with nothing but `RequestId`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Empty {}

fn string_or_number<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        S(String),
        N(serde_json::Number),
    }
    Ok(match Option::<Either>::deserialize(d)? {
        Some(Either::S(s)) => s,
        Some(Either::N(n)) => n.to_string(),
        None => String::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_token_username_may_be_a_number() {
        let a: CreateInstanceTokenResponse = serde_json::from_str(
            r#"{"Username":12345678,"Token":"t","ExpTime":1735880997750,"TokenId":""}"#,
        )
        .unwrap();
        assert_eq!(a.username, "12345678");
        assert_eq!(a.exp_time, 1735880997750);
        let b: CreateInstanceTokenResponse = serde_json::from_str(
            r#"{"Username":"100036950234","Token":"t","ExpTime":1,"RequestId":"x"}"#,
        )
        .unwrap();
        assert_eq!(b.username, "100036950234");
    }

    #[test]
    fn requests_use_tencentcloud_field_names() {
        let r = DescribeInstancesRequest {
            registry_ids: Some(vec!["tcr-1".into()]),
            all_region: Some(true),
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"Registryids":["tcr-1"],"AllRegion":true}"#
        );
        let n = CreateNamespaceRequest {
            registry_id: "tcr-1".into(),
            namespace_name: "a".into(),
            is_public: false,
        };
        assert_eq!(
            serde_json::to_string(&n).unwrap(),
            r#"{"RegistryId":"tcr-1","NamespaceName":"a","IsPublic":false}"#
        );
    }
}
