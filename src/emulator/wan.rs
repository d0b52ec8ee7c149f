//! The emulator's WAN model: bodies counted per route and direction, and (with
//! `emulator.faults.bandwidth_kib_per_sec`) paced to a bandwidth cap. Per-request latency is the
//! other half of the model and lives in [`super::Faults::delay`].
//!
//! The cap is meant per **connection**. It is applied per request (one pacer for the request
//! body, one for the response body): HTTP/1.1 requests on one connection are sequential, so a
//! connection never carries two paced bodies in the same direction at once and a per-request cap
//! is the per-connection cap (the pacer starts afresh with each request, which allows at most one
//! quantum of burst per request). Parallel transfers need parallel connections, as across a real
//! WAN link with a per-connection limit.
//!
//! With a cap of 0 nothing is paced: bodies pass through untouched apart from the byte counter
//! (no timers, no splitting).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::body::{BodySize, BoxBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::HttpMessage;
use bytes::Bytes;
use futures_util::Stream;
use prometheus::IntCounter;
use tokio::time::{Instant, Sleep};

use super::EmulatorState;

/// Paces pieces of a body to `bytes_per_sec`: a piece may leave when the previous ones have
/// drained at that rate (no credit builds up while the body is idle).
pub struct Pacer {
    bytes_per_sec: u64,
    quantum: usize,
    /// When the next piece may leave (`None`: nothing sent yet).
    next: Option<Instant>,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl Pacer {
    /// A pacer for `kib_per_sec` KiB/s; `None` for 0 (unlimited).
    pub fn new(kib_per_sec: u64) -> Option<Pacer> {
        if kib_per_sec == 0 {
            return None;
        }
        let bytes_per_sec = kib_per_sec.saturating_mul(1024);
        // About 50 pieces a second, within 1..64 KiB: smooth enough, few timer wake-ups.
        let quantum = (bytes_per_sec / 50).clamp(1024, 64 * 1024) as usize;
        Some(Pacer {
            bytes_per_sec,
            quantum,
            next: None,
            sleep: None,
        })
    }

    /// The next piece of `pending` (at most one quantum, taken off its front) once the cap
    /// allows it. `pending` must not be empty.
    fn poll_piece(&mut self, cx: &mut Context<'_>, pending: &mut Bytes) -> Poll<Bytes> {
        if let Some(next) = self.next {
            if Instant::now() < next {
                let sleep = match &mut self.sleep {
                    Some(s) => {
                        if s.deadline() != next {
                            s.as_mut().reset(next);
                        }
                        s
                    }
                    None => self.sleep.insert(Box::pin(tokio::time::sleep_until(next))),
                };
                if sleep.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
            }
        }
        let piece = pending.split_to(self.quantum.min(pending.len()));
        let base = match self.next {
            Some(next) => next.max(Instant::now()),
            None => Instant::now(),
        };
        let nanos = piece.len() as u128 * 1_000_000_000 / u128::from(self.bytes_per_sec);
        self.next = Some(base + Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX)));
        Poll::Ready(piece)
    }
}

/// A body (request payload stream or response body) counted and optionally paced.
struct Metered<S> {
    inner: S,
    counter: IntCounter,
    pacer: Option<Pacer>,
    /// The rest of the chunk the pacer is releasing piece by piece.
    pending: Bytes,
}

impl<S> Metered<S> {
    fn new(inner: S, counter: IntCounter, kib_per_sec: u64) -> Self {
        Metered {
            inner,
            counter,
            pacer: Pacer::new(kib_per_sec),
            pending: Bytes::new(),
        }
    }

    /// The next piece of the body: a whole chunk when uncapped, else the pacer's next piece of
    /// it once the cap allows. Counted as it leaves.
    fn poll_with<E>(
        &mut self,
        cx: &mut Context<'_>,
        poll_inner: impl FnOnce(&mut S, &mut Context<'_>) -> Poll<Option<Result<Bytes, E>>>,
    ) -> Poll<Option<Result<Bytes, E>>> {
        if self.pending.is_empty() {
            match poll_inner(&mut self.inner, cx) {
                Poll::Ready(Some(Ok(chunk))) if !chunk.is_empty() => self.pending = chunk,
                other => return other,
            }
        }
        let piece = match &mut self.pacer {
            None => std::mem::take(&mut self.pending),
            Some(p) => match p.poll_piece(cx, &mut self.pending) {
                Poll::Ready(piece) => piece,
                Poll::Pending => return Poll::Pending,
            },
        };
        self.counter.inc_by(piece.len() as u64);
        Poll::Ready(Some(Ok(piece)))
    }
}

impl<S, E> Stream for Metered<S>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
{
    type Item = Result<Bytes, E>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut()
            .poll_with(cx, |s, cx| Pin::new(s).poll_next(cx))
    }
}

