//! One test per validation rule: each starts from a minimal valid model, breaks one thing,
//! and asserts the exact list of problems (path and message), so that a changed message or
//! a changed path is noticed.

use coachflow_model::{Model, Phase, Problem, ProcessModel, Role, Task, Transition, compile, parse};

/// The smallest model that exercises roles (one of them `multiple`), a milestone and two
/// phases. Every test starts here.
const BASE: &str = r#"
apiVersion: coachflow.dev/v1
kind: ProcessModel
metadata:
  key: minimal
  name: Minimal
spec:
  roles:
    - key: coach
    - key: client
    - key: stakeholder
      multiple: true
  milestones:
    - key: contracted
  phases:
    - key: contracting
      name: Contracting
      tasks:
        - key: intake
          name: Intake
          kind: meeting
          assignee: coach
          participants: [client]
    - key: coaching
      name: Coaching
      tasks:
        - key: session
          name: Session
          kind: session
          assignee: coach
          participants: [client]
"#;

const KEY_RULE: &str =
    "lower-case letters, digits, '_' and '-', starting with a letter, at most 63 characters (snake_case or kebab-case)";

fn base() -> ProcessModel {
    parse(BASE).unwrap_or_else(|problems| panic!("the base model does not parse: {problems}"))
}

fn task(yaml: &str) -> Task {
    yaml_serde::from_str(yaml).unwrap_or_else(|error| panic!("bad task fixture {yaml}: {error}"))
}

fn phase(yaml: &str) -> Phase {
    yaml_serde::from_str(yaml).unwrap_or_else(|error| panic!("bad phase fixture {yaml}: {error}"))
}

fn role(yaml: &str) -> Role {
    yaml_serde::from_str(yaml).unwrap_or_else(|error| panic!("bad role fixture {yaml}: {error}"))
}

fn transition(to: &str, when: Option<&str>) -> Transition {
    Transition {
        to: to.to_owned(),
        when: when.map(str::to_owned),
    }
}

fn problems_of(document: ProcessModel) -> Vec<Problem> {
    match compile(document) {
        Ok(_) => Vec::new(),
        Err(problems) => problems.0,
    }
}

fn expected(problems: &[(&str, &str)]) -> Vec<Problem> {
    problems
        .iter()
        .map(|(path, message)| Problem::new(*path, *message))
        .collect()
}

/// Applies `edit` to the base model and asserts that validation reports exactly `problems`,
/// in that order.
#[track_caller]
fn assert_problems(edit: impl FnOnce(&mut ProcessModel), problems: &[(&str, &str)]) {
    let mut document = base();
    edit(&mut document);
    assert_eq!(problems_of(document), expected(problems));
}

#[track_caller]
fn assert_valid(edit: impl FnOnce(&mut ProcessModel)) {
    assert_problems(edit, &[]);
}

/// The first phase's first task (`intake`).
fn intake(document: &mut ProcessModel) -> &mut Task {
    &mut document.spec.phases[0].tasks[0]
}

/// The second phase's first task (`session`).
fn session(document: &mut ProcessModel) -> &mut Task {
    &mut document.spec.phases[1].tasks[0]
}

// ---------------------------------------------------------------------------------------
// The base model and the header
// ---------------------------------------------------------------------------------------

#[test]
fn the_base_model_is_valid() {
    assert_valid(|_| {});
    let model = Model::from_text(BASE).unwrap_or_else(|problems| panic!("{problems}"));
    assert_eq!(model.key(), "minimal");
    assert_eq!(model.phases().len(), 2);
    assert_eq!(model.tasks().len(), 2);
}

#[test]
fn wrong_api_version() {
    assert_problems(
        |document| document.api_version = "coachflow.dev/v2".into(),
        &[("apiVersion", "must be 'coachflow.dev/v1', not 'coachflow.dev/v2'")],
    );
}

#[test]
fn wrong_kind() {
    assert_problems(
        |document| document.kind = "Workflow".into(),
        &[("kind", "must be 'ProcessModel', not 'Workflow'")],
    );
}

#[test]
fn bad_metadata_key() {
    assert_problems(
        |document| document.metadata.key = "Leadership_2".into(),
        &[(
            "metadata.key",
            &format!("'Leadership_2' is not a valid key: {KEY_RULE}"),
        )],
    );
    assert_problems(
        |document| document.metadata.key = String::new(),
        &[("metadata.key", &format!("'' is not a valid key: {KEY_RULE}"))],
    );
}

#[test]
fn keys_may_have_63_characters_but_not_64() {
    let longest = format!("a{}", "-".repeat(62));
    assert_valid(|document| document.metadata.key = longest);
    let too_long = format!("a{}", "1".repeat(63));
    let message = format!("'{too_long}' is not a valid key: {KEY_RULE}");
    assert_problems(
        |document| document.metadata.key = too_long.clone(),
        &[("metadata.key", &message)],
    );
}

#[test]
fn empty_names() {
    assert_problems(
        |document| document.metadata.name = "  ".into(),
        &[("metadata.name", "must not be empty")],
    );
    assert_problems(
        |document| document.spec.phases[1].name = String::new(),
        &[("spec.phases[1].name", "must not be empty")],
    );
    assert_problems(
        |document| session(document).name = "\t".into(),
        &[("spec.phases[1].tasks[0].name", "must not be empty")],
    );
}

// ---------------------------------------------------------------------------------------
// Catalogues and keys
// ---------------------------------------------------------------------------------------

#[test]
fn no_roles() {
    assert_problems(
        |document| {
            document.spec.roles.clear();
            for phase in &mut document.spec.phases {
                for task in &mut phase.tasks {
                    task.assignee = None;
                    task.participants.clear();
                }
            }
        },
        &[("spec.roles", "a model needs at least one role")],
    );
}

#[test]
fn no_roles_also_reports_every_role_reference() {
    assert_problems(
        |document| document.spec.roles.clear(),
        &[
            ("spec.roles", "a model needs at least one role"),
            ("spec.phases[0].tasks[0].assignee", "unknown role 'coach'"),
            ("spec.phases[0].tasks[0].participants[0]", "unknown role 'client'"),
            ("spec.phases[1].tasks[0].assignee", "unknown role 'coach'"),
            ("spec.phases[1].tasks[0].participants[0]", "unknown role 'client'"),
        ],
    );
}

