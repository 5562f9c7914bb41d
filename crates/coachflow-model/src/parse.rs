//! Reading a model document from YAML or JSON text.

use crate::compile::{Problem, Problems};
use crate::document::ProcessModel;

/// Parses YAML or JSON (told apart by the first non-blank character) into a document.
/// A syntax or shape error comes back as one problem with the path where it was found.
pub fn parse(text: &str) -> Result<ProcessModel, Problems> {
    let looks_like_json = text.trim_start().starts_with('{');
    let (path, message) = if looks_like_json {
        let mut deserializer = serde_json::Deserializer::from_str(text);
        match serde_path_to_error::deserialize(&mut deserializer) {
            Ok(document) => return Ok(document),
            Err(error) => (render_path(error.path()), error.into_inner().to_string()),
        }
    } else {
        match serde_path_to_error::deserialize(yaml_serde::Deserializer::from_str(text)) {
            Ok(document) => return Ok(document),
            Err(error) => {
                let message = error.inner().to_string();
                let message = strip_own_path(&error.path().to_string(), &message).to_owned();
                (render_path(error.path()), message)
            }
        }
    };
    Err(Problems(vec![Problem::new(path, message)]))
}

/// Writes a document path as problems do everywhere: `spec.phases[0].tasks[1]`, a key that
/// is not a plain name in brackets as a JSON string (`spec["a b"]`), so that every path reads
/// back into the same segments. A syntax error inside a mapping leaves the parser at a key it
/// could not read (serde_path_to_error's `?`): the problem is in the enclosing mapping.
fn render_path(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut rendered = String::new();
    for segment in path {
        match segment {
            Segment::Seq { index } => rendered.push_str(&format!("[{index}]")),
            Segment::Map { key } | Segment::Enum { variant: key } => push_key(&mut rendered, key),
            Segment::Unknown => break,
        }
    }
    rendered
}

fn push_key(path: &mut String, key: &str) {
    let plain = key
        .chars()
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic() || first == '_')
        && key
            .chars()
            .all(|character| character.is_ascii_alphanumeric() || character == '_' || character == '-');
    if plain {
        if !path.is_empty() {
            path.push('.');
        }
        path.push_str(key);
    } else {
        path.push('[');
        path.push_str(&serde_json::Value::String(key.to_owned()).to_string());
        path.push(']');
    }
}

/// yaml_serde puts the path it was at in front of its message; the path is reported on its
/// own already, so the message should not say it again.
fn strip_own_path<'a>(path: &str, message: &'a str) -> &'a str {
    match message.split_once(": ") {
        Some((prefix, rest)) if !prefix.is_empty() && !prefix.contains(' ') && path.starts_with(prefix) => rest,
        _ => message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_syntax_error_is_reported_at_the_enclosing_mapping() {
        let problems =
            parse("apiVersion: coachflow.dev/v1\nkind: ProcessModel\nmetadata: {key: broken, name: Broken\nspec:\n")
                .unwrap_err();
        assert_eq!(problems.0.len(), 1);
        assert_eq!(problems.0[0].path, "metadata", "{}", problems.0[0]);
        assert!(problems.0[0].message.contains("line 4"), "{}", problems.0[0]);
    }

    #[test]
    fn reports_the_path_of_a_misspelt_field() {
        let text = "apiVersion: coachflow.dev/v1\nkind: ProcessModel\nmetadata: {key: m, name: M}\nspec:\n  roles: [{key: coach}]\n  phases:\n    - key: one\n      name: One\n      tasks:\n        - {key: a, name: A, kind: meeting, asignee: coach}\n";
        let problems = parse(text).unwrap_err().0;
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].path, "spec.phases[0].tasks[0].asignee");
        assert!(
            problems[0].message.contains("unknown field `asignee`"),
            "{}",
            problems[0].message
        );
    }

    #[test]
    fn a_key_that_is_not_a_plain_name_is_quoted_in_the_path() {
        let problems = parse("apiVersion: coachflow.dev/v1\n\"0[ x\": 1\n").unwrap_err().0;
        assert_eq!(problems[0].path, r#"["0[ x"]"#, "{}", problems[0]);
        let problems = parse(r#"{"metadata": {"key": "m", "a.b": 1}}"#).unwrap_err().0;
        assert_eq!(problems[0].path, r#"metadata["a.b"]"#, "{}", problems[0]);
    }

    #[test]
    fn reads_json_too() {
        let text = r#"{"apiVersion": "coachflow.dev/v1", "kind": "ProcessModel",
            "metadata": {"key": "m", "name": "M"},
            "spec": {"roles": [{"key": "coach"}], "phases": [{"key": "one", "name": "One", "tasks": [{"key": "a", "name": "A", "kind": "nap"}]}]}}"#;
        let problems = parse(text).unwrap_err().0;
        assert_eq!(problems[0].path, "spec.phases[0].tasks[0].kind");
        assert!(
            problems[0].message.contains("unknown variant `nap`"),
            "{}",
            problems[0].message
        );
    }
}
