//! A firm's next version: deprecation, the diff, and moving running engagements to it, one
//! at a time (planned first) and in bulk as a long-running operation that survives kill -9
//! while clients keep working.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use coachflow_integration_tests::client::{instance_of, parent};
use coachflow_integration_tests::history::assert_gapless;
use coachflow_integration_tests::{
    Backend, Claims, Engagements, TENANT, TestServer, engagement_name, json_to_struct, wait_until,
};
use coachflow_server::proto::google::longrunning;
use coachflow_server::proto::{self, engagement_migration::Outcome, model_change::Impact};
use prost::Message as _;
use sea_orm::{ColumnTrait as _, EntityTrait as _, QueryFilter as _};
use serde_json::json;
use tonic::Code;
use tonic_types::StatusExt as _;

use crate::firm_models::test_model_source;
use crate::support::{expect_code, reason, struct_string, watch};

const STAGES: &str = "tenants/acme/models/stages";

/// How the `stages` tasks of version 1 become version 2's.
fn mapping() -> proto::MigrationMapping {
    proto::MigrationMapping {
        tasks: [("work_2".to_owned(), "session_2".to_owned())].into(),
        removed: [("work_3".to_owned(), proto::RemovedWork::Skip as i32)].into(),
        ..Default::default()
    }
}

fn open_tasks(engagement: &proto::Engagement) -> Vec<&proto::Task> {
    engagement
        .tasks
        .iter()
        .filter(|task| task.state() == proto::task::State::Open)
        .collect()
}

