//! Metrics of the OCI front: requests by route, method and status, and bytes in and out.

use prometheus::{IntCounter, IntCounterVec, Opts, Registry};

#[derive(Clone)]
pub struct FrontMetrics {
    /// `tcr_adapter_requests_total{route,method,status}`.
    pub requests: IntCounterVec,
    /// `tcr_adapter_bytes_in_total`: request body bytes read from clients.
    pub bytes_in: IntCounter,
    /// `tcr_adapter_bytes_out_total`: response body bytes streamed to clients.
    pub bytes_out: IntCounter,
}

impl FrontMetrics {
    pub fn new(registry: &Registry) -> Self {
        let requests = IntCounterVec::new(
            Opts::new(
                "tcr_adapter_requests_total",
                "Requests by route, method and status",
            ),
            &["route", "method", "status"],
        )
        .expect("valid metric");
        let bytes_in = IntCounter::new(
            "tcr_adapter_bytes_in_total",
            "Request body bytes read from clients",
        )
        .expect("valid metric");
        let bytes_out = IntCounter::new(
            "tcr_adapter_bytes_out_total",
            "Response body bytes streamed to clients",
        )
        .expect("valid metric");
        let _ = registry.register(Box::new(requests.clone()));
        let _ = registry.register(Box::new(bytes_in.clone()));
        let _ = registry.register(Box::new(bytes_out.clone()));
        FrontMetrics {
            requests,
            bytes_in,
            bytes_out,
        }
    }
}
