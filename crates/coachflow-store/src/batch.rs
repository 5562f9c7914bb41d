//! Group commit: the commits that are ready share one transaction, written with one
//! multi-row statement per table, so a batch of commands costs about the round trips (and
//! the one fsync) of one. Every commit goes this way, on both backends.
//!
//! - A commit's rows are prepared by its caller (serialized and sealed) and handed to the
//!   open batch; the first to arrive spawns the batch's leader. The leader waits for a
//!   write slot (two on PostgreSQL, so one batch can write while another waits for its WAL
//!   flush; one on SQLite, whose writer is one), then takes the batch (who arrives later
//!   opens the next one) and writes it. A lone commit finds a slot free and waits for
//!   nobody; under load the batches grow while the slots are busy.
//! - In the batch's transaction, in this order: the request ids (one `INSERT … ON CONFLICT
//!   DO NOTHING RETURNING`; a member whose id is taken is refused with
//!   [`StoreError::DuplicateRequest`]), the new projection rows (the same;
//!   [`StoreError::AlreadyExists`]) and the guards (one `UPDATE … FROM (VALUES …)
//!   RETURNING`; a member whose engagement moved on is refused with
//!   [`StoreError::Conflict`]). The request ids of members refused there are deleted again.
//!   Then, for the members left, one statement per table: data keys, events, people and
//!   open tasks (deleted and inserted), snapshots, timers (upserted and deleted), outbox;
//!   an erasure's own steps (destroying older keys, rewriting the outbox) go in between.
//!   On PostgreSQL all of this is one statement ([`crate::batch_statement`]), on SQLite
//!   one script of constant text ([`crate::batch_sqlite`]), unless the batch erases
//!   something.
//! - An engagement is written once per batch, and a request id stored once: a second
//!   commit to it goes on to a batch that starts after this one ended, so its guard sees
//!   what the first one committed (and a repeated request id is found taken).
//! - Every member is answered after the commit, a refusal too: it may stem from another
//!   member's rows (the twin of a request), which its caller reads back. A member is
//!   acknowledged only once the commit that holds it succeeded. If the batch fails as a
//!   whole, nothing of it is kept and its members are written again one at a time, so each
//!   gets its own outcome and no member's error fails another. A caller that goes away
//!   does not stop its batch: the leader runs in a task of its own.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use std::sync::{Arc, Mutex as SyncMutex, PoisonError};
use std::time::Instant;

use sea_orm::sea_query::{InsertStatement, OnConflict, Query};
use sea_orm::{
    ActiveModelTrait, ConnectionTrait, DatabaseTransaction, DbErr, EntityTrait, IdenStatic, IntoActiveModel,
    QueryFilter, QueryTrait, Statement, Value,
};
use tokio::sync::{Semaphore, oneshot};

use crate::commit::{ROWS_PER_INSERT, Rows, rewrite_outbox};
use crate::entity::{
    content_key, engagement, engagement_person, engagement_task, event, idempotency_key, outbox, snapshot, timer,
};
use crate::error::unique_violation_as;
use crate::idempotency::{NewIdempotencyKey, idempotency_row};
use crate::{Backend, Store, StoreError, batch_sqlite, batch_statement, keys, metrics as names};

/// Batch transactions in flight at once on PostgreSQL: one can write while another waits
/// for its WAL flush. (SQLite has one writer.)
const POSTGRES_WRITERS: usize = 2;

/// Most commits in one batch (the rest go on to the next).
const MAX_MEMBERS: usize = 256;

/// A commit's rows as a batch takes them: owned, serialized and sealed.
#[derive(Debug)]
pub(crate) struct Prepared {
    pub(crate) rows: Rows,
    /// 0 creates the engagement.
    pub(crate) expected_sequence: i64,
    pub(crate) idempotency: Option<NewIdempotencyKey>,
    /// The sealed state, when the commit is due to write a snapshot.
    pub(crate) snapshot: Option<snapshot::Model>,
    pub(crate) now: DateTime<Utc>,
}

