//! Whole engagements driven through the engine with an injected clock.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;

use coachflow_engine::{
    Action, CommitmentStatus, DomainError, EngagementStatus, EventKind, Reason, TaskStatus, gate_status,
};
use coachflow_model::Model;
use serde_json::json;
use support::{Harness, model, utc};

fn outputs(pairs: &[(&str, serde_json::Value)]) -> BTreeMap<String, serde_json::Value> {
    pairs
        .iter()
        .map(|(key, value)| ((*key).to_owned(), value.clone()))
        .collect()
}

/// Completes open tasks (lowest id first) and lets time pass until the engagement is in
/// `phase`; never signs off or sets goals.
fn work_until_phase(harness: &mut Harness, phase: &str, iteration: u32) {
    for _ in 0..500 {
        if harness.phase() == Some((phase.to_owned(), iteration)) {
            return;
        }
        match harness.open_tasks().into_iter().next() {
            Some(task) => {
                harness.complete(&task);
            }
            None => {
                let at = harness.next_timer().expect("waiting with no timer");
                harness.advance_to(at);
            }
        }
    }
    panic!("never reached {phase}@{iteration}; in {:?}", harness.phase());
}

#[test]
fn four_stage_engagement_loops_back_to_action_and_completes_with_a_late_follow_up() {
    let mut harness = Harness::started(model("four-stage"), utc("2026-03-02T08:00:00Z"), 2);
    assert_eq!(harness.phase(), Some(("awareness".into(), 1)));
    assert_eq!(harness.open_tasks(), ["kickoff-meeting"]);
    // The kick-off is due in 14 days with a reminder 3 days before.
    assert_eq!(
        harness.state.tasks["kickoff-meeting"].due_at,
        Some(utc("2026-03-16T08:00:00Z"))
    );
    assert!(harness.timer_table.contains_key("remind0:kickoff-meeting"));

    work_until_phase(&mut harness, "analysis", 1);
    let mut open = harness.open_tasks();
    open.sort();
    assert_eq!(
        open,
        [
            "assessments",
            "stakeholder-interviews~stakeholder-1",
            "stakeholder-interviews~stakeholder-2"
        ]
    );

    // A stakeholder joins mid-phase and gets their own interview; the feedback meeting
    // waits for it.
    harness.ok(Action::AddParticipant {
        role: "stakeholder".into(),
        person: "stakeholder-3".into(),
    });
    assert_eq!(
        harness.task_status("stakeholder-interviews~stakeholder-3"),
        TaskStatus::Open
    );
    for task in [
        "assessments",
        "stakeholder-interviews~stakeholder-1",
        "stakeholder-interviews~stakeholder-2",
    ] {
        harness.complete(task);
    }
    assert_eq!(harness.task_status("feedback-meeting"), TaskStatus::Waiting);
    harness.complete("stakeholder-interviews~stakeholder-3");
    assert_eq!(harness.task_status("feedback-meeting"), TaskStatus::Open);
    for task in [
        "feedback-meeting",
        "assessment-review",
        "development-plan",
        "action-plan",
        "coaching-call-schedule",
    ] {
        harness.complete(task);
    }

    // Every task is done, but the gate wants a goal and the sponsor's and HR's sign-off.
    let refused = harness.err(Action::AdvancePhase { expected_phase: None });
    assert_eq!(
        refused,
        DomainError::FailedPrecondition {
            reason: Reason::GateNotSatisfied,
            message:
                "phase 'analysis' cannot be left yet: its exit condition is false; sign-off missing from: sponsor, hr"
                    .into(),
        }
    );
    harness.ok(Action::RecordGoal {
        goal: "delegation".into(),
        title: "Delegate the weekly operations review".into(),
        measure: Some("reviews chaired by a direct report".into()),
        target: Some("4 of 4".into()),
        due: None,
    });
    harness.ok(Action::SignOff {
        role: "sponsor".into(),
        person: "sponsor-1".into(),
    });
    assert_eq!(harness.phase(), Some(("analysis".into(), 1)));
    harness.ok(Action::SignOff {
        role: "hr".into(),
        person: "hr-1".into(),
    });
    assert_eq!(harness.phase(), Some(("action".into(), 1)));
    assert_eq!(harness.milestones().last().map(String::as_str), Some("idp-approved"));

    // Coaching calls open every two weeks.
    let action_started = harness.now;
    assert!(harness.open_tasks().contains(&"coaching-calls#1".to_owned()));
    harness.advance("P2W");
    assert_eq!(
        harness.state.tasks["coaching-calls#2"].opened_at,
        Some(action_started + chrono::Duration::weeks(2))
    );

    work_until_phase(&mut harness, "achievement", 1);
    // Surveys go to every stakeholder, the one who joined late included.
    for person in ["stakeholder-1", "stakeholder-2", "stakeholder-3"] {
        assert_eq!(
            harness.task_status(&format!("stakeholder-survey~{person}")),
            TaskStatus::Open
        );
        harness.complete(&format!("stakeholder-survey~{person}"));
    }
    harness.complete_with(
        "survey-review",
        outputs(&[
            ("course_correction", json!(true)),
            ("review_notes", json!("more delegation")),
        ]),
    );
    harness.complete("course-corrections");
    // Course corrections send the engagement back to Action, second time round.
    assert_eq!(harness.phase(), Some(("action".into(), 2)));
    assert!(harness.open_tasks().contains(&"coaching-calls@2#1".to_owned()));
    assert_eq!(harness.task_status("expectations-agreement"), TaskStatus::Cancelled);

    work_until_phase(&mut harness, "achievement", 2);
    for person in ["stakeholder-1", "stakeholder-2", "stakeholder-3"] {
        harness.complete(&format!("stakeholder-survey@2~{person}"));
    }
    harness.complete_with("survey-review@2", outputs(&[("course_correction", json!(false))]));
    harness.ok(Action::SkipTask {
        task: "course-corrections@2".into(),
        reason: "no corrections needed".into(),
    });
    harness.complete("expectations-agreement@2");
    // Phase-down: three sessions three weeks apart.
    for occurrence in 1..=3 {
        let id = format!("phase-down@2#{occurrence}");
        if occurrence > 1 {
            harness.advance("P3W");
        }
        harness.complete(&id);
    }
    // The formal follow-up opens six weeks after the last phase-down session.
    let last_session = harness.now;
    let follow_up = &harness.state.tasks["follow-up-session@2"];
    assert_eq!(follow_up.status, TaskStatus::Scheduled);
    assert_eq!(follow_up.opens_at, Some(last_session + chrono::Duration::weeks(6)));
    harness.advance("P5W");
    assert_eq!(harness.task_status("follow-up-session@2"), TaskStatus::Scheduled);
    harness.advance("P1W");
    assert_eq!(harness.task_status("follow-up-session@2"), TaskStatus::Open);
    harness.complete("follow-up-session@2");

    assert_eq!(harness.state.status, EngagementStatus::Completed);
    assert!(harness.timer_table.is_empty(), "no timer outlives the engagement");
    assert_eq!(
        harness.milestones(),
        [
            "coaching-kicked-off",
            "client-committed",
            "awareness-completed",
            "idp-approved",
            "action-completed",
            "stakeholder-surveys-completed",
            "action-completed",
            "stakeholder-surveys-completed",
            "expectations-met",
            "coaching-completed",
        ]
    );
    let public = harness.public_events();
    assert_eq!(public.first().map(String::as_str), Some("engagement.started"));
    assert_eq!(public.last().map(String::as_str), Some("engagement.completed"));
    assert_eq!(public.iter().filter(|name| *name == "phase.entered").count(), 6);
}