#[test]
fn no_phases() {
    assert_problems(
        |document| document.spec.phases.clear(),
        &[("spec.phases", "a model needs at least one phase")],
    );
}

#[test]
fn invalid_role_key() {
    assert_problems(
        |document| document.spec.roles.push(role("{key: HR}")),
        &[(
            "spec.roles[3].key",
            &format!("'HR' is not a valid role key: {KEY_RULE}"),
        )],
    );
}

#[test]
fn invalid_milestone_key() {
    assert_problems(
        |document| document.spec.milestones[0].key = "1st-session".into(),
        &[(
            "spec.milestones[0].key",
            &format!("'1st-session' is not a valid milestone key: {KEY_RULE}"),
        )],
    );
}

#[test]
fn invalid_phase_key() {
    assert_problems(
        |document| document.spec.phases[1].key = "phase two".into(),
        &[(
            "spec.phases[1].key",
            &format!("'phase two' is not a valid phase key: {KEY_RULE}"),
        )],
    );
}

#[test]
fn invalid_task_key() {
    assert_problems(
        |document| intake(document).key = "_intake_form".into(),
        &[(
            "spec.phases[0].tasks[0].key",
            &format!("'_intake_form' is not a valid task key: {KEY_RULE}"),
        )],
    );
    assert_problems(
        |document| {
            document.spec.throughout.push(task(
                "{key: Check-in, name: Check-in, kind: checkin, repeat: {every: P2W}}",
            ))
        },
        &[(
            "spec.throughout[0].key",
            &format!("'Check-in' is not a valid task key: {KEY_RULE}"),
        )],
    );
}

#[test]
fn duplicate_role_key() {
    assert_problems(
        |document| document.spec.roles.push(role("{key: coach, name: Second coach}")),
        &[(
            "spec.roles[3].key",
            "duplicate role key 'coach' (first defined at spec.roles[0].key)",
        )],
    );
}

#[test]
fn duplicate_milestone_key() {
    assert_problems(
        |document| {
            let again = document.spec.milestones[0].clone();
            document.spec.milestones.push(again);
        },
        &[(
            "spec.milestones[1].key",
            "duplicate milestone key 'contracted' (first defined at spec.milestones[0].key)",
        )],
    );
}

#[test]
fn duplicate_phase_key() {
    assert_problems(
        |document| document.spec.phases[1].key = "contracting".into(),
        &[(
            "spec.phases[1].key",
            "duplicate phase key 'contracting' (first defined at spec.phases[0].key)",
        )],
    );
}

#[test]
fn duplicate_task_key_across_two_phases() {
    assert_problems(
        |document| session(document).key = "intake".into(),
        &[(
            "spec.phases[1].tasks[0].key",
            "duplicate task key 'intake' (first defined at spec.phases[0].tasks[0].key)",
        )],
    );
}

#[test]
fn duplicate_task_key_between_a_phase_and_throughout() {
    assert_problems(
        |document| {
            document.spec.throughout.push(task(
                "{key: session, name: Check-in, kind: checkin, repeat: {every: P2W}}",
            ))
        },
        &[(
            "spec.throughout[0].key",
            "duplicate task key 'session' (first defined at spec.phases[1].tasks[0].key)",
        )],
    );
}

// ---------------------------------------------------------------------------------------
// Role references
// ---------------------------------------------------------------------------------------

#[test]
fn unknown_role_as_assignee() {
    assert_problems(
        |document| intake(document).assignee = Some("mentor".into()),
        &[("spec.phases[0].tasks[0].assignee", "unknown role 'mentor'")],
    );
}

#[test]
fn unknown_role_among_participants() {
    assert_problems(
        |document| intake(document).participants.push("boss".into()),
        &[("spec.phases[0].tasks[0].participants[1]", "unknown role 'boss'")],
    );
}

#[test]
fn unknown_role_in_for_each() {
    assert_problems(
        |document| intake(document).for_each = Some("peers".into()),
        &[("spec.phases[0].tasks[0].for_each", "unknown role 'peers'")],
    );
}

#[test]
fn unknown_role_in_output_visibility() {
    assert_problems(
        |document| {
            session(document).outputs = task(
                "{key: x, name: X, kind: session, outputs: [{key: notes, type: text, visibility: [coach, sponsor]}]}",
            )
            .outputs
        },
        &[(
            "spec.phases[1].tasks[0].outputs[0].visibility[1]",
            "unknown role 'sponsor'",
        )],
    );
}

#[test]
fn typed_outputs_may_be_visible_to_the_integration_audience() {
    let mut document = base();
    session(&mut document).outputs = task(
        "{key: x, name: X, kind: session, outputs: [{key: score, type: integer, visibility: [coach, integration]}, {key: ready, type: enum, values: [yes, no], visibility: [integration]}]}",
    )
    .outputs;
    if let Err(problems) = coachflow_model::compile(document) {
        panic!("refused: {problems:?}");
    }
}

#[test]
fn free_text_cannot_be_visible_to_the_integration_audience() {
    assert_problems(
        |document| {
            session(document).outputs = task(
                "{key: x, name: X, kind: session, outputs: [{key: notes, type: text, visibility: [coach, integration]}, {key: doc, type: string, visibility: [integration]}]}",
            )
            .outputs
        },
        &[
            (
                "spec.phases[1].tasks[0].outputs[0].visibility[1]",
                "a text output never leaves in an event, so it cannot be visible to 'integration'; record a typed value (number, integer, boolean, date or enum) for integrations",
            ),
            (
                "spec.phases[1].tasks[0].outputs[1].visibility[0]",
                "a string output never leaves in an event, so it cannot be visible to 'integration'; record a typed value (number, integer, boolean, date or enum) for integrations",
            ),
        ],
    );
}

#[test]
fn integration_is_not_a_role_key() {
    assert_problems(
        |document| document.spec.roles.push(role("{key: integration, name: HRIS}")),
        &[(
            "spec.roles[3].key",
            "'integration' is the public events' audience, not a role; choose another key",
        )],
    );
}

