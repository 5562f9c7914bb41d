//! [`Store::commit`]: everything a decision changes, in one transaction.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use coachflow_engine::{Effect, EngagementState, Event, EventKind};
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict};
use sea_orm::{
    ActiveValue, ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait, IntoActiveModel, QueryFilter,
    QueryTrait,
};

use crate::connect::finish;
use crate::convert::{count_to_i32, to_i32, to_i64};
use crate::entity::{engagement, engagement_person, engagement_task, event, outbox, snapshot, timer};
use crate::error::unique_violation_as;
use crate::idempotency::{NewIdempotencyKey, insert_idempotency_key};
use crate::outbox::NewOutboxEvent;
use crate::sealing::SealingKey;
use crate::{Backend, Store, StoreError};

/// What one decision changes in an engagement.
#[derive(Debug, Clone)]
pub struct Commit<'a> {
    pub tenant: &'a str,
    pub engagement: &'a str,
    /// The sequence the decision was made on (`LoadedEngagement::state.sequence`); 0
    /// creates the engagement ([`StoreError::AlreadyExists`] if the id is taken).
    pub expected_sequence: u64,
    /// The decision's events, numbered `expected_sequence + 1` on without gaps.
    pub events: &'a [Event],
    /// The decision's timer effects.
    pub effects: &'a [Effect],
    /// The state after the events; `state.sequence` is the last event's.
    pub state: &'a EngagementState,
    /// The public events to publish, already mapped to CloudEvents.
    pub outbox: &'a [NewOutboxEvent],
    /// The response to store under the request id, with the change.
    pub idempotency: Option<NewIdempotencyKey>,
    pub now: DateTime<Utc>,
}

/// Rows per multi-row INSERT: well under the bind-parameter limits of both backends
/// (SQLite 32766, PostgreSQL 65535) for the widest table.
const ROWS_PER_INSERT: usize = 1000;

impl Store {
    /// Writes a decision in ONE transaction, in this order: the guard on the projection row
    /// (the engagement's sequence must still be `expected_sequence`, else
    /// [`StoreError::Conflict`]; on PostgreSQL a concurrent commit waits on the row lock and
    /// then fails cleanly), the events, the people and open tasks when the events change
    /// them, a snapshot when `snapshot_every` events accumulated, the timer effects, the
    /// idempotency key ([`StoreError::DuplicateRequest`] if the request id was used) and the
    /// outbox rows (last, so their positions are taken just before the commit: a reader
    /// following positions waits at a hole only briefly). Nothing serializes commits of
    /// different engagements, so the database can flush them together. Any error rolls
    /// everything back. A commit to an engagement that does not exist (with `expected_sequence > 0`)
    /// is a conflict too.
    #[tracing::instrument(
        level = "debug",
        skip_all,
        fields(
            tenant = %commit.tenant,
            engagement_id = %commit.engagement,
            expected_sequence = commit.expected_sequence,
            events = commit.events.len(),
        )
    )]
    pub async fn commit(&self, commit: Commit<'_>) -> Result<(), StoreError> {
        let erasing = crate::sealing::erases_content(commit.events);
        let key = self
            .sealing_key(
                commit.tenant,
                commit.engagement,
                commit.state.content_generation,
                commit.expected_sequence == 0 || erasing,
                commit.now,
            )
            .await?;
        let rows = Rows::prepare(&commit, key, erasing)?;
        let snapshot_every = self.options.snapshot_every;
        let committed = self.write_rows(rows, &commit, snapshot_every).await;
        if committed.is_ok() && erasing {
            self.vault.forget(commit.tenant, commit.engagement);
            self.after_erasure().await;
        }
        committed
    }

    /// After an erasure on SQLite, the WAL is checkpointed and truncated, so the pages that
    /// held the destroyed keys are gone from it too (the main file zeroes freed pages).
    async fn after_erasure(&self) {
        if self.backend == Backend::Sqlite
            && let Err(error) = self.db.execute_unprepared("PRAGMA wal_checkpoint(TRUNCATE)").await
        {
            tracing::warn!(error = %error, "cannot checkpoint the WAL after an erasure");
        }
    }

    async fn write_rows(&self, rows: Rows, commit: &Commit<'_>, snapshot_every: u64) -> Result<(), StoreError> {
        match self.backend {
            // One writer at a time: the commits waiting for it share its next transaction.
            Backend::Sqlite => {
                self.group
                    .commit(self, async |transaction| {
                        rows.write(transaction, commit, snapshot_every).await
                    })
                    .await
            }
            // Concurrent transactions, whose WAL flushes PostgreSQL already groups.
            Backend::Postgres => {
                let (transaction, _turn) = self.begin_write().await?;
                let outcome = rows.write(&transaction, commit, snapshot_every).await;
                let committed = finish(transaction, outcome).await;
                if committed.is_ok() {
                    metrics::counter!(crate::metrics::COMMIT_TRANSACTIONS).increment(1);
                }
                committed
            }
        }
    }
}