impl Prepared {
    pub(crate) fn creating(&self) -> bool {
        self.expected_sequence == 0
    }

    pub(crate) fn engagement(&self) -> (&str, &str) {
        (&self.rows.projection.tenant, &self.rows.projection.id)
    }
}

struct Member {
    prepared: Prepared,
    reply: oneshot::Sender<Result<(), StoreError>>,
    queued_at: Instant,
}

/// The open batch of a store's commits (one per [`Store`] and its clones).
pub(crate) struct BatchCommit {
    open: SyncMutex<Open>,
    slots: Arc<Semaphore>,
    /// The slots' number (what holding every slot takes).
    #[cfg(feature = "testing")]
    writers: usize,
}

#[derive(Default)]
struct Open {
    members: Vec<Member>,
    /// A leader is waiting to take `members`.
    leader: bool,
}

impl BatchCommit {
    pub(crate) fn new(backend: Backend) -> BatchCommit {
        let writers = match backend {
            Backend::Postgres => POSTGRES_WRITERS,
            Backend::Sqlite => 1,
        };
        BatchCommit {
            open: SyncMutex::default(),
            slots: Arc::new(Semaphore::new(writers)),
            #[cfg(feature = "testing")]
            writers,
        }
    }
}

impl std::fmt::Debug for BatchCommit {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("BatchCommit")
            .field("free_slots", &self.slots.available_permits())
            .finish_non_exhaustive()
    }
}

impl BatchCommit {
    /// Writes `prepared` in the next batch; returns once that batch's transaction is
    /// committed: the member's own outcome, or the commit's failure.
    pub(crate) async fn commit(&self, store: &Store, prepared: Prepared) -> Result<(), StoreError> {
        let (reply, answer) = oneshot::channel();
        let queued_at = Instant::now();
        self.enqueue(
            store,
            vec![Member {
                prepared,
                reply,
                queued_at,
            }],
        );
        answer
            .await
            .unwrap_or_else(|_| Err(failed("the batch's leader stopped")))
    }

    /// Adds `members` to the open batch, and a leader for it if it has none.
    fn enqueue(&self, store: &Store, members: Vec<Member>) {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        open.members.extend(members);
        if !open.leader {
            open.leader = true;
            tokio::spawn(lead(store.clone()));
        }
    }

    /// Closes the open batch: up to [`MAX_MEMBERS`] of it; a new leader takes the rest.
    fn take(&self, store: &Store) -> Vec<Member> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let count = open.members.len().min(MAX_MEMBERS);
        let taken: Vec<Member> = open.members.drain(..count).collect();
        if open.members.is_empty() {
            open.leader = false;
        } else {
            tokio::spawn(lead(store.clone()));
        }
        taken
    }
}

#[cfg(feature = "testing")]
impl BatchCommit {
    /// Takes every write slot: until the permit drops, commits queue in the open batch.
    pub(crate) async fn hold(&self) -> tokio::sync::OwnedSemaphorePermit {
        let writers = u32::try_from(self.writers).unwrap_or(u32::MAX);
        Arc::clone(&self.slots)
            .acquire_many_owned(writers)
            .await
            .unwrap_or_else(|_| unreachable!("the slots are never closed"))
    }

    /// Commits in the open batch.
    pub(crate) fn queued(&self) -> usize {
        self.open.lock().unwrap_or_else(PoisonError::into_inner).members.len()
    }
}