#[test]
fn unknown_role_in_exit_approval() {
    assert_problems(
        |document| {
            document.spec.phases[0] = phase(
                "{key: contracting, name: Contracting, tasks: [{key: intake, name: Intake, kind: meeting}], exit: {approval: [client, sponsor]}}",
            )
        },
        &[("spec.phases[0].exit.approval[1]", "unknown role 'sponsor'")],
    );
}

#[test]
fn a_role_listed_twice_in_exit_approval() {
    assert_problems(
        |document| {
            document.spec.phases[0] = phase(
                "{key: contracting, name: Contracting, tasks: [{key: intake, name: Intake, kind: meeting}], exit: {approval: [client, coach, client]}}",
            )
        },
        &[("spec.phases[0].exit.approval[2]", "role 'client' is listed twice")],
    );
}

#[test]
fn for_each_needs_a_role_with_multiple() {
    assert_problems(
        |document| intake(document).for_each = Some("client".into()),
        &[(
            "spec.phases[0].tasks[0].for_each",
            "role 'client' holds one person; for_each needs a role with multiple: true",
        )],
    );
    assert_valid(|document| intake(document).for_each = Some("stakeholder".into()));
}

// ---------------------------------------------------------------------------------------
// Dependencies (`after`)
// ---------------------------------------------------------------------------------------

#[test]
fn unknown_task_in_after() {
    assert_problems(
        |document| session(document).after.push("idp".into()),
        &[("spec.phases[1].tasks[0].after[0]", "unknown task 'idp'")],
    );
}

#[test]
fn after_naming_a_task_of_another_phase() {
    assert_problems(
        |document| session(document).after.push("intake".into()),
        &[(
            "spec.phases[1].tasks[0].after[0]",
            "task 'intake' belongs to phase 'contracting'; after may only name tasks of the same phase",
        )],
    );
}

#[test]
fn after_between_throughout_and_phase_tasks() {
    assert_problems(
        |document| {
            document.spec.throughout.push(task(
                "{key: pulse, name: Pulse, kind: survey, after: [intake], repeat: {every: P2W}}",
            ));
            session(document).after.push("pulse".into());
        },
        &[
            (
                "spec.phases[1].tasks[0].after[0]",
                "task 'pulse' belongs to throughout; after may only name tasks of the same phase",
            ),
            (
                "spec.throughout[0].after[0]",
                "task 'intake' belongs to phase 'contracting'; after may only name other throughout tasks",
            ),
        ],
    );
}

#[test]
fn task_after_itself() {
    assert_problems(
        |document| session(document).after.push("session".into()),
        &[(
            "spec.phases[1].tasks[0].after[0]",
            "task 'session' cannot come after itself",
        )],
    );
}

/// Phase `coaching` with tasks `a` after `b`, `b` after `c`, `c` after `a`, and a fourth
/// task `d` after `a` that is not part of the cycle.
fn with_cycle(document: &mut ProcessModel) {
    document.spec.phases[1].tasks = vec![
        task("{key: a, name: A, kind: session, after: [b]}"),
        task("{key: b, name: B, kind: session, after: [c]}"),
        task("{key: c, name: C, kind: session, after: [a]}"),
        task("{key: d, name: D, kind: session, after: [a]}"),
    ];
}

#[test]
fn a_cycle_in_after_is_reported_once_with_its_chain() {
    assert_problems(
        with_cycle,
        &[(
            "spec.phases[1].tasks[2].after[0]",
            "tasks depend on each other in a cycle: a -> b -> c -> a",
        )],
    );
}

#[test]
fn two_cycles_are_both_reported() {
    assert_problems(
        |document| {
            with_cycle(document);
            document.spec.phases[0].tasks = vec![
                task("{key: x, name: X, kind: meeting, after: [y]}"),
                task("{key: y, name: Y, kind: meeting, after: [x]}"),
            ];
        },
        &[
            (
                "spec.phases[0].tasks[1].after[0]",
                "tasks depend on each other in a cycle: x -> y -> x",
            ),
            (
                "spec.phases[1].tasks[2].after[0]",
                "tasks depend on each other in a cycle: a -> b -> c -> a",
            ),
        ],
    );
}

#[test]
fn a_cycle_among_throughout_tasks() {
    assert_problems(
        |document| {
            document.spec.throughout = vec![
                task("{key: pulse, name: Pulse, kind: survey, after: [review], repeat: {every: P2W}}"),
                task("{key: review, name: Review, kind: checkin, after: [pulse], repeat: {every: P4W}}"),
            ];
        },
        &[(
            "spec.throughout[1].after[0]",
            "tasks depend on each other in a cycle: pulse -> review -> pulse",
        )],
    );
}

// ---------------------------------------------------------------------------------------
// Milestones and transitions
// ---------------------------------------------------------------------------------------

#[test]
fn unknown_milestone_on_a_task() {
    assert_problems(
        |document| intake(document).milestone = Some("kickoff".into()),
        &[(
            "spec.phases[0].tasks[0].milestone",
            "unknown milestone 'kickoff'; declare it in spec.milestones",
        )],
    );
    assert_valid(|document| intake(document).milestone = Some("contracted".into()));
}

#[test]
fn unknown_milestone_on_an_exit() {
    assert_problems(
        |document| {
            document.spec.phases[0] = phase(
                "{key: contracting, name: Contracting, tasks: [{key: intake, name: Intake, kind: meeting}], exit: {milestone: signed}}",
            )
        },
        &[(
            "spec.phases[0].exit.milestone",
            "unknown milestone 'signed'; declare it in spec.milestones",
        )],
    );
}

#[test]
fn unknown_phase_in_next() {
    assert_problems(
        |document| document.spec.phases[0].next = vec![transition("closing", None)],
        &[("spec.phases[0].next[0].to", "unknown phase 'closing'")],
    );
}

#[test]
fn a_transition_after_an_unconditional_one_is_never_taken() {
    assert_problems(
        |document| {
            with_closing(document);
            document.spec.phases[0].next = vec![
                transition("coaching", Some("phase.iteration < 3")),
                transition("closing", None),
                transition("coaching", Some("tasks.intake.overdue > 0")),
                transition("coaching", None),
            ]
        },
        &[
            (
                "spec.phases[0].next[2]",
                "this transition is never taken: next[1] before it has no when, so it always holds",
            ),
            (
                "spec.phases[0].next[3]",
                "this transition is never taken: next[1] before it has no when, so it always holds",
            ),
        ],
    );
}

