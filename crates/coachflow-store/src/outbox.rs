//! The outbox: public events written with the commit that caused them, read in position
//! order by `WatchEvents`, and published by the relays, which claim engagements so that one
//! relay at a time publishes an engagement's rows, in order.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, Func, OnConflict};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, FromQueryResult, QueryFilter, QueryOrder, QuerySelect,
    Statement,
};

use crate::connect::{Backend, finish};
use crate::convert::{to_i64, to_u64};
use crate::entity::{outbox, outbox_claim};
use crate::{Store, StoreError};

/// Key of the PostgreSQL advisory lock that serializes relay claims ("cf-relay").
const CLAIM_LOCK_KEY: i64 = 0x6366_2d72_656c_6179;

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
    /// The W3C `traceparent` of the command that caused the event, if traced.
    pub traceparent: Option<String>,
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
    pub traceparent: Option<String>,
    /// When the row was committed.
    pub created_at: DateTime<Utc>,
}

/// The rows no relay has published yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboxBacklog {
    pub rows: u64,
    /// When the oldest of them was committed.
    pub oldest: Option<DateTime<Utc>>,
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
            traceparent: row.traceparent,
            created_at: row.created_at,
        })
    }
}

impl Store {
    /// The tenant's outbox rows after `after_position` (of one engagement when given), by
    /// position ascending. Positions become visible when their commits do, not in order:
    /// a reader that follows positions waits at a hole as [`Store::read_outbox_all`] says.
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
    /// commits: on PostgreSQL a lower position can appear after a higher one (commits of
    /// different engagements run side by side), and a rolled-back commit leaves a hole
    /// forever. A reader that follows positions waits briefly at a hole for the commit in
    /// flight (the rows are inserted last, just before the commit). SQLite serializes all
    /// writers.
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

    /// Claims up to `limit` unpublished rows for the relay `owner`, for `lease`: the rows
    /// come in position order, and for each engagement they are the first of its
    /// unpublished rows, so publishing them in the order given keeps the engagement's
    /// order. Engagements claimed by another relay whose lease has not ended are skipped;
    /// the owner's own claims are renewed. Claims are taken one relay at a time (an
    /// advisory lock on PostgreSQL, the write lock on SQLite).
    #[tracing::instrument(level = "debug", skip(self))]
    pub async fn claim_outbox(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        lease: Duration,
        limit: u64,
    ) -> Result<Vec<OutboxRow>, StoreError> {
        let claimed_until = lease_end(now, lease)?;
        let limit = i64::try_from(crate::convert::limit(limit)).unwrap_or(i64::MAX);
        let (transaction, _turn) = self.begin_write().await?;
        let claimed = async {
            if self.backend == Backend::Postgres {
                transaction
                    .query_one_raw(Statement::from_sql_and_values(
                        DbBackend::Postgres,
                        "SELECT pg_advisory_xact_lock($1)",
                        [CLAIM_LOCK_KEY.into()],
                    ))
                    .await?;
            }
            let rows = outbox::Model::find_by_statement(Statement::from_sql_and_values(
                self.db_backend(),
                "SELECT o.* FROM outbox o \
                 LEFT JOIN outbox_claims c ON c.tenant = o.tenant AND c.engagement = o.engagement \
                 WHERE o.sent_at IS NULL \
                   AND (c.claimed_by IS NULL OR c.claimed_by = $1 OR c.claimed_until <= $2) \
                 ORDER BY o.position LIMIT $3",
                [owner.into(), now.into(), limit.into()],
            ))
            .all(&transaction)
            .await?;
            let engagements: BTreeSet<(&str, &str)> = rows
                .iter()
                .map(|row| (row.tenant.as_str(), row.engagement.as_str()))
                .collect();
            let claims: Vec<outbox_claim::ActiveModel> = engagements
                .into_iter()
                .map(|(tenant, engagement)| {
                    outbox_claim::Model {
                        tenant: tenant.to_owned(),
                        engagement: engagement.to_owned(),
                        claimed_by: owner.to_owned(),
                        claimed_until,
                    }
                    .into()
                })
                .collect();
            for chunk in claims.chunks(CLAIMS_PER_INSERT) {
                outbox_claim::Entity::insert_many(chunk.iter().cloned())
                    .on_conflict(
                        OnConflict::columns([outbox_claim::Column::Tenant, outbox_claim::Column::Engagement])
                            .update_columns([outbox_claim::Column::ClaimedBy, outbox_claim::Column::ClaimedUntil])
                            .to_owned(),
                    )
                    .exec_without_returning(&transaction)
                    .await?;
            }
            rows.into_iter().map(OutboxRow::try_from).collect::<Result<Vec<_>, _>>()
        }
        .await;
        finish(transaction, claimed).await
    }

    /// Marks rows published (their confirms arrived): no relay sends them again.
    pub async fn mark_outbox_sent(&self, positions: &[u64], now: DateTime<Utc>) -> Result<(), StoreError> {
        for chunk in positions.chunks(CLAIMS_PER_INSERT) {
            let chunk = chunk
                .iter()
                .map(|position| to_i64(*position, "outbox position"))
                .collect::<Result<Vec<_>, _>>()?;
            outbox::Entity::update_many()
                .col_expr(outbox::Column::SentAt, Expr::value(Some(now)))
                .filter(outbox::Column::Position.is_in(chunk))
                .filter(outbox::Column::SentAt.is_null())
                .exec(&self.db)
                .await?;
        }
        Ok(())
    }

    /// Gives up every claim `owner` holds, so other relays may take its engagements at
    /// once (after a batch, on a broker outage, at shutdown).
    pub async fn release_outbox_claims(&self, owner: &str) -> Result<(), StoreError> {
        outbox_claim::Entity::delete_many()
            .filter(outbox_claim::Column::ClaimedBy.eq(owner))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// How many rows wait to be published, and since when.
    pub async fn outbox_backlog(&self) -> Result<OutboxBacklog, StoreError> {
        let row: Option<(i64, Option<DateTime<Utc>>)> = outbox::Entity::find()
            .select_only()
            .expr(Func::count(Expr::col(outbox::Column::Position)))
            .expr(Func::min(Expr::col(outbox::Column::CreatedAt)))
            .filter(outbox::Column::SentAt.is_null())
            .into_tuple()
            .one(&self.db)
            .await?;
        let (rows, oldest) = row.unwrap_or((0, None));
        Ok(OutboxBacklog {
            rows: to_u64(rows, "outbox backlog")?,
            oldest,
        })
    }
}

/// Rows per multi-row statement of the relay's.
const CLAIMS_PER_INSERT: usize = 1000;

pub(crate) fn lease_end(now: DateTime<Utc>, lease: Duration) -> Result<DateTime<Utc>, StoreError> {
    chrono::Duration::from_std(lease)
        .ok()
        .and_then(|lease| now.checked_add_signed(lease))
        .ok_or_else(|| StoreError::Invalid(format!("lease {lease:?} is too long")))
}
