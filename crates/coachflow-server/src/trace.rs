//! W3C trace context from the command to its publish. Each gRPC request (and each timer the
//! runner fires) runs in a [`TraceContext`]: the caller's `traceparent` header continued with
//! a span of ours, or a new trace. Its span records `trace_id`; the outbox rows the command
//! writes keep the `traceparent`, and the relay's publish span records the same `trace_id`
//! and forwards the `traceparent` to consumers (the CloudEvents distributed-tracing
//! extension), so logs of the command, the publish and the consumer join on one trace id.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tracing::Instrument as _;

tokio::task_local! {
    static CURRENT: TraceContext;
}

/// A W3C trace context: `00-{trace id}-{span id}-{flags}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    trace_id: String,
    span_id: String,
    flags: String,
}

impl TraceContext {
    /// A new trace, sampled.
    pub fn root() -> TraceContext {
        TraceContext {
            trace_id: uuid::Uuid::now_v7().simple().to_string(),
            span_id: new_span_id(),
            flags: "01".to_owned(),
        }
    }

    /// A `traceparent` header value of version 00, or `None` if it is malformed (then the
    /// request starts a new trace, as the W3C specification asks).
    pub fn parse(header: &str) -> Option<TraceContext> {
        let mut parts = header.trim().split('-');
        let (version, trace_id, span_id, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let hex = |text: &str, len: usize| {
            text.len() == len && text.bytes().all(|byte| matches!(byte, b'0'..=b'9' | b'a'..=b'f'))
        };
        let valid = version == "00"
            && parts.next().is_none()
            && hex(trace_id, 32)
            && hex(span_id, 16)
            && hex(flags, 2)
            && trace_id.bytes().any(|byte| byte != b'0')
            && span_id.bytes().any(|byte| byte != b'0');
        valid.then(|| TraceContext {
            trace_id: trace_id.to_owned(),
            span_id: span_id.to_owned(),
            flags: flags.to_owned(),
        })
    }

    /// A span of ours in the same trace.
    pub fn child(&self) -> TraceContext {
        TraceContext {
            trace_id: self.trace_id.clone(),
            span_id: new_span_id(),
            flags: self.flags.clone(),
        }
    }

    pub fn trace_id(&self) -> &str {
        &self.trace_id
    }

    /// This context as the remote parent of an exported span.
    fn remote(&self) -> Option<opentelemetry::Context> {
        use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId, TraceState};
        let flags = u8::from_str_radix(&self.flags, 16).ok()?;
        let remote = SpanContext::new(
            TraceId::from_hex(&self.trace_id).ok()?,
            SpanId::from_hex(&self.span_id).ok()?,
            TraceFlags::new(flags),
            true,
            TraceState::default(),
        );
        Some(opentelemetry::Context::new().with_remote_span_context(remote))
    }

    pub fn traceparent(&self) -> String {
        format!("00-{}-{}-{}", self.trace_id, self.span_id, self.flags)
    }
}

fn new_span_id() -> String {
    // The random tail of a UUIDv7: 62 random bits, never all zero in practice.
    let bytes = uuid::Uuid::now_v7().into_bytes();
    crate::hex(&bytes[8..])
}

/// The trace context the current task runs in, if any.
pub fn current() -> Option<TraceContext> {
    CURRENT.try_with(Clone::clone).ok()
}

/// Runs `future` in a new trace, inside a span named `name` that records its trace id.
pub async fn in_new_trace<F: Future>(name: &'static str, future: F) -> F::Output {
    let span = tracing::info_span!("trace", operation = name, trace_id = tracing::field::Empty);
    let context = span_context(&span, None);
    CURRENT.scope(context, future).instrument(span).await
}

/// The trace context of `span`, a child of `parent` (the caller's) or the root of a new
/// trace, recorded in its `trace_id` field. When spans are exported over OTLP it is the
/// exported span's own context, so that logs, outbox rows and exported spans share ids;
/// otherwise a context of ours.
fn span_context(span: &tracing::Span, parent: Option<&TraceContext>) -> TraceContext {
    use opentelemetry::trace::TraceContextExt as _;
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;

    if let Some(parent) = parent.and_then(TraceContext::remote) {
        // Without the OTLP layer there is no span to parent: nothing to do.
        let _ = span.set_parent(parent);
    }
    let otel = span.context();
    let exported = otel.span().span_context().clone();
    let context = if exported.is_valid() {
        TraceContext {
            trace_id: exported.trace_id().to_string(),
            span_id: exported.span_id().to_string(),
            flags: format!("{:02x}", exported.trace_flags().to_u8()),
        }
    } else {
        parent.map_or_else(TraceContext::root, TraceContext::child)
    };
    span.record("trace_id", context.trace_id());
    context
}

/// A layer that runs every gRPC request in a trace context taken from its `traceparent`
/// header, or a new one.
#[derive(Debug, Clone)]
pub struct Traced<S> {
    inner: S,
}

impl<S> Traced<S> {
    pub fn layer() -> impl tower::Layer<S, Service = Traced<S>> + Clone {
        tower::layer::layer_fn(|inner| Traced { inner })
    }
}

impl<S, RequestBody, ResponseBody> tower::Service<http::Request<RequestBody>> for Traced<S>
where
    S: tower::Service<http::Request<RequestBody>, Response = http::Response<ResponseBody>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, context: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(context)
    }

    fn call(&mut self, request: http::Request<RequestBody>) -> Self::Future {
        let parent = request
            .headers()
            .get("traceparent")
            .and_then(|value| value.to_str().ok())
            .and_then(TraceContext::parse);
        let span = tracing::info_span!(
            "grpc",
            path = %request.uri().path(),
            trace_id = tracing::field::Empty,
            engagement = tracing::field::Empty,
        );
        let context = span_context(&span, parent.as_ref());
        let response = CURRENT.scope(context, self.inner.call(request));
        Box::pin(response.instrument(span))
    }
}

/// Names the engagement a request is about in the request's span, so that every log line of
/// the request carries it (lines written before the command's own span, or after it, too).
pub fn record_engagement(engagement: &dyn std::fmt::Display) {
    tracing::Span::current().record("engagement", tracing::field::display(engagement));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_valid_traceparent_is_continued_with_a_new_span() {
        let parent = TraceContext::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        let child = parent.child();
        assert_eq!(child.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        let header = child.traceparent();
        assert!(header.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"), "{header}");
        assert!(header.ends_with("-01"), "{header}");
        assert_ne!(header, parent.traceparent());
        assert_eq!(TraceContext::parse(&header), Some(child));
    }

    #[test]
    fn malformed_traceparents_are_ignored() {
        for header in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        ] {
            assert_eq!(TraceContext::parse(header), None, "{header:?}");
        }
    }

    #[test]
    fn new_traces_are_well_formed_and_distinct() {
        let first = TraceContext::root();
        let second = TraceContext::root();
        assert_ne!(first.trace_id(), second.trace_id());
        assert_eq!(TraceContext::parse(&first.traceparent()), Some(first));
    }
}