/// A third phase, `closing`, after `coaching`.
fn with_closing(document: &mut ProcessModel) {
    document.spec.phases.push(phase(
        "{key: closing, name: Closing, tasks: [{key: wrap-up, name: Wrap-up, kind: meeting}]}",
    ));
}

#[test]
fn unreachable_phase() {
    assert_problems(
        |document| {
            with_closing(document);
            document.spec.phases[0].next = vec![transition("closing", None)];
        },
        &[(
            "spec.phases[1]",
            "phase 'coaching' can never be entered: no transition leads to it",
        )],
    );
}

#[test]
fn a_phase_reached_only_by_a_conditional_jump_is_reachable() {
    assert_valid(|document| {
        with_closing(document);
        document.spec.phases[0].next = vec![transition("closing", Some("tasks.intake.skipped > 0"))];
    });
}

#[test]
fn a_loop_with_no_way_out() {
    assert_problems(
        |document| {
            document.spec.phases[0].next = vec![transition("coaching", None)];
            document.spec.phases[1].next = vec![transition("contracting", None)];
        },
        &[(
            "spec.phases[0].next",
            "phases contracting -> coaching -> contracting form a loop with no way out: give a transition in the loop a when, or add one that leaves it",
        )],
    );
}

#[test]
fn a_loop_with_no_way_out_names_the_phases_in_loop_order() {
    // contracting -> closing -> coaching -> contracting: not the order the phases are listed in.
    assert_problems(
        |document| {
            with_closing(document);
            document.spec.phases[0].next = vec![transition("closing", None)];
            document.spec.phases[2].next = vec![transition("coaching", None)];
            document.spec.phases[1].next = vec![transition("contracting", None)];
        },
        &[(
            "spec.phases[0].next",
            "phases contracting -> closing -> coaching -> contracting form a loop with no way out: give a transition in the loop a when, or add one that leaves it",
        )],
    );
}

#[test]
fn a_branching_loop_with_no_way_out_lists_its_phases() {
    // contracting goes on to coaching or closing, and both always come back.
    assert_problems(
        |document| {
            with_closing(document);
            document.spec.phases[0].next = vec![
                transition("coaching", Some("tasks.intake.overdue > 0")),
                transition("closing", None),
            ];
            document.spec.phases[1].next = vec![transition("contracting", None)];
            document.spec.phases[2].next = vec![transition("contracting", None)];
        },
        &[(
            "spec.phases[0].next",
            "phases contracting, coaching, closing form a loop with no way out: give a transition in the loop a when, or add one that leaves it",
        )],
    );
}

#[test]
fn a_phase_that_always_goes_back_to_itself() {
    assert_problems(
        |document| document.spec.phases[1].next = vec![transition("coaching", None)],
        &[(
            "spec.phases[1].next",
            "phases coaching -> coaching form a loop with no way out: give a transition in the loop a when, or add one that leaves it",
        )],
    );
}

#[test]
fn a_loop_with_a_conditional_way_back_is_fine() {
    assert_valid(|document| {
        document.spec.phases[1].next = vec![transition("contracting", Some("phase.iteration < 3"))];
    });
    // Unconditional forward, conditional back: the loop still has a way out.
    assert_valid(|document| {
        with_closing(document);
        document.spec.phases[1].next = vec![transition("contracting", Some("tasks.session.overdue > 0"))];
        document.spec.phases[0].next = vec![transition("coaching", None)];
    });
}

// ---------------------------------------------------------------------------------------
// Durations and reminders
// ---------------------------------------------------------------------------------------

#[test]
fn invalid_due() {
    assert_problems(
        |document| intake(document).due = Some("2 weeks".into()),
        &[(
            "spec.phases[0].tasks[0].due",
            "'2 weeks' is not an ISO-8601 duration such as P14D, P6W or PT2H30M: it must start with 'P'",
        )],
    );
}

#[test]
fn invalid_start_after() {
    assert_problems(
        |document| intake(document).start_after = Some("P2H".into()),
        &[(
            "spec.phases[0].tasks[0].start_after",
            "'P2H' is not an ISO-8601 duration such as P14D, P6W or PT2H30M: date units are Y, M, W and D (put hours, minutes, seconds after 'T')",
        )],
    );
}

#[test]
fn invalid_reminder() {
    assert_problems(
        |document| {
            let task = intake(document);
            task.due = Some("P14D".into());
            task.reminders = vec!["P2D".into(), "P1.5D".into()];
        },
        &[(
            "spec.phases[0].tasks[0].reminders[1]",
            "'P1.5D' is not an ISO-8601 duration such as P14D, P6W or PT2H30M: fractions are not supported",
        )],
    );
}

#[test]
fn invalid_escalate_after() {
    assert_problems(
        |document| intake(document).escalate_after = Some("P0D".into()),
        &[(
            "spec.phases[0].tasks[0].escalate_after",
            "'P0D' is not an ISO-8601 duration such as P14D, P6W or PT2H30M: it must be longer than zero",
        )],
    );
}

#[test]
fn invalid_repeat_every() {
    assert_problems(
        |document| {
            intake(document).repeat = task("{key: x, name: X, kind: checkin, repeat: {every: PT, count: 3}}").repeat
        },
        &[(
            "spec.phases[0].tasks[0].repeat.every",
            "'PT' is not an ISO-8601 duration such as P14D, P6W or PT2H30M: 'T' must be followed by hours, minutes or seconds",
        )],
    );
}

#[test]
fn invalid_repeat_until() {
    assert_problems(
        |document| {
            intake(document).repeat =
                task("{key: x, name: X, kind: checkin, repeat: {every: P1W, until: P1D2W}}").repeat
        },
        &[(
            "spec.phases[0].tasks[0].repeat.until",
            "'P1D2W' is not an ISO-8601 duration such as P14D, P6W or PT2H30M: units are repeated or out of order",
        )],
    );
}

