//! Rows handed to the database as one JSON parameter and read back as rows (PostgreSQL's
//! `json_to_recordset`, SQLite's `jsonb_each`), so a statement's text is the same whatever
//! number of rows it carries: it is prepared once per connection, where a multi-row
//! `VALUES` list is a new statement for every size. The columns and their types come from
//! the entity's own definition.

use std::io::Write as _;

use chrono::SecondsFormat;
use sea_orm::sea_query::ColumnType;
use sea_orm::{ActiveModelTrait, ActiveValue, ColumnTrait, EntityTrait, IdenStatic, Iterable, ModelTrait, Value};

use crate::Backend;

/// One column of a recordset: its name, the type `json_to_recordset` reads it as, and
/// the expression that turns the record's field into the table's value.
#[derive(Debug, Clone)]
pub(crate) struct Field {
    pub(crate) name: String,
    kind: &'static str,
    binary: bool,
}

impl Field {
    pub(crate) fn new(name: &str, kind: &'static str) -> Field {
        Field {
            name: name.to_owned(),
            kind,
            binary: false,
        }
    }

    /// The field of record `alias` as the table's value (bytes travel as hex).
    pub(crate) fn select(&self, alias: &str) -> String {
        if self.binary {
            format!("decode({alias}.{}, 'hex')", self.name)
        } else {
            format!("{alias}.{}", self.name)
        }
    }

    /// The field of SQLite's `jsonb_each` element `j.value` as the table's value, named as
    /// the column.
    fn sqlite_select(&self) -> String {
        let name = &self.name;
        if self.binary {
            format!("unhex(j.value ->> '{name}') AS {name}")
        } else {
            format!("j.value ->> '{name}' AS {name}")
        }
    }
}

/// The fields of a table's recordset, in the entity's column order, without `skipped`.
pub(crate) fn fields<E: EntityTrait>(skipped: &[&str]) -> Vec<Field> {
    E::Column::iter()
        .filter(|column| !skipped.contains(&column.as_str()))
        .map(|column| {
            let (kind, binary) = match column.def().get_column_type() {
                ColumnType::BigInteger => ("bigint", false),
                ColumnType::Integer => ("integer", false),
                ColumnType::Boolean => ("boolean", false),
                ColumnType::TimestampWithTimeZone => ("timestamptz", false),
                ColumnType::Binary(_) | ColumnType::VarBinary(_) | ColumnType::Blob => ("text", true),
                // Strings; a column of another type fails the first insert loudly (a
                // text value into it), so the store's tests catch a new kind here.
                _ => ("text", false),
            };
            Field {
                name: column.as_str().to_owned(),
                kind,
                binary,
            }
        })
        .collect()
}

/// `name type, …`: the column definition list of `json_to_recordset`.
pub(crate) fn definition(fields: &[Field]) -> String {
    fields
        .iter()
        .map(|field| format!("{} {}", field.name, field.kind))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `name, …`: the target columns of an `INSERT`.
pub(crate) fn names(fields: &[Field]) -> String {
    fields
        .iter()
        .map(|field| field.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The rows of the JSON parameter `$n` on SQLite: a subquery with a column per field (bytes
/// decoded), and `ord`, the record's place in the list. `jsonb_each` hands each record to
/// `->>` in SQLite's binary form, where `json_each` would render it as text for `->>` to
/// parse again. (`$n` is a name to SQLite, so a statement of a script has no unnamed
/// `?1…?n-1` before it, which sqlx would bind to the script's first arguments and count
/// against the statements after.)
pub(crate) fn sqlite_rows(fields: &[Field], parameter: usize) -> String {
    let columns = fields.iter().map(Field::sqlite_select).collect::<Vec<_>>().join(", ");
    format!("(SELECT {columns}, j.key AS ord FROM jsonb_each(${parameter}) AS j)")
}

/// `alias.name, …` (decoded where needed): the values of an `INSERT … SELECT`.
pub(crate) fn selects(fields: &[Field], alias: &str) -> String {
    fields
        .iter()
        .map(|field| field.select(alias))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The JSON text of one recordset parameter, written record by record: no JSON tree is
/// built (a batch's parameters were a tenth of the server's CPU in a timer storm while they
/// went through `serde_json::Value`).
#[derive(Debug)]
pub(crate) struct Records {
    text: Vec<u8>,
    backend: Backend,
}

impl Records {
    /// No records yet, for a statement on `backend` (which says how times are written).
    pub(crate) fn new(backend: Backend) -> Records {
        Records {
            text: b"[".to_vec(),
            backend,
        }
    }

    /// Starts a record; its fields are added to what this returns, which ends it on drop.
    pub(crate) fn record(&mut self) -> Record<'_> {
        separate(&mut self.text, b'[');
        self.text.push(b'{');
        Record {
            text: &mut self.text,
            backend: self.backend,
        }
    }

    /// Adds a record of the model's columns; more fields may follow on what this returns.
    pub(crate) fn model<M: ModelTrait>(&mut self, model: &M) -> Record<'_> {
        let mut record = self.record();
        for column in <M::Entity as EntityTrait>::Column::iter() {
            record.field(column.as_str(), &model.get(column));
        }
        record
    }

    /// Adds a record of an active model's set columns (unset ones are left out, and so read
    /// as NULL: only what the database assigns is unset).
    pub(crate) fn active_model<A: ActiveModelTrait>(&mut self, model: &A) -> Record<'_> {
        let mut record = self.record();
        for column in <A::Entity as EntityTrait>::Column::iter() {
            if let ActiveValue::Set(value) | ActiveValue::Unchanged(value) = model.get(column) {
                record.field(column.as_str(), &value);
            }
        }
        record
    }

    /// The records as the JSON text of one parameter.
    pub(crate) fn parameter(mut self) -> Value {
        self.text.push(b']');
        // Only UTF-8 was written (names, `serde_json`'s strings, digits, hex), so this
        // takes the buffer as it is.
        let text =
            String::from_utf8(self.text).unwrap_or_else(|error| String::from_utf8_lossy(error.as_bytes()).into_owned());
        Value::String(Some(text))
    }
}

/// One record being written (see [`Records::record`]); closed when dropped.
#[derive(Debug)]
pub(crate) struct Record<'a> {
    text: &'a mut Vec<u8>,
    backend: Backend,
}

impl Record<'_> {
    /// Adds the field `name` (a column's name: plain ASCII) with `value`.
    pub(crate) fn field(&mut self, name: &str, value: &Value) -> &mut Self {
        separate(self.text, b'{');
        self.text.push(b'"');
        self.text.extend_from_slice(name.as_bytes());
        self.text.extend_from_slice(b"\":");
        write_json(self.text, value, self.backend);
        self
    }
}

