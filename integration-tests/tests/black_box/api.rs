//! The service's edges: refusals with the right status and a precise field or reason (and
//! a server that keeps serving), graceful shutdown, health, reflection and metrics.

use std::time::Duration;

use coachflow_integration_tests::client::{builtin_source, metric_value, model_name, parent};
use coachflow_integration_tests::{Backend, TestServer, default_outputs, engagement_name, parse_model, task_name};
use coachflow_server::proto;
use futures_util::StreamExt as _;
use serde_json::json;
use tonic::Code;

use crate::support::{engagement_events, expect_code, next_events, reason, violation_fields, violations, watch};

/// Checks that the server still answers after a refusal.
async fn still_serving(server: &TestServer, after: &str) {
    let model = server
        .models()
        .get_model(proto::GetModelRequest {
            name: model_name("four-stage"),
        })
        .await
        .unwrap_or_else(|status| panic!("GetModel failed after {after}: {status:?}"));
    assert_eq!(model.into_inner().version, 1);
}

const BROKEN_YAML: &str =
    "apiVersion: coachflow.dev/v1\nkind: ProcessModel\nmetadata: {key: broken, name: Broken\nspec:\n  phases: [\n";

const INVALID_MODEL: &str = r"apiVersion: coachflow.dev/v1
kind: ProcessModel
metadata:
  key: invalid
  name: Invalid
spec:
  roles:
    - key: client
      required: true
    - key: coach
      required: true
  phases:
    - key: only
      name: Only
      tasks:
        - key: plan
          name: Plan
          kind: document
          assignee: coach
        - key: review
          name: Review
          kind: meeting
          assignee: coach
          after: [idp]
";

