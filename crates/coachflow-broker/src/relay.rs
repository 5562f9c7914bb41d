//! The relay loop: claim outbox rows, publish them with confirms, mark them sent.
//!
//! Order: a claim gives this relay the first unpublished rows of each engagement it holds
//! (no other relay publishes those engagements until the claim ends). The rows go out
//! pipelined: every engagement of the batch has one message in flight, and when its confirm
//! arrives its next row goes out at once, whatever the other engagements wait for. So an
//! engagement never has two messages in flight, and a nacked or lost message is re-sent
//! before anything after it: per-engagement order holds even when the broker refuses a
//! message, while the confirms of many engagements are in flight together. The confirmed
//! rows of a batch are marked sent with one statement.
//!
//! Nothing is lost: a row is marked sent only after the broker confirmed it. A relay that
//! dies between publish and confirm leaves its rows unsent; they go out again (same
//! CloudEvents id) once its claim runs out. When the broker is unreachable the relay
//! reconnects with exponential backoff and the rows wait in the outbox; commands are never
//! held up by the broker.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use coachflow_store::{OutboxRow, Store};
use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Confirmation, Connection, ConnectionProperties, ExchangeKind};
use tokio::sync::watch;
use tracing::Instrument as _;

use crate::cloudevents::{self, ContentMode};
use crate::metrics as names;

/// The time as the service sees it (injected, so tests can move it).
pub type Now = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// How the relay runs.
#[derive(Clone)]
pub struct RelaySettings {
    /// `amqp://user:password@host:5672/vhost` (or `amqps://`).
    pub url: String,
    /// The durable topic exchange the events go to.
    pub exchange: String,
    pub mode: ContentMode,
    /// Declare the exchange on connect (durable, topic). Off when it is provisioned
    /// separately and the relay's user may not declare.
    pub declare_exchange: bool,
    /// This replica's name in claims.
    pub owner: String,
    /// Rows claimed at a time.
    pub batch_size: u64,
    /// Longest wait between looks at the outbox (rows committed by other replicas, claims
    /// that ran out).
    pub poll_interval: Duration,
    /// How long a claim holds before another replica may take the engagements over.
    pub lease: Duration,
    /// How long to wait for a confirm before the connection is given up as broken.
    pub confirm_timeout: Duration,
    /// First and longest pause between reconnection attempts.
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
}

impl std::fmt::Debug for RelaySettings {
    /// Without the URL: it may hold a password.
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("RelaySettings")
            .field("exchange", &self.exchange)
            .field("mode", &self.mode)
            .field("declare_exchange", &self.declare_exchange)
            .field("owner", &self.owner)
            .field("batch_size", &self.batch_size)
            .field("poll_interval", &self.poll_interval)
            .field("lease", &self.lease)
            .field("confirm_timeout", &self.confirm_timeout)
            .field("reconnect_min", &self.reconnect_min)
            .field("reconnect_max", &self.reconnect_max)
            .finish_non_exhaustive()
    }
}

/// Checks an AMQP URL; the message says what is wrong.
pub fn check_url(url: &str) -> Result<(), String> {
    url.parse::<lapin::uri::AMQPUri>().map(|_| ())
}

/// Checks an exchange name as RabbitMQ accepts it: 1 to 255 letters, digits, `-`, `_`, `.`
/// or `:`.
pub fn check_exchange(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.len() <= 255
        && name
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b':'));
    if valid {
        Ok(())
    } else {
        Err(format!(
            "'{name}' is not an exchange name (1 to 255 letters, digits, '-', '_', '.' or ':')"
        ))
    }
}

