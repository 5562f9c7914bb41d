//! Health that tells the truth: readiness follows the database (reachable, schema current)
//! and goes NOT_SERVING first on shutdown; the broker is a component of its own that does
//! not fail readiness; liveness stays SERVING throughout; logs off a terminal are JSON lines
//! without colour, each line of a command carrying its engagement and trace id.

use std::time::Duration;

use coachflow_integration_tests::amqp::{self, TestExchange};
use coachflow_integration_tests::client::metric_value;
use coachflow_integration_tests::proxy::FaultProxy;
use coachflow_integration_tests::{Backend, TestServer, wait_until};
use coachflow_server::proto;
use serde_json::Value;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

use crate::support::expect_code;

const WAIT: Duration = Duration::from_secs(30);

const READINESS: &str = "readiness";
const LIVENESS: &str = "liveness";
const DATABASE: &str = "coachflow.component.database";
const BROKER: &str = "coachflow.component.broker";

async fn status(server: &TestServer, service: &str) -> Result<ServingStatus, tonic::Status> {
    HealthClient::new(server.channel())
        .check(HealthCheckRequest {
            service: service.to_owned(),
        })
        .await
        .map(|answer| answer.into_inner().status())
}

async fn wait_for(server: &TestServer, service: &str, wanted: ServingStatus) {
    wait_until(&format!("health of '{service}' to be {wanted:?}"), WAIT, || async {
        (status(server, service).await.ok() == Some(wanted)).then_some(())
    })
    .await;
}

async fn component_up(server: &TestServer, component: &str) -> Option<f64> {
    metric_value(
        &server.scrape_metrics().await,
        "coachflow_component_up",
        &[("component", component)],
    )
}

async fn start_and_complete_one(server: &TestServer, id: &str) -> proto::Engagement {
    let model = server.publish_builtin("four-stage").await;
    let engagement = server.create_engagement(&model, id, 1).await;
    complete_an_open_task(server, &engagement).await
}

/// Completes the first open task of a four-stage engagement, as its assignee.
async fn complete_an_open_task(server: &TestServer, engagement: &proto::Engagement) -> proto::Engagement {
    let task = engagement
        .tasks
        .iter()
        .find(|task| task.state() == proto::task::State::Open)
        .expect("an open task");
    let source = coachflow_integration_tests::client::builtin_source("four-stage");
    coachflow_integration_tests::Driver::new(server, &source, &engagement.name)
        .complete(task)
        .await
}

/// The database goes away under a running server (its connections cut by a proxy) and comes
/// back: readiness NOT_SERVING and SERVING again, liveness SERVING throughout, commands
/// refused with UNAVAILABLE meanwhile, and nothing acknowledged before is lost.
async fn readiness_follows_the_database(backend: Backend) {
    assert_eq!(backend, Backend::Postgres, "the database is cut off through a proxy");
    let database = coachflow_integration_tests::TestDatabase::create(backend).await;
    let proxy = FaultProxy::start(amqp::server_address(database.url(), 5432).await).await;
    let through_proxy = amqp::with_address(database.url(), proxy.addr());
    let server = TestServer::builder(backend)
        .on_database(&database)
        .database_url(through_proxy)
        .set("health.interval", "100ms")
        .start()
        .await;
    for service in [READINESS, LIVENESS, DATABASE, "", "coachflow.v1.EngagementService"] {
        assert_eq!(
            status(&server, service).await.ok(),
            Some(ServingStatus::Serving),
            "{service}"
        );
    }
    assert_eq!(component_up(&server, "database").await, Some(1.0));
    let acknowledged = start_and_complete_one(&server, "outage").await;

    proxy.cut().await;
    wait_for(&server, READINESS, ServingStatus::NotServing).await;
    for service in [DATABASE, "", "coachflow.v1.EngagementService"] {
        assert_eq!(
            status(&server, service).await.ok(),
            Some(ServingStatus::NotServing),
            "{service}"
        );
    }
    assert_eq!(status(&server, LIVENESS).await.ok(), Some(ServingStatus::Serving));
    assert_eq!(component_up(&server, "database").await, Some(0.0));
    let refused = server
        .engagements()
        .get_engagement(proto::GetEngagementRequest {
            name: acknowledged.name.clone(),
        })
        .await;
    expect_code("a read while the database is away", refused, Code::Unavailable);

    proxy.restore();
    wait_for(&server, READINESS, ServingStatus::Serving).await;
    assert_eq!(component_up(&server, "database").await, Some(1.0));
    let after = server.get_engagement(&acknowledged.name).await;
    assert_eq!(
        after.etag, acknowledged.etag,
        "the acknowledged completion is there, and nothing else"
    );
    complete_an_open_task(&server, &after).await;
}

