//! Long-running operations (AIP-151): the operation, and one item per engagement it
//! selected when it began. A replica works on an operation under a lease it renews with
//! every batch of outcomes it records; when the lease runs out (the replica died) another
//! one claims it and goes on with the items still pending.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, Func, OnConflict};
use sea_orm::{
    ActiveValue, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Statement,
    TransactionTrait as _,
};

use crate::connect::{Backend, finish};
use crate::entity::{operation, operation_item};
use crate::error::unique_violation_as;
use crate::idempotency::insert_idempotency_key;
use crate::{NewIdempotencyKey, Store, StoreError};

/// Where an operation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OperationStatus {
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl OperationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            OperationStatus::Running => "running",
            OperationStatus::Succeeded => "succeeded",
            OperationStatus::Failed => "failed",
            OperationStatus::Cancelled => "cancelled",
        }
    }

    fn parse(text: &str) -> Result<OperationStatus, StoreError> {
        Ok(match text {
            "running" => OperationStatus::Running,
            "succeeded" => OperationStatus::Succeeded,
            "failed" => OperationStatus::Failed,
            "cancelled" => OperationStatus::Cancelled,
            other => return Err(StoreError::Corrupt(format!("operation status '{other}'"))),
        })
    }

    pub fn is_done(self) -> bool {
        self != OperationStatus::Running
    }
}

/// The outcome of an item not worked on yet.
pub const PENDING_OUTCOME: &str = "pending";

/// An operation to start, with the engagements it works on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOperation {
    pub tenant: String,
    pub id: String,
    pub kind: String,
    /// The request, as JSON.
    pub request: String,
    /// Who started it, as JSON.
    pub principal: String,
    pub engagements: Vec<String>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredOperation {
    pub tenant: String,
    pub id: String,
    pub kind: String,
    pub request: String,
    pub principal: String,
    pub status: OperationStatus,
    pub cancel_requested: bool,
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub done_at: Option<DateTime<Utc>>,
    /// Items per outcome (`pending` included).
    pub outcomes: BTreeMap<String, u64>,
}

impl StoredOperation {
    pub fn total(&self) -> u64 {
        self.outcomes.values().sum()
    }

    pub fn count(&self, outcome: &str) -> u64 {
        self.outcomes.get(outcome).copied().unwrap_or(0)
    }
}

/// What became of one engagement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperationItem {
    pub engagement: String,
    pub outcome: String,
    /// The conflicts or the error, as JSON.
    pub detail: Option<String>,
}

/// Items inserted per statement (SQLite binds at most 32,766 values).
const ITEMS_PER_INSERT: usize = 500;

impl Store {
    /// Stores a new operation with its items, all pending, and the request id that
    /// started it, in one transaction.
    pub async fn create_operation(
        &self,
        new: NewOperation,
        idempotency: Option<NewIdempotencyKey>,
    ) -> Result<(), StoreError> {
        let (transaction, _turn) = self.begin_write().await?;
        let created = async {
            let row = operation::Model {
                tenant: new.tenant.clone(),
                id: new.id.clone(),
                kind: new.kind.clone(),
                request: new.request.clone(),
                principal: new.principal.clone(),
                status: OperationStatus::Running.as_str().to_owned(),
                cancel_requested: false,
                error: None,
                claimed_by: None,
                claimed_until: None,
                created_at: new.created_at,
                updated_at: new.created_at,
                done_at: None,
            };
            operation::Entity::insert(sea_orm::IntoActiveModel::into_active_model(row))
                .exec_without_returning(&transaction)
                .await
                .map_err(|error| {
                    unique_violation_as(error, || StoreError::AlreadyExists(format!("operation {}", new.id)))
                })?;
            for chunk in new.engagements.chunks(ITEMS_PER_INSERT) {
                let rows = chunk.iter().map(|engagement| operation_item::ActiveModel {
                    tenant: ActiveValue::Set(new.tenant.clone()),
                    operation: ActiveValue::Set(new.id.clone()),
                    engagement: ActiveValue::Set(engagement.clone()),
                    outcome: ActiveValue::Set(PENDING_OUTCOME.to_owned()),
                    detail: ActiveValue::Set(None),
                    updated_at: ActiveValue::Set(new.created_at),
                });
                operation_item::Entity::insert_many(rows)
                    .on_conflict(
                        OnConflict::columns([
                            operation_item::Column::Tenant,
                            operation_item::Column::Operation,
                            operation_item::Column::Engagement,
                        ])
                        .do_nothing()
                        .to_owned(),
                    )
                    .exec_without_returning(&transaction)
                    .await?;
            }
            if let Some(key) = &idempotency {
                insert_idempotency_key(&transaction, key)
                    .await
                    .map_err(|error| unique_violation_as(error, || StoreError::DuplicateRequest))?;
            }
            Ok(())
        }
        .await;
        finish(transaction, created).await
    }

