//! The JSON Schema of the model format is checked in at `schemas/process-model.schema.json`
//! and must match what [`coachflow_model::json_schema`] generates. Editors and CI systems
//! outside this repository validate models with it, so it is also checked here against real
//! documents with a small validator for the keywords the schema uses (no extra dependency).

use std::path::{Path, PathBuf};

use coachflow_model::{IsoDuration, is_valid_key, is_valid_output_key, json_schema, parse};
use serde_json::{Map, Value, json};

const UPDATE_VARIABLE: &str = "COACHFLOW_UPDATE_SCHEMA";
const UPDATE_COMMAND: &str = "COACHFLOW_UPDATE_SCHEMA=1 cargo test -p coachflow-model --test schema";

fn repository_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn schema_file() -> PathBuf {
    repository_root().join("schemas/process-model.schema.json")
}

/// The schema as it is checked in: pretty JSON with keys in sorted order (whatever serde_json
/// features another crate turns on) and a trailing newline.
fn rendered_schema() -> String {
    let mut text = serde_json::to_string_pretty(&sorted(json_schema()))
        .unwrap_or_else(|error| panic!("the schema does not serialize: {error}"));
    text.push('\n');
    text
}

fn sorted(value: Value) -> Value {
    match value {
        Value::Object(object) => {
            let mut entries: Vec<(String, Value)> = object.into_iter().collect();
            entries.sort_by(|(left, _), (right, _)| left.cmp(right));
            Value::Object(entries.into_iter().map(|(key, value)| (key, sorted(value))).collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sorted).collect()),
        other => other,
    }
}

#[test]
fn the_checked_in_schema_is_up_to_date() {
    let path = schema_file();
    let generated = rendered_schema();
    if std::env::var_os(UPDATE_VARIABLE).is_some_and(|value| !value.is_empty() && value != "0") {
        if let Some(directory) = path.parent() {
            std::fs::create_dir_all(directory)
                .unwrap_or_else(|error| panic!("cannot create {}: {error}", directory.display()));
        }
        std::fs::write(&path, &generated).unwrap_or_else(|error| panic!("cannot write {}: {error}", path.display()));
        return;
    }
    let checked_in = match std::fs::read_to_string(&path) {
        Ok(text) => text.replace("\r\n", "\n"),
        Err(error) => panic!(
            "cannot read {}: {error}\nrun {UPDATE_COMMAND} to write it",
            path.display()
        ),
    };
    if checked_in != generated {
        let first_difference = checked_in
            .lines()
            .zip(generated.lines())
            .position(|(old, new)| old != new)
            .unwrap_or_else(|| checked_in.lines().count().min(generated.lines().count()));
        panic!(
            "schemas/process-model.schema.json is out of date with the document types (first difference at line {}: \
             checked in {:?}, generated {:?});\nrun {UPDATE_COMMAND}",
            first_difference + 1,
            checked_in.lines().nth(first_difference).unwrap_or("<end of file>"),
            generated.lines().nth(first_difference).unwrap_or("<end of file>"),
        );
    }
}

#[test]
fn the_schema_has_a_title_and_the_top_level_shape() {
    let schema = json_schema();
    assert_eq!(schema["title"], "Coachflow process model");
    assert_eq!(schema["$schema"], "https://json-schema.org/draft/2020-12/schema");
    assert_eq!(schema["type"], "object");
    assert_eq!(schema["required"], json!(["apiVersion", "kind", "metadata", "spec"]));
    assert_eq!(schema["additionalProperties"], false);
    assert_eq!(schema["$defs"]["Task"]["additionalProperties"], false);
    assert_eq!(schema["$defs"]["Task"]["required"], json!(["key", "name", "kind"]));
    assert_eq!(schema["$defs"]["Spec"]["required"], json!(["roles", "phases"]));
}

#[test]
fn every_object_of_the_schema_refuses_unknown_fields() {
    // The documents deny unknown fields; the schema must say so too, or an editor would
    // accept a misspelt field that parsing refuses.
    let schema = json_schema();
    let definitions = schema["$defs"]
        .as_object()
        .unwrap_or_else(|| panic!("the schema has no $defs"));
    let objects: Vec<&String> = definitions
        .iter()
        .filter(|(_, definition)| definition["type"] == "object")
        .map(|(name, _)| name)
        .collect();
    assert_eq!(
        objects,
        [
            "Exit",
            "Metadata",
            "Milestone",
            "Output",
            "Phase",
            "Repeat",
            "Role",
            "Spec",
            "Task",
            "Transition"
        ]
    );
    for name in objects {
        assert_eq!(
            definitions[name]["additionalProperties"], false,
            "{name} allows unknown fields"
        );
    }
}