#[test]
fn every_builtin_model_runs_to_completion() {
    for (name, phases) in [("four-stage", 4), ("columbia-three-phase", 3), ("seven-step", 6)] {
        let mut harness = Harness::started(model(name), utc("2026-03-02T08:00:00Z"), 3);
        harness.drive_to_completion(2_000);
        let entered = harness
            .history
            .iter()
            .filter(|event| matches!(event.kind, EventKind::PhaseEntered { .. }))
            .count();
        assert_eq!(entered, phases, "{name}");
        assert!(
            harness.state.tasks.values().all(|task| task.status.is_closed()),
            "{name}"
        );
        assert!(harness.timer_table.is_empty(), "{name}");
    }
}

fn inline_model(tasks_yaml: &str, throughout_yaml: &str) -> Model {
    let text = format!(
        "apiVersion: coachflow.dev/v1\nkind: ProcessModel\nmetadata: {{key: inline, name: Inline}}\nspec:\n  roles:\n    - {{key: client, required: true}}\n    - {{key: coach, required: true}}\n  phases:\n    - key: only\n      name: Only\n      tasks:\n{tasks_yaml}\n  throughout:\n{throughout_yaml}\n"
    );
    Model::from_text(&text).unwrap_or_else(|problems| panic!("{problems}"))
}

