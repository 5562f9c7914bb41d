//! Arbitrary input never panics the model language, and every refusal is a problem an author
//! can act on: a message, at a path that names where in their document it is.
//!
//! Three sources of input: any text at all, YAML-looking text, and the built-in and test
//! models with random mutations (a field removed, a value replaced by anything, a field
//! added, a reference or a condition rewritten), which reach far deeper into validation and
//! CEL compilation than random text does. `fuzz/` runs the same checks coverage-guided.

use std::path::{Path, PathBuf};

use coachflow_model::{Model, Problems, compile, diff, parse, render_mermaid};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde_json::{Map, Value};

fn repository_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Every model this repository ships or tests with, as JSON values.
fn seed_models() -> &'static [Value] {
    static SEEDS: std::sync::OnceLock<Vec<Value>> = std::sync::OnceLock::new();
    SEEDS.get_or_init(|| {
        let mut seeds = Vec::new();
        for folder in ["models", "integration-tests/models"] {
            let mut files: Vec<PathBuf> = std::fs::read_dir(repository_root().join(folder))
                .unwrap_or_else(|error| panic!("{folder}: {error}"))
                .map(|entry| entry.unwrap_or_else(|error| panic!("{folder}: {error}")).path())
                .filter(|path| path.extension().is_some_and(|extension| extension == "yaml"))
                .collect();
            files.sort();
            for file in files {
                let text = std::fs::read_to_string(&file).unwrap_or_else(|error| panic!("{}: {error}", file.display()));
                let value: Value =
                    yaml_serde::from_str(&text).unwrap_or_else(|error| panic!("{}: {error}", file.display()));
                seeds.push(value);
            }
        }
        assert!(seeds.len() >= 3, "the built-in models are missing");
        seeds
    })
}

/// The field names the seed models use, so that mutations add fields validation knows.
fn vocabulary() -> &'static [String] {
    static WORDS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    WORDS.get_or_init(|| {
        fn walk(value: &Value, words: &mut std::collections::BTreeSet<String>) {
            match value {
                Value::Object(object) => {
                    for (key, value) in object {
                        words.insert(key.clone());
                        walk(value, words);
                    }
                }
                Value::Array(items) => items.iter().for_each(|item| walk(item, words)),
                _ => {}
            }
        }
        let mut words = std::collections::BTreeSet::new();
        seed_models().iter().for_each(|seed| walk(seed, &mut words));
        words.into_iter().collect()
    })
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Field(String),
    Index(usize),
}

/// Every node of a document, as the segments that lead to it (the root is the empty path).
fn node_paths(value: &Value) -> Vec<Vec<Segment>> {
    fn walk(value: &Value, here: &mut Vec<Segment>, out: &mut Vec<Vec<Segment>>) {
        out.push(here.clone());
        match value {
            Value::Object(object) => {
                for (key, value) in object {
                    here.push(Segment::Field(key.clone()));
                    walk(value, here, out);
                    here.pop();
                }
            }
            Value::Array(items) => {
                for (index, item) in items.iter().enumerate() {
                    here.push(Segment::Index(index));
                    walk(item, here, out);
                    here.pop();
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(value, &mut Vec::new(), &mut out);
    out
}

fn node_mut<'a>(mut value: &'a mut Value, path: &[Segment]) -> Option<&'a mut Value> {
    for segment in path {
        value = match (segment, value) {
            (Segment::Field(name), Value::Object(object)) => object.get_mut(name)?,
            (Segment::Index(index), Value::Array(items)) => items.get_mut(*index)?,
            _ => return None,
        };
    }
    Some(value)
}

fn node<'a>(mut value: &'a Value, path: &[Segment]) -> Option<&'a Value> {
    for segment in path {
        value = match (segment, value) {
            (Segment::Field(name), Value::Object(object)) => object.get(name)?,
            (Segment::Index(index), Value::Array(items)) => items.get(*index)?,
            _ => return None,
        };
    }
    Some(value)
}

