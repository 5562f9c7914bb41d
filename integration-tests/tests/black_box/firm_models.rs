//! A firm's own model, as a new user writes it from the design: snake_case keys, a loop,
//! a gate on outputs and goals; and the refusal of a model with many problems, read by a
//! client with the default 8 KiB metadata limit of grpc-core and grpc-java.

use std::time::Duration;

use coachflow_integration_tests::client::{SERVICE_ACTOR, instance_of};
use coachflow_integration_tests::contract::Contract;
use coachflow_integration_tests::history::{self, assert_gapless};
use coachflow_integration_tests::{
    Backend, Claims, Driver, TENANT, TestServer, actor_claims, engagement_name, json_to_struct,
};
use coachflow_server::proto::{self, engagement::State, model_service_client::ModelServiceClient};
use serde_json::{Value, json};
use tonic::Code;
use tonic::transport::Endpoint;

use crate::support::{expect_code, next_events, violations, watch};

/// A model of the firm's own, in `integration-tests/models/`.
pub(crate) fn test_model_source(key: &str) -> String {
    let path = format!("{}/models/{key}.yaml", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("cannot read {path}: {error}"))
}

/// The structured CloudEvent a `WatchEvents` item stands for, as the contract describes it.
fn structured(event: &proto::PublicEvent) -> Value {
    let time = event.time.expect("an event has a time");
    let time =
        chrono::DateTime::from_timestamp(time.seconds, u32::try_from(time.nanos).unwrap_or(0)).expect("a valid time");
    let data = event
        .data
        .as_ref()
        .map(coachflow_server::convert::struct_to_json)
        .unwrap_or_default();
    json!({
        "id": event.id,
        "source": event.source,
        "specversion": event.spec_version,
        "type": event.r#type,
        "subject": event.subject,
        "time": coachflow_engine::timestamp(time),
        "datacontenttype": "application/json",
        "data": data,
    })
}

