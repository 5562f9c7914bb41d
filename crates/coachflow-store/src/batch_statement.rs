//! A batch on PostgreSQL as one statement: the request ids, the new projection rows, the
//! guards and every table's rows travel as JSON recordsets (one parameter per table) in
//! one `WITH … INSERT/UPDATE/DELETE` statement, whose text is the same for every batch.
//! A batch then costs three round trips (`BEGIN`, the statement, `COMMIT`) where one
//! statement per table cost a dozen, and PostgreSQL parses the statement once per
//! connection.
//!
//! Inside the statement, what [`crate::batch`] does one statement at a time: a member is
//! admitted if it has no request id or its id was stored now; an admitted member is written
//! if its engagement was created now (no row of that id existed) or its guard held (the
//! row was still at the sequence the member decided on). Every other table's rows are
//! written only for the engagements written, so a refused member leaves nothing behind but
//! its request id, which is deleted again before the commit. People and open tasks are
//! replaced by deleting the rows a member no longer has and upserting the ones it has (a
//! row is touched by one part of the statement only, as PostgreSQL requires).
//!
//! A batch that erases content or people goes the way of [`crate::batch`]: its erasure
//! rewrites rows in between, in an order one statement cannot keep.

use std::collections::HashSet;
use std::sync::OnceLock;

use sea_orm::{ConnectionTrait, DatabaseTransaction, DbBackend, SqlErr, Statement, Value};

use crate::batch::{Prepared, delete_request_ids};
use crate::entity::{
    content_key, engagement, engagement_person, engagement_task, event, idempotency_key, outbox, snapshot, timer,
};
use crate::idempotency::idempotency_row;
use crate::recordset::{self, Field, Record, Records};
use crate::{Backend, StoreError};

/// Whether the members can be written by this one statement.
pub(crate) fn applies(members: &[&Prepared]) -> bool {
    members
        .iter()
        .all(|member| !member.rows.erasing && member.rows.erased_people.is_empty())
}

/// The one statement that writes `members`, built before its transaction begins so the
/// transaction holds its locks only for the database's own work.
pub(crate) fn statement(members: &[&Prepared]) -> Statement {
    Statement::from_sql_and_values(DbBackend::Postgres, sql(), parameters(members, Backend::Postgres))
}

/// Writes `members` in `transaction` with their [`statement`]: each member's outcome.
pub(crate) async fn write_members(
    transaction: &DatabaseTransaction,
    statement: Statement,
    members: &[&Prepared],
) -> Result<Vec<Result<(), StoreError>>, StoreError> {
    let rows = transaction
        .query_all_raw(statement)
        .await
        .map_err(|error| match error.sql_err() {
            // The events written are of engagements whose guard held (or that were created
            // now): a taken sequence can only come from a commit outside the guard.
            Some(SqlErr::UniqueConstraintViolation(message)) if message.contains("events_pkey") => StoreError::Conflict,
            _ => StoreError::Database(error),
        })?;
    let mut stored_keys = HashSet::new();
    let mut written = HashSet::new();
    for row in rows {
        let kind: String = row.try_get_by_index(0)?;
        let pair = (row.try_get_by_index::<String>(1)?, row.try_get_by_index::<String>(2)?);
        if kind == "key" {
            stored_keys.insert(pair);
        } else {
            written.insert(pair);
        }
    }
    settle(transaction, members, &stored_keys, &written).await
}

/// A `(tenant, id)` pair: of a request id stored, or of an engagement written.
type Pair = (String, String);

/// Each member's outcome, from the request ids stored now and the engagements written
/// now: refused if its request id was taken (the id is another request's), or if its
/// engagement was not written (a taken engagement id, a guard that failed; its request id
/// is deleted again).
async fn settle(
    transaction: &DatabaseTransaction,
    members: &[&Prepared],
    stored_keys: &HashSet<Pair>,
    written: &HashSet<Pair>,
) -> Result<Vec<Result<(), StoreError>>, StoreError> {
    let mut refused_keys = Vec::new();
    let outcomes = members
        .iter()
        .map(|member| {
            let key = member
                .idempotency
                .as_ref()
                .map(|key| (key.tenant.clone(), key.request_id.clone()));
            if key.as_ref().is_some_and(|key| !stored_keys.contains(key)) {
                return Err(StoreError::DuplicateRequest);
            }
            let (tenant, id) = member.engagement();
            if written.contains(&(tenant.to_owned(), id.to_owned())) {
                return Ok(());
            }
            refused_keys.extend(key);
            Err(if member.creating() {
                StoreError::AlreadyExists(format!("engagement {tenant}/{id}"))
            } else {
                StoreError::Conflict
            })
        })
        .collect();
    delete_request_ids(
        transaction,
        refused_keys
            .into_iter()
            .map(|(tenant, request_id)| [tenant.into(), request_id.into()]),
    )
    .await?;
    Ok(outcomes)
}