/// Waits for a write slot, takes the open batch, writes and commits it, answers its members.
async fn lead(store: Store) {
    let Ok(_slot) = Arc::clone(&store.batch.slots).acquire_owned().await else {
        return;
    };
    let taken = store.batch.take(&store);
    // One commit per engagement and per request id in a batch; the others go on to the
    // next batch, which sees what this one stored.
    let mut engagements = HashSet::new();
    let mut request_ids = HashSet::new();
    let (members, later): (Vec<Member>, Vec<Member>) = taken.into_iter().partition(|member| {
        let (tenant, engagement) = member.prepared.engagement();
        let request = member
            .prepared
            .idempotency
            .as_ref()
            .map(|key| (key.tenant.clone(), key.request_id.clone()));
        let first = request.as_ref().is_none_or(|request| !request_ids.contains(request))
            && engagements.insert((tenant.to_owned(), engagement.to_owned()));
        if first {
            request_ids.extend(request);
        }
        first
    });
    if members.is_empty() {
        return;
    }
    for member in &members {
        metrics::histogram!(names::COMMIT_WAIT).record(member.queued_at.elapsed().as_secs_f64());
    }
    let prepared: Vec<&Prepared> = members.iter().map(|member| &member.prepared).collect();
    match write_batch(&store, &prepared).await {
        Ok(outcomes) => {
            for (member, outcome) in members.into_iter().zip(outcomes) {
                let _ = member.reply.send(outcome);
            }
        }
        Err(error) if members.len() == 1 => {
            if let Some(member) = members.into_iter().next() {
                let _ = member.reply.send(Err(error));
            }
        }
        Err(error) => {
            tracing::warn!(error = %error, members = members.len(), "a batch commit failed; its commits are written one at a time");
            for member in members {
                let outcome = match write_batch(&store, &[&member.prepared]).await {
                    Ok(mut outcomes) => outcomes.pop().unwrap_or(Ok(())),
                    Err(error) => Err(error),
                };
                let _ = member.reply.send(outcome);
            }
        }
    }
    // Only now: their guards must see what this batch committed.
    if !later.is_empty() {
        store.batch.enqueue(&store, later);
    }
}

/// Writes `members` in one transaction and commits it: each member's outcome, or the
/// error that failed the batch as a whole (nothing of it is kept then).
async fn write_batch(store: &Store, members: &[&Prepared]) -> Result<Vec<Result<(), StoreError>>, StoreError> {
    // Built before the transaction begins, so it holds its locks (and SQLite's writer its
    // turn) only for the database's own work.
    let plan = match store.backend {
        _ if !batch_statement::applies(members) => Plan::Tables,
        Backend::Postgres => Plan::Postgres(batch_statement::statement(members)),
        Backend::Sqlite => Plan::Sqlite(batch_sqlite::parameters(members)),
    };
    let began = Instant::now();
    let (transaction, _turn) = store.begin_write().await?;
    let written = match plan {
        Plan::Postgres(statement) => batch_statement::write_members(&transaction, statement, members).await,
        Plan::Sqlite(parameters) => batch_sqlite::write_members(&transaction, parameters, members).await,
        Plan::Tables => write_members(&transaction, store.backend, members).await,
    };
    match written {
        Ok(outcomes) => {
            transaction.commit().await?;
            metrics::counter!(names::COMMIT_TRANSACTIONS).increment(1);
            metrics::histogram!(names::COMMIT_BATCH_DURATION).record(began.elapsed().as_secs_f64());
            Ok(outcomes)
        }
        Err(error) => {
            if let Err(rollback) = transaction.rollback().await {
                tracing::warn!(error = %rollback, "rollback failed");
            }
            Err(error)
        }
    }
}

/// How a batch is written.
enum Plan {
    /// One statement ([`batch_statement`]).
    Postgres(Statement),
    /// One script of constant text, with these recordsets ([`batch_sqlite`]).
    Sqlite(Vec<Value>),
    /// One statement per table, rows bound one by one: a batch that erases something.
    Tables,
}

