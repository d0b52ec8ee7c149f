//! When a failed upstream request may be sent again: the statuses that mean "not processed, try
//! later" (429, 502, 503, 504), and a retry budget — retries allowed as a share of recent requests
//! plus a small floor per second, as linkerd2-proxy and Envoy do — so that an upstream outage does
//! not multiply its own load. Counting only; no I/O here.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// An upstream status worth another attempt.
pub fn retryable_status(status: u16) -> bool {
    matches!(status, 429 | 502 | 503 | 504)
}

/// Retries allowed: `ratio` × requests of the current window + `min_per_sec` × window length.
pub struct RetryBudget {
    ratio: f64,
    min_per_sec: u32,
    window: Duration,
    state: Mutex<Window>,
}

struct Window {
    started: Instant,
    requests: u64,
    retries: u64,
}

impl RetryBudget {
    pub fn new(ratio: f64, min_per_sec: u32, window: Duration) -> Self {
        RetryBudget {
            ratio: ratio.max(0.0),
            min_per_sec,
            window: window.max(Duration::from_secs(1)),
            state: Mutex::new(Window {
                started: Instant::now(),
                requests: 0,
                retries: 0,
            }),
        }
    }

    fn current(&self) -> std::sync::MutexGuard<'_, Window> {
        let mut w = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if w.started.elapsed() >= self.window {
            *w = Window {
                started: Instant::now(),
                requests: 0,
                retries: 0,
            };
        }
        w
    }

    /// Count one original request.
    pub fn deposit(&self) {
        self.current().requests += 1;
    }

    /// Take one retry from the budget; false when it is spent.
    pub fn withdraw(&self) -> bool {
        let mut w = self.current();
        let allowed = self.ratio * w.requests as f64
            + f64::from(self.min_per_sec) * self.window.as_secs_f64();
        if (w.retries as f64) < allowed {
            w.retries += 1;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_is_a_share_of_requests_plus_a_floor() {
        let b = RetryBudget::new(0.2, 0, Duration::from_secs(60));
        for _ in 0..10 {
            b.deposit();
        }
        assert!(b.withdraw() && b.withdraw());
        assert!(!b.withdraw(), "20 % of 10 requests = 2 retries");
        let floor = RetryBudget::new(0.0, 1, Duration::from_secs(3));
        assert!((0..3).all(|_| floor.withdraw()));
        assert!(!floor.withdraw());
    }

    #[test]
    fn statuses() {
        assert!(retryable_status(503) && retryable_status(429));
        assert!(!retryable_status(500) && !retryable_status(404));
    }
}
