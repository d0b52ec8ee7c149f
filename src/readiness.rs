//! `/readyz`: the adapter is ready when TCR's data plane answers `GET /v2/` and the TencentCloud
//! API endpoint answers at all. The cloud probe is an unsigned call (it needs no keys and costs no
//! quota: the API answers it with an `AuthFailure` envelope, which proves it is reachable). The
//! verdict is cached for [`Readiness::TTL`] and refreshed by one caller at a time, so probes from a
//! load balancer cost the upstream almost nothing.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::tencentcloud::TcrApiClient;
use crate::upstream::UpstreamClient;

/// The outcome of one probe round: `ok` per component, or why not.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub data_plane: Result<(), String>,
    pub cloud_api: Option<Result<(), String>>,
}

impl Verdict {
    pub fn ready(&self) -> bool {
        self.data_plane.is_ok() && self.cloud_api.as_ref().is_none_or(|c| c.is_ok())
    }

    pub fn body(&self) -> Value {
        fn show(r: &Result<(), String>) -> Value {
            match r {
                Ok(()) => json!("ok"),
                Err(e) => json!(e),
            }
        }
        let mut checks = json!({ "data_plane": show(&self.data_plane) });
        if let Some(c) = &self.cloud_api {
            checks["cloud_api"] = show(c);
        }
        json!({ "status": if self.ready() { "ready" } else { "not ready" }, "checks": checks })
    }
}

#[derive(Default)]
pub struct Readiness {
    last: tokio::sync::Mutex<Option<(Instant, Verdict)>>,
}

impl Readiness {
    /// How long a verdict is reused.
    pub const TTL: Duration = Duration::from_secs(5);

    /// The cached verdict, or a fresh one when it is older than [`Self::TTL`].
    pub async fn check(&self, upstream: &UpstreamClient, api: Option<&TcrApiClient>) -> Verdict {
        // Holding the lock across the probe makes concurrent callers wait for one refresh.
        let mut last = self.last.lock().await;
        if let Some((at, v)) = last.as_ref() {
            if at.elapsed() < Self::TTL {
                return v.clone();
            }
        }
        let (data_plane, cloud_api) = tokio::join!(
            async { upstream.probe().await.map_err(|e| e.to_string()) },
            async {
                match api {
                    Some(api) => Some(probe_cloud(api).await),
                    None => None,
                }
            }
        );
        let v = Verdict {
            data_plane,
            cloud_api,
        };
        *last = Some((Instant::now(), v.clone()));
        v
    }
}

/// An unsigned `DescribeInstances`: any TencentCloud envelope back means the API is reachable.
async fn probe_cloud(api: &TcrApiClient) -> Result<(), String> {
    let resp = api
        .http()
        .post(api.endpoint())
        .header("Content-Type", "application/json")
        .header("X-TC-Action", "DescribeInstances")
        .header("X-TC-Version", "2019-09-24")
        .header("X-TC-Region", api.region())
        .header("X-TC-Timestamp", chrono::Utc::now().timestamp().to_string())
        .body("{}")
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .map_err(|e| format!("TencentCloud API {} unreachable: {e}", api.endpoint()))?;
    let status = resp.status();
    let body: Value = resp.json().await.map_err(|e| {
        format!(
            "TencentCloud API {} answered {status} without JSON: {e}",
            api.endpoint()
        )
    })?;
    if body.get("Response").is_some() {
        Ok(())
    } else {
        Err(format!(
            "{} answered {status} but not with a TencentCloud API envelope",
            api.endpoint()
        ))
    }
}