#[test]
fn more_malformed_durations() {
    for (text, reason) in [
        ("P", "it names no amount"),
        ("P10", "a number has no unit after it"),
        ("PD", "a unit has no number before it"),
        ("P99999999999D", "a number is too large"),
        ("PT1D", "time units after 'T' are H, M and S"),
        ("P1DT", "'T' must be followed by hours, minutes or seconds"),
        ("P1T2H", "'T' is misplaced"),
    ] {
        let message = format!("'{text}' is not an ISO-8601 duration such as P14D, P6W or PT2H30M: {reason}");
        assert_problems(
            |document| intake(document).due = Some(text.into()),
            &[("spec.phases[0].tasks[0].due", &message)],
        );
    }
}

#[test]
fn reminder_without_due() {
    assert_problems(
        |document| intake(document).reminders = vec!["P1D".into()],
        &[(
            "spec.phases[0].tasks[0].reminders[0]",
            "a reminder counts back from the due date; give the task a due",
        )],
    );
}

#[test]
fn reminder_not_shorter_than_due() {
    assert_problems(
        |document| {
            let task = intake(document);
            task.due = Some("P7D".into());
            task.reminders = vec!["P1D".into(), "P1W".into(), "P2W".into()];
        },
        &[
            (
                "spec.phases[0].tasks[0].reminders[1]",
                "reminder P1W before the due date would fall at or before the moment the task opens (due is P7D); make it shorter than due",
            ),
            (
                "spec.phases[0].tasks[0].reminders[2]",
                "reminder P2W before the due date would fall at or before the moment the task opens (due is P7D); make it shorter than due",
            ),
        ],
    );
}

#[test]
fn a_reminder_of_an_invalid_due_is_not_reported_again() {
    assert_problems(
        |document| {
            let task = intake(document);
            task.due = Some("14 days".into());
            task.reminders = vec!["P1D".into()];
        },
        &[(
            "spec.phases[0].tasks[0].due",
            "'14 days' is not an ISO-8601 duration such as P14D, P6W or PT2H30M: it must start with 'P'",
        )],
    );
}

// ---------------------------------------------------------------------------------------
// Repeat
// ---------------------------------------------------------------------------------------

fn repeat_of(yaml: &str) -> Option<coachflow_model::Repeat> {
    task(&format!("{{key: x, name: X, kind: checkin, repeat: {yaml}}}")).repeat
}

#[test]
fn repeat_with_both_every_and_cron() {
    assert_problems(
        |document| intake(document).repeat = repeat_of("{every: P1W, cron: '0 9 * * MON', count: 4}"),
        &[("spec.phases[0].tasks[0].repeat", "give either every or cron, not both")],
    );
}

#[test]
fn repeat_with_neither_every_nor_cron() {
    assert_problems(
        |document| intake(document).repeat = repeat_of("{count: 4}"),
        &[(
            "spec.phases[0].tasks[0].repeat",
            "give every (an ISO-8601 interval) or cron",
        )],
    );
}

#[test]
fn bad_cron() {
    let message = match coachflow_model::parse_cron("61 * * * *") {
        Ok(_) => panic!("minute 61 was accepted"),
        Err(message) => message,
    };
    assert!(
        message.starts_with("'61 * * * *' is not a valid cron expression: "),
        "{message}"
    );
    assert_problems(
        |document| intake(document).repeat = repeat_of("{cron: '61 * * * *', count: 4}"),
        &[("spec.phases[0].tasks[0].repeat.cron", &message)],
    );
    assert_valid(|document| intake(document).repeat = repeat_of("{cron: '0 0 9 * * MON', count: 4}"));
}

#[test]
fn bad_timezone() {
    assert_problems(
        |document| intake(document).repeat = repeat_of("{cron: '0 9 * * MON', timezone: Mars/Olympus, count: 4}"),
        &[(
            "spec.phases[0].tasks[0].repeat.timezone",
            "'Mars/Olympus' is not an IANA time zone such as Europe/Berlin",
        )],
    );
    assert_valid(|document| {
        intake(document).repeat = repeat_of("{cron: '0 9 * * MON', timezone: Europe/Berlin, count: 4}")
    });
}

#[test]
fn repeat_count_zero() {
    assert_problems(
        |document| intake(document).repeat = repeat_of("{every: P1W, count: 0}"),
        &[("spec.phases[0].tasks[0].repeat.count", "must be at least 1")],
    );
}

#[test]
fn repeat_and_for_each() {
    assert_problems(
        |document| {
            let task = intake(document);
            task.for_each = Some("stakeholder".into());
            task.repeat = repeat_of("{every: P1W, count: 3}");
        },
        &[(
            "spec.phases[0].tasks[0].repeat",
            "a task cannot both repeat and run for_each person; split it in two tasks",
        )],
    );
}

const UNBOUNDED: &str = "a repeat without count or until never finishes, so the phase's default exit gate would never hold: add count or until, make the task optional, or give the phase an exit.when";

#[test]
fn unbounded_repeat_under_the_default_gate() {
    assert_problems(
        |document| intake(document).repeat = repeat_of("{every: P1W}"),
        &[("spec.phases[0].tasks[0].repeat", UNBOUNDED)],
    );
    // An exit that only asks for approval keeps the default gate.
    assert_problems(
        |document| {
            document.spec.phases[0] = phase(
                "{key: contracting, name: Contracting, tasks: [{key: intake, name: Intake, kind: meeting, repeat: {cron: '0 9 * * MON'}}], exit: {approval: [client], manual: true}}",
            )
        },
        &[("spec.phases[0].tasks[0].repeat", UNBOUNDED)],
    );
}

#[test]
fn unbounded_repeat_under_an_exit_when_that_reads_tasks_done() {
    assert_problems(
        |document| {
            document.spec.phases[0] = phase(
                "{key: contracting, name: Contracting, tasks: [{key: intake, name: Intake, kind: meeting, repeat: {every: P1W}}], exit: {when: 'phase.tasks_done && goals.size() >= 1'}}",
            )
        },
        &[(
            "spec.phases[0].tasks[0].repeat",
            "a repeat without count or until never finishes, so phase.tasks_done in the phase's exit.when would never hold: add count or until, make the task optional, or leave phase.tasks_done out of exit.when",
        )],
    );
}