/// Everything serialized and checked before the transaction starts, so it stays short.
struct Rows {
    projection: engagement::Model,
    events: Vec<event::Model>,
    people: Option<Vec<engagement_person::Model>>,
    open_tasks: Option<Vec<engagement_task::Model>>,
    outbox: Vec<outbox::ActiveModel>,
    scheduled_timers: Vec<timer::Model>,
    cancelled_timers: Vec<String>,
    key: SealingKey,
    /// The commit erases the content: older data keys are destroyed, the outbox's copies of
    /// outputs dropped, and a snapshot sealed under the new key written.
    erasing: bool,
    /// People the commit erases: (person, pseudonym).
    erased_people: Vec<(String, String)>,
}

impl Rows {
    fn prepare(commit: &Commit<'_>, key: SealingKey, erasing: bool) -> Result<Rows, StoreError> {
        let new_sequence = check_sequences(commit)?;
        let (tenant, engagement_id) = (commit.tenant, commit.engagement);
        let state = commit.state;
        let (scheduled_timers, cancelled_timers) = timer_changes(tenant, engagement_id, commit.effects);
        Ok(Rows {
            projection: projection(commit, new_sequence)?,
            events: event_rows(commit, &key)?,
            people: commit
                .events
                .iter()
                .any(|event| changes_people(&event.kind))
                .then(|| people_rows(tenant, engagement_id, state)),
            open_tasks: commit
                .events
                .iter()
                .any(|event| changes_open_tasks(&event.kind))
                .then(|| open_task_rows(tenant, engagement_id, state)),
            outbox: outbox_rows(commit)?,
            scheduled_timers,
            cancelled_timers,
            key,
            erasing,
            erased_people: commit
                .events
                .iter()
                .filter_map(|event| match &event.kind {
                    EventKind::PersonErased { person, pseudonym } => Some((person.clone(), pseudonym.clone())),
                    _ => None,
                })
                .collect(),
        })
    }

