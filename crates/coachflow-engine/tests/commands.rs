#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Every refusal a caller can hit: each test asserts the exact [`DomainError`] and (through
//! `Harness::err`) that a refused command leaves the state as it was.

mod support;

use std::collections::BTreeMap;

use coachflow_engine::{
    Action, CommitmentStatus, DomainError, EngagementStatus, EventKind, FieldViolation, GoalStatus, Reason, TaskStatus,
    gate_status,
};
use coachflow_model::Model;
use serde_json::{Value, json};
use support::{Harness, model, utc};

const NOW: &str = "2026-05-04T08:00:00Z";

/// One phase of work (every output type, a dependent task, an optional task, a required
/// repeating task) needing the sponsor's sign-off, then a wrap-up phase.
const COMMANDS_MODEL: &str = r"
apiVersion: coachflow.dev/v1
kind: ProcessModel
metadata: {key: commands, name: Commands}
spec:
  roles:
    - {key: client, required: true}
    - {key: coach, required: true}
    - {key: sponsor}
    - {key: hr}
    - {key: stakeholder, multiple: true}
  phases:
    - key: work
      name: Work
      tasks:
        - key: form
          name: Form
          kind: document
          assignee: coach
          outputs:
            - {key: title, type: string}
            - {key: notes, type: text}
            - {key: score, type: number}
            - {key: count, type: integer}
            - {key: done, type: boolean}
            - {key: held_on, type: date}
            - {key: cadence, type: enum, values: [weekly, monthly]}
            - {key: reference, type: string, required: true}
        - {key: review, name: Review, kind: meeting, after: [form]}
        - {key: extra, name: Extra, kind: action, assignee: client, optional: true}
        - key: calls
          name: Call
          kind: session
          assignee: coach
          due: P7D
          repeat: {every: P1W, count: 2}
      exit:
        approval: [sponsor]
    - key: wrap-up
      name: Wrap-up
      tasks:
        - {key: report, name: Report, kind: document}
";

fn commands_model() -> Model {
    Model::from_text(COMMANDS_MODEL).unwrap_or_else(|problems| panic!("{problems}"))
}

/// Started with client-1, coach-1, sponsor-1, hr-1 and two stakeholders.
fn started() -> Harness {
    Harness::started(commands_model(), utc(NOW), 2)
}

/// A single phase with a single task without outputs: completing it completes the engagement.
fn one_task_model() -> Model {
    Model::from_text(
        "apiVersion: coachflow.dev/v1\nkind: ProcessModel\nmetadata: {key: one, name: One}\nspec:\n  roles:\n    - {key: client, required: true}\n    - {key: coach, required: true}\n    - {key: sponsor}\n    - {key: hr}\n    - {key: stakeholder, multiple: true}\n  phases:\n    - key: only\n      name: Only\n      tasks:\n        - {key: plan, name: Plan, kind: document}\n",
    )
    .unwrap_or_else(|problems| panic!("{problems}"))
}

fn people(pairs: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
    pairs
        .iter()
        .map(|(role, persons)| {
            (
                (*role).to_owned(),
                persons.iter().map(|person| (*person).to_owned()).collect(),
            )
        })
        .collect()
}

fn outputs(pairs: &[(&str, Value)]) -> BTreeMap<String, Value> {
    pairs
        .iter()
        .map(|(key, value)| ((*key).to_owned(), value.clone()))
        .collect()
}

fn invalid(violations: &[(&str, &str)]) -> DomainError {
    DomainError::InvalidArgument {
        violations: violations
            .iter()
            .map(|(field, description)| FieldViolation::new(*field, *description))
            .collect(),
    }
}

fn complete(task: &str, outputs: BTreeMap<String, Value>) -> Action {
    Action::CompleteTask {
        task: task.to_owned(),
        outputs,
    }
}

fn skip(task: &str, reason: &str) -> Action {
    Action::SkipTask {
        task: task.to_owned(),
        reason: reason.to_owned(),
    }
}

fn record_goal(goal: &str, title: &str) -> Action {
    Action::RecordGoal {
        goal: goal.to_owned(),
        title: title.to_owned(),
        measure: None,
        target: None,
        due: None,
    }
}

fn goal_progress(goal: &str, progress: u32, status: Option<GoalStatus>) -> Action {
    Action::RecordGoalProgress {
        goal: goal.to_owned(),
        progress,
        status,
        note: None,
    }
}

fn record_commitment(commitment: &str, owner: Option<&str>, due: Option<&str>) -> Action {
    Action::RecordCommitment {
        commitment: commitment.to_owned(),
        description: "Hold a skip-level meeting".to_owned(),
        owner: owner.map(str::to_owned),
        due: due.map(utc),
    }
}

fn follow_up(commitment: &str, status: CommitmentStatus, due: Option<&str>) -> Action {
    Action::RecordCommitmentFollowUp {
        commitment: commitment.to_owned(),
        status,
        note: None,
        due: due.map(utc),
    }
}

fn sign_off(role: &str, person: &str) -> Action {
    Action::SignOff {
        role: role.to_owned(),
        person: person.to_owned(),
    }
}

fn add_participant(role: &str, person: &str) -> Action {
    Action::AddParticipant {
        role: role.to_owned(),
        person: person.to_owned(),
    }
}

fn assign(task: &str, assignee: &str) -> Action {
    Action::AssignTask {
        task: task.to_owned(),
        assignee: assignee.to_owned(),
    }
}

/// The outputs `form` accepts: only the required reference.
fn form_outputs() -> BTreeMap<String, Value> {
    outputs(&[("reference", json!("doc-1"))])
}

/// The violations of completing `form` with `key` set to `value` besides a valid reference.
fn refused_output(key: &str, value: Value) -> DomainError {
    let mut harness = started();
    let mut given = form_outputs();
    given.insert(key.to_owned(), value);
    let error = harness.err(complete("form", given));
    assert_eq!(error.reason(), "INVALID_ARGUMENT");
    assert_eq!(harness.task_status("form"), TaskStatus::Open);
    error
}

