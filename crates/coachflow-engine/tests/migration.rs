#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Migration of running engagements from one model version to the next, tested like
//! `decide`: the events replay to the migrated state, a plan changes nothing, conflicts
//! are named, and moving there and back with the inverse mapping gives an equivalent state.

mod support;

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use coachflow_engine::{
    Action, Actor, Disposition, EngagementState, EngagementStatus, EventKind, Mapping, Migration, TaskStatus, apply,
    conflicts, gate_status, migrate,
};
use coachflow_model::Model;
use proptest::prelude::*;
use support::{Harness, utc};

const NOW: &str = "2026-05-04T08:00:00Z";

/// Version 1: the tests' GROW model.
fn grow_v1_source() -> String {
    let path = format!(
        "{}/../../integration-tests/models/grow.yaml",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{path}: {error}"))
}

/// Version 2: Reality renamed Current reality, its session renamed, the optional line
/// manager check gone, a contract task added to Goal, the chemistry call due later.
fn grow_v2_source() -> String {
    let source = grow_v1_source()
        .replace("    - key: reality\n      name: Reality\n", "    - key: current_reality\n      name: Current reality\n")
        .replace("key: reality_session", "key: reality_review")
        .replace(
            "          assignee: coach\n          participants: [client]\n          due: P7D\n          milestone: chemistry_confirmed",
            "          assignee: coach\n          participants: [client]\n          due: P10D\n          milestone: chemistry_confirmed",
        )
        .replace(
            "        - key: line_manager_check\n          name: Line manager check-in\n          kind: checkin\n          assignee: line_manager\n          optional: true\n          after: [options_session]\n",
            "",
        )
        .replace(
            "        - key: goal_statement\n",
            "        - {key: contract, name: Coaching contract, kind: document, assignee: coach, due: P5D}\n        - key: goal_statement\n",
        );
    assert!(source.contains("current_reality") && source.contains("reality_review"));
    assert!(source.contains("P10D") && source.contains("key: contract") && !source.contains("line_manager_check"));
    source
}

fn model(source: &str) -> Model {
    Model::from_text(source).unwrap_or_else(|problems| panic!("{problems}"))
}

fn forward() -> Mapping {
    Mapping {
        phases: BTreeMap::from([("reality".to_owned(), "current_reality".to_owned())]),
        tasks: BTreeMap::from([("reality_session".to_owned(), "reality_review".to_owned())]),
        removed: BTreeMap::from([("line_manager_check".to_owned(), Disposition::Cancel)]),
        otherwise: None,
    }
}

fn started(model: Model) -> Harness {
    let mut harness = Harness::new(model, utc(NOW));
    let people = BTreeMap::from([
        ("client".to_owned(), vec!["client-1".to_owned()]),
        ("coach".to_owned(), vec!["coach-1".to_owned()]),
        ("sponsor".to_owned(), vec!["sponsor-1".to_owned()]),
        ("line_manager".to_owned(), vec!["line_manager-1".to_owned()]),
        ("stakeholder".to_owned(), vec!["stakeholder-1".to_owned()]),
    ]);
    harness.ok(Action::Start {
        model_version: 1,
        timezone: Some("Europe/Berlin".to_owned()),
        people,
    });
    harness
}

/// One step of a diligent caller: complete an open task (the `pick`-th), sign off a gate
/// that is ready, set the goal a gate wants, or let time pass to the next timer.
fn progress(harness: &mut Harness, pick: usize) -> bool {
    if harness.state.status != EngagementStatus::Active {
        return false;
    }
    let open = harness.open_tasks();
    if !open.is_empty() {
        let task = open[pick % open.len()].clone();
        harness.complete(&task);
        return true;
    }
    if let Some(gate) = gate_status(&harness.model, &harness.state) {
        if let Some(role) = gate.missing_sign_offs.first().filter(|_| gate.ready) {
            let person = harness.state.people[role][0].clone();
            harness.ok(Action::SignOff {
                role: role.clone(),
                person,
            });
            return true;
        }
        if !gate.ready && harness.state.goals.is_empty() {
            harness.ok(Action::RecordGoal {
                goal: "goal-1".into(),
                title: "Delegate the weekly review".into(),
                measure: None,
                target: None,
                due: None,
            });
            return true;
        }
    }
    match harness.next_timer() {
        Some(at) => {
            harness.advance_to(at);
            true
        }
        None => false,
    }
}

/// Migrates the harness's engagement, checking what every decision must: the events
/// replay to the decision's state, and their sequence numbers continue the history.
fn migrated(
    harness: &Harness,
    to: &Model,
    to_version: u32,
    mapping: &Mapping,
    now: DateTime<Utc>,
) -> coachflow_engine::Decision {
    let migration = Migration {
        from: &harness.model,
        to,
        to_version,
        mapping,
        reason: "version 2 of the method",
    };
    let before = harness.state.clone();
    let decision = migrate(&migration, &harness.state, &Actor::Service("lms".into()), now)
        .unwrap_or_else(|conflicts| panic!("{conflicts:#?}"));
    assert_eq!(harness.state, before, "migrating does not touch its input");
    let replayed = decision.events.iter().fold(harness.state.clone(), apply);
    assert_eq!(replayed, decision.state, "the events replay to the migrated state");
    for (offset, event) in decision.events.iter().enumerate() {
        assert_eq!(event.sequence, harness.state.sequence + 1 + offset as u64);
    }
    decision
}

/// Continues `harness` on `model` from `decision`.
fn continue_on(harness: &Harness, model: Model, decision: coachflow_engine::Decision) -> Harness {
    let mut next = Harness::new(model, harness.now);
    next.state = decision.state;
    next.history = harness.history.clone();
    next.history.extend(decision.events);
    next.timer_table = next
        .state
        .timers
        .values()
        .filter(|timer| !timer.deferred)
        .map(|timer| (timer.id.clone(), timer.at))
        .collect();
    next
}

#[test]
fn renamed_phases_and_tasks_keep_their_work_and_new_tasks_open() {
    let (v1, v2) = (model(&grow_v1_source()), model(&grow_v2_source()));
    // In Goal, the chemistry call open.
    let harness = started(v1.clone());
    let call = harness.state.tasks["chemistry_call"].clone();
    assert_eq!(call.status, TaskStatus::Open);
    let decision = migrated(&harness, &v2, 2, &forward(), harness.now + Duration::hours(1));
    let state = &decision.state;
    assert_eq!(state.model_version, 2);
    let kinds: Vec<&str> = decision.events.iter().map(|event| event.kind.type_name()).collect();
    assert_eq!(kinds[0], "engagement_migrated", "{kinds:?}");
    // The chemistry call's due date follows the new P10D, from when it opened.
    let rescheduled = &state.tasks["chemistry_call"];
    assert_eq!(
        rescheduled.due_at.unwrap(),
        call.opened_at.unwrap() + Duration::days(10),
        "{kinds:?}"
    );
    assert_eq!(state.timers["due:chemistry_call"].at, rescheduled.due_at.unwrap());
    // The contract is new work of the current phase: open, with its due timer.
    assert_eq!(state.tasks["contract"].status, TaskStatus::Open);
    assert!(state.timers.contains_key("due:contract"));
    assert!(
        decision
            .effects
            .iter()
            .any(|effect| matches!(effect, coachflow_engine::Effect::ScheduleTimer { id, .. } if id == "due:contract"))
    );

    // In Reality, the session open: it follows its renamed task and phase.
    let mut harness = started(v1.clone());
    while harness.phase().map(|phase| phase.0) != Some("reality".to_owned()) || harness.open_tasks().is_empty() {
        assert!(progress(&mut harness, 0), "stuck before reality");
    }
    while !harness.open_tasks().contains(&"reality_session".to_owned()) {
        assert!(progress(&mut harness, 0));
    }
    let decision = migrated(&harness, &v2, 2, &forward(), harness.now);
    let mut harness = continue_on(&harness, v2.clone(), decision);
    assert_eq!(harness.phase(), Some(("current_reality".into(), 1)));
    let session = &harness.state.tasks["reality_session"];
    assert_eq!(
        (session.task.as_str(), session.phase.as_deref()),
        ("reality_review", Some("current_reality"))
    );
    // The renamed task is completed by its old instance id, and the engagement goes on to
    // the end on version 2.
    harness.complete("reality_session");
    assert_eq!(harness.phase(), Some(("options".into(), 1)));
    for pick in 0..400 {
        if !progress(&mut harness, pick) {
            break;
        }
    }
    assert_eq!(harness.state.status, EngagementStatus::Completed);
    assert!(
        harness
            .state
            .milestones
            .iter()
            .any(|record| record.milestone == "reality_checked")
    );
}

/// `source` with the Options phase left only on AdvancePhase, so its optional line
/// manager check can stay open.
fn manual_options(source: &str) -> Model {
    let manual = source.replace(
        "    - key: options\n      name: Options\n",
        "    - key: options\n      name: Options\n      exit: {manual: true}\n",
    );
    assert_ne!(manual, source);
    model(&manual)
}

#[test]
fn unfinished_work_of_a_removed_task_is_skipped_or_cancelled_with_the_reason() {
    let (v1, v2) = (manual_options(&grow_v1_source()), manual_options(&grow_v2_source()));
    let mut harness = started(v1.clone());
    while !harness.open_tasks().contains(&"line_manager_check".to_owned()) {
        assert!(progress(&mut harness, 1), "the line manager check never opened");
    }
    let mut mapping = forward();
    mapping
        .removed
        .insert("line_manager_check".to_owned(), Disposition::Skip);
    let decision = migrated(&harness, &v2, 2, &mapping, harness.now);
    let check = &decision.state.tasks["line_manager_check"];
    assert_eq!(check.status, TaskStatus::Skipped);
    assert_eq!(check.skip_reason.as_deref(), Some("version 2 of the method"));
    let cancelled = migrated(&harness, &v2, 2, &forward(), harness.now);
    assert_eq!(
        cancelled.state.tasks["line_manager_check"].status,
        TaskStatus::Cancelled
    );
}

#[test]
fn what_blocks_a_move_is_named_and_nothing_moves() {
    let (v1, v2) = (model(&grow_v1_source()), model(&grow_v2_source()));
    let mut harness = started(v1.clone());
    while harness.phase().map(|phase| phase.0) != Some("reality".to_owned()) {
        assert!(progress(&mut harness, 0));
    }
    let check = |mapping: &Mapping, state: &EngagementState| {
        let migration = Migration {
            from: &v1,
            to: &v2,
            to_version: 2,
            mapping,
            reason: "v2",
        };
        conflicts(&migration, state)
            .into_iter()
            .map(|conflict| conflict.to_string())
            .collect::<Vec<_>>()
    };
    // Without the phase's rename: the engagement is in a phase v2 lacks, and so is its work.
    let found = check(&Mapping::default(), &harness.state);
    assert!(
        found
            .iter()
            .any(|conflict| conflict.starts_with("phases.reality: the engagement is in phase 'reality'")),
        "{found:#?}"
    );
    assert!(
        found.iter().any(|conflict| conflict.starts_with("tasks.")),
        "{found:#?}"
    );
    // A mapping that names what does not exist.
    let bad = Mapping {
        phases: BTreeMap::from([("realty".to_owned(), "current_reality".to_owned())]),
        tasks: BTreeMap::from([("reality_session".to_owned(), "nope".to_owned())]),
        ..Mapping::default()
    };
    let found = check(&bad, &harness.state);
    assert!(
        found.contains(&"mapping.phases.realty: the old version has no phase 'realty'".to_owned()),
        "{found:#?}"
    );
    assert!(
        found.contains(&"mapping.tasks.reality_session: version 2 has no task 'nope'".to_owned()),
        "{found:#?}"
    );
    // Nothing moves: migrate refuses as the plan does, and the state is as it was.
    let migration = Migration {
        from: &v1,
        to: &v2,
        to_version: 2,
        mapping: &bad,
        reason: "v2",
    };
    let before = harness.state.clone();
    assert!(migrate(&migration, &harness.state, &Actor::System, harness.now).is_err());
    assert_eq!(harness.state, before);
    // An ended engagement keeps its version.
    harness.ok(Action::Cancel { reason: None });
    let found = check(&forward(), &harness.state);
    assert!(
        found
            .iter()
            .any(|conflict| conflict.starts_with("state: the engagement is cancelled")),
        "{found:#?}"
    );
}

#[test]
fn the_migrated_event_is_public_with_ids_only() {
    let (v1, v2) = (model(&grow_v1_source()), model(&grow_v2_source()));
    let harness = started(v1);
    let decision = migrated(&harness, &v2, 2, &forward(), harness.now);
    let event = &decision.events[0];
    assert!(matches!(
        event.kind,
        EventKind::EngagementMigrated {
            from_version: 1,
            to_version: 2,
            ..
        }
    ));
    let public = coachflow_engine::public_event(
        coachflow_engine::EngagementRef {
            name: "tenants/acme/engagements/e",
        },
        &v2,
        &coachflow_engine::Audience::default(),
        &decision.state,
        event,
    )
    .expect("engagement.migrated is public");
    assert_eq!((public.entity, public.action), ("engagement", "migrated"));
    assert_eq!(
        public.data,
        serde_json::json!({"engagement": "tenants/acme/engagements/e", "sequence": event.sequence,
                           "model": "grow_coaching", "from_version": 1, "to_version": 2, "phase": "goal",
                           "renamed_phases": {"reality": "current_reality"},
                           "renamed_tasks": {"reality_session": "reality_review"}})
    );
}

/// What must survive a move there and back: the version, where the engagement is, and
/// every instance of the version's tasks with its status, assignee, due date and outputs.
fn essence(model: &Model, state: &EngagementState) -> impl PartialEq + std::fmt::Debug {
    let tasks: BTreeMap<String, _> = state
        .tasks
        .values()
        .filter(|task| model.task_id(&task.task).is_some())
        .map(|task| {
            (
                task.id.clone(),
                (
                    task.task.clone(),
                    task.phase.clone(),
                    task.status,
                    task.assignee.clone(),
                    task.due_at,
                    task.outputs.clone(),
                ),
            )
        })
        .collect();
    (
        state.model_version,
        state.status,
        state
            .phase
            .as_ref()
            .map(|phase| (phase.key.clone(), phase.iteration, phase.sign_offs.clone())),
        tasks,
        state.goals.clone(),
        state.commitments.clone(),
        state.people.clone(),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn a_move_replays_a_plan_changes_nothing_and_there_and_back_is_equivalent(
        picks in prop::collection::vec(0_usize..8, 0..60),
    ) {
        let (v1, v2) = (model(&grow_v1_source()), model(&grow_v2_source()));
        let mut harness = started(v1.clone());
        for pick in picks {
            if !progress(&mut harness, pick) {
                break;
            }
        }
        prop_assume!(harness.state.status == EngagementStatus::Active);
        let before = harness.state.clone();
        let there = migrated(&harness, &v2, 2, &forward(), harness.now);
        prop_assert_eq!(&harness.state, &before);
        let on_v2 = continue_on(&harness, v2.clone(), there);
        // Version 2 numbers its versions on; the way back is version 1 again here.
        let mut back_mapping = forward().inverse();
        back_mapping.removed.clear();
        let back = {
            let migration = Migration { from: &v2, to: &v1, to_version: 1, mapping: &back_mapping, reason: "back" };
            let decision = migrate(&migration, &on_v2.state, &Actor::System, on_v2.now)
                .unwrap_or_else(|conflicts| panic!("{conflicts:#?}"));
            let replayed = decision.events.iter().fold(on_v2.state.clone(), apply);
            prop_assert_eq!(&replayed, &decision.state);
            decision.state
        };
        prop_assert_eq!(essence(&v1, &back), essence(&v1, &before));
    }
}