/// The members' rows as one recordset per table, in the order of [`sql`]'s `$n` (and of
/// [`crate::batch_sqlite`]'s script): request ids, heads (the projection rows with
/// the request id, the expected sequence and whether a snapshot is written), content keys,
/// events, the engagements whose people are replaced and their people, the same for open
/// tasks, snapshots, timers scheduled and cancelled, outbox.
pub(crate) fn parameters(members: &[&Prepared], backend: Backend) -> Vec<Value> {
    let mut request_ids = Records::new(backend);
    let mut heads = Records::new(backend);
    let mut content_keys = Records::new(backend);
    let mut events = Records::new(backend);
    let mut people_replaced = Records::new(backend);
    let mut people = Records::new(backend);
    let mut tasks_replaced = Records::new(backend);
    let mut tasks = Records::new(backend);
    let mut snapshots = Records::new(backend);
    let mut scheduled = Records::new(backend);
    let mut cancelled = Records::new(backend);
    let mut outbox = Records::new(backend);
    let mut outbox_rows: i64 = 0;
    for member in members {
        let rows = &member.rows;
        let (tenant, id) = member.engagement();
        if let Some(key) = &member.idempotency {
            request_ids.model(&idempotency_row(key));
        }
        heads
            .model(&rows.projection)
            .field(
                "request_id",
                &Value::String(member.idempotency.as_ref().map(|key| key.request_id.clone())),
            )
            .field("expected", &member.expected_sequence.into())
            .field("snapshot", &member.snapshot.is_some().into());
        if let Some(row) = &rows.key.new_row {
            content_keys.model(row);
        }
        for row in &rows.events {
            events.model(row);
        }
        // A new engagement has no rows to replace: its own are only inserted. (Its deletes
        // would find nothing, yet with a plan made while the table was small — a cached
        // generic plan of a fresh database — a delete of people scanned the tenant's index
        // once per member: 0.2–0.7 s a batch of creations.)
        let replacing = !member.creating();
        if let Some(rows) = &rows.people {
            if replacing {
                engagement_record(&mut people_replaced, tenant, id);
            }
            for row in rows {
                people.model(row);
            }
        }
        if let Some(rows) = &rows.open_tasks {
            if replacing {
                engagement_record(&mut tasks_replaced, tenant, id);
            }
            for row in rows {
                tasks.model(row);
            }
        }
        if let Some(row) = &member.snapshot {
            snapshots.model(row);
        }
        for row in &rows.scheduled_timers {
            scheduled.model(row);
        }
        for timer_id in &rows.cancelled_timers {
            engagement_record(&mut cancelled, tenant, id).field("timer_id", &timer_id.as_str().into());
        }
        for row in &rows.outbox {
            // Positions follow the members' order, each engagement's rows in sequence.
            outbox.active_model(row).field("ord", &outbox_rows.into());
            outbox_rows += 1;
        }
    }
    [
        request_ids,
        heads,
        content_keys,
        events,
        people_replaced,
        people,
        tasks_replaced,
        tasks,
        snapshots,
        scheduled,
        cancelled,
        outbox,
    ]
    .into_iter()
    .map(Records::parameter)
    .collect()
}

/// Adds a record naming an engagement (`tenant`, `engagement`) to `records`.
fn engagement_record<'a>(records: &'a mut Records, tenant: &str, engagement: &str) -> Record<'a> {
    let mut record = records.record();
    record
        .field("tenant", &tenant.into())
        .field("engagement", &engagement.into());
    record
}

/// The statement, built once from the entities' columns.
fn sql() -> &'static str {
    static SQL: OnceLock<String> = OnceLock::new();
    SQL.get_or_init(build_sql)
}

/// Only for the engagements written (created now or guarded).
fn written(alias: &str) -> String {
    format!("EXISTS (SELECT 1 FROM written AS w WHERE w.tenant = {alias}.tenant AND w.id = {alias}.engagement)")
}