async fn a_snake_case_grow_model_runs_end_to_end_with_a_loop(backend: Backend) {
    let server = TestServer::start(backend).await;
    let source = test_model_source("grow");
    let model = server.publish(&source).await;
    assert_eq!(model.name, "tenants/acme/models/grow_coaching");
    assert_eq!(
        model.phases.iter().map(|phase| phase.key.as_str()).collect::<Vec<_>>(),
        ["goal", "reality", "options", "will", "sustain"]
    );
    let started = server.create_engagement(&model, "grow-1", 2).await;
    let name = engagement_name("grow-1");
    assert_eq!(started.phase.as_ref().map(|phase| phase.key.as_str()), Some("goal"));
    let open: Vec<&str> = started
        .tasks
        .iter()
        .filter(|task| task.state() == proto::task::State::Open)
        .map(|task| instance_of(&task.name))
        .collect();
    assert_eq!(open, ["chemistry_call"]);

    let mut events = watch(
        &server,
        proto::WatchEventsRequest {
            parent: "tenants/acme".to_owned(),
            start_position: 0,
            engagement: name.clone(),
            types: Vec::new(),
        },
    )
    .await;

    // Through Goal, Reality and Options, up to the commitment review of Will.
    let mut driver = Driver::new(&server, &source, &name);
    driver
        .drive_until("the commitment review", 200, |engagement| {
            engagement
                .tasks
                .iter()
                .any(|task| instance_of(&task.name) == "commitment_review" && task.state() == proto::task::State::Open)
        })
        .await;
    // The plan does not hold: back to Options, second iteration.
    let looped = server
        .engagements_as("person/client-1")
        .complete_task(proto::CompleteTaskRequest {
            name: format!("{name}/tasks/commitment_review"),
            outputs: Some(json_to_struct(&json!({"plan_holds": false}))),
            etag: String::new(),
            request_id: String::new(),
        })
        .await
        .unwrap_or_else(|status| panic!("CompleteTask commitment_review failed: {status:?}"))
        .into_inner();
    let phase = looped.phase.clone().expect("a phase");
    assert_eq!((phase.key.as_str(), phase.iteration), ("options", 2));
    assert!(
        looped
            .tasks
            .iter()
            .any(|task| instance_of(&task.name) == "options_session@2"),
        "{:?}",
        looped.tasks
    );

    driver.drive_to_completion(400).await;
    let done = server.get_engagement(&name).await;
    assert_eq!(done.state(), State::Completed);
    let reached: Vec<&str> = done.milestones.iter().map(|milestone| milestone.key.as_str()).collect();
    for milestone in [
        "chemistry_confirmed",
        "goals_agreed",
        "reality_checked",
        "plan_committed",
        "coaching_sustained",
    ] {
        assert!(reached.contains(&milestone), "{milestone} not reached: {reached:?}");
    }
    let history = server.history(&name).await;
    assert_gapless(&name, &history);
    // Goal, Reality, Options, Will, Options again, Will again, Sustain.
    assert_eq!(history::count(&history, "phase_entered"), 7);

    // Every public event, with its snake_case keys, is as the contract describes it.
    let public = history
        .iter()
        .filter(|event| {
            [
                "engagement_started",
                "engagement_suspended",
                "engagement_resumed",
                "engagement_completed",
                "engagement_cancelled",
                "phase_entered",
                "phase_completed",
                "task_opened",
                "task_completed",
                "task_skipped",
                "task_due_soon",
                "task_overdue",
                "task_escalated",
                "milestone_reached",
                "goal_set",
                "goal_achieved",
            ]
            .contains(&event.r#type.as_str())
        })
        .count();
    let received = next_events(&mut events, public, Duration::from_secs(30)).await;
    let contract = Contract::load();
    for event in &received {
        let body = serde_json::to_vec(&structured(event)).expect("JSON");
        if let Err(errors) = contract.validate_structured(&body) {
            panic!("{} breaks docs/asyncapi.yaml: {errors:#?}", event.id);
        }
    }
    let keys: Vec<String> = received
        .iter()
        .filter(|event| event.r#type == "dev.coachflow.task.completed.v1")
        .filter_map(|event| crate::support::struct_string(event.data.as_ref(), "key").map(str::to_owned))
        .collect();
    assert!(keys.contains(&"goal_statement".to_owned()), "{keys:?}");
}

/// A model with `count` problems: tasks that come after tasks that do not exist.
fn model_with_problems(count: usize) -> String {
    let tasks: String = (0..count)
        .map(|index| {
            format!(
                "        - {{key: task_{index}, name: Task {index}, kind: session, after: [missing_task_number_{index}]}}\n"
            )
        })
        .collect();
    format!(
        "apiVersion: coachflow.dev/v1\nkind: ProcessModel\nmetadata: {{key: broken, name: Broken}}\nspec:\n  roles: [{{key: coach}}]\n  phases:\n    - key: only\n      name: Only\n      tasks:\n{tasks}"
    )
}

async fn a_refusal_with_many_problems_reaches_a_client_with_the_default_metadata_limit(backend: Backend) {
    let server = TestServer::start(backend).await;
    // grpc-core's and grpc-java's default: 8 KiB of headers and trailers.
    let channel = Endpoint::from_shared(format!("http://{}", server.grpc_address()))
        .expect("a URI")
        .http2_max_header_list_size(8 * 1024)
        .connect()
        .await
        .expect("connect");
    let bearer = server.bearer(&actor_claims(SERVICE_ACTOR));
    let mut client = ModelServiceClient::with_interceptor(channel, bearer);
    for count in [14, 26, 40, 400] {
        let status = expect_code(
            &format!("CreateModel with {count} problems"),
            client
                .create_model(proto::CreateModelRequest {
                    parent: "tenants/acme".to_owned(),
                    source: model_with_problems(count),
                    format: proto::ModelFormat::Unspecified.into(),
                    request_id: String::new(),
                })
                .await,
            Code::InvalidArgument,
        );
        let listed = violations(&status);
        assert!(
            status
                .message()
                .starts_with("source.spec.phases[0].tasks[0].after[0]: unknown task 'missing_task_number_0' (and"),
            "{}",
            status.message()
        );
        assert!(status.message().len() < 512, "{}", status.message());
        if count <= 40 {
            assert_eq!(listed.len(), count, "every problem is listed: {listed:?}");
            for (index, (field, description)) in listed.iter().enumerate() {
                assert_eq!(field, &format!("source.spec.phases[0].tasks[{index}].after[0]"));
                assert_eq!(description, &format!("unknown task 'missing_task_number_{index}'"));
            }
        } else {
            let (field, last) = listed.last().expect("violations");
            assert!(
                field.is_empty() && last.starts_with("… ") && last.ends_with(" more not listed here"),
                "{last}"
            );
            let more: usize = last
                .trim_start_matches("… ")
                .split(' ')
                .next()
                .and_then(|number| number.parse().ok())
                .expect("a count");
            assert_eq!(listed.len() - 1 + more, count);
        }
    }
    // ValidateModel returns every one of them, in the response.
    let validated = client
        .validate_model(proto::ValidateModelRequest {
            parent: "tenants/acme".to_owned(),
            source: model_with_problems(400),
            format: proto::ModelFormat::Unspecified.into(),
        })
        .await
        .expect("ValidateModel")
        .into_inner();
    assert_eq!(validated.problems.len(), 400);
}

/// The trap of a firm's first model, through the binary: the warning when it is published,
/// the engagement caught in it, the sponsor's premature sign-off refused, and the coach's
/// repair.
async fn an_engagement_caught_by_its_gate_is_repaired_by_the_coach(backend: Backend) {
    let server = TestServer::start(backend).await;
    let source = test_model_source("agreement");
    let model = server.publish(&source).await;
    assert_eq!(model.warnings.len(), 1, "{:?}", model.warnings);
    assert_eq!(model.warnings[0].path, "spec.phases[0].exit.when");
    assert!(
        model.warnings[0].message.contains("outputs.agreement.signed"),
        "{:?}",
        model.warnings
    );
    let id = "trapped";
    let name = engagement_name(id);
    server.create_engagement(&model, id, 1).await;
    let coach = Claims::person("coach-1", TENANT);
    let sponsor = Claims::person("sponsor-1", TENANT);
    let agreement = format!("{name}/tasks/agreement");
    let completed = server
        .engagements_with(&coach)
        .complete_task(proto::CompleteTaskRequest {
            name: agreement.clone(),
            outputs: Some(json_to_struct(&json!({"notes": "signed on paper"}))),
            ..Default::default()
        })
        .await
        .expect("the coach completes the agreement without `signed`")
        .into_inner();
    let gate = completed.phase.and_then(|phase| phase.gate).expect("a gate");
    assert!(!gate.ready && !gate.satisfied, "{gate:?}");
    assert!(completed.tasks.is_empty(), "nothing left open: {:?}", completed.tasks);

    let sign_off = || proto::SignOffPhaseRequest {
        engagement: name.clone(),
        role: "sponsor".to_owned(),
        person: "sponsor-1".to_owned(),
        ..Default::default()
    };
    let status = expect_code(
        "a sign-off of a condition that does not hold",
        server.engagements_with(&sponsor).sign_off_phase(sign_off()).await,
        Code::FailedPrecondition,
    );
    assert_eq!(crate::support::reason(&status).as_deref(), Some("GATE_NOT_READY"));
    let status = expect_code(
        "a sponsor repairing",
        server
            .engagements_with(&sponsor)
            .reopen_task(proto::ReopenTaskRequest {
                name: agreement.clone(),
                reason: "sponsor wants to".to_owned(),
                ..Default::default()
            })
            .await,
        Code::PermissionDenied,
    );
    assert_eq!(crate::support::reason(&status).as_deref(), Some("ROLE_REQUIRED"));

    let reopened = server
        .engagements_with(&coach)
        .reopen_task(proto::ReopenTaskRequest {
            name: agreement.clone(),
            reason: "REPAIR-MARKER the signature box was missed".to_owned(),
            ..Default::default()
        })
        .await
        .expect("the coach reopens the agreement")
        .into_inner();
    assert!(
        reopened
            .tasks
            .iter()
            .any(|task| task.name == agreement && task.state() == proto::task::State::Open)
    );
    server
        .engagements_with(&coach)
        .complete_task(proto::CompleteTaskRequest {
            name: agreement.clone(),
            outputs: Some(json_to_struct(&json!({"signed": true}))),
            ..Default::default()
        })
        .await
        .expect("completed with the output");
    let signed = server
        .engagements_with(&sponsor)
        .sign_off_phase(sign_off())
        .await
        .expect("the sponsor signs off a condition that holds")
        .into_inner();
    assert_eq!(signed.phase.map(|phase| phase.key), Some("coaching".to_owned()));

    // The repair is audited: who and why for the coach, who (not why) for the sponsor.
    let history = server.history(&name).await;
    let repair = history
        .iter()
        .find(|event| event.r#type == "task_reopened")
        .expect("the repair");
    assert_eq!(repair.actor, "person/coach-1");
    let sponsor_history = server
        .engagements_with(&sponsor)
        .get_history(proto::GetHistoryRequest {
            name: name.clone(),
            page_size: 1000,
            ..Default::default()
        })
        .await
        .expect("the sponsor's history")
        .into_inner();
    let repair = sponsor_history
        .events
        .iter()
        .find(|event| event.r#type == "task_reopened")
        .expect("the repair, for the sponsor");
    assert_eq!(repair.withheld_fields, ["reason"]);
    assert_eq!(repair.actor, "person/coach-1");
}

on_both_backends!(
    an_engagement_caught_by_its_gate_is_repaired_by_the_coach,
    a_snake_case_grow_model_runs_end_to_end_with_a_loop,
    a_refusal_with_many_problems_reaches_a_client_with_the_default_metadata_limit,
);
