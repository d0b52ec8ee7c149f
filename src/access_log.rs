//! The per-request access log line, written when the response body has been sent (or dropped):
//! `request_id`, method, route, repository, status, the bytes actually sent and the time until
//! the last byte. It wraps the response body to count bytes as they pass (one addition per
//! chunk) and logs once from `Drop`; it never looks at the bytes themselves.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use actix_web::body::{BodySize, BoxBody, MessageBody};
use bytes::Bytes;

/// What the access line says besides the bytes and the duration.
pub struct AccessLine {
    pub request_id: String,
    pub method: String,
    pub route: &'static str,
    pub repository: String,
    pub status: u16,
    pub started: Instant,
}

/// A response body that counts the bytes sent and writes the access line when it ends.
pub struct LoggedBody {
    inner: BoxBody,
    line: AccessLine,
    sent: u64,
}

impl LoggedBody {
    pub fn new(inner: BoxBody, line: AccessLine) -> Self {
        LoggedBody {
            inner,
            line,
            sent: 0,
        }
    }
}

impl MessageBody for LoggedBody {
    type Error = Box<dyn std::error::Error>;

    fn size(&self) -> BodySize {
        self.inner.size()
    }

    fn poll_next(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        let this = self.get_mut();
        let next = Pin::new(&mut this.inner).poll_next(cx);
        if let Poll::Ready(Some(Ok(chunk))) = &next {
            this.sent += chunk.len() as u64;
        }
        next
    }
}

/// The request's id (the client's `X-Request-Id`, or a new one), in the request's extensions:
/// a request forwarded to another replica carries it, so both replicas' lines share it.
#[derive(Clone, Debug)]
pub struct RequestId(pub String);

impl Drop for LoggedBody {
    fn drop(&mut self) {
        let l = &self.line;
        tracing::info!(
            request_id = %l.request_id,
            method = %l.method,
            route = l.route,
            repository = %l.repository,
            status = l.status,
            bytes = self.sent,
            duration_ms = l.started.elapsed().as_millis() as u64,
            "request"
        );
    }
}
