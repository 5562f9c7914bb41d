//! Any input to the model language is read or refused; it never panics, and every refusal
//! is a problem with a message at a well-formed path.
//!
//! An input that starts with `!` is a CEL condition: the rest goes into a small model as a
//! phase's exit condition and a task's `when`, so that the fuzzer spends its time in CEL
//! compilation and the checks of what a condition reads. Any other input is a whole model
//! document (YAML or JSON); the seed corpus is the repository's models.

#![no_main]

use coachflow_model::{Problems, compile, diff, parse, render_mermaid};
use libfuzzer_sys::fuzz_target;

const CONDITION_MODEL: &str = r#"
apiVersion: coachflow.dev/v1
kind: ProcessModel
metadata: {key: fuzzed, name: Fuzzed}
spec:
  roles: [{key: client, required: true}, {key: coach, required: true}, {key: sponsor}]
  milestones: [{key: agreed}]
  phases:
    - key: contracting
      name: Contracting
      tasks:
        - key: agreement
          name: Agreement
          kind: document
          assignee: coach
          outputs:
            - {key: signed, type: boolean, required: true}
            - {key: goal_count, type: integer}
            - {key: notes, type: text}
        - {key: review, name: Review, kind: meeting, assignee: coach, after: [agreement], when: CONDITION}
      exit: {when: CONDITION, approval: [sponsor], milestone: agreed}
    - key: coaching
      name: Coaching
      tasks:
        - {key: session, name: Session, kind: session, assignee: coach}
"#;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match text.strip_prefix('!') {
        Some(condition) => {
            let quoted = serde_json::to_string(condition).expect("a string serializes");
            check(&CONDITION_MODEL.replace("CONDITION", &quoted));
        }
        None => check(text),
    }
});

fn check(text: &str) {
    match parse(text).and_then(compile) {
        Ok(model) => {
            let _ = render_mermaid(model.document());
            assert!(diff(&model, &model).changes.is_empty(), "a model differs from itself");
        }
        Err(problems) => assert_actionable(&problems),
    }
}

fn assert_actionable(problems: &Problems) {
    assert!(!problems.0.is_empty(), "a refusal without a problem");
    for problem in &problems.0 {
        assert!(
            !problem.message.trim().is_empty(),
            "a problem without a message: {problem:?}"
        );
        assert!(
            well_formed(&problem.path),
            "a problem at a path that is not one: {problem:?}"
        );
    }
}

/// `spec.phases[2].tasks[0].after[0]`, or empty for the document itself.
fn well_formed(path: &str) -> bool {
    let mut rest = path;
    let mut first = true;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix("[\"") {
            // A quoted key: a JSON string, then the closing bracket.
            let mut escaped = false;
            let Some(end) = after.char_indices().find_map(|(at, character)| {
                let closes = character == '"' && !escaped;
                escaped = character == '\\' && !escaped;
                closes.then_some(at)
            }) else {
                return false;
            };
            if serde_json::from_str::<String>(&rest[1..end + 3]).is_err() {
                return false;
            }
            match after[end + 1..].strip_prefix(']') {
                Some(tail) => rest = tail,
                None => return false,
            }
        } else if let Some(after) = rest.strip_prefix('[') {
            let Some((digits, tail)) = after.split_once(']') else {
                return false;
            };
            if digits.is_empty() || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
                return false;
            }
            rest = tail;
        } else {
            let body = if first {
                rest
            } else {
                match rest.strip_prefix('.') {
                    Some(body) => body,
                    None => return false,
                }
            };
            let end = body.find(['.', '[']).unwrap_or(body.len());
            if end == 0 {
                return false;
            }
            rest = &body[end..];
        }
        first = false;
    }
    true
}
