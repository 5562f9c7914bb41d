//! Loading engagements (latest snapshot + later events) and listing the projection.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use coachflow_engine::EngagementState;
use sea_orm::sea_query::{Expr, Func, Query};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Statement, Value};

use crate::commit::ROWS_PER_INSERT;
use crate::convert::{to_i32, to_u32, to_u64};
use crate::entity::{engagement, engagement_person};
use crate::keys;
use crate::sealing::StoredEvent;
use crate::{Store, StoreError};

/// An engagement as the engine sees it, ready for `decide`.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedEngagement {
    pub tenant: String,
    pub id: String,
    /// `state.sequence` is the `expected_sequence` of the next commit.
    pub state: EngagementState,
    pub created_at: DateTime<Utc>,
}

/// An engagement's projection row as a load starts from it.
struct Head {
    tenant: String,
    id: String,
    created_at: DateTime<Utc>,
    snapshot_sequence: Option<i64>,
    snapshot_state: Option<String>,
}

/// Which engagements to list; every field that is set must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EngagementFilter {
    pub model_key: Option<String>,
    /// With `model_key`: only engagements on this version of it.
    pub model_version: Option<u32>,
    /// `active`, `suspended`, `completed` or `cancelled`.
    pub status: Option<String>,
    /// The current phase's key.
    pub phase: Option<String>,
    /// Bound to any role.
    pub person: Option<String>,
    /// Only engagements with an open overdue task.
    pub overdue_only: bool,
}

/// One row of the projection, with the people bound to the engagement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngagementSummary {
    pub tenant: String,
    pub id: String,
    pub model_key: String,
    pub model_version: u32,
    pub status: String,
    pub phase: Option<String>,
    pub phase_iteration: Option<u32>,
    /// The last event's sequence number (the etag).
    pub sequence: u64,
    pub open_tasks: u32,
    pub overdue_tasks: u32,
    /// Earliest due time of an open task.
    pub next_due_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// (role, person), ordered by role, then person.
    pub people: Vec<(String, String)>,
}

impl EngagementSummary {
    fn from_row(row: engagement::Model, people: Vec<(String, String)>) -> Result<EngagementSummary, StoreError> {
        Ok(EngagementSummary {
            model_version: to_u32(row.model_version, "model version")?,
            phase_iteration: row
                .phase_iteration
                .map(|iteration| to_u32(iteration, "phase iteration"))
                .transpose()?,
            sequence: to_u64(row.sequence, "sequence")?,
            open_tasks: to_u32(row.open_tasks, "open tasks")?,
            overdue_tasks: to_u32(row.overdue_tasks, "overdue tasks")?,
            tenant: row.tenant,
            id: row.id,
            model_key: row.model_key,
            status: row.status,
            phase: row.phase,
            next_due_at: row.next_due_at,
            created_at: row.created_at,
            updated_at: row.updated_at,
            people,
        })
    }
}

impl Store {
    /// The engagement's last sequence (its etag), `None` if it does not exist: one indexed
    /// read, for checking a state kept in memory.
    pub async fn engagement_sequence(&self, tenant: &str, id: &str) -> Result<Option<u64>, StoreError> {
        let sequence: Option<i64> = engagement::Entity::find()
            .select_only()
            .column(engagement::Column::Sequence)
            .filter(engagement::Column::Tenant.eq(tenant))
            .filter(engagement::Column::Id.eq(id))
            .into_tuple()
            .one(&self.db)
            .await?;
        sequence.map(|sequence| to_u64(sequence, "sequence")).transpose()
    }

    /// The engagement's state: the latest snapshot plus the events after it, replayed with
    /// `coachflow_engine::apply`. `None` if it does not exist.
    #[tracing::instrument(level = "debug", skip(self))]
    pub async fn load_engagement(&self, tenant: &str, id: &str) -> Result<Option<LoadedEngagement>, StoreError> {
        self.load_engagement_until(tenant, id, None).await
    }

