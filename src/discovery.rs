//! Finding the TCR instance behind `tcr.registry_url`: its `RegistryId`, region, public domain
//! and status, through `DescribeInstances` (as Harbor's own TCR provider does: region
//! ap-guangzhou, `AllRegion: true`, filter `RegistryName` = the host's first label). With both
//! `tcr.registry_id` and `tcr.region` configured (custom domains) nothing is looked up.
//!
//! Unlike Harbor's provider it matches the instance exactly (the filter may be fuzzy), falls back
//! to matching `PublicDomain` (custom ports, the emulator; an IP address goes straight to it),
//! and refuses an instance that is not `Running` with a message saying so.
//!
//! [`InstanceLocator`] is the adapter's one place that knows the instance: shared by the
//! credential resolver (`CreateInstanceToken`) and the namespace provisioner, it looks the
//! instance up at most once at a time, keeps a success and never a failure.

use crate::oci::{ErrorCode, OciError};
use crate::tencentcloud::client::DEFAULT_REGION;
use crate::tencentcloud::errors::{classify, ApiErrorClass};
use crate::tencentcloud::models::{DescribeInstancesRequest, DescribeInstancesResponse, Registry};
use crate::tencentcloud::{ApiCredential, ApiError, TcrApiClient};

/// The instance and a cloud API client set to its region.
#[derive(Debug, Clone)]
pub struct Located {
    pub info: InstanceInfo,
    /// The adapter's client, in the instance's region (shares pool, limiter and counters).
    pub client: TcrApiClient,
}

/// The instance behind `tcr.registry_url`, found once and shared. With a configured
/// `tcr.registry_id` nothing is looked up (region: `tcr.region`, else the client's own);
/// otherwise the first caller's keys look it up with [`find_instance`] while later callers wait
/// for that one lookup. A success is kept for the life of the process; a failure is not.
pub struct InstanceLocator {
    client: TcrApiClient,
    registry_url: String,
    found: std::sync::RwLock<Option<Located>>,
    flight: tokio::sync::Mutex<()>,
}

impl InstanceLocator {
    /// `registry_id`/`region` are the configured values (empty = unset).
    pub fn new(client: TcrApiClient, registry_url: &str, registry_id: &str, region: &str) -> Self {
        let found = (!registry_id.is_empty()).then(|| {
            let client = if region.is_empty() {
                client.clone()
            } else {
                client.with_region(region)
            };
            Located {
                info: InstanceInfo {
                    registry_id: registry_id.to_string(),
                    region: client.region().to_string(),
                    public_domain: host_of(registry_url).unwrap_or_default(),
                    status: "Unchecked".into(),
                },
                client,
            }
        });
        InstanceLocator {
            client,
            registry_url: registry_url.to_string(),
            found: std::sync::RwLock::new(found),
            flight: tokio::sync::Mutex::new(()),
        }
    }

    fn cached(&self) -> Option<Located> {
        self.found.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The instance, looked up with `keys` when not known yet (one lookup in flight).
    pub async fn locate(&self, keys: &ApiCredential) -> Result<Located, DiscoveryError> {
        if let Some(l) = self.cached() {
            return Ok(l);
        }
        let _turn = self.flight.lock().await;
        if let Some(l) = self.cached() {
            return Ok(l);
        }
        let info = find_instance(
            &self.client,
            keys,
            &self.registry_url,
            None,
            Some(self.client.region()),
        )
        .await?;
        tracing::info!(
            registry_id = %info.registry_id,
            region = %info.region,
            public_domain = %info.public_domain,
            "TCR instance found"
        );
        let located = Located {
            client: self.client.with_region(&info.region),
            info,
        };
        *self.found.write().unwrap_or_else(|e| e.into_inner()) = Some(located.clone());
        Ok(located)
    }
}

/// The instance the adapter writes into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceInfo {
    /// `tcr-xxxxxxxx`.
    pub registry_id: String,
    /// e.g. `ap-guangzhou`; later cloud calls go to this region.
    pub region: String,
    /// Host (and port) of the data plane, e.g. `myreg.tencentcloudcr.com`.
    pub public_domain: String,
    /// `Running`, … (`Unchecked` when configured rather than looked up).
    pub status: String,
}

/// Why the instance could not be found.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DiscoveryError {
    /// `tcr.registry_url` is not a URL with a host.
    #[error(
        "tcr.registry_url {0:?} is not a URL with a host (e.g. https://myreg.tencentcloudcr.com)"
    )]
    InvalidUrl(String),
    /// No instance matches.
    #[error("no TCR instance named {name:?} (or with public domain {domain:?}) is visible to SecretId {secret_id}: check tcr.registry_url, or set tcr.registry_id and tcr.region (needed for custom domains)")]
    NotFound {
        name: String,
        domain: String,
        secret_id: String,
    },
    /// The instance exists but does not serve.
    #[error("TCR instance {registry_id} ({region}) is {status}, not Running: it cannot serve pushes until it is Running again (check the TCR console)")]
    NotRunning {
        registry_id: String,
        region: String,
        status: String,
    },
    /// `DescribeInstances` failed.
    #[error("looking up the TCR instance with DescribeInstances: {0}")]
    Api(String, #[source] ApiError),
}

impl DiscoveryError {
    /// The OCI error a registry client gets: a key or permission problem is `403 DENIED`,
    /// anything else `503 UNAVAILABLE` (the adapter cannot serve writes until it is fixed).
    pub fn to_oci(&self) -> OciError {
        let message = self.to_string();
        match self {
            DiscoveryError::Api(_, e) if classify(e) == ApiErrorClass::Denied => {
                OciError::new(ErrorCode::Denied, message)
            }
            DiscoveryError::Api(..) => OciError::new(ErrorCode::Unavailable, message)
                .with_header(actix_web::http::header::RETRY_AFTER, "5"),
            _ => OciError::new(ErrorCode::Unavailable, message)
                .with_header(actix_web::http::header::RETRY_AFTER, "30"),
        }
    }
}

