//! Work queues: the open tasks of a tenant's engagements, by assignee.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Cond, Expr, ExprTrait, Order};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Statement};
use serde::{Deserialize, Serialize};

use crate::convert::to_u64;
use crate::entity::engagement_task;
use crate::{Store, StoreError};

/// Which of the open tasks to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TaskQueue {
    /// Every open task.
    #[default]
    Open,
    /// Open tasks whose reminder fired and that are not overdue yet.
    DueSoon,
    /// Open tasks past their due time.
    Overdue,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskFilter {
    /// The person the tasks are assigned to.
    pub assignee: String,
    pub queue: TaskQueue,
}

/// An open task of an engagement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskRow {
    pub tenant: String,
    pub engagement: String,
    /// The task instance id.
    pub task_id: String,
    /// The model's task key.
    pub task_key: String,
    pub phase: Option<String>,
    pub assignee: Option<String>,
    pub due_at: Option<DateTime<Utc>>,
    pub due_soon: bool,
    pub overdue: bool,
    pub opened_at: DateTime<Utc>,
}

impl TaskRow {
    /// Where the next page starts when this row ends a page.
    pub fn cursor(&self) -> TaskCursor {
        TaskCursor {
            due_at: self.due_at,
            engagement: self.engagement.clone(),
            task_id: self.task_id.clone(),
        }
    }
}

impl From<engagement_task::Model> for TaskRow {
    fn from(row: engagement_task::Model) -> TaskRow {
        TaskRow {
            tenant: row.tenant,
            engagement: row.engagement,
            task_id: row.task_id,
            task_key: row.task_key,
            phase: row.phase,
            assignee: row.assignee,
            due_at: row.due_at,
            due_soon: row.due_soon,
            overdue: row.overdue,
            opened_at: row.opened_at,
        }
    }
}

/// The position of the last row of a page of [`Store::list_tasks`]; opaque to clients
/// (serialize it into the page token).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskCursor {
    pub due_at: Option<DateTime<Utc>>,
    pub engagement: String,
    pub task_id: String,
}

/// Tasks open now, over all tenants: for the gauges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OpenTaskCounts {
    pub open: u64,
    /// Due soon and not overdue yet.
    pub due_soon: u64,
    pub overdue: u64,
}

impl Store {
    /// Open tasks assigned to `filter.assignee` across the tenant's engagements in the
    /// queue `filter.queue`: soonest due first (no due time last), then by engagement id,
    /// then task id; after `after` (keyset pagination).
    pub async fn list_tasks(
        &self,
        tenant: &str,
        filter: &TaskFilter,
        after: Option<&TaskCursor>,
        limit: u64,
    ) -> Result<Vec<TaskRow>, StoreError> {
        use engagement_task::Column;
        let mut query = engagement_task::Entity::find()
            .filter(Column::Tenant.eq(tenant))
            .filter(Column::Assignee.eq(&filter.assignee));
        query = match filter.queue {
            TaskQueue::Open => query,
            TaskQueue::DueSoon => query.filter(Column::DueSoon.eq(true)).filter(Column::Overdue.eq(false)),
            TaskQueue::Overdue => query.filter(Column::Overdue.eq(true)),
        };
        if let Some(after) = after {
            let later_in_same_due = Cond::any().add(Column::Engagement.gt(&after.engagement)).add(
                Cond::all()
                    .add(Column::Engagement.eq(&after.engagement))
                    .add(Column::TaskId.gt(&after.task_id)),
            );
            query = query.filter(match after.due_at {
                Some(due_at) => Cond::any()
                    .add(Column::DueAt.gt(due_at))
                    .add(Cond::all().add(Column::DueAt.eq(due_at)).add(later_in_same_due))
                    .add(Column::DueAt.is_null()),
                None => Cond::all().add(Column::DueAt.is_null()).add(later_in_same_due),
            });
        }
        Ok(query
            // Tasks without a due time last, portably (false sorts before true).
            .order_by(Expr::col(Column::DueAt).is_null(), Order::Asc)
            .order_by_asc(Column::DueAt)
            .order_by_asc(Column::Engagement)
            .order_by_asc(Column::TaskId)
            .limit(crate::convert::limit(limit))
            .all(&self.db)
            .await?
            .into_iter()
            .map(TaskRow::from)
            .collect())
    }

    /// Open, due-soon and overdue tasks over all tenants.
    pub async fn count_open_tasks(&self) -> Result<OpenTaskCounts, StoreError> {
        let row = self
            .db
            .query_one_raw(Statement::from_string(
                self.db_backend(),
                "SELECT COUNT(*) AS open, \
                 COALESCE(SUM(CASE WHEN due_soon AND NOT overdue THEN 1 ELSE 0 END), 0) AS due_soon, \
                 COALESCE(SUM(CASE WHEN overdue THEN 1 ELSE 0 END), 0) AS overdue \
                 FROM engagement_tasks",
            ))
            .await?;
        let Some(row) = row else {
            return Ok(OpenTaskCounts::default());
        };
        let count = |column: &str| -> Result<u64, StoreError> { to_u64(row.try_get::<i64>("", column)?, column) };
        Ok(OpenTaskCounts {
            open: count("open")?,
            due_soon: count("due_soon")?,
            overdue: count("overdue")?,
        })
    }
}