    async fn write(
        self,
        transaction: &DatabaseTransaction,
        commit: &Commit<'_>,
        snapshot_every: u64,
    ) -> Result<(), StoreError> {
        let creating = commit.expected_sequence == 0;
        let new_sequence = self.projection.sequence;
        let snapshot_due = if creating {
            self.insert_projection(transaction, snapshot_every).await?
        } else {
            self.update_projection(transaction, commit.expected_sequence, snapshot_every)
                .await?
        } || self.erasing;
        let (tenant, engagement_id) = (commit.tenant, commit.engagement);

        if let Some(row) = &self.key.new_row {
            crate::sealing::insert_key(transaction, row).await?;
        }
        if self.erasing {
            crate::sealing::destroy_keys_before(transaction, tenant, engagement_id, self.key.generation, commit.now)
                .await?;
        }
        if self.erasing || !self.erased_people.is_empty() {
            rewrite_outbox(transaction, tenant, engagement_id, self.erasing, &self.erased_people).await?;
        }

        for chunk in self.events.chunks(ROWS_PER_INSERT) {
            event::Entity::insert_many(chunk.iter().cloned().map(IntoActiveModel::into_active_model))
                .exec_without_returning(transaction)
                .await
                .map_err(|error| unique_violation_as(error, || StoreError::Conflict))?;
        }

        if let Some(people) = self.people {
            if !creating {
                engagement_person::Entity::delete_many()
                    .filter(engagement_person::Column::Tenant.eq(tenant))
                    .filter(engagement_person::Column::Engagement.eq(engagement_id))
                    .exec(transaction)
                    .await?;
            }
            for chunk in people.chunks(ROWS_PER_INSERT) {
                engagement_person::Entity::insert_many(chunk.iter().cloned().map(IntoActiveModel::into_active_model))
                    .exec_without_returning(transaction)
                    .await?;
            }
        }

        if let Some(open_tasks) = self.open_tasks {
            if !creating {
                engagement_task::Entity::delete_many()
                    .filter(engagement_task::Column::Tenant.eq(tenant))
                    .filter(engagement_task::Column::Engagement.eq(engagement_id))
                    .exec(transaction)
                    .await?;
            }
            for chunk in open_tasks.chunks(ROWS_PER_INSERT) {
                engagement_task::Entity::insert_many(chunk.iter().cloned().map(IntoActiveModel::into_active_model))
                    .exec_without_returning(transaction)
                    .await?;
            }
        }

        if snapshot_due {
            // Encoded only when due: the state is the largest thing a commit writes.
            let state = serde_json::to_string(commit.state)
                .map_err(|error| invalid(commit, format!("cannot encode the state: {error}")))?;
            let state = crate::sealing::seal_snapshot(tenant, engagement_id, new_sequence, &state, &self.key)?;
            let row = snapshot::Model {
                tenant: tenant.to_owned(),
                engagement: engagement_id.to_owned(),
                sequence: new_sequence,
                state,
                created_at: commit.now,
            };
            snapshot::Entity::insert(row.into_active_model())
                .on_conflict(
                    OnConflict::columns([snapshot::Column::Tenant, snapshot::Column::Engagement])
                        .update_columns([
                            snapshot::Column::Sequence,
                            snapshot::Column::State,
                            snapshot::Column::CreatedAt,
                        ])
                        .to_owned(),
                )
                .exec_without_returning(transaction)
                .await?;
        }

        for chunk in self.scheduled_timers.chunks(ROWS_PER_INSERT) {
            timer::Entity::insert_many(chunk.iter().cloned().map(IntoActiveModel::into_active_model))
                .on_conflict(
                    OnConflict::columns([timer::Column::Tenant, timer::Column::Engagement, timer::Column::TimerId])
                        .update_columns([
                            timer::Column::FiresAt,
                            timer::Column::ClaimedBy,
                            timer::Column::ClaimedUntil,
                        ])
                        .to_owned(),
                )
                .exec_without_returning(transaction)
                .await?;
        }
        for chunk in self.cancelled_timers.chunks(ROWS_PER_INSERT) {
            timer::Entity::delete_many()
                .filter(timer::Column::Tenant.eq(tenant))
                .filter(timer::Column::Engagement.eq(engagement_id))
                .filter(timer::Column::TimerId.is_in(chunk.iter().cloned()))
                .exec(transaction)
                .await?;
        }

        if let Some(key) = &commit.idempotency {
            insert_idempotency_key(transaction, key)
                .await
                .map_err(|error| unique_violation_as(error, || StoreError::DuplicateRequest))?;
        }

        for chunk in self.outbox.chunks(ROWS_PER_INSERT) {
            outbox::Entity::insert_many(chunk.iter().cloned())
                .exec_without_returning(transaction)
                .await?;
        }
        Ok(())
    }

