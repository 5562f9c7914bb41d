//! OpenTelemetry: with `telemetry.otlp.endpoint` set, a command is one exported trace, joined
//! to the caller's `traceparent`, whose spans cover the gRPC handler, the store commit and
//! the relay's publish; the CloudEvent carries the same trace. The collector here is the
//! test's own: the OTLP trace service from the OpenTelemetry protos.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use coachflow_integration_tests::amqp::{Consumer, TestExchange};
use coachflow_integration_tests::client::builtin_source;
use coachflow_integration_tests::drive::assignee_actor;
use coachflow_integration_tests::{Backend, TestServer, default_outputs, parse_model, wait_until};
use coachflow_server::proto;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};

const WAIT: Duration = Duration::from_secs(60);

/// One span as the collector received it, ids in hex.
#[derive(Debug, Clone)]
struct ReceivedSpan {
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    name: String,
}

/// An OTLP/gRPC trace collector that keeps what it is sent.
#[derive(Debug, Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<ReceivedSpan>>>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let hex = |bytes: &[u8]| bytes.iter().map(|byte| format!("{byte:02x}")).collect::<String>();
        let mut spans = self.spans.lock().unwrap();
        for resource in request.into_inner().resource_spans {
            for scope in resource.scope_spans {
                for span in scope.spans {
                    spans.push(ReceivedSpan {
                        trace_id: hex(&span.trace_id),
                        span_id: hex(&span.span_id),
                        parent_span_id: hex(&span.parent_span_id),
                        name: span.name,
                    });
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

impl Collector {
    /// Listens on a free port of loopback; returns the endpoint to give the server.
    async fn start(&self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let service = TraceServiceServer::new(self.clone());
        tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
                .await;
        });
        format!("http://{address}")
    }

    fn of_trace(&self, trace_id: &str) -> Vec<ReceivedSpan> {
        self.spans
            .lock()
            .unwrap()
            .iter()
            .filter(|span| span.trace_id == trace_id)
            .cloned()
            .collect()
    }
}

async fn a_command_is_one_trace_from_handler_to_publish(backend: Backend) {
    let collector = Collector::default();
    let endpoint = collector.start().await;
    let exchange = TestExchange::new("otlp");
    let mut consumer = Consumer::bind(exchange.url(), exchange.name(), &["#"]).await;
    let mut server = TestServer::builder(backend)
        .set("telemetry.otlp.endpoint", &endpoint)
        .set("broker.url", exchange.url())
        .set("broker.exchange", exchange.name())
        .set("broker.poll_interval", "100ms")
        .start()
        .await;
    let source = builtin_source("four-stage");
    let model = server.publish(&source).await;
    let engagement = server.create_engagement(&model, "traced", 1).await;
    let task = engagement
        .tasks
        .iter()
        .find(|task| task.state() == proto::task::State::Open)
        .expect("an open task");

    let (trace_id, caller_span) = ("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331");
    let mut request = tonic::Request::new(proto::CompleteTaskRequest {
        name: task.name.clone(),
        outputs: Some(default_outputs(&parse_model(&source), &task.key)),
        etag: String::new(),
        request_id: String::new(),
    });
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{trace_id}-{caller_span}-01").parse().unwrap(),
    );
    server
        .engagements_as(&assignee_actor(task))
        .complete_task(request)
        .await
        .unwrap_or_else(|status| panic!("CompleteTask failed: {status:?}"));

    // The relay publishes the completion in the same trace.
    let received = consumer
        .collect_until(WAIT, |received| {
            received.iter().any(|message| {
                message
                    .header_str("cloudEvents_traceparent")
                    .is_some_and(|traceparent| traceparent.contains(trace_id))
            })
        })
        .await;
    assert!(!received.is_empty());
    // A graceful stop exports what is still buffered.
    let exited = server.terminate(WAIT).await;
    assert!(exited.success(), "{exited:?}");

    let spans = wait_until("the command's spans at the collector", WAIT, || async {
        let spans = collector.of_trace(trace_id);
        let names: Vec<&str> = spans.iter().map(|span| span.name.as_str()).collect();
        ["grpc", "commit", "publish"]
            .iter()
            .all(|name| names.contains(name))
            .then_some(spans)
    })
    .await;
    let find = |name: &str| spans.iter().find(|span| span.name == name).unwrap();
    let handler = find("grpc");
    assert_eq!(
        handler.parent_span_id, caller_span,
        "the handler continues the caller's span: {spans:#?}"
    );
    let by_id = |id: &str| spans.iter().find(|span| span.span_id == id);
    // The commit runs inside the handler (through the command's own span).
    let mut ancestor = by_id(&find("commit").parent_span_id);
    while let Some(span) = ancestor
        && span.span_id != handler.span_id
    {
        ancestor = by_id(&span.parent_span_id);
    }
    assert!(ancestor.is_some(), "the commit is not under the handler: {spans:#?}");
    // The publish, in the relay, continues the command's trace from the outbox row.
    assert_eq!(find("publish").parent_span_id, handler.span_id, "{spans:#?}");
    exchange.cleanup().await;
}

on_both_backends!(a_command_is_one_trace_from_handler_to_publish);
