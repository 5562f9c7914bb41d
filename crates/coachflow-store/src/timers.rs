//! Durable timers: claimed in batches by the runners with a lease, so each fires once
//! however many replicas run.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, Statement};

use crate::connect::Backend;
use crate::entity::timer;
use crate::{Store, StoreError};

/// A timer a runner claimed: fire it with a `FireTimer` command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueTimer {
    pub tenant: String,
    pub engagement: String,
    pub timer_id: String,
    pub fires_at: DateTime<Utc>,
}

impl Store {
    /// Claims up to `limit` timers with `fires_at <= now` whose claim is absent or expired
    /// (`claimed_until < now`): sets `claimed_by = owner`, `claimed_until = now + lease`,
    /// and returns them ordered by `fires_at`. One statement; on PostgreSQL the candidates
    /// are locked with `FOR UPDATE SKIP LOCKED`, so concurrent runners claim disjoint sets
    /// (SQLite serializes writers).
    #[tracing::instrument(level = "debug", skip(self))]
    pub async fn claim_due_timers(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        lease: Duration,
        limit: u64,
    ) -> Result<Vec<DueTimer>, StoreError> {
        let claimed_until = crate::outbox::lease_end(now, lease)?;
        let lock = match self.backend {
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        let sql = format!(
            "UPDATE timers SET claimed_by = $1, claimed_until = $2 \
             WHERE (tenant, engagement, timer_id) IN ( \
                 SELECT tenant, engagement, timer_id FROM timers \
                 WHERE fires_at <= $3 AND (claimed_until IS NULL OR claimed_until < $3) \
                 ORDER BY fires_at LIMIT $4{lock}) \
             RETURNING tenant, engagement, timer_id, fires_at"
        );
        let limit = i64::try_from(crate::convert::limit(limit)).unwrap_or(i64::MAX);
        let rows = self
            .db
            .query_all_raw(Statement::from_sql_and_values(
                self.db_backend(),
                sql,
                [owner.into(), claimed_until.into(), now.into(), limit.into()],
            ))
            .await?;
        let mut timers = rows
            .iter()
            .map(|row| {
                Ok(DueTimer {
                    tenant: row.try_get("", "tenant")?,
                    engagement: row.try_get("", "engagement")?,
                    timer_id: row.try_get("", "timer_id")?,
                    fires_at: row.try_get("", "fires_at")?,
                })
            })
            .collect::<Result<Vec<_>, sea_orm::DbErr>>()?;
        // RETURNING has no order.
        timers.sort_by(|a, b| {
            (a.fires_at, &a.tenant, &a.engagement, &a.timer_id).cmp(&(
                b.fires_at,
                &b.tenant,
                &b.engagement,
                &b.timer_id,
            ))
        });
        Ok(timers)
    }

    /// Deletes the timer if it still fires at `timer.fires_at` (the engine says it is gone;
    /// a timer moved meanwhile stays).
    pub async fn delete_timer(&self, timer: &DueTimer) -> Result<(), StoreError> {
        timer::Entity::delete_many()
            .filter(timer::Column::Tenant.eq(&timer.tenant))
            .filter(timer::Column::Engagement.eq(&timer.engagement))
            .filter(timer::Column::TimerId.eq(&timer.timer_id))
            .filter(timer::Column::FiresAt.eq(timer.fires_at))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// Releases a claim still held by `owner`, so the timer is claimed again at once.
    pub async fn release_timer(&self, timer: &DueTimer, owner: &str) -> Result<(), StoreError> {
        timer::Entity::update_many()
            .col_expr(timer::Column::ClaimedBy, Expr::value(Option::<String>::None))
            .col_expr(timer::Column::ClaimedUntil, Expr::value(Option::<DateTime<Utc>>::None))
            .filter(timer::Column::Tenant.eq(&timer.tenant))
            .filter(timer::Column::Engagement.eq(&timer.engagement))
            .filter(timer::Column::TimerId.eq(&timer.timer_id))
            .filter(timer::Column::ClaimedBy.eq(owner))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// When the runner should look again, as of `now`: the earliest time a timer becomes
    /// claimable, that is its `fires_at`, or the end of its claim's lease when it is claimed
    /// (a timer being fired is not due again until its lease expires). `None` without
    /// timers.
    ///
    /// Two index range reads, not a scan of every timer: the earliest timer not claimed past
    /// its due time (the `fires_at` index from its start, skipping the few being fired), and
    /// the earliest lease among the timers due by `now` (claims are only taken on due
    /// timers). A claimed timer moved past `now` meanwhile is found at the runner's next
    /// poll. (The scan of the whole table took 1–20 ms at 10,000–20,000 timers, and the
    /// runner ran it after every commit that changed a timer.)
    pub async fn next_timer_at(&self, now: DateTime<Utc>) -> Result<Option<DateTime<Utc>>, StoreError> {
        let row = self
            .db
            .query_one_raw(Statement::from_sql_and_values(
                self.db_backend(),
                "SELECT MIN(next_at) AS next_at FROM ( \
                   SELECT next_at FROM ( \
                     SELECT fires_at AS next_at FROM timers \
                     WHERE claimed_until IS NULL OR claimed_until <= fires_at \
                     ORDER BY fires_at LIMIT 1) AS unclaimed \
                   UNION ALL \
                   SELECT MIN(claimed_until) AS next_at FROM timers \
                   WHERE fires_at <= $1 AND claimed_until > fires_at \
                 ) AS next",
                [now.into()],
            ))
            .await?;
        match row {
            Some(row) => Ok(row.try_get("", "next_at")?),
            None => Ok(None),
        }
    }

    pub async fn count_timers(&self) -> Result<u64, StoreError> {
        Ok(timer::Entity::find().count(&self.db).await?)
    }
}
