//! Rows handed to PostgreSQL as one JSON parameter and read back with `json_to_recordset`,
//! so a statement's text is the same whatever number of rows it carries: it is parsed
//! once per connection, where a multi-row `VALUES` list is a new statement for every
//! size. The columns and their types come from the entity's own definition.

use chrono::SecondsFormat;
use sea_orm::sea_query::ColumnType;
use sea_orm::{ActiveModelTrait, ActiveValue, ColumnTrait, EntityTrait, IdenStatic, Iterable, ModelTrait, Value};
use serde_json::{Map, Value as Json};

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

/// `alias.name, …` (decoded where needed): the values of an `INSERT … SELECT`.
pub(crate) fn selects(fields: &[Field], alias: &str) -> String {
    fields
        .iter()
        .map(|field| field.select(alias))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One record: the model's columns as a JSON object.
pub(crate) fn record<M: ModelTrait>(model: &M) -> Map<String, Json> {
    <M::Entity as EntityTrait>::Column::iter()
        .map(|column| (column.as_str().to_owned(), json(model.get(column))))
        .collect()
}

/// One record of an active model's set columns (unset ones are left out, and so read as
/// NULL: only what the database assigns is unset).
pub(crate) fn active_record<A: ActiveModelTrait>(model: &A) -> Map<String, Json> {
    <A::Entity as EntityTrait>::Column::iter()
        .filter_map(|column| match model.get(column) {
            ActiveValue::Set(value) | ActiveValue::Unchanged(value) => Some((column.as_str().to_owned(), json(value))),
            ActiveValue::NotSet => None,
        })
        .collect()
}

/// The records as the JSON text of one parameter.
pub(crate) fn parameter(records: Vec<Map<String, Json>>) -> Value {
    Value::String(Some(
        Json::Array(records.into_iter().map(Json::Object).collect()).to_string(),
    ))
}

/// A value as `json_to_recordset` reads it back into the column's type: times in RFC
/// 3339 to the microsecond (PostgreSQL's precision, truncated as a bound value is), bytes
/// in hex.
fn json(value: Value) -> Json {
    match value {
        Value::Bool(Some(value)) => Json::Bool(value),
        Value::Int(Some(value)) => value.into(),
        Value::BigInt(Some(value)) => value.into(),
        Value::String(Some(value)) => Json::String(value),
        Value::ChronoDateTimeUtc(Some(value)) => Json::String(value.to_rfc3339_opts(SecondsFormat::Micros, true)),
        Value::Bytes(Some(bytes)) => Json::String(crate::hex(&bytes)),
        _ => Json::Null,
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};
    use sea_orm::Value;

    use super::json;

    #[test]
    fn values_read_back_as_the_columns_hold_them() {
        let at = Utc.timestamp_opt(1_764_709_200, 123_456_789).single();
        assert_eq!(
            json(Value::ChronoDateTimeUtc(at)),
            serde_json::json!("2025-12-02T21:00:00.123456Z")
        );
        assert_eq!(
            json(Value::Bytes(Some(vec![0x00, 0x7f, 0xff]))),
            serde_json::json!("007fff")
        );
        assert_eq!(json(Value::String(None)), serde_json::Value::Null);
        assert_eq!(json(Value::BigInt(Some(-3))), serde_json::json!(-3));
    }
}
