//! The event relay against the real RabbitMQ, each test with its own exchange and queues:
//! every public event arrives, in order per engagement, as a CloudEvent the contract
//! (`docs/asyncapi.yaml`) accepts; a broker outage or a crash between publish and confirm
//! loses nothing (a re-send has the same id); confidential content never leaves.

use std::collections::BTreeMap;
use std::time::Duration;

use coachflow_integration_tests::amqp::{self, Consumer, Received, TestExchange, list};
use coachflow_integration_tests::client::{builtin_source, metric_value};
use coachflow_integration_tests::contract::Contract;
use coachflow_integration_tests::history::public_events;
use coachflow_integration_tests::proxy::FaultProxy;
use coachflow_integration_tests::{Backend, Driver, ServerBuilder, TestServer, engagement_name, json_to_struct};
use coachflow_server::proto;
use serde_json::{Value, json};

use crate::support::{engagement_events, next_events, watch};

const WAIT: Duration = Duration::from_secs(60);

/// A server relaying to `exchange` at `url`, polling quickly so tests do not wait.
fn relaying(builder: ServerBuilder, url: &str, exchange: &str) -> ServerBuilder {
    builder
        .set("broker.url", url)
        .set("broker.exchange", exchange)
        .set("broker.poll_interval", "100ms")
        .set("broker.reconnect_min", "50ms")
        .set("broker.reconnect_max", "500ms")
        .set("broker.confirm_timeout", "5s")
}

/// `(sequence, type)` of the messages, for comparing with the history's public events.
fn summary(received: &[Received]) -> Vec<(u64, String)> {
    received
        .iter()
        .map(|message| {
            let sequence = message.json_body()["sequence"].as_u64().expect("a sequence");
            let event_type = message.header_str("cloudEvents_type").expect("a type").to_owned();
            (sequence, event_type)
        })
        .collect()
}

/// Messages grouped by their engagement (the CloudEvents subject), in arrival order.
fn by_engagement(received: &[Received]) -> BTreeMap<String, Vec<&Received>> {
    let mut engagements: BTreeMap<String, Vec<&Received>> = BTreeMap::new();
    for message in received {
        let subject = message.header_str("cloudEvents_subject").expect("a subject").to_owned();
        engagements.entry(subject).or_default().push(message);
    }
    engagements
}

/// The messages without re-sends: a message whose id came before is dropped. Panics if a
/// re-sent id carries other content, or if first deliveries break the engagement's order.
fn deduplicated(received: &[Received]) -> Vec<Received> {
    let mut seen: BTreeMap<String, &Received> = BTreeMap::new();
    let mut unique = Vec::new();
    for message in received {
        let id = message.header_str("cloudEvents_id").expect("an id").to_owned();
        assert_eq!(message.message_id.as_deref(), Some(id.as_str()), "message_id is the id");
        match seen.get(&id) {
            Some(first) => assert_eq!(
                (first.body.as_slice(), &first.headers),
                (message.body.as_slice(), &message.headers),
                "a re-send of {id} must be the same event"
            ),
            None => {
                seen.insert(id, message);
                unique.push(message.clone());
            }
        }
    }
    unique
}

fn assert_contract(contract: &Contract, received: &[Received]) {
    for message in received {
        let content_type = message.content_type.as_deref().unwrap_or("");
        if let Err(errors) = contract.validate_binary(&message.headers, content_type, &message.body) {
            panic!("a published message breaks docs/asyncapi.yaml: {errors:#?}\n{message}");
        }
    }
}

async fn drive_to_completion(server: &TestServer, id: &str) -> String {
    let name = engagement_name(id);
    let mut driver = Driver::new(server, &builtin_source("four-stage"), &name);
    driver.drive_to_completion(400).await;
    name
}

