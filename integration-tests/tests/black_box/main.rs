//! Black-box tests of the real `coachflow serve` binary on SQLite and PostgreSQL: each test
//! starts its own server on a fresh database and drives it over gRPC.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::time::Duration;

/// No scenario takes this long on a healthy server; past it the test fails instead of
/// hanging the run.
const SCENARIO_TIMEOUT: Duration = Duration::from_secs(900);

async fn run(scenario: impl Future<Output = ()>) {
    if tokio::time::timeout(SCENARIO_TIMEOUT, scenario).await.is_err() {
        panic!("the scenario did not finish within {SCENARIO_TIMEOUT:?}");
    }
}

/// For every `async fn scenario(backend: Backend)` named, a test `sqlite::scenario` and a
/// test `postgres::scenario`.
macro_rules! on_both_backends {
    ($($scenario:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    crate::run(super::$scenario(coachflow_integration_tests::Backend::Sqlite)).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    crate::run(super::$scenario(coachflow_integration_tests::Backend::Postgres)).await;
                }
            )*
        }
    };
}

mod api;
mod broker;
mod concurrency;
mod durability;
mod engagements;
mod events;
mod firm_models;
mod health;
mod identity;
mod migration;
mod privacy;
mod replicas;
mod support;
mod telemetry;
mod transport;
