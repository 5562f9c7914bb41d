//! Retention and the right to erasure through the real binary: marker strings written into
//! outputs, notes, goals, commitments and reasons are, once erased, in no reply and in no
//! byte of the database (the SQLite file and its WAL, a `pg_dump`), while the engagement's
//! progress still reads and later commands work; a person erased across the tenant appears
//! under one pseudonym; the erasure events reach RabbitMQ as the contract says; the
//! retention job erases only what ended long enough ago, once, with two replicas running it.

use std::time::Duration;

use coachflow_integration_tests::amqp::{Consumer, TestExchange};
use coachflow_integration_tests::client::{builtin_source, metric_value, parent};
use coachflow_integration_tests::contract::Contract;
use coachflow_integration_tests::{
    Backend, Claims, TENANT, TestServer, default_outputs, engagement_name, parse_model, wait_until,
};
use coachflow_server::proto;
use futures_util::StreamExt as _;
use prost::Message as _;
use serde_json::json;
use tonic::Code;

use crate::support::{self, contains, expect_code, write_content};

const MARKERS: [&str; 6] = [
    "MARKER-output-a71c",
    "MARKER-goal-title-5d02",
    "MARKER-progress-note-e9b4",
    "MARKER-commitment-30fa",
    "MARKER-skip-reason-77c1",
    "MARKER-suspend-reason-b3d8",
];

fn found_marker(bytes: &[u8]) -> Option<&'static str> {
    support::found_marker(bytes, &MARKERS)
}

/// A privacy officer's system token: erasure and export.
fn privacy_officer() -> Claims {
    Claims::system("privacy-office", TENANT, &["data:erase", "data:export"])
}

/// Every byte the database keeps: the SQLite file with its WAL (and shared memory), or a
/// `pg_dump` of the PostgreSQL database.
async fn database_bytes(server: &TestServer) -> Vec<u8> {
    let url = server.database().url().to_owned();
    match server.backend() {
        Backend::Sqlite => {
            let rest = url.strip_prefix("sqlite://").expect("a sqlite:// URL");
            let path = rest.split_once('?').map_or(rest, |(path, _)| path);
            let mut bytes = Vec::new();
            for suffix in ["", "-wal", "-shm"] {
                if let Ok(file) = std::fs::read(format!("{path}{suffix}")) {
                    bytes.extend(file);
                }
            }
            assert!(!bytes.is_empty(), "the database file {path} is read");
            bytes
        }
        Backend::Postgres => {
            let output = tokio::process::Command::new("pg_dump")
                .arg("--dbname")
                .arg(&url)
                .output()
                .await
                .expect("pg_dump runs");
            assert!(
                output.status.success(),
                "pg_dump: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            output.stdout
        }
    }
}

/// The encoded replies of every read of the engagement, by `claims`.
async fn every_read(server: &TestServer, claims: &Claims, name: &str) -> Vec<(&'static str, Vec<u8>)> {
    let mut engagements = server.engagements_with(claims);
    let mut replies = Vec::new();
    let engagement = engagements
        .get_engagement(proto::GetEngagementRequest { name: name.to_owned() })
        .await
        .expect("GetEngagement")
        .into_inner();
    replies.push(("GetEngagement", engagement.encode_to_vec()));
    let history = engagements
        .get_history(proto::GetHistoryRequest {
            name: name.to_owned(),
            page_size: 1000,
            ..Default::default()
        })
        .await
        .expect("GetHistory")
        .into_inner();
    replies.push(("GetHistory", history.encode_to_vec()));
    let tasks = engagements
        .list_tasks(proto::ListTasksRequest {
            parent: parent(),
            assignee: "coach-1".to_owned(),
            ..Default::default()
        })
        .await
        .expect("ListTasks")
        .into_inner();
    replies.push(("ListTasks", tasks.encode_to_vec()));
    let list = engagements
        .list_engagements(proto::ListEngagementsRequest {
            parent: parent(),
            ..Default::default()
        })
        .await
        .expect("ListEngagements")
        .into_inner();
    replies.push(("ListEngagements", list.encode_to_vec()));
    let mut stream = server
        .events_with(claims)
        .watch_events(proto::WatchEventsRequest {
            parent: parent(),
            engagement: name.to_owned(),
            ..Default::default()
        })
        .await
        .expect("WatchEvents")
        .into_inner();
    // The one event that names an erased person is the one telling consumers whom to
    // erase (`subject.erased`): every other is read as a reply of its own.
    let mut events = Vec::new();
    while let Ok(Some(Ok(event))) = tokio::time::timeout(Duration::from_millis(1500), stream.next()).await {
        if event.r#type != "dev.coachflow.subject.erased.v1" {
            events.extend(event.encode_to_vec());
        }
    }
    replies.push(("WatchEvents", events));
    replies
}