/// `INSERT INTO table (…) SELECT … FROM json_to_recordset($n) AS r(…)` of written
/// engagements' rows, then `tail` (a conflict clause, an order).
fn insert(table: &str, fields: &[Field], parameter: usize, tail: &str) -> String {
    format!(
        "INSERT INTO {table} ({}) SELECT {} FROM json_to_recordset(${parameter}::json) AS r({}) WHERE {} {tail}",
        recordset::names(fields),
        recordset::selects(fields, "r"),
        recordset::definition(fields),
        written("r"),
    )
}

/// Replaces a written engagement's rows of `table` by the recordset `rows` (a CTE): drops
/// the rows of the engagements in parameter `replaced` that `rows` lacks (matched on the
/// table's `key`, never null), then upserts `rows` (`on_conflict`).
///
/// The rows kept are found with `NOT IN`, which PostgreSQL answers from a hash of `rows`
/// whatever it estimates; a `NOT EXISTS` became a nested loop over `rows` for every row
/// looked at (planned for one), 9 of a 31 ms batch of 200 fired timers.
fn replace(table: &str, fields: &[Field], rows: &str, replaced: usize, key: &[&str], on_conflict: &str) -> String {
    let key_columns = key.join(", ");
    let old_key = key
        .iter()
        .map(|column| format!("o.{column}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "dropped_{rows} AS (DELETE FROM {table} AS o USING json_to_recordset(${replaced}::json) AS r(tenant text, engagement text) \
         WHERE o.tenant = r.tenant AND o.engagement = r.engagement AND {} \
         AND ({old_key}) NOT IN (SELECT {key_columns} FROM {rows})), \
         new_{rows} AS (INSERT INTO {table} ({}) SELECT {} FROM {rows} AS r WHERE {} ON CONFLICT ({}) {on_conflict})",
        written("r"),
        recordset::names(fields),
        recordset::selects(fields, "r"),
        written("r"),
        key_columns,
    )
}

/// `DO UPDATE SET` every column of `fields` outside `key` to the proposed row's.
fn update_others(fields: &[Field], key: &[&str]) -> String {
    let set = fields
        .iter()
        .filter(|field| !key.contains(&field.name.as_str()))
        .map(|field| format!("{0} = EXCLUDED.{0}", field.name))
        .collect::<Vec<_>>()
        .join(", ");
    format!("DO UPDATE SET {set}")
}

/// `ON CONFLICT (key)`, then every column of `fields` outside `key` set to the proposed
/// row's: an upsert's tail, on both backends.
pub(crate) fn upsert(fields: &[Field], key: &[&str]) -> String {
    format!("ON CONFLICT ({}) {}", key.join(", "), update_others(fields, key))
}

/// The primary keys of the rows a member replaces or upserts.
pub(crate) const ENGAGEMENT_KEY: [&str; 2] = ["tenant", "engagement"];
const PEOPLE_KEY: [&str; 4] = ["tenant", "engagement", "role", "person"];
const TASK_KEY: [&str; 3] = ["tenant", "engagement", "task_id"];
pub(crate) const TIMER_KEY: [&str; 3] = ["tenant", "engagement", "timer_id"];

/// The heads' fields: the projection's columns, the request id, the sequence the member
/// decided on (`expected`, 0 creates) and whether it writes a snapshot.
pub(crate) fn head_fields(projection: &[Field]) -> Vec<Field> {
    let mut heads = projection.to_vec();
    heads.extend([
        Field::new("request_id", "text"),
        Field::new("expected", "bigint"),
        Field::new("snapshot", "boolean"),
    ]);
    heads
}

/// The projection row that head `h` creates, in the projection's column order.
pub(crate) fn created_values(projection: &[Field]) -> String {
    projection
        .iter()
        .map(|field| match field.name.as_str() {
            "snapshot_sequence" => "CASE WHEN h.snapshot THEN h.sequence ELSE h.snapshot_sequence END".to_owned(),
            _ => field.select("h"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The `SET` of a guard: projection row `e` takes head `h`'s columns.
pub(crate) fn guarded_set(projection: &[Field]) -> String {
    projection
        .iter()
        .filter(|field| !["tenant", "id", "created_at"].contains(&field.name.as_str()))
        .map(|field| match field.name.as_str() {
            "snapshot_sequence" => {
                "snapshot_sequence = CASE WHEN h.snapshot THEN h.sequence ELSE e.snapshot_sequence END".to_owned()
            }
            name => format!("{name} = h.{name}"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn build_sql() -> String {
    let request_ids = recordset::fields::<idempotency_key::Entity>(&[]);
    let projection = recordset::fields::<engagement::Entity>(&[]);
    let heads = head_fields(&projection);
    let created = created_values(&projection);
    let guarded = guarded_set(&projection);
    let people = recordset::fields::<engagement_person::Entity>(&[]);
    let tasks = recordset::fields::<engagement_task::Entity>(&[]);
    let snapshots = recordset::fields::<snapshot::Entity>(&[]);
    let timers = recordset::fields::<timer::Entity>(&[]);
    let outbox = recordset::fields::<outbox::Entity>(&["position"]);
    let mut outbox_records = outbox.clone();
    outbox_records.push(Field::new("ord", "bigint"));
    let outbox = format!(
        "INSERT INTO outbox ({}) SELECT {} FROM json_to_recordset($12::json) AS r({}) WHERE {} ORDER BY r.ord",
        recordset::names(&outbox),
        recordset::selects(&outbox, "r"),
        recordset::definition(&outbox_records),
        written("r"),
    );
    format!(
        "WITH stored_keys AS (INSERT INTO idempotency_keys ({key_names}) SELECT {key_selects} \
         FROM json_to_recordset($1::json) AS r({key_definition}) \
         ON CONFLICT (tenant, request_id) DO NOTHING RETURNING tenant, request_id), \
         admitted AS (SELECT h.* FROM json_to_recordset($2::json) AS h({head_definition}) \
         WHERE h.request_id IS NULL \
         OR EXISTS (SELECT 1 FROM stored_keys AS k WHERE k.tenant = h.tenant AND k.request_id = h.request_id)), \
         created AS (INSERT INTO engagements ({projection_names}) SELECT {created} FROM admitted AS h \
         WHERE h.expected = 0 ON CONFLICT (tenant, id) DO NOTHING RETURNING tenant, id), \
         guarded AS (UPDATE engagements AS e SET {guarded} FROM admitted AS h \
         WHERE h.expected <> 0 AND e.tenant = h.tenant AND e.id = h.id AND e.sequence = h.expected \
         RETURNING e.tenant, e.id), \
         written AS (SELECT tenant, id FROM created UNION ALL SELECT tenant, id FROM guarded), \
         new_content_keys AS ({content_keys}), \
         new_events AS ({events}), \
         people AS (SELECT * FROM json_to_recordset($6::json) AS r({people_definition})), \
         {replace_people}, \
         tasks AS (SELECT * FROM json_to_recordset($8::json) AS r({task_definition})), \
         {replace_tasks}, \
         new_snapshots AS ({snapshots}), \
         scheduled_timers AS ({scheduled}), \
         cancelled_timers AS (DELETE FROM timers AS t USING json_to_recordset($11::json) \
         AS r(tenant text, engagement text, timer_id text) \
         WHERE t.tenant = r.tenant AND t.engagement = r.engagement AND t.timer_id = r.timer_id AND {cancelled}), \
         new_outbox AS ({outbox}) \
         SELECT 'key', tenant, request_id FROM stored_keys UNION ALL SELECT 'written', tenant, id FROM written",
        key_names = recordset::names(&request_ids),
        key_selects = recordset::selects(&request_ids, "r"),
        key_definition = recordset::definition(&request_ids),
        head_definition = recordset::definition(&heads),
        projection_names = recordset::names(&projection),
        content_keys = insert("content_keys", &recordset::fields::<content_key::Entity>(&[]), 3, ""),
        events = insert("events", &recordset::fields::<event::Entity>(&[]), 4, ""),
        people_definition = recordset::definition(&people),
        replace_people = replace("engagement_people", &people, "people", 5, &PEOPLE_KEY, "DO NOTHING"),
        task_definition = recordset::definition(&tasks),
        replace_tasks = replace(
            "engagement_tasks",
            &tasks,
            "tasks",
            7,
            &TASK_KEY,
            &update_others(&tasks, &TASK_KEY)
        ),
        snapshots = insert("snapshots", &snapshots, 9, &upsert(&snapshots, &ENGAGEMENT_KEY)),
        scheduled = insert("timers", &timers, 10, &upsert(&timers, &TIMER_KEY)),
        cancelled = written("r"),
    )
}

#[cfg(test)]
mod tests {
    use super::sql;

    #[test]
    fn the_statement_names_every_parameter_once_in_order() {
        let text = sql();
        for parameter in 1..=12 {
            assert_eq!(
                text.matches(&format!("${parameter}::json")).count(),
                1,
                "${parameter} in {text}"
            );
        }
        assert!(!text.contains("$13"));
    }
}
