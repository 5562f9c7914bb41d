//! RabbitMQ from the tests' side: a consumer on its own exclusive queue that records what
//! the service published, and exchanges named per test so parallel tests share one broker
//! without seeing each other's messages.
//!
//! The broker is at `COACHFLOW_TEST_AMQP_URL` (default
//! `amqp://guest:guest@127.0.0.1:5672/%2f`).

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use futures_util::StreamExt as _;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, Connection, ConnectionProperties, ExchangeKind};
use serde_json::Value;
use tokio::time::Instant;

/// Environment variable with the URL of the RabbitMQ the tests use.
pub const AMQP_URL_VAR: &str = "COACHFLOW_TEST_AMQP_URL";
pub const DEFAULT_AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// How long connecting, declaring and deleting may take before the harness gives up.
const BROKER_TIMEOUT: Duration = Duration::from_secs(10);

/// The URL of the RabbitMQ the tests use.
pub fn amqp_url() -> String {
    std::env::var(AMQP_URL_VAR).unwrap_or_else(|_| DEFAULT_AMQP_URL.to_owned())
}

/// A new exchange name for `test`: `coachflow.test.<test>.<12 random hex digits>`.
pub fn unique_exchange(test: &str) -> String {
    let test: String = test
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(100)
        .collect();
    // The random end of a v7 UUID: its start is the time, shared by tests started together.
    let id = uuid::Uuid::now_v7().simple().to_string();
    format!("coachflow.test.{test}.{}", &id[id.len() - 12..])
}

/// Connects to `url`, panicking with a hint when the broker is not there.
pub async fn connect(url: &str, connection_name: &str) -> Connection {
    let properties = ConnectionProperties::default().with_connection_name(connection_name.into());
    match tokio::time::timeout(BROKER_TIMEOUT, Connection::connect(url, properties)).await {
        Ok(Ok(connection)) => connection,
        Ok(Err(error)) => panic!(
            "RabbitMQ is unreachable at {} ({error}): start it, or point {AMQP_URL_VAR} at a broker",
            redact_url(url)
        ),
        Err(_) => panic!(
            "RabbitMQ at {} did not complete a connection within {BROKER_TIMEOUT:?}",
            redact_url(url)
        ),
    }
}

/// Declares `exchange` as the service does (topic, durable, no arguments), so the service
/// and the tests may declare it in either order.
pub async fn declare_exchange(channel: &Channel, exchange: &str) {
    let options = ExchangeDeclareOptions {
        durable: true,
        ..ExchangeDeclareOptions::default()
    };
    channel
        .exchange_declare(exchange.into(), ExchangeKind::Topic, options, FieldTable::default())
        .await
        .unwrap_or_else(|error| panic!("cannot declare exchange {exchange}: {error}"));
}

/// Deletes `exchange` (a missing one is fine).
pub async fn delete_exchange(url: &str, exchange: &str) {
    let delete = async {
        let connection = connect(url, "coachflow test cleanup").await;
        let channel = connection.create_channel().await?;
        channel
            .exchange_delete(exchange.into(), ExchangeDeleteOptions::default())
            .await?;
        connection.close(200, "OK".into()).await
    };
    match tokio::time::timeout(BROKER_TIMEOUT, delete).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => panic!("cannot delete exchange {exchange}: {error}"),
        Err(_) => panic!("deleting exchange {exchange} took more than {BROKER_TIMEOUT:?}"),
    }
}

/// An exchange named for one test ([`unique_exchange`]), deleted (best effort) when the
/// guard drops or by [`TestExchange::cleanup`]. Nothing is declared: the first
/// [`Consumer::bind`] or the service does that.
#[derive(Debug)]
pub struct TestExchange {
    url: String,
    name: String,
    deleted: bool,
}

impl TestExchange {
    /// A new name for `test` on the broker at [`amqp_url`].
    pub fn new(test: &str) -> TestExchange {
        TestExchange::on(&amqp_url(), test)
    }

