//! Coachflow's storage: the event log with snapshots, the query projection (engagements,
//! their people and open tasks), published models, the outbox, timers and idempotency
//! keys, on SQLite (embedded) or PostgreSQL through sea-orm.
//!
//! [`Store::commit`] is the only way engagement data is written: events, projection,
//! outbox rows, timer changes and the idempotency key go in one transaction, guarded by the
//! engagement's sequence number (optimistic concurrency).

mod audit;
mod commit;
mod connect;
mod convert;
mod engagements;
pub mod entity;
mod error;
mod group;
mod history;
mod idempotency;
pub mod metrics;
mod models;
mod operations;
mod outbox;
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
pub use tasks::{OpenTaskCounts, TaskCursor, TaskFilter, TaskQueue, TaskRow};
pub use timers::DueTimer;