#[test]
fn the_schema_patterns_are_the_validators_rules() {
    let schema = json_schema();
    let definitions = &schema["$defs"];
    for (definition, property) in [
        ("Metadata", "key"),
        ("Role", "key"),
        ("Milestone", "key"),
        ("Phase", "key"),
        ("Task", "key"),
    ] {
        assert_eq!(
            definitions[definition]["properties"][property]["pattern"], KEY_PATTERN,
            "{definition}.{property}"
        );
    }
    assert_eq!(
        definitions["Output"]["properties"]["key"]["pattern"],
        OUTPUT_KEY_PATTERN
    );
    for (definition, property) in [
        ("Task", "start_after"),
        ("Task", "due"),
        ("Task", "escalate_after"),
        ("Repeat", "every"),
        ("Repeat", "until"),
    ] {
        assert_eq!(
            definitions[definition]["properties"][property]["pattern"], DURATION_PATTERN,
            "{definition}.{property}"
        );
    }
    assert_eq!(
        definitions["Task"]["properties"]["reminders"]["items"]["pattern"],
        DURATION_PATTERN
    );
}

// ---------------------------------------------------------------------------------------
// A validator for the part of JSON Schema 2020-12 the generated schema uses
// ---------------------------------------------------------------------------------------

const KEY_PATTERN: &str = "^[a-z][a-z0-9-]{0,62}$";
const OUTPUT_KEY_PATTERN: &str = "^[a-z][a-z0-9_]{0,62}$";
const DURATION_PATTERN: &str = r"^P(?!$)(\d+Y)?(\d+M)?(\d+W)?(\d+D)?(T(?=\d)(\d+H)?(\d+M)?(\d+S)?)?$";

/// Keywords that only annotate.
const ANNOTATIONS: [&str; 6] = ["$schema", "$defs", "title", "description", "default", "format"];

/// Every way `value` breaks `schema`, as `path: what`. A keyword this validator does not know
/// is an error too, so a schema that grows a new kind of constraint is noticed here.
fn violations(root: &Value, schema: &Value, value: &Value, path: &str, found: &mut Vec<String>) {
    let here = if path.is_empty() { "(root)" } else { path };
    let Some(schema) = schema.as_object() else {
        found.push(format!("{here}: the schema here is not an object"));
        return;
    };
    for (keyword, argument) in schema {
        match keyword.as_str() {
            keyword if ANNOTATIONS.contains(&keyword) => {}
            "$ref" => {
                let target = argument
                    .as_str()
                    .and_then(|reference| reference.strip_prefix("#/$defs/"))
                    .and_then(|name| root["$defs"].get(name));
                match target {
                    Some(target) => violations(root, target, value, path, found),
                    None => found.push(format!("{here}: unresolvable $ref {argument}")),
                }
            }
            "type" => {
                let allowed: Vec<&str> = match argument {
                    Value::String(name) => vec![name.as_str()],
                    Value::Array(names) => names.iter().filter_map(Value::as_str).collect(),
                    _ => Vec::new(),
                };
                if !allowed.iter().any(|name| has_type(value, name)) {
                    found.push(format!("{here}: {value} is not of type {argument}"));
                }
            }
            "enum" => {
                if !argument.as_array().is_some_and(|values| values.contains(value)) {
                    found.push(format!("{here}: {value} is not one of {argument}"));
                }
            }
            "const" => {
                if argument != value {
                    found.push(format!("{here}: {value} is not {argument}"));
                }
            }
            "minimum" => {
                if let (Some(number), Some(minimum)) = (value.as_f64(), argument.as_f64())
                    && number < minimum
                {
                    found.push(format!("{here}: {value} is less than {argument}"));
                }
            }
            "pattern" => {
                if let Some(text) = value.as_str() {
                    let matches = match argument.as_str() {
                        Some(KEY_PATTERN) => is_valid_key(text),
                        Some(OUTPUT_KEY_PATTERN) => is_valid_output_key(text),
                        // Stricter than the pattern only in refusing zero durations.
                        Some(DURATION_PATTERN) => text.parse::<IsoDuration>().is_ok(),
                        _ => {
                            found.push(format!("{here}: the validator does not know the pattern {argument}"));
                            continue;
                        }
                    };
                    if !matches {
                        found.push(format!("{here}: {value} does not match {argument}"));
                    }
                }
            }
            "anyOf" | "oneOf" => {
                let branches = argument.as_array().map(Vec::as_slice).unwrap_or_default();
                let passing = branches
                    .iter()
                    .filter(|branch| {
                        let mut inner = Vec::new();
                        violations(root, branch, value, path, &mut inner);
                        inner.is_empty()
                    })
                    .count();
                let fine = if keyword == "anyOf" { passing >= 1 } else { passing == 1 };
                if !fine {
                    found.push(format!("{here}: {value} matches {passing} of the {keyword} branches"));
                }
            }
            "required" => {
                if let Some(object) = value.as_object() {
                    for name in argument.as_array().map(Vec::as_slice).unwrap_or_default() {
                        if let Some(name) = name.as_str()
                            && !object.contains_key(name)
                        {
                            found.push(format!("{here}: missing {name}"));
                        }
                    }
                }
            }
            "properties" => {
                if let (Some(object), Some(properties)) = (value.as_object(), argument.as_object()) {
                    for (name, property) in properties {
                        if let Some(field) = object.get(name) {
                            violations(root, property, field, &join(path, name), found);
                        }
                    }
                }
            }
            "additionalProperties" => {
                let known = schema.get("properties").and_then(Value::as_object);
                if let Some(object) = value.as_object() {
                    for (name, field) in object {
                        if known.is_some_and(|known| known.contains_key(name)) {
                            continue;
                        }
                        if argument == &Value::Bool(false) {
                            found.push(format!("{here}: unknown field {name}"));
                        } else {
                            violations(root, argument, field, &join(path, name), found);
                        }
                    }
                }
            }
            "items" => {
                if let Some(items) = value.as_array() {
                    for (index, item) in items.iter().enumerate() {
                        violations(root, argument, item, &format!("{path}[{index}]"), found);
                    }
                }
            }
            other => found.push(format!("{here}: the validator does not know the keyword {other}")),
        }
    }
}