    pub fn on(url: &str, test: &str) -> TestExchange {
        TestExchange {
            url: url.to_owned(),
            name: unique_exchange(test),
            deleted: false,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Deletes the exchange now, waiting for it; panics if the broker refuses.
    pub async fn cleanup(mut self) {
        self.deleted = true;
        delete_exchange(&self.url, &self.name).await;
    }
}

impl Drop for TestExchange {
    fn drop(&mut self) {
        if self.deleted {
            return;
        }
        let url = self.url.clone();
        let name = self.name.clone();
        // Drop cannot await: a thread with its own runtime does, so this works inside and
        // outside a tokio runtime alike. A failure must not turn into a second panic.
        let deleter = std::thread::spawn(move || {
            if let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() {
                runtime.block_on(async {
                    let delete = async {
                        let connection = Connection::connect(&url, ConnectionProperties::default()).await?;
                        let channel = connection.create_channel().await?;
                        channel
                            .exchange_delete(name.as_str().into(), ExchangeDeleteOptions::default())
                            .await?;
                        connection.close(200, "OK".into()).await
                    };
                    let _ = tokio::time::timeout(BROKER_TIMEOUT, delete).await;
                });
            }
        });
        let _ = deleter.join();
    }
}

/// A message as a consumer received it.
#[derive(Debug, Clone, PartialEq)]
pub struct Received {
    pub exchange: String,
    pub routing_key: String,
    pub content_type: Option<String>,
    pub message_id: Option<String>,
    /// 2 is persistent.
    pub delivery_mode: Option<u8>,
    /// The AMQP `type` property.
    pub message_type: Option<String>,
    pub app_id: Option<String>,
    /// The AMQP `timestamp` property, in seconds since the epoch.
    pub timestamp: Option<u64>,
    /// The headers as a JSON object (see [`amqp_value_to_json`]); empty without headers.
    pub headers: Value,
    pub body: Vec<u8>,
    pub redelivered: bool,
}

impl Received {
    /// The header `name` if it is a string.
    pub fn header_str(&self, name: &str) -> Option<&str> {
        self.headers.get(name)?.as_str()
    }

    /// The body as text; panics if it is not UTF-8.
    pub fn body_str(&self) -> &str {
        std::str::from_utf8(&self.body).unwrap_or_else(|error| panic!("the body of {self} is not UTF-8: {error}"))
    }

    /// The body parsed as JSON; panics if it is not JSON.
    pub fn json_body(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|error| panic!("the body of {self} is not JSON: {error}"))
    }

    fn from_delivery(delivery: &Delivery) -> Received {
        let properties = &delivery.properties;
        let text = |value: &Option<lapin::types::ShortString>| value.as_ref().map(|value| value.as_str().to_owned());
        Received {
            exchange: delivery.exchange.as_str().to_owned(),
            routing_key: delivery.routing_key.as_str().to_owned(),
            content_type: text(properties.content_type()),
            message_id: text(properties.message_id()),
            delivery_mode: *properties.delivery_mode(),
            message_type: text(properties.kind()),
            app_id: text(properties.app_id()),
            timestamp: *properties.timestamp(),
            headers: properties
                .headers()
                .as_ref()
                .map_or_else(|| Value::Object(serde_json::Map::new()), field_table_to_json),
            body: delivery.data.clone(),
            redelivered: delivery.redelivered,
        }
    }
}

/// One line: routing key, id, content type, headers and the start of the body.
impl fmt::Display for Received {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        const BODY_SHOWN: usize = 300;
        let body = String::from_utf8_lossy(&self.body);
        let shown: String = body.chars().take(BODY_SHOWN).collect();
        let more = if body.chars().count() > BODY_SHOWN { "…" } else { "" };
        write!(
            formatter,
            "[{} id={} content_type={} redelivered={} headers={}] {shown}{more}",
            self.routing_key,
            self.message_id.as_deref().unwrap_or("-"),
            self.content_type.as_deref().unwrap_or("-"),
            self.redelivered,
            self.headers,
        )
    }
}

/// An AMQP field value as JSON: strings as strings (long strings that are not UTF-8, and
/// byte arrays, as arrays of byte values), integers and timestamps as numbers, floats and
/// decimals as floating-point numbers (non-finite ones as null), tables as objects, arrays
/// as arrays, void as null.
pub fn amqp_value_to_json(value: &AMQPValue) -> Value {
    let bytes = |bytes: &[u8]| Value::Array(bytes.iter().map(|byte| Value::from(*byte)).collect());
    let float = |number: f64| serde_json::Number::from_f64(number).map_or(Value::Null, Value::Number);
    match value {
        AMQPValue::Boolean(value) => Value::Bool(*value),
        AMQPValue::ShortShortInt(value) => Value::from(*value),
        AMQPValue::ShortShortUInt(value) => Value::from(*value),
        AMQPValue::ShortInt(value) => Value::from(*value),
        AMQPValue::ShortUInt(value) => Value::from(*value),
        AMQPValue::LongInt(value) => Value::from(*value),
        AMQPValue::LongUInt(value) => Value::from(*value),
        AMQPValue::LongLongInt(value) => Value::from(*value),
        AMQPValue::Float(value) => float(f64::from(*value)),
        AMQPValue::Double(value) => float(*value),
        AMQPValue::DecimalValue(decimal) => float(f64::from(decimal.value) / 10_f64.powi(i32::from(decimal.scale))),
        AMQPValue::ShortString(value) => Value::from(value.as_str()),
        AMQPValue::LongString(value) => match std::str::from_utf8(value.as_bytes()) {
            Ok(text) => Value::from(text),
            Err(_) => bytes(value.as_bytes()),
        },
        AMQPValue::FieldArray(values) => Value::Array(values.as_slice().iter().map(amqp_value_to_json).collect()),
        AMQPValue::Timestamp(value) => Value::from(*value),
        AMQPValue::FieldTable(table) => field_table_to_json(table),
        AMQPValue::ByteArray(value) => bytes(value.as_slice()),
        AMQPValue::Void => Value::Null,
    }
}

