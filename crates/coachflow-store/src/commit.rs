//! [`Store::commit`]: everything a decision changes, prepared for its batch's transaction.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use coachflow_engine::{Effect, EngagementState, Event, EventKind};
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveValue, ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait, QueryFilter};

use crate::convert::{count_to_i32, to_i32, to_i64};
use crate::entity::{engagement, engagement_person, engagement_task, event, outbox, snapshot, timer};
use crate::idempotency::NewIdempotencyKey;
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
pub(crate) const ROWS_PER_INSERT: usize = 1000;

impl Store {
    /// Writes a decision, all or nothing, in the transaction of a batch of commits (see
    /// `batch`): the idempotency key ([`StoreError::DuplicateRequest`] if the request id
    /// was used), the guard on the projection row (the engagement's sequence must still be
    /// `expected_sequence`, else [`StoreError::Conflict`]; a concurrent commit waits on the
    /// row lock and then fails cleanly; a commit to an engagement that does not exist, with
    /// `expected_sequence > 0`, is a conflict too; creating a taken id is
    /// [`StoreError::AlreadyExists`]), the events, the people and open tasks when the events
    /// change them, a snapshot when due, the timer effects and the outbox rows (last, so
    /// their positions are taken just before the commit: a reader following positions waits
    /// at a hole only briefly). Returns once the transaction holding it is committed.
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
        // A key made for this commit is kept once the commit stored it, so the engagement's
        // next command does not read it back (and unwrap it) from the database.
        let made = key.new_row.is_some().then(|| (key.generation, Arc::clone(&key.key)));
        let rows = Rows::prepare(&commit, key, erasing)?;
        let prepared = batched(rows, &commit, self.options.snapshot_every)?;
        let committed = self.batch.commit(self, prepared).await;
        if committed.is_ok() {
            if erasing {
                self.vault.forget(commit.tenant, commit.engagement);
                self.after_erasure().await;
            }
            if let Some((generation, key)) = made {
                self.vault.remember(
                    (commit.tenant.to_owned(), commit.engagement.to_owned(), generation),
                    Some(key),
                );
            }
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
}

/// A commit as its batch takes it. A snapshot is due when the sequence passes a multiple
/// of `snapshot_every` (the batch does not read each row's last snapshot before it writes),
/// so loading replays fewer than `snapshot_every` events plus one commit's; and with every
/// erasure, sealed under the new key.
fn batched(rows: Rows, commit: &Commit<'_>, snapshot_every: u64) -> Result<crate::batch::Prepared, StoreError> {
    let snapshot_every = snapshot_every.max(1);
    let due = commit.state.sequence / snapshot_every > commit.expected_sequence / snapshot_every;
    let snapshot = (due || rows.erasing)
        .then(|| snapshot_row(commit, &rows.key, rows.projection.sequence))
        .transpose()?;
    Ok(crate::batch::Prepared {
        rows,
        expected_sequence: to_i64(commit.expected_sequence, "expected sequence")?,
        idempotency: commit.idempotency.clone(),
        snapshot,
        now: commit.now,
    })
}

/// The snapshot row of the state after `commit`, sealed.
fn snapshot_row(commit: &Commit<'_>, key: &SealingKey, new_sequence: i64) -> Result<snapshot::Model, StoreError> {
    // Encoded only when due: the state is the largest thing a commit writes.
    let state = serde_json::to_string(commit.state)
        .map_err(|error| invalid(commit, format!("cannot encode the state: {error}")))?;
    let state = crate::sealing::seal_snapshot(commit.tenant, commit.engagement, new_sequence, &state, key)?;
    Ok(snapshot::Model {
        tenant: commit.tenant.to_owned(),
        engagement: commit.engagement.to_owned(),
        sequence: new_sequence,
        state,
        created_at: commit.now,
    })
}

/// Everything serialized and checked before the transaction starts, so it stays short.
#[derive(Debug)]
pub(crate) struct Rows {
    pub(crate) projection: engagement::Model,
    pub(crate) events: Vec<event::Model>,
    pub(crate) people: Option<Vec<engagement_person::Model>>,
    pub(crate) open_tasks: Option<Vec<engagement_task::Model>>,
    pub(crate) outbox: Vec<outbox::ActiveModel>,
    pub(crate) scheduled_timers: Vec<timer::Model>,
    pub(crate) cancelled_timers: Vec<String>,
    pub(crate) key: SealingKey,
    /// The commit erases the content: older data keys are destroyed, the outbox's copies of
    /// outputs dropped, and a snapshot sealed under the new key written.
    pub(crate) erasing: bool,
    /// People the commit erases: (person, pseudonym).
    pub(crate) erased_people: Vec<(String, String)>,
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
pub(crate) async fn rewrite_outbox(
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
