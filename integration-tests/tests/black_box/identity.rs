//! Identity through the real binary with a JWKS file the tests' issuer writes: every RPC by
//! every kind of principal, allowed or refused with the right status; coaching content
//! that never reaches those who may not see it, searched for in the raw bytes of every
//! reply; every kind of bad token; keys rotated without a restart; a system acting for a
//! person; TLS and mutual TLS.

use std::time::Duration;

use coachflow_integration_tests::client::{builtin_source, model_name, parent};
use coachflow_integration_tests::identity::SYSTEM_SCOPES;
use coachflow_integration_tests::{
    Backend, Claims, KeyKind, TENANT, TestServer, default_outputs, engagement_name, parse_model, task_name,
};
use coachflow_server::proto;
use coachflow_server::proto::google::longrunning;
use futures_util::StreamExt as _;
use prost::Message as _;
use serde_json::json;
use tonic::{Code, Status};

use crate::support::{expect_code, reason, write_content};

/// The principals of the matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Who {
    /// The L&D system: models:write, engagements:write, engagements:read, events:read.
    Lms,
    Coach,
    Client,
    Sponsor,
    Hr,
    Stakeholder,
    /// A person of another engagement of the tenant.
    Outsider,
    /// The L&D system's token for another tenant.
    OtherTenant,
}

const EVERYONE: [Who; 8] = [
    Who::Lms,
    Who::Coach,
    Who::Client,
    Who::Sponsor,
    Who::Hr,
    Who::Stakeholder,
    Who::Outsider,
    Who::OtherTenant,
];

impl Who {
    fn claims(self) -> Claims {
        match self {
            Who::Lms => Claims::system("lms", TENANT, &SYSTEM_SCOPES),
            Who::Coach => Claims::person("coach-1", TENANT),
            Who::Client => Claims::person("client-1", TENANT),
            Who::Sponsor => Claims::person("sponsor-1", TENANT),
            Who::Hr => Claims::person("hr-1", TENANT),
            Who::Stakeholder => Claims::person("stakeholder-1", TENANT),
            Who::Outsider => Claims::person("client-2", TENANT),
            Who::OtherTenant => Claims::system(
                "lms",
                "globex",
                &[
                    "models:write",
                    "engagements:write",
                    "engagements:read",
                    "events:read",
                    "content:read",
                ],
            ),
        }
    }

    fn person(self) -> &'static str {
        match self {
            Who::Coach => "coach-1",
            Who::Client => "client-1",
            Who::Sponsor => "sponsor-1",
            Who::Hr => "hr-1",
            Who::Stakeholder => "stakeholder-1",
            Who::Outsider => "client-2",
            Who::Lms | Who::OtherTenant => "lms",
        }
    }
}

fn bind(role: &str, people: &[&str]) -> proto::RoleBinding {
    proto::RoleBinding {
        role: role.to_owned(),
        people: people.iter().map(|person| (*person).to_owned()).collect(),
    }
}

/// Starts `id` of the four-stage model with `n`-numbered people (`client-n`, ...).
async fn start(server: &TestServer, id: &str, n: u32) -> proto::Engagement {
    let person = |role: &str| format!("{role}-{n}");
    server
        .engagements()
        .create_engagement(proto::CreateEngagementRequest {
            parent: parent(),
            engagement_id: id.to_owned(),
            model: model_name("four-stage"),
            people: vec![
                bind("client", &[&person("client")]),
                bind("coach", &[&person("coach")]),
                bind("sponsor", &[&person("sponsor")]),
                bind("hr", &[&person("hr")]),
                bind("stakeholder", &[&person("stakeholder")]),
            ],
            ..Default::default()
        })
        .await
        .unwrap_or_else(|status| panic!("CreateEngagement {id}: {status:?}"))
        .into_inner()
}