    pub async fn get_operation(&self, tenant: &str, id: &str) -> Result<Option<StoredOperation>, StoreError> {
        let Some(row) = operation::Entity::find_by_id((tenant.to_owned(), id.to_owned()))
            .one(&self.db)
            .await?
        else {
            return Ok(None);
        };
        self.with_outcomes(row).await.map(Some)
    }

    /// The tenant's operations, newest first by id (ids are UUIDv7), after `before_id`.
    pub async fn list_operations(
        &self,
        tenant: &str,
        before_id: Option<&str>,
        limit: u64,
    ) -> Result<Vec<StoredOperation>, StoreError> {
        let mut query = operation::Entity::find().filter(operation::Column::Tenant.eq(tenant));
        if let Some(before_id) = before_id {
            query = query.filter(operation::Column::Id.lt(before_id));
        }
        let rows = query
            .order_by_desc(operation::Column::Id)
            .limit(crate::convert::limit(limit))
            .all(&self.db)
            .await?;
        let mut operations = Vec::with_capacity(rows.len());
        for row in rows {
            operations.push(self.with_outcomes(row).await?);
        }
        Ok(operations)
    }

    async fn with_outcomes(&self, row: operation::Model) -> Result<StoredOperation, StoreError> {
        let counts: Vec<(String, i64)> = operation_item::Entity::find()
            .select_only()
            .column(operation_item::Column::Outcome)
            .expr(Func::count(Expr::col(operation_item::Column::Engagement)))
            .filter(operation_item::Column::Tenant.eq(&row.tenant))
            .filter(operation_item::Column::Operation.eq(&row.id))
            .group_by(operation_item::Column::Outcome)
            .into_tuple()
            .all(&self.db)
            .await?;
        let outcomes = counts
            .into_iter()
            .map(|(outcome, count)| Ok((outcome, crate::convert::to_u64(count, "item count")?)))
            .collect::<Result<_, StoreError>>()?;
        Ok(StoredOperation {
            status: OperationStatus::parse(&row.status)?,
            tenant: row.tenant,
            id: row.id,
            kind: row.kind,
            request: row.request,
            principal: row.principal,
            cancel_requested: row.cancel_requested,
            error: row.error,
            created_at: row.created_at,
            updated_at: row.updated_at,
            done_at: row.done_at,
            outcomes,
        })
    }

    /// Every item of an operation, by engagement id.
    pub async fn operation_items(&self, tenant: &str, id: &str) -> Result<Vec<OperationItem>, StoreError> {
        self.items(tenant, id, None, u64::MAX).await
    }

    /// Up to `limit` items still pending, by engagement id.
    pub async fn pending_operation_items(&self, tenant: &str, id: &str, limit: u64) -> Result<Vec<String>, StoreError> {
        Ok(self
            .items(tenant, id, Some(PENDING_OUTCOME), limit)
            .await?
            .into_iter()
            .map(|item| item.engagement)
            .collect())
    }