/// How often the history says the engagement moved to another version.
fn moves(history: &[proto::HistoryEvent]) -> usize {
    history
        .iter()
        .filter(|event| event.r#type == "engagement_migrated")
        .count()
}

fn time(at: Option<&prost_types::Timestamp>) -> DateTime<Utc> {
    let at = at.expect("a time");
    DateTime::from_timestamp(at.seconds, u32::try_from(at.nanos).unwrap_or(0)).expect("a valid time")
}

async fn complete(client: &mut Engagements, task: &proto::Task) -> Result<proto::Engagement, tonic::Status> {
    client
        .complete_task(proto::CompleteTaskRequest {
            name: task.name.clone(),
            outputs: Some(json_to_struct(&json!({}))),
            ..Default::default()
        })
        .await
        .map(tonic::Response::into_inner)
}

/// Starts an engagement of `stages` and completes its open work until it is in phase
/// `phase` (0-based).
async fn start_in_phase(server: &TestServer, model: &proto::Model, id: &str, phase: usize) -> proto::Engagement {
    let mut engagement = server.create_engagement(model, id, 1).await;
    let mut client = server.engagements();
    for _ in 0..phase {
        let task = open_tasks(&engagement)[0].clone();
        engagement = complete(&mut client, &task)
            .await
            .unwrap_or_else(|status| panic!("CompleteTask {}: {status:?}", task.name));
    }
    engagement
}

async fn a_new_version_is_diffed_deprecated_and_an_engagement_moves_to_it(backend: Backend) {
    let server = TestServer::start(backend).await;
    let v1 = server.publish(&test_model_source("stages-v1")).await;
    let in_two = start_in_phase(&server, &v1, "in-two", 1).await;
    let in_one = start_in_phase(&server, &v1, "in-one", 0).await;
    let v2 = server.publish(&test_model_source("stages-v2")).await;
    assert_eq!((v1.version, v2.version), (1, 2));
    let mut models = server.models();

    // What changed, and what running engagements need for it.
    let diff = models
        .diff_model_versions(proto::DiffModelVersionsRequest {
            name: STAGES.to_owned(),
            from_version: 1,
            to_version: 2,
        })
        .await
        .expect("DiffModelVersions")
        .into_inner();
    assert!(!diff.compatible);
    let impact = |path: &str| {
        diff.changes
            .iter()
            .find(|change| change.path == path)
            .unwrap_or_else(|| panic!("no change at {path}: {:#?}", diff.changes))
            .impact()
    };
    assert_eq!(impact("tasks.work_2"), Impact::NeedsMapping);
    assert_eq!(impact("tasks.intake_form"), Impact::Compatible);

    // Version 1 deprecated: no new engagement starts on it, the running ones go on.
    let deprecated = models
        .deprecate_model_version(proto::DeprecateModelVersionRequest {
            name: format!("{STAGES}@1"),
        })
        .await
        .expect("DeprecateModelVersion")
        .into_inner();
    assert!(deprecated.deprecate_time.is_some());
    let mut engagements = server.engagements();
    let refused = engagements
        .create_engagement(proto::CreateEngagementRequest {
            parent: parent(),
            model: STAGES.to_owned(),
            model_version: 1,
            people: in_two.people.clone(),
            ..Default::default()
        })
        .await;
    let status = expect_code("a start on a deprecated version", refused, Code::FailedPrecondition);
    assert_eq!(reason(&status).as_deref(), Some("MODEL_VERSION_DEPRECATED"));
    let latest = server.create_engagement(&v2, "on-latest", 1).await;
    assert_eq!(latest.model_version, 2);
    let moved_on = complete(&mut engagements, open_tasks(&in_one)[0])
        .await
        .expect("v1 runs on");
    assert_eq!(moved_on.phase.as_ref().map(|phase| phase.key.as_str()), Some("two"));

    // Without a mapping for the discovery session, the plan names the conflict.
    let migrate = |mapping: Option<proto::MigrationMapping>, validate_only: bool| proto::MigrateEngagementRequest {
        engagement: engagement_name("in-two"),
        to_version: 2,
        mapping,
        reason: "MARKER-migration-reason-8a1f".to_owned(),
        validate_only,
        ..Default::default()
    };
    let planned = engagements
        .migrate_engagement(migrate(None, true))
        .await
        .expect("a dry run")
        .into_inner();
    assert_eq!(
        planned
            .conflicts
            .iter()
            .map(|conflict| conflict.path.as_str())
            .collect::<Vec<_>>(),
        ["tasks.work_2"],
        "{:#?}",
        planned.conflicts
    );
    let refused = engagements.migrate_engagement(migrate(None, false)).await;
    let status = expect_code("a move with a conflict", refused, Code::FailedPrecondition);
    assert_eq!(reason(&status).as_deref(), Some("MIGRATION_CONFLICT"));
    let failure = status.get_details_precondition_failure().expect("PreconditionFailure");
    assert_eq!(failure.violations[0].subject, "tasks.work_2");

    // With it, the plan; nothing changes until the move.
    let planned = engagements
        .migrate_engagement(migrate(Some(mapping()), true))
        .await
        .expect("a dry run")
        .into_inner();
    assert!(planned.conflicts.is_empty(), "{:#?}", planned.conflicts);
    assert!(
        planned.plan.iter().any(|step| step == "engagement_migrated"),
        "{:?}",
        planned.plan
    );
    assert!(
        planned.plan.iter().any(|step| step == "task_rescheduled work_2"),
        "{:?}",
        planned.plan
    );
    let unchanged = server.get_engagement(&engagement_name("in-two")).await;
    assert_eq!(
        (unchanged.model_version, unchanged.etag.as_str()),
        (1, in_two.etag.as_str())
    );

    // A sponsor may not move it; the coach may.
    let mut sponsor = server.engagements_with(&Claims::person("sponsor-1", TENANT));
    let refused = sponsor.migrate_engagement(migrate(Some(mapping()), false)).await;
    expect_code("a move by the sponsor", refused, Code::PermissionDenied);
    let mut events = watch(
        &server,
        crate::support::engagement_events(&engagement_name("in-two"), 0),
    )
    .await;
    let mut coach = server.engagements_with(&Claims::person("coach-1", TENANT));
    let moved = coach
        .migrate_engagement(migrate(Some(mapping()), false))
        .await
        .expect("the move")
        .into_inner()
        .engagement
        .expect("the engagement");
    assert_eq!(moved.model_version, 2);
    assert_eq!(moved.phase.as_ref().map(|phase| phase.key.as_str()), Some("two"));
    let session = open_tasks(&moved)
        .into_iter()
        .find(|task| task.key == "session_2")
        .expect("the renamed session is open")
        .clone();
    assert_eq!(
        instance_of(&session.name),
        "work_2",
        "a renamed task keeps its instance"
    );
    let opened = unchanged
        .tasks
        .iter()
        .find(|task| task.key == "work_2")
        .and_then(|task| task.due_time)
        .map(|due| time(Some(&due)) - chrono::Duration::days(7))
        .expect("the discovery session had a due time");
    assert_eq!(
        time(session.due_time.as_ref()),
        opened + chrono::Duration::days(10),
        "the due date follows version 2"
    );

    // Once moved, it stays moved; the history says so, the public event carries ids only.
    let again = coach.migrate_engagement(migrate(Some(mapping()), false)).await;
    expect_code("a second move", again, Code::FailedPrecondition);
    let history = server.history(&engagement_name("in-two")).await;
    assert_gapless("in-two", &history);
    assert_eq!(moves(&history), 1);
    let migrated = loop {
        let event = tokio::time::timeout(Duration::from_secs(20), futures_util::StreamExt::next(&mut events))
            .await
            .expect("engagement.migrated arrives")
            .expect("the stream goes on")
            .expect("an event");
        if event.r#type == "dev.coachflow.engagement.migrated.v1" {
            break event;
        }
    };
    assert_eq!(struct_string(migrated.data.as_ref(), "model"), Some("stages"));
    let data = serde_json::to_string(&migrated.data.as_ref().map(coachflow_server::convert::struct_to_json)).unwrap();
    assert!(
        !data.contains("MARKER"),
        "the reason leaked into the public event: {data}"
    );
    assert!(data.contains("\"renamed_tasks\":{\"work_2\":\"session_2\"}"), "{data}");

    // Work to finish after the move is the new version's.
    let finished = complete(&mut coach, &session)
        .await
        .expect("the renamed session completes");
    assert_eq!(finished.phase.as_ref().map(|phase| phase.key.as_str()), Some("three"));
    assert!(open_tasks(&finished).iter().any(|task| task.key == "review_3"));
}