/// Reads a problem's path (`spec.phases[2].tasks[0].after[0]`) back into segments; `None`
/// when it is not of that form.
fn read_path(path: &str) -> Option<Vec<Segment>> {
    let mut segments = Vec::new();
    let mut rest = path;
    let mut first = true;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix("[\"") {
            // A quoted key: a JSON string, then the closing bracket.
            let mut escaped = false;
            let end = after.char_indices().find_map(|(at, character)| {
                let closes = character == '"' && !escaped;
                escaped = character == '\\' && !escaped;
                closes.then_some(at)
            })?;
            let key: String = serde_json::from_str(&rest[1..end + 3]).ok()?;
            segments.push(Segment::Field(key));
            rest = after[end + 1..].strip_prefix(']')?;
        } else if let Some(after) = rest.strip_prefix('[') {
            let (digits, tail) = after.split_once(']')?;
            segments.push(Segment::Index(digits.parse().ok()?));
            rest = tail;
        } else {
            let body = if first { rest } else { rest.strip_prefix('.')? };
            let end = body.find(['.', '[']).unwrap_or(body.len());
            let name = &body[..end];
            if name.is_empty() {
                return None;
            }
            segments.push(Segment::Field(name.to_owned()));
            rest = &body[end..];
        }
        first = false;
    }
    Some(segments)
}

/// Parses and validates `text` as the server does; on success also renders, diffs and
/// re-reads the model, which must not panic either.
fn check(text: &str) -> Result<Model, Problems> {
    let document = parse(text)?;
    let model = compile(document)?;
    let _ = render_mermaid(model.document());
    assert_no_changes(&model);
    Ok(model)
}

fn assert_no_changes(model: &Model) {
    let changes = diff(model, model).changes;
    assert!(changes.is_empty(), "a model differs from itself: {changes:?}");
}

/// A refusal must say what is wrong and where: at least one problem, each with a message and
/// a well-formed path that leads into `document` at least as far as the node that holds the
/// fault (its last segment may name a field that is missing).
fn assert_actionable(problems: &Problems, document: Option<&Value>) -> Result<(), TestCaseError> {
    prop_assert!(!problems.0.is_empty(), "a refusal without a problem");
    for problem in &problems.0 {
        prop_assert!(
            !problem.message.trim().is_empty(),
            "a problem without a message at '{}'",
            problem.path
        );
        let segments = read_path(&problem.path);
        prop_assert!(segments.is_some(), "a problem at a path that is not one: {problem}");
        if let (Some(document), Some(segments)) = (document, segments) {
            let holder = &segments[..segments.len().saturating_sub(1)];
            prop_assert!(
                node(document, holder).is_some(),
                "a problem at a path that is not in the document: {problem}\n{}",
                serde_json::to_string(document).unwrap_or_default()
            );
        }
    }
    Ok(())
}

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        (-1.0e6f64..1.0e6).prop_map(Value::from),
        prop::sample::select(vocabulary()).prop_map(Value::String),
        "[a-z][a-z0-9_-]{0,12}".prop_map(Value::String),
        "P[0-9]{0,3}[DWMY]?(T[0-9]{0,2}[HMS])?".prop_map(Value::String),
        condition().prop_map(Value::String),
        any::<String>().prop_map(Value::String),
    ]
}

/// Text in the shape of the CEL conditions models write, often broken.
fn condition() -> impl Strategy<Value = String> {
    let atom = prop_oneof![
        Just("tasks_done".to_owned()),
        Just("outputs".to_owned()),
        Just("phase".to_owned()),
        Just("task".to_owned()),
        Just("now".to_owned()),
        "outputs\\.[a-z_-]{1,10}(\\.[a-z_]{1,8})?",
        "outputs\\['[a-z_-]{1,10}'\\]",
        "'[a-z_-]{0,10}'",
        "[0-9]{1,4}",
        Just("true".to_owned()),
        Just("null".to_owned()),
        "[a-z_]{1,8}\\(",
    ];
    prop::collection::vec(
        (
            atom,
            prop::sample::select(vec![
                " && ", " || ", " == ", " >= ", " in ", ".size()", " + ", "!", "(", ")", "[", "]", " ? ", " : ", "",
            ]),
        ),
        1..6,
    )
    .prop_map(|parts| parts.into_iter().map(|(atom, join)| format!("{atom}{join}")).collect())
}

fn arbitrary_value() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec(
                (
                    prop_oneof![prop::sample::select(vocabulary()), "[a-zA-Z_][a-zA-Z0-9_]{0,8}"],
                    inner
                ),
                0..4
            )
            .prop_map(|entries| Value::Object(entries.into_iter().collect::<Map<String, Value>>())),
        ]
    })
}

