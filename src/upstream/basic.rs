//! Requests to TCR's chart repository (`/api/chartrepo/...`, `/chartrepo/...`), which takes HTTP
//! Basic with the registry credential (UIN + instance token, or a long-term credential) rather
//! than realm bearer tokens. Bodiless and buffered requests are retried on 429/502/503/504 and
//! network errors with the client's backoff; streamed bodies are sent once.

use std::time::Instant;

use bytes::Bytes;
use reqwest::header::{HeaderMap, AUTHORIZATION, CONTENT_LENGTH};
use reqwest::Method;

use super::{
    retry_after, unreachable, BasicAuth, ForwardBody, UpstreamClient, UpstreamError, UpstreamPath,
};

impl UpstreamClient {
    /// Send `method path` to the upstream with Basic `credential` (none: anonymous).
    pub async fn send_basic(
        &self,
        method: Method,
        path: &UpstreamPath,
        headers: HeaderMap,
        body: ForwardBody,
        credential: Option<&BasicAuth>,
        route: &'static str,
    ) -> Result<reqwest::Response, UpstreamError> {
        let url = format!("{}{}", self.base, path);
        let (mut stream, fixed) = match body {
            ForwardBody::Stream(b) => (Some(b), None),
            ForwardBody::Replayable(r) => (Some(r.attempt()), None),
            ForwardBody::Bytes(b) => (None, Some(b)),
            ForwardBody::Empty => (None, None),
        };
        let replayable = stream.is_none();
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let mut req = self
                .http
                .request(method.clone(), &url)
                .headers(headers.clone());
            if let Some(c) = credential {
                req = req.header(AUTHORIZATION, c.header());
            }
            req = match (stream.take(), &fixed) {
                (Some(b), _) => req.body(b),
                (None, Some(b)) => req.header(CONTENT_LENGTH, b.len()).body(b.clone()),
                (None, None) if method == Method::GET || method == Method::HEAD => req,
                (None, None) => req.header(CONTENT_LENGTH, 0).body(Bytes::new()),
            };
            let started = Instant::now();
            let result = req.send().await;
            let label = match &result {
                Ok(r) => r.status().as_u16().to_string(),
                Err(_) => "error".to_string(),
            };
            self.metrics
                .latency
                .with_label_values(&[route, &label])
                .observe(started.elapsed().as_secs_f64());
            let retries_left = replayable && attempt < self.retry.attempts;
            match result {
                Err(e) if retries_left => {
                    self.metrics.retries.with_label_values(&["network"]).inc();
                    tracing::debug!(error = %e, %url, "chart repository unreachable: retrying");
                    tokio::time::sleep(self.backoff(attempt, None)).await;
                }
                Err(e) => return Err(unreachable(&url, &e)),
                Ok(r) if retries_left && matches!(r.status().as_u16(), 429 | 502 | 503 | 504) => {
                    self.metrics
                        .retries
                        .with_label_values(&[r.status().as_str()])
                        .inc();
                    let wait = self.backoff(attempt, retry_after(r.headers()));
                    drop(r);
                    tokio::time::sleep(wait).await;
                }
                Ok(r) => return Ok(r),
            }
        }
    }
}