    async fn items(
        &self,
        tenant: &str,
        id: &str,
        outcome: Option<&str>,
        limit: u64,
    ) -> Result<Vec<OperationItem>, StoreError> {
        let mut query = operation_item::Entity::find()
            .filter(operation_item::Column::Tenant.eq(tenant))
            .filter(operation_item::Column::Operation.eq(id));
        if let Some(outcome) = outcome {
            query = query.filter(operation_item::Column::Outcome.eq(outcome));
        }
        Ok(query
            .order_by_asc(operation_item::Column::Engagement)
            .limit(crate::convert::limit(limit))
            .all(&self.db)
            .await?
            .into_iter()
            .map(|row| OperationItem {
                engagement: row.engagement,
                outcome: row.outcome,
                detail: row.detail,
            })
            .collect())
    }

    /// Claims one running operation whose lease is absent or ended, oldest first, for
    /// `owner` until `now + lease`; on PostgreSQL with `FOR UPDATE SKIP LOCKED`, so two
    /// replicas never claim the same one.
    pub async fn claim_operation(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Result<Option<StoredOperation>, StoreError> {
        let claimed_until = crate::outbox::lease_end(now, lease)?;
        let lock = match self.backend {
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        let sql = format!(
            "UPDATE operations SET claimed_by = $1, claimed_until = $2 \
             WHERE (tenant, id) IN ( \
                 SELECT tenant, id FROM operations \
                 WHERE status = 'running' AND (claimed_until IS NULL OR claimed_until < $3) \
                 ORDER BY created_at LIMIT 1{lock}) \
             RETURNING tenant, id"
        );
        let (transaction, _turn) = self.begin_write().await?;
        let claimed = transaction
            .query_one_raw(Statement::from_sql_and_values(
                self.db_backend(),
                sql,
                [owner.into(), claimed_until.into(), now.into()],
            ))
            .await;
        let claimed = match claimed {
            Ok(Some(row)) => {
                let tenant: Result<String, _> = row.try_get("", "tenant");
                let id: Result<String, _> = row.try_get("", "id");
                tenant
                    .and_then(|tenant| id.map(|id| Some((tenant, id))))
                    .map_err(StoreError::from)
            }
            Ok(None) => Ok(None),
            Err(error) => Err(StoreError::from(error)),
        };
        let claimed = finish(transaction, claimed).await?;
        match claimed {
            Some((tenant, id)) => self.get_operation(&tenant, &id).await,
            None => Ok(None),
        }
    }

    /// Records the outcomes of some items and renews `owner`'s lease, in one transaction.
    /// `Ok(None)`: the lease is not `owner`'s any more (it ran out and another replica
    /// claimed the operation), and nothing is recorded; `Ok(Some(cancel_requested))`
    /// otherwise.
    pub async fn record_operation_items(
        &self,
        tenant: &str,
        id: &str,
        owner: &str,
        items: &[OperationItem],
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Result<Option<bool>, StoreError> {
        let claimed_until = crate::outbox::lease_end(now, lease)?;
        let (transaction, _turn) = self.begin_write().await?;
        let recorded = async {
            let renewed = operation::Entity::update_many()
                .col_expr(operation::Column::ClaimedUntil, Expr::value(claimed_until))
                .col_expr(operation::Column::UpdatedAt, Expr::value(now))
                .filter(operation::Column::Tenant.eq(tenant))
                .filter(operation::Column::Id.eq(id))
                .filter(operation::Column::ClaimedBy.eq(owner))
                .filter(operation::Column::Status.eq(OperationStatus::Running.as_str()))
                .exec(&transaction)
                .await?;
            if renewed.rows_affected == 0 {
                return Ok(None);
            }
            for item in items {
                operation_item::Entity::update_many()
                    .col_expr(operation_item::Column::Outcome, Expr::value(item.outcome.clone()))
                    .col_expr(operation_item::Column::Detail, Expr::value(item.detail.clone()))
                    .col_expr(operation_item::Column::UpdatedAt, Expr::value(now))
                    .filter(operation_item::Column::Tenant.eq(tenant))
                    .filter(operation_item::Column::Operation.eq(id))
                    .filter(operation_item::Column::Engagement.eq(&item.engagement))
                    .exec(&transaction)
                    .await?;
            }
            let cancel_requested: Option<bool> = operation::Entity::find_by_id((tenant.to_owned(), id.to_owned()))
                .select_only()
                .column(operation::Column::CancelRequested)
                .into_tuple()
                .one(&transaction)
                .await?;
            Ok(cancel_requested)
        }
        .await;
        finish(transaction, recorded).await
    }

    /// Ends an operation `owner` holds, with `status` (and `error` when it failed).
    /// `false`: it is not `owner`'s any more.
    pub async fn finish_operation(
        &self,
        tenant: &str,
        id: &str,
        owner: &str,
        status: OperationStatus,
        error: Option<String>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let finished = operation::Entity::update_many()
            .col_expr(operation::Column::Status, Expr::value(status.as_str()))
            .col_expr(operation::Column::Error, Expr::value(error))
            .col_expr(operation::Column::ClaimedBy, Expr::value(Option::<String>::None))
            .col_expr(
                operation::Column::ClaimedUntil,
                Expr::value(Option::<DateTime<Utc>>::None),
            )
            .col_expr(operation::Column::UpdatedAt, Expr::value(now))
            .col_expr(operation::Column::DoneAt, Expr::value(Some(now)))
            .filter(operation::Column::Tenant.eq(tenant))
            .filter(operation::Column::Id.eq(id))
            .filter(operation::Column::ClaimedBy.eq(owner))
            .filter(operation::Column::Status.eq(OperationStatus::Running.as_str()))
            .exec(&self.db)
            .await?;
        Ok(finished.rows_affected == 1)
    }

    /// Gives up `owner`'s claim (on shutdown), so another replica goes on at once.
    pub async fn release_operation(&self, tenant: &str, id: &str, owner: &str) -> Result<(), StoreError> {
        operation::Entity::update_many()
            .col_expr(operation::Column::ClaimedBy, Expr::value(Option::<String>::None))
            .col_expr(
                operation::Column::ClaimedUntil,
                Expr::value(Option::<DateTime<Utc>>::None),
            )
            .filter(operation::Column::Tenant.eq(tenant))
            .filter(operation::Column::Id.eq(id))
            .filter(operation::Column::ClaimedBy.eq(owner))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// Asks a running operation to stop after the item in hand; `false` if it is done
    /// already (or does not exist).
    pub async fn request_operation_cancel(
        &self,
        tenant: &str,
        id: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let requested = operation::Entity::update_many()
            .col_expr(operation::Column::CancelRequested, Expr::value(true))
            .col_expr(operation::Column::UpdatedAt, Expr::value(now))
            .filter(operation::Column::Tenant.eq(tenant))
            .filter(operation::Column::Id.eq(id))
            .filter(operation::Column::Status.eq(OperationStatus::Running.as_str()))
            .exec(&self.db)
            .await?;
        Ok(requested.rows_affected == 1)
    }

    /// Deletes a finished operation and its items; `false` if there is no finished
    /// operation of that id.
    pub async fn delete_operation(&self, tenant: &str, id: &str) -> Result<bool, StoreError> {
        let transaction = self.db.begin().await?;
        let deleted = async {
            let deleted = operation::Entity::delete_many()
                .filter(operation::Column::Tenant.eq(tenant))
                .filter(operation::Column::Id.eq(id))
                .filter(operation::Column::Status.ne(OperationStatus::Running.as_str()))
                .exec(&transaction)
                .await?;
            if deleted.rows_affected == 1 {
                operation_item::Entity::delete_many()
                    .filter(operation_item::Column::Tenant.eq(tenant))
                    .filter(operation_item::Column::Operation.eq(id))
                    .exec(&transaction)
                    .await?;
            }
            Ok(deleted.rows_affected == 1)
        }
        .await;
        finish(transaction, deleted).await
    }
}