/// Why publishing stopped: the connection must be replaced.
#[derive(Debug, thiserror::Error)]
enum BrokerError {
    #[error("{0}")]
    Amqp(#[from] lapin::Error),
    #[error("no confirm within {0:?}")]
    ConfirmTimeout(Duration),
    #[error("connecting took longer than {0:?}")]
    ConnectTimeout(Duration),
    #[error("the connection is closed")]
    Closed,
}

/// Runs the relay until `shutdown` turns true. `wake` changes when this replica commits
/// public events, so they go out at once; `connected` says whether it holds a connection to
/// the broker (for health).
pub async fn run(
    store: Store,
    settings: RelaySettings,
    now: Now,
    mut wake: watch::Receiver<u64>,
    mut shutdown: watch::Receiver<bool>,
    connected: watch::Sender<bool>,
) {
    names::describe();
    tracing::info!(
        owner = %settings.owner,
        exchange = %settings.exchange,
        mode = settings.mode.as_str(),
        "event relay started"
    );
    let mut backoff = Backoff::new(settings.reconnect_min, settings.reconnect_max);
    let mut connected_before = false;
    while !*shutdown.borrow() {
        let publisher = match Publisher::connect(&settings).await {
            Ok(publisher) => publisher,
            Err(error) => {
                metrics::counter!(names::CONNECTION_FAILURES).increment(1);
                let pause = backoff.next();
                tracing::warn!(error = %error, retry_in = ?pause, "cannot connect to the broker; events wait in the outbox");
                if sleep_or_shutdown(pause, &mut shutdown).await {
                    break;
                }
                continue;
            }
        };
        if connected_before {
            metrics::counter!(names::RECONNECTS).increment(1);
        }
        connected_before = true;
        backoff.reset();
        metrics::gauge!(names::CONNECTED).set(1.0);
        connected.send_replace(true);
        tracing::info!("connected to the broker");
        let relay = Relay {
            store: &store,
            settings: &settings,
            now: &now,
            publisher: &publisher,
        };
        let outcome = relay.publish_until_shutdown(&mut wake, &mut shutdown).await;
        metrics::gauge!(names::CONNECTED).set(0.0);
        connected.send_replace(false);
        release(&store, &settings.owner).await;
        match outcome {
            Ok(()) => {
                publisher.close().await;
                break;
            }
            Err(error) => {
                // Best effort: a stalled connection must not linger beside its successor.
                let _ = tokio::time::timeout(Duration::from_secs(1), publisher.close()).await;
                let pause = backoff.next();
                tracing::warn!(error = %error, retry_in = ?pause, "lost the broker; reconnecting, events wait in the outbox");
                if sleep_or_shutdown(pause, &mut shutdown).await {
                    break;
                }
            }
        }
    }
    release(&store, &settings.owner).await;
    tracing::info!("event relay stopped");
}

async fn release(store: &Store, owner: &str) {
    if let Err(error) = store.release_outbox_claims(owner).await {
        tracing::warn!(error = %error, "cannot release outbox claims; they run out with their lease");
    }
}

/// Sleeps for `pause` unless shutdown comes first; true on shutdown.
async fn sleep_or_shutdown(pause: Duration, shutdown: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = shutdown.wait_for(|stop| *stop) => true,
        () = tokio::time::sleep(pause) => false,
    }
}

/// One connection with one confirming channel.
struct Publisher {
    connection: Connection,
    channel: Channel,
}

impl Publisher {
    async fn connect(settings: &RelaySettings) -> Result<Publisher, BrokerError> {
        let timeout = settings.confirm_timeout;
        let connect = async {
            let properties = ConnectionProperties::default()
                .with_connection_name(format!("coachflow relay {}", settings.owner).into());
            let connection = Connection::connect(&settings.url, properties).await?;
            let channel = connection.create_channel().await?;
            channel.confirm_select(ConfirmSelectOptions::default()).await?;
            if settings.declare_exchange {
                channel
                    .exchange_declare(
                        settings.exchange.as_str().into(),
                        ExchangeKind::Topic,
                        ExchangeDeclareOptions {
                            durable: true,
                            ..ExchangeDeclareOptions::default()
                        },
                        FieldTable::default(),
                    )
                    .await?;
            }
            Ok::<_, BrokerError>(Publisher { connection, channel })
        };
        tokio::time::timeout(timeout, connect)
            .await
            .map_err(|_| BrokerError::ConnectTimeout(timeout))?
    }

    fn is_open(&self) -> bool {
        self.connection.status().connected() && self.channel.status().connected()
    }

    async fn close(&self) {
        if let Err(error) = self.connection.close(200, "coachflow is stopping".into()).await {
            tracing::debug!(error = %error, "closing the broker connection");
        }
    }
}

struct Relay<'a> {
    store: &'a Store,
    settings: &'a RelaySettings,
    now: &'a Now,
    publisher: &'a Publisher,
}

