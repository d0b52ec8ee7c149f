//! A streamed request body that can be sent again: every chunk the upstream pulls is also kept,
//! up to a cap, so that when the upstream refuses the request early (429/502/503/504, or drops the
//! connection) before more than the cap was read, a retry sends the kept prefix and then the rest
//! of the client's stream. Past the cap the prefix is dropped and the body is no longer
//! replayable: memory per upload stays bounded by the cap (linkerd2-proxy's replay buffer).

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::Stream;

type Source = Pin<Box<dyn Stream<Item = Result<Bytes, std::io::Error>> + Send>>;

struct Shared {
    source: Source,
    kept: Vec<Bytes>,
    kept_len: usize,
    cap: usize,
    overflowed: bool,
}

/// The client's body stream plus its replay prefix. Cheap to clone (shared).
#[derive(Clone)]
pub struct ReplayBody {
    shared: Arc<Mutex<Shared>>,
}

impl ReplayBody {
    /// Keep up to `cap` bytes of `source` for replays.
    pub fn new(
        source: impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static,
        cap: usize,
    ) -> Self {
        ReplayBody {
            shared: Arc::new(Mutex::new(Shared {
                source: Box::pin(source),
                kept: Vec::new(),
                kept_len: 0,
                cap,
                overflowed: false,
            })),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether what the upstream has read so far can still be sent again.
    pub fn can_replay(&self) -> bool {
        !self.lock().overflowed
    }

    /// Bytes the upstream has pulled so far (while replayable).
    pub fn kept_bytes(&self) -> usize {
        self.lock().kept_len
    }

    /// A body for one attempt: the kept prefix, then the rest of the client's stream.
    pub fn attempt(&self) -> reqwest::Body {
        reqwest::Body::wrap_stream(self.attempt_stream())
    }

    fn attempt_stream(&self) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
        let prefix: Vec<Result<Bytes, std::io::Error>> =
            self.lock().kept.iter().cloned().map(Ok).collect();
        let this = self.clone();
        let rest = futures_util::stream::poll_fn(move |cx| this.poll_source(cx));
        futures_util::StreamExt::chain(futures_util::stream::iter(prefix), rest)
    }

    fn poll_source(&self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, std::io::Error>>> {
        let mut s = self.lock();
        let item = s.source.as_mut().poll_next(cx);
        if let Poll::Ready(Some(Ok(chunk))) = &item {
            if !s.overflowed {
                if s.kept_len + chunk.len() <= s.cap {
                    s.kept_len += chunk.len();
                    s.kept.push(chunk.clone());
                } else {
                    s.overflowed = true;
                    s.kept = Vec::new();
                    s.kept_len = 0;
                }
            }
        }
        item
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    fn chunks(n: usize, size: usize) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send {
        futures_util::stream::iter((0..n).map(move |i| Ok(Bytes::from(vec![i as u8; size]))))
    }

    async fn read_n(s: impl Stream<Item = Result<Bytes, std::io::Error>>, n: usize) -> Vec<u8> {
        let mut s = Box::pin(s);
        let mut out = Vec::new();
        while out.len() < n {
            match s.next().await {
                Some(Ok(b)) => out.extend_from_slice(&b),
                _ => break,
            }
        }
        out
    }

    #[tokio::test]
    async fn a_refused_attempt_is_replayed_whole() {
        let body = ReplayBody::new(chunks(4, 10), 100);
        let first = read_n(body.attempt_stream(), 20).await; // the upstream read 2 chunks, then failed
        assert_eq!(first.len(), 20);
        assert!(body.can_replay());
        let second = read_n(body.attempt_stream(), usize::MAX).await;
        let want: Vec<u8> = (0..4u8).flat_map(|i| vec![i; 10]).collect();
        assert_eq!(second, want, "prefix then the rest, in order");
    }

    #[tokio::test]
    async fn past_the_cap_it_is_not_replayable() {
        let body = ReplayBody::new(chunks(4, 10), 25);
        let _ = read_n(body.attempt_stream(), 30).await;
        assert!(!body.can_replay());
        assert_eq!(
            body.kept_bytes(),
            0,
            "the prefix is dropped, memory bounded"
        );
    }
}