/// Engagements of the bulk migration.
const ENGAGEMENTS: usize = 1_000;
/// Clients working on them while they move.
const CLIENTS: usize = 4;

/// A completion the server acknowledged.
#[derive(Debug, Clone)]
struct Ack {
    engagement: String,
    task: String,
    event_count: u64,
}

#[derive(Debug, Default)]
struct Work {
    acks: Vec<Ack>,
    /// Unexpected refusals before the kill.
    errors: Vec<String>,
}

/// Completes open work of the engagements `index` owns (every `CLIENTS`-th), in the first
/// three phases only (none ends), until the server goes away.
async fn client(mut engagements: Engagements, index: usize, work: Arc<Mutex<Work>>, killed: Arc<AtomicBool>) {
    let mine: Vec<String> = (0..ENGAGEMENTS)
        .filter(|n| n % CLIENTS == index)
        .map(|n| engagement_name(&format!("bulk-{n:04}")))
        .collect();
    for name in mine.iter().cycle() {
        if killed.load(Ordering::SeqCst) {
            return;
        }
        let engagement = match engagements
            .get_engagement(proto::GetEngagementRequest { name: name.clone() })
            .await
        {
            Ok(engagement) => engagement.into_inner(),
            Err(_) if killed.load(Ordering::SeqCst) => return,
            Err(status) => {
                work.lock()
                    .unwrap()
                    .errors
                    .push(format!("GetEngagement {name}: {status:?}"));
                return;
            }
        };
        if engagement.phase.as_ref().is_some_and(|phase| phase.key == "four") {
            continue;
        }
        let Some(task) = open_tasks(&engagement).first().map(|task| (*task).clone()) else {
            continue;
        };
        match complete(&mut engagements, &task).await {
            Ok(after) => work.lock().unwrap().acks.push(Ack {
                engagement: name.clone(),
                task: instance_of(&task.name).to_owned(),
                event_count: after.event_count,
            }),
            // Moved between the read and the completion (its task skipped): not lost work.
            Err(status) if matches!(status.code(), Code::FailedPrecondition | Code::NotFound) => {}
            Err(_) if killed.load(Ordering::SeqCst) => return,
            Err(status) => {
                work.lock()
                    .unwrap()
                    .errors
                    .push(format!("CompleteTask {}: {status:?}", task.name));
                return;
            }
        }
    }
}

fn metadata(operation: &longrunning::Operation) -> proto::MigrateEngagementsMetadata {
    let any = operation.metadata.as_ref().expect("an operation has metadata");
    assert_eq!(
        any.type_url,
        "type.googleapis.com/coachflow.v1.MigrateEngagementsMetadata"
    );
    proto::MigrateEngagementsMetadata::decode(any.value.as_slice()).expect("the metadata decodes")
}

