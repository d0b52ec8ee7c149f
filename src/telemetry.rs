//! Logging setup (`tracing`, text or JSON) and the Prometheus text rendering shared by every
//! `/metrics` endpoint. Metric families themselves live with the component that owns them.
//!
//! Client protocol errors (a malformed request line or header, TLS spoken to a plain-HTTP port —
//! skopeo tries TLS first on every connection) are the client's fault, yet actix's HTTP/1
//! dispatcher logs them at ERROR. Operators alert on ERROR: such events are counted
//! (`tcr_adapter_client_protocol_errors_total`) and logged again at debug, never at ERROR.

use std::sync::OnceLock;

use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::{LogConfig, LogFormat};

/// The target of actix's HTTP/1 connection errors.
const ACTIX_H1: &str = "actix_http::h1";

/// `tcr_adapter_client_protocol_errors_total` (one per process; registered by the adapter).
pub fn client_protocol_errors() -> &'static prometheus::IntCounter {
    static C: OnceLock<prometheus::IntCounter> = OnceLock::new();
    C.get_or_init(|| {
        prometheus::IntCounter::new(
            "tcr_adapter_client_protocol_errors_total",
            "Connections closed for a client protocol error (malformed request, TLS on a plain port)",
        )
        .expect("valid metric")
    })
}

/// Counts actix's HTTP/1 connection errors and logs them at debug under our own target.
struct ClientProtocolErrors;

impl<S: Subscriber> Layer<S> for ClientProtocolErrors {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let meta = event.metadata();
        if !meta.target().starts_with(ACTIX_H1) || *meta.level() > tracing::Level::WARN {
            return;
        }
        client_protocol_errors().inc();
        let mut message = String::new();
        event.record(&mut MessageOf(&mut message));
        tracing::debug!(target: "tcr_adapter::client_protocol", error = %message, "client protocol error");
    }
}

struct MessageOf<'a>(&'a mut String);

impl tracing::field::Visit for MessageOf<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            *self.0 = format!("{value:?}");
        }
    }
}

/// Install the global subscriber once; later calls (tests) are no-ops.
pub fn init_logging(cfg: &LogConfig) {
    let filter = EnvFilter::try_new(&cfg.level)
        .unwrap_or_else(|_| EnvFilter::new("info"))
        .add_directive(format!("{ACTIX_H1}=off").parse().expect("static directive"));
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt: Box<dyn Layer<_> + Send + Sync> = match cfg.format {
        // serde_json escapes every control character in a value.
        LogFormat::Json => Box::new(fmt.json().flatten_event(true).with_filter(filter)),
        LogFormat::Text => Box::new(fmt.fmt_fields(escaped_fields()).with_filter(filter)),
    };
    let counting = ClientProtocolErrors.with_filter(
        tracing_subscriber::filter::Targets::new().with_target(ACTIX_H1, tracing::Level::WARN),
    );
    let _ = tracing_subscriber::registry()
        .with(fmt)
        .with(counting)
        .try_init();
}

/// Text-log fields with every control character of a value escaped (`\n`, `\r`, `\u{1b}`…):
/// a value that came from a request (a path, a project name) can neither start a forged line
/// nor move the terminal's cursor. Field names are the code's own.
pub fn escaped_fields(
) -> impl for<'w> tracing_subscriber::fmt::FormatFields<'w> + Send + Sync + 'static {
    use tracing_subscriber::field::MakeExt;
    tracing_subscriber::fmt::format::debug_fn(|w, field, value| {
        let raw = format!("{value:?}");
        let text = escape_controls(&raw);
        match field.name() {
            "message" => write!(w, "{text}"),
            name => write!(w, "{name}={text}"),
        }
    })
    .delimited(" ")
}

/// `text` with control characters (and the Unicode line and paragraph separators) escaped.
pub fn escape_controls(text: &str) -> std::borrow::Cow<'_, str> {
    let unsafe_char = |c: char| c.is_control() || c == '\u{2028}' || c == '\u{2029}';
    if !text.chars().any(unsafe_char) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if unsafe_char(c) {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Render a registry in the Prometheus text exposition format.
pub fn render(registry: &prometheus::Registry) -> String {
    use prometheus::Encoder;
    let mut buf = Vec::new();
    let encoder = prometheus::TextEncoder::new();
    if encoder.encode(&registry.gather(), &mut buf).is_err() {
        return String::new();
    }
    String::from_utf8(buf).unwrap_or_default()
}

/// `GET /metrics` response for a registry.
pub fn metrics_response(registry: &prometheus::Registry) -> actix_web::HttpResponse {
    actix_web::HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(render(registry))
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::layer::SubscriberExt;

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_value_with_line_breaks_stays_on_its_line() {
        let buf = Buf::default();
        let w = buf.clone();
        let layer = tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .with_writer(move || w.clone())
            .fmt_fields(super::escaped_fields());
        let subscriber = tracing_subscriber::registry().with(layer);
        let forged = "x\n1999-01-01T00:00:00Z  INFO audit: event=\"chart_deleted\"\r\u{1b}[2K";
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(path = %forged, other = ?forged, "request {forged}");
        });
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(!text.contains('\r') && !text.contains('\u{1b}'), "{text:?}");
        assert!(text.contains("x\\n1999-01-01"), "{text}");
    }
}
