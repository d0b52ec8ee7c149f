//! Streaming bodies across the proxy without collecting them. actix's `web::Payload` is `!Send`
//! while reqwest wants a `Send` stream: a bounded channel ([`CHANNEL_DEPTH`] chunks) bridges the
//! two, fed by the handler itself while the upstream request runs, so a slow upstream slows the
//! client down instead of filling memory. Responses flow back through reqwest's pull-based
//! `bytes_stream`, which actix polls only as fast as the client reads.

use std::future::Future;

use actix_web::web;
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use prometheus::IntCounter;
use tokio::sync::mpsc;

use crate::oci::{ErrorCode, OciError};

/// Chunks in flight between the client's payload and the upstream request. Memory per upload is
/// bounded by this × actix's payload chunk (~100-200 KiB on loopback): 16 measured ~3 MiB per
/// upload (adapter VmHWM 43 MiB during 8 concurrent uploads, 32 MiB with 4), and lets hyper
/// gather more queued chunks per `writev`, which the emulator's upload path ingests faster
/// (1 GiB pushes +12 %, 256 MiB pushes up to 2×, alternating runs; bench/NOTES.md).
pub const CHANNEL_DEPTH: usize = 16;

/// A `Send` request body for reqwest and the (`!Send`) future that feeds it from the payload.
pub fn bridge(
    payload: web::Payload,
    bytes_in: IntCounter,
) -> (reqwest::Body, impl Future<Output = ()>) {
    bridge_after(Bytes::new(), payload, bytes_in)
}

/// [`bridge`] for a body whose first bytes (`prefix`, already read and counted) were looked at
/// before forwarding: they go out first, then the rest of the payload.
pub fn bridge_after(
    prefix: Bytes,
    payload: web::Payload,
    bytes_in: IntCounter,
) -> (reqwest::Body, impl Future<Output = ()>) {
    let (stream, pump) = bridge_stream(prefix, payload, bytes_in);
    (reqwest::Body::wrap_stream(stream), pump)
}

/// The `Send` stream side of the bridge (e.g. for a [`crate::upstream::ReplayBody`]).
pub fn bridge_stream(
    prefix: Bytes,
    mut payload: web::Payload,
    bytes_in: IntCounter,
) -> (
    impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static,
    impl Future<Output = ()>,
) {
    let (tx, mut rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(CHANNEL_DEPTH);
    let stream = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
    let pump = async move {
        if !prefix.is_empty() && tx.send(Ok(prefix)).await.is_err() {
            return;
        }
        while let Some(chunk) = payload.next().await {
            let item = match chunk {
                Ok(b) => {
                    bytes_in.inc_by(b.len() as u64);
                    Ok(b)
                }
                Err(e) => Err(std::io::Error::other(format!("client body: {e}"))),
            };
            let failed = item.is_err();
            if tx.send(item).await.is_err() || failed {
                break;
            }
        }
    };
    (stream, pump)
}

/// Drive the upstream request and the payload pump together; stop reading the client as soon
/// as the upstream has answered (e.g. an early error).
pub async fn drive<T>(send: impl Future<Output = T>, pump: impl Future<Output = ()>) -> T {
    tokio::pin!(send);
    tokio::pin!(pump);
    let mut pumping = true;
    loop {
        tokio::select! {
            out = &mut send => return out,
            _ = &mut pump, if pumping => pumping = false,
        }
    }
}

/// Collect a small body (a manifest) up to `limit` bytes; 413 above it.
pub async fn collect_limited(
    mut payload: web::Payload,
    limit: usize,
    bytes_in: &IntCounter,
) -> Result<Bytes, OciError> {
    let mut buf = BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| {
            OciError::new(
                ErrorCode::ManifestInvalid,
                format!("cannot read the body: {e}"),
            )
        })?;
        bytes_in.inc_by(chunk.len() as u64);
        if buf.len() + chunk.len() > limit {
            return Err(too_large(limit));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

pub fn too_large(limit: usize) -> OciError {
    OciError::new(
        ErrorCode::ManifestInvalid,
        format!("manifest larger than {limit} bytes"),
    )
    .with_status(actix_web::http::StatusCode::PAYLOAD_TOO_LARGE)
}

/// Read a small upstream response body (errors, manifests, JSON lists) up to `limit` bytes.
pub async fn read_limited(resp: reqwest::Response, limit: usize) -> Result<Bytes, String> {
    let mut buf = BytesMut::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            // The cause (with TCR's URL) is for the log; the message may reach a client.
            tracing::warn!(error = %e, "reading an upstream body failed");
            "the upstream's answer was cut off (see the adapter's log)".to_string()
        })?;
        if buf.len() + chunk.len() > limit {
            return Err(format!("upstream body larger than {limit} bytes"));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

/// The upstream response body as a stream for actix, counting bytes out.
pub fn response_stream(
    resp: reqwest::Response,
    bytes_out: IntCounter,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> + 'static {
    resp.bytes_stream().map(move |c| match c {
        Ok(b) => {
            bytes_out.inc_by(b.len() as u64);
            Ok(b)
        }
        Err(e) => Err(std::io::Error::other(e)),
    })
}