/// One call of one RPC, as `who`; `Ok` when it was let through (whatever the engine then
/// said), the status when it was refused.
async fn call(server: &TestServer, who: Who, rpc: &str, engagement: &str) -> Result<(), Status> {
    let claims = who.claims();
    let mut models = server.models_with(&claims);
    let mut engagements = server.engagements_with(&claims);
    let mut events = server.events_with(&claims);
    let mut operations = server.operations_with(&claims);
    let operation = || format!("{}/operations/no-such-operation", parent());
    let task = |instance: &str| task_name(engagement, instance);
    let passed = |result: Result<(), Status>| match result {
        Err(status) if matches!(status.code(), Code::PermissionDenied | Code::Unauthenticated) => Err(status),
        _ => Ok(()),
    };
    let done = |result: Result<tonic::Response<proto::Engagement>, Status>| passed(result.map(|_| ()));
    match rpc {
        "CreateModel" => passed(
            models
                .create_model(proto::CreateModelRequest {
                    parent: parent(),
                    source: builtin_source("seven-step"),
                    ..Default::default()
                })
                .await
                .map(|_| ()),
        ),
        "ValidateModel" => passed(
            models
                .validate_model(proto::ValidateModelRequest {
                    parent: parent(),
                    source: builtin_source("seven-step"),
                    ..Default::default()
                })
                .await
                .map(|_| ()),
        ),
        "GetModel" => passed(
            models
                .get_model(proto::GetModelRequest {
                    name: model_name("four-stage"),
                })
                .await
                .map(|_| ()),
        ),
        "ListModels" => passed(
            models
                .list_models(proto::ListModelsRequest {
                    parent: parent(),
                    ..Default::default()
                })
                .await
                .map(|_| ()),
        ),
        "ListModelVersions" => passed(
            models
                .list_model_versions(proto::ListModelVersionsRequest {
                    name: model_name("four-stage"),
                    ..Default::default()
                })
                .await
                .map(|_| ()),
        ),
        "RenderModel" => passed(
            models
                .render_model(proto::RenderModelRequest {
                    name: model_name("four-stage"),
                })
                .await
                .map(|_| ()),
        ),
        "CreateEngagement" => done(
            engagements
                .create_engagement(proto::CreateEngagementRequest {
                    parent: parent(),
                    model: model_name("four-stage"),
                    people: vec![bind("client", &["client-9"]), bind("coach", &["coach-9"])],
                    ..Default::default()
                })
                .await,
        ),
        "GetEngagement" => done(
            engagements
                .get_engagement(proto::GetEngagementRequest {
                    name: engagement.to_owned(),
                })
                .await,
        ),
        "ListEngagements" => passed(
            engagements
                .list_engagements(proto::ListEngagementsRequest {
                    parent: parent(),
                    ..Default::default()
                })
                .await
                .map(|_| ()),
        ),
        "CompleteTask" => done(
            engagements
                .complete_task(proto::CompleteTaskRequest {
                    name: task("kickoff-meeting"),
                    outputs: Some(default_outputs(
                        &parse_model(&builtin_source("four-stage")),
                        "kickoff-meeting",
                    )),
                    ..Default::default()
                })
                .await,
        ),
        "SkipTask" => done(
            engagements
                .skip_task(proto::SkipTaskRequest {
                    name: task("one-on-one-meeting"),
                    reason: "not needed".to_owned(),
                    ..Default::default()
                })
                .await,
        ),
        "AssignTask" => done(
            engagements
                .assign_task(proto::AssignTaskRequest {
                    name: task("kickoff-meeting"),
                    assignee: "coach-1".to_owned(),
                    ..Default::default()
                })
                .await,
        ),
        "AddParticipant" => done(
            engagements
                .add_participant(proto::AddParticipantRequest {
                    engagement: engagement.to_owned(),
                    role: "stakeholder".to_owned(),
                    person: format!("stakeholder-{}", who.person()),
                    ..Default::default()
                })
                .await,
        ),
        "RecordGoal" => done(
            engagements
                .record_goal(proto::RecordGoalRequest {
                    engagement: engagement.to_owned(),
                    goal_id: format!("goal-{}", who.person()),
                    title: "Delegate more".to_owned(),
                    ..Default::default()
                })
                .await,
        ),
        "RecordGoalProgress" => done(
            engagements
                .record_goal_progress(proto::RecordGoalProgressRequest {
                    engagement: engagement.to_owned(),
                    goal_id: "goal-lms".to_owned(),
                    progress: 10,
                    ..Default::default()
                })
                .await,
        ),
        "RecordCommitment" => done(
            engagements
                .record_commitment(proto::RecordCommitmentRequest {
                    engagement: engagement.to_owned(),
                    commitment_id: format!("c-{}", who.person()),
                    description: "Chair the Monday meeting".to_owned(),
                    ..Default::default()
                })
                .await,
        ),
        "RecordCommitmentFollowUp" => done(
            engagements
                .record_commitment_follow_up(proto::RecordCommitmentFollowUpRequest {
                    engagement: engagement.to_owned(),
                    commitment_id: "c-lms".to_owned(),
                    status: proto::commitment::Status::Kept.into(),
                    ..Default::default()
                })
                .await,
        ),
        "SignOffPhase" => done(
            engagements
                .sign_off_phase(proto::SignOffPhaseRequest {
                    engagement: engagement.to_owned(),
                    role: "sponsor".to_owned(),
                    person: "sponsor-1".to_owned(),
                    ..Default::default()
                })
                .await,
        ),
        "AdvancePhase" => done(
            engagements
                .advance_phase(proto::AdvancePhaseRequest {
                    engagement: engagement.to_owned(),
                    ..Default::default()
                })
                .await,
        ),
        "ReopenTask" => done(
            engagements
                .reopen_task(proto::ReopenTaskRequest {
                    name: task("kickoff-meeting"),
                    reason: "repair".to_owned(),
                    ..Default::default()
                })
                .await,
        ),
        "MoveToPhase" => done(
            engagements
                .move_to_phase(proto::MoveToPhaseRequest {
                    engagement: engagement.to_owned(),
                    phase: "analysis".to_owned(),
                    reason: "repair".to_owned(),
                    ..Default::default()
                })
                .await,
        ),
        "WithdrawSignOff" => done(
            engagements
                .withdraw_sign_off(proto::WithdrawSignOffRequest {
                    engagement: engagement.to_owned(),
                    role: "sponsor".to_owned(),
                    reason: "repair".to_owned(),
                    ..Default::default()
                })
                .await,
        ),
        "SuspendEngagement" => done(
            engagements
                .suspend_engagement(proto::SuspendEngagementRequest {
                    name: engagement.to_owned(),
                    ..Default::default()
                })
                .await,
        ),
        "ResumeEngagement" => done(
            engagements
                .resume_engagement(proto::ResumeEngagementRequest {
                    name: engagement.to_owned(),
                    ..Default::default()
                })
                .await,
        ),
        "CancelEngagement" => done(
            engagements
                .cancel_engagement(proto::CancelEngagementRequest {
                    name: engagement.to_owned(),
                    ..Default::default()
                })
                .await,
        ),
        "ListTasks" => passed(
            engagements
                .list_tasks(proto::ListTasksRequest {
                    parent: parent(),
                    assignee: "coach-1".to_owned(),
                    ..Default::default()
                })
                .await
                .map(|_| ()),
        ),
        "GetHistory" => passed(
            engagements
                .get_history(proto::GetHistoryRequest {
                    name: engagement.to_owned(),
                    ..Default::default()
                })
                .await
                .map(|_| ()),
        ),
        "WatchEvents" => passed(
            events
                .watch_events(proto::WatchEventsRequest {
                    parent: parent(),
                    ..Default::default()
                })
                .await
                .map(|_| ()),
        ),
        "WatchEngagementEvents" => passed(
            events
                .watch_events(proto::WatchEventsRequest {
                    parent: parent(),
                    engagement: engagement.to_owned(),
                    ..Default::default()
                })
                .await
                .map(|_| ()),
        ),
        "DeprecateModelVersion" => passed(
            models
                .deprecate_model_version(proto::DeprecateModelVersionRequest {
                    name: format!("{}@99", model_name("four-stage")),
                })
                .await
                .map(|_| ()),
        ),
        "UndeprecateModelVersion" => passed(
            models
                .undeprecate_model_version(proto::UndeprecateModelVersionRequest {
                    name: format!("{}@99", model_name("four-stage")),
                })
                .await
                .map(|_| ()),
        ),
        "DiffModelVersions" => passed(
            models
                .diff_model_versions(proto::DiffModelVersionsRequest {
                    name: model_name("four-stage"),
                    from_version: 1,
                    to_version: 1,
                })
                .await
                .map(|_| ()),
        ),
        "MigrateEngagement" => passed(
            engagements
                .migrate_engagement(proto::MigrateEngagementRequest {
                    engagement: engagement.to_owned(),
                    to_version: 99,
                    reason: "a new version".to_owned(),
                    validate_only: true,
                    ..Default::default()
                })
                .await
                .map(|_| ()),
        ),
        "MigrateEngagements" => passed(
            engagements
                .migrate_engagements(proto::MigrateEngagementsRequest {
                    parent: parent(),
                    model: model_name("four-stage"),
                    from_version: 1,
                    to_version: 99,
                    reason: "a new version".to_owned(),
                    validate_only: true,
                    ..Default::default()
                })
                .await
                .map(|_| ()),
        ),
        "GetOperation" => passed(
            operations
                .get_operation(longrunning::GetOperationRequest { name: operation() })
                .await
                .map(|_| ()),
        ),
        "ListOperations" => passed(
            operations
                .list_operations(longrunning::ListOperationsRequest {
                    name: parent(),
                    ..Default::default()
                })
                .await
                .map(|_| ()),
        ),
        "WaitOperation" => passed(
            operations
                .wait_operation(longrunning::WaitOperationRequest {
                    name: operation(),
                    timeout: Some(prost_types::Duration::default()),
                })
                .await
                .map(|_| ()),
        ),
        "CancelOperation" => passed(
            operations
                .cancel_operation(longrunning::CancelOperationRequest { name: operation() })
                .await
                .map(|_| ()),
        ),
        "DeleteOperation" => passed(
            operations
                .delete_operation(longrunning::DeleteOperationRequest { name: operation() })
                .await
                .map(|_| ()),
        ),
        "EraseEngagementContent" => passed(
            engagements
                .erase_engagement_content(proto::EraseEngagementContentRequest {
                    name: engagement.to_owned(),
                    ..Default::default()
                })
                .await
                .map(|_| ()),
        ),
        "ErasePersonData" => passed(
            engagements
                .erase_person_data(proto::ErasePersonDataRequest {
                    parent: parent(),
                    person: "stakeholder-1".to_owned(),
                    ..Default::default()
                })
                .await
                .map(|_| ()),
        ),
        "ExportPersonData" => passed(
            engagements
                .export_person_data(proto::ExportPersonDataRequest {
                    parent: parent(),
                    person: "client-1".to_owned(),
                })
                .await
                .map(|_| ()),
        ),
        other => panic!("no call for {other}"),
    }
}

