//! A batch on SQLite as one script of constant text: every table's rows travel as one JSON
//! parameter (the recordsets of [`crate::batch_statement`], read with `jsonb_each`), and the
//! script's statements run in one call to the connection's worker. A batch costs three
//! calls (`BEGIN IMMEDIATE`, the script, `COMMIT`) where a statement per table cost a dozen,
//! each waiting for the async side to pick up its answer while the one writer's turn was
//! held; the script is prepared once per connection, where a multi-row `VALUES` list was a
//! new statement for every row count; and its parameters are built before the turn.
//!
//! SQLite has no writing CTEs, so the script decides first and writes after: under the
//! write lock `BEGIN IMMEDIATE` took, nobody else writes until the commit, so what the
//! members find is what they will write on. The heads go into a temporary table, each with
//! its outcome: `taken` (its request id is stored already), `exists` (it creates an
//! engagement whose id is taken), `conflict` (its engagement is no longer at the sequence
//! the member decided on) or `written`. Every statement after writes only for the heads
//! written: request ids, new projection rows, guarded updates, then one statement per
//! table. The script ends by reading the outcomes back.
//!
//! A batch that erases content or people goes the way of [`crate::batch`], as on
//! PostgreSQL.

use std::collections::HashMap;
use std::sync::OnceLock;

use sea_orm::{ConnectionTrait, DatabaseTransaction, DbBackend, SqlErr, Statement, Value};

use crate::batch::Prepared;
use crate::batch_statement::{self, ENGAGEMENT_KEY, TIMER_KEY};
use crate::entity::{
    content_key, engagement, engagement_person, engagement_task, event, idempotency_key, outbox, snapshot, timer,
};
use crate::recordset::{self, Field};
use crate::{Backend, StoreError};

/// The members' recordsets, built before the writer's turn.
pub(crate) fn parameters(members: &[&Prepared]) -> Vec<Value> {
    batch_statement::parameters(members, Backend::Sqlite)
}

/// Writes `members` in `transaction` from their [`parameters`]: each member's outcome.
pub(crate) async fn write_members(
    transaction: &DatabaseTransaction,
    parameters: Vec<Value>,
    members: &[&Prepared],
) -> Result<Vec<Result<(), StoreError>>, StoreError> {
    let rows = transaction
        .query_all_raw(Statement::from_sql_and_values(DbBackend::Sqlite, script(), parameters))
        .await
        .map_err(|error| match error.sql_err() {
            // The events written are of engagements found at their sequence (or new) under
            // the write lock: a taken sequence can only come from a commit outside it.
            Some(SqlErr::UniqueConstraintViolation(message)) if message.contains("events.") => StoreError::Conflict,
            _ => StoreError::Database(error),
        })?;
    let mut outcomes = HashMap::with_capacity(rows.len());
    for row in rows {
        let outcome: String = row.try_get_by_index(0)?;
        let engagement = (row.try_get_by_index::<String>(1)?, row.try_get_by_index::<String>(2)?);
        outcomes.insert(engagement, outcome);
    }
    Ok(members
        .iter()
        .map(|member| {
            let (tenant, id) = member.engagement();
            match outcomes.get(&(tenant.to_owned(), id.to_owned())).map(String::as_str) {
                Some(WRITTEN) => Ok(()),
                Some(TAKEN) => Err(StoreError::DuplicateRequest),
                Some(EXISTS) => Err(StoreError::AlreadyExists(format!("engagement {tenant}/{id}"))),
                Some(CONFLICT) => Err(StoreError::Conflict),
                other => Err(StoreError::Database(sea_orm::DbErr::Custom(format!(
                    "the batch script gave engagement {tenant}/{id} no outcome ({other:?})"
                )))),
            }
        })
        .collect())
}

/// A head's outcome, as the script decides it: its member is written, or refused because
/// its request id is stored already, the engagement it creates exists, or its engagement is
/// no longer at the sequence it decided on.
const WRITTEN: &str = "written";
const TAKEN: &str = "taken";
const EXISTS: &str = "exists";
const CONFLICT: &str = "conflict";

/// The script, built once from the entities' columns.
fn script() -> &'static str {
    static SCRIPT: OnceLock<String> = OnceLock::new();
    SCRIPT.get_or_init(build_script)
}

/// Only rows (alias `r`, naming their engagement in `engagement`) of engagements written
/// in this batch.
fn written() -> String {
    format!(
        "EXISTS (SELECT 1 FROM temp.batch_heads AS w WHERE w.tenant = r.tenant AND w.id = r.engagement \
         AND w.outcome = '{WRITTEN}')"
    )
}

/// `INSERT INTO table (…)` the rows of written engagements in the recordset `$parameter`,
/// then `tail`.
fn insert(table: &str, fields: &[Field], parameter: usize, tail: &str) -> String {
    format!(
        "INSERT INTO {table} ({names}) SELECT {names} FROM {rows} AS r WHERE {written} {tail};",
        names = recordset::names(fields),
        rows = recordset::sqlite_rows(fields, parameter),
        written = written(),
    )
}

