//! Reading an engagement's event log.

use coachflow_engine::Event;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use crate::convert::to_i64;
use crate::entity::event;
use crate::{Store, StoreError};

impl Store {
    /// The engagement's events with sequence > `after_sequence`, oldest first.
    pub async fn history(
        &self,
        tenant: &str,
        engagement: &str,
        after_sequence: u64,
        limit: u64,
    ) -> Result<Vec<Event>, StoreError> {
        let rows = event::Entity::find()
            .filter(event::Column::Tenant.eq(tenant))
            .filter(event::Column::Engagement.eq(engagement))
            .filter(event::Column::Sequence.gt(to_i64(after_sequence, "sequence")?))
            .order_by_asc(event::Column::Sequence)
            .limit(crate::convert::limit(limit))
            .all(&self.db)
            .await?;
        rows.iter().map(|row| decode_event(tenant, engagement, row)).collect()
    }
}

/// The event stored in `row`; its payload must agree with the row's sequence.
pub(crate) fn decode_event(tenant: &str, engagement: &str, row: &event::Model) -> Result<Event, StoreError> {
    let event: Event = serde_json::from_str(&row.payload).map_err(|error| {
        StoreError::Corrupt(format!(
            "event {} of engagement {tenant}/{engagement}: {error}",
            row.sequence
        ))
    })?;
    if i64::try_from(event.sequence).ok() != Some(row.sequence) {
        return Err(StoreError::Corrupt(format!(
            "event {} of engagement {tenant}/{engagement} carries sequence {}",
            row.sequence, event.sequence
        )));
    }
    Ok(event)
}