/// A field table (message headers) as a JSON object; see [`amqp_value_to_json`].
pub fn field_table_to_json(table: &FieldTable) -> Value {
    Value::Object(
        table
            .inner()
            .iter()
            .map(|(name, value)| (name.as_str().to_owned(), amqp_value_to_json(value)))
            .collect(),
    )
}

/// A consumer on its own exclusive, server-named queue bound to one exchange. Every
/// delivery is acknowledged as it is received. The queue goes with the consumer's
/// connection, when the consumer drops.
#[derive(Debug)]
pub struct Consumer {
    exchange: String,
    queue: String,
    deliveries: lapin::Consumer,
    _channel: Channel,
    _connection: Connection,
}

impl Consumer {
    /// Connects to `url`, declares `exchange` ([`declare_exchange`]) and a queue bound to
    /// it with each of `binding_keys` (topic patterns: `engagement.#`), and starts
    /// consuming. Messages published after this returns are received.
    pub async fn bind(url: &str, exchange: &str, binding_keys: &[&str]) -> Consumer {
        let connection = connect(url, "coachflow test consumer").await;
        let channel = connection
            .create_channel()
            .await
            .unwrap_or_else(|error| panic!("cannot open a channel to {}: {error}", redact_url(url)));
        declare_exchange(&channel, exchange).await;
        let options = QueueDeclareOptions {
            exclusive: true,
            auto_delete: true,
            ..QueueDeclareOptions::default()
        };
        let queue = channel
            .queue_declare("".into(), options, FieldTable::default())
            .await
            .unwrap_or_else(|error| panic!("cannot declare a queue for exchange {exchange}: {error}"));
        for key in binding_keys {
            channel
                .queue_bind(
                    queue.name().clone(),
                    exchange.into(),
                    (*key).into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await
                .unwrap_or_else(|error| panic!("cannot bind a queue to {exchange} with '{key}': {error}"));
        }
        let deliveries = channel
            .basic_consume(
                queue.name().clone(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap_or_else(|error| panic!("cannot consume from the queue on {exchange}: {error}"));
        Consumer {
            exchange: exchange.to_owned(),
            queue: queue.name().as_str().to_owned(),
            deliveries,
            _channel: channel,
            _connection: connection,
        }
    }

    pub fn exchange(&self) -> &str {
        &self.exchange
    }

    pub fn queue(&self) -> &str {
        &self.queue
    }

    /// The next message, or `None` if none arrives within `timeout`. Panics if the
    /// consumer fails (its connection dropped, the queue went away).
    pub async fn next(&mut self, timeout: Duration) -> Option<Received> {
        let delivery = match tokio::time::timeout(timeout, self.deliveries.next()).await {
            Err(_) => return None,
            Ok(None) => panic!("the broker cancelled the consumer on exchange {}", self.exchange),
            Ok(Some(Err(error))) => panic!("the consumer on exchange {} failed: {error}", self.exchange),
            Ok(Some(Ok(delivery))) => delivery,
        };
        delivery
            .ack(BasicAckOptions::default())
            .await
            .unwrap_or_else(|error| panic!("cannot acknowledge a message from {}: {error}", self.exchange));
        Some(Received::from_delivery(&delivery))
    }

    /// Receives until `done` holds for everything received so far (checked before the
    /// first message too) and returns it all; panics, listing what did arrive, if that
    /// takes longer than `timeout`.
    pub async fn collect_until(
        &mut self,
        timeout: Duration,
        mut done: impl FnMut(&[Received]) -> bool,
    ) -> Vec<Received> {
        let deadline = Instant::now() + timeout;
        let mut received = Vec::new();
        while !done(&received) {
            // A zero timeout still takes a message that is already there.
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left).await {
                Some(message) => received.push(message),
                None => panic!(
                    "timed out after {timeout:?} waiting for messages on exchange {}; received {}:\n{}",
                    self.exchange,
                    received.len(),
                    list(&received)
                ),
            }
        }
        received
    }

    /// Receives until `count` messages have arrived; panics, listing them, after `timeout`.
    pub async fn collect(&mut self, count: usize, timeout: Duration) -> Vec<Received> {
        self.collect_until(timeout, |received| received.len() >= count).await
    }

    /// Everything that arrives within `window`: for checking that nothing (more) comes.
    pub async fn drain_for(&mut self, window: Duration) -> Vec<Received> {
        let deadline = Instant::now() + window;
        let mut received = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left).await {
                Some(message) => received.push(message),
                None => return received,
            }
        }
    }
}

