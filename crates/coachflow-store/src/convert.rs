//! Conversions between the API's unsigned numbers and the database's signed ones.

use crate::StoreError;

/// A number from the caller, for a BIGINT column.
pub(crate) fn to_i64(value: u64, what: &str) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| StoreError::Invalid(format!("{what} {value} is out of range")))
}

/// A number from the caller, for an INTEGER column.
pub(crate) fn to_i32(value: u32, what: &str) -> Result<i32, StoreError> {
    i32::try_from(value).map_err(|_| StoreError::Invalid(format!("{what} {value} is out of range")))
}

/// A count from the state (task counts), for an INTEGER column; saturates.
pub(crate) fn count_to_i32(count: usize) -> i32 {
    i32::try_from(count).unwrap_or(i32::MAX)
}

/// A BIGINT read back; negative means the row is corrupt.
pub(crate) fn to_u64(value: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| StoreError::Corrupt(format!("{what} is negative ({value})")))
}

/// An INTEGER read back; negative means the row is corrupt.
pub(crate) fn to_u32(value: i32, what: &str) -> Result<u32, StoreError> {
    u32::try_from(value).map_err(|_| StoreError::Corrupt(format!("{what} is negative ({value})")))
}

/// A page size as the database takes it (0 gives an empty page).
pub(crate) fn limit(limit: u64) -> u64 {
    limit.min(i64::MAX as u64)
}