async fn relayed_milestones_arrive_in_order_with_distinct_ids(backend: Backend) {
    let exchange = TestExchange::new("milestones");
    let mut milestones = Consumer::bind(exchange.url(), exchange.name(), &["*.milestone.*"]).await;
    let mut everything = Consumer::bind(exchange.url(), exchange.name(), &["#"]).await;
    let server = relaying(TestServer::builder(backend), exchange.url(), exchange.name())
        .start()
        .await;
    let model = server.publish_builtin("four-stage").await;
    server.create_engagement(&model, "relayed", 2).await;
    let name = drive_to_completion(&server, "relayed").await;

    let expected = public_events(&server.history(&name).await);
    let expected_milestones: Vec<(u64, String)> = expected
        .iter()
        .filter(|(_, event_type)| event_type == "dev.coachflow.milestone.reached.v1")
        .cloned()
        .collect();
    assert!(
        expected_milestones.len() >= 5,
        "a completed four-stage engagement reaches its milestones: {expected:?}"
    );
    let received = milestones
        .collect_until(WAIT, |received| received.len() >= expected_milestones.len())
        .await;
    assert_eq!(summary(&received), expected_milestones, "every milestone, in order");
    let mut ids: Vec<&str> = received
        .iter()
        .map(|message| message.header_str("cloudEvents_id").expect("an id"))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), received.len(), "distinct ids:\n{}", list(&received));
    for message in &received {
        assert_eq!(message.routing_key, "acme.milestone.reached");
        assert_eq!(message.exchange, exchange.name());
        assert_eq!(message.delivery_mode, Some(2), "persistent");
        assert_eq!(message.content_type.as_deref(), Some("application/json"));
        assert_eq!(message.header_str("cloudEvents_subject"), Some(name.as_str()));
        let traceparent = message.header_str("cloudEvents_traceparent").expect("a traceparent");
        assert!(
            traceparent.starts_with("00-") && traceparent.len() == 55,
            "{traceparent}"
        );
    }

    // Everything else too, exactly once in this calm run, and each as the contract says.
    let all = everything
        .collect_until(WAIT, |received| received.len() >= expected.len())
        .await;
    assert_eq!(summary(&all), expected, "every public event, in order");
    assert_contract(&Contract::load(), &all);
    assert!(
        everything.drain_for(Duration::from_millis(500)).await.is_empty(),
        "nothing more"
    );

    let metrics = server.scrape_metrics().await;
    let confirms = metric_value(&metrics, "coachflow_relay_confirms_total", &[]).unwrap_or(0.0);
    assert!(
        confirms >= expected.len() as f64,
        "confirms {confirms} of {}",
        expected.len()
    );
    assert_eq!(metric_value(&metrics, "coachflow_relay_connected", &[]), Some(1.0));
    assert!(
        metric_value(&metrics, "coachflow_relay_lag_seconds_count", &[]).unwrap_or(0.0) >= 1.0,
        "the lag is measured"
    );
    exchange.cleanup().await;
}

async fn a_broker_outage_loses_nothing(backend: Backend) {
    let exchange = TestExchange::new("outage");
    let mut consumer = Consumer::bind(exchange.url(), exchange.name(), &["#"]).await;
    let proxy = FaultProxy::start(amqp::broker_address(exchange.url()).await).await;
    let server = relaying(
        TestServer::builder(backend),
        &proxy.amqp_url(exchange.url()),
        exchange.name(),
    )
    .start()
    .await;
    let model = server.publish_builtin("four-stage").await;
    for id in ["outage-a", "outage-b"] {
        server.create_engagement(&model, id, 1).await;
    }
    let names = [engagement_name("outage-a"), engagement_name("outage-b")];
    let mut drivers: Vec<Driver<'_>> = names
        .iter()
        .map(|name| Driver::new(&server, &builtin_source("four-stage"), name))
        .collect();
    for driver in &mut drivers {
        for _ in 0..3 {
            driver.step().await;
        }
    }
    let mut received = consumer.collect_until(WAIT, |received| !received.is_empty()).await;

    // The broker goes away; commands keep being accepted, their events wait.
    proxy.cut().await;
    for driver in &mut drivers {
        for _ in 0..6 {
            driver.step().await;
        }
    }
    received.extend(consumer.drain_for(Duration::from_millis(300)).await);
    proxy.restore();

    let mut expected: BTreeMap<String, Vec<(u64, String)>> = BTreeMap::new();
    for name in &names {
        expected.insert(name.clone(), public_events(&server.history(name).await));
    }
    let total: usize = expected.values().map(Vec::len).sum();
    let rest = consumer
        .collect_until(WAIT, |more| {
            deduplicated(&[received.as_slice(), more].concat()).len() >= total
        })
        .await;
    received.extend(rest);
    let unique = deduplicated(&received);
    for (name, messages) in by_engagement(&unique) {
        let owned: Vec<Received> = messages.into_iter().cloned().collect();
        assert_eq!(
            summary(&owned),
            expected[&name],
            "{name}: every event, in order, after the outage"
        );
    }
    assert_eq!(unique.len(), total);
    assert_contract(&Contract::load(), &unique);
    let metrics = server.scrape_metrics().await;
    assert!(
        metric_value(&metrics, "coachflow_relay_reconnects_total", &[]).unwrap_or(0.0) >= 1.0,
        "the relay reconnected:\n{}",
        server.log_tail(30)
    );
    exchange.cleanup().await;
}