fn pair(model: Model, now: &str, timezone: &str) -> Harness {
    let mut harness = Harness::new(model, utc(now));
    let people = BTreeMap::from([
        ("client".to_owned(), vec!["client-1".to_owned()]),
        ("coach".to_owned(), vec!["coach-1".to_owned()]),
    ]);
    harness.ok(Action::Start {
        model_version: 1,
        timezone: Some(timezone.into()),
        people,
    });
    harness
}

fn opened_at(harness: &Harness, prefix: &str) -> Vec<String> {
    let mut opened: Vec<_> = harness
        .state
        .tasks
        .values()
        .filter(|task| task.id.starts_with(prefix))
        .filter_map(|task| task.opened_at.map(|at| (task.occurrence, at.to_rfc3339())))
        .collect();
    opened.sort();
    opened.into_iter().map(|(_, at)| at).collect()
}

#[test]
fn a_weekly_session_series_keeps_its_local_time_across_a_dst_change() {
    let model = inline_model(
        "        - {key: sessions, name: Session, kind: session, assignee: coach, repeat: {every: P1W, timezone: Europe/Berlin, count: 4}}",
        "        []",
    );
    // Friday 20 March 2026, 10:00 in Berlin (CET); summer time starts on 29 March.
    let mut harness = pair(model, "2026-03-20T09:00:00Z", "UTC");
    harness.advance("P4W");
    assert_eq!(
        opened_at(&harness, "sessions#"),
        [
            "2026-03-20T09:00:00+00:00",
            "2026-03-27T09:00:00+00:00",
            "2026-04-03T08:00:00+00:00",
            "2026-04-10T08:00:00+00:00",
        ]
    );
    assert_eq!(
        harness.state.series["sessions"].status,
        coachflow_engine::SeriesStatus::Finished
    );
    // The phase waits for the four sessions; completing them completes the engagement.
    for occurrence in 1..=4 {
        harness.complete(&format!("sessions#{occurrence}"));
    }
    assert_eq!(harness.state.status, EngagementStatus::Completed);
}

#[test]
fn a_cron_series_follows_the_engagement_time_zone_across_a_dst_change() {
    let model = inline_model(
        "        - {key: calls, name: Call, kind: session, repeat: {cron: '0 9 * * MON', count: 3}}",
        "        []",
    );
    // New York moves to summer time on Sunday 8 March 2026.
    let mut harness = pair(model, "2026-02-27T12:00:00Z", "America/New_York");
    harness.advance("P3W");
    assert_eq!(
        opened_at(&harness, "calls#"),
        [
            "2026-03-02T14:00:00+00:00",
            "2026-03-09T13:00:00+00:00",
            "2026-03-16T13:00:00+00:00"
        ]
    );
}