fn has_type(value: &Value, name: &str) -> bool {
    match name {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        "null" => value.is_null(),
        _ => false,
    }
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_owned()
    } else {
        format!("{path}.{name}")
    }
}

fn schema_violations(document: &Value) -> Vec<String> {
    let schema = json_schema();
    let mut found = Vec::new();
    violations(&schema, &schema, document, "", &mut found);
    found
}

fn yaml_value(text: &str) -> Value {
    yaml_serde::from_str(text).unwrap_or_else(|error| panic!("not YAML: {error}"))
}

// ---------------------------------------------------------------------------------------
// Documents against the schema
// ---------------------------------------------------------------------------------------

const MINIMAL: &str = r#"
apiVersion: coachflow.dev/v1
kind: ProcessModel
metadata:
  key: minimal
  name: Minimal
spec:
  roles:
    - key: coach
  phases:
    - key: coaching
      name: Coaching
      tasks:
        - key: session
          name: Session
          kind: session
          assignee: coach
"#;

/// Every field of the format used at least once.
const EVERYTHING: &str = r#"
apiVersion: coachflow.dev/v1
kind: ProcessModel
metadata:
  key: everything
  name: Every field
  description: A model that uses every field of the format.
spec:
  roles:
    - {key: client, name: Client, required: true}
    - {key: coach, name: Coach, required: true}
    - {key: stakeholder, name: Stakeholder, multiple: true}
  milestones:
    - {key: feedback-collected, name: Feedback collected, description: Every 360 interview is done.}
    - {key: done}
  phases:
    - key: analysis
      name: Analysis
      description: Interviews and a plan.
      tasks:
        - key: interview
          name: 360 interview
          kind: interview
          description: One per stakeholder.
          assignee: coach
          participants: [stakeholder]
          for_each: stakeholder
          due: P3W
          reminders: [P1W, P2D]
          escalate_after: P4W
          milestone: feedback-collected
          outputs:
            - {key: themes, type: text, description: What came up., required: true, visibility: [coach]}
            - {key: rating, type: enum, values: [low, medium, high]}
            - {key: score, type: integer}
            - {key: weight, type: number}
            - {key: confidential, type: boolean}
            - {key: held_on, type: date}
            - {key: reference, type: string}
        - key: plan
          name: Development plan
          kind: document
          after: [interview]
          optional: true
          start_after: PT2H
      exit:
        when: tasks.interview.done && phase.approved
        approval: [client]
        milestone: done
        manual: true
      next:
        - {to: analysis, when: "phase.iteration < 2 && outputs.interview.rating == 'low'"}
        - {to: action}
    - key: action
      name: Action
      tasks:
        - key: call
          name: Coaching call
          kind: session
          repeat: {every: P2W, timezone: Europe/Berlin, count: 6, until: P6M}
  throughout:
    - key: pulse
      name: Pulse check
      kind: checkin
      repeat: {cron: "0 9 * * MON", timezone: America/New_York}
