//! kill -9 in the middle of a stream of commands: whatever the server acknowledged is
//! there after a restart on the same database, and nothing is half-written.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use coachflow_integration_tests::client::{builtin_source, instance_of, parent};
use coachflow_integration_tests::history::{self, assert_gapless};
use coachflow_integration_tests::identity::SYSTEM_SCOPES;
use coachflow_integration_tests::{
    Backend, Claims, Engagements, TENANT, TestServer, default_outputs, parse_model, wait_until,
};
use coachflow_model::Model;
use coachflow_server::proto;

const WORKERS: usize = 4;
/// Acknowledged commands to see before the kill.
const ACKS_BEFORE_KILL: usize = 80;

/// A command the server answered OK, and what it answered.
#[derive(Debug, Clone)]
struct Ack {
    engagement: String,
    event_count: u64,
    etag: String,
    change: Change,
}

#[derive(Debug, Clone)]
enum Change {
    Created,
    TaskCompleted(String),
    CommitmentRecorded(String),
}

#[derive(Debug, Default)]
struct Log {
    acks: Vec<Ack>,
    /// Errors seen before the kill: none are expected.
    early_errors: Vec<String>,
}

/// One client: starts engagements and completes their open tasks, recording commitments
/// when nothing is open, until the server goes away.
async fn worker(
    mut client: Engagements,
    model: Arc<Model>,
    model_name: String,
    index: usize,
    log: Arc<Mutex<Log>>,
    killed: Arc<AtomicBool>,
) {
    let fail = |what: String| {
        if !killed.load(Ordering::SeqCst) {
            log.lock().unwrap().early_errors.push(what);
        }
    };
    for round in 0.. {
        let id = format!("load-{index}-{round}");
        let created = client
            .create_engagement(proto::CreateEngagementRequest {
                parent: parent(),
                engagement_id: id.clone(),
                model: model_name.clone(),
                model_version: 0,
                timezone: "UTC".to_owned(),
                people: ["client", "coach", "sponsor", "hr"]
                    .iter()
                    .map(|role| proto::RoleBinding {
                        role: (*role).to_owned(),
                        people: vec![format!("{role}-{index}")],
                    })
                    .chain(std::iter::once(proto::RoleBinding {
                        role: "stakeholder".to_owned(),
                        people: vec![format!("stakeholder-{index}")],
                    }))
                    .collect(),
                request_id: String::new(),
            })
            .await;
        let mut engagement = match created {
            Ok(response) => response.into_inner(),
            Err(status) => return fail(format!("CreateEngagement {id}: {status:?}")),
        };
        record(&log, &engagement, Change::Created);
        for step in 0..12 {
            let open = engagement
                .tasks
                .iter()
                .find(|task| task.state() == proto::task::State::Open)
                .cloned();
            let result = match &open {
                Some(task) => {
                    client
                        .complete_task(proto::CompleteTaskRequest {
                            name: task.name.clone(),
                            outputs: Some(default_outputs(&model, &task.key)),
                            etag: engagement.etag.clone(),
                            request_id: String::new(),
                        })
                        .await
                }
                None => {
                    client
                        .record_commitment(proto::RecordCommitmentRequest {
                            engagement: engagement.name.clone(),
                            commitment_id: format!("c-{step}"),
                            description: "Hold a skip-level meeting".to_owned(),
                            owner: String::new(),
                            follow_up_time: None,
                            etag: engagement.etag.clone(),
                            request_id: String::new(),
                        })
                        .await
                }
            };
            engagement = match result {
                Ok(response) => response.into_inner(),
                Err(status) => return fail(format!("a command on {}: {status:?}", engagement.name)),
            };
            let change = match open {
                Some(task) => Change::TaskCompleted(instance_of(&task.name).to_owned()),
                None => Change::CommitmentRecorded(format!("c-{step}")),
            };
            record(&log, &engagement, change);
        }
    }
}

fn record(log: &Mutex<Log>, engagement: &proto::Engagement, change: Change) {
    log.lock().unwrap().acks.push(Ack {
        engagement: engagement.name.clone(),
        event_count: engagement.event_count,
        etag: engagement.etag.clone(),
        change,
    });
}