/// Host (with the port when there is one) of a URL, lower-cased.
fn host_of(url: &str) -> Option<String> {
    let with_scheme = if url.contains("://") {
        url.to_string()
    } else {
        format!("https://{url}")
    };
    let u = url::Url::parse(&with_scheme).ok()?;
    let host = u.host_str()?.to_ascii_lowercase();
    Some(match u.port() {
        Some(p) => format!("{host}:{p}"),
        None => host,
    })
}

fn info_of(r: &Registry) -> InstanceInfo {
    InstanceInfo {
        registry_id: r.registry_id.clone(),
        region: r.region_name.clone(),
        public_domain: r.public_domain.clone(),
        status: r.status.clone(),
    }
}

fn running(info: InstanceInfo) -> Result<InstanceInfo, DiscoveryError> {
    if info.status.eq_ignore_ascii_case("Running") {
        Ok(info)
    } else {
        Err(DiscoveryError::NotRunning {
            registry_id: info.registry_id,
            region: info.region,
            status: info.status,
        })
    }
}

/// Find the instance behind `registry_url`. `registry_id` and `region` are the configured
/// values (empty strings count as unset); with both set, they are used as they are.
pub async fn find_instance(
    client: &TcrApiClient,
    keys: &ApiCredential,
    registry_url: &str,
    registry_id: Option<&str>,
    region: Option<&str>,
) -> Result<InstanceInfo, DiscoveryError> {
    let registry_id = registry_id.filter(|s| !s.is_empty());
    let region = region.filter(|s| !s.is_empty());
    let domain =
        host_of(registry_url).ok_or_else(|| DiscoveryError::InvalidUrl(registry_url.into()))?;
    if let (Some(id), Some(region)) = (registry_id, region) {
        return Ok(InstanceInfo {
            registry_id: id.to_string(),
            region: region.to_string(),
            public_domain: domain,
            status: "Unchecked".into(),
        });
    }
    let lookup = client.with_region(region.unwrap_or(DEFAULT_REGION));
    match registry_id {
        Some(id) => find_by_id(&lookup, keys, id, domain).await,
        None => find_by_domain(&lookup, keys, domain).await,
    }
}

fn api_error(keys: &ApiCredential) -> impl Fn(ApiError) -> DiscoveryError + '_ {
    |e: ApiError| DiscoveryError::Api(e.humanize_with("DescribeInstances", &keys.secret_id), e)
}

/// The configured instance id, looked up in every region.
async fn find_by_id(
    lookup: &TcrApiClient,
    keys: &ApiCredential,
    id: &str,
    domain: String,
) -> Result<InstanceInfo, DiscoveryError> {
    let req = DescribeInstancesRequest {
        registry_ids: Some(vec![id.to_string()]),
        all_region: Some(true),
        limit: Some(100),
        ..Default::default()
    };
    let found = lookup
        .call::<_, DescribeInstancesResponse>(keys, "DescribeInstances", &req)
        .await
        .map(|r| r.registries)
        .map_err(api_error(keys))?;
    match found.iter().find(|r| r.registry_id == id) {
        Some(r) => running(info_of(r)),
        None => Err(DiscoveryError::NotFound {
            name: id.to_string(),
            domain,
            secret_id: crate::tencentcloud::secret_id_prefix(&keys.secret_id),
        }),
    }
}

/// The instance whose public domain (or name, the domain's first label) is `domain`.
async fn find_by_domain(
    lookup: &TcrApiClient,
    keys: &ApiCredential,
    domain: String,
) -> Result<InstanceInfo, DiscoveryError> {
    let name = domain
        .split(['.', ':'])
        .next()
        .unwrap_or_default()
        .to_string();
    let matches =
        |r: &&Registry| r.public_domain.eq_ignore_ascii_case(&domain) || r.registry_name == name;
    // An IP address names no instance: go straight to the public-domain match.
    let ip = url::Host::parse(domain.rsplit_once(':').map_or(domain.as_str(), |(h, _)| h))
        .is_ok_and(|h| !matches!(h, url::Host::Domain(_)));
    let by_name = if ip {
        Vec::new()
    } else {
        lookup
            .describe_instances(keys, Some(&name), true)
            .await
            .map_err(api_error(keys))?
    };
    // Prefer an exact public-domain match, then an exact name match.
    let pick = |list: &[Registry]| {
        list.iter()
            .find(|r| r.public_domain.eq_ignore_ascii_case(&domain))
            .or_else(|| list.iter().find(matches))
            .map(info_of)
    };
    if let Some(info) = pick(&by_name) {
        return running(info);
    }
    // IP addresses, ports and other hosts whose first label is not the instance name.
    let all = lookup
        .describe_instances(keys, None, true)
        .await
        .map_err(api_error(keys))?;
    match all
        .iter()
        .find(|r| r.public_domain.eq_ignore_ascii_case(&domain))
    {
        Some(r) => running(info_of(r)),
        None => Err(DiscoveryError::NotFound {
            name,
            domain,
            secret_id: crate::tencentcloud::secret_id_prefix(&keys.secret_id),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        assert_eq!(
            host_of("https://MyReg.tencentcloudcr.com/").as_deref(),
            Some("myreg.tencentcloudcr.com")
        );
        assert_eq!(
            host_of("http://127.0.0.1:5001").as_deref(),
            Some("127.0.0.1:5001")
        );
        assert_eq!(
            host_of("myreg.tencentcloudcr.com").as_deref(),
            Some("myreg.tencentcloudcr.com")
        );
        assert!(host_of("http://").is_none());
    }
}
