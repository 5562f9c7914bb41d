//! The `coachflow` binary's model commands, run as a user runs them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::{Command, Output};

fn coachflow(arguments: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_coachflow"))
        .args(arguments)
        .current_dir(repo_root())
        .output()
        .unwrap_or_else(|error| panic!("cannot run coachflow: {error}"))
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn validate_accepts_the_builtin_models() {
    let output = coachflow(&[
        "model",
        "validate",
        "models/four-stage.yaml",
        "models/columbia-three-phase.yaml",
        "models/seven-step.yaml",
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stdout));
    let stdout = text(&output.stdout);
    assert!(stdout.contains("models/four-stage.yaml: ok (four-stage"), "{stdout}");
    assert_eq!(stdout.lines().count(), 3);
}

#[test]
fn validate_prints_every_problem_with_its_path_and_fails() {
    let directory = std::env::temp_dir().join(format!("coachflow-cli-{}", std::process::id()));
    std::fs::create_dir_all(&directory).unwrap_or_else(|error| panic!("{error}"));
    let broken = directory.join("broken.yaml");
    let model = std::fs::read_to_string(repo_root().join("models/four-stage.yaml"))
        .unwrap_or_else(|error| panic!("{error}"))
        .replace("after: [development-plan]", "after: [idp]")
        .replace("due: P21D\n          reminders: [P7D, P2D]\n          escalate_after: P28D\n          outputs:\n            - key: instruments", "due: 3 weeks\n          reminders: [P7D, P2D]\n          escalate_after: P28D\n          outputs:\n            - key: instruments");
    std::fs::write(&broken, model).unwrap_or_else(|error| panic!("{error}"));
    let broken_path = broken.to_string_lossy().into_owned();
    let output = coachflow(&["model", "validate", "models/seven-step.yaml", &broken_path]);
    assert_eq!(output.status.code(), Some(1));
    let stdout = text(&output.stdout);
    assert!(stdout.contains("models/seven-step.yaml: ok"), "{stdout}");
    assert!(stdout.contains("broken.yaml: 2 problem(s)"), "{stdout}");
    assert!(
        stdout.contains("  spec.phases[1].tasks[5].after[0]: unknown task 'idp'"),
        "{stdout}"
    );
    assert!(
        stdout.contains("  spec.phases[1].tasks[0].due: '3 weeks' is not an ISO-8601 duration"),
        "{stdout}"
    );
    // Reminders are not checked against a due date that does not parse.
    assert!(!stdout.contains("spec.phases[1].tasks[0].reminders"), "{stdout}");
    let _ = std::fs::remove_dir_all(&directory);
}

#[test]
fn validate_reports_a_missing_file() {
    let output = coachflow(&["model", "validate", "models/nope.yaml"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(text(&output.stdout).contains("models/nope.yaml: cannot read models/nope.yaml"));
}

#[test]
fn render_draws_phases_gates_and_the_loop_back_to_action() {
    let output = coachflow(&["model", "render", "models/four-stage.yaml"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let chart = text(&output.stdout);
    assert!(chart.starts_with("flowchart TD\n"));
    for phase in ["awareness", "analysis", "action", "achievement"] {
        assert!(chart.contains(&format!("  subgraph {phase}[")), "{phase}");
    }
    assert!(chart.contains(
        "  achievement__exit -->|\"outputs['survey-review'].course_correction == true && phase.iteration #lt; 3\"| action"
    ));
    assert!(chart.contains("  achievement__exit --> finish"));
    assert!(chart.contains("sign-off: sponsor, hr"));
}

#[test]
fn render_refuses_an_invalid_model() {
    let output = coachflow(&["model", "render", "Cargo.toml"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).starts_with("error: Cargo.toml: the model has 1 problem(s)"));
}
