//! Fault knobs of the emulator (from `emulator.faults`): cloud API throttling above N QPS, a 5xx
//! ratio and added latency on the registry, body-size limits. Decisions only; the listeners act on
//! them. The bandwidth cap (`bandwidth_kib_per_sec`) is applied to bodies by [`super::wan`].

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
    /// Scripted outcomes of the next chart uploads (`Some(status)`: fail with it after the
    /// body was received; `None`: as usual), for tests of what a client does on a failure.
    chart_uploads: Mutex<std::collections::VecDeque<Option<u16>>>,
}

impl Faults {
    pub fn new(cfg: FaultConfig, clock: SharedClock) -> Self {
        Faults {
            cfg,
            clock,
            window: Mutex::new((0, 0)),
            chart_uploads: Mutex::new(Default::default()),
        }
    }

    /// Script the next chart uploads: each entry is taken by one upload, in order.
    pub fn script_chart_uploads(&self, outcomes: impl IntoIterator<Item = Option<u16>>) {
        let mut q = self.chart_uploads.lock().unwrap_or_else(|e| e.into_inner());
        q.clear();
        q.extend(outcomes);
    }

    /// The scripted failure of this chart upload, if any.
    pub fn chart_upload_fault(&self) -> Option<u16> {
        let mut q = self.chart_uploads.lock().unwrap_or_else(|e| e.into_inner());
        q.pop_front().flatten()
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