impl Drop for Record<'_> {
    fn drop(&mut self) {
        self.text.push(b'}');
    }
}

/// A comma before the next element, unless `text` ends with the `opening` of its list or
/// object (no value written ends with `[` or `{`).
fn separate(text: &mut Vec<u8>, opening: u8) {
    if text.last() != Some(&opening) {
        text.push(b',');
    }
}

/// A value as the statement reads it back into the column's type: bytes in hex, times in
/// RFC 3339 as a bound value is stored — on PostgreSQL to the microsecond (its precision,
/// truncated), on SQLite as sqlx writes them (the text that SQLite compares and orders).
fn write_json(text: &mut Vec<u8>, value: &Value, backend: Backend) {
    match value {
        Value::Bool(Some(value)) => text.extend_from_slice(if *value { b"true" } else { b"false" }),
        // Writing to a Vec cannot fail.
        Value::Int(Some(value)) => {
            let _ = write!(text, "{value}");
        }
        Value::BigInt(Some(value)) => {
            let _ = write!(text, "{value}");
        }
        Value::String(Some(value)) => string(text, value),
        Value::ChronoDateTimeUtc(Some(value)) => string(
            text,
            &match backend {
                Backend::Postgres => value.to_rfc3339_opts(SecondsFormat::Micros, true),
                Backend::Sqlite => value.to_rfc3339_opts(SecondsFormat::AutoSi, false),
            },
        ),
        Value::Bytes(Some(bytes)) => string(text, &crate::hex(bytes)),
        _ => text.extend_from_slice(b"null"),
    }
}

/// `value` as a JSON string.
fn string(text: &mut Vec<u8>, value: &str) {
    // Writing to a Vec cannot fail, and a str always serializes.
    let _ = serde::Serialize::serialize(value, &mut serde_json::Serializer::new(text));
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};
    use sea_orm::Value;

    use super::Records;
    use crate::Backend;

    fn text(values: &[(&str, Value)]) -> String {
        text_for(Backend::Postgres, values)
    }

    fn text_for(backend: Backend, values: &[(&str, Value)]) -> String {
        let mut records = Records::new(backend);
        {
            let mut record = records.record();
            for (name, value) in values {
                record.field(name, value);
            }
        }
        records.record().field("n", &Value::Int(Some(1)));
        match records.parameter() {
            Value::String(Some(text)) => text,
            other => panic!("not text: {other:?}"),
        }
    }

    #[test]
    fn values_read_back_as_the_columns_hold_them() {
        let at = Utc.timestamp_opt(1_764_709_200, 123_456_789).single();
        let written = text(&[
            ("at", Value::ChronoDateTimeUtc(at)),
            ("bytes", Value::Bytes(Some(vec![0x00, 0x7f, 0xff]))),
            ("none", Value::String(None)),
            ("count", Value::BigInt(Some(-3))),
            ("text", Value::String(Some("a \"quoted\" \\ line\n\u{1}".to_owned()))),
            ("flag", Value::Bool(Some(false))),
        ]);
        let parsed: serde_json::Value =
            serde_json::from_str(&written).unwrap_or_else(|error| panic!("{error}: {written}"));
        assert_eq!(
            parsed,
            serde_json::json!([
                {
                    "at": "2025-12-02T21:00:00.123456Z",
                    "bytes": "007fff",
                    "none": null,
                    "count": -3,
                    "text": "a \"quoted\" \\ line\n\u{1}",
                    "flag": false,
                },
                { "n": 1 },
            ])
        );
    }

    #[test]
    fn no_records_are_an_empty_list() {
        for backend in [Backend::Postgres, Backend::Sqlite] {
            assert_eq!(Records::new(backend).parameter(), Value::String(Some("[]".to_owned())));
        }
    }

    #[test]
    fn times_for_sqlite_are_the_text_sqlx_binds() {
        // sqlx binds a time as RFC 3339 with as many digits as it needs (SQLite compares
        // the text, so a recordset must write the same).
        for (nanos, bound) in [
            (0, "2025-12-02T21:00:00+00:00"),
            (120_000_000, "2025-12-02T21:00:00.120+00:00"),
            (123_456_789, "2025-12-02T21:00:00.123456789+00:00"),
        ] {
            let at = Utc.timestamp_opt(1_764_709_200, nanos).single();
            let written = text_for(Backend::Sqlite, &[("at", Value::ChronoDateTimeUtc(at))]);
            let parsed: serde_json::Value = serde_json::from_str(&written).unwrap_or_else(|error| panic!("{error}"));
            assert_eq!(parsed[0]["at"], bound, "{written}");
        }
    }
}