    /// The engagement's state as it was at `sequence` (after its event `sequence`):
    /// replayed from the start, or from the snapshot when that is not later. `None` if the
    /// engagement does not exist or has no such event.
    pub async fn load_engagement_at(
        &self,
        tenant: &str,
        id: &str,
        sequence: u64,
    ) -> Result<Option<LoadedEngagement>, StoreError> {
        let loaded = self.load_engagement_until(tenant, id, Some(sequence)).await?;
        Ok(loaded.filter(|loaded| loaded.state.sequence == sequence))
    }

    /// The states of `engagements` ([`Store::load_engagement`] of each), read together: one
    /// query for their snapshots, one for their data keys and one for the events after the
    /// snapshots (per [`ROWS_PER_INSERT`] engagements), where loading them one by one takes
    /// three to five each. Engagements that do not exist are left out; the order is not
    /// `engagements`'.
    #[tracing::instrument(level = "debug", skip_all, fields(engagements = engagements.len()))]
    pub async fn load_engagements(
        &self,
        engagements: &[(String, String)],
    ) -> Result<Vec<LoadedEngagement>, StoreError> {
        self.load_engagements_until(engagements, None).await
    }

    async fn load_engagement_until(
        &self,
        tenant: &str,
        id: &str,
        until: Option<u64>,
    ) -> Result<Option<LoadedEngagement>, StoreError> {
        let mut loaded = self
            .load_engagements_until(&[(tenant.to_owned(), id.to_owned())], until)
            .await?;
        Ok(loaded.pop())
    }

    async fn load_engagements_until(
        &self,
        engagements: &[(String, String)],
        until: Option<u64>,
    ) -> Result<Vec<LoadedEngagement>, StoreError> {
        let mut loaded = Vec::with_capacity(engagements.len());
        for chunk in engagements.chunks(ROWS_PER_INSERT) {
            let heads = self.heads(chunk).await?;
            let names: Vec<(String, String)> = heads
                .iter()
                .map(|head| (head.tenant.clone(), head.id.clone()))
                .collect();
            let live = self.prefetch_keys(&names).await?;
            let mut starts = Vec::with_capacity(heads.len());
            for mut head in heads {
                let live = live.get(&(head.tenant.clone(), head.id.clone())).copied().flatten();
                let state = self.snapshot_state(&mut head, until, live).await?;
                starts.push((head, live, state));
            }
            let rows = self.events_after(&starts, until).await?;
            for ((head, live, mut state), rows) in starts.into_iter().zip(rows) {
                let Head {
                    tenant, id, created_at, ..
                } = head;
                for (event, _) in self.open_events(&tenant, &id, &rows, live).await? {
                    if event.sequence != state.sequence + 1 {
                        return Err(StoreError::Corrupt(format!(
                            "engagement {tenant}/{id}: event {} follows {} (a gap in the log)",
                            event.sequence, state.sequence
                        )));
                    }
                    state.apply(&event);
                }
                loaded.push(LoadedEngagement {
                    tenant,
                    id,
                    state,
                    created_at,
                });
            }
        }
        Ok(loaded)
    }