/// Response bodies: same as the stream, keeping the declared size.
struct MeteredBody(Metered<BoxBody>);

impl MessageBody for MeteredBody {
    type Error = <BoxBody as MessageBody>::Error;

    fn size(&self) -> BodySize {
        self.0.inner.size()
    }

    fn poll_next(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        self.get_mut()
            .0
            .poll_with(cx, |b, cx| MessageBody::poll_next(Pin::new(b), cx))
    }
}

/// True when the request announces a body (`Content-Length` > 0 or `Transfer-Encoding`).
fn has_body(req: &ServiceRequest) -> bool {
    let h = req.headers();
    h.contains_key("transfer-encoding")
        || h.get("content-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .is_some_and(|n| n > 0)
}

/// Count (and pace, with a cap) the request body of `req`, on route `route`.
pub fn meter_request(req: &mut ServiceRequest, state: &EmulatorState, route: &str) {
    if !has_body(req) {
        return;
    }
    let counter = state.metrics.body_bytes(route, "received");
    let payload = req.take_payload();
    let metered = Metered::new(payload, counter, state.cfg.faults.bandwidth_kib_per_sec);
    req.set_payload(Payload::Stream {
        payload: Box::pin(metered),
    });
}

/// Count (and pace, with a cap) the response body of `res`, on route `route`. A HEAD answer
/// sends no body, so it is left alone.
pub fn meter_response<B>(
    res: ServiceResponse<B>,
    state: &EmulatorState,
    route: &str,
) -> ServiceResponse<BoxBody>
where
    B: MessageBody + 'static,
{
    let res = res.map_into_boxed_body();
    if res.request().method() == actix_web::http::Method::HEAD
        || matches!(
            res.response().body().size(),
            BodySize::None | BodySize::Sized(0)
        )
    {
        return res;
    }
    let counter = state.metrics.body_bytes(route, "sent");
    let kib = state.cfg.faults.bandwidth_kib_per_sec;
    res.map_body(|_, body| MeteredBody(Metered::new(body, counter, kib)).boxed())
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    fn counter() -> IntCounter {
        IntCounter::new("t", "t").unwrap()
    }

    #[tokio::test]
    async fn a_capped_stream_takes_its_size_over_the_rate() {
        let chunks: Vec<Result<Bytes, std::io::Error>> = (0..4)
            .map(|_| Ok(Bytes::from(vec![7u8; 64 * 1024])))
            .collect();
        let c = counter();
        let mut s = Metered::new(futures_util::stream::iter(chunks), c.clone(), 256);
        let start = Instant::now();
        let mut got = 0;
        while let Some(piece) = s.next().await {
            let piece = piece.unwrap();
            assert!(piece.len() <= 256 * 1024 / 50);
            got += piece.len();
        }
        assert_eq!(got, 256 * 1024);
        assert_eq!(c.get(), 256 * 1024);
        // 256 KiB at 256 KiB/s: the last piece leaves after (256 KiB - one piece) / rate.
        assert!(
            start.elapsed() >= Duration::from_millis(950),
            "{:?}",
            start.elapsed()
        );
    }

    #[tokio::test]
    async fn uncapped_streams_pass_chunks_through_whole() {
        let chunks: Vec<Result<Bytes, std::io::Error>> = (0..3)
            .map(|_| Ok(Bytes::from(vec![1u8; 100_000])))
            .collect();
        let c = counter();
        let s = Metered::new(futures_util::stream::iter(chunks), c.clone(), 0);
        let lens: Vec<usize> = s.map(|p| p.unwrap().len()).collect().await;
        assert_eq!(lens, vec![100_000; 3]);
        assert_eq!(c.get(), 300_000);
    }
}