    /// Creates the projection row; returns whether a snapshot is due.
    async fn insert_projection(
        &self,
        transaction: &DatabaseTransaction,
        snapshot_every: u64,
    ) -> Result<bool, StoreError> {
        let mut row = self.projection.clone();
        let snapshot_due = u64::try_from(row.sequence).is_ok_and(|sequence| sequence >= snapshot_every);
        if snapshot_due {
            row.snapshot_sequence = row.sequence;
        }
        engagement::Entity::insert(row.into_active_model())
            .exec_without_returning(transaction)
            .await
            .map_err(|error| {
                unique_violation_as(error, || {
                    StoreError::AlreadyExists(format!("engagement {}/{}", self.projection.tenant, self.projection.id))
                })
            })?;
        Ok(snapshot_due)
    }

    /// The guard: updates the projection row only if it is still at `expected_sequence`,
    /// moving `snapshot_sequence` up when a snapshot is due; returns whether one is.
    async fn update_projection(
        &self,
        transaction: &DatabaseTransaction,
        expected_sequence: u64,
        snapshot_every: u64,
    ) -> Result<bool, StoreError> {
        let row = &self.projection;
        let new_sequence = row.sequence;
        let snapshot_every = to_i64(snapshot_every, "snapshot_every")?;
        let mut update = engagement::Entity::update_many()
            .col_expr(engagement::Column::ModelKey, Expr::value(row.model_key.clone()))
            .col_expr(engagement::Column::ModelVersion, Expr::value(row.model_version))
            .col_expr(engagement::Column::Status, Expr::value(row.status.clone()))
            .col_expr(engagement::Column::Phase, Expr::value(row.phase.clone()))
            .col_expr(engagement::Column::PhaseIteration, Expr::value(row.phase_iteration))
            .col_expr(engagement::Column::Sequence, Expr::value(new_sequence))
            .col_expr(
                engagement::Column::SnapshotSequence,
                Expr::case(
                    Expr::value(new_sequence)
                        .sub(Expr::col(engagement::Column::SnapshotSequence))
                        .gte(snapshot_every),
                    Expr::value(new_sequence),
                )
                .finally(Expr::col(engagement::Column::SnapshotSequence))
                .into(),
            )
            .col_expr(engagement::Column::OpenTasks, Expr::value(row.open_tasks))
            .col_expr(engagement::Column::OverdueTasks, Expr::value(row.overdue_tasks))
            .col_expr(engagement::Column::NextDueAt, Expr::value(row.next_due_at))
            .col_expr(engagement::Column::UpdatedAt, Expr::value(row.updated_at))
            .col_expr(engagement::Column::EndedAt, Expr::value(row.ended_at))
            .col_expr(engagement::Column::ContentErasedAt, Expr::value(row.content_erased_at))
            .filter(engagement::Column::Tenant.eq(&row.tenant))
            .filter(engagement::Column::Id.eq(&row.id))
            .filter(engagement::Column::Sequence.eq(to_i64(expected_sequence, "expected sequence")?))
            .into_query();
        update.returning_col(engagement::Column::SnapshotSequence);
        let Some(updated) = transaction.query_one(&update).await? else {
            return Err(StoreError::Conflict);
        };
        let snapshot_sequence: i64 = updated.try_get_by_index(0)?;
        // With no events the sequence did not move: a snapshot at it exists already.
        Ok(snapshot_sequence == new_sequence && new_sequence > to_i64(expected_sequence, "expected sequence")?)
    }
}

fn invalid(commit: &Commit<'_>, problem: impl std::fmt::Display) -> StoreError {
    StoreError::Invalid(format!(
        "commit to engagement {}/{}: {problem}",
        commit.tenant, commit.engagement
    ))
}

