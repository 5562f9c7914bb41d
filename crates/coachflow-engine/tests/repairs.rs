#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Gates that cannot silently trap an engagement: sign-offs only once a phase's condition
//! holds, withdrawn when it stops holding; and the repairs a coach or an operator makes to
//! a running engagement (reopen a task, move to a phase, withdraw a sign-off), each with a
//! reason, replayable like every other command.

mod support;

use std::collections::BTreeMap;

use coachflow_engine::{Action, DomainError, EventKind, TaskStatus, gate_status};
use coachflow_model::Model;
use serde_json::{Value, json};
use support::{Harness, model, utc};

const NOW: &str = "2026-05-04T08:00:00Z";

/// The trap of the issue: a phase whose exit condition reads an output that is not
/// required. Completing the task without it used to leave the engagement in the phase for
/// good.
const AGREEMENT_MODEL: &str = r"
apiVersion: coachflow.dev/v1
kind: ProcessModel
metadata: {key: agreement, name: Agreement}
spec:
  roles:
    - {key: client, required: true}
    - {key: coach, required: true}
    - {key: sponsor}
    - {key: hr}
    - {key: stakeholder, multiple: true}
  phases:
    - key: contracting
      name: Contracting
      tasks:
        - key: agreement
          name: Coaching agreement
          kind: document
          assignee: coach
          outputs:
            - {key: signed, type: boolean}
            - {key: notes, type: text}
        - key: intake
          name: Intake
          kind: meeting
          assignee: coach
          for_each: stakeholder
      exit:
        when: outputs.agreement.signed == true && phase.tasks_done
        approval: [sponsor]
    - key: coaching
      name: Coaching
      tasks:
        - {key: session, name: Session, kind: session, assignee: coach}
";

fn agreement_model() -> Model {
    Model::from_text(AGREEMENT_MODEL).unwrap_or_else(|problems| panic!("{problems}"))
}

fn outputs(value: Value) -> BTreeMap<String, Value> {
    value.as_object().unwrap().clone().into_iter().collect()
}

fn complete(task: &str, outputs: BTreeMap<String, Value>) -> Action {
    Action::CompleteTask {
        task: task.to_owned(),
        outputs,
    }
}

fn sign_off() -> Action {
    Action::SignOff {
        role: "sponsor".to_owned(),
        person: "sponsor-1".to_owned(),
    }
}

fn reopen(task: &str, reason: &str) -> Action {
    Action::ReopenTask {
        task: task.to_owned(),
        reason: reason.to_owned(),
    }
}