/// Every command but `Start`, with arguments that would be accepted in a fitting state.
fn every_command_but_start() -> Vec<Action> {
    vec![
        complete("plan", BTreeMap::new()),
        skip("plan", "not needed"),
        assign("plan", "coach-1"),
        add_participant("stakeholder", "stakeholder-9"),
        record_goal("goal-1", "Delegate more"),
        goal_progress("goal-1", 50, None),
        record_commitment("c-1", Some("client-1"), Some("2027-01-01T08:00:00Z")),
        follow_up("c-1", CommitmentStatus::Kept, None),
        sign_off("sponsor", "sponsor-1"),
        Action::AdvancePhase { expected_phase: None },
        Action::Suspend { reason: None },
        Action::Resume,
        Action::Cancel { reason: None },
    ]
}

// ----- Start ---------------------------------------------------------------------------

#[test]
fn start_reports_every_violation_at_once() {
    let mut harness = Harness::new(model("four-stage"), utc(NOW));
    let error = harness.err(Action::Start {
        model_version: 1,
        timezone: Some("Mars/Olympus_Mons".into()),
        people: people(&[
            ("mentor", &["mentor-1"]),
            ("coach", &["jane@example.com"]),
            ("sponsor", &["sponsor-1", "sponsor-2"]),
            ("stakeholder", &["stakeholder-1", "stakeholder-2", "stakeholder-1"]),
        ]),
    });
    assert_eq!(
        error,
        invalid(&[
            (
                "timezone",
                "'Mars/Olympus_Mons' is not an IANA time zone such as Europe/Berlin"
            ),
            (
                "people.coach[0]",
                "'jane@example.com' must be an opaque id of letters, digits, '.', '_' and '-', starting with a letter or digit, at most 128 characters"
            ),
            (
                "people.mentor",
                "unknown role 'mentor'; the model has client, coach, sponsor, hr, stakeholder"
            ),
            ("people.sponsor", "role 'sponsor' holds one person, not 2"),
            ("people.stakeholder[2]", "'stakeholder-1' is listed twice"),
            (
                "people.client",
                "role 'client' is required; bind at least one person to it"
            ),
        ])
    );
    assert_eq!(error.reason(), "INVALID_ARGUMENT");
    assert_eq!(harness.state.status, EngagementStatus::New);
    assert!(harness.history.is_empty());
}

#[test]
fn start_with_an_unknown_role_is_refused() {
    let mut harness = Harness::new(model("four-stage"), utc(NOW));
    let error = harness.err(Action::Start {
        model_version: 1,
        timezone: None,
        people: people(&[
            ("client", &["client-1"]),
            ("coach", &["coach-1"]),
            ("mentor", &["mentor-1"]),
        ]),
    });
    assert_eq!(
        error,
        DomainError::invalid(
            "people.mentor",
            "unknown role 'mentor'; the model has client, coach, sponsor, hr, stakeholder"
        )
    );
}

#[test]
fn start_without_a_required_role_is_refused_even_when_bound_to_nobody() {
    let mut harness = Harness::new(model("four-stage"), utc(NOW));
    let error = harness.err(Action::Start {
        model_version: 1,
        timezone: None,
        people: people(&[("client", &[]), ("sponsor", &["sponsor-1"])]),
    });
    assert_eq!(
        error,
        invalid(&[
            (
                "people.client",
                "role 'client' is required; bind at least one person to it"
            ),
            (
                "people.coach",
                "role 'coach' is required; bind at least one person to it"
            ),
        ])
    );
}

#[test]
fn start_with_two_people_in_a_single_person_role_is_refused() {
    let mut harness = Harness::new(model("four-stage"), utc(NOW));
    let error = harness.err(Action::Start {
        model_version: 1,
        timezone: None,
        people: people(&[("client", &["client-1"]), ("coach", &["coach-1", "coach-2"])]),
    });
    assert_eq!(
        error,
        DomainError::invalid("people.coach", "role 'coach' holds one person, not 2")
    );
}

#[test]
fn start_with_an_email_as_person_id_is_refused() {
    let mut harness = Harness::new(model("four-stage"), utc(NOW));
    let error = harness.err(Action::Start {
        model_version: 1,
        timezone: None,
        people: people(&[
            ("client", &["client-1"]),
            ("coach", &["coach-1"]),
            ("stakeholder", &["s-1", "bob@example.com"]),
        ]),
    });
    assert_eq!(
        error,
        DomainError::invalid(
            "people.stakeholder[1]",
            "'bob@example.com' must be an opaque id of letters, digits, '.', '_' and '-', starting with a letter or digit, at most 128 characters"
        )
    );
}

#[test]
fn start_with_a_person_listed_twice_in_a_role_is_refused() {
    let mut harness = Harness::new(model("four-stage"), utc(NOW));
    let error = harness.err(Action::Start {
        model_version: 1,
        timezone: None,
        people: people(&[
            ("client", &["client-1"]),
            ("coach", &["coach-1"]),
            ("stakeholder", &["s-1", "s-2", "s-2"]),
        ]),
    });
    assert_eq!(
        error,
        DomainError::invalid("people.stakeholder[2]", "'s-2' is listed twice")
    );
}

#[test]
fn start_with_a_bad_timezone_is_refused() {
    let mut harness = Harness::new(model("four-stage"), utc(NOW));
    let error = harness.err(Action::Start {
        model_version: 1,
        timezone: Some("CEST".into()),
        people: people(&[("client", &["client-1"]), ("coach", &["coach-1"])]),
    });
    assert_eq!(
        error,
        DomainError::invalid("timezone", "'CEST' is not an IANA time zone such as Europe/Berlin")
    );
}

#[test]
fn starting_twice_is_a_conflict() {
    let mut harness = started();
    let error = harness.err(Action::Start {
        model_version: 1,
        timezone: None,
        people: people(&[("client", &["client-1"]), ("coach", &["coach-1"])]),
    });
    assert_eq!(
        error,
        DomainError::Conflict {
            reason: Reason::EngagementAlreadyStarted,
            message: "the engagement has already been started".into(),
        }
    );
    assert_eq!(error.reason(), "ENGAGEMENT_ALREADY_STARTED");
}