async fn an_unconfirmed_publish_is_sent_again_after_kill_9(backend: Backend) {
    let exchange = TestExchange::new("crash");
    let mut consumer = Consumer::bind(exchange.url(), exchange.name(), &["#"]).await;
    let proxy = FaultProxy::start(amqp::broker_address(exchange.url()).await).await;
    let mut server = relaying(
        TestServer::builder(backend),
        &proxy.amqp_url(exchange.url()),
        exchange.name(),
    )
    .set("broker.lease", "20s")
    .start()
    .await;
    let model = server.publish_builtin("four-stage").await;
    server.create_engagement(&model, "crash", 1).await;
    let name = engagement_name("crash");
    let started = public_events(&server.history(&name).await).len();
    let before = consumer.collect_until(WAIT, |received| received.len() >= started).await;

    // The next event reaches the broker, but its confirm does not reach the relay; the
    // engagement's later events wait behind it (one message in flight per engagement).
    proxy.hold_downstream();
    let mut driver = Driver::new(&server, &builtin_source("four-stage"), &name);
    driver.step().await;
    let history = public_events(&server.history(&name).await);
    let unconfirmed = history.len() - started;
    assert!(unconfirmed > 1, "the step made public events: {history:?}");
    let published = consumer.collect_until(WAIT, |received| !received.is_empty()).await;
    assert!(
        consumer.drain_for(Duration::from_millis(500)).await.is_empty(),
        "nothing follows an unconfirmed event of the same engagement"
    );
    server.kill9().await;
    proxy.release_downstream();

    // The claim of the dead process holds until its lease ends; then the new process sends
    // the unconfirmed events again, with the same ids.
    server.restart().await;
    assert!(
        consumer.drain_for(Duration::from_millis(500)).await.is_empty(),
        "nothing is re-sent while the dead relay's claim lasts"
    );
    server.advance(chrono::Duration::seconds(21));
    let resent = consumer
        .collect_until(WAIT, |received| received.len() >= unconfirmed)
        .await;
    let ids = |messages: &[Received]| -> Vec<String> {
        messages
            .iter()
            .map(|message| message.header_str("cloudEvents_id").expect("an id").to_owned())
            .collect()
    };
    assert_eq!(
        ids(&resent)[..1],
        ids(&published),
        "the unconfirmed event again, with its id"
    );
    assert_eq!(summary(&resent), history[started..], "then the rest, in order");
    let everything: Vec<Received> = before.into_iter().chain(published).chain(resent).collect();
    assert_eq!(summary(&deduplicated(&everything)), history);
    assert!(
        consumer.drain_for(Duration::from_millis(500)).await.is_empty(),
        "confirmed events are not sent a third time"
    );
    exchange.cleanup().await;
}

/// A model whose task records outputs of every confidentiality: a score integrations may
/// see, a rating for the coach only, an enum for HR, and free-text notes.
const CONFIDENTIAL_MODEL: &str = r#"
apiVersion: coachflow.dev/v1
kind: ProcessModel
metadata:
  key: confidential
  name: Confidential outputs