#[test]
fn unbounded_repeat_is_fine_when_it_cannot_hold_up_the_gate() {
    // Bounded.
    assert_valid(|document| intake(document).repeat = repeat_of("{every: P1W, count: 6}"));
    assert_valid(|document| intake(document).repeat = repeat_of("{every: P1W, until: P3M}"));
    // Optional.
    assert_valid(|document| {
        let task = intake(document);
        task.repeat = repeat_of("{every: P1W}");
        task.optional = true;
    });
    // The phase has its own exit.when.
    assert_valid(|document| {
        document.spec.phases[0] = phase(
            "{key: contracting, name: Contracting, tasks: [{key: intake, name: Intake, kind: meeting, repeat: {every: P1W}}], exit: {when: 'tasks.intake.completed >= 2'}}",
        )
    });
    // A throughout task stops when the engagement ends.
    assert_valid(|document| {
        document
            .spec
            .throughout
            .push(task("{key: pulse, name: Pulse, kind: survey, repeat: {every: P2W}}"))
    });
}

// ---------------------------------------------------------------------------------------
// Outputs
// ---------------------------------------------------------------------------------------

fn outputs_of(yaml: &str) -> Vec<coachflow_model::Output> {
    task(&format!("{{key: x, name: X, kind: session, outputs: {yaml}}}")).outputs
}

const OUTPUT_KEY_RULE: &str = KEY_RULE;

#[test]
fn output_key_format() {
    assert_problems(
        |document| session(document).outputs = outputs_of("[{key: Course-correction, type: boolean}]"),
        &[(
            "spec.phases[1].tasks[0].outputs[0].key",
            &format!("'Course-correction' is not a valid output key: {OUTPUT_KEY_RULE}"),
        )],
    );
    let too_long = format!("a{}", "_".repeat(63));
    let message = format!("'{too_long}' is not a valid output key: {OUTPUT_KEY_RULE}");
    assert_problems(
        |document| session(document).outputs = outputs_of(&format!("[{{key: {too_long}, type: boolean}}]")),
        &[("spec.phases[1].tasks[0].outputs[0].key", &message)],
    );
    assert_valid(|document| session(document).outputs = outputs_of("[{key: course_correction_2, type: boolean}]"));
    assert_valid(|document| session(document).outputs = outputs_of("[{key: course-correction, type: boolean}]"));
}

#[test]
fn duplicate_output_key() {
    assert_problems(
        |document| {
            session(document).outputs = outputs_of(
                "[{key: score, type: integer}, {key: notes, type: text}, {key: score, type: number}, {key: score, type: string}]",
            )
        },
        &[
            (
                "spec.phases[1].tasks[0].outputs[2].key",
                "duplicate output key 'score' (first defined at spec.phases[1].tasks[0].outputs[0])",
            ),
            (
                "spec.phases[1].tasks[0].outputs[3].key",
                "duplicate output key 'score' (first defined at spec.phases[1].tasks[0].outputs[0])",
            ),
        ],
    );
}

#[test]
fn the_same_output_key_on_two_tasks_is_fine() {
    assert_valid(|document| {
        intake(document).outputs = outputs_of("[{key: notes, type: text}]");
        session(document).outputs = outputs_of("[{key: notes, type: text}]");
    });
}

#[test]
fn enum_without_values() {
    assert_problems(
        |document| session(document).outputs = outputs_of("[{key: mood, type: enum}]"),
        &[(
            "spec.phases[1].tasks[0].outputs[0].values",
            "an enum output needs its values",
        )],
    );
}

#[test]
fn values_on_a_non_enum() {
    assert_problems(
        |document| session(document).outputs = outputs_of("[{key: mood, type: string, values: [good, bad]}]"),
        &[(
            "spec.phases[1].tasks[0].outputs[0].values",
            "only an enum output has values; this one is string",
        )],
    );
}

#[test]
fn duplicate_enum_values() {
    assert_problems(
        |document| session(document).outputs = outputs_of("[{key: mood, type: enum, values: [good, bad, good]}]"),
        &[("spec.phases[1].tasks[0].outputs[0].values", "values must be distinct")],
    );
    assert_valid(|document| session(document).outputs = outputs_of("[{key: mood, type: enum, values: [good, bad]}]"));
}

// ---------------------------------------------------------------------------------------
// CEL conditions
// ---------------------------------------------------------------------------------------

/// The base model with `when` as the first phase's exit condition, and an output `score`
/// on `intake`.
#[track_caller]
fn assert_exit_when(when: &str, problems: &[&str]) {
    let with_path: Vec<(&str, &str)> = problems
        .iter()
        .map(|message| ("spec.phases[0].exit.when", *message))
        .collect();
    assert_problems(
        |document| {
            intake(document).outputs = outputs_of("[{key: score, type: integer}]");
            document.spec.phases[0].exit = Some(coachflow_model::Exit {
                when: Some(when.to_owned()),
                ..Default::default()
            });
        },
        &with_path,
    );
}

#[test]
fn cel_conditions_that_are_fine() {
    for when in [
        "tasks.intake.done",
        "tasks['intake'].completed >= 1 && outputs.intake.score > 3",
        "outputs['intake']['score'] > 3 || phase.tasks_done",
        "goals.size() >= 1 && goals.all(g, g.status == 'achieved')",
        "people.stakeholder.size() >= 3 && phase.approved",
        "commitments.exists(c, c.status == 'open') || tasks.session.overdue == 0",
    ] {
        assert_exit_when(when, &[]);
    }
}

#[test]
fn cel_syntax_error() {
    assert_exit_when(
        "tasks.intake.done &&",
        &[
            "'tasks.intake.done &&' is not a valid CEL expression: ERROR: <input>:1:21: Syntax error: mismatched input '<EOF>' expecting {'[', '{', '(', '.', '-', '!', 'true', 'false', 'null', NUM_FLOAT, NUM_INT, NUM_UINT, STRING, BYTES, IDENTIFIER}\n| tasks.intake.done &&\n| ....................^",
        ],
    );
}

#[test]
fn cel_unknown_task() {
    assert_exit_when("tasks.idp.done", &["unknown task 'idp'"]);
    assert_exit_when("outputs.idp.score > 1", &["unknown task 'idp'"]);
}

#[test]
fn cel_unknown_output() {
    assert_exit_when("outputs.intake.rating > 3", &["task 'intake' has no output 'rating'"]);
    assert_exit_when(
        "outputs['session']['score'] > 3",
        &["task 'session' has no output 'score'"],
    );
}

