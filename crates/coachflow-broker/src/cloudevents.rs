//! The CloudEvents 1.0 envelope of Coachflow's public events, in one place: how an event
//! the engine reports (entity, action, data) is named when it is written to the outbox (its
//! `id`, `type`, `subject` and routing key), and how an outbox row becomes a [`CloudEvent`]
//! for every way it travels: an AMQP 0-9-1 message, or an item of `WatchEvents`.
//!
//! Binary content mode (the default): the attributes travel as `cloudEvents_*` headers, the
//! body is the event's `data` with content type `application/json`. Structured mode: the
//! whole event is one JSON object with content type `application/cloudevents+json`. Either
//! way the message is persistent, its `message_id` is the CloudEvents `id` (stable across
//! re-sends, the consumers' dedupe key), and a traced command's `traceparent` travels along
//! (the CloudEvents distributed-tracing extension).

use chrono::{DateTime, Utc};
use coachflow_store::OutboxRow;
use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use serde_json::{Map, Value};

/// `specversion` of every event.
pub const SPEC_VERSION: &str = "1.0";

/// The `source` of a tenant's events.
pub fn source(tenant: &str) -> String {
    format!("//coachflow.dev/tenants/{tenant}")
}

/// How an event of `entity`/`action` of the engagement `subject` (a resource name) of
/// `tenant`, with sequence number `sequence`, is named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Naming {
    /// `{subject}/events/{sequence}`: stable across re-sends, the consumers' dedupe key.
    pub id: String,
    /// `dev.coachflow.{entity}.{action}.v1`.
    pub event_type: String,
    /// `{tenant}.{entity}.{action}`.
    pub routing_key: String,
}

impl Naming {
    pub fn of(tenant: &str, subject: &str, entity: &str, action: &str, sequence: u64) -> Naming {
        Naming {
            id: format!("{subject}/events/{sequence}"),
            event_type: format!("dev.coachflow.{entity}.{action}.v1"),
            routing_key: format!("{tenant}.{entity}.{action}"),
        }
    }
}

/// One public event as CloudEvents 1.0 has it.
#[derive(Debug, Clone, PartialEq)]
pub struct CloudEvent {
    pub id: String,
    pub source: String,
    pub event_type: String,
    /// The engagement's resource name.
    pub subject: String,
    pub time: DateTime<Utc>,
    /// The W3C trace context of the command that caused it (distributed-tracing extension).
    pub traceparent: Option<String>,
    /// The event's data, JSON text.
    pub data: String,
}

impl CloudEvent {
    /// The event an outbox row holds.
    pub fn of(row: &OutboxRow) -> CloudEvent {
        CloudEvent {
            id: row.event_id.clone(),
            source: source(&row.tenant),
            event_type: row.event_type.clone(),
            subject: row.subject.clone(),
            time: row.time,
            traceparent: row.traceparent.clone(),
            data: row.data.clone(),
        }
    }

    /// The required attributes, in the order the specification lists them.
    fn attributes(&self) -> [(&'static str, String); 6] {
        [
            ("id", self.id.clone()),
            ("source", self.source.clone()),
            ("specversion", SPEC_VERSION.to_owned()),
            ("type", self.event_type.clone()),
            ("subject", self.subject.clone()),
            ("time", coachflow_engine::timestamp(self.time)),
        ]
    }

    /// The event as one JSON object (structured content mode).
    pub fn structured(&self) -> Result<Value, serde_json::Error> {
        let data: Value = serde_json::from_str(&self.data)?;
        let mut event: Map<String, Value> = self
            .attributes()
            .into_iter()
            .map(|(name, value)| (name.to_owned(), Value::String(value)))
            .collect();
        event.insert("datacontenttype".to_owned(), Value::from(JSON));
        if let Some(traceparent) = &self.traceparent {
            event.insert("traceparent".to_owned(), Value::from(traceparent.as_str()));
        }
        event.insert("data".to_owned(), data);
        Ok(Value::Object(event))
    }
}

/// Content type of the body in binary mode.
pub const JSON: &str = "application/json";
/// Content type of a structured-mode message.
pub const CLOUDEVENTS_JSON: &str = "application/cloudevents+json";
/// Prefix of the attribute headers in binary mode.
pub const HEADER_PREFIX: &str = "cloudEvents_";
/// AMQP delivery mode of a message the broker writes to disk.
const PERSISTENT: u8 = 2;

/// How the CloudEvents attributes travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ContentMode {
    /// Attributes as `cloudEvents_*` headers, the data as the body.
    #[default]
    Binary,
    /// The whole event as one `application/cloudevents+json` body.
    Structured,
}