#[test]
fn every_command_before_start_is_refused() {
    let mut harness = Harness::new(one_task_model(), utc(NOW));
    let mut actions = every_command_but_start();
    actions.push(Action::FireTimer {
        timer: "due:plan".into(),
    });
    for action in actions {
        let name = action.name();
        let error = harness.err(action);
        assert_eq!(
            error,
            DomainError::FailedPrecondition {
                reason: Reason::EngagementNotStarted,
                message: "the engagement has not been started".into(),
            },
            "{name}"
        );
        assert_eq!(error.reason(), "ENGAGEMENT_NOT_STARTED");
    }
    assert_eq!(harness.state.status, EngagementStatus::New);
}

// ----- CompleteTask ----------------------------------------------------------------------

#[test]
fn completing_an_unknown_task_is_not_found() {
    let mut harness = started();
    let error = harness.err(complete("nonexistent", BTreeMap::new()));
    assert_eq!(
        error,
        DomainError::NotFound {
            resource: "task",
            id: "nonexistent".into(),
        }
    );
    assert_eq!(error.reason(), "NOT_FOUND");
    assert_eq!(error.to_string(), "task 'nonexistent' not found");
}

#[test]
fn completing_a_waiting_task_is_refused() {
    let mut harness = started();
    assert_eq!(harness.task_status("review"), TaskStatus::Waiting);
    let error = harness.err(complete("review", BTreeMap::new()));
    assert_eq!(
        error,
        DomainError::FailedPrecondition {
            reason: Reason::TaskNotOpen,
            message: "task 'review' is waiting, not open".into(),
        }
    );
    assert_eq!(error.reason(), "TASK_NOT_OPEN");
}

#[test]
fn completing_a_completed_task_is_refused() {
    let mut harness = started();
    harness.ok(complete("form", form_outputs()));
    let error = harness.err(complete("form", form_outputs()));
    assert_eq!(
        error,
        DomainError::FailedPrecondition {
            reason: Reason::TaskNotOpen,
            message: "task 'form' is completed, not open".into(),
        }
    );
}

#[test]
fn an_unknown_output_is_refused() {
    let error = refused_output("mood", json!("good"));
    assert_eq!(
        error,
        DomainError::invalid(
            "outputs.mood",
            "unknown output; task 'form' records title, notes, score, count, done, held_on, cadence, reference"
        )
    );
}

#[test]
fn an_output_for_a_task_without_outputs_is_refused() {
    let mut harness = started();
    harness.ok(complete("form", form_outputs()));
    let error = harness.err(complete("review", outputs(&[("notes", json!("hi"))])));
    assert_eq!(
        error,
        DomainError::invalid("outputs.notes", "task 'review' records no outputs")
    );
}

#[test]
fn a_string_output_must_be_a_string() {
    assert_eq!(
        refused_output("title", json!(42)),
        DomainError::invalid("outputs.title", "must be a string, not a number")
    );
}

#[test]
fn a_string_output_is_at_most_1024_characters() {
    assert_eq!(
        refused_output("title", json!("é".repeat(1_025))),
        DomainError::invalid("outputs.title", "must be at most 1024 characters")
    );
    let mut harness = started();
    harness.ok(complete(
        "form",
        outputs(&[("reference", json!("doc-1")), ("title", json!("é".repeat(1_024)))]),
    ));
}

#[test]
fn a_text_output_is_at_most_65536_characters() {
    assert_eq!(
        refused_output("notes", json!("x".repeat(65_537))),
        DomainError::invalid("outputs.notes", "must be at most 65536 characters")
    );
    assert_eq!(
        refused_output("notes", json!(["a", "list"])),
        DomainError::invalid("outputs.notes", "must be a string, not a list")
    );
}

#[test]
fn a_number_output_must_be_a_number() {
    assert_eq!(
        refused_output("score", json!("4.5")),
        DomainError::invalid("outputs.score", "must be a number, not a string")
    );
}

#[test]
fn an_integer_output_must_be_a_whole_number() {
    assert_eq!(
        refused_output("count", json!(4.5)),
        DomainError::invalid("outputs.count", "must be a whole number, not 4.5")
    );
    assert_eq!(
        refused_output("count", json!("4")),
        DomainError::invalid("outputs.count", "must be a whole number, not a string")
    );
}

#[test]
fn an_integer_output_given_as_a_whole_double_is_stored_as_an_integer() {
    let mut harness = started();
    let events = harness.ok(complete(
        "form",
        outputs(&[("reference", json!("doc-1")), ("count", json!(4.0))]),
    ));
    let recorded = &harness.state.tasks["form"].outputs["count"];
    assert_eq!(recorded, &json!(4));
    assert!(recorded.is_i64());
    assert_ne!(recorded, &json!(4.0));
    assert!(events.iter().any(|event| matches!(
        &event.kind,
        EventKind::TaskCompleted { id, outputs } if id == "form" && outputs["count"] == json!(4)
    )));
}

#[test]
fn a_boolean_output_must_be_true_or_false() {
    assert_eq!(
        refused_output("done", json!("true")),
        DomainError::invalid("outputs.done", "must be true or false, not a string")
    );
    assert_eq!(
        refused_output("done", json!(1)),
        DomainError::invalid("outputs.done", "must be true or false, not a number")
    );
}

#[test]
fn a_date_output_must_be_a_calendar_date() {
    assert_eq!(
        refused_output("held_on", json!("2026-02-30")),
        DomainError::invalid("outputs.held_on", "'2026-02-30' is not a date in the form YYYY-MM-DD")
    );
    assert_eq!(
        refused_output("held_on", json!("01.06.2026")),
        DomainError::invalid("outputs.held_on", "'01.06.2026' is not a date in the form YYYY-MM-DD")
    );
    assert_eq!(
        refused_output("held_on", json!(20_260_601)),
        DomainError::invalid("outputs.held_on", "must be a date (YYYY-MM-DD), not a number")
    );
}

#[test]
fn an_enum_output_must_be_one_of_its_values() {
    assert_eq!(
        refused_output("cadence", json!("daily")),
        DomainError::invalid("outputs.cadence", "'daily' is not one of weekly, monthly")
    );
    assert_eq!(
        refused_output("cadence", json!(true)),
        DomainError::invalid("outputs.cadence", "must be one of the listed values, not a boolean")
    );
}

