//! A token-bucket rate limiter for cloud API calls, shared by every clone of a client: callers
//! wait (asynchronously) for a token instead of being refused.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// `qps` calls per second on average, bursts of up to `qps` calls.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    qps: f64,
    burst: f64,
    bucket: Arc<Mutex<Bucket>>,
}

impl RateLimiter {
    pub fn new(qps: u32) -> Self {
        let qps = f64::from(qps.max(1));
        RateLimiter {
            qps,
            burst: qps,
            bucket: Arc::new(Mutex::new(Bucket {
                tokens: qps,
                last: Instant::now(),
            })),
        }
    }

    /// Calls per second allowed.
    pub fn qps(&self) -> f64 {
        self.qps
    }

    /// Take one token, waiting until one is available.
    pub async fn acquire(&self) {
        loop {
            let wait = {
                let mut b = self.bucket.lock().unwrap_or_else(|e| e.into_inner());
                let now = Instant::now();
                let elapsed = now.duration_since(b.last).as_secs_f64();
                b.tokens = (b.tokens + elapsed * self.qps).min(self.burst);
                b.last = now;
                if b.tokens >= 1.0 {
                    b.tokens -= 1.0;
                    return;
                }
                Duration::from_secs_f64((1.0 - b.tokens) / self.qps)
            };
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waits_once_the_burst_is_spent() {
        let rl = RateLimiter::new(20);
        let start = Instant::now();
        for _ in 0..20 {
            rl.acquire().await;
        }
        assert!(start.elapsed() < Duration::from_millis(50));
        let clone = rl.clone();
        for _ in 0..10 {
            clone.acquire().await;
        }
        let spent = start.elapsed();
        assert!(
            spent >= Duration::from_millis(440) && spent < Duration::from_millis(900),
            "{spent:?}"
        );
    }
}
