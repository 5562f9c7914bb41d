//! Reading a model document from YAML or JSON text.

use crate::compile::{Problem, Problems};
use crate::document::ProcessModel;

/// Parses YAML or JSON (told apart by the first non-blank character) into a document.
/// A syntax or shape error comes back as one problem with the path where it was found.
pub fn parse(text: &str) -> Result<ProcessModel, Problems> {
    let looks_like_json = text.trim_start().starts_with('{');
    let result = if looks_like_json {
        let mut deserializer = serde_json::Deserializer::from_str(text);
        serde_path_to_error::deserialize(&mut deserializer)
            .map_err(|error| (error.path().to_string(), error.into_inner().to_string()))
    } else {
        serde_path_to_error::deserialize(yaml_serde::Deserializer::from_str(text)).map_err(|error| {
            let path = error.path().to_string();
            let message = error.into_inner().to_string();
            let message = strip_own_path(&path, &message).to_owned();
            (path, message)
        })
    };
    result.map_err(|(path, message)| {
        // A syntax error inside a mapping leaves the parser at a key it could not read, which
        // serde_path_to_error writes `?`: the problem is in the enclosing mapping.
        let mut path = path.as_str();
        while let Some(enclosing) = path.strip_suffix(".?").or_else(|| path.strip_suffix('?')) {
            path = enclosing;
        }
        let path = if path == "." { "" } else { path };
        Problems(vec![Problem::new(path, message)])
    })
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