async fn write_members(
    transaction: &DatabaseTransaction,
    backend: Backend,
    members: &[&Prepared],
) -> Result<Vec<Result<(), StoreError>>, StoreError> {
    let mut outcomes: Vec<Result<(), StoreError>> = members.iter().map(|_| Ok(())).collect();
    let keyed = insert_request_ids(transaction, members, &mut outcomes).await?;
    insert_projections(transaction, members, &mut outcomes).await?;
    guard_projections(transaction, backend, members, &mut outcomes).await?;
    // The request ids of members refused after theirs was stored.
    let refused = keyed
        .into_iter()
        .filter(|&index| outcomes[index].is_err())
        .filter_map(|index| members[index].idempotency.as_ref())
        .map(|key| [key.tenant.clone().into(), key.request_id.clone().into()]);
    delete_request_ids(transaction, refused).await?;
    let written: Vec<&Prepared> = members
        .iter()
        .zip(&outcomes)
        .filter(|(_, outcome)| outcome.is_ok())
        .map(|(member, _)| *member)
        .collect();
    write_rows(transaction, &written).await?;
    Ok(outcomes)
}

/// Deletes the stored request ids (`[tenant, request_id]`) of members refused after theirs
/// was stored; nothing without any.
pub(crate) async fn delete_request_ids(
    transaction: &DatabaseTransaction,
    ids: impl IntoIterator<Item = [Value; 2]>,
) -> Result<(), StoreError> {
    let ids: Vec<[Value; 2]> = ids.into_iter().collect();
    if !ids.is_empty() {
        idempotency_key::Entity::delete_many()
            .filter(keys::in_values(
                transaction.get_database_backend(),
                "tenant, request_id",
                ids,
            ))
            .exec(transaction)
            .await?;
    }
    Ok(())
}

/// Stores the members' request ids; refuses a member whose id is taken. Returns the members
/// whose id it stored.
async fn insert_request_ids(
    transaction: &DatabaseTransaction,
    members: &[&Prepared],
    outcomes: &mut [Result<(), StoreError>],
) -> Result<Vec<usize>, StoreError> {
    let keyed: Vec<usize> = (0..members.len())
        .filter(|&index| members[index].idempotency.is_some())
        .collect();
    if keyed.is_empty() {
        return Ok(keyed);
    }
    let mut stored = HashSet::new();
    for chunk in keyed.chunks(ROWS_PER_INSERT) {
        let mut insert = idempotency_key::Entity::insert_many(
            chunk
                .iter()
                .filter_map(|&index| members[index].idempotency.as_ref())
                .map(|key| idempotency_row(key).into_active_model()),
        )
        .on_conflict(
            OnConflict::columns([idempotency_key::Column::Tenant, idempotency_key::Column::RequestId])
                .do_nothing()
                .to_owned(),
        )
        .into_query();
        insert.returning(
            Query::returning().columns([idempotency_key::Column::Tenant, idempotency_key::Column::RequestId]),
        );
        for row in transaction.query_all(&insert).await? {
            stored.insert((row.try_get_by_index::<String>(0)?, row.try_get_by_index::<String>(1)?));
        }
    }
    Ok(keyed
        .into_iter()
        .filter(|&index| {
            let Some(key) = &members[index].idempotency else {
                return false;
            };
            let taken = !stored.contains(&(key.tenant.clone(), key.request_id.clone()));
            if taken {
                outcomes[index] = Err(StoreError::DuplicateRequest);
            }
            !taken
        })
        .collect())
}

/// Creates the projection rows of the members that start an engagement; refuses a member
/// whose engagement id is taken.
async fn insert_projections(
    transaction: &DatabaseTransaction,
    members: &[&Prepared],
    outcomes: &mut [Result<(), StoreError>],
) -> Result<(), StoreError> {
    let creating: Vec<usize> = (0..members.len())
        .filter(|&index| outcomes[index].is_ok() && members[index].creating())
        .collect();
    let mut created = HashSet::new();
    for chunk in creating.chunks(ROWS_PER_INSERT) {
        let mut insert = engagement::Entity::insert_many(chunk.iter().map(|&index| {
            let member = members[index];
            let mut row = member.rows.projection.clone();
            if member.snapshot.is_some() {
                row.snapshot_sequence = row.sequence;
            }
            row.into_active_model()
        }))
        .on_conflict(
            OnConflict::columns([engagement::Column::Tenant, engagement::Column::Id])
                .do_nothing()
                .to_owned(),
        )
        .into_query();
        insert.returning(Query::returning().columns([engagement::Column::Tenant, engagement::Column::Id]));
        for row in transaction.query_all(&insert).await? {
            created.insert((row.try_get_by_index::<String>(0)?, row.try_get_by_index::<String>(1)?));
        }
    }
    for index in creating {
        let (tenant, id) = members[index].engagement();
        if !created.contains(&(tenant.to_owned(), id.to_owned())) {
            outcomes[index] = Err(StoreError::AlreadyExists(format!("engagement {tenant}/{id}")));
        }
    }
    Ok(())
}

