//! The outbox relay: publishes Coachflow's public events, written to the outbox with the
//! commits that caused them, to a durable RabbitMQ topic exchange as CloudEvents 1.0, with
//! publisher confirms, at least once and in order per engagement. See [`relay`] for how,
//! and [`cloudevents`] for what a message looks like.

pub mod cloudevents;
pub mod metrics;
pub mod relay;

pub use cloudevents::{CloudEvent, ContentMode, Naming};
pub use relay::{Now, RelaySettings, check_exchange, check_url, run};
