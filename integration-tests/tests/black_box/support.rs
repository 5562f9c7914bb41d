//! Helpers the scenarios share: reading `google.rpc` error details and public event streams.

use std::time::Duration;

use coachflow_integration_tests::TestServer;
use coachflow_server::proto;
use futures_util::StreamExt as _;
use tonic::{Code, Status};
use tonic_types::StatusExt as _;

/// The fields of the status's `google.rpc.BadRequest` violations.
pub(crate) fn violation_fields(status: &Status) -> Vec<String> {
    status
        .get_details_bad_request()
        .map(|bad_request| {
            bad_request
                .field_violations
                .into_iter()
                .map(|violation| violation.field)
                .collect()
        })
        .unwrap_or_default()
}

/// `(field, description)` of every violation.
pub(crate) fn violations(status: &Status) -> Vec<(String, String)> {
    status
        .get_details_bad_request()
        .map(|bad_request| {
            bad_request
                .field_violations
                .into_iter()
                .map(|violation| (violation.field, violation.description))
                .collect()
        })
        .unwrap_or_default()
}

/// The status's `google.rpc.ErrorInfo` reason.
pub(crate) fn reason(status: &Status) -> Option<String> {
    status.get_details_error_info().map(|info| info.reason)
}

/// Panics unless `result` failed with `code`; returns the status.
pub(crate) fn expect_code<T: std::fmt::Debug>(what: &str, result: Result<T, Status>, code: Code) -> Status {
    match result {
        Ok(value) => panic!("{what}: expected {code:?}, got OK: {value:?}"),
        Err(status) => {
            assert_eq!(
                status.code(),
                code,
                "{what}: expected {code:?}, got {:?}: {}",
                status.code(),
                status.message()
            );
            status
        }
    }
}

/// A string field of a `Struct`.
pub(crate) fn struct_string<'a>(data: Option<&'a prost_types::Struct>, field: &str) -> Option<&'a str> {
    match data?.fields.get(field)?.kind.as_ref()? {
        prost_types::value::Kind::StringValue(text) => Some(text),
        _ => None,
    }
}

/// Opens a `WatchEvents` stream.
pub(crate) async fn watch(
    server: &TestServer,
    request: proto::WatchEventsRequest,
) -> tonic::Streaming<proto::PublicEvent> {
    server
        .events()
        .watch_events(request)
        .await
        .unwrap_or_else(|status| panic!("WatchEvents failed: {status:?}"))
        .into_inner()
}

/// The next `count` events of a stream, failing if they take longer than `timeout` in all.
pub(crate) async fn next_events(
    stream: &mut tonic::Streaming<proto::PublicEvent>,
    count: usize,
    timeout: Duration,
) -> Vec<proto::PublicEvent> {
    let mut events = Vec::with_capacity(count);
    let deadline = tokio::time::Instant::now() + timeout;
    while events.len() < count {
        match tokio::time::timeout_at(deadline, stream.next()).await {
            Ok(Some(Ok(event))) => events.push(event),
            Ok(Some(Err(status))) => panic!("the stream failed after {} events: {status:?}", events.len()),
            Ok(None) => panic!("the stream ended after {} of {count} events", events.len()),
            Err(_) => panic!(
                "only {} of {count} events arrived within {timeout:?}: {:?}",
                events.len(),
                events
                    .iter()
                    .map(|event| (event.sequence, &event.r#type))
                    .collect::<Vec<_>>()
            ),
        }
    }
    events
}

/// A request selecting one engagement's events from `start_position`.
pub(crate) fn engagement_events(engagement: &str, start_position: u64) -> proto::WatchEventsRequest {
    proto::WatchEventsRequest {
        parent: "tenants/acme".to_owned(),
        start_position,
        engagement: engagement.to_owned(),
        types: Vec::new(),
    }
}
