//! Completion outputs: checked against the task's declared outputs, in canonical form.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use coachflow_model::{Model, OutputType, TaskId};

use crate::error::{DomainError, Violations};

const MAX_STRING_OUTPUT_CHARS: usize = 1_024;
const MAX_TEXT_OUTPUT_CHARS: usize = 65_536;

/// Checks completion outputs against the task's declared outputs and returns them in their
/// canonical form (integers as integers, dates as `YYYY-MM-DD`). Every violation is
/// reported, each at `outputs.<key>`.
pub(crate) fn check_outputs(
    model: &Model,
    task: TaskId,
    outputs: &BTreeMap<String, serde_json::Value>,
) -> Result<BTreeMap<String, serde_json::Value>, DomainError> {
    use serde_json::Value;
    let spec = model.task_spec(task);
    let mut violations = Violations::default();
    let mut accepted = BTreeMap::new();
    for (key, value) in outputs {
        let field = format!("outputs.{key}");
        let Some(declared) = spec.outputs.iter().find(|output| &output.key == key) else {
            let known: Vec<&str> = spec.outputs.iter().map(|output| output.key.as_str()).collect();
            violations.add(
                field,
                if known.is_empty() {
                    format!("task '{}' records no outputs", spec.key)
                } else {
                    format!("unknown output; task '{}' records {}", spec.key, known.join(", "))
                },
            );
            continue;
        };
        if value.is_null() {
            continue;
        }
        let checked = match (declared.output_type, value) {
            (OutputType::String | OutputType::Text, Value::String(text)) => {
                let limit = if declared.output_type == OutputType::String {
                    MAX_STRING_OUTPUT_CHARS
                } else {
                    MAX_TEXT_OUTPUT_CHARS
                };
                if text.chars().count() > limit {
                    Err(format!("must be at most {limit} characters"))
                } else {
                    Ok(value.clone())
                }
            }
            (OutputType::Number, Value::Number(_)) => Ok(value.clone()),
            (OutputType::Integer, Value::Number(number)) => match (number.as_i64(), number.as_f64()) {
                (Some(_), _) => Ok(value.clone()),
                // Numbers arriving as doubles (protobuf Struct) with no fraction are integers.
                (None, Some(float)) if float.fract() == 0.0 && float.abs() < 9.0e15 =>
                {
                    #[allow(clippy::cast_possible_truncation)]
                    Ok(Value::from(float as i64))
                }
                _ => Err(format!("must be a whole number, not {number}")),
            },
            (OutputType::Boolean, Value::Bool(_)) => Ok(value.clone()),
            (OutputType::Date, Value::String(text)) => match NaiveDate::parse_from_str(text, "%Y-%m-%d") {
                Ok(date) => Ok(Value::from(date.format("%Y-%m-%d").to_string())),
                Err(_) => Err(format!("'{text}' is not a date in the form YYYY-MM-DD")),
            },
            (OutputType::Enum, Value::String(text)) if declared.values.contains(text) => Ok(value.clone()),
            (OutputType::Enum, Value::String(text)) => {
                Err(format!("'{text}' is not one of {}", declared.values.join(", ")))
            }
            (expected, _) => Err(format!("must be {}, not {}", type_phrase(expected), json_kind(value))),
        };
        match checked {
            Ok(value) => {
                accepted.insert(key.clone(), value);
            }
            Err(message) => violations.add(field, message),
        }
    }
    for declared in spec.outputs.iter().filter(|output| output.required) {
        let blank = |value: &Value| value.is_null() || value.as_str().is_some_and(|text| text.trim().is_empty());
        if outputs.get(&declared.key).is_none_or(blank) {
            violations.add(format!("outputs.{}", declared.key), "is required to complete this task");
        }
    }
    violations.into_result()?;
    Ok(accepted)
}

fn type_phrase(output_type: OutputType) -> &'static str {
    match output_type {
        OutputType::String | OutputType::Text => "a string",
        OutputType::Number => "a number",
        OutputType::Integer => "a whole number",
        OutputType::Boolean => "true or false",
        OutputType::Date => "a date (YYYY-MM-DD)",
        OutputType::Enum => "one of the listed values",
    }
}

fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "a list",
        serde_json::Value::Object(_) => "an object",
    }
}