/// Every RPC and who may call it on engagement `e-1` (`WatchEngagementEvents` is
/// WatchEvents for one engagement). The order matters: refusals are tried first, and the
/// calls that end the engagement come last.
fn matrix() -> Vec<(&'static str, Vec<Who>)> {
    use Who::{Client, Coach, Hr, Lms, Outsider, Sponsor, Stakeholder};
    let tenant = vec![Lms, Coach, Client, Sponsor, Hr, Stakeholder, Outsider];
    let bound = vec![Lms, Coach, Client, Sponsor, Hr, Stakeholder];
    vec![
        ("CreateModel", vec![Lms]),
        ("ValidateModel", tenant.clone()),
        ("GetModel", tenant.clone()),
        ("ListModels", tenant.clone()),
        ("ListModelVersions", tenant.clone()),
        ("RenderModel", tenant.clone()),
        ("DiffModelVersions", tenant.clone()),
        ("DeprecateModelVersion", vec![Lms]),
        ("UndeprecateModelVersion", vec![Lms]),
        ("CreateEngagement", vec![Lms]),
        ("MigrateEngagements", vec![Lms]),
        ("GetOperation", vec![Lms]),
        ("ListOperations", vec![Lms]),
        ("WaitOperation", vec![Lms]),
        ("CancelOperation", vec![Lms]),
        ("DeleteOperation", vec![Lms]),
        ("GetEngagement", bound.clone()),
        ("ListEngagements", tenant.clone()),
        ("ListTasks", tenant),
        ("GetHistory", bound.clone()),
        ("WatchEvents", vec![Lms]),
        ("WatchEngagementEvents", bound),
        ("RecordGoal", vec![Lms, Coach, Client]),
        ("RecordGoalProgress", vec![Lms, Coach, Client]),
        ("RecordCommitment", vec![Lms, Coach, Client]),
        ("RecordCommitmentFollowUp", vec![Lms, Coach, Client]),
        ("AddParticipant", vec![Lms, Coach]),
        ("AssignTask", vec![Lms, Coach]),
        ("SignOffPhase", vec![Sponsor]),
        ("AdvancePhase", vec![Lms, Coach]),
        ("WithdrawSignOff", vec![Lms, Coach]),
        ("ReopenTask", vec![Lms, Coach]),
        ("MigrateEngagement", vec![Lms, Coach]),
        // The coach's task: the coach (its assignee) or the system; not the client.
        ("CompleteTask", vec![Lms, Coach]),
        ("SkipTask", vec![Lms, Coach]),
        ("SuspendEngagement", vec![Lms, Coach]),
        ("ResumeEngagement", vec![Lms, Coach]),
        ("MoveToPhase", vec![Lms, Coach]),
        ("CancelEngagement", vec![Lms, Coach]),
        // Erasure needs data:erase, which none of them has; a person exports their own data.
        ("EraseEngagementContent", vec![]),
        ("ErasePersonData", vec![]),
        ("ExportPersonData", vec![Client]),
    ]
}

