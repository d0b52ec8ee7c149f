//! The emulator's Prometheus metrics: cloud API calls per action and result, registry requests
//! per route and status, and namespace creations. Served on both emulator listeners.

use prometheus::{IntCounterVec, Opts, Registry};

#[derive(Clone)]
pub struct EmulatorMetrics {
    pub registry: Registry,
    /// `tcr_emulator_api_calls_total{action,result}`; result is `ok` or the error code.
    pub api_calls: IntCounterVec,
    /// `tcr_emulator_registry_requests_total{route,method,status}`.
    pub registry_requests: IntCounterVec,
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
        registry
            .register(Box::new(api_calls.clone()))
            .expect("register");
        registry
            .register(Box::new(registry_requests.clone()))
            .expect("register");
        EmulatorMetrics {
            registry,
            api_calls,
            registry_requests,
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
}

impl Default for EmulatorMetrics {
    fn default() -> Self {
        Self::new()
    }
}
