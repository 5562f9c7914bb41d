//! Shared support for the black-box tests: start the real `coachflow` binary on a fresh
//! database with a clock the test moves, talk to it over gRPC, and check what it did.
//!
//! A test harness fails loudly: every helper panics with what it was doing and why, and a
//! server that dies prints where its log is and how the log ends.
#![allow(clippy::expect_used, clippy::unwrap_used)]

pub mod amqp;
pub mod client;
pub mod contract;
pub mod drive;
pub mod history;
pub mod https;
pub mod identity;
pub mod proxy;
pub mod server;

pub use client::{Bearer, Engagements, Events, Models, Operations, TENANT, actor_claims, engagement_name, task_name};
pub use drive::{Driver, default_outputs, json_to_struct, parse_model};
pub use identity::{Claims, KeyKind, TestIssuer};
pub use server::{Backend, START_TIME, ServerBuilder, TestClock, TestDatabase, TestServer, start_time};

/// Polls `condition` until it yields a value or `timeout` passes; then panics naming `what`.
/// For asynchronous behaviour (timers firing, streams catching up): it waits for a state,
/// never for a duration.
pub async fn wait_until<T, F, Fut>(what: &str, timeout: std::time::Duration, mut condition: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = condition().await {
            return value;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting until {what}");
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
}