/// `DELETE FROM table` the rows whose `key` columns the recordset `$parameter` names, of
/// written engagements.
fn delete(table: &str, key: &[&str], parameter: usize) -> String {
    let fields: Vec<Field> = key.iter().map(|name| Field::new(name, "text")).collect();
    let names = recordset::names(&fields);
    format!(
        "DELETE FROM {table} WHERE ({names}) IN (SELECT {names} FROM {} AS r WHERE {});",
        recordset::sqlite_rows(&fields, parameter),
        written(),
    )
}

fn build_script() -> String {
    let projection = recordset::fields::<engagement::Entity>(&[]);
    let heads = batch_statement::head_fields(&projection);
    let people = recordset::fields::<engagement_person::Entity>(&[]);
    let tasks = recordset::fields::<engagement_task::Entity>(&[]);
    let snapshots = recordset::fields::<snapshot::Entity>(&[]);
    let timers = recordset::fields::<timer::Entity>(&[]);
    let head_names = recordset::names(&heads);
    [
        format!(
            "CREATE TEMP TABLE IF NOT EXISTS batch_heads ({head_names}, outcome, \
             PRIMARY KEY (tenant, id), UNIQUE (tenant, request_id));"
        ),
        "DELETE FROM temp.batch_heads;".to_owned(),
        format!(
            "INSERT INTO temp.batch_heads ({head_names}, outcome) SELECT {head_names}, CASE \
             WHEN r.request_id IS NOT NULL AND EXISTS (SELECT 1 FROM idempotency_keys AS k \
             WHERE k.tenant = r.tenant AND k.request_id = r.request_id) THEN '{TAKEN}' \
             WHEN r.expected = 0 AND EXISTS (SELECT 1 FROM engagements AS e WHERE e.tenant = r.tenant AND e.id = r.id) \
             THEN '{EXISTS}' \
             WHEN r.expected <> 0 AND NOT EXISTS (SELECT 1 FROM engagements AS e \
             WHERE e.tenant = r.tenant AND e.id = r.id AND e.sequence = r.expected) THEN '{CONFLICT}' \
             ELSE '{WRITTEN}' END FROM {} AS r;",
            recordset::sqlite_rows(&heads, 2),
        ),
        {
            let fields = recordset::fields::<idempotency_key::Entity>(&[]);
            format!(
                "INSERT INTO idempotency_keys ({names}) SELECT {names} FROM {} AS r WHERE EXISTS \
                 (SELECT 1 FROM temp.batch_heads AS w WHERE w.tenant = r.tenant AND w.request_id = r.request_id \
                 AND w.outcome = '{WRITTEN}');",
                recordset::sqlite_rows(&fields, 1),
                names = recordset::names(&fields),
            )
        },
        format!(
            "INSERT INTO engagements ({}) SELECT {} FROM temp.batch_heads AS h \
             WHERE h.outcome = '{WRITTEN}' AND h.expected = 0;",
            recordset::names(&projection),
            batch_statement::created_values(&projection),
        ),
        format!(
            "UPDATE engagements AS e SET {} FROM temp.batch_heads AS h \
             WHERE h.outcome = '{WRITTEN}' AND h.expected <> 0 AND e.tenant = h.tenant AND e.id = h.id;",
            batch_statement::guarded_set(&projection),
        ),
        insert("content_keys", &recordset::fields::<content_key::Entity>(&[]), 3, ""),
        insert("events", &recordset::fields::<event::Entity>(&[]), 4, ""),
        delete("engagement_people", &ENGAGEMENT_KEY, 5),
        insert("engagement_people", &people, 6, ""),
        delete("engagement_tasks", &ENGAGEMENT_KEY, 7),
        insert("engagement_tasks", &tasks, 8, ""),
        insert(
            "snapshots",
            &snapshots,
            9,
            &batch_statement::upsert(&snapshots, &ENGAGEMENT_KEY),
        ),
        insert("timers", &timers, 10, &batch_statement::upsert(&timers, &TIMER_KEY)),
        delete("timers", &TIMER_KEY, 11),
        // In the members' order: positions are taken as the rows come.
        insert(
            "outbox",
            &recordset::fields::<outbox::Entity>(&["position"]),
            12,
            "ORDER BY r.ord",
        ),
        "SELECT outcome, tenant, id FROM temp.batch_heads;".to_owned(),
    ]
    .join("\n")
}

#[cfg(test)]
mod tests {
    use super::script;

    #[test]
    fn the_script_reads_every_parameter_once() {
        let text = script();
        for parameter in 1..=12 {
            assert_eq!(
                text.matches(&format!("jsonb_each(${parameter})")).count(),
                1,
                "${parameter} in {text}"
            );
        }
        assert!(!text.contains("$13"));
    }
}
