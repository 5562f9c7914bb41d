//! Metric names, their descriptions, and the Prometheus endpoint.

use std::net::SocketAddr;
use std::time::Duration;

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// gRPC requests handled, by `method` and status `code`.
pub const GRPC_REQUESTS: &str = "coachflow_grpc_requests_total";
/// Time to handle a gRPC request, by `method`.
pub const GRPC_REQUEST_DURATION: &str = "coachflow_grpc_request_duration_seconds";
/// Commands decided again because another one changed the engagement first, by `command`.
pub const COMMAND_RETRIES: &str = "coachflow_command_retries_total";
/// Commands committed, by `command`.
pub const COMMANDS_COMMITTED: &str = "coachflow_commands_committed_total";
/// Events appended to engagement histories.
pub const EVENTS_APPENDED: &str = "coachflow_events_appended_total";
/// Requests answered from the idempotency store instead of being executed again.
pub const IDEMPOTENT_REPLAYS: &str = "coachflow_idempotent_replays_total";
/// Timers fired by this replica, by `outcome` (fired, gone, failed).
pub const TIMERS_FIRED: &str = "coachflow_timers_fired_total";
/// Lateness of a fired timer: from when it was due to when it fired.
pub const TIMER_LAG: &str = "coachflow_timer_lag_seconds";
/// Engagements stored, by `state`.
pub const ENGAGEMENTS: &str = "coachflow_engagements";
/// Open tasks across all engagements.
pub const OPEN_TASKS: &str = "coachflow_open_tasks";
/// Open tasks past their due time.
pub const OVERDUE_TASKS: &str = "coachflow_overdue_tasks";
/// Open tasks whose reminder fired.
pub const DUE_SOON_TASKS: &str = "coachflow_due_soon_tasks";
/// Timers stored (pending).
pub const PENDING_TIMERS: &str = "coachflow_pending_timers";
/// Calls refused by authorization, by `method` and `reason`.
pub const AUTH_DENIALS: &str = "coachflow_auth_denials_total";
/// Calls refused because their token did not verify (or was missing), by `reason`.
pub const AUTH_FAILURES: &str = "coachflow_auth_failures_total";
/// Break-glass reads of content (`content:read`), by `method`.
pub const CONTENT_READS: &str = "coachflow_content_reads_total";
/// Expired idempotency keys deleted by housekeeping.
pub const IDEMPOTENCY_KEYS_EXPIRED: &str = "coachflow_idempotency_keys_expired_total";
/// Engagements moved to another version of their model.
pub const ENGAGEMENTS_MIGRATED: &str = "coachflow_engagements_migrated_total";
/// Engagements a bulk migration worked on, by `outcome`.
pub const OPERATION_ITEMS: &str = "coachflow_operation_items_total";
/// Gauge, by `component` (`database`, `broker`): 1 while it answers, 0 while it does not.
pub const COMPONENT_UP: &str = "coachflow_component_up";
/// Erasures asked for, by `kind` (`engagement_content`, `person`).
pub const ERASURES: &str = "coachflow_erasures_total";
/// What the retention job did, by `action` (`content_erased`, `outbox_pruned`,
/// `idempotency_keys_pruned`).
pub const RETENTION_ACTIONS: &str = "coachflow_retention_actions_total";
/// Data keys rewrapped under the current key-encryption key.
pub const CONTENT_KEYS_REWRAPPED: &str = "coachflow_content_keys_rewrapped_total";

