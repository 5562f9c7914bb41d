//! Helpers the scenarios share: reading `google.rpc` error details and public event streams.

use std::time::Duration;

use coachflow_integration_tests::client::builtin_source;
use coachflow_integration_tests::drive::json_to_value;
use coachflow_integration_tests::{Claims, TENANT, TestServer, default_outputs, parse_model, task_name};
use coachflow_server::proto;
use futures_util::StreamExt as _;
use serde_json::json;
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

/// Writes `markers` into the engagement's content, as its coach, in this order: a
/// kick-off output, a goal's title and measure, a progress note, a commitment, a skip
/// reason (when an optional task is open) and a suspension's reason.
pub(crate) async fn write_content(server: &TestServer, engagement: &str, markers: &[&str; 6]) {
    let mut coach = server.engagements_with(&Claims::person("coach-1", TENANT));
    let model = parse_model(&builtin_source("four-stage"));
    let mut outputs = default_outputs(&model, "kickoff-meeting");
    outputs
        .fields
        .insert("background".to_owned(), json_to_value(&json!(markers[0])));
    coach
        .complete_task(proto::CompleteTaskRequest {
            name: task_name(engagement, "kickoff-meeting"),
            outputs: Some(outputs),
            ..Default::default()
        })
        .await
        .expect("the kick-off is completed");
    coach
        .record_goal(proto::RecordGoalRequest {
            engagement: engagement.to_owned(),
            goal_id: "goal-1".to_owned(),
            title: markers[1].to_owned(),
            measure: markers[1].to_owned(),
            ..Default::default()
        })
        .await
        .expect("a goal");
    coach
        .record_goal_progress(proto::RecordGoalProgressRequest {
            engagement: engagement.to_owned(),
            goal_id: "goal-1".to_owned(),
            progress: 20,
            note: markers[2].to_owned(),
            ..Default::default()
        })
        .await
        .expect("progress");
    coach
        .record_commitment(proto::RecordCommitmentRequest {
            engagement: engagement.to_owned(),
            commitment_id: "c-1".to_owned(),
            description: markers[3].to_owned(),
            ..Default::default()
        })
        .await
        .expect("a commitment");
    coach
        .suspend_engagement(proto::SuspendEngagementRequest {
            name: engagement.to_owned(),
            reason: markers[5].to_owned(),
            ..Default::default()
        })
        .await
        .expect("suspended");
    coach
        .resume_engagement(proto::ResumeEngagementRequest {
            name: engagement.to_owned(),
            ..Default::default()
        })
        .await
        .expect("resumed");
    let optional = server
        .get_engagement(engagement)
        .await
        .tasks
        .into_iter()
        .find(|task| task.optional)
        .map(|task| task.name);
    if let Some(optional) = optional {
        coach
            .skip_task(proto::SkipTaskRequest {
                name: optional,
                reason: markers[4].to_owned(),
                ..Default::default()
            })
            .await
            .expect("skipped");
    }
}

/// Whether `needle` stands anywhere in `bytes`.
pub(crate) fn contains(bytes: &[u8], needle: &str) -> bool {
    bytes.windows(needle.len()).any(|window| window == needle.as_bytes())
}

/// The first of `markers` that stands in `bytes`.
pub(crate) fn found_marker(bytes: &[u8], markers: &[&'static str]) -> Option<&'static str> {
    markers.iter().copied().find(|marker| contains(bytes, marker))
}