async fn every_rpc_is_allowed_or_refused_by_who_calls_it(backend: Backend) {
    let server = TestServer::start(backend).await;
    server.publish_builtin("four-stage").await;
    let engagement = start(&server, "e-1", 1).await.name;
    start(&server, "e-2", 2).await;
    // Every method of the API is in the matrix (WatchEvents twice).
    let descriptor = prost_types::FileDescriptorSet::decode(coachflow_server::proto::FILE_DESCRIPTOR_SET)
        .expect("the descriptor set");
    let mut methods: Vec<String> = descriptor
        .file
        .iter()
        .flat_map(|file| &file.service)
        .flat_map(|service| &service.method)
        .filter_map(|method| method.name.clone())
        .collect();
    methods.sort();
    let mut covered: Vec<String> = matrix()
        .into_iter()
        .map(|(rpc, _)| rpc.replace("WatchEngagementEvents", "WatchEvents"))
        .collect();
    covered.sort();
    covered.dedup();
    assert_eq!(methods, covered, "the matrix covers every RPC");

    let mut failures = Vec::new();
    for (rpc, allowed) in matrix() {
        let (refused, permitted): (Vec<Who>, Vec<Who>) = EVERYONE.iter().partition(|who| !allowed.contains(who));
        for who in refused.into_iter().chain(permitted) {
            let outcome = call(&server, who, rpc, &engagement).await;
            let expected_allowed = allowed.contains(&who);
            match (expected_allowed, &outcome) {
                (true, Ok(())) => {}
                (false, Err(status)) if status.code() == Code::PermissionDenied => {
                    let why = reason(status).unwrap_or_default();
                    let fitting = match who {
                        Who::OtherTenant => why == "TENANT_MISMATCH",
                        Who::Outsider => ["NOT_A_PARTICIPANT", "SCOPE_REQUIRED"].contains(&why.as_str()),
                        _ => !why.is_empty(),
                    };
                    if !fitting {
                        failures.push(format!("{rpc} by {who:?}: refused for {why}: {}", status.message()));
                    }
                }
                (true, Err(status)) => failures.push(format!("{rpc} by {who:?}: refused: {status:?}")),
                (false, outcome) => failures.push(format!("{rpc} by {who:?}: let through ({outcome:?})")),
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} wrong answers:\n{}",
        failures.len(),
        failures.join("\n")
    );

    // Lists hold what the caller may see and nothing else.
    let listed = |who: Who| {
        let server = &server;
        async move {
            let names: Vec<String> = server
                .engagements_with(&who.claims())
                .list_engagements(proto::ListEngagementsRequest {
                    parent: parent(),
                    ..Default::default()
                })
                .await
                .expect("ListEngagements")
                .into_inner()
                .engagements
                .into_iter()
                .map(|engagement| engagement.name)
                .collect();
            names
        }
    };
    assert_eq!(listed(Who::Outsider).await, [engagement_name("e-2")]);
    assert_eq!(listed(Who::Sponsor).await, [engagement_name("e-1")]);
    assert!(listed(Who::Lms).await.len() >= 3);
    let queue = server
        .engagements_with(&Who::Client.claims())
        .list_tasks(proto::ListTasksRequest {
            parent: parent(),
            assignee: "coach-1".to_owned(),
            ..Default::default()
        })
        .await
        .expect("ListTasks")
        .into_inner();
    assert!(
        queue.tasks.is_empty(),
        "the client sees the coach's queue: {:?}",
        queue.tasks
    );

    // Denials are counted by method and reason.
    let metrics = server.scrape_metrics().await;
    assert!(
        coachflow_integration_tests::client::metric_value(
            &metrics,
            "coachflow_auth_denials_total",
            &[("method", "CompleteTask"), ("reason", "NOT_THE_ASSIGNEE")]
        )
        .is_some_and(|count| count >= 1.0),
        "no denial counted"
    );
}

/// Markers written into content: none may reach a reader whose roles may not see it.
const MARKERS: [&str; 6] = [
    "MARKER-background-7f3a",
    "MARKER-goal-title-91cc",
    "MARKER-progress-note-2b8e",
    "MARKER-commitment-44d1",
    "MARKER-skip-reason-c0de",
    "MARKER-suspend-reason-5e5e",
];

fn contains_marker(bytes: &[u8]) -> Option<&'static str> {
    crate::support::found_marker(bytes, &MARKERS)
}