impl Relay<'_> {
    /// Publishes until shutdown (`Ok`) or until the connection fails (`Err`).
    async fn publish_until_shutdown(
        &self,
        wake: &mut watch::Receiver<u64>,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<(), BrokerError> {
        let mut backlog_reported: Option<Instant> = None;
        loop {
            if *shutdown.borrow() {
                return Ok(());
            }
            if !self.publisher.is_open() {
                return Err(BrokerError::Closed);
            }
            wake.mark_unchanged();
            let claimed_at = (self.now)();
            let rows = match self
                .store
                .claim_outbox(
                    &self.settings.owner,
                    claimed_at,
                    self.settings.lease,
                    self.settings.batch_size,
                )
                .await
            {
                Ok(rows) => rows,
                Err(error) => {
                    tracing::warn!(error = %error, "cannot claim outbox rows; retrying");
                    Vec::new()
                }
            };
            let mut more = rows.len() as u64 == self.settings.batch_size;
            if !rows.is_empty() && self.publish_batch(rows, claimed_at).await? == Batch::Held {
                // Refused rows are tried again after a pause, not in a tight loop.
                more = false;
            }
            if backlog_reported.is_none_or(|at| at.elapsed() >= Duration::from_secs(1)) {
                backlog_reported = Some(Instant::now());
                self.report_backlog().await;
            }
            if more {
                continue;
            }
            // Idle: let other replicas take our engagements at once while we wait.
            release(self.store, &self.settings.owner).await;
            tokio::select! {
                _ = shutdown.wait_for(|stop| *stop) => return Ok(()),
                _ = wake.changed() => {}
                () = tokio::time::sleep(self.settings.poll_interval) => {}
            }
        }
    }

    /// Publishes a claimed batch, pipelined: every engagement has its next row in flight,
    /// and the moment its confirm arrives the row after it goes out, whatever the other
    /// engagements wait for. The confirmed rows are marked sent together when the batch
    /// ends. Stops early (the rest stays unsent, to be claimed again) when half the lease
    /// is gone, so a claim never runs out under a live relay.
    async fn publish_batch(&self, rows: Vec<OutboxRow>, claimed_at: DateTime<Utc>) -> Result<Batch, BrokerError> {
        let mut engagements: BTreeMap<(String, String), VecDeque<OutboxRow>> = BTreeMap::new();
        for row in rows {
            engagements
                .entry((row.tenant.clone(), row.engagement.clone()))
                .or_default()
                .push_back(row);
        }
        let deadline = chrono::Duration::from_std(self.settings.lease / 2).unwrap_or(chrono::Duration::MAX);
        let mut batch = Batch::Sent;
        let mut in_flight = FuturesUnordered::new();
        for rows in engagements.values_mut() {
            if let Some(row) = rows.pop_front() {
                in_flight.push(self.publish(row).await?);
            }
        }
        let mut sent = Vec::new();
        let timeout = self.settings.confirm_timeout;
        while let Some(confirmed) = tokio::time::timeout(timeout, in_flight.next())
            .await
            .map_err(|_| BrokerError::ConfirmTimeout(timeout))?
        {
            let (row, outcome) = confirmed?;
            let key = (row.tenant, row.engagement);
            match outcome {
                Outcome::Confirmed => {
                    sent.push(row.position);
                    let next = engagements.get_mut(&key).and_then(VecDeque::pop_front);
                    match next {
                        Some(next) if (self.now)() - claimed_at < deadline => {
                            in_flight.push(self.publish(next).await?);
                        }
                        Some(_) => tracing::debug!("half the claim's lease is gone; claiming again"),
                        None => {}
                    }
                }
                Outcome::Refused => {
                    // Keep the engagement's order: its later rows wait for this one.
                    engagements.remove(&key);
                    batch = Batch::Held;
                }
            }
        }
        if !sent.is_empty()
            && let Err(error) = self.store.mark_outbox_sent(&sent, (self.now)()).await
        {
            // They were delivered; unmarked they go out again (same ids) later.
            tracing::warn!(error = %error, rows = sent.len(), "cannot mark published rows sent; they will be re-sent");
            return Ok(Batch::Held);
        }
        Ok(batch)
    }

    /// Publishes `row`; the future resolves with the row and its confirm's outcome.
    async fn publish(
        &self,
        row: OutboxRow,
    ) -> Result<impl Future<Output = Result<(OutboxRow, Outcome), BrokerError>> + use<>, BrokerError> {
        let started = Instant::now();
        let confirm = match cloudevents::message(&row, self.settings.mode) {
            Ok(message) => {
                let span = tracing::info_span!(
                    "publish",
                    event_id = %row.event_id,
                    routing_key = %row.routing_key,
                    trace_id = row.traceparent.as_deref().and_then(trace_id).unwrap_or(""),
                );
                if let Some(traceparent) = &row.traceparent {
                    continue_trace(&span, traceparent);
                }
                let confirm = self
                    .publisher
                    .channel
                    .basic_publish(
                        self.settings.exchange.as_str().into(),
                        message.routing_key,
                        BasicPublishOptions::default(),
                        &message.body,
                        message.properties,
                    )
                    .instrument(span)
                    .await?;
                Some(confirm)
            }
            Err(error) => {
                metrics::counter!(names::UNSENDABLE).increment(1);
                tracing::error!(error = %error, "an outbox row cannot be sent; it stays in the outbox");
                None
            }
        };
        let now = Arc::clone(self.now);
        Ok(async move {
            let Some(confirm) = confirm else {
                return Ok((row, Outcome::Refused));
            };
            let outcome = match confirm.await? {
                Confirmation::Ack(_) | Confirmation::NotRequested => {
                    metrics::counter!(names::CONFIRMED).increment(1);
                    metrics::histogram!(names::PUBLISH_DURATION).record(started.elapsed().as_secs_f64());
                    let lag = (now() - row.created_at).to_std().unwrap_or(Duration::ZERO);
                    metrics::histogram!(names::LAG).record(lag.as_secs_f64());
                    tracing::debug!(event_id = %row.event_id, "published");
                    Outcome::Confirmed
                }
                Confirmation::Nack(_) => {
                    metrics::counter!(names::NACKED).increment(1);
                    tracing::warn!(event_id = %row.event_id, "the broker refused an event; it is sent again");
                    Outcome::Refused
                }
            };
            Ok((row, outcome))
        })
    }

    async fn report_backlog(&self) {
        match self.store.outbox_backlog().await {
            Ok(backlog) => {
                #[allow(clippy::cast_precision_loss)]
                metrics::gauge!(names::BACKLOG).set(backlog.rows as f64);
                let age = backlog
                    .oldest
                    .and_then(|oldest| ((self.now)() - oldest).to_std().ok())
                    .unwrap_or(Duration::ZERO);
                metrics::gauge!(names::BACKLOG_AGE).set(age.as_secs_f64());
            }
            Err(error) => tracing::warn!(error = %error, "cannot measure the outbox backlog"),
        }
    }
}