async fn get_operation(server: &TestServer, name: &str) -> longrunning::Operation {
    server
        .operations()
        .get_operation(longrunning::GetOperationRequest { name: name.to_owned() })
        .await
        .unwrap_or_else(|status| panic!("GetOperation: {status:?}"))
        .into_inner()
}

/// The timers table holds exactly the engagement's pending timers, each once.
async fn assert_timers_match(store: &coachflow_store::Store, id: &str) {
    use coachflow_store::entity::timer;
    let state = store
        .load_engagement(TENANT, id)
        .await
        .expect("the state loads")
        .expect("the engagement exists")
        .state;
    let expected: BTreeMap<String, DateTime<Utc>> = state
        .timers
        .values()
        .filter(|timer| !timer.deferred)
        .map(|timer| (timer.id.clone(), timer.at))
        .collect();
    let rows = timer::Entity::find()
        .filter(timer::Column::Tenant.eq(TENANT))
        .filter(timer::Column::Engagement.eq(id))
        .all(store.connection())
        .await
        .expect("the timers");
    let stored: BTreeMap<String, DateTime<Utc>> = rows.iter().map(|row| (row.timer_id.clone(), row.fires_at)).collect();
    assert_eq!(rows.len(), stored.len());
    assert_eq!(stored, expected, "{id}: the timers table and the engagement disagree");
}

