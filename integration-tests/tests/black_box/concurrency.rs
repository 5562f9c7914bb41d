//! Racing and repeated requests: one task completed by fifty callers at once, and
//! `request_id` making repeats harmless.

use coachflow_integration_tests::client::{builtin_source, parent};
use coachflow_integration_tests::history::{self, assert_gapless};
use coachflow_integration_tests::identity::SYSTEM_SCOPES;
use coachflow_integration_tests::{
    Backend, Claims, TENANT, TestServer, default_outputs, engagement_name, parse_model, task_name,
};
use coachflow_server::proto;
use serde_json::json;
use tonic::Code;

use crate::support::{expect_code, reason, violation_fields};

const CALLERS: usize = 50;

async fn fifty_concurrent_completions_of_one_task_succeed_once(backend: Backend) {
    let server = TestServer::start(backend).await;
    let model = server.publish_builtin("four-stage").await;
    server.create_engagement(&model, "race", 1).await;
    let name = engagement_name("race");
    let task = task_name(&name, "kickoff-meeting");
    let outputs = default_outputs(&parse_model(&builtin_source("four-stage")), "kickoff-meeting");

    let mut callers = Vec::with_capacity(CALLERS);
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(CALLERS));
    for _ in 0..CALLERS {
        let mut client = server.engagements_as("person/coach-1");
        let request = proto::CompleteTaskRequest {
            name: task.clone(),
            outputs: Some(outputs.clone()),
            etag: String::new(),
            request_id: String::new(),
        };
        let start = std::sync::Arc::clone(&start);
        callers.push(tokio::spawn(async move {
            start.wait().await;
            client.complete_task(request).await.map(tonic::Response::into_inner)
        }));
    }
    let mut succeeded = Vec::new();
    let mut refused = Vec::new();
    for caller in callers {
        match caller.await.expect("the caller task") {
            Ok(engagement) => succeeded.push(engagement),
            Err(status) => refused.push(status),
        }
    }
    assert_eq!(
        succeeded.len(),
        1,
        "exactly one of {CALLERS} completions must succeed; refusals: {:?}",
        refused
            .iter()
            .map(|status| (status.code(), status.message()))
            .collect::<Vec<_>>()
    );
    for status in &refused {
        match status.code() {
            Code::FailedPrecondition => {
                assert_eq!(reason(status).as_deref(), Some("TASK_NOT_OPEN"), "{status:?}");
                assert!(
                    status.message().contains("kickoff-meeting") && status.message().contains("not open"),
                    "unclear message: {}",
                    status.message()
                );
            }
            Code::Aborted => {
                assert!(
                    reason(status).is_some(),
                    "ABORTED without an ErrorInfo reason: {status:?}"
                );
                assert!(!status.message().is_empty(), "ABORTED without a message: {status:?}");
            }
            other => panic!("a losing completion failed with {other:?}: {status:?}"),
        }
    }

    let aborted = refused.iter().filter(|status| status.code() == Code::Aborted).count();
    eprintln!(
        "{CALLERS} concurrent completions: 1 OK, {} FAILED_PRECONDITION, {aborted} ABORTED",
        refused.len() - aborted
    );

    let engagement = server.get_engagement(&name).await;
    assert!(
        engagement.tasks.iter().all(|open| open.name != task),
        "kickoff-meeting is still open"
    );
    let events = server.history(&name).await;
    assert_gapless(&name, &events);
    assert_eq!(events.len() as u64, engagement.event_count);
    assert_eq!(
        history::with_id(&events, "task_completed", "kickoff-meeting").len(),
        1,
        "the completion must be in the history once"
    );
    assert_eq!(
        succeeded[0].event_count, engagement.event_count,
        "nothing changed after the winner"
    );
}

async fn a_repeated_request_id_takes_effect_once(backend: Backend) {
    let server = TestServer::start(backend).await;
    let model = server.publish_builtin("four-stage").await;
    // The coach, through a system that may start engagements.
    let mut client = server.engagements_with(&Claims::system("coach-1", TENANT, &SYSTEM_SCOPES));

    // CreateEngagement: the repeat returns the same engagement (with its generated id).
    let create = proto::CreateEngagementRequest {
        parent: parent(),
        engagement_id: String::new(),
        model: model.name.clone(),
        model_version: 0,
        timezone: "Europe/Berlin".to_owned(),
        people: vec![
            proto::RoleBinding {
                role: "client".to_owned(),
                people: vec!["client-1".to_owned()],
            },
            proto::RoleBinding {
                role: "coach".to_owned(),
                people: vec!["coach-1".to_owned()],
            },
        ],
        request_id: "create-0001".to_owned(),
    };
    let first = client
        .create_engagement(create.clone())
        .await
        .expect("first create")
        .into_inner();
    let second = client
        .create_engagement(create.clone())
        .await
        .expect("repeated create")
        .into_inner();
    assert_eq!(
        first, second,
        "a repeated CreateEngagement must return the first response"
    );
    let all = server.list_engagements(proto::ListEngagementsRequest::default()).await;
    assert_eq!(
        all.len(),
        1,
        "one engagement from two requests with one request_id: {all:?}"
    );
    let changed = expect_code(
        "CreateEngagement reusing a request_id for another body",
        client
            .create_engagement(proto::CreateEngagementRequest {
                timezone: "UTC".to_owned(),
                ..create.clone()
            })
            .await,
        Code::InvalidArgument,
    );
    assert_eq!(violation_fields(&changed), ["request_id"], "{changed:?}");
    assert_eq!(
        server
            .list_engagements(proto::ListEngagementsRequest::default())
            .await
            .len(),
        1
    );

    // CompleteTask: one task_completed event from two requests.
    let name = first.name.clone();
    let outputs = default_outputs(&parse_model(&builtin_source("four-stage")), "kickoff-meeting");
    let complete = proto::CompleteTaskRequest {
        name: task_name(&name, "kickoff-meeting"),
        outputs: Some(outputs),
        etag: first.etag.clone(),
        request_id: "complete-0001".to_owned(),
    };
    let completed = client
        .complete_task(complete.clone())
        .await
        .expect("first completion")
        .into_inner();
    let repeated = client
        .complete_task(complete.clone())
        .await
        .expect("repeated completion")
        .into_inner();
    assert_eq!(
        completed, repeated,
        "a repeated CompleteTask must return the first response"
    );
    let events = server.history(&name).await;
    assert_gapless(&name, &events);
    assert_eq!(history::with_id(&events, "task_completed", "kickoff-meeting").len(), 1);
    assert_eq!(events.len() as u64, completed.event_count);

    let mut different = complete.clone();
    let mut outputs = different.outputs.take().expect("outputs");
    outputs.fields.insert(
        "expected_outcomes".to_owned(),
        coachflow_integration_tests::drive::json_to_value(&json!("something else")),
    );
    different.outputs = Some(outputs);
    let changed = expect_code(
        "CompleteTask reusing a request_id for other outputs",
        client.complete_task(different).await,
        Code::InvalidArgument,
    );
    assert_eq!(violation_fields(&changed), ["request_id"], "{changed:?}");
    assert!(changed.message().contains("request_id"), "{}", changed.message());

    let after = server.get_engagement(&name).await;
    assert_eq!(
        after.event_count, completed.event_count,
        "the refused reuse changed the engagement"
    );
}

on_both_backends!(
    fifty_concurrent_completions_of_one_task_succeed_once,
    a_repeated_request_id_takes_effect_once,
);