/// The guard's columns in `VALUES`, with their PostgreSQL types.
const GUARD_COLUMNS: [(&str, &str); 16] = [
    ("tenant", "text"),
    ("id", "text"),
    ("expected", "bigint"),
    ("model_key", "text"),
    ("model_version", "integer"),
    ("status", "text"),
    ("phase", "text"),
    ("phase_iteration", "integer"),
    ("sequence", "bigint"),
    ("snapshot", "boolean"),
    ("open_tasks", "integer"),
    ("overdue_tasks", "integer"),
    ("next_due_at", "timestamptz"),
    ("updated_at", "timestamptz"),
    ("ended_at", "timestamptz"),
    ("content_erased_at", "timestamptz"),
];

/// Guards per `UPDATE` (16 bind parameters each).
const GUARDS_PER_UPDATE: usize = 1000;

/// The guard of every member that changes an existing engagement, in one statement per
/// [`GUARDS_PER_UPDATE`]: its projection row is updated only if it is still at the
/// sequence the member decided on; a member whose row is not is refused with a conflict.
/// (On PostgreSQL a concurrent commit to the same engagement holds the row's lock; this
/// waits for it, then finds the sequence moved on.)
async fn guard_projections(
    transaction: &DatabaseTransaction,
    backend: Backend,
    members: &[&Prepared],
    outcomes: &mut [Result<(), StoreError>],
) -> Result<(), StoreError> {
    let updating: Vec<usize> = (0..members.len())
        .filter(|&index| outcomes[index].is_ok() && !members[index].creating())
        .collect();
    let mut updated = HashSet::new();
    for chunk in updating.chunks(GUARDS_PER_UPDATE) {
        let mut values: Vec<Value> = Vec::with_capacity(chunk.len() * GUARD_COLUMNS.len());
        for &index in chunk {
            let member = members[index];
            let row = &member.rows.projection;
            values.extend([
                row.tenant.clone().into(),
                row.id.clone().into(),
                member.expected_sequence.into(),
                row.model_key.clone().into(),
                row.model_version.into(),
                row.status.clone().into(),
                row.phase.clone().into(),
                row.phase_iteration.into(),
                row.sequence.into(),
                member.snapshot.is_some().into(),
                row.open_tasks.into(),
                row.overdue_tasks.into(),
                row.next_due_at.into(),
                row.updated_at.into(),
                row.ended_at.into(),
                row.content_erased_at.into(),
            ]);
        }
        let columns: Vec<&str> = GUARD_COLUMNS.iter().map(|(name, _)| *name).collect();
        let tuples = keys::rows_of(GUARD_COLUMNS.len(), chunk.len(), |index| {
            let kind = GUARD_COLUMNS[index % GUARD_COLUMNS.len()].1;
            match backend {
                // Typed, since nothing else in `VALUES` says what a NULL is.
                Backend::Postgres => format!("${}::{kind}", index + 1),
                Backend::Sqlite => format!("${}", index + 1),
            }
        });
        // SQLite's RETURNING names the updated table's columns only, unqualified.
        let returning = match backend {
            Backend::Postgres => "e.tenant, e.id",
            Backend::Sqlite => "tenant, id",
        };
        let sql = format!(
            "WITH v ({}) AS (VALUES {}) \
             UPDATE engagements AS e SET model_key = v.model_key, model_version = v.model_version, \
             status = v.status, phase = v.phase, phase_iteration = v.phase_iteration, sequence = v.sequence, \
             snapshot_sequence = CASE WHEN v.snapshot THEN v.sequence ELSE e.snapshot_sequence END, \
             open_tasks = v.open_tasks, overdue_tasks = v.overdue_tasks, next_due_at = v.next_due_at, \
             updated_at = v.updated_at, ended_at = v.ended_at, content_erased_at = v.content_erased_at \
             FROM v WHERE e.tenant = v.tenant AND e.id = v.id AND e.sequence = v.expected \
             RETURNING {returning}",
            columns.join(", "),
            tuples,
        );
        let rows = transaction
            .query_all_raw(Statement::from_sql_and_values(
                transaction.get_database_backend(),
                sql,
                values,
            ))
            .await?;
        for row in rows {
            updated.insert((row.try_get_by_index::<String>(0)?, row.try_get_by_index::<String>(1)?));
        }
    }
    for index in updating {
        let (tenant, id) = members[index].engagement();
        if !updated.contains(&(tenant.to_owned(), id.to_owned())) {
            outcomes[index] = Err(StoreError::Conflict);
        }
    }
    Ok(())
}