#[test]
fn a_suspended_engagement_defers_its_timers_and_catches_up_on_resume() {
    let model = inline_model(
        "        - {key: plan, name: Plan, kind: document, assignee: coach, due: P7D, reminders: [P2D], escalate_after: P10D}",
        "        - {key: checkin, name: Check-in, kind: checkin, assignee: coach, optional: true, repeat: {every: P1W}}",
    );
    let mut harness = pair(model, "2026-05-04T08:00:00Z", "UTC");
    assert_eq!(harness.open_tasks(), ["checkin#1", "plan"]);
    harness.advance("P1D");
    harness.ok(Action::Suspend {
        reason: Some("client on leave".into()),
    });
    harness.advance("P20D");
    // While suspended nothing came due: the timers were deferred.
    let during: Vec<&str> = harness
        .history
        .iter()
        .filter(|event| event.at > utc("2026-05-05T08:00:00Z"))
        .map(|event| event.kind.type_name())
        .collect();
    assert!(during.iter().all(|name| *name == "timer_deferred"), "{during:?}");
    assert!(!during.is_empty());
    assert!(
        harness
            .err(Action::CompleteTask {
                task: "plan".into(),
                outputs: BTreeMap::new()
            })
            .to_string()
            .contains("suspended")
    );

    let resumed = harness.ok(Action::Resume);
    let names: Vec<&str> = resumed.iter().map(|event| event.kind.type_name()).collect();
    // Oldest first: the reminder (9 May), the due date (11 May), the check-in due on 11 May
    // with the two missed after it (the series catches up in one go), the escalation (14 May).
    let interesting: Vec<&str> = names
        .iter()
        .copied()
        .filter(|name| {
            matches!(
                *name,
                "task_due_soon" | "task_overdue" | "task_escalated" | "task_opened"
            )
        })
        .collect();
    assert_eq!(
        interesting,
        [
            "task_due_soon",
            "task_overdue",
            "task_opened",
            "task_opened",
            "task_opened",
            "task_escalated"
        ]
    );
    assert!(harness.state.tasks["plan"].overdue);
    assert_eq!(opened_at(&harness, "checkin#").len(), 4);
    // The next check-in is scheduled on the original cadence, not from the resume.
    assert_eq!(
        harness.timer_table.get("next:checkin"),
        Some(&utc("2026-06-01T08:00:00Z"))
    );
}

#[test]
fn commitments_are_followed_up_when_due() {
    let model = inline_model("        - {key: plan, name: Plan, kind: document}", "        []");
    let mut harness = pair(model, "2026-05-04T08:00:00Z", "UTC");
    harness.ok(Action::RecordCommitment {
        commitment: "c-1".into(),
        description: "Hold a skip-level meeting".into(),
        owner: Some("client-1".into()),
        due: Some(utc("2026-05-18T08:00:00Z")),
    });
    harness.advance("P2W");
    assert!(harness.state.commitments["c-1"].follow_up_due);
    let renegotiated = Action::RecordCommitmentFollowUp {
        commitment: "c-1".into(),
        status: CommitmentStatus::Renegotiated,
        note: None,
        due: Some(utc("2026-06-01T08:00:00Z")),
    };
    harness.ok(renegotiated);
    assert_eq!(
        harness.timer_table.get("followup:c-1"),
        Some(&utc("2026-06-01T08:00:00Z"))
    );
    harness.ok(Action::RecordCommitmentFollowUp {
        commitment: "c-1".into(),
        status: CommitmentStatus::Kept,
        note: Some("done, went well".into()),
        due: None,
    });
    assert!(harness.timer_table.is_empty());
    assert_eq!(
        harness
            .err(Action::RecordCommitmentFollowUp {
                commitment: "c-1".into(),
                status: CommitmentStatus::Missed,
                note: None,
                due: None,
            })
            .reason(),
        "COMMITMENT_CLOSED"
    );
}

#[test]
fn gate_status_explains_what_the_phase_waits_for() {
    let harness = Harness::started(model("four-stage"), utc("2026-03-02T08:00:00Z"), 1);
    let gate = gate_status(&harness.model, &harness.state).unwrap();
    assert_eq!(
        gate.unfinished_tasks,
        [
            "kickoff-meeting",
            "one-on-one-meeting",
            "in-depth-interview",
            "client-commitment"
        ]
    );
    assert_eq!(gate.condition, Some(Ok(false)));
}
