//! The JSON Schema of the model format is checked in at `schemas/process-model.schema.json`
//! and must match what [`coachflow_model::json_schema`] generates. Editors and CI systems
//! outside this repository validate models with it, so it is also checked here against real
//! documents with a real JSON Schema 2020-12 validator (boon), patterns included.

use std::path::{Path, PathBuf};

use boon::{Compiler, Draft, SchemaIndex, Schemas, ValidationError};
use coachflow_model::{DURATION_PATTERN, IsoDuration, KEY_PATTERN, is_valid_key, json_schema, parse};
use proptest::prelude::*;
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
        ("Output", "key"),
    ] {
        assert_eq!(
            definitions[definition]["properties"][property]["pattern"], KEY_PATTERN,
            "{definition}.{property}"
        );
    }
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
// The schema as a real JSON Schema 2020-12 validator (boon) reads it
// ---------------------------------------------------------------------------------------

const SCHEMA_URL: &str = "urn:coachflow:process-model";

/// The checked-in schema, compiled by boon.
struct Validator {
    schemas: Schemas,
    index: SchemaIndex,
}

impl Validator {
    fn new() -> Validator {
        let text = std::fs::read_to_string(schema_file()).unwrap_or_else(|error| panic!("{error}"));
        let schema: Value = serde_json::from_str(&text).unwrap_or_else(|error| panic!("{error}"));
        let mut compiler = Compiler::new();
        compiler.set_default_draft(Draft::V2020_12);
        compiler.enable_format_assertions();
        compiler
            .add_resource(SCHEMA_URL, schema)
            .unwrap_or_else(|error| panic!("{error:#}"));
        let mut schemas = Schemas::new();
        let index = compiler
            .compile(SCHEMA_URL, &mut schemas)
            .unwrap_or_else(|error| panic!("the checked-in schema does not compile: {error:#}"));
        Validator { schemas, index }
    }

    /// Every leaf error, as `location: what` (`/spec/roles/0/multiple: want boolean, but got string`).
    fn violations(&self, document: &Value) -> Vec<String> {
        let Err(error) = self.schemas.validate(document, self.index) else {
            return Vec::new();
        };
        let mut leaves = Vec::new();
        collect_leaves(&error, &mut leaves);
        leaves.sort();
        leaves.dedup();
        leaves
    }
}

fn collect_leaves(error: &ValidationError<'_, '_>, leaves: &mut Vec<String>) {
    if error.causes.is_empty() {
        leaves.push(format!("{}: {}", error.instance_location, error.kind));
    }
    for cause in &error.causes {
        collect_leaves(cause, leaves);
    }
}

fn schema_violations(document: &Value) -> Vec<String> {
    Validator::new().violations(document)
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

/// The YAML models of a directory of the repository, sorted.
fn models_in(directory: &str) -> Vec<PathBuf> {
    let directory = repository_root().join(directory);
    let entries = std::fs::read_dir(&directory).unwrap_or_else(|error| panic!("{}: {error}", directory.display()));
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|extension| extension == "yaml"))
        .collect();
    files.sort();
    files
}

#[test]
fn the_builtin_and_test_models_conform_to_the_schema() {
    let validator = Validator::new();
    let builtin = models_in("models");
    let testing = models_in("integration-tests/models");
    assert!(builtin.len() >= 3 && !testing.is_empty(), "{builtin:?} {testing:?}");
    for file in builtin.iter().chain(&testing) {
        let text = std::fs::read_to_string(file).unwrap_or_else(|error| panic!("{}: {error}", file.display()));
        let found = validator.violations(&yaml_value(&text));
        assert_eq!(found, Vec::<String>::new(), "{}", file.display());
        // And the document types agree: what the schema accepts parses and compiles.
        coachflow_model::Model::from_text(&text).unwrap_or_else(|problems| panic!("{}: {problems}", file.display()));
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
        &["/spec/phases/0/tasks/0: additionalProperties 'asignee' not allowed"],
    );
    assert_refused(
        |document| document["owner"] = json!("someone"),
        &[": additionalProperties 'owner' not allowed"],
    );
    assert_refused(
        |document| {
            document
                .as_object_mut()
                .map(|object| object.remove("spec"))
                .unwrap_or_default();
        },
        &[": missing properties 'spec'"],
    );
    assert_refused(
        |document| document["spec"]["phases"][0]["tasks"][0]["kind"] = json!("nap"),
        &[
            "/spec/phases/0/tasks/0/kind: value must be one of 'meeting', 'session', 'interview', 'assessment', 'survey', 'document', 'approval', 'checkin', 'action', 'custom'",
        ],
    );
    assert_refused(
        |document| document["spec"]["roles"][0]["multiple"] = json!("yes"),
        &["/spec/roles/0/multiple: want boolean, but got string"],
    );
    assert_refused(
        |document| document["spec"]["phases"][0]["tasks"][0]["repeat"] = json!({"every": "P1W", "count": -1}),
        &[
            "/spec/phases/0/tasks/0/repeat/count: must be >=1, but got -1",
            "/spec/phases/0/tasks/0/repeat: want null, but got object",
        ],
    );
}

