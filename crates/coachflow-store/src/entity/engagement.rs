//! `engagements`: the query projection, one row per engagement. Its `sequence` is the
//! optimistic-concurrency guard every commit updates first.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "engagements")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub tenant: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub model_key: String,
    pub model_version: i32,
    pub status: String,
    pub phase: Option<String>,
    pub phase_iteration: Option<i32>,
    /// The last event's sequence number.
    pub sequence: i64,
    /// The sequence of the latest snapshot; 0 when there is none.
    pub snapshot_sequence: i64,
    pub open_tasks: i32,
    pub overdue_tasks: i32,
    /// Earliest due time of an open task.
    pub next_due_at: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    /// When it completed or was cancelled.
    pub ended_at: Option<DateTimeUtc>,
    /// When its content was last erased.
    pub content_erased_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