/// A server that may not migrate is not ready on a database whose schema is behind it,
/// until `coachflow migrate` has run.
async fn readiness_waits_for_the_schema(backend: Backend) {
    let server = TestServer::builder(backend)
        .set("database.migrate", "false")
        .set("health.interval", "100ms")
        .start()
        .await;
    assert_eq!(status(&server, READINESS).await.ok(), Some(ServingStatus::NotServing));
    assert_eq!(status(&server, DATABASE).await.ok(), Some(ServingStatus::NotServing));
    assert_eq!(status(&server, LIVENESS).await.ok(), Some(ServingStatus::Serving));

    let migrated = std::process::Command::new(coachflow_integration_tests::server::binary())
        .args(["migrate", "--database-url", server.database().url()])
        .env_remove("COACHFLOW_TEST_POSTGRES_URL")
        .env_remove("COACHFLOW_BIN")
        .output()
        .expect("run coachflow migrate");
    assert!(
        migrated.status.success(),
        "{}",
        String::from_utf8_lossy(&migrated.stderr)
    );

    wait_for(&server, READINESS, ServingStatus::Serving).await;
    start_and_complete_one(&server, "after-migrate").await;
}

/// The broker is reported on its own and never fails readiness: events wait in the outbox.
async fn the_broker_is_a_component_not_a_condition_of_readiness(backend: Backend) {
    let exchange = TestExchange::new("health_broker");
    let proxy = FaultProxy::start(amqp::broker_address(exchange.url()).await).await;
    let server = TestServer::builder(backend)
        .set("broker.url", &proxy.amqp_url(exchange.url()))
        .set("broker.exchange", exchange.name())
        .set("broker.reconnect_min", "50ms")
        .set("broker.reconnect_max", "200ms")
        .start()
        .await;
    wait_for(&server, BROKER, ServingStatus::Serving).await;
    assert_eq!(component_up(&server, "broker").await, Some(1.0));

    proxy.cut().await;
    wait_for(&server, BROKER, ServingStatus::NotServing).await;
    assert_eq!(component_up(&server, "broker").await, Some(0.0));
    assert_eq!(status(&server, READINESS).await.ok(), Some(ServingStatus::Serving));
    start_and_complete_one(&server, "broker-down").await;

    proxy.restore();
    wait_for(&server, BROKER, ServingStatus::Serving).await;
    drop(server);
    exchange.cleanup().await;
}

/// On SIGTERM readiness goes NOT_SERVING while the server still answers (the drain delay),
/// and only then does it stop accepting and exit.
async fn shutdown_says_not_ready_first(backend: Backend) {
    let mut server = TestServer::builder(backend)
        .set("shutdown.drain_delay", "3s")
        .start()
        .await;
    assert_eq!(status(&server, READINESS).await.ok(), Some(ServingStatus::Serving));
    let pid = server.pid().expect("running");
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(sent.success());
    wait_for(&server, READINESS, ServingStatus::NotServing).await;
    assert_eq!(status(&server, LIVENESS).await.ok(), Some(ServingStatus::Serving));
    let exited = server.terminate(WAIT).await;
    assert!(exited.success(), "{exited:?}");
}

/// Off a terminal the log is JSON lines without escape codes; the lines a command writes
/// carry its engagement and the caller's trace id.
async fn logs_off_a_terminal_are_json_with_the_engagement_and_trace(backend: Backend) {
    let server = TestServer::start(backend).await;
    let engagement = start_and_complete_one(&server, "logged").await;
    // A denial is logged inside the command: the sponsor may not complete the coach's task.
    let task = engagement
        .tasks
        .iter()
        .find(|task| task.state() == proto::task::State::Open)
        .expect("an open task");
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let mut request = tonic::Request::new(proto::CompleteTaskRequest {
        name: task.name.clone(),
        outputs: None,
        etag: String::new(),
        request_id: String::new(),
    });
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{trace_id}-00f067aa0ba902b7-01").parse().expect("ascii"),
    );
    let denied = server.engagements_as("person/sponsor-1").complete_task(request).await;
    expect_code("the sponsor completing a task", denied, Code::PermissionDenied);

    let log = wait_until("the denial in the log", WAIT, || async {
        let text = std::fs::read_to_string(server.log_path()).unwrap_or_default();
        text.contains(trace_id).then_some(text)
    })
    .await;
    assert!(!log.contains('\u{1b}'), "an escape code in the log");
    let mut of_the_command = 0;
    for line in log.lines().filter(|line| !line.starts_with("=== harness")) {
        let entry: Value = serde_json::from_str(line).unwrap_or_else(|error| panic!("not JSON ({error}): {line}"));
        if line.contains(trace_id) {
            of_the_command += 1;
            let spans = entry["spans"].as_array().expect("the enclosing spans");
            let field = |name: &str| spans.iter().find_map(|span| span[name].as_str().map(str::to_owned));
            assert_eq!(field("trace_id").as_deref(), Some(trace_id), "{line}");
            assert_eq!(field("engagement").as_deref(), Some(engagement.name.as_str()), "{line}");
        }
    }
    assert!(of_the_command >= 1);
}

on_both_backends!(
    readiness_waits_for_the_schema,
    the_broker_is_a_component_not_a_condition_of_readiness,
    shutdown_says_not_ready_first,
    logs_off_a_terminal_are_json_with_the_engagement_and_trace,
);

mod postgres_only {
    use coachflow_integration_tests::Backend;

    /// On PostgreSQL: a SQLite file cannot be made unreachable.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn readiness_follows_the_database() {
        crate::run(super::readiness_follows_the_database(Backend::Postgres)).await;
    }
}
