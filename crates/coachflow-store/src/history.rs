//! Reading an engagement's event log.

use coachflow_engine::Event;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use crate::convert::to_i64;
use crate::entity::event;
use crate::sealing::StoredEvent;
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
        let events = self.history_marked(tenant, engagement, after_sequence, limit).await?;
        Ok(events.into_iter().map(|(event, _)| event).collect())
    }

    /// [`Store::history`], each event with whether its content was erased.
    pub async fn history_marked(
        &self,
        tenant: &str,
        engagement: &str,
        after_sequence: u64,
        limit: u64,
    ) -> Result<Vec<(Event, bool)>, StoreError> {
        let rows: Vec<StoredEvent> = event::Entity::find()
            .select_only()
            .column(event::Column::Sequence)
            .column(event::Column::Payload)
            .filter(event::Column::Tenant.eq(tenant))
            .filter(event::Column::Engagement.eq(engagement))
            .filter(event::Column::Sequence.gt(to_i64(after_sequence, "sequence")?))
            .order_by_asc(event::Column::Sequence)
            .limit(crate::convert::limit(limit))
            .into_model()
            .all(&self.db)
            .await?;
        let live = if rows.iter().any(crate::sealing::is_sealed) {
            self.live_generation(tenant, engagement).await?
        } else {
            None
        };
        self.open_events(tenant, engagement, &rows, live).await
    }
}
