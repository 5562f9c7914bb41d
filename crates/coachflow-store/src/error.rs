//! What can go wrong in the store.

use sea_orm::{DbErr, SqlErr};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The engagement changed since it was loaded (another commit won the race): load it
    /// again and decide again.
    #[error("the engagement changed since it was loaded")]
    Conflict,
    /// The thing being created exists already, e.g. an engagement id is taken.
    #[error("{0} already exists")]
    AlreadyExists(String),
    /// The idempotency key (tenant, request id) was stored by another request first; read
    /// its stored response with `find_idempotency_key`.
    #[error("a request with this request id was already processed")]
    DuplicateRequest,
    /// Stored data could not be read back.
    #[error("stored data is unreadable: {0}")]
    Corrupt(String),
    /// The caller passed something the store cannot accept (a malformed commit, a number
    /// out of the database's range, an unknown URL scheme).
    #[error("invalid input to the store: {0}")]
    Invalid(String),
    #[error(transparent)]
    Database(#[from] DbErr),
}

/// Whether `error` is a unique-key or primary-key violation, on any backend.
pub(crate) fn is_unique_violation(error: &DbErr) -> bool {
    matches!(error.sql_err(), Some(SqlErr::UniqueConstraintViolation(_)))
}

/// Maps a unique-key violation to `on_violation`, any other error to `Database`.
pub(crate) fn unique_violation_as(error: DbErr, on_violation: impl FnOnce() -> StoreError) -> StoreError {
    if is_unique_violation(&error) {
        on_violation()
    } else {
        StoreError::Database(error)
    }
}
