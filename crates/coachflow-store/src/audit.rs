//! The record of break-glass reads of content.

use chrono::{DateTime, Utc};
use sea_orm::{ActiveValue, ColumnTrait, EntityTrait, QueryFilter, QueryOrder};

use crate::entity::content_read;
use crate::{Store, StoreError};

/// A read of an engagement's content by a principal with `content:read`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewContentRead {
    pub tenant: String,
    pub engagement: String,
    pub principal: String,
    pub delegate: Option<String>,
    pub method: String,
    pub at: DateTime<Utc>,
}

impl Store {
    /// Records a break-glass read.
    pub async fn record_content_read(&self, read: NewContentRead) -> Result<(), StoreError> {
        let row = content_read::ActiveModel {
            id: ActiveValue::NotSet,
            tenant: ActiveValue::Set(read.tenant),
            engagement: ActiveValue::Set(read.engagement),
            principal: ActiveValue::Set(read.principal),
            delegate: ActiveValue::Set(read.delegate),
            method: ActiveValue::Set(read.method),
            read_at: ActiveValue::Set(read.at),
        };
        let (transaction, _turn) = self.begin_write().await?;
        let outcome = content_read::Entity::insert(row)
            .exec_without_returning(&transaction)
            .await
            .map(|_| ())
            .map_err(StoreError::from);
        crate::connect::finish(transaction, outcome).await
    }

    /// The break-glass reads of an engagement's content, oldest first.
    pub async fn content_reads(&self, tenant: &str, engagement: &str) -> Result<Vec<NewContentRead>, StoreError> {
        let rows = content_read::Entity::find()
            .filter(content_read::Column::Tenant.eq(tenant))
            .filter(content_read::Column::Engagement.eq(engagement))
            .order_by_asc(content_read::Column::Id)
            .all(&self.db)
            .await?;
        Ok(rows
            .into_iter()
            .map(|row| NewContentRead {
                tenant: row.tenant,
                engagement: row.engagement,
                principal: row.principal,
                delegate: row.delegate,
                method: row.method,
                at: row.read_at,
            })
            .collect())
    }
}