#[test]
fn cel_unknown_variable() {
    assert_exit_when(
        "goal.size() > 0",
        &["unknown variable 'goal'; conditions can use tasks, outputs, goals, commitments, people, phase"],
    );
    // A comprehension variable is only in scope inside its comprehension.
    assert_exit_when(
        "goals.all(g, g.done) && g.done",
        &["unknown variable 'g'; conditions can use tasks, outputs, goals, commitments, people, phase"],
    );
}

#[test]
fn cel_unknown_role_in_people() {
    assert_exit_when("people.sponsor.size() > 0", &["unknown role 'sponsor'"]);
}

#[test]
fn cel_unknown_task_field() {
    assert_exit_when(
        "tasks.intake.finished",
        &[
            "tasks.intake has no field 'finished'; it has status, done, total, open, completed, skipped, cancelled, overdue, occurrences",
        ],
    );
}

#[test]
fn cel_unknown_phase_field() {
    assert_exit_when(
        "phase.round < 3",
        &["phase has no field 'round'; it has key, iteration, tasks_done, approved"],
    );
}

#[test]
fn cel_reports_every_unknown_name_once() {
    assert_exit_when(
        "tasks.idp.done && tasks.idp.open == 0 && people.sponsor.size() > 0 && outputs.intake.rating > 1",
        &[
            "task 'intake' has no output 'rating'",
            "unknown role 'sponsor'",
            "unknown task 'idp'",
        ],
    );
}

#[test]
fn cel_has_checks_the_names_it_tests() {
    assert_exit_when("has(outputs.intake.score) && has(people.stakeholder)", &[]);
    assert_exit_when("has(outputs.intake.rating)", &["task 'intake' has no output 'rating'"]);
    assert_exit_when("has(tasks.idp)", &["unknown task 'idp'"]);
    assert_exit_when("has(people.sponsor)", &["unknown role 'sponsor'"]);
}

#[test]
fn cel_in_a_transition() {
    assert_problems(
        |document| document.spec.phases[1].next = vec![transition("contracting", Some("tasks.review.done"))],
        &[("spec.phases[1].next[0].when", "unknown task 'review'")],
    );
}

// ---------------------------------------------------------------------------------------
// Everything at once
// ---------------------------------------------------------------------------------------

#[test]
fn a_model_with_many_problems_reports_all_of_them_in_order() {
    let text = r#"
apiVersion: coachflow.dev/v0
kind: ProcessModel
metadata:
  key: Broken
  name: ""
spec:
  roles:
    - key: coach
    - key: coach
  milestones:
    - key: done
  phases:
    - key: one
      name: One
      tasks:
        - key: a
          name: A
          kind: meeting
          assignee: mentor
          after: [b]
          due: 2w
          reminders: [P1D]
          milestone: started
        - key: b
          name: B
          kind: meeting
          after: [a]
          for_each: coach
          outputs:
            - {key: Score, type: enum}
      exit:
        when: "tasks.c.done"
      next:
        - to: three
    - key: two
      name: Two
      tasks:
        - key: a
          name: Again
          kind: checkin
          repeat: {every: P1W}
  throughout:
    - key: pulse
      name: Pulse
      kind: survey
      repeat: {every: P2W, cron: "0 9 * * MON"}
"#;
    let problems = Model::from_text(text)
        .err()
        .map(|problems| problems.0)
        .unwrap_or_default();
    let expected = expected(&[
        ("apiVersion", "must be 'coachflow.dev/v1', not 'coachflow.dev/v0'"),
        ("metadata.key", &format!("'Broken' is not a valid key: {KEY_RULE}")),
        ("metadata.name", "must not be empty"),
        (
            "spec.roles[1].key",
            "duplicate role key 'coach' (first defined at spec.roles[0].key)",
        ),
        (
            "spec.phases[1].tasks[0].key",
            "duplicate task key 'a' (first defined at spec.phases[0].tasks[0].key)",
        ),
        ("spec.phases[0].tasks[0].assignee", "unknown role 'mentor'"),
        (
            "spec.phases[0].tasks[0].due",
            "'2w' is not an ISO-8601 duration such as P14D, P6W or PT2H30M: it must start with 'P'",
        ),
        (
            "spec.phases[0].tasks[0].milestone",
            "unknown milestone 'started'; declare it in spec.milestones",
        ),
        (
            "spec.phases[0].tasks[1].for_each",
            "role 'coach' holds one person; for_each needs a role with multiple: true",
        ),
        (
            "spec.phases[0].tasks[1].outputs[0].key",
            &format!("'Score' is not a valid output key: {OUTPUT_KEY_RULE}"),
        ),
        (
            "spec.phases[0].tasks[1].outputs[0].values",
            "an enum output needs its values",
        ),
        ("spec.throughout[0].repeat", "give either every or cron, not both"),
        (
            "spec.phases[0].tasks[1].after[0]",
            "tasks depend on each other in a cycle: a -> b -> a",
        ),
        ("spec.phases[0].exit.when", "unknown task 'c'"),
        ("spec.phases[0].next[0].to", "unknown phase 'three'"),
        ("spec.phases[1].tasks[0].repeat", UNBOUNDED),
    ]);
    assert_eq!(problems, expected, "{problems:#?}");
    assert_eq!(problems.len(), 16);
}

#[test]
fn problems_display_with_their_count_and_paths() {
    let mut document = base();
    document.kind = "Workflow".into();
    document.spec.roles.push(role("{key: Sponsor}"));
    let Err(problems) = compile(document) else {
        panic!("the model validated")
    };
    assert_eq!(
        problems.to_string(),
        format!(
            "the model has 2 problem(s):\nkind: must be 'ProcessModel', not 'Workflow'\nspec.roles[3].key: 'Sponsor' is not a valid role key: {KEY_RULE}"
        )
    );
}

// ---------------------------------------------------------------------------------------
// Parsing: syntax and shape errors, JSON
// ---------------------------------------------------------------------------------------

#[track_caller]
fn parse_problems(text: &str) -> Vec<Problem> {
    match parse(text) {
        Ok(_) => panic!("the text parsed"),
        Err(problems) => problems.0,
    }
}

// yaml_serde writes the path it was at in front of its own message; `parse` drops that
// prefix, since the problem's path says it already.

