//! `WatchEvents`: an engagement's public events arrive in sequence order, match its
//! history, and a resumed stream delivers exactly the rest.

use std::time::Duration;

use coachflow_integration_tests::client::builtin_source;
use coachflow_integration_tests::history::public_events;
use coachflow_integration_tests::{Backend, Driver, TestServer, engagement_name};
use coachflow_server::proto;

use crate::support::{engagement_events, next_events, struct_string, watch};

const WAIT: Duration = Duration::from_secs(30);

fn summary(events: &[proto::PublicEvent]) -> Vec<(u64, String)> {
    events
        .iter()
        .map(|event| (event.sequence, event.r#type.clone()))
        .collect()
}

async fn watched_events_arrive_in_order_and_resume_exactly(backend: Backend) {
    let server = TestServer::start(backend).await;
    let model = server.publish_builtin("four-stage").await;
    let name = engagement_name("watched");
    server.create_engagement(&model, "watched", 2).await;
    // Another engagement's events must not show up in this one's stream.
    server.create_engagement(&model, "other", 1).await;
    let mut driver = Driver::new(&server, &builtin_source("four-stage"), &name);
    for _ in 0..5 {
        driver.step().await;
    }

    let history = server.history(&name).await;
    let expected = public_events(&history);
    assert!(expected.len() >= 8, "too few public events to test with: {expected:?}");
    let mut stream = watch(&server, engagement_events(&name, 0)).await;
    let received = next_events(&mut stream, expected.len(), WAIT).await;
    assert_eq!(
        summary(&received),
        expected,
        "the stream must match the history's public events"
    );
    for pair in received.windows(2) {
        assert!(
            pair[0].position < pair[1].position,
            "positions must increase: {} then {}",
            pair[0].position,
            pair[1].position
        );
    }
    for event in &received {
        assert_eq!(event.subject, name);
        assert_eq!(event.spec_version, "1.0");
        assert_eq!(event.source, "//coachflow.dev/tenants/acme");
        assert!(event.time.is_some(), "{event:?}");
        assert_eq!(struct_string(event.data.as_ref(), "engagement"), Some(name.as_str()));
    }
    let mut ids: Vec<&str> = received.iter().map(|event| event.id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), received.len(), "event ids must be unique");

    // Live: a new command's events follow on the open stream, and nothing else.
    driver.step().await;
    let history = server.history(&name).await;
    let all = public_events(&history);
    let fresh = &all[expected.len()..];
    assert!(!fresh.is_empty(), "the step made no public event");
    let live = next_events(&mut stream, fresh.len(), WAIT).await;
    assert_eq!(summary(&live), fresh, "live events");
    assert!(live[0].position > received.last().expect("events").position);
    drop(stream);

    // Resume after the middle event: exactly the rest, then the next new event.
    let everything: Vec<proto::PublicEvent> = received.into_iter().chain(live).collect();
    let middle = everything.len() / 2;
    let mut resumed = watch(&server, engagement_events(&name, everything[middle].position)).await;
    let rest = next_events(&mut resumed, everything.len() - middle - 1, WAIT).await;
    assert_eq!(
        rest,
        everything[middle + 1..],
        "a resumed stream delivers exactly the rest"
    );
    driver.step().await;
    let history = server.history(&name).await;
    let newest = public_events(&history);
    let next = next_events(&mut resumed, 1, WAIT).await;
    assert_eq!(
        summary(&next),
        newest[everything.len()..everything.len() + 1],
        "after the rest comes the next new event, not a repeat"
    );

    // A type filter selects only those events, still in order.
    let completed: Vec<(u64, String)> = newest
        .iter()
        .filter(|(_, event_type)| event_type == "dev.coachflow.task.completed.v1")
        .cloned()
        .collect();
    let mut filtered = watch(
        &server,
        proto::WatchEventsRequest {
            types: vec!["dev.coachflow.task.completed.v1".to_owned()],
            ..engagement_events(&name, 0)
        },
    )
    .await;
    let only_completions = next_events(&mut filtered, completed.len(), WAIT).await;
    assert_eq!(summary(&only_completions), completed);
}

on_both_backends!(watched_events_arrive_in_order_and_resume_exactly);
