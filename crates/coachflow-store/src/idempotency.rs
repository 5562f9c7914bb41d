//! Idempotency keys: the stored response of a mutating request, by (tenant, request id).

use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, IntoActiveModel, QueryFilter};

use crate::entity::idempotency_key;
use crate::{Store, StoreError};

/// The response of a request, stored with the change it made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewIdempotencyKey {
    pub tenant: String,
    pub request_id: String,
    /// The gRPC method, so a request id reused for another method is recognised.
    pub method: String,
    /// A hash of the request, so a request id reused with other content is recognised.
    pub request_hash: String,
    /// The encoded protobuf response.
    pub response: Vec<u8>,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredIdempotencyKey {
    pub tenant: String,
    pub request_id: String,
    pub method: String,
    pub request_hash: String,
    pub response: Vec<u8>,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

impl From<idempotency_key::Model> for StoredIdempotencyKey {
    fn from(row: idempotency_key::Model) -> StoredIdempotencyKey {
        StoredIdempotencyKey {
            tenant: row.tenant,
            request_id: row.request_id,
            method: row.method,
            request_hash: row.request_hash,
            response: row.response,
            created_at: row.created_at,
            expires_at: row.expires_at,
        }
    }
}

impl Store {
    /// The stored key, expired or not (expired keys live until
    /// [`Store::delete_expired_idempotency_keys`] removes them).
    pub async fn find_idempotency_key(
        &self,
        tenant: &str,
        request_id: &str,
    ) -> Result<Option<StoredIdempotencyKey>, StoreError> {
        Ok(
            idempotency_key::Entity::find_by_id((tenant.to_owned(), request_id.to_owned()))
                .one(&self.db)
                .await?
                .map(StoredIdempotencyKey::from),
        )
    }

    /// Deletes keys with `expires_at <= now`; returns how many.
    pub async fn delete_expired_idempotency_keys(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        Ok(idempotency_key::Entity::delete_many()
            .filter(idempotency_key::Column::ExpiresAt.lte(now))
            .exec(&self.db)
            .await?
            .rows_affected)
    }
}

/// Inserts the key; a unique violation means the request id was used already.
pub(crate) async fn insert_idempotency_key(
    connection: &impl ConnectionTrait,
    key: &NewIdempotencyKey,
) -> Result<(), DbErr> {
    idempotency_key::Entity::insert(idempotency_row(key).into_active_model())
        .exec_without_returning(connection)
        .await?;
    Ok(())
}

/// The row that stores `key`.
pub(crate) fn idempotency_row(key: &NewIdempotencyKey) -> idempotency_key::Model {
    idempotency_key::Model {
        tenant: key.tenant.clone(),
        request_id: key.request_id.clone(),
        method: key.method.clone(),
        request_hash: key.request_hash.clone(),
        response: key.response.clone(),
        created_at: key.created_at,
        expires_at: key.expires_at,
    }
}