"#;

#[track_caller]
fn assert_conforms(document: &Value) {
    assert_eq!(schema_violations(document), Vec::<String>::new(), "{document:#}");
}

#[test]
fn a_minimal_model_conforms_to_the_schema() {
    let document = parse(MINIMAL).unwrap_or_else(|problems| panic!("{problems}"));
    coachflow_model::compile(document.clone()).unwrap_or_else(|problems| panic!("{problems}"));
    // As written, and as the document types write it back.
    assert_conforms(&yaml_value(MINIMAL));
    assert_conforms(&serde_json::to_value(&document).unwrap_or_else(|error| panic!("{error}")));
}

#[test]
fn a_model_using_every_field_conforms_to_the_schema() {
    let document = parse(EVERYTHING).unwrap_or_else(|problems| panic!("{problems}"));
    coachflow_model::compile(document.clone()).unwrap_or_else(|problems| panic!("{problems}"));
    assert_conforms(&yaml_value(EVERYTHING));
    assert_conforms(&serde_json::to_value(&document).unwrap_or_else(|error| panic!("{error}")));
}

#[test]
fn the_builtin_models_conform_to_the_schema() {
    let directory = repository_root().join("models");
    let Ok(entries) = std::fs::read_dir(&directory) else {
        return; // no models checked in yet
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|extension| extension == "yaml"))
        .collect();
    files.sort();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap_or_else(|error| panic!("{}: {error}", file.display()));
        let found = schema_violations(&yaml_value(&text));
        assert_eq!(found, Vec::<String>::new(), "{}", file.display());
    }
}

fn minimal() -> Map<String, Value> {
    match yaml_value(MINIMAL) {
        Value::Object(object) => object,
        other => panic!("not an object: {other}"),
    }
}

/// `edit` applied to the minimal model breaks the schema with exactly `expected`, and
/// parsing (the document types) refuses it as well.
#[track_caller]
fn assert_refused(edit: impl FnOnce(&mut Value), expected: &[&str]) {
    let mut document = Value::Object(minimal());
    edit(&mut document);
    assert_eq!(schema_violations(&document), expected, "{document:#}");
    let text = serde_json::to_string(&document).unwrap_or_else(|error| panic!("{error}"));
    assert!(parse(&text).is_err(), "parse accepted what the schema refuses: {text}");
}

#[test]
fn the_schema_refuses_what_parsing_refuses() {
    assert_refused(
        |document| document["spec"]["phases"][0]["tasks"][0]["asignee"] = json!("coach"),
        &["spec.phases[0].tasks[0]: unknown field asignee"],
    );
    assert_refused(
        |document| document["owner"] = json!("someone"),
        &["(root): unknown field owner"],
    );
    assert_refused(
        |document| {
            document
                .as_object_mut()
                .map(|object| object.remove("spec"))
                .unwrap_or_default();
        },
        &["(root): missing spec"],
    );
    assert_refused(
        |document| document["spec"]["phases"][0]["tasks"][0]["kind"] = json!("nap"),
        &[
            "spec.phases[0].tasks[0].kind: \"nap\" is not one of [\"meeting\",\"session\",\"interview\",\"assessment\",\"survey\",\"document\",\"approval\",\"checkin\",\"action\",\"custom\"]",
        ],
    );
    assert_refused(
        |document| document["spec"]["roles"][0]["multiple"] = json!("yes"),
        &["spec.roles[0].multiple: \"yes\" is not of type \"boolean\""],
    );
    assert_refused(
        |document| document["spec"]["phases"][0]["tasks"][0]["repeat"] = json!({"every": "P1W", "count": -1}),
        &["spec.phases[0].tasks[0].repeat: {\"count\":-1,\"every\":\"P1W\"} matches 0 of the anyOf branches"],
    );
}

#[test]
fn the_schema_refuses_bad_keys_and_durations_that_validation_refuses() {
    let mut document = Value::Object(minimal());
    document["metadata"]["key"] = json!("Minimal");
    document["spec"]["phases"][0]["tasks"][0]["due"] = json!("2 weeks");
    assert_eq!(
        schema_violations(&document),
        [
            "metadata.key: \"Minimal\" does not match \"^[a-z][a-z0-9-]{0,62}$\"",
            "spec.phases[0].tasks[0].due: \"2 weeks\" does not match \"^P(?!$)(\\\\d+Y)?(\\\\d+M)?(\\\\d+W)?(\\\\d+D)?(T(?=\\\\d)(\\\\d+H)?(\\\\d+M)?(\\\\d+S)?)?$\"",
        ]
    );
}
