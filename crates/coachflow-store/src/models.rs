//! Published process models: immutable versions, numbered per (tenant, key).

use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, DatabaseTransaction, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Statement,
    sea_query::{Expr, Func},
};

use crate::connect::finish;
use crate::convert::{limit, to_i32, to_u32};
use crate::entity::model_version;
use crate::error::{is_unique_violation, unique_violation_as};
use crate::idempotency::{NewIdempotencyKey, insert_idempotency_key};
use crate::{Store, StoreError};

/// A model version to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewModelVersion {
    pub tenant: String,
    pub key: String,
    /// 0: the store assigns latest + 1. Otherwise exactly this version, which must be
    /// latest + 1 ([`StoreError::AlreadyExists`] if it is taken, e.g. by a concurrent
    /// publication): a caller that names the version in the response it stores with the
    /// idempotency key chooses it itself.
    pub version: u32,
    pub display_name: String,
    pub description: String,
    /// `yaml` or `json`: the format of `source`.
    pub source_format: String,
    /// The text as published.
    pub source: String,
    /// The canonical model document as JSON.
    pub document: String,
    /// Hex SHA-256 of the canonical document, computed by the caller.
    pub checksum: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredModel {
    pub tenant: String,
    pub key: String,
    pub version: u32,
    pub display_name: String,
    pub description: String,
    pub source_format: String,
    pub source: String,
    pub document: String,
    pub checksum: String,
    pub created_at: DateTime<Utc>,
    /// When the version was deprecated (no new engagements start on it).
    pub deprecated_at: Option<DateTime<Utc>>,
}

impl TryFrom<model_version::Model> for StoredModel {
    type Error = StoreError;

    fn try_from(row: model_version::Model) -> Result<StoredModel, StoreError> {
        Ok(StoredModel {
            version: to_u32(row.version, "model version")?,
            tenant: row.tenant,
            key: row.key,
            display_name: row.display_name,
            description: row.description,
            source_format: row.source_format,
            source: row.source,
            document: row.document,
            checksum: row.checksum,
            created_at: row.created_at,
            deprecated_at: row.deprecated_at,
        })
    }
}

impl From<NewModelVersion> for StoredModel {
    /// The model as it will be stored (with `version` as given).
    fn from(model: NewModelVersion) -> StoredModel {
        StoredModel {
            tenant: model.tenant,
            key: model.key,
            version: model.version,
            display_name: model.display_name,
            description: model.description,
            source_format: model.source_format,
            source: model.source,
            document: model.document,
            checksum: model.checksum,
            created_at: model.created_at,
            deprecated_at: None,
        }
    }
}

/// How often publishing retries when a concurrent publish of the same key took the version.
const PUBLISH_ATTEMPTS: u32 = 8;

impl Store {
    /// Publishes `model` as version latest + 1 of its (tenant, key). With `model.version`
    /// 0 the number is assigned inside the transaction, retrying when a concurrent publish
    /// took it; a given version must be latest + 1 ([`StoreError::AlreadyExists`] when it is
    /// taken, [`StoreError::Invalid`] when it would leave a gap). Stores `idempotency` in the
    /// same transaction ([`StoreError::DuplicateRequest`] if that (tenant, request id)
    /// exists: nothing is published then).
    #[tracing::instrument(level = "debug", skip_all, fields(tenant = %model.tenant, model_key = %model.key))]
    pub async fn publish_model(
        &self,
        model: NewModelVersion,
        idempotency: Option<NewIdempotencyKey>,
    ) -> Result<StoredModel, StoreError> {
        for _ in 0..PUBLISH_ATTEMPTS {
            let (transaction, _turn) = self.begin_write().await?;
            match publish_in(&transaction, &model, idempotency.as_ref()).await {
                Ok(Some(stored)) => return finish(transaction, Ok(stored)).await,
                Ok(None) => transaction.rollback().await?,
                Err(error) => return finish(transaction, Err(error)).await,
            }
        }
        Err(StoreError::Conflict)
    }

    /// Version `version` of the model, or its latest version when `None`.
    pub async fn get_model(
        &self,
        tenant: &str,
        key: &str,
        version: Option<u32>,
    ) -> Result<Option<StoredModel>, StoreError> {
        let mut query = model_version::Entity::find()
            .filter(model_version::Column::Tenant.eq(tenant))
            .filter(model_version::Column::Key.eq(key));
        query = match version {
            Some(version) => query.filter(model_version::Column::Version.eq(to_i32(version, "model version")?)),
            None => query.order_by_desc(model_version::Column::Version),
        };
        query.one(&self.db).await?.map(StoredModel::try_from).transpose()
    }

    /// The latest version of a model that is not deprecated: the one new engagements start
    /// on when they name no version.
    pub async fn latest_usable_model(&self, tenant: &str, key: &str) -> Result<Option<StoredModel>, StoreError> {
        model_version::Entity::find()
            .filter(model_version::Column::Tenant.eq(tenant))
            .filter(model_version::Column::Key.eq(key))
            .filter(model_version::Column::DeprecatedAt.is_null())
            .order_by_desc(model_version::Column::Version)
            .one(&self.db)
            .await?
            .map(StoredModel::try_from)
            .transpose()
    }