/// Every reply `who` gets of engagement `name`, encoded: GetEngagement, every page of
/// GetHistory, ListEngagements, ListTasks and the engagement's WatchEvents; refusals too.
async fn every_reply(server: &TestServer, claims: &Claims, name: &str) -> Vec<(String, Vec<u8>)> {
    let mut replies = Vec::new();
    let mut engagements = server.engagements_with(claims);
    let mut record = |what: &str, bytes: Vec<u8>| replies.push((what.to_owned(), bytes));
    let status_bytes = |status: &Status| {
        let mut bytes = status.message().as_bytes().to_vec();
        bytes.extend_from_slice(status.details());
        bytes
    };
    match engagements
        .get_engagement(proto::GetEngagementRequest { name: name.to_owned() })
        .await
    {
        Ok(reply) => record("GetEngagement", reply.into_inner().encode_to_vec()),
        Err(status) => record("GetEngagement (refused)", status_bytes(&status)),
    }
    match engagements
        .get_history(proto::GetHistoryRequest {
            name: name.to_owned(),
            page_size: 1000,
            ..Default::default()
        })
        .await
    {
        Ok(reply) => record("GetHistory", reply.into_inner().encode_to_vec()),
        Err(status) => record("GetHistory (refused)", status_bytes(&status)),
    }
    match engagements
        .list_engagements(proto::ListEngagementsRequest {
            parent: parent(),
            ..Default::default()
        })
        .await
    {
        Ok(reply) => record("ListEngagements", reply.into_inner().encode_to_vec()),
        Err(status) => record("ListEngagements (refused)", status_bytes(&status)),
    }
    match engagements
        .list_tasks(proto::ListTasksRequest {
            parent: parent(),
            assignee: "coach-1".to_owned(),
            ..Default::default()
        })
        .await
    {
        Ok(reply) => record("ListTasks", reply.into_inner().encode_to_vec()),
        Err(status) => record("ListTasks (refused)", status_bytes(&status)),
    }
    match server
        .events_with(claims)
        .watch_events(proto::WatchEventsRequest {
            parent: parent(),
            engagement: name.to_owned(),
            ..Default::default()
        })
        .await
    {
        Ok(stream) => {
            let mut stream = stream.into_inner();
            let mut bytes = Vec::new();
            // What is stored arrives at once; then the stream waits for more.
            while let Ok(Some(Ok(event))) = tokio::time::timeout(Duration::from_millis(1500), stream.next()).await {
                bytes.extend(event.encode_to_vec());
            }
            record("WatchEvents", bytes);
        }
        Err(status) => record("WatchEvents (refused)", status_bytes(&status)),
    }
    replies
}