/// Everything else the members change, one statement per table (and per
/// [`ROWS_PER_INSERT`] rows).
async fn write_rows(transaction: &DatabaseTransaction, members: &[&Prepared]) -> Result<(), StoreError> {
    let new_keys: Vec<content_key::ActiveModel> = members
        .iter()
        .filter_map(|member| member.rows.key.new_row.clone())
        .map(IntoActiveModel::into_active_model)
        .collect();
    insert_all(transaction, new_keys, |chunk| {
        content_key::Entity::insert_many(chunk).into_query()
    })
    .await?;
    for member in members {
        let rows = &member.rows;
        let (tenant, engagement) = member.engagement();
        if rows.erasing {
            crate::sealing::destroy_keys_before(transaction, tenant, engagement, rows.key.generation, member.now)
                .await?;
        }
        if rows.erasing || !rows.erased_people.is_empty() {
            rewrite_outbox(transaction, tenant, engagement, rows.erasing, &rows.erased_people).await?;
        }
    }

    let events: Vec<event::ActiveModel> = members
        .iter()
        .flat_map(|member| {
            member
                .rows
                .events
                .iter()
                .cloned()
                .map(IntoActiveModel::into_active_model)
        })
        .collect();
    insert_all(transaction, events, |chunk| {
        event::Entity::insert_many(chunk).into_query()
    })
    .await
    .map_err(|error| match error {
        // The guard passed, so another commit cannot have these sequences: only a
        // commit outside the guard could.
        StoreError::Database(error) => unique_violation_as(error, || StoreError::Conflict),
        other => other,
    })?;

    replace_rows::<engagement_person::Entity, engagement_person::ActiveModel>(
        transaction,
        members,
        |rows| rows.people.as_ref(),
        (engagement_person::Column::Tenant, engagement_person::Column::Engagement),
    )
    .await?;
    replace_rows::<engagement_task::Entity, engagement_task::ActiveModel>(
        transaction,
        members,
        |rows| rows.open_tasks.as_ref(),
        (engagement_task::Column::Tenant, engagement_task::Column::Engagement),
    )
    .await?;

    let snapshots: Vec<snapshot::ActiveModel> = members
        .iter()
        .filter_map(|member| member.snapshot.clone())
        .map(IntoActiveModel::into_active_model)
        .collect();
    insert_all(transaction, snapshots, |chunk| {
        snapshot::Entity::insert_many(chunk)
            .on_conflict(
                OnConflict::columns([snapshot::Column::Tenant, snapshot::Column::Engagement])
                    .update_columns([
                        snapshot::Column::Sequence,
                        snapshot::Column::State,
                        snapshot::Column::CreatedAt,
                    ])
                    .to_owned(),
            )
            .into_query()
    })
    .await?;

    let scheduled: Vec<timer::ActiveModel> = members
        .iter()
        .flat_map(|member| {
            member
                .rows
                .scheduled_timers
                .iter()
                .cloned()
                .map(IntoActiveModel::into_active_model)
        })
        .collect();
    insert_all(transaction, scheduled, |chunk| {
        timer::Entity::insert_many(chunk)
            .on_conflict(
                OnConflict::columns([timer::Column::Tenant, timer::Column::Engagement, timer::Column::TimerId])
                    .update_columns([
                        timer::Column::FiresAt,
                        timer::Column::ClaimedBy,
                        timer::Column::ClaimedUntil,
                    ])
                    .to_owned(),
            )
            .into_query()
    })
    .await?;
    let cancelled: Vec<[Value; 3]> = members
        .iter()
        .flat_map(|member| {
            let (tenant, engagement) = member.engagement();
            member
                .rows
                .cancelled_timers
                .iter()
                .map(move |timer_id| [tenant.into(), engagement.into(), timer_id.clone().into()])
        })
        .collect();
    for chunk in cancelled.chunks(ROWS_PER_INSERT) {
        timer::Entity::delete_many()
            .filter(keys::in_values(
                transaction.get_database_backend(),
                "tenant, engagement, timer_id",
                chunk.iter().cloned(),
            ))
            .exec(transaction)
            .await?;
    }

    // Last, and in the members' order: positions are taken just before the commit, each
    // engagement's rows in its sequence.
    let outbox: Vec<outbox::ActiveModel> = members.iter().flat_map(|member| member.rows.outbox.clone()).collect();
    insert_all(transaction, outbox, |chunk| {
        outbox::Entity::insert_many(chunk).into_query()
    })
    .await
}