fn withdrawals(events: &[coachflow_engine::Event]) -> Vec<(String, Option<String>)> {
    events
        .iter()
        .filter_map(|event| match &event.kind {
            EventKind::PhaseSignOffWithdrawn { role, reason, .. } => Some((role.clone(), reason.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn the_model_of_the_trap_is_valid_but_warned_about() {
    let model = agreement_model();
    let warnings: Vec<String> = model.warnings().iter().map(ToString::to_string).collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].starts_with("spec.phases[0].exit.when: reads outputs.agreement.signed, which is not required"),
        "{warnings:?}"
    );
}

#[test]
fn a_task_completed_without_the_output_its_gate_reads_is_repaired_by_reopening_it() {
    let mut harness = Harness::started(agreement_model(), utc(NOW), 1);
    harness.ok(complete("intake~stakeholder-1", BTreeMap::new()));
    harness.ok(complete(
        "agreement",
        outputs(json!({"notes": "forgot to tick signed"})),
    ));
    // The gate does not hold and nothing is open: the trap.
    assert_eq!(harness.phase(), Some(("contracting".into(), 1)));
    assert!(harness.open_tasks().is_empty());
    let gate = gate_status(&harness.model, &harness.state).unwrap();
    assert!(!gate.ready && gate.condition == Some(Ok(false)));
    // The sponsor cannot approve it.
    assert_eq!(harness.err(sign_off()).reason(), "GATE_NOT_READY");

    // A repair needs a reason, and only a closed task of the work under way is reopened.
    assert_eq!(
        harness.err(reopen("agreement", "  ")),
        DomainError::invalid("reason", "say why the engagement is repaired")
    );
    assert_eq!(
        harness.err(reopen("missing", "x")),
        DomainError::not_found("task", "missing")
    );
    let events = harness.ok(reopen("agreement", "the agreement was signed on paper"));
    assert!(
        matches!(&events[0].kind, EventKind::TaskReopened { id, reason } if id == "agreement" && reason == "the agreement was signed on paper")
    );
    assert!(
        events
            .iter()
            .any(|event| matches!(&event.kind, EventKind::TaskOpened { id, .. } if id == "agreement"))
    );
    let agreement = &harness.state.tasks["agreement"];
    assert_eq!(agreement.status, TaskStatus::Open);
    assert!(agreement.outputs.is_empty() && agreement.closed_at.is_none());
    assert_eq!(
        harness.err(reopen("agreement", "again")).reason(),
        "TASK_NOT_CLOSED",
        "an open task is not reopened"
    );

    harness.ok(complete("agreement", outputs(json!({"signed": true}))));
    harness.ok(sign_off());
    assert_eq!(harness.phase(), Some(("coaching".into(), 1)));
    // The work of a phase left is not reopened in place.
    assert_eq!(
        harness.err(reopen("agreement", "late change")).reason(),
        "TASK_NOT_UNDER_WAY"
    );
}

#[test]
fn a_sign_off_is_withdrawn_when_the_condition_it_approved_stops_holding() {
    let model = Model::from_text(&AGREEMENT_MODEL.replace("approval: [sponsor]", "approval: [sponsor, hr]")).unwrap();
    let mut harness = Harness::started(model, utc(NOW), 1);
    harness.ok(complete("intake~stakeholder-1", BTreeMap::new()));
    harness.ok(complete("agreement", outputs(json!({"signed": true}))));
    harness.ok(sign_off());
    assert_eq!(harness.state.phase.as_ref().unwrap().sign_offs.len(), 1);
    // A stakeholder joins: their intake is work the sponsor has not seen done.
    let events = harness.ok(Action::AddParticipant {
        role: "stakeholder".to_owned(),
        person: "stakeholder-2".to_owned(),
    });
    assert_eq!(withdrawals(&events), [("sponsor".to_owned(), None)]);
    assert!(harness.state.phase.as_ref().unwrap().sign_offs.is_empty());
    assert_eq!(harness.err(sign_off()).reason(), "GATE_NOT_READY");
    harness.ok(complete("intake~stakeholder-2", BTreeMap::new()));
    harness.ok(sign_off());
    harness.ok(Action::SignOff {
        role: "hr".to_owned(),
        person: "hr-1".to_owned(),
    });
    assert_eq!(harness.phase(), Some(("coaching".into(), 1)));
}

#[test]
fn a_coach_withdraws_a_sign_off_with_a_reason() {
    let model = Model::from_text(&AGREEMENT_MODEL.replace("approval: [sponsor]", "approval: [sponsor, hr]")).unwrap();
    let mut harness = Harness::started(model, utc(NOW), 1);
    harness.ok(complete("intake~stakeholder-1", BTreeMap::new()));
    harness.ok(complete("agreement", outputs(json!({"signed": true}))));
    harness.ok(sign_off());
    let withdraw = |reason: &str| Action::WithdrawSignOff {
        role: "sponsor".to_owned(),
        reason: reason.to_owned(),
    };
    let events = harness.ok(withdraw("signed for the wrong engagement"));
    assert_eq!(
        withdrawals(&events),
        [("sponsor".to_owned(), Some("signed for the wrong engagement".to_owned()))]
    );
    assert_eq!(harness.err(withdraw("again")).reason(), "NOT_SIGNED_OFF");
    assert_eq!(harness.err(withdraw("")).reason(), "INVALID_ARGUMENT");
}

#[test]
fn a_coach_moves_a_stuck_engagement_to_a_named_phase() {
    let mut harness = Harness::started(agreement_model(), utc(NOW), 1);
    harness.ok(complete("agreement", outputs(json!({"notes": "no signature"}))));
    let error = harness.err(Action::MoveToPhase {
        phase: "closing".to_owned(),
        reason: "skip contracting".to_owned(),
    });
    assert_eq!(
        error,
        DomainError::invalid("phase", "unknown phase 'closing'; the model has contracting, coaching")
    );
    let events = harness.ok(Action::MoveToPhase {
        phase: "coaching".to_owned(),
        reason: "contracting was done outside the system".to_owned(),
    });
    let kinds: Vec<&str> = events.iter().map(|event| event.kind.type_name()).collect();
    assert!(
        kinds.contains(&"task_cancelled"),
        "the intake left open is cancelled: {kinds:?}"
    );
    let exited = kinds.iter().position(|kind| *kind == "phase_exited").unwrap();
    let entered = kinds.iter().position(|kind| *kind == "phase_entered").unwrap();
    assert!(exited < entered, "{kinds:?}");
    assert!(!kinds.contains(&"phase_completed") && !kinds.contains(&"milestone_reached"));
    assert_eq!(harness.phase(), Some(("coaching".into(), 1)));
    assert_eq!(harness.open_tasks(), ["session"]);
    assert_eq!(harness.task_status("intake~stakeholder-1"), TaskStatus::Cancelled);
    // Back to the phase left: a new iteration with fresh work.
    harness.ok(Action::MoveToPhase {
        phase: "contracting".to_owned(),
        reason: "the sponsor wants the agreement after all".to_owned(),
    });
    assert_eq!(harness.phase(), Some(("contracting".into(), 2)));
    assert!(harness.open_tasks().contains(&"agreement@2".to_owned()));
}

#[test]
fn repairs_are_refused_on_an_ended_engagement() {
    let mut harness = Harness::started(model("four-stage"), utc(NOW), 1);
    harness.ok(Action::Cancel { reason: None });
    for action in [
        reopen("kickoff-meeting", "x"),
        Action::MoveToPhase {
            phase: "analysis".to_owned(),
            reason: "x".to_owned(),
        },
        Action::WithdrawSignOff {
            role: "sponsor".to_owned(),
            reason: "x".to_owned(),
        },
    ] {
        assert_eq!(harness.err(action).reason(), "ENGAGEMENT_ENDED");
    }
}