const TASK_FIELDS: &str = "`key`, `name`, `kind`, `description`, `assignee`, `participants`, `optional`, `after`, `for_each`, `start_after`, `due`, `reminders`, `escalate_after`, `repeat`, `outputs`, `milestone`";

#[test]
fn an_unknown_field_is_reported_with_its_path() {
    let text = BASE.replace(
        "assignee: coach\n          participants",
        "asignee: coach\n          participants",
    );
    assert_eq!(
        parse_problems(&text),
        expected(&[(
            "spec.phases[0].tasks[0].asignee",
            &format!("unknown field `asignee`, expected one of {TASK_FIELDS} at line 22 column 11"),
        )])
    );
}

#[test]
fn shape_errors_are_reported_with_their_path() {
    assert_eq!(
        parse_problems(&BASE.replace("kind: session", "kind: nap")),
        expected(&[(
            "spec.phases[1].tasks[0].kind",
            "unknown variant `nap`, expected one of `meeting`, `session`, `interview`, `assessment`, `survey`, `document`, `approval`, `checkin`, `action`, `custom` at line 29 column 17",
        )])
    );
    assert_eq!(
        parse_problems(&BASE.replace("    - key: coaching\n      name: Coaching\n", "    - key: coaching\n")),
        expected(&[("spec.phases[1]", "missing field `name` at line 24 column 7")])
    );
    assert_eq!(
        parse_problems(&BASE.replace("multiple: true", "multiple: many")),
        expected(&[(
            "spec.roles[2].multiple",
            "invalid type: string \"many\", expected a boolean at line 12 column 17",
        )])
    );
    assert_eq!(
        parse_problems(&BASE.replace(
            "kind: meeting\n",
            "kind: meeting\n          repeat: {every: P1W, count: -1}\n"
        )),
        expected(&[(
            "spec.phases[0].tasks[0].repeat.count",
            "invalid type: integer `-1`, expected u32 at line 22 column 39",
        )])
    );
    assert_eq!(
        parse_problems(&BASE.replace("apiVersion: coachflow.dev/v1\n", "")),
        expected(&[("", "missing field `apiVersion` at line 2 column 1")])
    );
    assert_eq!(
        parse_problems("- a\n- b\n"),
        expected(&[("", "invalid type: sequence, expected struct ProcessModel")])
    );
}

#[test]
fn a_yaml_syntax_error_is_one_problem() {
    assert_eq!(
        parse_problems("apiVersion: coachflow.dev/v1\nkind: 'ProcessModel\n"),
        expected(&[(
            "kind",
            "found unexpected end of stream at line 3 column 1, while scanning a quoted scalar at line 2 column 7",
        )])
    );
}

#[test]
fn json_errors_are_reported_with_their_path() {
    assert_eq!(
        parse_problems(
            r#"{"apiVersion": "coachflow.dev/v1", "kind": "ProcessModel", "metadata": {"key": "m", "name": "M", "owner": "x"}}"#
        ),
        expected(&[(
            "metadata.owner",
            "unknown field `owner`, expected one of `key`, `name`, `description` at line 1 column 104",
        )])
    );
    assert_eq!(
        parse_problems(r#"{"apiVersion": "coachflow.dev/v1", "kind": "#),
        expected(&[("kind", "EOF while parsing a value at line 1 column 43")])
    );
}

const BASE_JSON: &str = r#"{
  "apiVersion": "coachflow.dev/v1",
  "kind": "ProcessModel",
  "metadata": {"key": "minimal", "name": "Minimal"},
  "spec": {
    "roles": [{"key": "coach"}, {"key": "client"}, {"key": "stakeholder", "multiple": true}],
    "milestones": [{"key": "contracted"}],
    "phases": [
      {"key": "contracting", "name": "Contracting", "tasks": [
        {"key": "intake", "name": "Intake", "kind": "meeting", "assignee": "coach", "participants": ["client"]}
      ]},
      {"key": "coaching", "name": "Coaching", "tasks": [
        {"key": "session", "name": "Session", "kind": "session", "assignee": "coach", "participants": ["client"]}
      ]}
    ]
  }
}"#;

#[test]
fn the_json_form_parses_the_same_as_the_yaml_form() {
    let from_json = parse(BASE_JSON).unwrap_or_else(|problems| panic!("{problems}"));
    assert_eq!(from_json, base());
    // And any document survives a trip through JSON.
    let mut document = base();
    with_cycle(&mut document);
    intake(&mut document).repeat = repeat_of("{cron: '0 9 * * MON', timezone: Europe/Berlin, count: 4}");
    let json = serde_json::to_string_pretty(&document).unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(parse(&json), Ok(document.clone()));
    // The same problems come back from either form.
    assert_eq!(
        problems_of(parse(&json).unwrap_or_else(|problems| panic!("{problems}"))),
        problems_of(document)
    );
}

#[test]
fn snake_case_and_kebab_case_keys_are_accepted_everywhere_and_cel_reads_them() {
    let text = r#"
apiVersion: coachflow.dev/v1
kind: ProcessModel
metadata: {key: grow_model, name: GROW}
spec:
  roles: [{key: coach}, {key: client}, {key: line_manager}, {key: line-manager}]
  milestones: [{key: goals_agreed}, {key: goals-agreed}]
  phases:
    - key: goal_setting
      name: Goal
      tasks:
        - key: chemistry_call
          name: Chemistry call
          kind: meeting
          assignee: line_manager
          milestone: goals_agreed
          outputs: [{key: good_fit, type: boolean, required: true}]
        - key: goal-statement
          name: Goal statement
          kind: document
          after: [chemistry_call]
          milestone: goals-agreed
          outputs: [{key: goal-count, type: integer, required: true}]
      exit:
        when: "outputs.chemistry_call.good_fit && outputs['goal-statement']['goal-count'] >= 1 && people.line_manager >= 1 && people['line-manager'] >= 0"
    - key: reality-check
      name: Reality
      tasks: [{key: reality_session, name: Reality, kind: session}]
"#;
    let model = coachflow_model::Model::from_text(text).unwrap_or_else(|problems| panic!("{problems}"));
    assert_eq!(model.key(), "grow_model");
    assert!(model.task_id("goal-statement").is_some() && model.phase_index("reality-check").is_some());
}