/// How a batch went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Batch {
    /// Every row was confirmed (or left for the next claim when the lease ran short).
    Sent,
    /// Some rows were refused or could not be marked: pause before trying again.
    Held,
}

enum Outcome {
    Confirmed,
    /// Nacked by the broker, or not sendable: the row stays unsent.
    Refused,
}

/// Makes `span` a child of the command's span (its `traceparent`), for the exported trace;
/// a no-op when spans are not exported.
fn continue_trace(span: &tracing::Span, traceparent: &str) {
    use opentelemetry::propagation::TextMapPropagator as _;
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    let carrier = std::collections::HashMap::from([("traceparent".to_owned(), traceparent.to_owned())]);
    let parent = opentelemetry_sdk::propagation::TraceContextPropagator::new().extract(&carrier);
    let _ = span.set_parent(parent);
}

/// The trace id of a `traceparent` header.
fn trace_id(traceparent: &str) -> Option<&str> {
    traceparent.split('-').nth(1)
}

/// Exponential backoff with jitter between `min` and `max`.
#[derive(Debug)]
struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    fn new(min: Duration, max: Duration) -> Backoff {
        Backoff { min, max, next: min }
    }

    fn next(&mut self) -> Duration {
        let current = self.next;
        self.next = (current * 2).min(self.max);
        // Up to a quarter less, so replicas that lost the broker together spread out.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.subsec_nanos());
        current.mul_f64(1.0 - 0.25 * f64::from(nanos % 1_000) / 1_000.0)
    }

    fn reset(&mut self) {
        self.next = self.min;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_limit_and_resets() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let pauses: Vec<Duration> = (0..6).map(|_| backoff.next()).collect();
        let bounds = [100, 200, 400, 800, 1000, 1000];
        for (pause, bound) in pauses.iter().zip(bounds) {
            let bound = Duration::from_millis(bound);
            assert!(*pause <= bound && *pause >= bound * 3 / 4, "{pause:?} vs {bound:?}");
        }
        backoff.reset();
        assert!(backoff.next() <= Duration::from_millis(100));
    }

    #[test]
    fn trace_ids_come_from_traceparents() {
        assert_eq!(
            trace_id("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
    }
}