    /// Deprecates a version (`at` given) or undoes it (`None`); the version as it is then,
    /// `None` if it does not exist. Deprecating a deprecated version keeps its first time.
    pub async fn set_model_deprecated(
        &self,
        tenant: &str,
        key: &str,
        version: u32,
        at: Option<DateTime<Utc>>,
    ) -> Result<Option<StoredModel>, StoreError> {
        let version = to_i32(version, "model version")?;
        let mut update = model_version::Entity::update_many()
            .col_expr(model_version::Column::DeprecatedAt, Expr::value(at))
            .filter(model_version::Column::Tenant.eq(tenant))
            .filter(model_version::Column::Key.eq(key))
            .filter(model_version::Column::Version.eq(version));
        if at.is_some() {
            update = update.filter(model_version::Column::DeprecatedAt.is_null());
        }
        let (transaction, _turn) = self.begin_write().await?;
        let outcome = async {
            update.exec(&transaction).await?;
            model_version::Entity::find()
                .filter(model_version::Column::Tenant.eq(tenant))
                .filter(model_version::Column::Key.eq(key))
                .filter(model_version::Column::Version.eq(version))
                .one(&transaction)
                .await?
                .map(StoredModel::try_from)
                .transpose()
        }
        .await;
        finish(transaction, outcome).await
    }

    /// The latest version of each of the tenant's models, ordered by key, after `after_key`.
    pub async fn list_models(
        &self,
        tenant: &str,
        after_key: Option<&str>,
        limit: u64,
    ) -> Result<Vec<StoredModel>, StoreError> {
        let mut sql = String::from(
            "SELECT m.* FROM model_versions m \
             WHERE m.tenant = $1 \
             AND NOT EXISTS (SELECT 1 FROM model_versions newer \
                 WHERE newer.tenant = m.tenant AND newer.key = m.key AND newer.version > m.version)",
        );
        let mut values = vec![tenant.into()];
        if let Some(after_key) = after_key {
            values.push(after_key.into());
            sql.push_str(&format!(" AND m.key > ${}", values.len()));
        }
        values.push(to_limit(limit));
        sql.push_str(&format!(" ORDER BY m.key LIMIT ${}", values.len()));
        model_version::Entity::find()
            .from_raw_sql(Statement::from_sql_and_values(self.db_backend(), sql, values))
            .all(&self.db)
            .await?
            .into_iter()
            .map(StoredModel::try_from)
            .collect()
    }

    /// Versions of one model, newest first; those older than `before_version` when given.
    pub async fn list_model_versions(
        &self,
        tenant: &str,
        key: &str,
        before_version: Option<u32>,
        limit: u64,
    ) -> Result<Vec<StoredModel>, StoreError> {
        let mut query = model_version::Entity::find()
            .filter(model_version::Column::Tenant.eq(tenant))
            .filter(model_version::Column::Key.eq(key));
        if let Some(before) = before_version {
            query = query.filter(model_version::Column::Version.lt(i64::from(before)));
        }
        query
            .order_by_desc(model_version::Column::Version)
            .limit(crate::convert::limit(limit))
            .all(&self.db)
            .await?
            .into_iter()
            .map(StoredModel::try_from)
            .collect()
    }
}

fn to_limit(value: u64) -> sea_orm::Value {
    // `limit` is at most i64::MAX.
    i64::try_from(limit(value)).unwrap_or(i64::MAX).into()
}

/// One attempt: `Ok(None)` when a concurrent publish took the assigned version number.
async fn publish_in(
    transaction: &DatabaseTransaction,
    model: &NewModelVersion,
    idempotency: Option<&NewIdempotencyKey>,
) -> Result<Option<StoredModel>, StoreError> {
    let latest: Option<Option<i32>> = model_version::Entity::find()
        .select_only()
        .expr(Func::max(Expr::col(model_version::Column::Version)))
        .filter(model_version::Column::Tenant.eq(&model.tenant))
        .filter(model_version::Column::Key.eq(&model.key))
        .into_tuple()
        .one(transaction)
        .await?;
    let next = latest
        .flatten()
        .unwrap_or(0)
        .checked_add(1)
        .ok_or_else(|| StoreError::Invalid(format!("model {} has no version numbers left", model.key)))?;
    let chosen = to_i32(model.version, "model version")?;
    let taken = || StoreError::AlreadyExists(format!("version {} of model {}", model.version, model.key));
    let version = match chosen {
        0 => next,
        chosen if chosen < next => return Err(taken()),
        chosen if chosen > next => {
            return Err(StoreError::Invalid(format!(
                "model versions are consecutive: the next version of {} is {next}, not {chosen}",
                model.key
            )));
        }
        chosen => chosen,
    };
    let row = model_version::Model {
        tenant: model.tenant.clone(),
        key: model.key.clone(),
        version,
        display_name: model.display_name.clone(),
        description: model.description.clone(),
        source_format: model.source_format.clone(),
        source: model.source.clone(),
        document: model.document.clone(),
        checksum: model.checksum.clone(),
        created_at: model.created_at,
        deprecated_at: None,
    };
    let inserted = model_version::Entity::insert(sea_orm::IntoActiveModel::into_active_model(row.clone()))
        .exec_without_returning(transaction)
        .await;
    match inserted {
        Ok(_) => {}
        Err(error) if is_unique_violation(&error) && chosen == 0 => return Ok(None),
        Err(error) if is_unique_violation(&error) => return Err(taken()),
        Err(error) => return Err(error.into()),
    }
    if let Some(key) = idempotency {
        insert_idempotency_key(transaction, key)
            .await
            .map_err(|error| unique_violation_as(error, || StoreError::DuplicateRequest))?;
    }
    StoredModel::try_from(row).map(Some)
}