async fn coaching_content_never_reaches_a_sponsor_hr_a_system_or_another_tenant(backend: Backend) {
    let server = TestServer::start(backend).await;
    server.publish_builtin("four-stage").await;
    let engagement = start(&server, "e-1", 1).await.name;
    write_content(&server, &engagement, &MARKERS).await;
    server
        .engagements_with(&Who::Coach.claims())
        .add_participant(proto::AddParticipantRequest {
            engagement: engagement.clone(),
            role: "stakeholder".to_owned(),
            person: "stakeholder-2".to_owned(),
            ..Default::default()
        })
        .await
        .expect("a stakeholder");

    // Those who may see the content do (the test could not fail otherwise).
    for claims in [Who::Coach.claims(), Who::Client.claims()] {
        let replies = every_reply(&server, &claims, &engagement).await;
        let history = &replies
            .iter()
            .find(|(what, _)| what == "GetHistory")
            .expect("a history")
            .1;
        assert_eq!(
            contains_marker(history),
            Some(MARKERS[0]),
            "{} sees the content",
            claims.subject
        );
    }
    // Those who may not, never, in any reply.
    let mut others = vec![
        Who::Sponsor.claims(),
        Who::Hr.claims(),
        Who::Stakeholder.claims(),
        Who::Outsider.claims(),
        Who::Lms.claims(),
        Who::OtherTenant.claims(),
        Claims::system("hris", TENANT, &["engagements:read", "events:read"]),
    ];
    let mut acting = Who::Sponsor.claims();
    acting.acting = Some("lms".to_owned());
    others.push(acting);
    for claims in &others {
        for (what, bytes) in every_reply(&server, claims, &engagement).await {
            assert_eq!(
                contains_marker(&bytes),
                None,
                "{what} for {} (tenant {:?}) carries content",
                claims.subject,
                claims.tenant
            );
        }
    }

    // What is withheld is marked, and the audit skeleton stays readable.
    let history = server
        .engagements_with(&Who::Sponsor.claims())
        .get_history(proto::GetHistoryRequest {
            name: engagement.clone(),
            page_size: 1000,
            ..Default::default()
        })
        .await
        .expect("the sponsor reads the history")
        .into_inner();
    let completed = history
        .events
        .iter()
        .find(|event| event.r#type == "task_completed")
        .expect("a completion");
    assert!(
        completed.withheld_fields.contains(&"outputs.background".to_owned()),
        "{completed:?}"
    );
    assert_eq!(completed.actor, "person/coach-1");
    let outputs = completed
        .details
        .as_ref()
        .and_then(|details| details.fields.get("outputs"));
    assert!(
        format!("{outputs:?}").contains("team_committed"),
        "what the sponsor may see stays: {outputs:?}"
    );
    let goal_set = history
        .events
        .iter()
        .find(|event| event.r#type == "goal_set")
        .expect("goal_set");
    assert_eq!(goal_set.withheld_fields, ["title", "measure"]);
    let sponsor_view = server
        .engagements_with(&Who::Sponsor.claims())
        .get_engagement(proto::GetEngagementRequest {
            name: engagement.clone(),
        })
        .await
        .expect("the sponsor reads the engagement")
        .into_inner();
    let goal = &sponsor_view.goals[0];
    assert!(goal.title.is_empty() && goal.progress == 20, "{goal:?}");
    assert_eq!(goal.withheld_fields, ["title", "measure", "note"]);

    // Break-glass: content:read sees everything, and each such read is recorded.
    let auditor = Claims::system("auditor", TENANT, &["content:read"]);
    let replies = every_reply(&server, &auditor, &engagement).await;
    let history = &replies
        .iter()
        .find(|(what, _)| what == "GetHistory")
        .expect("a history")
        .1;
    assert_eq!(contains_marker(history), Some(MARKERS[0]));
    let store = coachflow_store::Store::connect(server.database().url(), coachflow_store::StoreOptions::default())
        .await
        .expect("the database");
    let reads = store.content_reads(TENANT, "e-1").await.expect("the record");
    assert!(
        reads
            .iter()
            .any(|read| read.principal == "auditor" && read.method == "GetHistory"),
        "{reads:?}"
    );
    assert!(reads.iter().all(|read| read.principal == "auditor"), "{reads:?}");
}

/// Every kind of bad token: UNAUTHENTICATED with its reason, nothing changed.
async fn bad_tokens_are_unauthenticated_and_change_nothing(backend: Backend) {
    let server = TestServer::start(backend).await;
    server.publish_builtin("four-stage").await;
    let before = start(&server, "e-1", 1).await;
    let issuer = server.issuer().expect("an issuer").clone();
    let now = server.now();
    let coach = Claims::person("coach-1", TENANT);
    let changed = |mut claims: Claims, edit: &dyn Fn(&mut Claims)| {
        edit(&mut claims);
        issuer.token(&claims, now)
    };
    let good = issuer.token(&coach, now);
    let (head, rest) = good.split_once('.').expect("a JWS");
    let (payload, signature) = rest.split_once('.').expect("a JWS");
    let tampered_payload = {
        use base64::Engine as _;
        let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let mut claims: serde_json::Value =
            serde_json::from_slice(&engine.decode(payload).expect("base64")).expect("JSON");
        claims["sub"] = json!("sponsor-1");
        format!("{head}.{}.{signature}", engine.encode(claims.to_string()))
    };
    let unsigned = {
        use base64::Engine as _;
        let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        format!("{}.{payload}.", engine.encode(br#"{"alg":"none","typ":"JWT"}"#))
    };
    let hmac = {
        use base64::Engine as _;
        let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        format!(
            "{}.{payload}.{signature}",
            engine.encode(br#"{"alg":"HS256","typ":"JWT","kid":"ed-1"}"#)
        )
    };
    issuer.add_key(KeyKind::Es256, "ec-unpublished");
    let unpublished = issuer.token_with("ec-unpublished", &coach, now);
    issuer.remove_key("ec-unpublished");
    let cases: Vec<(&str, Option<String>, &str)> = vec![
        ("missing", None, "TOKEN_MISSING"),
        ("garbage", Some("not-a-token".to_owned()), "TOKEN_MALFORMED"),
        (
            "expired",
            Some(changed(coach.clone(), &|claims| claims.expires_in = Some(-3600))),
            "TOKEN_EXPIRED",
        ),
        (
            "not yet valid",
            Some(changed(coach.clone(), &|claims| claims.not_before_in = Some(3600))),
            "TOKEN_NOT_YET_VALID",
        ),
        (
            "without exp",
            Some(changed(coach.clone(), &|claims| claims.expires_in = None)),
            "CLAIM_MISSING",
        ),
        (
            "wrong issuer",
            Some(changed(coach.clone(), &|claims| {
                claims.issuer = "https://evil.example".to_owned()
            })),
            "WRONG_ISSUER",
        ),
        (
            "wrong audience",
            Some(changed(coach.clone(), &|claims| {
                claims.audience = json!("someone-else")
            })),
            "WRONG_AUDIENCE",
        ),
        (
            "without a tenant",
            Some(changed(coach.clone(), &|claims| claims.tenant = None)),
            "CLAIM_MISSING",
        ),
        ("unknown key", Some(unpublished), "UNKNOWN_KEY"),
        ("tampered", Some(tampered_payload), "BAD_SIGNATURE"),
        ("alg none", Some(unsigned), "ALGORITHM_NOT_ALLOWED"),
        ("HMAC", Some(hmac), "ALGORITHM_NOT_ALLOWED"),
    ];
    for (what, token, expected) in cases {
        let mut client = coachflow_server::proto::engagement_service_client::EngagementServiceClient::with_interceptor(
            server.channel(),
            coachflow_integration_tests::Bearer::new(token.as_deref()),
        );
        let status = expect_code(
            &format!("a {what} token"),
            client
                .record_goal(proto::RecordGoalRequest {
                    engagement: before.name.clone(),
                    goal_id: "goal-1".to_owned(),
                    title: "Should not be recorded".to_owned(),
                    ..Default::default()
                })
                .await,
            Code::Unauthenticated,
        );
        assert_eq!(reason(&status).as_deref(), Some(expected), "a {what} token: {status:?}");
    }
    let after = server.get_engagement(&before.name).await;
    assert_eq!(after.etag, before.etag, "nothing changed");
    assert!(after.goals.is_empty());
    // Health and reflection need no token.
    let mut health = tonic_health::pb::health_client::HealthClient::new(server.channel());
    health
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
        .expect("health answers without a token");
}

async fn keys_rotate_without_a_restart(backend: Backend) {
    let server = TestServer::start(backend).await;
    let issuer = server.issuer().expect("an issuer").clone();
    let lms = Claims::system("lms", TENANT, &SYSTEM_SCOPES);
    let get = |token: String| {
        let server = &server;
        async move {
            coachflow_server::proto::model_service_client::ModelServiceClient::with_interceptor(
                server.channel(),
                coachflow_integration_tests::Bearer::new(Some(&token)),
            )
            .list_models(proto::ListModelsRequest {
                parent: parent(),
                ..Default::default()
            })
            .await
        }
    };
    for kid in issuer.kids() {
        get(issuer.token_with(&kid, &lms, server.now()))
            .await
            .unwrap_or_else(|status| panic!("a token of {kid}: {status:?}"));
    }
    // A new key: accepted at once.
    issuer.add_key(KeyKind::Rsa(2), "rsa-2");
    get(issuer.token_with("rsa-2", &lms, server.now()))
        .await
        .expect("a token of the new key");
    // A removed key: refused at once.
    issuer.remove_key("rsa-1");
    let status = expect_code(
        "a token of a removed key",
        get(issuer.token_with("rsa-1", &lms, server.now())).await,
        Code::Unauthenticated,
    );
    assert_eq!(reason(&status).as_deref(), Some("UNKNOWN_KEY"));
    get(issuer.token_with("ed-1", &lms, server.now()))
        .await
        .expect("the other keys still work");
}

/// A token is verified once and then recognised; its claims are still checked on every
/// call, so the same token is refused once the clock passes its expiry.
async fn a_token_accepted_before_is_refused_once_it_expires(backend: Backend) {
    let server = TestServer::start(backend).await;
    let issuer = server.issuer().expect("an issuer").clone();
    let lms = Claims {
        expires_in: Some(600),
        ..Claims::system("lms", TENANT, &SYSTEM_SCOPES)
    };
    let token = issuer.token(&lms, server.now());
    let list = || {
        let (server, token) = (&server, &token);
        async move {
            coachflow_server::proto::model_service_client::ModelServiceClient::with_interceptor(
                server.channel(),
                coachflow_integration_tests::Bearer::new(Some(token)),
            )
            .list_models(proto::ListModelsRequest {
                parent: parent(),
                ..Default::default()
            })
            .await
        }
    };
    for call in 1..=3 {
        list()
            .await
            .unwrap_or_else(|status| panic!("call {call} with a fresh token: {status:?}"));
    }
    server.advance(chrono::Duration::hours(2));
    let status = expect_code("the same token after its expiry", list().await, Code::Unauthenticated);
    assert_eq!(reason(&status).as_deref(), Some("TOKEN_EXPIRED"), "{status:?}");
}

async fn a_system_acting_for_a_person_is_recorded_with_them(backend: Backend) {
    let server = TestServer::start(backend).await;
    let model = server.publish_builtin("four-stage").await;
    let started = server.create_engagement(&model, "e-1", 1).await;
    let mut acting = Claims::person("coach-1", TENANT);
    acting.acting = Some("lms".to_owned());
    server
        .engagements_with(&acting)
        .record_goal(proto::RecordGoalRequest {
            engagement: started.name.clone(),
            goal_id: "goal-1".to_owned(),
            title: "Delegate more".to_owned(),
            ..Default::default()
        })
        .await
        .expect("the coach's goal, through the LMS");
    let history = server.history(&started.name).await;
    let goal_set = history
        .iter()
        .find(|event| event.r#type == "goal_set")
        .expect("goal_set");
    assert_eq!(goal_set.actor, "person/coach-1 via service/lms");
    // The header the service used to trust is ignored: the actor is the token's.
    let started_by = &history[0];
    assert_eq!(started_by.actor, "service/lms");
}

on_both_backends!(
    every_rpc_is_allowed_or_refused_by_who_calls_it,
    coaching_content_never_reaches_a_sponsor_hr_a_system_or_another_tenant,
    bad_tokens_are_unauthenticated_and_change_nothing,
    keys_rotate_without_a_restart,
    a_token_accepted_before_is_refused_once_it_expires,
    a_system_acting_for_a_person_is_recorded_with_them,
);
