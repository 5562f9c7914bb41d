//! The outbox: public events written with the commit that caused them, read in position
//! order (by `WatchEvents`; the relay publishes and marks them).

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, Func};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use crate::convert::{to_i64, to_u64};
use crate::entity::outbox;
use crate::{Store, StoreError};

/// A public event to publish, as a CloudEvent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOutboxEvent {
    /// The CloudEvents id: the consumers' dedupe key; unique.
    pub event_id: String,
    /// The engagement event's sequence number.
    pub sequence: u64,
    /// The CloudEvents type, e.g. `dev.coachflow.milestone.reached.v1`.
    pub event_type: String,
    /// `<tenant>.<entity>.<action>`.
    pub routing_key: String,
    /// The engagement's resource name.
    pub subject: String,
    pub time: DateTime<Utc>,
    /// The CloudEvents `data`, JSON.
    pub data: String,
}

/// An outbox row; `position` orders all rows, ascending in commit order per engagement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxRow {
    pub position: u64,
    pub tenant: String,
    pub engagement: String,
    pub event_id: String,
    pub sequence: u64,
    pub event_type: String,
    pub routing_key: String,
    pub subject: String,
    pub time: DateTime<Utc>,
    pub data: String,
}

impl TryFrom<outbox::Model> for OutboxRow {
    type Error = StoreError;

    fn try_from(row: outbox::Model) -> Result<OutboxRow, StoreError> {
        Ok(OutboxRow {
            position: to_u64(row.position, "outbox position")?,
            sequence: to_u64(row.sequence, "sequence")?,
            tenant: row.tenant,
            engagement: row.engagement,
            event_id: row.event_id,
            event_type: row.event_type,
            routing_key: row.routing_key,
            subject: row.subject,
            time: row.time,
            data: row.data,
        })
    }
}

impl Store {
    /// The tenant's outbox rows after `after_position` (of one engagement when given), by
    /// position ascending. The tenant's positions become visible in order, so a reader that
    /// continues after the last position it saw misses nothing (positions of rolled-back
    /// commits are skipped for good).
    pub async fn read_outbox(
        &self,
        tenant: &str,
        after_position: u64,
        engagement: Option<&str>,
        limit: u64,
    ) -> Result<Vec<OutboxRow>, StoreError> {
        let mut query = outbox::Entity::find()
            .filter(outbox::Column::Tenant.eq(tenant))
            .filter(outbox::Column::Position.gt(to_i64(after_position, "outbox position")?));
        if let Some(engagement) = engagement {
            query = query.filter(outbox::Column::Engagement.eq(engagement));
        }
        query
            .order_by_asc(outbox::Column::Position)
            .limit(crate::convert::limit(limit))
            .all(&self.db)
            .await?
            .into_iter()
            .map(OutboxRow::try_from)
            .collect()
    }

    /// Rows of every tenant after `after_position`, by position ascending (for a reader that
    /// follows the whole outbox and filters itself).
    ///
    /// Positions are taken when a row is inserted but become visible when its transaction
    /// commits: across tenants a lower position can appear after a higher one, and a
    /// rolled-back commit leaves a hole forever. (Within one tenant, PostgreSQL commits
    /// make positions visible in order; SQLite serializes all writers.)
    pub async fn read_outbox_all(&self, after_position: u64, limit: u64) -> Result<Vec<OutboxRow>, StoreError> {
        outbox::Entity::find()
            .filter(outbox::Column::Position.gt(to_i64(after_position, "outbox position")?))
            .order_by_asc(outbox::Column::Position)
            .limit(crate::convert::limit(limit))
            .all(&self.db)
            .await?
            .into_iter()
            .map(OutboxRow::try_from)
            .collect()
    }

    /// The tenant's highest outbox position; 0 when it has none.
    pub async fn max_outbox_position(&self, tenant: &str) -> Result<u64, StoreError> {
        let max: Option<Option<i64>> = outbox::Entity::find()
            .select_only()
            .expr(Func::max(Expr::col(outbox::Column::Position)))
            .filter(outbox::Column::Tenant.eq(tenant))
            .into_tuple()
            .one(&self.db)
            .await?;
        to_u64(max.flatten().unwrap_or(0), "outbox position")
    }
}
