//! The operation worker: carries long-running operations (bulk migrations) to their end.
//!
//! A replica claims one running operation at a time under a lease, works on its pending
//! engagements in batches, and records each batch's outcomes while renewing the lease in the
//! same transaction. If the replica dies, the lease runs out and another replica (or this
//! one, restarted) claims the operation and goes on with what is still pending. An
//! engagement moved just before a crash, whose outcome was not recorded, is found on the new
//! version and counted as already migrated: none moves twice, none half-way (each moves in
//! one commit).

use std::sync::Arc;
use std::time::Duration;

use coachflow_store::StoredOperation;
use futures_util::StreamExt as _;
use tokio::sync::watch;

use crate::application::{AppError, BulkMigration, Core, ItemOutcome, Method, OperationName, Principal};
use crate::metrics as names;
use crate::trace;

#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// This replica's name in claims.
    pub owner: String,
    /// Engagements per batch: their outcomes are recorded together.
    pub batch_size: u64,
    /// Engagements of a batch moved at the same time.
    pub concurrency: usize,
    pub lease: Duration,
    /// Longest sleep between looks for operations to claim.
    pub poll_interval: Duration,
}

/// What the operations act with: the method that started them.
const MIGRATE_ENGAGEMENTS: &str = "coachflow.v1.EngagementService/MigrateEngagements";

/// Runs until `shutdown` turns true; the batch in hand finishes first.
pub async fn run(core: Arc<Core>, settings: WorkerSettings, mut shutdown: watch::Receiver<bool>) {
    let wake = core.operations_changed();
    tracing::info!(owner = %settings.owner, "operation worker started");
    loop {
        if *shutdown.borrow() {
            break;
        }
        let claimed = match core
            .store()
            .claim_operation(&settings.owner, core.now(), settings.lease)
            .await
        {
            Ok(claimed) => claimed,
            Err(error) => {
                tracing::warn!(error = %error, "cannot claim operations; retrying");
                None
            }
        };
        if let Some(operation) = claimed {
            let name = OperationName::new(&operation.tenant, &operation.id);
            trace::in_new_trace("operation", work(&core, &settings, operation, &shutdown)).await;
            tracing::debug!(operation = %name, "operation put down");
            continue;
        }
        tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => break,
            () = wake.notified() => {}
            () = tokio::time::sleep(settings.poll_interval) => {}
        }
    }
    tracing::info!("operation worker stopped");
}

/// Why the worker put an operation down.
enum Stop {
    /// Every engagement done, or cancelled: the operation is finished.
    Finished { cancelled: bool },
    /// The lease is another replica's now.
    LostClaim,
    /// Shutting down, or a passing failure: released, to be claimed again.
    Release,
}

#[tracing::instrument(skip_all, fields(operation = %OperationName::new(&operation.tenant, &operation.id)))]
async fn work(core: &Core, settings: &WorkerSettings, operation: StoredOperation, shutdown: &watch::Receiver<bool>) {
    let stop = match read(&operation) {
        Ok((principal, request)) => migrate(core, settings, &operation, &principal, &request, shutdown).await,
        Err(error) => {
            tracing::error!(error = %error, "the operation is unreadable; it fails");
            let failed = core
                .store()
                .finish_operation(
                    &operation.tenant,
                    &operation.id,
                    &settings.owner,
                    coachflow_store::OperationStatus::Failed,
                    Some(error.to_string()),
                    core.now(),
                )
                .await;
            if let Err(error) = failed {
                tracing::warn!(error = %error, "cannot record that the operation failed");
            }
            return;
        }
    };
    match stop {
        Stop::Finished { cancelled } => {
            if let Err(error) = core.finish_operation(&operation, &settings.owner, cancelled).await {
                tracing::warn!(error = %error, "cannot finish the operation; it is claimed again when its lease ends");
            }
        }
        Stop::LostClaim => tracing::warn!("the operation's lease ran out and another replica claimed it"),
        Stop::Release => {
            if let Err(error) = core
                .store()
                .release_operation(&operation.tenant, &operation.id, &settings.owner)
                .await
            {
                tracing::warn!(error = %error, "cannot release the operation; it is claimed again when its lease ends");
            }
        }
    }
}

fn read(operation: &StoredOperation) -> Result<(Principal, BulkMigration), AppError> {
    let unreadable =
        |what: &str, error: serde_json::Error| AppError::Internal(format!("its {what} is unreadable: {error}"));
    let principal = serde_json::from_str(&operation.principal).map_err(|error| unreadable("principal", error))?;
    let request = serde_json::from_str(&operation.request).map_err(|error| unreadable("request", error))?;
    Ok((principal, request))
}

async fn migrate(
    core: &Core,
    settings: &WorkerSettings,
    operation: &StoredOperation,
    principal: &Principal,
    request: &BulkMigration,
    shutdown: &watch::Receiver<bool>,
) -> Stop {
    let method = Method::named(MIGRATE_ENGAGEMENTS);
    let (tenant, id) = (&operation.tenant, &operation.id);
    if operation.cancel_requested {
        return Stop::Finished { cancelled: true };
    }
    loop {
        if *shutdown.borrow() {
            return Stop::Release;
        }
        let pending = match core
            .store()
            .pending_operation_items(tenant, id, settings.batch_size)
            .await
        {
            Ok(pending) => pending,
            Err(error) => {
                tracing::warn!(error = %error, "cannot read the operation's engagements");
                return Stop::Release;
            }
        };
        if pending.is_empty() {
            return Stop::Finished { cancelled: false };
        }
        let outcomes: Vec<(String, Result<ItemOutcome, AppError>)> = futures_util::stream::iter(pending)
            .map(|engagement| async move {
                let outcome = core.migrate_item(principal, method, tenant, &engagement, request).await;
                (engagement, outcome)
            })
            .buffer_unordered(settings.concurrency.max(1))
            .collect()
            .await;
        let mut passing = None;
        let items: Vec<_> = outcomes
            .into_iter()
            .filter_map(|(engagement, outcome)| match outcome {
                Ok(outcome) => {
                    metrics::counter!(names::OPERATION_ITEMS, "outcome" => outcome.as_str()).increment(1);
                    Some(outcome.to_item(&engagement))
                }
                Err(error) => {
                    passing = Some(error);
                    None
                }
            })
            .collect();
        match core
            .store()
            .record_operation_items(tenant, id, &settings.owner, &items, core.now(), settings.lease)
            .await
        {
            Ok(None) => return Stop::LostClaim,
            Ok(Some(true)) => return Stop::Finished { cancelled: true },
            Ok(Some(false)) => {}
            Err(error) => {
                tracing::warn!(error = %error, "cannot record the outcomes; the batch is tried again");
                return Stop::Release;
            }
        }
        if let Some(error) = passing {
            // The database is unavailable or an engagement too busy: the rest stays
            // pending; look again after a pause rather than spin.
            tracing::warn!(error = %error, "some engagements could not be moved now; they are tried again");
            tokio::time::sleep(settings.poll_interval.min(Duration::from_secs(1))).await;
        }
    }
}