/// One message a line, for failure messages.
pub fn list(received: &[Received]) -> String {
    if received.is_empty() {
        return "  (nothing)".to_owned();
    }
    received
        .iter()
        .enumerate()
        .map(|(index, message)| format!("  {index}: {message}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The address the broker of `url` listens on (for [`crate::proxy::FaultProxy::start`]):
/// the URL's host, resolved, and port (5672 by default, 5671 for `amqps`).
pub async fn broker_address(url: &str) -> SocketAddr {
    let default_port = if UrlParts::parse(url).scheme.eq_ignore_ascii_case("amqps") {
        5671
    } else {
        5672
    };
    server_address(url, default_port).await
}

/// The address the server of `url` (any `scheme://user:password@host:port/...` URL: a
/// broker's, a PostgreSQL database's) listens on: its host, resolved, and port.
pub async fn server_address(url: &str, default_port: u16) -> SocketAddr {
    let parts = UrlParts::parse(url);
    let host = parts.host.trim_start_matches('[').trim_end_matches(']');
    let port = match parts.port {
        Some(port) => port
            .parse::<u16>()
            .unwrap_or_else(|_| panic!("the port of {} is not a number", redact_url(url))),
        None => default_port,
    };
    let host = if host.is_empty() { "localhost" } else { host };
    tokio::net::lookup_host((host, port))
        .await
        .ok()
        .and_then(|mut addresses| addresses.next())
        .unwrap_or_else(|| panic!("cannot resolve the host of {}", redact_url(url)))
}

/// `url` with its host and port replaced by `address`.
pub fn with_address(url: &str, address: SocketAddr) -> String {
    let parts = UrlParts::parse(url);
    format!("{}://{}{address}{}", parts.scheme, parts.userinfo, parts.rest)
}

/// `url` with its password replaced by `***`, for messages.
pub fn redact_url(url: &str) -> String {
    let parts = UrlParts::parse(url);
    let userinfo = match parts.userinfo.trim_end_matches('@').split_once(':') {
        Some((user, _)) => format!("{user}:***@"),
        None => parts.userinfo.to_owned(),
    };
    let port = parts.port.map(|port| format!(":{port}")).unwrap_or_default();
    format!("{}://{userinfo}{}{port}{}", parts.scheme, parts.host, parts.rest)
}

/// `scheme://userinfo@host:port/rest?query`, split without decoding anything.
#[derive(Debug, PartialEq, Eq)]
struct UrlParts<'a> {
    scheme: &'a str,
    /// With its `@`, or empty.
    userinfo: &'a str,
    /// IPv6 hosts keep their brackets.
    host: &'a str,
    port: Option<&'a str>,
    /// The path and query, from the first `/` or `?` on.
    rest: &'a str,
}

impl<'a> UrlParts<'a> {
    fn parse(url: &'a str) -> UrlParts<'a> {
        let (scheme, after_scheme) = url
            .split_once("://")
            .unwrap_or_else(|| panic!("'{url}' is not an amqp:// URL"));
        let authority_end = after_scheme.find(['/', '?']).unwrap_or(after_scheme.len());
        let (authority, rest) = after_scheme.split_at(authority_end);
        let (userinfo, host_and_port) = match authority.rfind('@') {
            Some(at) => authority.split_at(at + 1),
            None => ("", authority),
        };
        // A colon after an IPv6 host's closing bracket, or any colon otherwise.
        let port_colon = match host_and_port.rfind(']') {
            Some(bracket) => host_and_port[bracket..].find(':').map(|colon| bracket + colon),
            None => host_and_port.rfind(':'),
        };
        let (host, port) = match port_colon {
            Some(colon) => (&host_and_port[..colon], Some(&host_and_port[colon + 1..])),
            None => (host_and_port, None),
        };
        UrlParts {
            scheme,
            userinfo,
            host,
            port,
            rest,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lapin::types::{ByteArray, DecimalValue, FieldArray, LongString, ShortString};
    use serde_json::json;

    #[test]
    fn urls_are_split_into_their_parts() {
        let parts = UrlParts::parse("amqp://guest:guest@127.0.0.1:5672/%2f?heartbeat=10");
        assert_eq!(
            parts,
            UrlParts {
                scheme: "amqp",
                userinfo: "guest:guest@",
                host: "127.0.0.1",
                port: Some("5672"),
                rest: "/%2f?heartbeat=10",
            }
        );
        let parts = UrlParts::parse("amqps://[::1]:5671");
        assert_eq!(
            (parts.userinfo, parts.host, parts.port, parts.rest),
            ("", "[::1]", Some("5671"), "")
        );
        let parts = UrlParts::parse("amqp://rabbit");
        assert_eq!((parts.host, parts.port), ("rabbit", None));
    }

    #[test]
    fn the_address_of_a_url_is_replaced() {
        let address = SocketAddr::from(([127, 0, 0, 1], 40123));
        assert_eq!(
            with_address("amqp://guest:guest@rabbit:5672/%2f", address),
            "amqp://guest:guest@127.0.0.1:40123/%2f"
        );
        assert_eq!(with_address("amqp://rabbit", address), "amqp://127.0.0.1:40123");
        assert_eq!(
            with_address("amqp://u:p@[::1]/vhost?heartbeat=5", address),
            "amqp://u:p@127.0.0.1:40123/vhost?heartbeat=5"
        );
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("amqp://guest:secret@127.0.0.1:5672/%2f"),
            "amqp://guest:***@127.0.0.1:5672/%2f"
        );
        assert_eq!(redact_url("amqp://rabbit/%2f"), "amqp://rabbit/%2f");
    }

    #[test]
    fn exchange_names_are_unique_and_readable() {
        let first = unique_exchange("relay::publishes it");
        let second = unique_exchange("relay::publishes it");
        assert!(first.starts_with("coachflow.test.relay__publishes_it."), "{first}");
        assert_eq!(first.len(), "coachflow.test.relay__publishes_it.".len() + 12);
        assert_ne!(first, second);
    }

    #[test]
    fn header_values_become_json() {
        let mut nested = FieldTable::default();
        nested.insert("depth".into(), AMQPValue::ShortShortUInt(2));
        let mut table = FieldTable::default();
        table.insert("text".into(), AMQPValue::LongString(LongString::from("hello")));
        table.insert(
            "bytes".into(),
            AMQPValue::LongString(LongString::from(vec![0xff_u8, 0])),
        );
        table.insert("short".into(), AMQPValue::ShortString(ShortString::from("s")));
        table.insert("flag".into(), AMQPValue::Boolean(true));
        table.insert("small".into(), AMQPValue::ShortInt(-3));
        table.insert("big".into(), AMQPValue::LongLongInt(-9_000_000_000));
        table.insert("unsigned".into(), AMQPValue::LongUInt(4_000_000_000));
        table.insert("double".into(), AMQPValue::Double(1.5));
        table.insert("nan".into(), AMQPValue::Float(f32::NAN));
        table.insert(
            "decimal".into(),
            AMQPValue::DecimalValue(DecimalValue { scale: 2, value: 1234 }),
        );
        table.insert("at".into(), AMQPValue::Timestamp(1_772_438_400));
        table.insert(
            "list".into(),
            AMQPValue::FieldArray(FieldArray::from(vec![AMQPValue::LongInt(1), AMQPValue::Void])),
        );
        table.insert("raw".into(), AMQPValue::ByteArray(ByteArray::from(vec![1_u8, 2])));
        table.insert("nested".into(), AMQPValue::FieldTable(nested));
        assert_eq!(
            field_table_to_json(&table),
            json!({
                "text": "hello",
                "bytes": [255, 0],
                "short": "s",
                "flag": true,
                "small": -3,
                "big": -9_000_000_000_i64,
                "unsigned": 4_000_000_000_u32,
                "double": 1.5,
                "nan": null,
                "decimal": 12.34,
                "at": 1_772_438_400,
                "list": [1, null],
                "raw": [1, 2],
                "nested": {"depth": 2},
            })
        );
    }
}
