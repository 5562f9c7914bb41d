//! `engagement_tasks`: the open tasks of every engagement, for work queues.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "engagement_tasks")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub tenant: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub engagement: String,
    /// The task instance id.
    #[sea_orm(primary_key, auto_increment = false)]
    pub task_id: String,
    /// The model's task key.
    pub task_key: String,
    pub phase: Option<String>,
    pub assignee: Option<String>,
    pub due_at: Option<DateTimeUtc>,
    pub due_soon: bool,
    pub overdue: bool,
    pub opened_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