spec:
  roles:
    - key: coach
    - key: client
    - key: hr
  milestones:
    - key: assessed
  phases:
    - key: assessment
      name: Assessment
      tasks:
        - key: assessment
          name: Assessment
          kind: assessment
          assignee: coach
          milestone: assessed
          outputs:
            - key: score
              type: integer
              visibility: [coach, integration]
            - key: private_rating
              type: integer
              visibility: [coach]
            - key: readiness
              type: enum
              values: [ready-marker-hr-only, not-ready]
              visibility: [hr]
            - key: notes
              type: text
              visibility: [coach, client, hr]
        - key: wrap-up
          name: Wrap-up
          kind: meeting
          assignee: coach
          optional: true
"#;

/// Strings and numbers that only confidential fields hold.
const SECRETS: [&str; 5] = [
    "SECRET-NOTES-MARKER",
    "987654321",
    "ready-marker-hr-only",
    "SECRET-GOAL-MARKER",
    "SECRET-REASON-MARKER",
];

async fn confidential_outputs_never_leave(backend: Backend) {
    let exchange = TestExchange::new("confidential");
    let mut consumer = Consumer::bind(exchange.url(), exchange.name(), &["#"]).await;
    let server = relaying(TestServer::builder(backend), exchange.url(), exchange.name())
        .start()
        .await;
    let model = server.publish(CONFIDENTIAL_MODEL).await;
    let engagement = server.create_engagement(&model, "confidential", 0).await;
    let name = engagement.name.clone();
    let task = |key: &str| {
        engagement
            .tasks
            .iter()
            .find(|task| task.key == key)
            .unwrap_or_else(|| panic!("no task {key}"))
            .name
            .clone()
    };
    let mut client = server.engagements_as("person/coach-1");
    client
        .record_goal(proto::RecordGoalRequest {
            engagement: name.clone(),
            goal_id: "goal-1".to_owned(),
            title: "SECRET-GOAL-MARKER".to_owned(),
            measure: "SECRET-GOAL-MARKER".to_owned(),
            target: "SECRET-GOAL-MARKER".to_owned(),
            due_date: String::new(),
            etag: String::new(),
            request_id: String::new(),
        })
        .await
        .unwrap();
    client
        .skip_task(proto::SkipTaskRequest {
            name: task("wrap-up"),
            reason: "SECRET-REASON-MARKER".to_owned(),
            etag: String::new(),
            request_id: String::new(),
        })
        .await
        .unwrap();
    client
        .complete_task(proto::CompleteTaskRequest {
            name: task("assessment"),
            outputs: Some(json_to_struct(&json!({
                "score": 7,
                "private_rating": 987_654_321,
                "readiness": "ready-marker-hr-only",
                "notes": "SECRET-NOTES-MARKER: the client struggles with delegation",
            }))),
            etag: String::new(),
            request_id: String::new(),
        })
        .await
        .unwrap();

    let expected = public_events(&server.history(&name).await);
    let received = consumer
        .collect_until(WAIT, |received| received.len() >= expected.len())
        .await;
    assert_eq!(summary(&received), expected);
    for message in &received {
        let text = format!("{} {}", message.headers, message.body_str());
        for secret in SECRETS {
            assert!(!text.contains(secret), "{secret} leaked in\n{message}");
        }
    }
    let completed: Vec<&Received> = received
        .iter()
        .filter(|message| message.routing_key == "acme.task.completed")
        .collect();
    assert_eq!(completed.len(), 1);
    assert_eq!(completed[0].json_body()["outputs"], json!({"score": 7}));
    assert_contract(&Contract::load(), &received);

    // WatchEvents serves the same audience the same data.
    let mut stream = watch(&server, engagement_events(&name, 0)).await;
    let watched = next_events(&mut stream, expected.len(), WAIT).await;
    for event in &watched {
        let data = Value::Object(
            coachflow_server::convert::struct_to_json(event.data.as_ref().expect("data"))
                .into_iter()
                .collect(),
        );
        let text = data.to_string();
        for secret in SECRETS {
            assert!(!text.contains(secret), "{secret} leaked in WatchEvents item {event:?}");
        }
        if event.r#type == "dev.coachflow.task.completed.v1" {
            assert_eq!(data["outputs"], json!({"score": 7}));
        }
    }
    exchange.cleanup().await;
}

