//! Group commit on SQLite: the commits that queue while the previous write transaction holds
//! the writer's turn share the next transaction, each in a savepoint of its own, so one
//! fsync acknowledges them all.
//!
//! - A commit joins the open batch, or opens one and spawns its leader. The leader waits for
//!   the writer's turn, begins the transaction and closes the batch: who arrives later opens
//!   the next one. A lone commit opens its own batch at once and waits for nobody.
//! - Each member writes its own rows in a savepoint (one member at a time): a guard that
//!   fails, or a duplicate request id, rolls back that savepoint only; the others go on. It
//!   is answered once the batch is committed, since it may stem from another member's rows,
//!   which its caller then reads back.
//! - When every member has written, the leader commits and tells them. A member is
//!   acknowledged only after that commit; if it fails, none is, and nothing of any is kept.
//! - A member whose caller goes away while it writes leaves its savepoint to be rolled back
//!   (the transaction does that before its next statement) and is counted out; the leader
//!   runs in a task of its own, so no caller can strand the others.

use std::sync::{Arc, Mutex as SyncMutex, PoisonError};

use sea_orm::{DatabaseTransaction, DbErr, TransactionTrait};
use tokio::sync::{Mutex, watch};

use crate::{Store, StoreError, metrics as names};

/// The open batch of a store's SQLite writers (one per [`Store`] and its clones).
#[derive(Debug, Default)]
pub(crate) struct GroupCommit {
    open: SyncMutex<Option<Arc<Batch>>>,
}

#[derive(Debug)]
struct Batch {
    /// The batch's transaction, once its leader has begun it; taken for the commit.
    transaction: Mutex<Option<DatabaseTransaction>>,
    /// `Some(Ok)` once the transaction is begun, `Some(Err)` if it could not be.
    begun: watch::Sender<Option<Result<(), String>>>,
    /// Members that joined and have not finished writing.
    writing: watch::Sender<usize>,
    /// The commit's outcome, once there is one.
    committed: watch::Sender<Option<Result<(), String>>>,
}

/// Counts a member out of `writing` however its write ends.
struct Member<'a>(&'a Batch);

impl Drop for Member<'_> {
    fn drop(&mut self) {
        self.0.writing.send_modify(|writing| *writing -= 1);
    }
}

impl GroupCommit {
    /// Runs `write` in a savepoint of a batch's transaction and returns once that
    /// transaction is committed: `write`'s own outcome, or the commit's failure.
    pub(crate) async fn commit<W>(&self, store: &Store, write: W) -> Result<(), StoreError>
    where
        W: AsyncFnOnce(&DatabaseTransaction) -> Result<(), StoreError>,
    {
        let batch = self.join(store);
        let member = Member(&batch);
        if let Err(error) = settled(&batch.begun).await {
            return Err(failed(error));
        }
        let own = {
            let transaction = batch.transaction.lock().await;
            let Some(transaction) = transaction.as_ref() else {
                return Err(failed("the batch ended before this commit was written".to_owned()));
            };
            let savepoint = transaction.begin().await?;
            match write(&savepoint).await {
                Ok(()) => savepoint.commit().await.map_err(StoreError::from),
                Err(error) => {
                    if let Err(rollback) = savepoint.rollback().await {
                        tracing::warn!(error = %rollback, "rolling back to a savepoint failed");
                    }
                    Err(error)
                }
            }
        };
        drop(member);
        // A refusal waits for the commit too: it may stem from another member's rows (the
        // twin of a request, a commit to the same engagement), which the caller reads back
        // (the first request's answer, the engagement's new state) only once committed.
        match settled(&batch.committed).await {
            Ok(()) => own,
            // Nothing of the batch is kept: a refusal it caused means nothing either.
            Err(error) => Err(failed(error)),
        }
    }

    /// The open batch, counted in; a new one (and its leader) if none is open.
    fn join(&self, store: &Store) -> Arc<Batch> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(batch) = open.as_ref() {
            batch.writing.send_modify(|writing| *writing += 1);
            return Arc::clone(batch);
        }
        let batch = Arc::new(Batch {
            transaction: Mutex::new(None),
            begun: watch::Sender::new(None),
            writing: watch::Sender::new(1),
            committed: watch::Sender::new(None),
        });
        *open = Some(Arc::clone(&batch));
        tokio::spawn(lead(store.clone(), Arc::clone(&batch)));
        batch
    }

    /// Closes `batch` to new members, if it is still the open one.
    fn close(&self, batch: &Arc<Batch>) {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if open.as_ref().is_some_and(|current| Arc::ptr_eq(current, batch)) {
            *open = None;
        }
    }
}

/// Begins the batch's transaction when the writer's turn comes, closes the batch, waits for
/// every member's write and commits.
async fn lead(store: Store, batch: Arc<Batch>) {
    let (transaction, turn) = match store.begin_write().await {
        Ok(begun) => begun,
        Err(error) => {
            store.group.close(&batch);
            batch.begun.send_replace(Some(Err(error.to_string())));
            return;
        }
    };
    *batch.transaction.lock().await = Some(transaction);
    // Who arrived while the turn was coming is in; who arrives now waits for the next one.
    store.group.close(&batch);
    batch.begun.send_replace(Some(Ok(())));
    let _ = batch.writing.subscribe().wait_for(|writing| *writing == 0).await;
    let outcome = match batch.transaction.lock().await.take() {
        Some(transaction) => transaction.commit().await.map_err(|error| error.to_string()),
        None => Err("the batch's transaction is gone".to_owned()),
    };
    drop(turn);
    metrics::counter!(names::COMMIT_TRANSACTIONS).increment(1);
    batch.committed.send_replace(Some(outcome));
}

/// The outcome `step` settles on (the transaction begun, the batch committed).
async fn settled(step: &watch::Sender<Option<Result<(), String>>>) -> Result<(), String> {
    match step.subscribe().wait_for(Option::is_some).await {
        Ok(outcome) => outcome
            .clone()
            .unwrap_or_else(|| Err("the batch's step settled on nothing".to_owned())),
        Err(_) => Err("the batch's leader stopped".to_owned()),
    }
}

fn failed(message: String) -> StoreError {
    StoreError::Database(DbErr::Custom(format!("the group commit failed: {message}")))
}
