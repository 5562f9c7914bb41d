//! What erasure and retention need besides the commit that erases: the pseudonyms of
//! erased people, the engagements a person is in, the closed engagements whose content is
//! due for erasure, and pruning of sent outbox rows and idempotency keys.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait as _, OnConflict};
use sea_orm::{ActiveValue, ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use crate::entity::{engagement, engagement_person, erased_person, idempotency_key, outbox};
use crate::sealing::person_digest;
use crate::{Store, StoreError};

impl Store {
    /// The stable pseudonym of `person` in `tenant`: the one given when they were first
    /// erased, or a new random one (`erased-<16 hex>`) recorded now. Replicas erasing the
    /// same person at once agree on one.
    pub async fn pseudonym_for(
        &self,
        tenant: &str,
        person: &str,
        erased_by: &str,
        now: DateTime<Utc>,
    ) -> Result<String, StoreError> {
        let digest = person_digest(tenant, person);
        let key = (tenant.to_owned(), digest.clone());
        if let Some(row) = erased_person::Entity::find_by_id(key.clone()).one(&self.db).await? {
            return Ok(row.pseudonym);
        }
        let random: [u8; 8] = crate::sealing::random_bytes()?;
        let row = erased_person::ActiveModel {
            tenant: ActiveValue::Set(tenant.to_owned()),
            digest: ActiveValue::Set(digest),
            pseudonym: ActiveValue::Set(format!("erased-{}", crate::hex(&random))),
            erased_by: ActiveValue::Set(erased_by.to_owned()),
            erased_at: ActiveValue::Set(now),
        };
        erased_person::Entity::insert(row)
            .on_conflict(
                OnConflict::columns([erased_person::Column::Tenant, erased_person::Column::Digest])
                    .do_nothing()
                    .to_owned(),
            )
            .exec_without_returning(&self.db)
            .await?;
        erased_person::Entity::find_by_id(key)
            .one(&self.db)
            .await?
            .map(|row| row.pseudonym)
            .ok_or_else(|| StoreError::Corrupt("a pseudonym just recorded is missing".to_owned()))
    }

    /// The pseudonym of a person erased in `tenant`, if they were.
    pub async fn find_pseudonym(&self, tenant: &str, person: &str) -> Result<Option<String>, StoreError> {
        Ok(
            erased_person::Entity::find_by_id((tenant.to_owned(), person_digest(tenant, person)))
                .one(&self.db)
                .await?
                .map(|row| row.pseudonym),
        )
    }

    /// The ids of the tenant's engagements `person` is bound to, in order.
    pub async fn engagements_of_person(&self, tenant: &str, person: &str) -> Result<Vec<String>, StoreError> {
        let ids: Vec<String> = engagement_person::Entity::find()
            .select_only()
            .column(engagement_person::Column::Engagement)
            .distinct()
            .filter(engagement_person::Column::Tenant.eq(tenant))
            .filter(engagement_person::Column::Person.eq(person))
            .order_by_asc(engagement_person::Column::Engagement)
            .into_tuple()
            .all(&self.db)
            .await?;
        Ok(ids)
    }

    /// Every tenant that has an engagement.
    pub async fn tenants(&self) -> Result<Vec<String>, StoreError> {
        Ok(engagement::Entity::find()
            .select_only()
            .column(engagement::Column::Tenant)
            .distinct()
            .order_by_asc(engagement::Column::Tenant)
            .into_tuple()
            .all(&self.db)
            .await?)
    }

    /// Up to `limit` of the tenant's engagements that ended at or before `ended_before`
    /// and whose content has not been erased since, oldest first.
    pub async fn closed_engagements_with_content(
        &self,
        tenant: &str,
        ended_before: DateTime<Utc>,
        limit: u64,
    ) -> Result<Vec<String>, StoreError> {
        Ok(engagement::Entity::find()
            .select_only()
            .column(engagement::Column::Id)
            .filter(engagement::Column::Tenant.eq(tenant))
            .filter(engagement::Column::EndedAt.lte(ended_before))
            .filter(
                Condition::any()
                    .add(engagement::Column::ContentErasedAt.is_null())
                    .add(Expr::col(engagement::Column::ContentErasedAt).lt(Expr::col(engagement::Column::EndedAt))),
            )
            .order_by_asc(engagement::Column::EndedAt)
            .order_by_asc(engagement::Column::Id)
            .limit(limit)
            .into_tuple()
            .all(&self.db)
            .await?)
    }

    /// Deletes the tenant's outbox rows sent at or before `sent_before`; returns how many.
    /// (A `WatchEvents` reader resuming from before them passes them by.)
    pub async fn prune_sent_outbox(&self, tenant: &str, sent_before: DateTime<Utc>) -> Result<u64, StoreError> {
        Ok(outbox::Entity::delete_many()
            .filter(outbox::Column::Tenant.eq(tenant))
            .filter(outbox::Column::SentAt.lte(sent_before))
            .exec(&self.db)
            .await?
            .rows_affected)
    }

    /// Deletes the tenant's idempotency keys made at or before `made_before`; returns how
    /// many.
    pub async fn prune_idempotency_keys(&self, tenant: &str, made_before: DateTime<Utc>) -> Result<u64, StoreError> {
        Ok(idempotency_key::Entity::delete_many()
            .filter(idempotency_key::Column::Tenant.eq(tenant))
            .filter(idempotency_key::Column::CreatedAt.lte(made_before))
            .exec(&self.db)
            .await?
            .rows_affected)
    }
}