#[test]
fn a_required_output_must_be_given() {
    let mut harness = started();
    let error = harness.err(complete("form", outputs(&[("title", json!("kick-off"))])));
    assert_eq!(
        error,
        DomainError::invalid("outputs.reference", "is required to complete this task")
    );
}

#[test]
fn null_outputs_count_as_absent() {
    let mut harness = started();
    // A null required output is missing.
    let error = harness.err(complete("form", outputs(&[("reference", Value::Null)])));
    assert_eq!(
        error,
        DomainError::invalid("outputs.reference", "is required to complete this task")
    );
    // A null optional output is accepted and not recorded.
    harness.ok(complete(
        "form",
        outputs(&[("reference", json!("doc-1")), ("score", Value::Null)]),
    ));
    assert_eq!(harness.state.tasks["form"].outputs, form_outputs());
}

#[test]
fn every_output_violation_is_reported_at_once() {
    let mut harness = started();
    let error = harness.err(complete(
        "form",
        outputs(&[
            ("title", json!(1)),
            ("notes", json!(false)),
            ("score", json!("high")),
            ("count", json!(2.5)),
            ("done", json!("yes")),
            ("held_on", json!("tomorrow")),
            ("cadence", json!("daily")),
            ("mood", json!("good")),
        ]),
    ));
    assert_eq!(
        error,
        invalid(&[
            ("outputs.cadence", "'daily' is not one of weekly, monthly"),
            ("outputs.count", "must be a whole number, not 2.5"),
            ("outputs.done", "must be true or false, not a string"),
            ("outputs.held_on", "'tomorrow' is not a date in the form YYYY-MM-DD"),
            (
                "outputs.mood",
                "unknown output; task 'form' records title, notes, score, count, done, held_on, cadence, reference"
            ),
            ("outputs.notes", "must be a string, not a boolean"),
            ("outputs.score", "must be a number, not a string"),
            ("outputs.title", "must be a string, not a number"),
            ("outputs.reference", "is required to complete this task"),
        ])
    );
}

#[test]
fn valid_outputs_of_every_type_are_accepted_in_canonical_form() {
    let mut harness = started();
    harness.ok(complete(
        "form",
        outputs(&[
            ("reference", json!("doc-1")),
            ("title", json!("Kick-off")),
            ("notes", json!("confidential")),
            ("score", json!(4.5)),
            ("count", json!(3)),
            ("done", json!(true)),
            ("held_on", json!("2026-05-04")),
            ("cadence", json!("monthly")),
        ]),
    ));
    assert_eq!(harness.task_status("form"), TaskStatus::Completed);
    assert_eq!(harness.task_status("review"), TaskStatus::Open);
}

// ----- SkipTask --------------------------------------------------------------------------

#[test]
fn skipping_a_required_task_is_refused() {
    let mut harness = started();
    let error = harness.err(skip("form", "not needed"));
    assert_eq!(
        error,
        DomainError::FailedPrecondition {
            reason: Reason::TaskRequired,
            message:
                "task 'form' is required; only optional tasks and single occurrences of a repeating task can be skipped"
                    .into(),
        }
    );
    assert_eq!(error.reason(), "TASK_REQUIRED");
}

#[test]
fn skipping_without_a_reason_is_refused() {
    let mut harness = started();
    for reason in ["", "   "] {
        let error = harness.err(skip("extra", reason));
        assert_eq!(error, DomainError::invalid("reason", "say why the task is skipped"));
    }
    let error = harness.err(skip("extra", &"x".repeat(2_001)));
    assert_eq!(error, DomainError::invalid("reason", "must be at most 2000 characters"));
}

#[test]
fn skipping_a_closed_task_is_refused() {
    let mut harness = started();
    harness.ok(skip("extra", "  not needed  "));
    assert_eq!(harness.state.tasks["extra"].skip_reason.as_deref(), Some("not needed"));
    let error = harness.err(skip("extra", "again"));
    assert_eq!(
        error,
        DomainError::FailedPrecondition {
            reason: Reason::TaskClosed,
            message: "task 'extra' is already skipped".into(),
        }
    );
    harness.ok(complete("form", form_outputs()));
    let error = harness.err(skip("form", "too late"));
    assert_eq!(
        error,
        DomainError::FailedPrecondition {
            reason: Reason::TaskClosed,
            message: "task 'form' is already completed".into(),
        }
    );
}

#[test]
fn skipping_an_unknown_task_is_not_found() {
    let mut harness = started();
    assert_eq!(
        harness.err(skip("nonexistent", "why not")),
        DomainError::not_found("task", "nonexistent")
    );
}

#[test]
fn a_single_occurrence_of_a_required_repeating_task_can_be_skipped() {
    let mut harness = started();
    assert_eq!(harness.task_status("calls#1"), TaskStatus::Open);
    assert!(harness.timer_table.contains_key("due:calls#1"));
    let events = harness.ok(skip("calls#1", "client ill"));
    assert!(events.iter().any(|event| matches!(
        &event.kind,
        EventKind::TaskSkipped { id, reason } if id == "calls#1" && reason == "client ill"
    )));
    assert_eq!(harness.task_status("calls#1"), TaskStatus::Skipped);
    // Its timers go with it; the series goes on.
    assert!(!harness.timer_table.contains_key("due:calls#1"));
    assert!(harness.timer_table.contains_key("next:calls"));
}

// ----- AssignTask ------------------------------------------------------------------------

#[test]
fn assigning_a_task_to_someone_without_its_role_is_refused() {
    let mut harness = started();
    let error = harness.err(assign("form", "client-1"));
    assert_eq!(
        error,
        DomainError::invalid(
            "assignee",
            "person 'client-1' does not hold role 'coach', which does this task"
        )
    );
    // A task with no assignee role goes to anybody in the engagement, nobody else.
    let error = harness.err(assign("review", "stranger-1"));
    assert_eq!(
        error,
        DomainError::invalid("assignee", "person 'stranger-1' is not part of this engagement")
    );
    harness.ok(assign("review", "hr-1"));
    assert_eq!(harness.state.tasks["review"].assignee.as_deref(), Some("hr-1"));
}