#[test]
fn the_schema_refuses_bad_keys_and_durations_that_validation_refuses() {
    let mut document = Value::Object(minimal());
    document["metadata"]["key"] = json!("Minimal");
    document["spec"]["phases"][0]["tasks"][0]["due"] = json!("2 weeks");
    let found = schema_violations(&document);
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(
        found[0].starts_with("/metadata/key: 'Minimal' does not match pattern"),
        "{found:?}"
    );
    assert!(
        found[1].starts_with("/spec/phases/0/tasks/0/due: '2 weeks' does not match pattern"),
        "{found:?}"
    );
}

#[test]
fn snake_case_and_kebab_case_keys_conform_everywhere() {
    let mut document = Value::Object(minimal());
    document["metadata"]["key"] = json!("grow_model");
    document["spec"]["roles"][0]["key"] = json!("line_manager");
    document["spec"]["phases"][0]["key"] = json!("goal-setting");
    document["spec"]["phases"][0]["tasks"][0]["key"] = json!("chemistry_call");
    document["spec"]["phases"][0]["tasks"][0]["assignee"] = json!("line_manager");
    document["spec"]["phases"][0]["tasks"][0]["outputs"] = json!([{"key": "goal-statement", "type": "text"}]);
    assert_eq!(schema_violations(&document), Vec::<String>::new());
    let text = serde_json::to_string(&document).unwrap_or_else(|error| panic!("{error}"));
    coachflow_model::Model::from_text(&text).unwrap_or_else(|problems| panic!("{problems}"));
}

/// Whether boon's reading of `pattern` accepts `text`.
fn pattern_accepts(validator: &Schemas, index: SchemaIndex, text: &str) -> bool {
    validator.validate(&json!(text), index).is_ok()
}

fn pattern_schema(pattern: &'static str) -> &'static (Schemas, SchemaIndex) {
    static COMPILED: std::sync::Mutex<Vec<(&'static str, &'static (Schemas, SchemaIndex))>> =
        std::sync::Mutex::new(Vec::new());
    let mut compiled = COMPILED.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((_, found)) = compiled.iter().find(|(known, _)| *known == pattern) {
        return found;
    }
    let found: &'static (Schemas, SchemaIndex) = Box::leak(Box::new(compile_pattern(pattern)));
    compiled.push((pattern, found));
    found
}

fn compile_pattern(pattern: &str) -> (Schemas, SchemaIndex) {
    let mut compiler = Compiler::new();
    compiler.set_default_draft(Draft::V2020_12);
    compiler
        .add_resource("urn:pattern", json!({"type": "string", "pattern": pattern}))
        .unwrap_or_else(|error| panic!("{error:#}"));
    let mut schemas = Schemas::new();
    let index = compiler
        .compile("urn:pattern", &mut schemas)
        .unwrap_or_else(|error| panic!("{pattern}: {error:#}"));
    (schemas, index)
}

#[test]
fn the_published_key_pattern_is_the_validators_rule() {
    let (schemas, index) = pattern_schema(KEY_PATTERN);
    for key in ["a", "goal_statement", "goal-statement", "x9", "a_-_b", &"k".repeat(63)] {
        assert!(pattern_accepts(schemas, *index, key) && is_valid_key(key), "{key}");
    }
    for key in [
        "",
        "Goal",
        "_goal",
        "-goal",
        "9x",
        "goal statement",
        "goal.x",
        "gøal",
        &"k".repeat(64),
    ] {
        assert!(!pattern_accepts(schemas, *index, key) && !is_valid_key(key), "{key}");
    }
}

#[test]
fn the_published_duration_pattern_is_the_parsers_rule() {
    let (schemas, index) = pattern_schema(DURATION_PATTERN);
    for text in [
        "P14D",
        "P6W",
        "PT2H",
        "P1M2DT3H",
        "P1Y2M3W4DT5H6M7S",
        "PT30M",
        "PT1S",
        "P1MT1M",
    ] {
        assert!(
            pattern_accepts(schemas, *index, text) && text.parse::<IsoDuration>().is_ok(),
            "{text}"
        );
    }
    for text in [
        "P", "PT", "P1", "P1H", "PT1D", "P1DT", "P1D2Y", "P1.5D", "2 weeks", "p1d", "P1W1W",
    ] {
        assert!(
            !pattern_accepts(schemas, *index, text) && text.parse::<IsoDuration>().is_err(),
            "{text}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn the_key_pattern_agrees_with_the_validator(key in "[a-zA-Z0-9_ .-]{0,70}") {
        let (schemas, index) = pattern_schema(KEY_PATTERN);
        prop_assert_eq!(pattern_accepts(schemas, *index, &key), is_valid_key(&key), "{}", key);
    }

    #[test]
    fn the_duration_pattern_agrees_with_the_parser(text in "P[0-9YMWDTHS]{0,10}") {
        let (schemas, index) = pattern_schema(DURATION_PATTERN);
        // The parser also refuses durations of zero (P0D), which a pattern does not try to
        // see: compare the shapes, with every zero made a one.
        let nonzero = text.replace('0', "1");
        prop_assert_eq!(pattern_accepts(schemas, *index, &text), nonzero.parse::<IsoDuration>().is_ok(), "{}", text);
    }
}