/// Replaces the rows of `E` (people, open tasks) of every member whose events change them:
/// one DELETE of the engagements' old rows, then one INSERT of the new ones.
async fn replace_rows<E, A>(
    transaction: &DatabaseTransaction,
    members: &[&Prepared],
    rows_of: impl Fn(&Rows) -> Option<&Vec<E::Model>>,
    (tenant, engagement): (E::Column, E::Column),
) -> Result<(), StoreError>
where
    E: EntityTrait,
    E::Model: IntoActiveModel<A> + Clone,
    A: ActiveModelTrait<Entity = E> + Clone,
{
    let replaced: Vec<[Value; 2]> = members
        .iter()
        .filter(|member| !member.creating() && rows_of(&member.rows).is_some())
        .map(|member| {
            let (tenant, engagement) = member.engagement();
            [tenant.into(), engagement.into()]
        })
        .collect();
    if !replaced.is_empty() {
        E::delete_many()
            .filter(keys::in_values(
                transaction.get_database_backend(),
                &format!("{}, {}", tenant.as_str(), engagement.as_str()),
                replaced,
            ))
            .exec(transaction)
            .await?;
    }
    let rows: Vec<A> = members
        .iter()
        .filter_map(|member| rows_of(&member.rows))
        .flat_map(|rows| rows.iter().cloned().map(IntoActiveModel::into_active_model))
        .collect();
    insert_all(transaction, rows, |chunk| E::insert_many(chunk).into_query()).await
}

/// Inserts `rows` with one statement per [`ROWS_PER_INSERT`] of them.
async fn insert_all<A: Clone>(
    transaction: &DatabaseTransaction,
    rows: Vec<A>,
    statement: impl Fn(Vec<A>) -> InsertStatement,
) -> Result<(), StoreError> {
    for chunk in rows.chunks(ROWS_PER_INSERT) {
        transaction.execute(&statement(chunk.to_vec())).await?;
    }
    Ok(())
}

fn failed(message: &str) -> StoreError {
    StoreError::Database(DbErr::Custom(format!("the group commit failed: {message}")))
}