#[test]
fn assigning_a_task_to_an_invalid_person_id_is_refused() {
    let mut harness = started();
    assert_eq!(
        harness.err(assign("form", "jane@example.com")),
        DomainError::invalid(
            "assignee",
            "'jane@example.com' must be an opaque id of letters, digits, '.', '_' and '-', starting with a letter or digit, at most 128 characters"
        )
    );
}

#[test]
fn assigning_an_unknown_or_closed_task_is_refused() {
    let mut harness = started();
    assert_eq!(
        harness.err(assign("nonexistent", "coach-1")),
        DomainError::not_found("task", "nonexistent")
    );
    harness.ok(skip("extra", "not needed"));
    assert_eq!(
        harness.err(assign("extra", "client-1")),
        DomainError::FailedPrecondition {
            reason: Reason::TaskClosed,
            message: "task 'extra' is already skipped".into(),
        }
    );
}

// ----- AddParticipant --------------------------------------------------------------------

#[test]
fn adding_a_participant_to_an_unknown_role_is_refused() {
    let mut harness = started();
    assert_eq!(
        harness.err(add_participant("mentor", "mentor-1")),
        DomainError::invalid("role", "unknown role 'mentor'")
    );
}

#[test]
fn adding_a_participant_with_an_invalid_id_is_refused() {
    let mut harness = started();
    assert_eq!(
        harness.err(add_participant("stakeholder", "Bob Smith")),
        DomainError::invalid(
            "person",
            "'Bob Smith' must be an opaque id of letters, digits, '.', '_' and '-', starting with a letter or digit, at most 128 characters"
        )
    );
}

#[test]
fn adding_a_second_person_to_a_single_person_role_is_refused() {
    let mut harness = started();
    let error = harness.err(add_participant("sponsor", "sponsor-2"));
    assert_eq!(
        error,
        DomainError::FailedPrecondition {
            reason: Reason::RoleTaken,
            message: "role 'sponsor' holds one person and 'sponsor-1' holds it; reassign tasks instead".into(),
        }
    );
    assert_eq!(error.reason(), "ROLE_TAKEN");
}

#[test]
fn adding_the_same_person_to_a_role_twice_is_a_conflict() {
    let mut harness = started();
    let error = harness.err(add_participant("stakeholder", "stakeholder-1"));
    assert_eq!(
        error,
        DomainError::Conflict {
            reason: Reason::AlreadyParticipant,
            message: "person 'stakeholder-1' already holds role 'stakeholder'".into(),
        }
    );
    assert_eq!(error.reason(), "ALREADY_PARTICIPANT");
    // The check comes before the single-person one.
    assert_eq!(
        harness.err(add_participant("sponsor", "sponsor-1")).reason(),
        "ALREADY_PARTICIPANT"
    );
    // A person may hold another role.
    harness.ok(add_participant("stakeholder", "sponsor-1"));
}

// ----- Goals -----------------------------------------------------------------------------

#[test]
fn recording_a_goal_twice_is_a_conflict() {
    let mut harness = started();
    harness.ok(record_goal("goal-1", "Delegate the weekly review"));
    let error = harness.err(record_goal("goal-1", "Something else"));
    assert_eq!(
        error,
        DomainError::Conflict {
            reason: Reason::GoalExists,
            message: "goal 'goal-1' already exists".into(),
        }
    );
    assert_eq!(error.reason(), "GOAL_EXISTS");
}

#[test]
fn a_goal_needs_a_title() {
    let mut harness = started();
    for title in ["", " \t "] {
        assert_eq!(
            harness.err(record_goal("goal-1", title)),
            DomainError::invalid("title", "must not be empty")
        );
    }
    assert_eq!(
        harness.err(record_goal("goal-1", &"t".repeat(501))),
        DomainError::invalid("title", "must be at most 500 characters")
    );
}

#[test]
fn a_goal_id_must_be_a_record_id() {
    let mut harness = started();
    let rule = "must be letters, digits, '.', '_' and '-', starting with a letter or digit, at most 64 characters";
    assert_eq!(
        harness.err(record_goal("my goal", "Delegate")),
        DomainError::invalid("goal", format!("'my goal' {rule}"))
    );
    let long = "g".repeat(65);
    assert_eq!(
        harness.err(record_goal(&long, "Delegate")),
        DomainError::invalid("goal", format!("'{long}' {rule}"))
    );
    // Both at once.
    assert_eq!(
        harness.err(record_goal("-goal", "")),
        invalid(&[("goal", &format!("'-goal' {rule}")), ("title", "must not be empty")])
    );
}

#[test]
fn progress_on_an_unknown_goal_is_not_found() {
    let mut harness = started();
    let error = harness.err(goal_progress("goal-9", 10, None));
    assert_eq!(error, DomainError::not_found("goal", "goal-9"));
    assert_eq!(error.to_string(), "goal 'goal-9' not found");
}

#[test]
fn progress_above_100_percent_is_refused() {
    let mut harness = started();
    harness.ok(record_goal("goal-1", "Delegate"));
    assert_eq!(
        harness.err(goal_progress("goal-1", 101, None)),
        DomainError::invalid("progress", "must be a percentage from 0 to 100, not 101")
    );
    harness.ok(goal_progress("goal-1", 100, None));
}

#[test]
fn achieving_a_goal_emits_goal_achieved_and_closes_it() {
    let mut harness = started();
    harness.ok(record_goal("goal-1", "Delegate"));
    let events = harness.ok(goal_progress("goal-1", 100, Some(GoalStatus::Achieved)));
    let kinds: Vec<&EventKind> = events.iter().map(|event| &event.kind).collect();
    assert_eq!(
        kinds,
        [
            &EventKind::GoalProgressRecorded {
                goal: "goal-1".into(),
                progress: 100,
                status: GoalStatus::Achieved,
                note: None,
            },
            &EventKind::GoalAchieved { goal: "goal-1".into() },
        ]
    );
    assert_eq!(harness.state.goals["goal-1"].status, GoalStatus::Achieved);
    let error = harness.err(goal_progress("goal-1", 100, None));
    assert_eq!(
        error,
        DomainError::FailedPrecondition {
            reason: Reason::GoalClosed,
            message: "goal 'goal-1' is achieved; it takes no more progress".into(),
        }
    );
    assert_eq!(error.reason(), "GOAL_CLOSED");
}