    /// The projection's creation time and the latest snapshot of each engagement that exists.
    async fn heads(&self, engagements: &[(String, String)]) -> Result<Vec<Head>, StoreError> {
        if engagements.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT e.tenant, e.id, e.created_at, s.sequence AS snapshot_sequence, s.state AS snapshot_state \
             FROM engagements e \
             LEFT JOIN snapshots s ON s.tenant = e.tenant AND s.engagement = e.id \
             WHERE (e.tenant, e.id) IN (VALUES {})",
            keys::placeholders(2, engagements.len(), 1)
        );
        let values: Vec<Value> = engagements
            .iter()
            .flat_map(|(tenant, id)| [tenant.clone().into(), id.clone().into()])
            .collect();
        let rows = self
            .db
            .query_all_raw(Statement::from_sql_and_values(self.db_backend(), sql, values))
            .await?;
        rows.iter()
            .map(|row| {
                Ok(Head {
                    tenant: row.try_get("", "tenant")?,
                    id: row.try_get("", "id")?,
                    created_at: row.try_get("", "created_at")?,
                    snapshot_sequence: row.try_get("", "snapshot_sequence")?,
                    snapshot_state: row.try_get("", "snapshot_state")?,
                })
            })
            .collect::<Result<Vec<_>, sea_orm::DbErr>>()
            .map_err(StoreError::from)
    }

    /// The state the engagement's snapshot holds (its text is taken from `head`), or the
    /// empty state when it has no snapshot usable up to `until` (a snapshot sealed under a
    /// destroyed key is not usable: the log replays from the start).
    async fn snapshot_state(
        &self,
        head: &mut Head,
        until: Option<u64>,
        live: Option<u32>,
    ) -> Result<EngagementState, StoreError> {
        let text = head.snapshot_state.take();
        let Head { tenant, id, .. } = &*head;
        let usable = |sequence: i64| until.is_none_or(|until| u64::try_from(sequence).is_ok_and(|at| at <= until));
        let (Some(sequence), Some(text)) = (head.snapshot_sequence, text) else {
            return Ok(EngagementState::default());
        };
        if !usable(sequence) {
            return Ok(EngagementState::default());
        }
        let Some(json) = self.open_snapshot(tenant, id, sequence, text, live).await? else {
            return Ok(EngagementState::default());
        };
        let state: EngagementState = serde_json::from_str(&json).map_err(|error| {
            StoreError::Corrupt(format!("snapshot {sequence} of engagement {tenant}/{id}: {error}"))
        })?;
        if i64::try_from(state.sequence).ok() != Some(sequence) {
            return Err(StoreError::Corrupt(format!(
                "snapshot {sequence} of engagement {tenant}/{id} holds the state at {}",
                state.sequence
            )));
        }
        Ok(state)
    }

    /// The events of each engagement after the sequence its start state is at (up to
    /// `until`), by sequence, in the order of `starts`: one query, joined on a list of
    /// (engagement, after, position). A row carries its engagement's position, not its
    /// names: a load reads only the sequence and the payload of each event.
    async fn events_after(
        &self,
        starts: &[(Head, Option<u32>, EngagementState)],
        until: Option<u64>,
    ) -> Result<Vec<Vec<StoredEvent>>, StoreError> {
        let mut rows: Vec<Vec<StoredEvent>> = starts.iter().map(|_| Vec::new()).collect();
        if starts.is_empty() {
            return Ok(rows);
        }
        let mut values: Vec<Value> = Vec::with_capacity(starts.len() * 4 + 1);
        for (position, (head, _, state)) in starts.iter().enumerate() {
            values.extend([
                head.tenant.clone().into(),
                head.id.clone().into(),
                i64::try_from(state.sequence).unwrap_or(i64::MAX).into(),
                i64::try_from(position).unwrap_or(i64::MAX).into(),
            ]);
        }
        let until = match until {
            Some(until) => {
                values.push(i64::try_from(until).unwrap_or(i64::MAX).into());
                format!(" AND ev.sequence <= ${}", values.len())
            }
            None => String::new(),
        };
        // Unnamed VALUES columns are column1, column2, … on both backends.
        let sql = format!(
            "SELECT v.column4, ev.sequence, ev.payload FROM events ev \
             JOIN (VALUES {}) AS v ON ev.tenant = v.column1 AND ev.engagement = v.column2 AND ev.sequence > v.column3\
             {until} ORDER BY v.column4, ev.sequence",
            keys::placeholders(4, starts.len(), 1)
        );
        let found = self
            .db
            .query_all_raw(Statement::from_sql_and_values(self.db_backend(), sql, values))
            .await?;
        for row in found {
            let position: i64 = row.try_get_by_index(0)?;
            let events = usize::try_from(position)
                .ok()
                .and_then(|position| rows.get_mut(position))
                .ok_or_else(|| StoreError::Corrupt(format!("a load's events came back for position {position}")))?;
            events.push(StoredEvent {
                sequence: row.try_get_by_index(1)?,
                payload: row.try_get_by_index(2)?,
            });
        }
        Ok(rows)
    }

    /// The tenant's engagements matching `filter`, ordered by id, after `after_id`.
    pub async fn list_engagements(
        &self,
        tenant: &str,
        filter: &EngagementFilter,
        after_id: Option<&str>,
        limit: u64,
    ) -> Result<Vec<EngagementSummary>, StoreError> {
        let mut query = engagement::Entity::find().filter(engagement::Column::Tenant.eq(tenant));
        if let Some(model_key) = &filter.model_key {
            query = query.filter(engagement::Column::ModelKey.eq(model_key));
        }
        if let Some(version) = filter.model_version {
            query = query.filter(engagement::Column::ModelVersion.eq(to_i32(version, "model version")?));
        }
        if let Some(status) = &filter.status {
            query = query.filter(engagement::Column::Status.eq(status));
        }
        if let Some(phase) = &filter.phase {
            query = query.filter(engagement::Column::Phase.eq(phase));
        }
        if let Some(person) = &filter.person {
            query = query.filter(
                engagement::Column::Id.in_subquery(
                    Query::select()
                        .column(engagement_person::Column::Engagement)
                        .from(engagement_person::Entity)
                        .and_where(engagement_person::Column::Tenant.eq(tenant))
                        .and_where(engagement_person::Column::Person.eq(person))
                        .to_owned(),
                ),
            );
        }
        if filter.overdue_only {
            query = query.filter(engagement::Column::OverdueTasks.gt(0));
        }
        if let Some(after_id) = after_id {
            query = query.filter(engagement::Column::Id.gt(after_id));
        }
        let rows = query
            .order_by_asc(engagement::Column::Id)
            .limit(crate::convert::limit(limit))
            .all(&self.db)
            .await?;
        let mut people = self.people_of(tenant, rows.iter().map(|row| row.id.clone())).await?;
        rows.into_iter()
            .map(|row| {
                let people = people.remove(&row.id).unwrap_or_default();
                EngagementSummary::from_row(row, people)
            })
            .collect()
    }

    /// Engagements per status, over all tenants, ordered by status.
    pub async fn count_engagements_by_status(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let counts: Vec<(String, i64)> = engagement::Entity::find()
            .select_only()
            .column(engagement::Column::Status)
            .expr(Func::count(Expr::col(engagement::Column::Id)))
            .group_by(engagement::Column::Status)
            .order_by_asc(engagement::Column::Status)
            .into_tuple()
            .all(&self.db)
            .await?;
        counts
            .into_iter()
            .map(|(status, count)| Ok((status, to_u64(count, "count")?)))
            .collect()
    }

    /// (role, person) of each engagement, in one query.
    async fn people_of(
        &self,
        tenant: &str,
        engagements: impl Iterator<Item = String>,
    ) -> Result<BTreeMap<String, Vec<(String, String)>>, StoreError> {
        let engagements: Vec<String> = engagements.collect();
        let mut people: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
        if engagements.is_empty() {
            return Ok(people);
        }
        let rows = engagement_person::Entity::find()
            .filter(engagement_person::Column::Tenant.eq(tenant))
            .filter(engagement_person::Column::Engagement.is_in(engagements))
            .order_by_asc(engagement_person::Column::Engagement)
            .order_by_asc(engagement_person::Column::Role)
            .order_by_asc(engagement_person::Column::Person)
            .all(&self.db)
            .await?;
        for row in rows {
            people.entry(row.engagement).or_default().push((row.role, row.person));
        }
        Ok(people)
    }
}
