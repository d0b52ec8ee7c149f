//! Metrics of the upstream client: latency per route, token cache hits and misses, retries by
//! cause. Registered into the adapter's registry by `app`.

use prometheus::{HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry};

#[derive(Clone)]
pub struct UpstreamMetrics {
    /// `tcr_adapter_upstream_seconds{route,status}`: time to the upstream's response head.
    pub latency: HistogramVec,
    /// `tcr_adapter_upstream_token_cache_total{result}`: `hit` or `miss`.
    pub token_cache: IntCounterVec,
    /// `token_cache{result="hit"}` and `{result="miss"}`, resolved once (hot path).
    pub token_hit: IntCounter,
    pub token_miss: IntCounter,
    /// `tcr_adapter_upstream_retries_total{cause}`: `unauthorized`, `429`, `503`, `network`, ...
    pub retries: IntCounterVec,
    /// `tcr_adapter_upstream_retry_giveups_total{cause}`: retryable failures passed on, because
    /// the body could not be sent again (`streamed`, `replay_overflow`), the attempts were used
    /// up (`attempts`) or the retry budget was spent (`budget`).
    pub giveups: IntCounterVec,
}

impl UpstreamMetrics {
    pub fn new(registry: &Registry) -> Self {
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "tcr_adapter_upstream_seconds",
                "Latency of upstream requests to the response head",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ]),
            &["route", "status"],
        )
        .expect("valid metric");
        let token_cache = IntCounterVec::new(
            Opts::new(
                "tcr_adapter_upstream_token_cache_total",
                "Upstream bearer token cache lookups by result",
            ),
            &["result"],
        )
        .expect("valid metric");
        let retries = IntCounterVec::new(
            Opts::new(
                "tcr_adapter_upstream_retries_total",
                "Upstream requests retried, by cause",
            ),
            &["cause"],
        )
        .expect("valid metric");
        let giveups = IntCounterVec::new(
            Opts::new(
                "tcr_adapter_upstream_retry_giveups_total",
                "Retryable upstream failures passed on to the client, by reason",
            ),
            &["cause"],
        )
        .expect("valid metric");
        for c in [
            Box::new(latency.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(token_cache.clone()),
            Box::new(retries.clone()),
            Box::new(giveups.clone()),
        ] {
            let _ = registry.register(c);
        }
        // Known causes start at 0, so that rate() and alerts work before the first failure.
        for cause in ["network", "unauthorized", "429", "502", "503", "504"] {
            retries.with_label_values(&[cause]);
        }
        for cause in ["streamed", "replay_overflow", "attempts", "budget"] {
            giveups.with_label_values(&[cause]);
        }
        UpstreamMetrics {
            latency,
            token_hit: token_cache.with_label_values(&["hit"]),
            token_miss: token_cache.with_label_values(&["miss"]),
            token_cache,
            retries,
            giveups,
        }
    }
}