async fn a_bulk_migration_survives_kill_9_while_clients_work(backend: Backend) {
    let mut server = TestServer::start(backend).await;
    let v1 = server.publish(&test_model_source("stages-v1")).await;
    // 1,000 engagements, a quarter in each phase.
    futures_util::StreamExt::for_each_concurrent(futures_util::stream::iter(0..ENGAGEMENTS), 8, |n| {
        let (server, v1) = (&server, &v1);
        async move {
            start_in_phase(server, v1, &format!("bulk-{n:04}"), n % 4).await;
        }
    })
    .await;
    server.publish(&test_model_source("stages-v2")).await;

    // A dry run first: every engagement could move, and none did.
    let request = |validate_only: bool| proto::MigrateEngagementsRequest {
        parent: parent(),
        model: STAGES.to_owned(),
        from_version: 1,
        to_version: 2,
        mapping: Some(mapping()),
        reason: "version 2 of the method".to_owned(),
        validate_only,
        request_id: format!("bulk-{validate_only}"),
        ..Default::default()
    };
    let mut engagements = server.engagements();
    let dry = engagements
        .migrate_engagements(request(true))
        .await
        .expect("a planned bulk migration")
        .into_inner();
    let dry = server
        .operations()
        .wait_operation(longrunning::WaitOperationRequest {
            name: dry.name.clone(),
            timeout: Some(prost_types::Duration { seconds: 120, nanos: 0 }),
        })
        .await
        .expect("WaitOperation")
        .into_inner();
    assert!(dry.done);
    let planned = metadata(&dry);
    assert_eq!(
        (planned.total, planned.would_migrate, planned.conflicts),
        (1_000, 1_000, 0)
    );
    let on_v1 = server
        .list_engagements(proto::ListEngagementsRequest {
            parent: parent(),
            model: STAGES.to_owned(),
            page_size: 1000,
            ..Default::default()
        })
        .await;
    assert!(
        on_v1.iter().all(|engagement| engagement.model_version == 1),
        "a dry run moved something"
    );

    // The real one, with clients at work; killed part-way.
    let work = Arc::new(Mutex::new(Work::default()));
    let killed = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|index| {
            tokio::spawn(client(
                server.engagements(),
                index,
                Arc::clone(&work),
                Arc::clone(&killed),
            ))
        })
        .collect();
    let operation = engagements
        .migrate_engagements(request(false))
        .await
        .expect("the bulk migration")
        .into_inner();
    let name = operation.name.clone();
    assert!(name.starts_with("tenants/acme/operations/"), "{name}");
    // The same request again is the same operation.
    let repeated = engagements
        .migrate_engagements(request(false))
        .await
        .expect("a repeat")
        .into_inner();
    assert_eq!(repeated.name, name);
    let progress = wait_until("the migration is under way", Duration::from_secs(300), || {
        let (server, name) = (&server, &name);
        async move {
            let progress = metadata(&get_operation(server, name).await);
            (progress.migrated >= 100).then_some(progress)
        }
    })
    .await;
    killed.store(true, Ordering::SeqCst);
    server.kill9().await;
    assert!(
        progress.pending > 0,
        "the operation finished before the kill: {progress:?}"
    );
    for client in clients {
        tokio::time::timeout(Duration::from_secs(30), client)
            .await
            .expect("a client did not notice the server is gone")
            .expect("a client panicked");
    }
    let work = std::mem::take(&mut *work.lock().unwrap());
    assert!(work.errors.is_empty(), "refused under load: {:#?}", work.errors);
    assert!(!work.acks.is_empty(), "the clients completed nothing");

    // Restarted, the operation goes on once the dead replica's lease has run out.
    server.restart().await;
    server.advance(chrono::Duration::minutes(2));
    let done = server
        .operations()
        .wait_operation(longrunning::WaitOperationRequest {
            name: name.clone(),
            timeout: Some(prost_types::Duration { seconds: 120, nanos: 0 }),
        })
        .await
        .expect("WaitOperation")
        .into_inner();
    assert!(done.done, "not done after the restart: {:?}", metadata(&done));
    let finished = metadata(&done);
    eprintln!("bulk migration after kill -9 at {progress:?}: {finished:?}");
    assert_eq!(
        (finished.total, finished.migrated + finished.already_migrated),
        (1_000, 1_000),
        "{finished:?}"
    );
    assert_eq!(
        (finished.conflicts, finished.failed, finished.pending),
        (0, 0, 0),
        "{finished:?}"
    );
    let Some(longrunning::operation::Result::Response(response)) = &done.result else {
        panic!("no response: {:?}", done.result);
    };
    let response = proto::MigrateEngagementsResponse::decode(response.value.as_slice()).expect("the response");
    assert_eq!(response.results.len(), 1_000);
    assert!(
        response
            .results
            .iter()
            .all(|result| matches!(result.outcome(), Outcome::Migrated | Outcome::AlreadyMigrated))
    );

    // Every engagement on version 2, moved once and whole; no acknowledged work lost.
    let v2_tasks: BTreeSet<&str> = ["work_1", "intake_form", "session_2", "review_3", "work_4"].into();
    let store = coachflow_store::Store::connect(server.database().url(), coachflow_store::StoreOptions::default())
        .await
        .expect("the database");
    let mut acks: BTreeMap<&str, Vec<&Ack>> = BTreeMap::new();
    for ack in &work.acks {
        acks.entry(ack.engagement.as_str()).or_default().push(ack);
    }
    for n in 0..ENGAGEMENTS {
        let id = format!("bulk-{n:04}");
        let engagement = server.get_engagement(&engagement_name(&id)).await;
        assert_eq!(engagement.model_version, 2, "{id}");
        for task in open_tasks(&engagement) {
            assert!(
                v2_tasks.contains(task.key.as_str()),
                "{id}: open work of version 1: {task:?}"
            );
        }
        let history = server.history(&engagement.name).await;
        assert_gapless(&id, &history);
        assert_eq!(moves(&history), 1, "{id} moved more or less than once");
        for ack in acks.get(engagement.name.as_str()).into_iter().flatten() {
            assert!(engagement.event_count >= ack.event_count, "{id}: events lost");
            assert!(
                history.iter().any(|event| event.r#type == "task_completed"
                    && struct_string(event.details.as_ref(), "id") == Some(ack.task.as_str())),
                "{id}: the acknowledged completion of {} is gone",
                ack.task
            );
        }
        assert_timers_match(&store, &id).await;
    }
}

on_both_backends!(a_new_version_is_diffed_deprecated_and_an_engagement_moves_to_it);

mod postgres_only {
    use coachflow_integration_tests::Backend;

    /// On PostgreSQL, as the issue asks (SQLite serializes every writer, and the scenario
    /// would measure that instead).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_bulk_migration_survives_kill_9_while_clients_work() {
        crate::run(super::a_bulk_migration_survives_kill_9_while_clients_work(
            Backend::Postgres,
        ))
        .await;
    }
}
