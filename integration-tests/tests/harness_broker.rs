#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The broker harness against the real RabbitMQ: messages pass the fault proxy intact, a cut
//! fails connections fast until it is restored, and held-back bytes hide a publisher
//! confirm from a publisher whose message did reach the broker.

use std::future::Future;
use std::pin::pin;
use std::time::Duration;

use coachflow_integration_tests::amqp::{self, Consumer, TestExchange};
use coachflow_integration_tests::proxy::FaultProxy;
use coachflow_integration_tests::wait_until;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldArray, FieldTable, LongString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use serde_json::json;

/// Long enough for anything that does happen on a loaded machine.
const PATIENCE: Duration = Duration::from_secs(10);
/// How long to watch for something that must not happen.
const QUIET: Duration = Duration::from_millis(500);

async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(PATIENCE, future)
        .await
        .unwrap_or_else(|_| panic!("{what} took more than {PATIENCE:?}"))
}

/// A connection and a channel through `proxy`, with the exchange declared.
async fn publisher(proxy: &FaultProxy, exchange: &str) -> (Connection, Channel) {
    let connection = amqp::connect(&proxy.amqp_url(&amqp::amqp_url()), "harness test publisher").await;
    let channel = connection.create_channel().await.expect("a channel");
    amqp::declare_exchange(&channel, exchange).await;
    (connection, channel)
}

async fn publish(channel: &Channel, exchange: &str, routing_key: &str, body: &[u8]) -> lapin::PublisherConfirm {
    channel
        .basic_publish(
            exchange.into(),
            routing_key.into(),
            BasicPublishOptions::default(),
            body,
            BasicProperties::default().with_message_id(format!("{routing_key}-1").into()),
        )
        .await
        .expect("basic.publish is sent")
}