/// Checks that the events continue the log without gaps up to the state; returns the new
/// sequence.
fn check_sequences(commit: &Commit<'_>) -> Result<u64, StoreError> {
    if commit.expected_sequence == 0 && commit.events.is_empty() {
        return Err(invalid(commit, "creating an engagement takes at least one event"));
    }
    for (offset, event) in (0u64..).zip(commit.events) {
        let expected = commit.expected_sequence + 1 + offset;
        if event.sequence != expected {
            return Err(invalid(
                commit,
                format!(
                    "event {offset} has sequence {} where {expected} was expected",
                    event.sequence
                ),
            ));
        }
    }
    let new_sequence = commit.expected_sequence + commit.events.len() as u64;
    if commit.state.sequence != new_sequence {
        return Err(invalid(
            commit,
            format!(
                "the state is at sequence {} but the events end at {new_sequence}",
                commit.state.sequence
            ),
        ));
    }
    Ok(new_sequence)
}

/// The projection row from the state after the events (`snapshot_sequence` is set by the
/// write).
fn projection(commit: &Commit<'_>, new_sequence: u64) -> Result<engagement::Model, StoreError> {
    let state = commit.state;
    let open: Vec<_> = state.open_tasks().collect();
    Ok(engagement::Model {
        tenant: commit.tenant.to_owned(),
        id: commit.engagement.to_owned(),
        model_key: state.model_key.clone(),
        model_version: to_i32(state.model_version, "model version")?,
        status: state.status.as_str().to_owned(),
        phase: state.phase.as_ref().map(|phase| phase.key.clone()),
        phase_iteration: state
            .phase
            .as_ref()
            .map(|phase| to_i32(phase.iteration, "phase iteration"))
            .transpose()?,
        sequence: to_i64(new_sequence, "sequence")?,
        snapshot_sequence: 0,
        open_tasks: count_to_i32(open.len()),
        overdue_tasks: count_to_i32(open.iter().filter(|task| task.overdue).count()),
        next_due_at: open.iter().filter_map(|task| task.due_at).min(),
        created_at: state.started_at.unwrap_or(commit.now),
        updated_at: commit.now,
        ended_at: state.ended_at,
        content_erased_at: state.content_erased.map(|erasure| erasure.at),
    })
}

fn event_rows(commit: &Commit<'_>, key: &SealingKey) -> Result<Vec<event::Model>, StoreError> {
    commit
        .events
        .iter()
        .map(|event| {
            Ok(event::Model {
                tenant: commit.tenant.to_owned(),
                engagement: commit.engagement.to_owned(),
                sequence: to_i64(event.sequence, "sequence")?,
                event_type: event.kind.type_name().to_owned(),
                at: event.at,
                payload: crate::sealing::seal_event(commit.tenant, commit.engagement, event, key)?,
            })
        })
        .collect()
}

fn people_rows(tenant: &str, engagement_id: &str, state: &EngagementState) -> Vec<engagement_person::Model> {
    let bound: BTreeSet<(&String, &String)> = state
        .people
        .iter()
        .flat_map(|(role, people)| people.iter().map(move |person| (role, person)))
        .collect();
    bound
        .into_iter()
        .map(|(role, person)| engagement_person::Model {
            tenant: tenant.to_owned(),
            engagement: engagement_id.to_owned(),
            role: role.clone(),
            person: person.clone(),
        })
        .collect()
}

fn open_task_rows(tenant: &str, engagement_id: &str, state: &EngagementState) -> Vec<engagement_task::Model> {
    state
        .open_tasks()
        .map(|task| engagement_task::Model {
            tenant: tenant.to_owned(),
            engagement: engagement_id.to_owned(),
            task_id: state.shown_task_id(&task.id),
            task_key: task.task.clone(),
            phase: task.phase.clone(),
            assignee: task.assignee.clone(),
            due_at: task.due_at,
            due_soon: task.due_soon,
            overdue: task.overdue,
            opened_at: task.opened_at.unwrap_or(task.created_at),
        })
        .collect()
}