/// The engagement as its coach sees it (content included).
async fn as_coach(server: &TestServer, name: &str) -> proto::Engagement {
    server
        .engagements_with(&Claims::person("coach-1", TENANT))
        .get_engagement(proto::GetEngagementRequest { name: name.to_owned() })
        .await
        .expect("the coach reads the engagement")
        .into_inner()
}

async fn erased_content_is_in_no_reply_and_no_byte_of_the_database(backend: Backend) {
    let server = TestServer::start(backend).await;
    let model = server.publish_builtin("four-stage").await;
    let name = server.create_engagement(&model, "e-erase", 1).await.name;
    write_content(&server, &name, &MARKERS).await;
    let coach = Claims::person("coach-1", TENANT);

    // Before: the coach reads the content (the search could not fail otherwise), and the
    // database holds it only sealed.
    let before = every_read(&server, &coach, &name).await;
    let history = &before
        .iter()
        .find(|(what, _)| *what == "GetHistory")
        .expect("a history")
        .1;
    assert_eq!(found_marker(history), Some(MARKERS[0]), "the coach reads the content");
    assert_eq!(
        found_marker(&database_bytes(&server).await),
        None,
        "content is stored sealed"
    );

    // Erasing needs the scope.
    expect_code(
        "the coach erases",
        server
            .engagements_with(&coach)
            .erase_engagement_content(proto::EraseEngagementContentRequest {
                name: name.clone(),
                ..Default::default()
            })
            .await,
        Code::PermissionDenied,
    );
    let erased = server
        .engagements_with(&privacy_officer())
        .erase_engagement_content(proto::EraseEngagementContentRequest {
            name: name.clone(),
            request_id: "erase-1".to_owned(),
            ..Default::default()
        })
        .await
        .expect("the privacy office erases")
        .into_inner();
    assert!(erased.content_erase_time.is_some());

    // After: no reply to anyone holds a marker, the database neither.
    for claims in [coach.clone(), Claims::person("client-1", TENANT)] {
        for (what, bytes) in every_read(&server, &claims, &name).await {
            assert_eq!(
                found_marker(&bytes),
                None,
                "{what} for {} after the erasure",
                claims.subject
            );
        }
    }
    let export = server
        .engagements_with(&Claims::person("client-1", TENANT))
        .export_person_data(proto::ExportPersonDataRequest {
            parent: parent(),
            person: "client-1".to_owned(),
        })
        .await
        .expect("the client exports their data")
        .into_inner();
    assert_eq!(found_marker(export.json.as_bytes()), None, "the export");
    assert_eq!(
        found_marker(&database_bytes(&server).await),
        None,
        "the database after the erasure"
    );

    // The skeleton reads: progress, goals and commitments by id, marked erased.
    let engagement = as_coach(&server, &name).await;
    assert_eq!(engagement.content_erase_time, erased.content_erase_time);
    let goal = engagement
        .goals
        .iter()
        .find(|goal| goal.id == "goal-1")
        .expect("the goal");
    assert_eq!(goal.progress, 20);
    assert!(goal.erased_fields.contains(&"title".to_owned()), "{goal:?}");
    let commitment = &engagement.commitments[0];
    assert!(
        commitment.erased_fields.contains(&"description".to_owned()),
        "{commitment:?}"
    );
    let history = server.history(&name).await;
    let kickoff = history
        .iter()
        .find(|event| event.r#type == "task_completed")
        .expect("the kick-off's completion");
    assert_eq!(kickoff.erased_fields, ["outputs"]);
    let last = history.last().expect("events");
    assert_eq!(last.r#type, "content_erased");
    assert_eq!(last.actor, "service/privacy-office");

    // A repeat of the request changes nothing; a new erasure has nothing to erase.
    for request_id in ["erase-1", ""] {
        server
            .engagements_with(&privacy_officer())
            .erase_engagement_content(proto::EraseEngagementContentRequest {
                name: name.clone(),
                request_id: request_id.to_owned(),
                ..Default::default()
            })
            .await
            .expect("erased again");
    }
    assert_eq!(server.history(&name).await.len(), history.len());

    // Later commands work, and later content is kept.
    let mut coach_client = server.engagements_with(&coach);
    coach_client
        .record_goal(proto::RecordGoalRequest {
            engagement: name.clone(),
            goal_id: "goal-2".to_owned(),
            title: "kept after the erasure".to_owned(),
            ..Default::default()
        })
        .await
        .expect("a goal after the erasure");
    let open = server
        .get_engagement(&name)
        .await
        .tasks
        .into_iter()
        .find(|task| task.state == proto::task::State::Open as i32)
        .expect("an open task");
    let model = parse_model(&builtin_source("four-stage"));
    server
        .engagements()
        .complete_task(proto::CompleteTaskRequest {
            name: open.name.clone(),
            outputs: Some(default_outputs(&model, &open.key)),
            ..Default::default()
        })
        .await
        .expect("a task completed after the erasure");
    let after = as_coach(&server, &name).await;
    let kept = after
        .goals
        .iter()
        .find(|goal| goal.id == "goal-2")
        .expect("the new goal");
    assert_eq!(kept.title, "kept after the erasure");
    assert!(kept.erased_fields.is_empty());
}

async fn a_person_is_erased_across_the_tenant_under_one_pseudonym(backend: Backend) {
    const PERSON: &str = "person-to-erase-8c21";
    let exchange = TestExchange::new("erasure");
    let mut consumer = Consumer::bind(exchange.url(), exchange.name(), &["*.subject.*", "*.engagement.*"]).await;
    let server = TestServer::builder(backend)
        .set("broker.url", exchange.url())
        .set("broker.exchange", exchange.name())
        .set("broker.poll_interval", "100ms")
        .start()
        .await;
    let model = server.publish_builtin("four-stage").await;
    // The person is the client of one engagement and a stakeholder of another.
    let bind = |client: &str, stakeholder: &str| {
        vec![
            proto::RoleBinding {
                role: "client".to_owned(),
                people: vec![client.to_owned()],
            },
            proto::RoleBinding {
                role: "coach".to_owned(),
                people: vec!["coach-1".to_owned()],
            },
            proto::RoleBinding {
                role: "stakeholder".to_owned(),
                people: vec![stakeholder.to_owned()],
            },
        ]
    };
    for (id, people) in [
        ("e-own", bind(PERSON, "stakeholder-1")),
        ("e-other", bind("client-2", PERSON)),
    ] {
        server
            .engagements()
            .create_engagement(proto::CreateEngagementRequest {
                parent: parent(),
                engagement_id: id.to_owned(),
                model: model.name.clone(),
                people,
                ..Default::default()
            })
            .await
            .expect("created");
    }
    let (own, other) = (engagement_name("e-own"), engagement_name("e-other"));
    for name in [&own, &other] {
        server
            .engagements_with(&Claims::person("coach-1", TENANT))
            .record_goal(proto::RecordGoalRequest {
                engagement: name.clone(),
                goal_id: "goal-1".to_owned(),
                title: format!("{} of {name}", MARKERS[1]),
                ..Default::default()
            })
            .await
            .expect("a goal");
    }
    // Another person may not export it, the person may.
    expect_code(
        "another person exports",
        server
            .engagements_with(&Claims::person("client-2", TENANT))
            .export_person_data(proto::ExportPersonDataRequest {
                parent: parent(),
                person: PERSON.to_owned(),
            })
            .await,
        Code::PermissionDenied,
    );
    let export = server
        .engagements_with(&Claims::person(PERSON, TENANT))
        .export_person_data(proto::ExportPersonDataRequest {
            parent: parent(),
            person: PERSON.to_owned(),
        })
        .await
        .expect("the person exports their data")
        .into_inner();
    let document: serde_json::Value = serde_json::from_str(&export.json).expect("JSON");
    let names: Vec<&str> = document["engagements"]
        .as_array()
        .expect("engagements")
        .iter()
        .map(|engagement| engagement["name"].as_str().expect("a name"))
        .collect();
    // By id: e-other, then e-own.
    assert_eq!(names, [other.as_str(), own.as_str()]);
    assert_eq!(document["engagements"][1]["roles"], json!(["client"]));
    assert_eq!(document["engagements"][0]["roles"], json!(["stakeholder"]));
    assert!(
        export.json.contains(&format!("{} of {own}", MARKERS[1])),
        "the client's own goal"
    );

    let erasure = server
        .engagements_with(&privacy_officer())
        .erase_person_data(proto::ErasePersonDataRequest {
            parent: parent(),
            person: PERSON.to_owned(),
            ..Default::default()
        })
        .await
        .expect("erased")
        .into_inner();
    assert!(erasure.pseudonym.starts_with("erased-"), "{erasure:?}");
    assert_eq!(erasure.engagements, [other.clone(), own.clone()]);
    assert_eq!(erasure.content_erased, std::slice::from_ref(&own));

    // No read names the person any more; both name the same pseudonym.
    for name in [&own, &other] {
        for (what, bytes) in every_read(&server, &Claims::person("coach-1", TENANT), name).await {
            assert!(!contains(&bytes, PERSON), "{what} of {name} names the erased person");
        }
        let engagement = server.get_engagement(name).await;
        assert!(
            engagement
                .people
                .iter()
                .any(|binding| binding.people.contains(&erasure.pseudonym)),
            "{name}: {:?}",
            engagement.people
        );
    }
    // Their own engagement's content is gone, the other's stays.
    assert!(as_coach(&server, &own).await.goals[0].title.is_empty());
    assert_eq!(
        as_coach(&server, &other).await.goals[0].title,
        format!("{} of {other}", MARKERS[1])
    );
    // The for_each task about them in the other engagement is named by pseudonym, and a
    // coach can still act on it by that name.
    let interview = server
        .get_engagement(&other)
        .await
        .tasks
        .into_iter()
        .find(|task| task.subject == erasure.pseudonym);
    if let Some(interview) = interview {
        assert!(
            interview.name.ends_with(&format!("~{}", erasure.pseudonym)),
            "{}",
            interview.name
        );
    }
    // A repeat finds nothing more and answers the same pseudonym.
    let again = server
        .engagements_with(&privacy_officer())
        .erase_person_data(proto::ErasePersonDataRequest {
            parent: parent(),
            person: PERSON.to_owned(),
            ..Default::default()
        })
        .await
        .expect("erased again")
        .into_inner();
    assert_eq!(again.pseudonym, erasure.pseudonym);
    assert!(again.engagements.is_empty());

    // Consumers hear of it, in messages that carry ids only and pass the contract.
    let contract = Contract::load();
    let received = consumer
        .collect_until(Duration::from_secs(30), |received| {
            received
                .iter()
                .filter(|message| message.header_str("cloudEvents_type") == Some("dev.coachflow.subject.erased.v1"))
                .count()
                >= 2
        })
        .await;
    let erasures: Vec<_> = received
        .iter()
        .filter(|message| {
            matches!(
                message.header_str("cloudEvents_type"),
                Some("dev.coachflow.subject.erased.v1" | "dev.coachflow.engagement.content_erased.v1")
            )
        })
        .collect();
    let kinds: Vec<(&str, &str)> = erasures
        .iter()
        .map(|message| {
            (
                message.header_str("cloudEvents_subject").expect("a subject"),
                message.header_str("cloudEvents_type").expect("a type"),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            (other.as_str(), "dev.coachflow.subject.erased.v1"),
            (own.as_str(), "dev.coachflow.engagement.content_erased.v1"),
            (own.as_str(), "dev.coachflow.subject.erased.v1"),
        ]
    );
    for message in &erasures {
        let content_type = message.content_type.as_deref().unwrap_or("");
        if let Err(errors) = contract.validate_binary(&message.headers, content_type, &message.body) {
            panic!("an erasure event breaks docs/asyncapi.yaml: {errors:#?}\n{message}");
        }
        assert_eq!(found_marker(&message.body), None);
    }
    let subject_erased = erasures[2].json_body();
    assert_eq!(subject_erased["person"], PERSON);
    assert_eq!(subject_erased["pseudonym"], erasure.pseudonym.as_str());
    drop(server);
    exchange.cleanup().await;
}

async fn retention_erases_what_ended_long_enough_ago_once_with_two_replicas(backend: Backend) {
    let retention = |builder: coachflow_integration_tests::ServerBuilder| {
        builder
            .set("retention.schedule", "* * * * * *")
            .set("retention.tenants", r#"{"acme": {"closed_content_after": "365d"}}"#)
    };
    let first = retention(TestServer::builder(backend)).start().await;
    let model = first.publish_builtin("four-stage").await;
    let start = first.now();
    for id in ["e-366", "e-364", "e-open"] {
        first.create_engagement(&model, id, 1).await;
        first
            .engagements_with(&Claims::person("coach-1", TENANT))
            .record_goal(proto::RecordGoalRequest {
                engagement: engagement_name(id),
                goal_id: "goal-1".to_owned(),
                title: MARKERS[1].to_owned(),
                ..Default::default()
            })
            .await
            .expect("a goal");
    }
    let cancel = |id: &str| proto::CancelEngagementRequest {
        name: engagement_name(id),
        ..Default::default()
    };
    first
        .engagements()
        .cancel_engagement(cancel("e-366"))
        .await
        .expect("cancelled");
    first.set_time(start + chrono::Duration::days(2));
    first
        .engagements()
        .cancel_engagement(cancel("e-364"))
        .await
        .expect("cancelled");
    let second = retention(TestServer::builder(backend).sharing_with(&first))
        .start()
        .await;

    // 366 days after the first ended, 364 after the second.
    first.set_time(start + chrono::Duration::days(366));
    let erased = wait_until("the retention job erases e-366", Duration::from_secs(30), || async {
        let engagement = as_coach(&first, &engagement_name("e-366")).await;
        engagement.content_erase_time.is_some().then_some(engagement)
    })
    .await;
    assert!(erased.goals[0].title.is_empty());
    // Both replicas run the job every second: give them a few more runs.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let history = first.history(&engagement_name("e-366")).await;
    let erasures = history.iter().filter(|event| event.r#type == "content_erased").count();
    assert_eq!(erasures, 1, "erased once");
    assert_eq!(history.last().expect("events").actor, "system");
    for id in ["e-364", "e-open"] {
        let engagement = as_coach(&first, &engagement_name(id)).await;
        assert!(engagement.content_erase_time.is_none(), "{id} is kept");
        assert_eq!(engagement.goals[0].title, MARKERS[1], "{id}'s content is kept");
    }
    let mut counted = 0.0;
    for server in [&first, &second] {
        let metrics = server.scrape_metrics().await;
        counted += metric_value(
            &metrics,
            "coachflow_retention_actions_total",
            &[("action", "content_erased")],
        )
        .unwrap_or(0.0);
    }
    assert!(
        (counted - 1.0).abs() < f64::EPSILON,
        "one erasure counted across replicas: {counted}"
    );

    // Two more days: the second is due too.
    first.set_time(start + chrono::Duration::days(368));
    wait_until("the retention job erases e-364", Duration::from_secs(30), || async {
        first
            .get_engagement(&engagement_name("e-364"))
            .await
            .content_erase_time
            .is_some()
            .then_some(())
    })
    .await;
    assert!(
        first
            .get_engagement(&engagement_name("e-open"))
            .await
            .content_erase_time
            .is_none()
    );
}

on_both_backends!(
    erased_content_is_in_no_reply_and_no_byte_of_the_database,
    a_person_is_erased_across_the_tenant_under_one_pseudonym,
    retention_erases_what_ended_long_enough_ago_once_with_two_replicas,
);