async fn acknowledged_changes_survive_kill_9(backend: Backend) {
    let mut server = TestServer::start(backend).await;
    let published = server.publish_builtin("four-stage").await;
    let model = Arc::new(parse_model(&builtin_source("four-stage")));
    let log = Arc::new(Mutex::new(Log::default()));
    let killed = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..WORKERS)
        .map(|index| {
            tokio::spawn(worker(
                // A coach, through a system that may start engagements.
                server.engagements_with(&Claims::system(&format!("coach-{index}"), TENANT, &SYSTEM_SCOPES)),
                Arc::clone(&model),
                published.name.clone(),
                index,
                Arc::clone(&log),
                Arc::clone(&killed),
            ))
        })
        .collect();

    wait_until("enough commands are acknowledged", Duration::from_secs(120), || async {
        let log = log.lock().unwrap();
        assert!(
            log.early_errors.is_empty(),
            "commands failed under load: {:?}",
            log.early_errors
        );
        (log.acks.len() >= ACKS_BEFORE_KILL).then_some(())
    })
    .await;
    killed.store(true, Ordering::SeqCst);
    server.kill9().await;
    for worker in workers {
        tokio::time::timeout(Duration::from_secs(30), worker)
            .await
            .expect("a worker did not notice the server is gone")
            .expect("a worker panicked");
    }
    let log = std::mem::take(&mut *log.lock().unwrap());
    assert!(
        log.early_errors.is_empty(),
        "commands failed under load: {:?}",
        log.early_errors
    );

    server.restart().await;

    let mut by_engagement: BTreeMap<String, Vec<Ack>> = BTreeMap::new();
    for ack in &log.acks {
        by_engagement
            .entry(ack.engagement.clone())
            .or_default()
            .push(ack.clone());
    }
    for (name, acks) in &by_engagement {
        let engagement = server.get_engagement(name).await;
        let acknowledged = acks.iter().map(|ack| ack.event_count).max().unwrap_or_default();
        assert!(
            engagement.event_count >= acknowledged,
            "{name}: {} events after the restart, but {acknowledged} were acknowledged",
            engagement.event_count
        );
        let last = acks.last().expect("at least one ack");
        if engagement.event_count == last.event_count {
            assert_eq!(engagement.etag, last.etag, "{name}: same events, different etag");
        }
        let events = server.history(name).await;
        assert_gapless(name, &events);
        assert_eq!(
            events.len() as u64,
            engagement.event_count,
            "{name}: history and event_count differ"
        );
        assert_eq!(
            events.first().map(|event| event.r#type.as_str()),
            Some("engagement_started")
        );
        for ack in acks {
            match &ack.change {
                Change::Created => {}
                Change::TaskCompleted(instance) => assert_eq!(
                    history::with_id(&events, "task_completed", instance).len(),
                    1,
                    "{name}: acknowledged completion of {instance} is not in the history once"
                ),
                Change::CommitmentRecorded(id) => assert_eq!(
                    events
                        .iter()
                        .filter(|event| event.r#type == "commitment_recorded"
                            && history::detail(event, "commitment") == Some(id.as_str()))
                        .count(),
                    1,
                    "{name}: acknowledged commitment {id} is not in the history once"
                ),
            }
        }
    }
    let listed = server.list_engagements(proto::ListEngagementsRequest::default()).await;
    for name in by_engagement.keys() {
        assert!(
            listed.iter().any(|engagement| engagement.name == *name),
            "{name} is missing from ListEngagements after the restart"
        );
    }
    // Everything the list knows loads, including anything committed but never acknowledged.
    for engagement in &listed {
        let loaded = server.get_engagement(&engagement.name).await;
        let events = server.history(&engagement.name).await;
        assert_gapless(&engagement.name, &events);
        assert_eq!(events.len() as u64, loaded.event_count);
    }

    // And the restarted server keeps working on the same engagements.
    let (name, _) = by_engagement.iter().next().expect("some engagement");
    let engagement = server.get_engagement(name).await;
    let result = server
        .engagements()
        .record_commitment(proto::RecordCommitmentRequest {
            engagement: name.clone(),
            commitment_id: "after-restart".to_owned(),
            description: "Check in after the restart".to_owned(),
            owner: String::new(),
            follow_up_time: None,
            etag: engagement.etag.clone(),
            request_id: String::new(),
        })
        .await
        .unwrap_or_else(|status| panic!("a command after the restart failed: {status:?}"))
        .into_inner();
    assert!(result.event_count > engagement.event_count);
    eprintln!(
        "{} commands acknowledged on {} engagements before the kill",
        log.acks.len(),
        by_engagement.len()
    );
}

on_both_backends!(acknowledged_changes_survive_kill_9);