async fn start_proxy() -> FaultProxy {
    FaultProxy::start(amqp::broker_address(&amqp::amqp_url()).await).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_pass_the_proxy_with_properties_and_headers_intact() {
    let exchange = TestExchange::new("passthrough");
    let mut consumer = Consumer::bind(exchange.url(), exchange.name(), &["engagement.#"]).await;
    let proxy = start_proxy().await;
    let (_connection, channel) = publisher(&proxy, exchange.name()).await;
    channel.confirm_select(ConfirmSelectOptions::default()).await.unwrap();

    let mut nested = FieldTable::default();
    nested.insert("depth".into(), AMQPValue::LongInt(2));
    let mut headers = FieldTable::default();
    headers.insert("ce_id".into(), AMQPValue::LongString(LongString::from("event-1")));
    headers.insert("attempt".into(), AMQPValue::LongLongInt(3));
    headers.insert("replayed".into(), AMQPValue::Boolean(false));
    headers.insert("at".into(), AMQPValue::Timestamp(1_772_438_400));
    headers.insert(
        "tags".into(),
        AMQPValue::FieldArray(FieldArray::from(vec![AMQPValue::LongString(LongString::from("a"))])),
    );
    headers.insert("nested".into(), AMQPValue::FieldTable(nested));
    let properties = BasicProperties::default()
        .with_content_type("application/json".into())
        .with_message_id("event-1".into())
        .with_delivery_mode(2)
        .with_type("engagement.created".into())
        .with_app_id("coachflow".into())
        .with_timestamp(1_772_438_400)
        .with_headers(headers);
    let confirmation = channel
        .basic_publish(
            exchange.name().into(),
            "engagement.created".into(),
            BasicPublishOptions::default(),
            br#"{"engagement":"e1"}"#,
            properties,
        )
        .await
        .unwrap();
    assert!(within("the confirm", confirmation).await.unwrap().is_ack());
    // Not bound: the consumer must not see it.
    let unbound = publish(&channel, exchange.name(), "task.created", b"{}").await;
    assert!(within("the confirm", unbound).await.unwrap().is_ack());

    let received = consumer.next(PATIENCE).await.expect("the message arrives");
    assert_eq!(received.exchange, exchange.name());
    assert_eq!(received.routing_key, "engagement.created");
    assert_eq!(received.content_type.as_deref(), Some("application/json"));
    assert_eq!(received.message_id.as_deref(), Some("event-1"));
    assert_eq!(received.delivery_mode, Some(2));
    assert_eq!(received.message_type.as_deref(), Some("engagement.created"));
    assert_eq!(received.app_id.as_deref(), Some("coachflow"));
    assert_eq!(received.timestamp, Some(1_772_438_400));
    assert!(!received.redelivered);
    assert_eq!(
        received.headers,
        json!({
            "ce_id": "event-1",
            "attempt": 3,
            "replayed": false,
            "at": 1_772_438_400,
            "tags": ["a"],
            "nested": {"depth": 2},
        })
    );
    assert_eq!(received.header_str("ce_id"), Some("event-1"));
    assert_eq!(received.header_str("attempt"), None);
    assert_eq!(received.json_body(), json!({"engagement": "e1"}));
    let more = consumer.drain_for(QUIET).await;
    assert!(more.is_empty(), "unexpected messages:\n{}", amqp::list(&more));

    assert_eq!((proxy.connections(), proxy.accepted(), proxy.refused()), (1, 1, 0));
    exchange.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_fails_connections_fast_until_it_is_restored() {
    let exchange = TestExchange::new("cut");
    let mut consumer = Consumer::bind(exchange.url(), exchange.name(), &["#"]).await;
    let proxy = start_proxy().await;
    let (connection, channel) = publisher(&proxy, exchange.name()).await;
    channel.confirm_select(ConfirmSelectOptions::default()).await.unwrap();

    within("the cut", proxy.cut()).await;
    assert_eq!(proxy.connections(), 0);
    wait_until("the publisher's connection notices the cut", PATIENCE, || async {
        (!connection.status().connected()).then_some(())
    })
    .await;
    let after_cut = channel
        .basic_publish(
            exchange.name().into(),
            "lost".into(),
            BasicPublishOptions::default(),
            b"{}",
            BasicProperties::default(),
        )
        .await;
    assert!(after_cut.is_err(), "publishing on a cut connection succeeded");

    // Refused at once: an error, not a hang until some timeout.
    let started = tokio::time::Instant::now();
    let refused = within(
        "a connection attempt during the cut",
        Connection::connect(&proxy.amqp_url(&amqp::amqp_url()), ConnectionProperties::default()),
    )
    .await;
    assert!(refused.is_err(), "a connection succeeded during the cut");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "refusing took {:?}",
        started.elapsed()
    );
    assert!(proxy.refused() >= 1);
    assert_eq!((proxy.connections(), proxy.accepted()), (0, 1));

    proxy.restore();
    let (_connection, channel) = publisher(&proxy, exchange.name()).await;
    channel.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
    let confirm = publish(&channel, exchange.name(), "after.restore", b"{}").await;
    assert!(within("the confirm", confirm).await.unwrap().is_ack());
    let received = consumer.collect(1, PATIENCE).await;
    assert_eq!(received[0].routing_key, "after.restore", "{}", amqp::list(&received));
    assert_eq!((proxy.connections(), proxy.accepted()), (1, 2));
    let more = consumer.drain_for(QUIET).await;
    assert!(more.is_empty(), "unexpected messages:\n{}", amqp::list(&more));
    exchange.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_confirm_arrives_only_when_released() {
    let exchange = TestExchange::new("hold");
    let mut consumer = Consumer::bind(exchange.url(), exchange.name(), &["#"]).await;
    let proxy = start_proxy().await;
    let (connection, channel) = publisher(&proxy, exchange.name()).await;
    channel.confirm_select(ConfirmSelectOptions::default()).await.unwrap();

    proxy.hold_downstream();
    let mut confirm = pin!(publish(&channel, exchange.name(), "held.confirm", b"{}").await);
    let received = consumer.next(PATIENCE).await.expect("the message reaches the broker");
    assert_eq!(received.routing_key, "held.confirm");
    assert!(
        tokio::time::timeout(QUIET, &mut confirm).await.is_err(),
        "the confirm arrived while the proxy held it back"
    );
    assert!(connection.status().connected());

    proxy.release_downstream();
    assert!(within("the released confirm", confirm).await.unwrap().is_ack());
    // The connection carries on as before.
    let confirm = publish(&channel, exchange.name(), "after.release", b"{}").await;
    assert!(within("the confirm", confirm).await.unwrap().is_ack());
    assert_eq!(consumer.collect(1, PATIENCE).await[0].routing_key, "after.release");
    assert_eq!((proxy.connections(), proxy.accepted()), (1, 1));
    exchange.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_fails_a_held_confirm() {
    let exchange = TestExchange::new("hold_then_cut");
    let mut consumer = Consumer::bind(exchange.url(), exchange.name(), &["#"]).await;
    let proxy = start_proxy().await;
    let (_connection, channel) = publisher(&proxy, exchange.name()).await;
    channel.confirm_select(ConfirmSelectOptions::default()).await.unwrap();

    proxy.hold_downstream();
    let confirm = publish(&channel, exchange.name(), "never.confirmed", b"{}").await;
    consumer.next(PATIENCE).await.expect("the message reaches the broker");
    within("the cut", proxy.cut()).await;
    // The outcome a relay must handle: published, but only an error to show for it.
    assert!(within("the failed confirm", confirm).await.is_err());
    exchange.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_proxy_closes_its_connections() {
    let exchange = TestExchange::new("drop");
    let proxy = start_proxy().await;
    let address = proxy.addr();
    let (connection, _channel) = publisher(&proxy, exchange.name()).await;
    drop(proxy);
    wait_until(
        "the publisher's connection notices the proxy is gone",
        PATIENCE,
        || async { (!connection.status().connected()).then_some(()) },
    )
    .await;
    wait_until("the proxy stops listening", PATIENCE, || async {
        tokio::net::TcpStream::connect(address).await.is_err().then_some(())
    })
    .await;
    // Dropped without cleanup: the guard deletes the exchange.
}
