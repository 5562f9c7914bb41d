//! Coachflow's storage: the event log with snapshots, the query projection (engagements,
//! their people and open tasks), published models, the outbox, timers and idempotency
//! keys, on SQLite (embedded) or PostgreSQL through sea-orm.
//!
//! [`Store::commit`] is the only way engagement data is written: events, projection,
//! outbox rows, timer changes and the idempotency key go in one transaction, guarded by the
//! engagement's sequence number (optimistic concurrency).

mod audit;
mod batch;
mod batch_sqlite;
mod batch_statement;
mod commit;
mod connect;
mod convert;
mod engagements;
pub mod entity;
mod erasure;
mod error;
mod history;
mod idempotency;
mod keys;
pub mod metrics;
mod models;
mod operations;
mod outbox;
mod recordset;
mod sealing;
mod tasks;
#[cfg(feature = "testing")]
pub mod testing;
mod timers;

pub use audit::NewContentRead;
pub use commit::Commit;
pub use connect::{Backend, Store, StoreOptions};
pub use engagements::{EngagementFilter, EngagementSummary, LoadedEngagement};
pub use error::StoreError;
pub use idempotency::{NewIdempotencyKey, StoredIdempotencyKey};
pub use models::{NewModelVersion, StoredModel};
pub use operations::{NewOperation, OperationItem, OperationStatus, PENDING_OUTCOME, StoredOperation};
pub use outbox::{NewOutboxEvent, OutboxBacklog, OutboxRow};
pub use sealing::{KekSource, generate_kek, person_digest, replace_person};
pub use tasks::{OpenTaskCounts, TaskCursor, TaskFilter, TaskQueue, TaskRow};
pub use timers::DueTimer;

/// Lower-case hexadecimal, as checksums, digests and key ids are written.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut out, byte| {
            let _ = write!(out, "{byte:02x}");
            out
        })
}
