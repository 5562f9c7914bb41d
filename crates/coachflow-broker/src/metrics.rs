//! The relay's Prometheus metrics.

/// Rows committed but not yet confirmed by the broker (gauge).
pub const BACKLOG: &str = "coachflow_outbox_backlog";
/// Age of the oldest of them, in seconds (gauge).
pub const BACKLOG_AGE: &str = "coachflow_outbox_oldest_age_seconds";
/// Messages the broker confirmed (counter).
pub const CONFIRMED: &str = "coachflow_relay_confirms_total";
/// Messages the broker refused; they are sent again (counter).
pub const NACKED: &str = "coachflow_relay_nacks_total";
/// Rows that can never be sent (corrupt outbox) (counter).
pub const UNSENDABLE: &str = "coachflow_relay_unsendable_total";
/// From publish to confirm, in seconds (histogram).
pub const PUBLISH_DURATION: &str = "coachflow_relay_publish_duration_seconds";
/// From commit to confirm, in seconds (histogram).
pub const LAG: &str = "coachflow_relay_lag_seconds";
/// Connections re-established after one was lost (counter).
pub const RECONNECTS: &str = "coachflow_relay_reconnects_total";
/// Attempts to connect that failed (counter).
pub const CONNECTION_FAILURES: &str = "coachflow_relay_connection_failures_total";
/// 1 while connected to the broker (gauge).
pub const CONNECTED: &str = "coachflow_relay_connected";

/// Registers the descriptions and starts every counter at zero, so dashboards see the
/// series before the first event.
pub fn describe() {
    metrics::describe_gauge!(BACKLOG, "Public events committed but not yet confirmed by the broker.");
    metrics::describe_gauge!(
        BACKLOG_AGE,
        metrics::Unit::Seconds,
        "Age of the oldest unpublished event."
    );
    metrics::describe_counter!(CONFIRMED, "Events the broker confirmed.");
    metrics::describe_counter!(NACKED, "Events the broker refused (nack); they are sent again.");
    metrics::describe_counter!(UNSENDABLE, "Outbox rows that cannot be sent (corrupt).");
    metrics::describe_histogram!(
        PUBLISH_DURATION,
        metrics::Unit::Seconds,
        "From publish to the broker's confirm."
    );
    metrics::describe_histogram!(
        LAG,
        metrics::Unit::Seconds,
        "From the command's commit to the broker's confirm."
    );
    metrics::describe_counter!(RECONNECTS, "Broker connections re-established after a loss.");
    metrics::describe_counter!(CONNECTION_FAILURES, "Failed attempts to connect to the broker.");
    metrics::describe_gauge!(CONNECTED, "1 while the relay is connected to the broker.");
    for counter in [CONFIRMED, NACKED, UNSENDABLE, RECONNECTS, CONNECTION_FAILURES] {
        metrics::counter!(counter).absolute(0);
    }
    metrics::gauge!(CONNECTED).set(0.0);
}
