//! Health that tells the truth, on the standard gRPC health service.
//!
//! - `liveness`: SERVING while the process runs; a failing database never restarts it.
//! - `readiness`, the overall `""` and each API service's name: SERVING while the database
//!   answers and its schema is the one this binary expects, NOT_SERVING otherwise, and
//!   NOT_SERVING from the moment shutdown begins (before the server stops accepting).
//! - `coachflow.component.database` and `coachflow.component.broker`: each dependency on
//!   its own. The broker being down does not fail readiness (public events wait in the
//!   outbox); it is reported here and by `coachflow_component_up{component}`.

use std::sync::Arc;
use std::time::Duration;

use coachflow_store::Store;
use tokio::sync::watch;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::metrics as names;

pub const LIVENESS: &str = "liveness";
pub const READINESS: &str = "readiness";
pub const DATABASE: &str = "coachflow.component.database";
pub const BROKER: &str = "coachflow.component.broker";

/// The longest a database check may take before the database counts as unreachable.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// What the last look at the database found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseState {
    Up,
    Unreachable(String),
    SchemaBehind(usize),
}

/// Keeps the health service's answers up to date.
#[derive(Debug)]
pub struct Health {
    reporter: HealthReporter,
    /// The API services, which answer as readiness does.
    services: Vec<&'static str>,
    store: Store,
    /// The relay's connection, when there is a broker.
    broker: Option<watch::Receiver<bool>>,
    /// True once shutdown has begun. Readiness is set under this lock, so a check that was
    /// under way when shutdown began cannot answer SERVING after it.
    stopping: tokio::sync::Mutex<bool>,
}

impl Health {
    pub fn new(
        reporter: HealthReporter,
        services: Vec<&'static str>,
        store: Store,
        broker: Option<watch::Receiver<bool>>,
    ) -> Arc<Health> {
        Arc::new(Health {
            reporter,
            services,
            store,
            broker,
            stopping: tokio::sync::Mutex::new(false),
        })
    }

    /// Looks at the database now and answers accordingly (liveness too). Returns what it
    /// found, so that [`Health::run`] logs changes only.
    pub async fn check(&self, last: Option<&DatabaseState>) -> DatabaseState {
        self.reporter.set_service_status(LIVENESS, ServingStatus::Serving).await;
        let database = self.database_state().await;
        if last.map(std::mem::discriminant) != Some(std::mem::discriminant(&database)) {
            match &database {
                DatabaseState::Up => tracing::info!("the database answers with a current schema: ready"),
                DatabaseState::Unreachable(error) => {
                    tracing::warn!(error = %error, "the database does not answer: not ready")
                }
                DatabaseState::SchemaBehind(pending) => tracing::warn!(
                    pending,
                    "the database schema is behind this binary (run `coachflow migrate`): not ready"
                ),
            }
        }
        let up = database == DatabaseState::Up;
        self.component(DATABASE, "database", up).await;
        self.readiness(up).await;
        if let Some(connected) = &self.broker {
            let connected = *connected.borrow();
            self.component(BROKER, "broker", connected).await;
        }
        database
    }

    /// Checks again every `interval`, and at once when the broker connects or disconnects,
    /// until `shutdown`; then readiness goes NOT_SERVING for good.
    pub async fn run(self: Arc<Health>, first: DatabaseState, interval: Duration, mut shutdown: watch::Receiver<bool>) {
        let mut broker = self.broker.clone();
        let mut last = first;
        while !*shutdown.borrow() {
            tokio::select! {
                () = tokio::time::sleep(interval) => {}
                _ = shutdown.changed() => continue,
                changed = async {
                    match broker.as_mut() {
                        Some(connected) => connected.changed().await,
                        None => std::future::pending().await,
                    }
                } => {
                    if changed.is_err() {
                        // The relay has stopped: nothing more will change there.
                        broker = None;
                    }
                }
            }
            last = self.check(Some(&last)).await;
        }
        self.readiness(false).await;
    }

    /// Shutdown has begun: not ready from now on, whatever the database says.
    pub async fn shutting_down(&self) {
        *self.stopping.lock().await = true;
        self.readiness(false).await;
        tracing::info!("shutting down: not ready");
    }

    async fn readiness(&self, ready: bool) {
        let stopping = self.stopping.lock().await;
        let status = if ready && !*stopping {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        for service in [READINESS, ""].into_iter().chain(self.services.iter().copied()) {
            self.reporter.set_service_status(service, status).await;
        }
    }

    async fn component(&self, service: &str, component: &'static str, up: bool) {
        let status = if up {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        self.reporter.set_service_status(service, status).await;
        metrics::gauge!(names::COMPONENT_UP, "component" => component).set(if up { 1.0 } else { 0.0 });
    }

    async fn database_state(&self) -> DatabaseState {
        let checked = tokio::time::timeout(CHECK_TIMEOUT, async {
            self.store.ping().await?;
            self.store.pending_migrations().await
        })
        .await;
        match checked {
            Ok(Ok(0)) => DatabaseState::Up,
            Ok(Ok(pending)) => DatabaseState::SchemaBehind(pending),
            Ok(Err(error)) => DatabaseState::Unreachable(error.to_string()),
            Err(_) => DatabaseState::Unreachable(format!("no answer within {CHECK_TIMEOUT:?}")),
        }
    }
}