#[test]
fn an_abandoned_goal_takes_no_more_progress() {
    let mut harness = started();
    harness.ok(record_goal("goal-1", "Delegate"));
    let events = harness.ok(goal_progress("goal-1", 20, Some(GoalStatus::Abandoned)));
    assert!(
        !events
            .iter()
            .any(|event| matches!(event.kind, EventKind::GoalAchieved { .. }))
    );
    assert_eq!(
        harness.err(goal_progress("goal-1", 30, Some(GoalStatus::OnTrack))),
        DomainError::FailedPrecondition {
            reason: Reason::GoalClosed,
            message: "goal 'goal-1' is abandoned; it takes no more progress".into(),
        }
    );
}

// ----- Commitments -----------------------------------------------------------------------

#[test]
fn a_commitment_due_in_the_past_is_refused() {
    let mut harness = started();
    for due in ["2026-05-01T08:00:00Z", NOW] {
        assert_eq!(
            harness.err(record_commitment("c-1", Some("client-1"), Some(due))),
            DomainError::invalid("due", "must be in the future")
        );
    }
}

#[test]
fn a_commitment_owner_must_be_in_the_engagement() {
    let mut harness = started();
    assert_eq!(
        harness.err(record_commitment("c-1", Some("stranger-1"), None)),
        DomainError::invalid("owner", "person 'stranger-1' is not part of this engagement")
    );
    // Every violation at once.
    assert_eq!(
        harness.err(Action::RecordCommitment {
            commitment: "c 1".into(),
            description: " ".into(),
            owner: Some("stranger-1".into()),
            due: Some(utc("2020-01-01T00:00:00Z")),
        }),
        invalid(&[
            (
                "commitment",
                "'c 1' must be letters, digits, '.', '_' and '-', starting with a letter or digit, at most 64 characters"
            ),
            ("description", "must not be empty"),
            ("owner", "person 'stranger-1' is not part of this engagement"),
            ("due", "must be in the future"),
        ])
    );
}

#[test]
fn recording_a_commitment_twice_is_a_conflict() {
    let mut harness = started();
    harness.ok(record_commitment("c-1", None, None));
    let error = harness.err(record_commitment("c-1", None, None));
    assert_eq!(
        error,
        DomainError::Conflict {
            reason: Reason::CommitmentExists,
            message: "commitment 'c-1' already exists".into(),
        }
    );
}

#[test]
fn a_follow_up_cannot_leave_a_commitment_open() {
    let mut harness = started();
    harness.ok(record_commitment("c-1", Some("client-1"), Some("2026-05-18T08:00:00Z")));
    assert_eq!(
        harness.err(follow_up("c-1", CommitmentStatus::Open, None)),
        DomainError::invalid("status", "a follow-up records kept, missed, renegotiated or dropped")
    );
}

#[test]
fn a_renegotiated_commitment_needs_a_new_future_due_date() {
    let mut harness = started();
    harness.ok(record_commitment("c-1", Some("client-1"), Some("2026-05-18T08:00:00Z")));
    assert_eq!(
        harness.err(follow_up("c-1", CommitmentStatus::Renegotiated, None)),
        DomainError::invalid("due", "a renegotiated commitment needs a new due date")
    );
    assert_eq!(
        harness.err(follow_up(
            "c-1",
            CommitmentStatus::Renegotiated,
            Some("2026-05-01T00:00:00Z")
        )),
        DomainError::invalid("due", "must be in the future")
    );
    assert_eq!(
        harness.err(follow_up("c-1", CommitmentStatus::Kept, Some("2026-06-01T00:00:00Z"))),
        DomainError::invalid("due", "only a renegotiated commitment takes a new due date")
    );
}

#[test]
fn following_up_an_unknown_commitment_is_not_found() {
    let mut harness = started();
    assert_eq!(
        harness.err(follow_up("c-9", CommitmentStatus::Kept, None)),
        DomainError::not_found("commitment", "c-9")
    );
}

// ----- SignOff ---------------------------------------------------------------------------

#[test]
fn signing_off_for_a_role_the_phase_does_not_need_is_refused() {
    let mut harness = started();
    let error = harness.err(sign_off("coach", "coach-1"));
    assert_eq!(
        error,
        DomainError::FailedPrecondition {
            reason: Reason::NoSuchApproval,
            message: "phase 'work' needs no sign-off from role 'coach'; it needs sign-off from sponsor".into(),
        }
    );
    assert_eq!(error.reason(), "NO_SUCH_APPROVAL");

    let mut harness = Harness::started(model("four-stage"), utc(NOW), 1);
    assert_eq!(
        harness.err(sign_off("sponsor", "sponsor-1")),
        DomainError::FailedPrecondition {
            reason: Reason::NoSuchApproval,
            message: "phase 'awareness' needs no sign-off from role 'sponsor'; it needs no sign-off at all".into(),
        }
    );
}

#[test]
fn signing_off_for_a_role_one_does_not_hold_is_refused() {
    let mut harness = started();
    assert_eq!(
        harness.err(sign_off("sponsor", "client-1")),
        DomainError::invalid("person", "person 'client-1' does not hold role 'sponsor'")
    );
}

/// One phase needing two sign-offs after one task.
const TWO_APPROVALS_MODEL: &str = r"
apiVersion: coachflow.dev/v1
kind: ProcessModel
metadata: {key: approvals, name: Approvals}
spec:
  roles:
    - {key: client, required: true}
    - {key: coach, required: true}
    - {key: sponsor}
    - {key: hr}
    - {key: stakeholder, multiple: true}
  phases:
    - key: work
      name: Work
      tasks:
        - {key: form, name: Form, kind: document, assignee: coach}
      exit:
        approval: [sponsor, hr]
    - key: wrap-up
      name: Wrap-up
      tasks:
        - {key: report, name: Report, kind: document}
";