fn outbox_rows(commit: &Commit<'_>) -> Result<Vec<outbox::ActiveModel>, StoreError> {
    commit
        .outbox
        .iter()
        .map(|row| {
            Ok(outbox::ActiveModel {
                // Assigned by the database.
                position: ActiveValue::NotSet,
                tenant: ActiveValue::Set(commit.tenant.to_owned()),
                engagement: ActiveValue::Set(commit.engagement.to_owned()),
                sequence: ActiveValue::Set(to_i64(row.sequence, "sequence")?),
                event_id: ActiveValue::Set(row.event_id.clone()),
                event_type: ActiveValue::Set(row.event_type.clone()),
                routing_key: ActiveValue::Set(row.routing_key.clone()),
                subject: ActiveValue::Set(row.subject.clone()),
                time: ActiveValue::Set(row.time),
                data: ActiveValue::Set(row.data.clone()),
                created_at: ActiveValue::Set(commit.now),
                sent_at: ActiveValue::Set(None),
                traceparent: ActiveValue::Set(row.traceparent.clone()),
            })
        })
        .collect()
}

/// The timers to upsert (unclaimed) and the ids to delete; the last effect on a timer
/// wins.
fn timer_changes(tenant: &str, engagement_id: &str, effects: &[Effect]) -> (Vec<timer::Model>, Vec<String>) {
    let mut timers: BTreeMap<&str, Option<DateTime<Utc>>> = BTreeMap::new();
    for effect in effects {
        match effect {
            Effect::ScheduleTimer { id, at } => timers.insert(id, Some(*at)),
            Effect::CancelTimer { id } => timers.insert(id, None),
        };
    }
    let mut scheduled = Vec::new();
    let mut cancelled = Vec::new();
    for (id, fires_at) in timers {
        match fires_at {
            Some(fires_at) => scheduled.push(timer::Model {
                tenant: tenant.to_owned(),
                engagement: engagement_id.to_owned(),
                timer_id: id.to_owned(),
                fires_at,
                claimed_by: None,
                claimed_until: None,
            }),
            None => cancelled.push(id.to_owned()),
        }
    }
    (scheduled, cancelled)
}

/// Whether an event can change who is bound to the engagement.
fn changes_people(kind: &EventKind) -> bool {
    matches!(
        kind,
        EventKind::EngagementStarted { .. } | EventKind::ParticipantAdded { .. } | EventKind::PersonErased { .. }
    )
}

/// Rewrites the engagement's outbox rows already written (sent or not): without the
/// outputs a completed task published when its content is erased, and with erased people's
/// pseudonyms. (Rows of this commit come later and are not touched.)
async fn rewrite_outbox(
    transaction: &DatabaseTransaction,
    tenant: &str,
    engagement_id: &str,
    erasing: bool,
    erased_people: &[(String, String)],
) -> Result<(), StoreError> {
    let rows = outbox::Entity::find()
        .filter(outbox::Column::Tenant.eq(tenant))
        .filter(outbox::Column::Engagement.eq(engagement_id))
        .all(transaction)
        .await?;
    for row in rows {
        let Ok(mut data) = serde_json::from_str::<serde_json::Value>(&row.data) else {
            continue;
        };
        let mut changed = erasing && crate::sealing::erase_outbox_outputs(&mut data);
        for (person, pseudonym) in erased_people {
            changed |= crate::sealing::replace_person(&mut data, person, pseudonym);
        }
        if changed {
            outbox::Entity::update_many()
                .col_expr(outbox::Column::Data, Expr::value(data.to_string()))
                .filter(outbox::Column::Position.eq(row.position))
                .exec(transaction)
                .await?;
        }
    }
    Ok(())
}

/// Whether an event can change which tasks are open or what the open-task rows hold.
fn changes_open_tasks(kind: &EventKind) -> bool {
    matches!(
        kind,
        EventKind::TaskOpened { .. }
            | EventKind::TaskAssigned { .. }
            | EventKind::TaskCompleted { .. }
            | EventKind::TaskSkipped { .. }
            | EventKind::TaskCancelled { .. }
            | EventKind::TaskDueSoon { .. }
            | EventKind::TaskOverdue { .. }
            | EventKind::PersonErased { .. }
    )
}