async fn bad_input_is_refused_precisely_and_the_server_keeps_serving(backend: Backend) {
    let server = TestServer::builder(backend)
        .set("grpc.max_message_bytes", "65536")
        .start()
        .await;
    let model = server.publish_builtin("four-stage").await;
    let mut models = server.models();
    let mut engagements = server.engagements_as("person/coach-1");

    // Malformed YAML.
    let status = expect_code(
        "CreateModel with malformed YAML",
        models
            .create_model(proto::CreateModelRequest {
                parent: parent(),
                source: BROKEN_YAML.to_owned(),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
    );
    let found = violations(&status);
    assert!(
        found.len() == 1 && found[0].0 == "source.metadata" && found[0].1.contains("line 4"),
        "violations of malformed YAML: {found:?}"
    );
    still_serving(&server, "malformed YAML").await;

    // A model that parses but does not validate.
    let status = expect_code(
        "CreateModel with an unknown task in `after`",
        models
            .create_model(proto::CreateModelRequest {
                parent: parent(),
                source: INVALID_MODEL.to_owned(),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
    );
    let found = violations(&status);
    assert!(
        found.iter().any(
            |(field, description)| field == "source.spec.phases[0].tasks[1].after[0]" && description.contains("idp")
        ),
        "violations of an unknown task reference: {found:?}"
    );
    still_serving(&server, "an invalid model").await;

    // An engagement that does not exist: NOT_FOUND for a reader of every engagement, and
    // for a person the same PERMISSION_DENIED as for an engagement they are not part of.
    let missing = engagement_name("no-such-engagement");
    let status = expect_code(
        "GetEngagement of an unknown engagement",
        server
            .engagements()
            .get_engagement(proto::GetEngagementRequest { name: missing.clone() })
            .await,
        Code::NotFound,
    );
    assert!(status.message().contains("no-such-engagement"), "{}", status.message());
    let status = expect_code(
        "GetEngagement of an unknown engagement by a person",
        engagements
            .get_engagement(proto::GetEngagementRequest { name: missing.clone() })
            .await,
        Code::PermissionDenied,
    );
    assert_eq!(reason(&status).as_deref(), Some("NOT_A_PARTICIPANT"), "{status:?}");
    still_serving(&server, "NOT_FOUND").await;

    // A closed task.
    let started = server.create_engagement(&model, "refusals", 1).await;
    let name = started.name.clone();
    let kickoff = task_name(&name, "kickoff-meeting");
    let outputs = default_outputs(&parse_model(&builtin_source("four-stage")), "kickoff-meeting");
    let completed = engagements
        .complete_task(proto::CompleteTaskRequest {
            name: kickoff.clone(),
            outputs: Some(outputs.clone()),
            ..Default::default()
        })
        .await
        .expect("the first completion")
        .into_inner();
    let status = expect_code(
        "CompleteTask of a completed task",
        engagements
            .complete_task(proto::CompleteTaskRequest {
                name: kickoff.clone(),
                outputs: Some(outputs.clone()),
                ..Default::default()
            })
            .await,
        Code::FailedPrecondition,
    );
    assert_eq!(reason(&status).as_deref(), Some("TASK_NOT_OPEN"), "{status:?}");
    assert!(status.message().contains("kickoff-meeting"), "{}", status.message());
    still_serving(&server, "FAILED_PRECONDITION").await;

    // An output of the wrong type.
    let one_on_one = task_name(&name, "one-on-one-meeting");
    let status = expect_code(
        "CompleteTask with a number for a text output",
        engagements
            .complete_task(proto::CompleteTaskRequest {
                name: one_on_one.clone(),
                outputs: Some(coachflow_integration_tests::json_to_struct(&json!({
                    "clarified_expectations": 42
                }))),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
    );
    assert_eq!(
        violation_fields(&status),
        ["outputs.clarified_expectations"],
        "{:?}",
        violations(&status)
    );
    still_serving(&server, "an output of the wrong type").await;

    // A message over grpc.max_message_bytes.
    let oversized = format!("{}\n# {}\n", builtin_source("four-stage"), "x".repeat(100 * 1024));
    let result = models
        .create_model(proto::CreateModelRequest {
            parent: parent(),
            source: oversized,
            ..Default::default()
        })
        .await;
    let status = result.expect_err("a 100 KB model over a 64 KB limit must be refused");
    // RESOURCE_EXHAUSTED, as the gRPC specification has it for a message over the limit.
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains("65536"), "{}", status.message());
    still_serving(&server, "an oversized message").await;

    // A page token this list did not issue.
    let status = expect_code(
        "ListEngagements with a garbage page token",
        engagements
            .list_engagements(proto::ListEngagementsRequest {
                parent: parent(),
                page_token: "garbage!".to_owned(),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
    );
    assert_eq!(violation_fields(&status), ["page_token"]);
    still_serving(&server, "an invalid page token").await;

    // A malformed resource name.
    let status = expect_code(
        "GetEngagement with a malformed name",
        engagements
            .get_engagement(proto::GetEngagementRequest {
                name: "engagements/refusals".to_owned(),
            })
            .await,
        Code::InvalidArgument,
    );
    assert_eq!(violation_fields(&status), ["name"]);
    still_serving(&server, "a malformed name").await;

    // A stale etag.
    let status = expect_code(
        "RecordGoal with a stale etag",
        engagements
            .record_goal(proto::RecordGoalRequest {
                engagement: name.clone(),
                goal_id: "goal-1".to_owned(),
                title: "Delegate more".to_owned(),
                etag: started.etag.clone(),
                ..Default::default()
            })
            .await,
        Code::Aborted,
    );
    assert_eq!(reason(&status).as_deref(), Some("ETAG_MISMATCH"), "{status:?}");
    assert!(status.message().contains(&started.etag), "{}", status.message());
    still_serving(&server, "a stale etag").await;

    // None of the refusals changed the engagement.
    let after = server.get_engagement(&name).await;
    assert_eq!(after.event_count, completed.event_count);
    assert_eq!(after.etag, completed.etag);
}

async fn sigterm_with_an_open_stream_exits_cleanly(backend: Backend) {
    let mut server = TestServer::builder(backend).set("shutdown.grace", "10s").start().await;
    let model = server.publish_builtin("four-stage").await;
    let started = server.create_engagement(&model, "watched", 1).await;
    let mut stream = watch(&server, engagement_events(&started.name, 0)).await;
    next_events(&mut stream, 1, Duration::from_secs(30)).await;

    let status = server.terminate(Duration::from_secs(10)).await;
    assert!(status.success(), "the server exited with {status} after SIGTERM");
    // The stream ends (with a status telling the client to resume) instead of hanging.
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(item) = stream.next().await {
            if item.is_err() {
                break;
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the event stream stayed open after the server exited");
}

async fn health_and_reflection_answer(backend: Backend) {
    use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};
    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };

    let server = TestServer::start(backend).await;
    let mut health = HealthClient::new(server.channel());
    for service in [
        "",
        "coachflow.v1.ModelService",
        "coachflow.v1.EngagementService",
        "coachflow.v1.EventService",
    ] {
        let answer = health
            .check(HealthCheckRequest {
                service: service.to_owned(),
            })
            .await
            .unwrap_or_else(|status| panic!("health check of '{service}' failed: {status:?}"))
            .into_inner();
        assert_eq!(answer.status(), ServingStatus::Serving, "health of '{service}'");
    }

    let mut reflection = ServerReflectionClient::new(server.channel());
    let requests = [
        MessageRequest::ListServices(String::new()),
        MessageRequest::FileContainingSymbol("coachflow.v1.EngagementService".to_owned()),
    ]
    .map(|request| ServerReflectionRequest {
        host: String::new(),
        message_request: Some(request),
    });
    let mut answers = reflection
        .server_reflection_info(tokio_stream::iter(requests))
        .await
        .expect("reflection answers")
        .into_inner();
    let listed = answers.next().await.expect("a first answer").expect("services");
    let Some(MessageResponse::ListServicesResponse(listed)) = listed.message_response else {
        panic!("not a service list: {listed:?}");
    };
    let services: Vec<String> = listed.service.into_iter().map(|service| service.name).collect();
    for expected in [
        "coachflow.v1.ModelService",
        "coachflow.v1.EngagementService",
        "coachflow.v1.EventService",
        "grpc.health.v1.Health",
    ] {
        assert!(
            services.iter().any(|name| name == expected),
            "{expected} is not listed: {services:?}"
        );
    }
    let file = answers.next().await.expect("a second answer").expect("a file");
    let Some(MessageResponse::FileDescriptorResponse(files)) = file.message_response else {
        panic!("not a file descriptor answer: {file:?}");
    };
    assert!(!files.file_descriptor_proto.is_empty());
}

async fn metrics_count_requests_by_method_and_code(backend: Backend) {
    let server = TestServer::start(backend).await;
    let model = server.publish_builtin("four-stage").await;
    server.create_engagement(&model, "counted", 1).await;
    let _ = server
        .engagements()
        .get_engagement(proto::GetEngagementRequest {
            name: engagement_name("not-there"),
        })
        .await;
    let metrics = server.scrape_metrics().await;
    let count = |method: &str, code: &str| {
        metric_value(
            &metrics,
            "coachflow_grpc_requests_total",
            &[("method", method), ("code", code)],
        )
    };
    assert!(
        count("CreateEngagement", "OK").unwrap_or_default() >= 1.0,
        "no CreateEngagement OK sample in:\n{metrics}"
    );
    assert!(
        count("CreateModel", "OK").unwrap_or_default() >= 1.0,
        "no CreateModel OK sample in:\n{metrics}"
    );
    assert!(
        count("GetEngagement", "NOT_FOUND").unwrap_or_default() >= 1.0,
        "no GetEngagement NOT_FOUND sample in:\n{metrics}"
    );
    assert!(metrics.contains("coachflow_grpc_request_duration_seconds"), "{metrics}");
}

on_both_backends!(
    bad_input_is_refused_precisely_and_the_server_keeps_serving,
    sigterm_with_an_open_stream_exits_cleanly,
    health_and_reflection_answer,
    metrics_count_requests_by_method_and_code,
);