impl ContentMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ContentMode::Binary => "binary",
            ContentMode::Structured => "structured",
        }
    }
}

impl std::str::FromStr for ContentMode {
    type Err = String;

    fn from_str(text: &str) -> Result<ContentMode, String> {
        match text {
            "binary" => Ok(ContentMode::Binary),
            "structured" => Ok(ContentMode::Structured),
            _ => Err(format!("'{text}' is neither binary nor structured")),
        }
    }
}

/// A message ready to publish.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub routing_key: ShortString,
    pub properties: BasicProperties,
    pub body: Vec<u8>,
}

/// Why a row cannot be sent. The row is left unsent and reported; it never will be sent, so
/// this means a corrupt outbox.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    #[error("event {event_id}: {what} is longer than AMQP's 255 bytes")]
    TooLong { event_id: String, what: &'static str },
    #[error("event {event_id}: its data is not JSON: {message}")]
    NotJson { event_id: String, message: String },
}

/// The AMQP message of `row` in `mode`.
pub fn message(row: &OutboxRow, mode: ContentMode) -> Result<Message, MessageError> {
    let short = |text: &str, what: &'static str| {
        ShortString::try_new(text).map_err(|_| MessageError::TooLong {
            event_id: row.event_id.clone(),
            what,
        })
    };
    let mut properties = BasicProperties::default()
        .with_delivery_mode(PERSISTENT)
        .with_message_id(short(&row.event_id, "the event id")?)
        .with_type(short(&row.event_type, "the event type")?)
        .with_app_id("coachflow".into())
        .with_timestamp(u64::try_from(row.time.timestamp()).unwrap_or(0));
    let event = CloudEvent::of(row);
    let body = match mode {
        ContentMode::Binary => {
            let mut headers = FieldTable::default();
            let traceparent = event.traceparent.iter().map(|value| ("traceparent", value.clone()));
            for (name, value) in event.attributes().into_iter().chain(traceparent) {
                headers.insert(
                    format!("{HEADER_PREFIX}{name}").into(),
                    AMQPValue::LongString(LongString::from(value)),
                );
            }
            properties = properties.with_content_type(JSON.into()).with_headers(headers);
            event.data.into_bytes()
        }
        ContentMode::Structured => {
            let structured = event.structured().map_err(|error| MessageError::NotJson {
                event_id: row.event_id.clone(),
                message: error.to_string(),
            })?;
            properties = properties.with_content_type(CLOUDEVENTS_JSON.into());
            structured.to_string().into_bytes()
        }
    };
    Ok(Message {
        routing_key: short(&row.routing_key, "the routing key")?,
        properties,
        body,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use chrono::{TimeZone, Utc};

    fn row() -> OutboxRow {
        let time = Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0).unwrap();
        OutboxRow {
            position: 7,
            tenant: "acme".to_owned(),
            engagement: "eng-1".to_owned(),
            event_id: "tenants/acme/engagements/eng-1/events/3".to_owned(),
            sequence: 3,
            event_type: "dev.coachflow.milestone.reached.v1".to_owned(),
            routing_key: "acme.milestone.reached".to_owned(),
            subject: "tenants/acme/engagements/eng-1".to_owned(),
            time,
            data: r#"{"engagement":"tenants/acme/engagements/eng-1","sequence":3,"milestone":"contracted"}"#.to_owned(),
            traceparent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_owned()),
            created_at: time,
        }
    }

    fn header(properties: &BasicProperties, name: &str) -> Option<String> {
        match properties.headers().as_ref()?.inner().get(name)? {
            AMQPValue::LongString(value) => Some(value.to_string()),
            other => panic!("{name} is {other:?}"),
        }
    }

    #[test]
    fn binary_mode_carries_the_attributes_as_headers() {
        let message = message(&row(), ContentMode::Binary).unwrap();
        let properties = &message.properties;
        assert_eq!(message.routing_key.as_str(), "acme.milestone.reached");
        assert_eq!(message.body, row().data.into_bytes());
        assert_eq!(properties.content_type().as_ref().unwrap().as_str(), JSON);
        assert_eq!(*properties.delivery_mode(), Some(2));
        assert_eq!(
            properties.message_id().as_ref().unwrap().as_str(),
            "tenants/acme/engagements/eng-1/events/3"
        );
        for (name, value) in [
            ("cloudEvents_id", "tenants/acme/engagements/eng-1/events/3"),
            ("cloudEvents_source", "//coachflow.dev/tenants/acme"),
            ("cloudEvents_specversion", "1.0"),
            ("cloudEvents_type", "dev.coachflow.milestone.reached.v1"),
            ("cloudEvents_subject", "tenants/acme/engagements/eng-1"),
            ("cloudEvents_time", "2026-03-02T09:00:00Z"),
            (
                "cloudEvents_traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            ),
        ] {
            assert_eq!(header(properties, name).as_deref(), Some(value), "{name}");
        }
        assert_eq!(properties.headers().as_ref().unwrap().inner().len(), 7);
    }

    #[test]
    fn structured_mode_is_one_json_event() {
        let message = message(&row(), ContentMode::Structured).unwrap();
        assert_eq!(
            message.properties.content_type().as_ref().unwrap().as_str(),
            CLOUDEVENTS_JSON
        );
        assert!(message.properties.headers().is_none());
        let event: Value = serde_json::from_slice(&message.body).unwrap();
        assert_eq!(
            event,
            serde_json::json!({
                "id": "tenants/acme/engagements/eng-1/events/3",
                "source": "//coachflow.dev/tenants/acme",
                "specversion": "1.0",
                "type": "dev.coachflow.milestone.reached.v1",
                "subject": "tenants/acme/engagements/eng-1",
                "time": "2026-03-02T09:00:00Z",
                "datacontenttype": "application/json",
                "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                "data": {"engagement": "tenants/acme/engagements/eng-1", "sequence": 3, "milestone": "contracted"},
            })
        );
    }

    #[test]
    fn an_untraced_event_has_no_traceparent() {
        let mut untraced = row();
        untraced.traceparent = None;
        let binary = message(&untraced, ContentMode::Binary).unwrap();
        assert_eq!(header(&binary.properties, "cloudEvents_traceparent"), None);
        let structured = message(&untraced, ContentMode::Structured).unwrap();
        let event: Value = serde_json::from_slice(&structured.body).unwrap();
        assert!(event.get("traceparent").is_none());
    }

    #[test]
    fn rows_that_cannot_be_sent_are_reported_not_panicked_on() {
        let mut long = row();
        long.routing_key = "x".repeat(300);
        assert_eq!(
            message(&long, ContentMode::Binary).unwrap_err(),
            MessageError::TooLong {
                event_id: long.event_id.clone(),
                what: "the routing key"
            }
        );
        let mut garbled = row();
        garbled.data = "{not json".to_owned();
        assert!(matches!(
            message(&garbled, ContentMode::Structured),
            Err(MessageError::NotJson { .. })
        ));
    }
}