#[test]
fn signing_off_twice_is_a_conflict() {
    let model = Model::from_text(TWO_APPROVALS_MODEL).unwrap_or_else(|problems| panic!("{problems}"));
    let mut harness = Harness::started(model, utc(NOW), 1);
    harness.ok(complete("form", BTreeMap::new()));
    harness.ok(sign_off("sponsor", "sponsor-1"));
    // HR has not signed off, so the phase stays.
    assert_eq!(harness.phase(), Some(("work".into(), 1)));
    let error = harness.err(sign_off("sponsor", "sponsor-1"));
    assert_eq!(
        error,
        DomainError::Conflict {
            reason: Reason::AlreadySignedOff,
            message: "role 'sponsor' has already signed off phase 'work' (by 'sponsor-1')".into(),
        }
    );
    assert_eq!(error.reason(), "ALREADY_SIGNED_OFF");
}

#[test]
fn a_sign_off_before_the_phase_s_condition_holds_is_refused() {
    let mut harness = started();
    let error = harness.err(sign_off("sponsor", "sponsor-1"));
    assert_eq!(
        error,
        DomainError::FailedPrecondition {
            reason: Reason::GateNotReady,
            message:
                "phase 'work' cannot be signed off before its exit condition holds: tasks not done: form, review, calls"
                    .into(),
        }
    );
    assert_eq!(error.reason(), "GATE_NOT_READY");
    assert!(!gate_status(&harness.model, &harness.state).unwrap().ready);
}

// ----- AdvancePhase ----------------------------------------------------------------------

#[test]
fn advancing_from_another_phase_than_expected_is_a_conflict() {
    let mut harness = started();
    let error = harness.err(Action::AdvancePhase {
        expected_phase: Some("wrap-up".into()),
    });
    assert_eq!(
        error,
        DomainError::Conflict {
            reason: Reason::PhaseMismatch,
            message: "the engagement is in phase 'work', not 'wrap-up'".into(),
        }
    );
    assert_eq!(error.reason(), "PHASE_MISMATCH");
}

#[test]
fn advancing_before_the_gate_holds_explains_why() {
    let mut harness = started();
    let error = harness.err(Action::AdvancePhase {
        expected_phase: Some("work".into()),
    });
    assert_eq!(
        error,
        DomainError::FailedPrecondition {
            reason: Reason::GateNotSatisfied,
            message:
                "phase 'work' cannot be left yet: tasks not done: form, review, calls; sign-off missing from: sponsor"
                    .into(),
        }
    );
    assert_eq!(error.reason(), "GATE_NOT_SATISFIED");

    harness.ok(complete("form", form_outputs()));
    harness.ok(complete("review", BTreeMap::new()));
    assert_eq!(
        harness.err(Action::AdvancePhase { expected_phase: None }),
        DomainError::precondition(
            Reason::GateNotSatisfied,
            "phase 'work' cannot be left yet: tasks not done: calls; sign-off missing from: sponsor"
        )
    );
    assert_eq!(
        harness.err(sign_off("sponsor", "sponsor-1")),
        DomainError::precondition(
            Reason::GateNotReady,
            "phase 'work' cannot be signed off before its exit condition holds: tasks not done: calls"
        )
    );
}

#[test]
fn advancing_past_a_false_exit_condition_also_names_the_unfinished_tasks() {
    // With `exit.when` the condition decides, but the unfinished tasks are what a caller
    // usually needs to hear about.
    let mut harness = Harness::started(model("four-stage"), utc(NOW), 1);
    assert_eq!(
        harness.err(Action::AdvancePhase { expected_phase: None }),
        DomainError::precondition(
            Reason::GateNotSatisfied,
            "phase 'awareness' cannot be left yet: its exit condition is false (tasks not done: kickoff-meeting, one-on-one-meeting, in-depth-interview, client-commitment)"
        )
    );
}

const MANUAL_MODEL: &str = r"
apiVersion: coachflow.dev/v1
kind: ProcessModel
metadata: {key: manual, name: Manual}
spec:
  roles:
    - {key: client, required: true}
    - {key: coach, required: true}
    - {key: sponsor}
    - {key: hr}
    - {key: stakeholder, multiple: true}
  phases:
    - key: intake
      name: Intake
      tasks:
        - {key: plan, name: Plan, kind: document}
      exit:
        manual: true
    - key: closing
      name: Closing
      tasks:
        - {key: report, name: Report, kind: document}
      exit:
        manual: true
";

#[test]
fn a_manual_phase_waits_for_advance_phase_even_when_its_gate_holds() {
    let model = Model::from_text(MANUAL_MODEL).unwrap_or_else(|problems| panic!("{problems}"));
    let mut harness = Harness::started(model, utc(NOW), 0);
    harness.ok(complete("plan", BTreeMap::new()));
    assert_eq!(harness.phase(), Some(("intake".into(), 1)));
    assert!(gate_status(&harness.model, &harness.state).unwrap().holds());
    assert_eq!(
        harness.err(Action::AdvancePhase {
            expected_phase: Some("closing".into())
        }),
        DomainError::conflict(
            Reason::PhaseMismatch,
            "the engagement is in phase 'intake', not 'closing'"
        )
    );

    let events = harness.ok(Action::AdvancePhase {
        expected_phase: Some("intake".into()),
    });
    assert!(events.iter().any(|event| matches!(
        &event.kind,
        EventKind::PhaseCompleted { phase, next, .. } if phase == "intake" && next.as_deref() == Some("closing")
    )));
    assert_eq!(harness.phase(), Some(("closing".into(), 1)));
    assert_eq!(harness.task_status("report"), TaskStatus::Open);

    // The last phase is manual too: the engagement completes only when told.
    assert_eq!(
        harness.err(Action::AdvancePhase { expected_phase: None }),
        DomainError::precondition(
            Reason::GateNotSatisfied,
            "phase 'closing' cannot be left yet: tasks not done: report"
        )
    );
    harness.ok(complete("report", BTreeMap::new()));
    assert_eq!(harness.state.status, EngagementStatus::Active);
    harness.ok(Action::AdvancePhase { expected_phase: None });
    assert_eq!(harness.state.status, EngagementStatus::Completed);
}

// ----- FireTimer -------------------------------------------------------------------------

#[test]
fn firing_a_timer_before_it_is_due_is_refused() {
    let mut harness = started();
    assert_eq!(
        harness.timer_table.get("next:calls"),
        Some(&utc("2026-05-11T08:00:00Z"))
    );
    let error = harness.err(Action::FireTimer {
        timer: "next:calls".into(),
    });
    assert_eq!(
        error,
        DomainError::FailedPrecondition {
            reason: Reason::TimerNotDue,
            message: "timer 'next:calls' is due at 2026-05-11T08:00:00+00:00, not yet".into(),
        }
    );
    assert_eq!(error.reason(), "TIMER_NOT_DUE");
}

