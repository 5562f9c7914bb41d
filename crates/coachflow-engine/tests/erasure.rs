#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Erasure: an engagement's content goes and its skeleton stays; a person becomes a
//! pseudonym wherever the engagement names them; repeats decide nothing; the engagement
//! takes commands afterwards, and replaying the history gives the same state.

mod support;

use coachflow_engine::{Action, EngagementState, EventKind, TaskStatus, apply, public_event};
use serde_json::json;
use support::{Harness, utc};

const NOW: &str = "2026-05-04T08:00:00Z";

const MODEL: &str = r"
apiVersion: coachflow.dev/v1
kind: ProcessModel
metadata: {key: erasable, name: Erasable}
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
        - key: notes
          name: Notes
          kind: document
          assignee: coach
          outputs:
            - {key: summary, type: text}
        - key: interview
          name: Interview
          kind: interview
          assignee: coach
          for_each: stakeholder
    - key: coaching
      name: Coaching
      tasks:
        - {key: session, name: Session, kind: session, assignee: coach}
";

fn harness() -> Harness {
    let model = coachflow_model::Model::from_text(MODEL).unwrap_or_else(|problems| panic!("{problems}"));
    let mut harness = Harness::started(model, utc(NOW), 1);
    harness.ok(Action::RecordGoal {
        goal: "delegation".into(),
        title: "MARKER delegate more".into(),
        measure: Some("MARKER measure".into()),
        target: None,
        due: None,
    });
    harness.ok(Action::RecordCommitment {
        commitment: "weekly".into(),
        description: "MARKER weekly one-to-ones".into(),
        owner: Some("stakeholder-1".into()),
        due: None,
    });
    harness.complete_with("notes", [("summary".to_owned(), json!("MARKER notes"))].into());
    harness
}

fn state_text(state: &EngagementState) -> String {
    serde_json::to_string(state).unwrap()
}

#[test]
fn erasing_content_keeps_the_skeleton_and_later_commands_work() {
    let mut harness = harness();
    let before = harness.state.clone();
    assert!(state_text(&before).contains("MARKER"));
    let events = harness.ok(Action::EraseContent);
    assert_eq!(events.len(), 1);
    assert!(matches!(events[0].kind, EventKind::ContentErased { generation: 1 }));
    let after = &harness.state;
    assert!(!state_text(after).contains("MARKER"), "{}", state_text(after));
    // The skeleton: the same phase, tasks and their states, goals and commitments by id.
    assert_eq!(after.phase, before.phase);
    assert_eq!(
        after.tasks.keys().collect::<Vec<_>>(),
        before.tasks.keys().collect::<Vec<_>>()
    );
    assert_eq!(after.tasks["notes"].status, TaskStatus::Completed);
    assert_eq!(after.goals["delegation"].status, before.goals["delegation"].status);
    assert!(after.commitments.contains_key("weekly"));
    assert_eq!(after.content_generation, 1);
    assert!(after.content_erased.is_some());

    // Nothing more to erase: a repeat decides nothing.
    assert!(harness.ok(Action::EraseContent).is_empty());
    // Content recorded afterwards is kept, and erasable again.
    harness.ok(Action::RecordGoal {
        goal: "presence".into(),
        title: "new wording".into(),
        measure: None,
        target: None,
        due: None,
    });
    assert_eq!(harness.state.goals["presence"].title, "new wording");
    let again = harness.ok(Action::EraseContent);
    assert!(matches!(again[0].kind, EventKind::ContentErased { generation: 2 }));
    // The engagement goes on.
    harness.complete("interview~stakeholder-1");
    assert_eq!(harness.phase().unwrap().0, "coaching");
}

#[test]
fn erasing_a_person_names_them_by_pseudonym_everywhere() {
    let mut harness = harness();
    let events = harness.ok(Action::ErasePerson {
        person: "stakeholder-1".into(),
        pseudonym: "erased-0123".into(),
    });
    assert_eq!(
        events.len(),
        1,
        "a stakeholder's erasure leaves the content: {events:?}"
    );
    let state = &harness.state;
    assert!(state.people["stakeholder"].contains(&"erased-0123".to_owned()));
    assert!(!state.is_participant("stakeholder-1"));
    assert_eq!(state.commitments["weekly"].owner.as_deref(), Some("erased-0123"));
    let interview = &state.tasks["interview~stakeholder-1"];
    assert_eq!(interview.subject.as_deref(), Some("erased-0123"));
    assert_eq!(state.shown_task_id("interview~stakeholder-1"), "interview~erased-0123");
    assert_eq!(state.stored_task_id("interview~erased-0123"), "interview~stakeholder-1");
    assert_eq!(state.commitments["weekly"].description, "MARKER weekly one-to-ones");
    // Not named any more: nothing to do.
    assert!(
        harness
            .ok(Action::ErasePerson {
                person: "stakeholder-1".into(),
                pseudonym: "erased-0123".into(),
            })
            .is_empty()
    );
}

#[test]
fn erasing_the_client_erases_the_content_too_and_replays() {
    let mut harness = harness();
    let events = harness.ok(Action::ErasePerson {
        person: "client-1".into(),
        pseudonym: "erased-c".into(),
    });
    let kinds: Vec<&str> = events.iter().map(|event| event.kind.type_name()).collect();
    assert_eq!(kinds, ["content_erased", "person_erased"]);
    assert!(!state_text(&harness.state).contains("MARKER"));
    assert!(harness.state.holds_role("erased-c", "client"));
    let replayed = harness.history.iter().fold(EngagementState::default(), apply);
    assert_eq!(replayed, harness.state);
}

#[test]
fn erasures_are_public_with_ids_only() {
    let mut harness = harness();
    let events = harness.ok(Action::ErasePerson {
        person: "client-1".into(),
        pseudonym: "erased-c".into(),
    });
    let name = coachflow_engine::EngagementRef {
        name: "tenants/acme/engagements/e1",
    };
    let audience = coachflow_engine::Audience::default();
    let public: Vec<_> = events
        .iter()
        .filter_map(|event| public_event(name, &harness.model, &audience, &harness.state, event))
        .collect();
    assert_eq!(
        public
            .iter()
            .map(|event| (event.entity, event.action))
            .collect::<Vec<_>>(),
        [("engagement", "content_erased"), ("subject", "erased")]
    );
    assert_eq!(
        public[1].data,
        json!({"engagement": "tenants/acme/engagements/e1", "sequence": events[1].sequence, "person": "client-1", "pseudonym": "erased-c"})
    );
}

#[test]
fn an_ended_engagement_can_be_erased() {
    let mut harness = harness();
    harness.ok(Action::Cancel {
        reason: Some("MARKER reason".into()),
    });
    let events = harness.ok(Action::EraseContent);
    assert_eq!(events.len(), 1);
    assert!(!serde_json::to_string(&harness.state).unwrap().contains("MARKER"));
}

#[test]
fn a_malformed_pseudonym_is_refused() {
    let mut harness = harness();
    let error = harness.err(Action::ErasePerson {
        person: "client-1".into(),
        pseudonym: "not a valid id!".into(),
    });
    assert!(format!("{error:?}").contains("pseudonym"), "{error:?}");
}
