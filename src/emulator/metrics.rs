//! The emulator's Prometheus metrics: cloud API calls per action and result, registry requests
//! per route and status, body bytes per route and direction, and bytes read from blob files.
//! Served on both emulator listeners.

use prometheus::{IntCounter, IntCounterVec, Opts, Registry};

#[derive(Clone)]
pub struct EmulatorMetrics {
    pub registry: Registry,
    /// `tcr_emulator_api_calls_total{action,result}`; result is `ok` or the error code.
    pub api_calls: IntCounterVec,
    /// `tcr_emulator_registry_requests_total{route,method,status}`.
    pub registry_requests: IntCounterVec,
    /// `tcr_emulator_body_bytes_total{route,direction}`: request bodies `received` and response
    /// bodies `sent` by the data plane and the storage listener (blob uploads: `route="upload"`).
    pub body_bytes: IntCounterVec,
    /// `tcr_emulator_blob_file_read_bytes_total`: bytes read from blob files to answer GETs.
    pub blob_file_read_bytes: IntCounter,
}

impl EmulatorMetrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let api_calls = IntCounterVec::new(
            Opts::new(
                "tcr_emulator_api_calls_total",
                "Cloud API calls by action and result",
            ),
            &["action", "result"],
        )
        .expect("valid metric");
        let registry_requests = IntCounterVec::new(
            Opts::new(
                "tcr_emulator_registry_requests_total",
                "Data plane requests by route, method and status",
            ),
            &["route", "method", "status"],
        )
        .expect("valid metric");
        let body_bytes = IntCounterVec::new(
            Opts::new(
                "tcr_emulator_body_bytes_total",
                "Body bytes by route and direction (received: request bodies, sent: response bodies)",
            ),
            &["route", "direction"],
        )
        .expect("valid metric");
        let blob_file_read_bytes = IntCounter::new(
            "tcr_emulator_blob_file_read_bytes_total",
            "Bytes read from blob files to serve them",
        )
        .expect("valid metric");
        registry
            .register(Box::new(api_calls.clone()))
            .expect("register");
        registry
            .register(Box::new(registry_requests.clone()))
            .expect("register");
        registry
            .register(Box::new(body_bytes.clone()))
            .expect("register");
        registry
            .register(Box::new(blob_file_read_bytes.clone()))
            .expect("register");
        EmulatorMetrics {
            registry,
            api_calls,
            registry_requests,
            body_bytes,
            blob_file_read_bytes,
        }
    }

    pub fn api_call(&self, action: &str, result: &str) {
        self.api_calls.with_label_values(&[action, result]).inc();
    }

    pub fn registry_request(&self, route: &str, method: &str, status: u16) {
        self.registry_requests
            .with_label_values(&[route, method, &status.to_string()])
            .inc();
    }

    /// The body byte counter of `route` in `direction` (`received` or `sent`).
    pub fn body_bytes(&self, route: &str, direction: &str) -> IntCounter {
        self.body_bytes.with_label_values(&[route, direction])
    }
}

impl Default for EmulatorMetrics {
    fn default() -> Self {
        Self::new()
    }
}