#[derive(Debug, Clone)]
enum Mutation {
    Remove,
    Replace(Value),
    Insert(String, Value),
    /// A string anywhere in the document becomes another one from the models (a reference to
    /// a task of another phase, a role where a duration goes, …).
    Reword(String),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        2 => Just(Mutation::Remove),
        3 => arbitrary_value().prop_map(Mutation::Replace),
        2 => (prop::sample::select(vocabulary()), arbitrary_value()).prop_map(|(key, value)| Mutation::Insert(key, value)),
        3 => prop_oneof![prop::sample::select(vocabulary()), condition()].prop_map(Mutation::Reword),
    ]
}

fn apply(document: &mut Value, at: &[Segment], mutation: Mutation) {
    match mutation {
        Mutation::Remove => {
            let Some((last, parent)) = at.split_last() else {
                *document = Value::Null;
                return;
            };
            match (node_mut(document, parent), last) {
                (Some(Value::Object(object)), Segment::Field(name)) => {
                    object.remove(name);
                }
                (Some(Value::Array(items)), Segment::Index(index)) if *index < items.len() => {
                    items.remove(*index);
                }
                _ => {}
            }
        }
        Mutation::Replace(value) => {
            if let Some(node) = node_mut(document, at) {
                *node = value;
            }
        }
        Mutation::Insert(key, value) => match node_mut(document, at) {
            Some(Value::Object(object)) => {
                object.insert(key, value);
            }
            Some(Value::Array(items)) => items.push(value),
            _ => {}
        },
        Mutation::Reword(text) => {
            if let Some(node @ Value::String(_)) = node_mut(document, at) {
                *node = Value::String(text);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3_000))]

    #[test]
    fn any_text_is_read_or_refused_with_a_path(text in any::<String>()) {
        if let Err(problems) = check(&text) {
            assert_actionable(&problems, None)?;
        }
    }

    #[test]
    fn yaml_looking_text_is_read_or_refused_with_a_path(
        text in "(apiVersion|kind|metadata|spec|phases|tasks|key|  |- |: |\\{|\\}|\\[|\\]|, |\n|[a-z0-9_-]{1,8}|'|\"|#|&a|\\*a|!!str |\t)*"
    ) {
        if let Err(problems) = check(&text) {
            assert_actionable(&problems, None)?;
        }
    }

    #[test]
    fn a_mutated_model_is_read_or_refused_with_a_path(
        seed in 0..64usize,
        mutations in prop::collection::vec((any::<prop::sample::Index>(), mutation()), 1..4),
        as_json in any::<bool>(),
    ) {
        let seeds = seed_models();
        let mut document = seeds[seed % seeds.len()].clone();
        for (at, mutation) in mutations {
            let paths = node_paths(&document);
            let at = &paths[at.index(paths.len())];
            apply(&mut document, at, mutation);
        }
        let text = if as_json {
            serde_json::to_string_pretty(&document).map_err(|error| TestCaseError::fail(error.to_string()))?
        } else {
            yaml_serde::to_string(&document).map_err(|error| TestCaseError::fail(error.to_string()))?
        };
        if let Err(problems) = check(&text) {
            assert_actionable(&problems, Some(&document))?;
        }
    }
}

#[test]
fn the_seed_models_are_valid_as_yaml_and_as_json() {
    for seed in seed_models() {
        for text in [
            yaml_serde::to_string(seed).unwrap_or_else(|error| panic!("YAML: {error}")),
            serde_json::to_string(seed).unwrap_or_else(|error| panic!("JSON: {error}")),
        ] {
            if let Err(problems) = check(&text) {
                panic!("{problems}");
            }
        }
    }
}

#[test]
fn paths_are_read_back_into_segments() {
    assert_eq!(
        read_path("spec.phases[2].tasks[0].after[0]"),
        Some(vec![
            Segment::Field("spec".into()),
            Segment::Field("phases".into()),
            Segment::Index(2),
            Segment::Field("tasks".into()),
            Segment::Index(0),
            Segment::Field("after".into()),
            Segment::Index(0),
        ])
    );
    assert_eq!(read_path(""), Some(Vec::new()));
    assert_eq!(
        read_path(r#"spec["a.b \"c\""][1]"#),
        Some(vec![
            Segment::Field("spec".into()),
            Segment::Field("a.b \"c\"".into()),
            Segment::Index(1)
        ])
    );
    for broken in [
        "spec..phases",
        "spec.phases[x]",
        ".spec",
        "spec[1",
        r#"spec["a"#,
        r#"spec["a"x"#,
    ] {
        assert_eq!(read_path(broken), None, "{broken}");
    }
}