async fn structured_mode_sends_whole_cloudevents(backend: Backend) {
    let exchange = TestExchange::new("structured");
    let mut consumer = Consumer::bind(exchange.url(), exchange.name(), &["acme.#"]).await;
    let server = relaying(TestServer::builder(backend), exchange.url(), exchange.name())
        .set("broker.content_mode", "structured")
        .start()
        .await;
    let model = server.publish_builtin("four-stage").await;
    server.create_engagement(&model, "structured", 1).await;
    let name = engagement_name("structured");
    let expected = public_events(&server.history(&name).await);
    let received = consumer
        .collect_until(WAIT, |received| received.len() >= expected.len())
        .await;
    let contract = Contract::load();
    let mut summary = Vec::new();
    for message in &received {
        assert_eq!(message.content_type.as_deref(), Some("application/cloudevents+json"));
        assert_eq!(message.delivery_mode, Some(2));
        if let Err(errors) = contract.validate_structured(&message.body) {
            panic!("a structured message breaks docs/asyncapi.yaml: {errors:#?}\n{message}");
        }
        let event: Value = message.json_body();
        assert_eq!(event["subject"], json!(name));
        assert_eq!(message.message_id.as_deref(), event["id"].as_str());
        summary.push((
            event["data"]["sequence"].as_u64().expect("a sequence"),
            event["type"].as_str().expect("a type").to_owned(),
        ));
    }
    assert_eq!(summary, expected);
    exchange.cleanup().await;
}

async fn two_replicas_relay_each_engagement_in_order(backend: Backend) {
    let exchange = TestExchange::new("replicas");
    let mut consumer = Consumer::bind(exchange.url(), exchange.name(), &["#"]).await;
    let first = relaying(TestServer::builder(backend), exchange.url(), exchange.name())
        .start()
        .await;
    let second = relaying(TestServer::builder(backend), exchange.url(), exchange.name())
        .sharing_with(&first)
        .start()
        .await;
    let model = first.publish_builtin("four-stage").await;
    let ids: Vec<String> = (0..6).map(|n| format!("replicated-{n}")).collect();
    for id in &ids {
        first.create_engagement(&model, id, 1).await;
    }
    // Each engagement is driven through both replicas in turn, all engagements at once.
    let drives = ids.iter().map(|id| {
        let (first, second) = (&first, &second);
        async move {
            let name = engagement_name(id);
            let mut on_first = Driver::new(first, &builtin_source("four-stage"), &name);
            let mut on_second = Driver::new(second, &builtin_source("four-stage"), &name);
            for _ in 0..6 {
                on_first.step().await;
                on_second.step().await;
            }
            name
        }
    });
    let names = futures_util::future::join_all(drives).await;
    let mut expected = BTreeMap::new();
    for name in &names {
        expected.insert(name.clone(), public_events(&first.history(name).await));
    }
    let total: usize = expected.values().map(Vec::len).sum();
    let received = consumer.collect_until(WAIT, |received| received.len() >= total).await;
    for (name, messages) in by_engagement(&received) {
        let owned: Vec<Received> = messages.into_iter().cloned().collect();
        assert_eq!(
            summary(&owned),
            expected[&name],
            "{name}: every event once, in order, whichever replica relayed it"
        );
    }
    assert!(
        consumer.drain_for(Duration::from_millis(500)).await.is_empty(),
        "no event is relayed twice"
    );
    exchange.cleanup().await;
}

on_both_backends!(
    relayed_milestones_arrive_in_order_with_distinct_ids,
    a_broker_outage_loses_nothing,
    an_unconfirmed_publish_is_sent_again_after_kill_9,
    confidential_outputs_never_leave,
    structured_mode_sends_whole_cloudevents,
    two_replicas_relay_each_engagement_in_order,
);