fn describe() {
    describe_counter!(
        GRPC_REQUESTS,
        Unit::Count,
        "gRPC requests handled, by method and status code"
    );
    describe_histogram!(
        GRPC_REQUEST_DURATION,
        Unit::Seconds,
        "Time to handle a gRPC request, by method"
    );
    describe_counter!(
        COMMAND_RETRIES,
        Unit::Count,
        "Commands decided again after a concurrent change"
    );
    describe_counter!(
        COMMANDS_COMMITTED,
        Unit::Count,
        "Commands committed, by command (timer firings included)"
    );
    describe_counter!(
        coachflow_store::metrics::COMMIT_TRANSACTIONS,
        Unit::Count,
        "Write transactions that committed engagement changes (group commit puts many commands in one)"
    );
    describe_histogram!(
        coachflow_store::metrics::COMMIT_BATCH_DURATION,
        Unit::Seconds,
        "Time a batch's write transaction took, from begin to commit"
    );
    describe_histogram!(
        coachflow_store::metrics::COMMIT_WAIT,
        Unit::Seconds,
        "Time a commit waited for its batch's transaction to begin"
    );
    describe_counter!(EVENTS_APPENDED, Unit::Count, "Events appended to engagement histories");
    describe_counter!(
        IDEMPOTENT_REPLAYS,
        Unit::Count,
        "Requests answered from the idempotency store"
    );
    describe_counter!(TIMERS_FIRED, Unit::Count, "Timers fired by this replica, by outcome");
    describe_counter!(
        ENGAGEMENTS_MIGRATED,
        Unit::Count,
        "Engagements moved to another version of their model"
    );
    describe_counter!(
        OPERATION_ITEMS,
        Unit::Count,
        "Engagements a bulk migration of this replica worked on, by outcome"
    );
    describe_histogram!(TIMER_LAG, Unit::Seconds, "From when a timer was due to when it fired");
    describe_gauge!(ENGAGEMENTS, Unit::Count, "Engagements stored, by state");
    describe_gauge!(OPEN_TASKS, Unit::Count, "Open tasks across all engagements");
    describe_gauge!(OVERDUE_TASKS, Unit::Count, "Open tasks past their due time");
    describe_gauge!(DUE_SOON_TASKS, Unit::Count, "Open tasks whose reminder fired");
    describe_gauge!(PENDING_TIMERS, Unit::Count, "Timers waiting to fire");
    describe_gauge!(
        COMPONENT_UP,
        "1 while a component the service depends on answers (database: reachable with a current schema; broker: the relay is connected), 0 while it does not"
    );
    describe_counter!(
        ERASURES,
        Unit::Count,
        "Erasures that erased something, by kind (engagement_content, person)"
    );
    describe_counter!(
        RETENTION_ACTIONS,
        Unit::Count,
        "What the retention job did, by action (content_erased, outbox_pruned, idempotency_keys_pruned)"
    );
    describe_counter!(
        CONTENT_KEYS_REWRAPPED,
        Unit::Count,
        "Data keys rewrapped under the current key-encryption key"
    );
    describe_counter!(
        AUTH_DENIALS,
        Unit::Count,
        "Calls refused by authorization, by method and reason"
    );
    describe_counter!(
        AUTH_FAILURES,
        Unit::Count,
        "Calls refused because their token did not verify, by reason"
    );
    describe_counter!(CONTENT_READS, Unit::Count, "Break-glass reads of content, by method");
    describe_counter!(
        IDEMPOTENCY_KEYS_EXPIRED,
        Unit::Count,
        "Expired idempotency keys deleted"
    );
}

/// Installs the global Prometheus recorder (once per process) and describes every metric.
pub fn install() -> anyhow::Result<PrometheusHandle> {
    static HANDLE: std::sync::OnceLock<PrometheusHandle> = std::sync::OnceLock::new();
    if let Some(handle) = HANDLE.get() {
        return Ok(handle.clone());
    }
    let latency_buckets = [
        0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ];
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), &latency_buckets)?
        .install_recorder()?;
    describe();
    Ok(HANDLE.get_or_init(|| handle).clone())
}

/// Serves `GET /metrics` in the Prometheus text format until `shutdown` turns true.
pub async fn serve(listener: TcpListener, handle: PrometheusHandle, mut shutdown: watch::Receiver<bool>) {
    let upkeep = handle.clone();
    loop {
        tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => return,
            accepted = listener.accept() => {
                let Ok((mut stream, _)) = accepted else { continue };
                let handle = handle.clone();
                tokio::spawn(async move {
                    let mut request = [0_u8; 1024];
                    let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut request)).await;
                    let Ok(Ok(read)) = read else { return };
                    let line = String::from_utf8_lossy(&request[..read]);
                    let response = if line.starts_with("GET /metrics ") || line.starts_with("GET / ") {
                        let body = handle.render();
                        format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                            body.len()
                        )
                    } else {
                        "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_owned()
                    };
                    let _ = stream.write_all(response.as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
            }
        }
        upkeep.run_upkeep();
    }
}

/// Binds the metrics endpoint.
pub async fn bind(address: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(address).await
}
