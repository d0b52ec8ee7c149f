//! Fault knobs of the emulator (from `emulator.faults`): cloud API throttling above N QPS, a 5xx
//! ratio and added latency on the registry, body-size limits. Decisions only; the listeners act on
//! them.

use std::sync::Mutex;
use std::time::Duration;

use crate::clock::SharedClock;
use crate::config::FaultConfig;

#[derive(Debug)]
pub struct Faults {
    pub cfg: FaultConfig,
    clock: SharedClock,
    /// (second, calls in that second) for the QPS limit.
    window: Mutex<(i64, u32)>,
}

impl Faults {
    pub fn new(cfg: FaultConfig, clock: SharedClock) -> Self {
        Faults {
            cfg,
            clock,
            window: Mutex::new((0, 0)),
        }
    }

    /// True when this cloud API call exceeds `api_qps_limit` and must get `RequestLimitExceeded`.
    pub fn api_throttled(&self) -> bool {
        if self.cfg.api_qps_limit == 0 {
            return false;
        }
        let now = self.clock.now_secs();
        let mut w = self.window.lock().unwrap_or_else(|e| e.into_inner());
        if w.0 != now {
            *w = (now, 0);
        }
        w.1 += 1;
        w.1 > self.cfg.api_qps_limit
    }

    /// True when this registry request should be failed with a 503.
    pub fn registry_fail(&self) -> bool {
        self.cfg.registry_5xx_ratio > 0.0 && rand::random::<f64>() < self.cfg.registry_5xx_ratio
    }

    /// Sleep for the configured added latency.
    pub async fn delay(&self) {
        if self.cfg.latency_ms > 0 {
            tokio::time::sleep(Duration::from_millis(self.cfg.latency_ms)).await;
        }
    }

    /// True when a body of `len` bytes is over the limit.
    pub fn body_too_large(&self, len: u64) -> bool {
        self.cfg.max_body_bytes > 0 && len > self.cfg.max_body_bytes
    }
}
