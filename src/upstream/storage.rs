//! Following TCR's redirects to object storage (COS): the signed URL is its own credential, so
//! the request carries no `Authorization` (storage refuses two auth mechanisms, and the
//! adapter's upstream token must never leave for another host). Bodiless, so retried like any
//! other bodiless request, within the same attempts and budget.

use std::time::Instant;

use reqwest::header::HeaderMap;
use reqwest::Method;

use super::{retry_after, retryable_status, unreachable, UpstreamClient, UpstreamError};

impl UpstreamClient {
    /// `method` (GET or HEAD) the `location` an upstream redirect named (absolute, or a path on
    /// the upstream), with `headers` (e.g. `Range`) and no credential.
    pub async fn fetch_redirect(
        &self,
        method: Method,
        location: &str,
        headers: HeaderMap,
    ) -> Result<reqwest::Response, UpstreamError> {
        let url = if location.starts_with('/') {
            format!("{}{location}", self.base)
        } else {
            location.to_string()
        };
        self.budget.deposit();
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let started = Instant::now();
            let result = self
                .http
                .request(method.clone(), &url)
                .headers(headers.clone())
                .send()
                .await;
            let status_label = match &result {
                Ok(r) => r.status().as_u16().to_string(),
                Err(_) => "error".to_string(),
            };
            self.metrics
                .latency
                .with_label_values(&["blob_storage", &status_label])
                .observe(started.elapsed().as_secs_f64());
            match result {
                Ok(r) if retryable_status(r.status().as_u16()) => {
                    let cause = format!("storage_{}", r.status().as_u16());
                    if !self.may_retry(&cause, Ok(()), attempt) {
                        return Ok(r);
                    }
                    let wait = self.backoff(attempt, retry_after(r.headers()));
                    drop(r);
                    tokio::time::sleep(wait).await;
                }
                Ok(r) => return Ok(r),
                Err(e) => {
                    if !self.may_retry("storage_network", Ok(()), attempt) {
                        return Err(unreachable(&url, &e));
                    }
                    tokio::time::sleep(self.backoff(attempt, None)).await;
                }
            }
        }
    }
}