#[test]
fn firing_an_unknown_timer_does_nothing() {
    let mut harness = started();
    let before = harness.state.clone();
    let events = harness.ok(Action::FireTimer {
        timer: "nonexistent".into(),
    });
    assert!(events.is_empty());
    assert_eq!(harness.state, before);
}

// ----- Ended engagements -----------------------------------------------------------------

fn assert_every_command_refused_as_ended(harness: &mut Harness, status: &str) {
    for action in every_command_but_start() {
        let name = action.name();
        let error = harness.err(action);
        assert_eq!(
            error,
            DomainError::FailedPrecondition {
                reason: Reason::EngagementEnded,
                message: format!("the engagement is {status}; it takes no more changes"),
            },
            "{name}"
        );
        assert_eq!(error.reason(), "ENGAGEMENT_ENDED");
    }
    assert_eq!(
        harness
            .err(Action::Start {
                model_version: 1,
                timezone: None,
                people: people(&[("client", &["client-1"]), ("coach", &["coach-1"])]),
            })
            .reason(),
        "ENGAGEMENT_ALREADY_STARTED"
    );
    // The timer runner may still race with the end: firing is a no-op.
    let before = harness.state.clone();
    assert!(
        harness
            .ok(Action::FireTimer {
                timer: "due:plan".into()
            })
            .is_empty()
    );
    assert_eq!(harness.state, before);
}

#[test]
fn a_completed_engagement_takes_no_more_commands() {
    let mut harness = Harness::started(one_task_model(), utc(NOW), 1);
    harness.ok(record_goal("goal-1", "Delegate"));
    harness.ok(record_commitment("c-1", Some("client-1"), None));
    harness.ok(complete("plan", BTreeMap::new()));
    assert_eq!(harness.state.status, EngagementStatus::Completed);
    assert_every_command_refused_as_ended(&mut harness, "completed");
}

#[test]
fn a_cancelled_engagement_takes_no_more_commands() {
    let mut harness = Harness::started(one_task_model(), utc(NOW), 1);
    harness.ok(record_goal("goal-1", "Delegate"));
    harness.ok(record_commitment("c-1", Some("client-1"), None));
    harness.ok(Action::Cancel {
        reason: Some("client left".into()),
    });
    assert_eq!(harness.state.status, EngagementStatus::Cancelled);
    assert_eq!(harness.task_status("plan"), TaskStatus::Cancelled);
    assert_every_command_refused_as_ended(&mut harness, "cancelled");
}

// ----- Suspend and resume ----------------------------------------------------------------

#[test]
fn suspending_twice_is_refused() {
    let mut harness = started();
    harness.ok(Action::Suspend {
        reason: Some("client on leave".into()),
    });
    let error = harness.err(Action::Suspend { reason: None });
    assert_eq!(
        error,
        DomainError::FailedPrecondition {
            reason: Reason::EngagementSuspended,
            message: "the engagement is suspended; resume it first".into(),
        }
    );
    assert_eq!(error.reason(), "ENGAGEMENT_SUSPENDED");
}

#[test]
fn resuming_an_active_engagement_is_refused() {
    let mut harness = started();
    let error = harness.err(Action::Resume);
    assert_eq!(
        error,
        DomainError::FailedPrecondition {
            reason: Reason::EngagementNotSuspended,
            message: "the engagement is not suspended".into(),
        }
    );
    assert_eq!(error.reason(), "ENGAGEMENT_NOT_SUSPENDED");
    harness.ok(Action::Suspend { reason: None });
    harness.ok(Action::Resume);
    assert_eq!(harness.err(Action::Resume).reason(), "ENGAGEMENT_NOT_SUSPENDED");
}

#[test]
fn a_suspension_reason_is_at_most_2000_characters() {
    let mut harness = started();
    assert_eq!(
        harness.err(Action::Suspend {
            reason: Some("r".repeat(2_001))
        }),
        DomainError::invalid("reason", "must be at most 2000 characters")
    );
}

#[test]
fn a_suspended_engagement_refuses_work_but_takes_records() {
    let mut harness = started();
    harness.ok(Action::Suspend { reason: None });
    let suspended = DomainError::FailedPrecondition {
        reason: Reason::EngagementSuspended,
        message: "the engagement is suspended; resume it first".into(),
    };
    assert_eq!(harness.err(complete("form", form_outputs())), suspended);
    assert_eq!(harness.err(skip("extra", "not needed")), suspended);
    assert_eq!(harness.err(sign_off("sponsor", "sponsor-1")), suspended);
    assert_eq!(harness.err(Action::AdvancePhase { expected_phase: None }), suspended);

    let events = harness.ok(record_goal("goal-1", "Delegate"));
    assert!(
        matches!(&events[..], [event] if matches!(&event.kind, EventKind::GoalSet { goal, .. } if goal == "goal-1"))
    );
    harness.ok(goal_progress("goal-1", 10, Some(GoalStatus::OnTrack)));
    harness.ok(record_commitment("c-1", Some("client-1"), None));
    harness.ok(assign("review", "hr-1"));
    harness.ok(add_participant("stakeholder", "stakeholder-3"));
    assert_eq!(harness.state.status, EngagementStatus::Suspended);

    harness.ok(Action::Resume);
    harness.ok(complete("form", form_outputs()));
}

#[test]
fn a_blank_string_does_not_satisfy_a_required_output() {
    let mut harness = Harness::started(model("four-stage"), utc(NOW), 1);
    let mut outputs = harness.default_outputs("kickoff-meeting");
    outputs.insert("expected_outcomes".into(), serde_json::json!("   "));
    assert_eq!(
        harness.err(Action::CompleteTask {
            task: "kickoff-meeting".into(),
            outputs,
        }),
        DomainError::InvalidArgument {
            violations: vec![FieldViolation::new(
                "outputs.expected_outcomes",
                "is required to complete this task"
            )],
        }
    );
}
