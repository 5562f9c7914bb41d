#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Property tests: random command sequences, valid and invalid, driven through the engine
//! with the [`support::Harness`] (which checks every decision: its events replay to its
//! state, sequence numbers are gapless, the timers table kept from effects mirrors the
//! state's live timers, no task is open and closed at once).
//!
//! On top of that, every step here checks that
//! - `decide` is deterministic, and a refused command changes nothing;
//! - commands are refused before `Start` and change nothing once the engagement ended;
//! - a task has `closed_at` exactly when its status is closed, and open work belongs to the
//!   phase the engagement is in;
//! - between steps no live timer is overdue (the runner fired it) and, while suspended,
//!   every timer that came due is deferred; every timer points at live work;
//!
//! and at the end of every sequence that replaying the whole history from
//! `EngagementState::default()` gives the final state, sequence numbers run 1, 2, 3, ...,
//! event times never go back, and the state survives a serde_json round trip unchanged
//! (`events_survive_json` also round-trips every event and replays the history read back).
//!
//! `PROPTEST_CASES=1000 cargo test -p coachflow-engine --test properties` runs more cases.

mod support;

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use coachflow_engine::{
    Action, Actor, Command, CommitmentStatus, DomainError, EngagementState, EngagementStatus, Event, EventKind,
    GoalStatus, SeriesStatus, TaskStatus, TimerPurpose, apply, decide, gate_status,
};
use coachflow_model::OutputType;
use proptest::prelude::*;
use proptest::strategy::Union;
use proptest::test_runner::TestCaseError;
use serde_json::{Value, json};
use support::{Harness, model, utc};

const MODELS: [&str; 3] = ["four-stage", "columbia-three-phase", "seven-step"];

// ----- steps -----------------------------------------------------------------------------

/// Which outputs a completion of an open task carries; all of them are valid.
#[derive(Debug, Clone, Copy)]
enum Outputs {
    /// The harness's default outputs (booleans true, except `course_correction`).
    Default,
    /// Default, but `course_correction` true: the four-stage model loops back to Action.
    CourseCorrection,
    /// Every boolean output the other way round (may leave a gate false for good).
    Flipped,
    /// Only the required outputs.
    RequiredOnly,
}

/// Outputs that the engine must refuse.
#[derive(Debug, Clone, Copy)]
enum BadOutputs {
    /// A key the task does not declare.
    UnknownKey,
    /// The n-th declared output with a value of the wrong type.
    WrongType(usize),
    /// Without the n-th required output.
    MissingRequired(usize),
}

#[derive(Debug, Clone)]
enum OutputKey {
    Declared(usize),
    Other(String),
}

#[derive(Debug, Clone)]
enum Expect {
    Nothing,
    Current,
    Other(String),
}

#[derive(Debug, Clone)]
struct StartSpec {
    timezone: Option<String>,
    people: BTreeMap<String, Vec<String>>,
}

/// One thing a caller (or the clock) does. Indexes are taken modulo what exists when the
/// step runs, so most steps are valid commands against the state of the moment.
#[derive(Debug, Clone)]
enum Step {
    /// What a diligent caller would do next: complete an open task, sign off, set a goal,
    /// follow up a commitment, resume, or let time pass to the next timer.
    Progress,
    CompleteOpen(usize, Outputs),
    CompleteWithBadOutputs(usize, BadOutputs),
    CompleteWithArbitraryOutputs(usize, Vec<(OutputKey, Value)>),
    /// Completes any task, whatever its status, with default outputs.
    CompleteAny(usize),
    SkipOpen(usize, String),
    SkipAny(usize, String),
    Assign(usize, String),
    AddStakeholder(u8),
    AddParticipant(String, String),
    RecordGoal(u8, String),
    GoalProgress(u8, u32, Option<GoalStatus>, Option<String>),
    /// Commitment number, owner, due in hours from now (may be in the past).
    RecordCommitment(u8, Option<String>, Option<i64>),
    FollowUp(u8, CommitmentStatus, Option<i64>),
    /// Signs off the first approval the current gate misses, by the role's first person.
    SignOffMissing,
    SignOff(String, String),
    AdvancePhase(Expect),
    /// Moves the clock forward by hours, firing every timer that comes due on the way.
    AdvanceTime(u32),
    /// Fires the n-th timer of the state directly, due or not, deferred or not.
    FireTimerNow(usize),
    FireUnknownTimer(String),
    /// Fires the n-th timer that already fired or was cancelled: a no-op.
    FireStaleTimer(usize),
    CompleteUnknownTask(String),
    Suspend(Option<String>),
    Resume,
    Cancel(Option<String>),
    /// Repairs: reopen the n-th task (any status), move to the n-th phase, withdraw the
    /// n-th sign-off, each with a reason.
    Reopen(usize, String),
    MoveTo(usize, String),
    Withdraw(usize, String),
    Start(StartSpec),
    SetActor(Actor),
}

// ----- strategies ------------------------------------------------------------------------

/// Strings for ids, reasons and notes: mostly plausible ids, sometimes anything at all,
/// empty, blank, or over the length limits.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => "[a-z0-9][a-z0-9._-]{0,12}",
        2 => any::<String>(),
        1 => Just(String::new()),
        1 => Just("   ".to_owned()),
        1 => "[A-Za-z@ /#~:]{1,12}",
        1 => Just("x".repeat(2_001)),
        1 => Just("ü".repeat(10_001)),
    ]
}

fn role() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec!["client", "coach", "sponsor", "hr", "stakeholder"]).prop_map(str::to_owned),
        1 => text(),
    ]
}

fn person() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec![
            "client-1",
            "coach-1",
            "sponsor-1",
            "hr-1",
            "stakeholder-1",
            "stakeholder-9",
        ])
        .prop_map(str::to_owned),
        1 => text(),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-1_000_i32..1_000).prop_map(|whole| json!(f64::from(whole))),
        any::<f64>().prop_map(|float| json!(float)),
        (-1_000_i32..1_000).prop_map(|tenths| json!(f64::from(tenths) / 10.0)),
        any::<String>().prop_map(Value::from),
        "[0-9]{4}-[0-9]{2}-[0-9]{2}".prop_map(Value::from),
        prop::sample::select(vec!["weekly", "on_track", "peer", "guided", "2026-02-30", "2026-06-01"])
            .prop_map(Value::from),
    ];
    leaf.prop_recursive(2, 8, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            prop::collection::btree_map("[a-z]{1,4}", inner, 0..3)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

fn start_spec() -> impl Strategy<Value = StartSpec> {
    let timezone = prop::option::of(prop::sample::select(vec![
        "Europe/Berlin",
        "UTC",
        "America/New_York",
        "Asia/Kolkata",
        "Australia/Lord_Howe",
        "Nowhere/Special",
        "",
    ]));
    (timezone, 0_usize..4, 0_u8..9).prop_map(|(timezone, stakeholders, flaw)| {
        let mut people = base_people(stakeholders);
        match flaw {
            0..=2 => {}
            3 => {
                people.remove("client");
            }
            4 => {
                people.insert("astronaut".to_owned(), vec!["a-1".to_owned()]);
            }
            5 => {
                people.insert(
                    "sponsor".to_owned(),
                    vec!["sponsor-1".to_owned(), "sponsor-2".to_owned()],
                );
            }
            6 => {
                people.insert("coach".to_owned(), vec!["coach@example.com".to_owned()]);
            }
            7 => {
                people.insert(
                    "stakeholder".to_owned(),
                    vec!["stakeholder-1".to_owned(), "stakeholder-1".to_owned()],
                );
            }
            _ => {
                people.remove("hr");
                people.insert("sponsor".to_owned(), Vec::new());
            }
        }
        StartSpec {
            timezone: timezone.map(str::to_owned),
            people,
        }
    })
}

fn actor() -> impl Strategy<Value = Actor> {
    prop_oneof![
        3 => person().prop_map(Actor::Person),
        1 => text().prop_map(Actor::Service),
        1 => Just(Actor::System),
    ]
}

fn goal_status() -> impl Strategy<Value = GoalStatus> {
    prop::sample::select(vec![
        GoalStatus::Active,
        GoalStatus::OnTrack,
        GoalStatus::AtRisk,
        GoalStatus::OffTrack,
        GoalStatus::Achieved,
        GoalStatus::Abandoned,
    ])
}

fn commitment_status() -> impl Strategy<Value = CommitmentStatus> {
    prop::sample::select(vec![
        CommitmentStatus::Open,
        CommitmentStatus::Kept,
        CommitmentStatus::Missed,
        CommitmentStatus::Renegotiated,
        CommitmentStatus::Dropped,
    ])
}

fn hours_from_now() -> impl Strategy<Value = i64> {
    prop_oneof![3 => 1_i64..2_000, 1 => -48_i64..=0]
}

/// How often each kind of step comes up.
struct Mix {
    progress: u32,
    complete: u32,
    time: u32,
    records: u32,
    lifecycle: u32,
    cancel: u32,
    hostile: u32,
}

/// Mostly progress: sequences go through real phases, with the odd refused command.
const PROGRESSING: Mix = Mix {
    progress: 60,
    complete: 48,
    time: 16,
    records: 8,
    lifecycle: 4,
    cancel: 1,
    hostile: 1,
};

/// Mostly wrong or random commands, at any point of an engagement's life.
const HOSTILE: Mix = Mix {
    progress: 8,
    complete: 6,
    time: 4,
    records: 4,
    lifecycle: 4,
    cancel: 1,
    hostile: 6,
};

fn step(mix: &Mix) -> Union<BoxedStrategy<Step>> {
    let index = || 0_usize..64;
    let arms: Vec<(u32, BoxedStrategy<Step>)> = vec![
        (mix.progress, Just(Step::Progress).boxed()),
        (
            mix.complete,
            (
                index(),
                prop_oneof![
                    6 => Just(Outputs::Default),
                    2 => Just(Outputs::CourseCorrection),
                    1 => Just(Outputs::Flipped),
                    2 => Just(Outputs::RequiredOnly),
                ],
            )
                .prop_map(|(index, outputs)| Step::CompleteOpen(index, outputs))
                .boxed(),
        ),
        (
            mix.complete.div_ceil(6),
            (index(), text())
                .prop_map(|(index, reason)| Step::SkipOpen(index, reason))
                .boxed(),
        ),
        (mix.time, (1_u32..72).prop_map(Step::AdvanceTime).boxed()),
        (mix.time, (72_u32..24 * 60).prop_map(Step::AdvanceTime).boxed()),
        // A long outage: series catch up on many missed occurrences at once.
        (
            mix.time.div_ceil(4),
            (24 * 60_u32..24 * 800).prop_map(Step::AdvanceTime).boxed(),
        ),
        (mix.records, (0_u8..4).prop_map(Step::AddStakeholder).boxed()),
        (
            mix.records,
            (0_u8..3, prop_oneof![4 => Just("A SMART goal".to_owned()), 1 => text()])
                .prop_map(|(goal, title)| Step::RecordGoal(goal, title))
                .boxed(),
        ),
        (
            mix.records,
            (
                0_u8..4,
                0_u32..120,
                prop::option::of(goal_status()),
                prop::option::of(text()),
            )
                .prop_map(|(goal, progress, status, note)| Step::GoalProgress(goal, progress, status, note))
                .boxed(),
        ),
        (
            mix.records,
            (0_u8..4, prop::option::of(person()), prop::option::of(hours_from_now()))
                .prop_map(|(commitment, owner, due)| Step::RecordCommitment(commitment, owner, due))
                .boxed(),
        ),
        (
            mix.records,
            (0_u8..4, commitment_status(), prop::option::of(hours_from_now()))
                .prop_map(|(commitment, status, due)| Step::FollowUp(commitment, status, due))
                .boxed(),
        ),
        (mix.records, Just(Step::SignOffMissing).boxed()),
        (
            mix.lifecycle,
            prop_oneof![
                2 => Just(Expect::Nothing),
                2 => Just(Expect::Current),
                1 => text().prop_map(Expect::Other),
            ]
            .prop_map(Step::AdvancePhase)
            .boxed(),
        ),
        (mix.lifecycle, prop::option::of(text()).prop_map(Step::Suspend).boxed()),
        (mix.lifecycle * 2, Just(Step::Resume).boxed()),
        (mix.cancel, prop::option::of(text()).prop_map(Step::Cancel).boxed()),
        (
            mix.lifecycle,
            (index(), text())
                .prop_map(|(index, reason)| Step::Reopen(index, reason))
                .boxed(),
        ),
        (
            mix.lifecycle.div_ceil(2),
            (index(), text())
                .prop_map(|(index, reason)| Step::MoveTo(index, reason))
                .boxed(),
        ),
        (
            mix.lifecycle.div_ceil(2),
            (index(), text())
                .prop_map(|(index, reason)| Step::Withdraw(index, reason))
                .boxed(),
        ),
        (
            mix.hostile,
            (
                index(),
                prop_oneof![
                    Just(BadOutputs::UnknownKey),
                    index().prop_map(BadOutputs::WrongType),
                    index().prop_map(BadOutputs::MissingRequired),
                ],
            )
                .prop_map(|(index, bad)| Step::CompleteWithBadOutputs(index, bad))
                .boxed(),
        ),
        (
            mix.hostile,
            (
                index(),
                prop::collection::vec(
                    (
                        prop_oneof![
                            3 => index().prop_map(OutputKey::Declared),
                            1 => text().prop_map(OutputKey::Other),
                        ],
                        json_value(),
                    ),
                    0..5,
                ),
            )
                .prop_map(|(index, outputs)| Step::CompleteWithArbitraryOutputs(index, outputs))
                .boxed(),
        ),
        (mix.hostile, index().prop_map(Step::CompleteAny).boxed()),
        (
            mix.hostile,
            (index(), text())
                .prop_map(|(index, reason)| Step::SkipAny(index, reason))
                .boxed(),
        ),
        (
            mix.hostile,
            (index(), person())
                .prop_map(|(index, person)| Step::Assign(index, person))
                .boxed(),
        ),
        (
            mix.hostile,
            (role(), person())
                .prop_map(|(role, person)| Step::AddParticipant(role, person))
                .boxed(),
        ),
        (
            mix.hostile,
            (role(), person())
                .prop_map(|(role, person)| Step::SignOff(role, person))
                .boxed(),
        ),
        (mix.hostile, index().prop_map(Step::FireTimerNow).boxed()),
        (mix.hostile, text().prop_map(Step::FireUnknownTimer).boxed()),
        (mix.hostile, index().prop_map(Step::FireStaleTimer).boxed()),
        (mix.hostile, text().prop_map(Step::CompleteUnknownTask).boxed()),
        (mix.hostile, start_spec().prop_map(Step::Start).boxed()),
        (mix.hostile, actor().prop_map(Step::SetActor).boxed()),
    ];
    Union::new_weighted(arms.into_iter().filter(|(weight, _)| *weight > 0).collect())
}

#[derive(Debug, Clone)]
struct Case {
    model: &'static str,
    /// `None`: the engagement is not started; the steps may start it.
    stakeholders: Option<usize>,
    /// Hours after 2026-03-02T08:00Z at which it begins.
    start_offset: u32,
    /// How many [`Step::Progress`] steps a started engagement takes before `steps`, so
    /// that they also meet it deep into its phases.
    warmup: usize,
    steps: Vec<Step>,
}

fn case(mix: &'static Mix, unstarted: bool, max_warmup: usize, max_steps: usize) -> impl Strategy<Value = Case> {
    let stakeholders = if unstarted {
        prop_oneof![3 => (0_usize..4).prop_map(Some), 1 => Just(None::<usize>)].boxed()
    } else {
        (0_usize..4).prop_map(Some).boxed()
    };
    (
        prop::sample::select(MODELS.to_vec()),
        stakeholders,
        0_u32..24 * 400,
        0..=max_warmup,
        prop::collection::vec(step(mix), 1..=max_steps),
    )
        .prop_map(|(model, stakeholders, start_offset, warmup, steps)| Case {
            model,
            stakeholders,
            start_offset,
            warmup,
            steps,
        })
}

// ----- running steps ---------------------------------------------------------------------

fn base_people(stakeholders: usize) -> BTreeMap<String, Vec<String>> {
    let mut people = BTreeMap::new();
    people.insert("client".to_owned(), vec!["client-1".to_owned()]);
    people.insert("coach".to_owned(), vec!["coach-1".to_owned()]);
    people.insert("sponsor".to_owned(), vec!["sponsor-1".to_owned()]);
    people.insert("hr".to_owned(), vec!["hr-1".to_owned()]);
    people.insert(
        "stakeholder".to_owned(),
        (1..=stakeholders).map(|n| format!("stakeholder-{n}")).collect(),
    );
    people
}

fn fail(message: impl Into<String>) -> TestCaseError {
    TestCaseError::fail(message.into())
}

/// What happened to the commands of one sequence, for a sanity check that the sequences
/// do reach deep into engagements.
#[derive(Debug, Default)]
struct Tally {
    accepted: usize,
    refused: BTreeMap<&'static str, usize>,
}

/// Runs one command through the harness (which asserts its per-decision invariants) and
/// checks what holds for every command, accepted or refused.
fn exec(
    harness: &mut Harness,
    tally: &mut Tally,
    action: Action,
) -> Result<Result<Vec<Event>, DomainError>, TestCaseError> {
    let before = harness.state.clone();
    let history_before = harness.history.len();
    let table_before = harness.timer_table.clone();
    let command = Command {
        actor: harness.actor.clone(),
        action: action.clone(),
    };
    // decide is pure: the same inputs give the same decision.
    let expected = decide(&harness.model, &harness.state, &command, harness.now);
    let result = harness.run(action.clone());
    match &result {
        Ok(events) => {
            tally.accepted += 1;
            let Ok(expected) = expected else {
                return Err(fail(format!("decide refused, then accepted {action:?}")));
            };
            prop_assert_eq!(&expected.events, events, "decide is deterministic");
            prop_assert_eq!(&expected.state, &harness.state, "decide is deterministic");
            if before.status == EngagementStatus::New {
                prop_assert!(
                    matches!(action, Action::Start { .. }),
                    "{} accepted before the engagement started",
                    action.name()
                );
            }
            if before.status.is_ended() {
                prop_assert!(
                    events.is_empty(),
                    "{} changed a {} engagement: {:?}",
                    action.name(),
                    before.status.as_str(),
                    events
                );
            }
            check_accepted(&before, &harness.state, &action)?;
        }
        Err(error) => {
            *tally.refused.entry(error.reason()).or_default() += 1;
            prop_assert_eq!(expected.err(), Some(error.clone()), "decide is deterministic");
            prop_assert_eq!(&harness.state, &before, "a refused command changes nothing");
            prop_assert_eq!(harness.history.len(), history_before);
            prop_assert_eq!(&harness.timer_table, &table_before);
        }
    }
    check_state(harness)?;
    Ok(result)
}

/// [`exec`] for a command whose outcome only the common checks look at.
fn send(harness: &mut Harness, tally: &mut Tally, action: Action) -> Result<(), TestCaseError> {
    exec(harness, tally, action).map(drop)
}

/// What an accepted completion or skip must have found and done.
fn check_accepted(before: &EngagementState, after: &EngagementState, action: &Action) -> Result<(), TestCaseError> {
    match action {
        Action::CompleteTask { task, .. } => {
            prop_assert_eq!(before.status, EngagementStatus::Active);
            prop_assert_eq!(before.tasks.get(task).map(|task| task.status), Some(TaskStatus::Open));
            prop_assert_eq!(after.tasks[task].status, TaskStatus::Completed);
        }
        Action::SkipTask { task, .. } => {
            prop_assert_eq!(before.status, EngagementStatus::Active);
            prop_assert!(before.tasks.get(task).is_some_and(|task| !task.status.is_closed()));
            prop_assert_eq!(after.tasks[task].status, TaskStatus::Skipped);
        }
        Action::Start { .. } => prop_assert_eq!(before.status, EngagementStatus::New),
        Action::Suspend { .. } => prop_assert_eq!(after.status, EngagementStatus::Suspended),
        Action::Cancel { .. } => prop_assert_eq!(after.status, EngagementStatus::Cancelled),
        _ => {}
    }
    Ok(())
}

/// Invariants of every state a decision ends in.
fn check_state(harness: &Harness) -> Result<(), TestCaseError> {
    let state = &harness.state;
    prop_assert_eq!(state.sequence, harness.history.len() as u64);
    if let Some(last) = harness.history.last() {
        prop_assert_eq!(last.sequence, state.sequence);
    }
    let current = state.phase.as_ref().map(|phase| (phase.key.as_str(), phase.iteration));
    for task in state.tasks.values() {
        prop_assert_eq!(
            task.status.is_closed(),
            task.closed_at.is_some(),
            "task {} is {} with closed_at {:?}",
            &task.id,
            task.status.as_str(),
            task.closed_at
        );
        if task.status == TaskStatus::Open {
            prop_assert!(task.opened_at.is_some(), "open task {} was never opened", &task.id);
        }
        if task.status == TaskStatus::Scheduled {
            let timer = format!("open:{}", task.id);
            prop_assert!(
                task.opens_at.is_some() && state.timers.contains_key(&timer),
                "scheduled task {} has no {} timer",
                &task.id,
                timer
            );
        }
        if !task.status.is_closed()
            && let Some(phase) = &task.phase
        {
            prop_assert_eq!(
                Some((phase.as_str(), task.iteration)),
                current,
                "task {} is {} outside its phase",
                &task.id,
                task.status.as_str()
            );
        }
    }
    for timer in state.timers.values() {
        let live = match &timer.purpose {
            TimerPurpose::OpenTask { task } => {
                state.tasks.get(task).map(|task| task.status) == Some(TaskStatus::Scheduled)
            }
            TimerPurpose::DueSoon { task } | TimerPurpose::Overdue { task } | TimerPurpose::Escalate { task } => {
                state.tasks.get(task).map(|task| task.status) == Some(TaskStatus::Open)
            }
            TimerPurpose::NextOccurrence { series } => {
                state.series.get(series).map(|series| series.status) == Some(SeriesStatus::Running)
            }
            TimerPurpose::CommitmentFollowUp { commitment } => {
                state.commitments.get(commitment).map(|commitment| commitment.status) == Some(CommitmentStatus::Open)
            }
        };
        prop_assert!(live, "timer {:?} outlived what it is for", timer);
    }
    match state.status {
        EngagementStatus::New => prop_assert_eq!(state, &EngagementState::default()),
        EngagementStatus::Active | EngagementStatus::Suspended => {
            prop_assert!(state.phase.is_some(), "a running engagement is in a phase");
        }
        EngagementStatus::Completed | EngagementStatus::Cancelled => {
            prop_assert!(state.phase.is_none());
            prop_assert!(state.timers.is_empty(), "timers outlive the engagement");
            prop_assert!(state.tasks.values().all(|task| task.status.is_closed()));
            prop_assert!(
                state
                    .series
                    .values()
                    .all(|series| matches!(series.status, SeriesStatus::Finished | SeriesStatus::Cancelled))
            );
        }
    }
    Ok(())
}

/// Invariants between steps, once the timer runner has caught up with the clock.
fn check_quiescent(harness: &Harness) -> Result<(), TestCaseError> {
    let state = &harness.state;
    for timer in state.timers.values() {
        match state.status {
            EngagementStatus::Suspended => prop_assert!(
                timer.at > harness.now || timer.deferred,
                "timer {} came due while suspended but is not deferred",
                &timer.id
            ),
            _ => prop_assert!(
                timer.at > harness.now && !timer.deferred,
                "timer {} ({}, deferred: {}) is overdue at {} in a {} engagement",
                &timer.id,
                timer.at,
                timer.deferred,
                harness.now,
                state.status.as_str()
            ),
        }
    }
    Ok(())
}

/// The timer runner: fires every timer of the table that comes due by `until`, in order,
/// as the system. A due timer must always fire.
fn advance_to(harness: &mut Harness, tally: &mut Tally, until: DateTime<Utc>) -> Result<(), TestCaseError> {
    loop {
        let next = harness
            .timer_table
            .iter()
            .filter(|(_, at)| **at <= until)
            .min_by_key(|(id, at)| (**at, (*id).clone()))
            .map(|(id, at)| (id.clone(), *at));
        let Some((id, at)) = next else { break };
        harness.now = harness.now.max(at);
        harness.timer_table.remove(&id);
        let actor = std::mem::replace(&mut harness.actor, Actor::System);
        let result = exec(harness, tally, Action::FireTimer { timer: id.clone() });
        harness.actor = actor;
        if let Err(error) = result? {
            return Err(fail(format!("timer {id} due at {at} was refused: {error:?}")));
        }
    }
    harness.now = harness.now.max(until);
    Ok(())
}

fn nth<T: Clone>(items: &[T], index: usize) -> Option<T> {
    (!items.is_empty()).then(|| items[index % items.len()].clone())
}

fn task_ids(harness: &Harness) -> Vec<String> {
    harness.state.tasks.keys().cloned().collect()
}

/// Declared outputs of an instance's task; empty for an unknown instance.
fn declared(harness: &Harness, instance: &str) -> Vec<coachflow_model::Output> {
    harness
        .state
        .tasks
        .get(instance)
        .and_then(|task| harness.model.task_id(&task.task))
        .map(|task| harness.model.task_spec(task).outputs.clone())
        .unwrap_or_default()
}

fn valid_outputs(harness: &Harness, instance: &str, kind: Outputs) -> BTreeMap<String, Value> {
    if !harness.state.tasks.contains_key(instance) {
        return BTreeMap::new();
    }
    let declared = declared(harness, instance);
    let mut outputs = harness.default_outputs(instance);
    for output in &declared {
        let value = outputs
            .get_mut(&output.key)
            .expect("default outputs cover every output");
        match kind {
            Outputs::Default => {}
            Outputs::CourseCorrection if output.key == "course_correction" => *value = json!(true),
            Outputs::CourseCorrection => {}
            Outputs::Flipped => {
                if let Value::Bool(flag) = value {
                    *flag = !*flag;
                }
            }
            Outputs::RequiredOnly if !output.required => {
                outputs.remove(&output.key);
            }
            Outputs::RequiredOnly => {}
        }
    }
    outputs
}

/// A value `output_type` must refuse.
fn wrong_value(output_type: OutputType) -> Value {
    match output_type {
        OutputType::String | OutputType::Text | OutputType::Boolean => json!(42),
        OutputType::Number => json!("4.5"),
        OutputType::Integer => json!(4.5),
        OutputType::Date => json!("2026-02-30"),
        OutputType::Enum => json!("not-one-of-them"),
    }
}

fn in_hours(now: DateTime<Utc>, hours: Option<i64>) -> Option<DateTime<Utc>> {
    hours.map(|hours| now + Duration::hours(hours))
}

/// One step of a diligent caller; see [`Step::Progress`].
fn progress(harness: &mut Harness, tally: &mut Tally) -> Result<(), TestCaseError> {
    match harness.state.status {
        EngagementStatus::New => {
            send(
                harness,
                tally,
                Action::Start {
                    model_version: 1,
                    timezone: Some("Europe/Berlin".into()),
                    people: base_people(2),
                },
            )?;
            return Ok(());
        }
        EngagementStatus::Suspended => {
            send(harness, tally, Action::Resume)?;
            return Ok(());
        }
        EngagementStatus::Completed | EngagementStatus::Cancelled => return Ok(()),
        EngagementStatus::Active => {}
    }
    if let Some(task) = harness.open_tasks().into_iter().next() {
        let outputs = valid_outputs(harness, &task, Outputs::Default);
        send(harness, tally, Action::CompleteTask { task, outputs })?;
        return Ok(());
    }
    if let Some(gate) = gate_status(&harness.model, &harness.state) {
        if let Some(role) = gate.missing_sign_offs.first().filter(|_| gate.ready) {
            let person = harness
                .state
                .people
                .get(role)
                .and_then(|people| people.first())
                .cloned()
                .unwrap_or_else(|| "nobody".to_owned());
            send(
                harness,
                tally,
                Action::SignOff {
                    role: role.clone(),
                    person,
                },
            )?;
            return Ok(());
        }
        if gate.condition == Some(Ok(false)) && harness.state.goals.is_empty() {
            send(
                harness,
                tally,
                Action::RecordGoal {
                    goal: "progress-goal".into(),
                    title: "Delegate the weekly operations review".into(),
                    measure: None,
                    target: None,
                    due: None,
                },
            )?;
            return Ok(());
        }
        let open_commitment = harness
            .state
            .commitments
            .values()
            .find(|commitment| commitment.status == CommitmentStatus::Open)
            .map(|commitment| commitment.id.clone());
        if let Some(commitment) = open_commitment {
            send(
                harness,
                tally,
                Action::RecordCommitmentFollowUp {
                    commitment,
                    status: CommitmentStatus::Kept,
                    note: None,
                    due: None,
                },
            )?;
            return Ok(());
        }
        if gate.holds() {
            send(harness, tally, Action::AdvancePhase { expected_phase: None })?;
            return Ok(());
        }
    }
    if let Some(at) = harness.next_timer() {
        advance_to(harness, tally, at)?;
    }
    Ok(())
}

fn run_step(harness: &mut Harness, tally: &mut Tally, step: &Step) -> Result<(), TestCaseError> {
    let now = harness.now;
    match step {
        Step::Progress => progress(harness, tally)?,
        Step::CompleteOpen(index, kind) => {
            if let Some(task) = nth(&harness.open_tasks(), *index) {
                let outputs = valid_outputs(harness, &task, *kind);
                let active = harness.state.status == EngagementStatus::Active;
                let result = exec(harness, tally, Action::CompleteTask { task, outputs })?;
                if active && let Err(error) = result {
                    return Err(fail(format!("valid completion refused: {error:?}")));
                }
            }
        }
        Step::CompleteWithBadOutputs(index, bad) => {
            let Some(task) = nth(&harness.open_tasks(), *index) else {
                return Ok(());
            };
            let declared = declared(harness, &task);
            let mut outputs = valid_outputs(harness, &task, Outputs::Default);
            let required: Vec<&coachflow_model::Output> = declared.iter().filter(|output| output.required).collect();
            match *bad {
                BadOutputs::WrongType(n) if !declared.is_empty() => {
                    let output = &declared[n % declared.len()];
                    outputs.insert(output.key.clone(), wrong_value(output.output_type));
                }
                BadOutputs::MissingRequired(n) if !required.is_empty() => {
                    outputs.remove(&required[n % required.len()].key);
                }
                _ => {
                    outputs.insert("no_such_output".to_owned(), json!("x"));
                }
            }
            let result = exec(harness, tally, Action::CompleteTask { task, outputs })?;
            prop_assert!(result.is_err(), "bad outputs accepted");
        }
        Step::CompleteWithArbitraryOutputs(index, pairs) => {
            let task = nth(&harness.open_tasks(), *index).unwrap_or_else(|| "kickoff-meeting".to_owned());
            let declared = declared(harness, &task);
            let outputs: BTreeMap<String, Value> = pairs
                .iter()
                .map(|(key, value)| {
                    let key = match key {
                        OutputKey::Declared(n) => nth(&declared, *n)
                            .map(|output| output.key)
                            .unwrap_or_else(|| "undeclared".to_owned()),
                        OutputKey::Other(key) => key.clone(),
                    };
                    (key, value.clone())
                })
                .collect();
            if exec(
                harness,
                tally,
                Action::CompleteTask {
                    task: task.clone(),
                    outputs,
                },
            )?
            .is_ok()
            {
                // Accepted outputs are declared, typed and canonical.
                for (key, value) in &harness.state.tasks[&task].outputs {
                    let output = declared.iter().find(|output| &output.key == key);
                    let Some(output) = output else {
                        return Err(fail(format!("undeclared output {key} stored")));
                    };
                    let typed = match output.output_type {
                        OutputType::String | OutputType::Text | OutputType::Date => value.is_string(),
                        OutputType::Enum => value
                            .as_str()
                            .is_some_and(|text| output.values.iter().any(|v| v == text)),
                        OutputType::Number => value.is_number(),
                        OutputType::Integer => value.is_i64(),
                        OutputType::Boolean => value.is_boolean(),
                    };
                    prop_assert!(typed, "output {} stored as {}", key, value);
                }
            }
        }
        Step::CompleteAny(index) => {
            let task = nth(&task_ids(harness), *index).unwrap_or_else(|| "kickoff-meeting".to_owned());
            let outputs = valid_outputs(harness, &task, Outputs::Default);
            send(harness, tally, Action::CompleteTask { task, outputs })?;
        }
        Step::SkipOpen(index, reason) => {
            if let Some(task) = nth(&harness.open_tasks(), *index) {
                send(
                    harness,
                    tally,
                    Action::SkipTask {
                        task,
                        reason: reason.clone(),
                    },
                )?;
            }
        }
        Step::SkipAny(index, reason) => {
            let task = nth(&task_ids(harness), *index).unwrap_or_else(|| "kickoff-meeting".to_owned());
            send(
                harness,
                tally,
                Action::SkipTask {
                    task,
                    reason: reason.clone(),
                },
            )?;
        }
        Step::Assign(index, assignee) => {
            let task = nth(&task_ids(harness), *index).unwrap_or_else(|| "kickoff-meeting".to_owned());
            send(
                harness,
                tally,
                Action::AssignTask {
                    task,
                    assignee: assignee.clone(),
                },
            )?;
        }
        Step::AddStakeholder(n) => {
            send(
                harness,
                tally,
                Action::AddParticipant {
                    role: "stakeholder".into(),
                    person: format!("stakeholder-{}", n + 5),
                },
            )?;
        }
        Step::AddParticipant(role, person) => {
            send(
                harness,
                tally,
                Action::AddParticipant {
                    role: role.clone(),
                    person: person.clone(),
                },
            )?;
        }
        Step::RecordGoal(n, title) => {
            send(
                harness,
                tally,
                Action::RecordGoal {
                    goal: format!("goal-{n}"),
                    title: title.clone(),
                    measure: Some("reviews chaired by a direct report".into()),
                    target: None,
                    due: None,
                },
            )?;
        }
        Step::GoalProgress(n, progress, status, note) => {
            send(
                harness,
                tally,
                Action::RecordGoalProgress {
                    goal: format!("goal-{n}"),
                    progress: *progress,
                    status: *status,
                    note: note.clone(),
                },
            )?;
        }
        Step::RecordCommitment(n, owner, due) => {
            send(
                harness,
                tally,
                Action::RecordCommitment {
                    commitment: format!("c-{n}"),
                    description: "Hold a skip-level meeting".into(),
                    owner: owner.clone(),
                    due: in_hours(now, *due),
                },
            )?;
        }
        Step::FollowUp(n, status, due) => {
            send(
                harness,
                tally,
                Action::RecordCommitmentFollowUp {
                    commitment: format!("c-{n}"),
                    status: *status,
                    note: None,
                    due: in_hours(now, *due),
                },
            )?;
        }
        Step::SignOffMissing => {
            let missing = gate_status(&harness.model, &harness.state)
                .and_then(|gate| gate.missing_sign_offs.first().cloned())
                .unwrap_or_else(|| "sponsor".to_owned());
            let person = harness
                .state
                .people
                .get(&missing)
                .and_then(|people| people.first())
                .cloned()
                .unwrap_or_else(|| "nobody".to_owned());
            send(harness, tally, Action::SignOff { role: missing, person })?;
        }
        Step::SignOff(role, person) => {
            send(
                harness,
                tally,
                Action::SignOff {
                    role: role.clone(),
                    person: person.clone(),
                },
            )?;
        }
        Step::Reopen(index, reason) => {
            let tasks: Vec<String> = harness.state.tasks.keys().cloned().collect();
            let task = nth(&tasks, *index).unwrap_or_else(|| "kickoff-meeting".to_owned());
            send(
                harness,
                tally,
                Action::ReopenTask {
                    task,
                    reason: reason.clone(),
                },
            )?;
        }
        Step::MoveTo(index, reason) => {
            let phases: Vec<String> = harness.model.phases().iter().map(|phase| phase.key.clone()).collect();
            let phase = nth(&phases, *index).unwrap_or_default();
            send(
                harness,
                tally,
                Action::MoveToPhase {
                    phase,
                    reason: reason.clone(),
                },
            )?;
        }
        Step::Withdraw(index, reason) => {
            let roles: Vec<String> = harness
                .state
                .phase
                .as_ref()
                .map(|phase| phase.sign_offs.keys().cloned().collect())
                .unwrap_or_default();
            let role = nth(&roles, *index).unwrap_or_else(|| "sponsor".to_owned());
            send(
                harness,
                tally,
                Action::WithdrawSignOff {
                    role,
                    reason: reason.clone(),
                },
            )?;
        }
        Step::AdvancePhase(expect) => {
            let expected_phase = match expect {
                Expect::Nothing => None,
                Expect::Current => Some(harness.phase().map_or_else(|| "awareness".to_owned(), |phase| phase.0)),
                Expect::Other(other) => Some(other.clone()),
            };
            send(harness, tally, Action::AdvancePhase { expected_phase })?;
        }
        Step::AdvanceTime(hours) => {
            let until = now + Duration::hours(i64::from(*hours));
            advance_to(harness, tally, until)?;
        }
        Step::FireTimerNow(index) => {
            let timers: Vec<_> = harness.state.timers.values().cloned().collect();
            if let Some(timer) = nth(&timers, *index) {
                let actor = std::mem::replace(&mut harness.actor, Actor::System);
                let result = exec(
                    harness,
                    tally,
                    Action::FireTimer {
                        timer: timer.id.clone(),
                    },
                );
                harness.actor = actor;
                let result = result?;
                if timer.at > now {
                    prop_assert_eq!(result.err().map(|error| error.reason()), Some("TIMER_NOT_DUE"));
                }
            }
        }
        Step::FireUnknownTimer(id) => {
            let known = harness.state.timers.contains_key(id);
            let result = exec(harness, tally, Action::FireTimer { timer: id.clone() })?;
            if !known && let Ok(events) = result {
                prop_assert!(events.is_empty(), "firing an unknown timer did something");
            }
        }
        Step::FireStaleTimer(index) => {
            let stale: Vec<String> = harness
                .history
                .iter()
                .filter_map(|event| match &event.kind {
                    EventKind::TimerFired { id } | EventKind::TimerCancelled { id } => Some(id.clone()),
                    _ => None,
                })
                .filter(|id| !harness.state.timers.contains_key(id))
                .collect();
            if let Some(id) = nth(&stale, *index) {
                let actor = std::mem::replace(&mut harness.actor, Actor::System);
                let result = exec(harness, tally, Action::FireTimer { timer: id.clone() });
                harness.actor = actor;
                let events = result?.map_err(|error| fail(format!("firing stale timer {id} refused: {error:?}")))?;
                prop_assert!(
                    events.is_empty(),
                    "firing stale timer {} did something: {:?}",
                    id,
                    events
                );
            }
        }
        Step::CompleteUnknownTask(id) => {
            let known = harness.state.tasks.contains_key(id);
            let result = exec(
                harness,
                tally,
                Action::CompleteTask {
                    task: id.clone(),
                    outputs: BTreeMap::new(),
                },
            )?;
            prop_assert!(known || result.is_err(), "completed unknown task {}", id);
        }
        Step::Suspend(reason) => {
            send(harness, tally, Action::Suspend { reason: reason.clone() })?;
        }
        Step::Resume => {
            send(harness, tally, Action::Resume)?;
        }
        Step::Cancel(reason) => {
            send(harness, tally, Action::Cancel { reason: reason.clone() })?;
        }
        Step::Start(spec) => {
            send(
                harness,
                tally,
                Action::Start {
                    model_version: 1,
                    timezone: spec.timezone.clone(),
                    people: spec.people.clone(),
                },
            )?;
        }
        Step::SetActor(actor) => harness.actor = actor.clone(),
    }
    check_quiescent(harness)
}

/// Checks what holds of a whole history: it replays from the default state to the final
/// state, its sequence numbers run 1, 2, 3, ..., and the state survives JSON.
fn check_history(harness: &Harness) -> Result<(), TestCaseError> {
    let replayed = harness.history.iter().fold(EngagementState::default(), apply);
    prop_assert_eq!(&replayed, &harness.state, "replaying the whole history gives the state");
    for (position, event) in harness.history.iter().enumerate() {
        prop_assert_eq!(
            event.sequence,
            position as u64 + 1,
            "sequence numbers are gapless from 1"
        );
    }
    for pair in harness.history.windows(2) {
        prop_assert!(pair[0].at <= pair[1].at, "events go back in time: {:?}", pair);
    }
    let text = serde_json::to_string(&harness.state).map_err(|error| fail(format!("state: {error}")))?;
    let state: EngagementState =
        serde_json::from_str(&text).map_err(|error| fail(format!("state does not deserialize: {error}")))?;
    prop_assert_eq!(&state, &harness.state, "state survives JSON");
    Ok(())
}

/// Every event survives JSON, and the history as read back replays to the state.
fn check_events_json(harness: &Harness) -> Result<(), TestCaseError> {
    let mut stored = Vec::with_capacity(harness.history.len());
    for event in &harness.history {
        let text = serde_json::to_string(event).map_err(|error| fail(format!("event: {error}")))?;
        let back: Event = serde_json::from_str(&text).map_err(|error| {
            fail(format!(
                "event {} does not deserialize: {error}; JSON: {text}",
                event.sequence
            ))
        })?;
        prop_assert_eq!(&back, event, "event survives JSON: {}", text);
        stored.push(back);
    }
    let replayed = stored.iter().fold(EngagementState::default(), apply);
    prop_assert_eq!(&replayed, &harness.state, "the stored history replays to the state");
    Ok(())
}

fn run_case(case: &Case) -> Result<(Harness, Tally), TestCaseError> {
    let start = utc("2026-03-02T08:00:00Z") + Duration::hours(i64::from(case.start_offset));
    let mut harness = match case.stakeholders {
        Some(stakeholders) => Harness::started(model(case.model), start, stakeholders),
        None => Harness::new(model(case.model), start),
    };
    let mut tally = Tally::default();
    check_state(&harness)?;
    if case.stakeholders.is_some() {
        for _ in 0..case.warmup {
            run_step(&mut harness, &mut tally, &Step::Progress)?;
        }
    }
    for step in &case.steps {
        run_step(&mut harness, &mut tally, step)?;
    }
    check_history(&harness)?;
    if std::env::var_os("PROPERTIES_STATS").is_some() {
        let phases: Vec<String> = harness
            .history
            .iter()
            .filter_map(|event| match &event.kind {
                EventKind::PhaseEntered { phase, iteration } => Some(format!("{phase}@{iteration}")),
                _ => None,
            })
            .collect();
        eprintln!(
            "STATS {} steps={} events={} status={} phases={} accepted={} refused={:?}",
            case.model,
            case.steps.len(),
            harness.history.len(),
            harness.state.status.as_str(),
            phases.join(","),
            tally.accepted,
            tally.refused
        );
    }
    Ok((harness, tally))
}

/// 64 cases per property; `PROPTEST_CASES` asks for more (or fewer).
fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok())
        .unwrap_or(64);
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    /// Mostly valid commands that take engagements through their phases.
    #[test]
    fn progressing_sequences_keep_the_engine_consistent(case in case(&PROGRESSING, false, 0, 120)) {
        run_case(&case)?;
    }

    /// Events and state survive a serde_json round trip, arbitrary outputs included, and
    /// the events as read back replay to the state.
    #[test]
    fn events_survive_json(case in case(&HOSTILE, true, 100, 60)) {
        let (harness, _) = run_case(&case)?;
        check_events_json(&harness)?;
    }

    /// Mostly invalid or random commands, before the start, while suspended and after the
    /// end: the engine refuses them without panicking and without changing anything.
    #[test]
    fn hostile_sequences_are_refused_cleanly(case in case(&HOSTILE, true, 100, 120)) {
        run_case(&case)?;
    }
}

// ----- a long deterministic run ----------------------------------------------------------

/// SplitMix64: a small, fixed-seed generator, so the long run is the same every time.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }

    fn index(&mut self) -> usize {
        usize::try_from(self.below(1 << 16)).unwrap()
    }
}

/// Suspends, lets days to weeks pass (the timers that come due are deferred), records what
/// may be recorded while suspended, and resumes (they fire, oldest first). Returns how many
/// timers were deferred and then fired on resume.
fn suspension(harness: &mut Harness, tally: &mut Tally, rng: &mut SplitMix) -> Result<usize, TestCaseError> {
    if exec(harness, tally, Action::Suspend { reason: None })?.is_err() {
        return Ok(0);
    }
    let days = 3 + rng.below(40);
    run_step(harness, tally, &Step::AdvanceTime(u32::try_from(24 * days).unwrap()))?;
    for _ in 0..rng.below(4) {
        let step = match rng.below(6) {
            0 => Step::AdvanceTime(u32::try_from(24 + rng.below(24 * 30)).unwrap()),
            1 => Step::RecordCommitment(
                u8::try_from(rng.below(4)).unwrap(),
                None,
                Some(i64::try_from(1 + rng.below(24 * 20)).unwrap()),
            ),
            2 => Step::AddStakeholder(u8::try_from(rng.below(4)).unwrap()),
            3 => Step::CompleteOpen(rng.index(), Outputs::Default),
            4 => Step::FireTimerNow(rng.index()),
            _ => Step::AdvanceTime(u32::try_from(1 + rng.below(72)).unwrap()),
        };
        run_step(harness, tally, &step)?;
    }
    let deferred: Vec<String> = harness
        .state
        .timers
        .values()
        .filter(|timer| timer.deferred)
        .map(|timer| timer.id.clone())
        .collect();
    let events = exec(harness, tally, Action::Resume)?.map_err(|error| fail(format!("resume refused: {error:?}")))?;
    check_quiescent(harness)?;
    prop_assert!(harness.state.timers.values().all(|timer| !timer.deferred));
    // Every deferred timer fired on resume (or an earlier one cancelled it).
    let fired: Vec<&str> = events
        .iter()
        .filter_map(|event| match &event.kind {
            EventKind::TimerFired { id } | EventKind::TimerCancelled { id } => Some(id.as_str()),
            _ => None,
        })
        .collect();
    for id in &deferred {
        prop_assert!(
            fired.contains(&id.as_str()),
            "deferred timer {} did not fire on resume",
            id
        );
    }
    Ok(deferred.len())
}

/// One engagement driven to completion by random steps, with suspensions across timers.
fn long_engagement(
    name: &'static str,
    rng: &mut SplitMix,
    tally: &mut Tally,
    stats: &mut LongRunStats,
) -> Result<(), TestCaseError> {
    let start = utc("2026-03-02T08:00:00Z") + Duration::hours(i64::try_from(rng.below(24 * 365)).unwrap());
    let stakeholders = usize::try_from(rng.below(4)).unwrap();
    let mut harness = Harness::started(model(name), start, stakeholders);
    let (mut deferred, mut suspensions) = (0, 0);
    for _ in 0..3_000 {
        if harness.state.status == EngagementStatus::Completed {
            break;
        }
        stats.steps += 1;
        match rng.below(20) {
            0..=1 => {
                suspensions += 1;
                deferred += suspension(&mut harness, tally, rng)?;
            }
            2..=3 => run_step(
                &mut harness,
                tally,
                &Step::AdvanceTime(u32::try_from(1 + rng.below(24 * 10)).unwrap()),
            )?,
            4 => run_step(
                &mut harness,
                tally,
                &Step::RecordCommitment(
                    u8::try_from(rng.below(4)).unwrap(),
                    Some("client-1".into()),
                    Some(i64::try_from(1 + rng.below(24 * 30)).unwrap()),
                ),
            )?,
            5 => run_step(
                &mut harness,
                tally,
                &Step::FollowUp(
                    u8::try_from(rng.below(4)).unwrap(),
                    CommitmentStatus::Renegotiated,
                    Some(i64::try_from(1 + rng.below(24 * 30)).unwrap()),
                ),
            )?,
            6 => run_step(
                &mut harness,
                tally,
                &Step::AddStakeholder(u8::try_from(rng.below(3)).unwrap()),
            )?,
            7 => run_step(&mut harness, tally, &Step::FireTimerNow(rng.index()))?,
            8 => run_step(
                &mut harness,
                tally,
                &Step::CompleteOpen(
                    rng.index(),
                    if rng.below(3) == 0 {
                        Outputs::CourseCorrection
                    } else {
                        Outputs::RequiredOnly
                    },
                ),
            )?,
            _ => run_step(&mut harness, tally, &Step::Progress)?,
        }
    }
    check_history(&harness)?;
    prop_assert_eq!(
        harness.state.status,
        EngagementStatus::Completed,
        "{} did not complete; in {:?}",
        name,
        harness.phase()
    );
    stats.engagements += 1;
    stats.suspensions += suspensions;
    stats.deferred += deferred;
    stats.events += harness.history.len();
    Ok(())
}

#[derive(Debug, Default)]
struct LongRunStats {
    engagements: usize,
    steps: usize,
    events: usize,
    suspensions: usize,
    /// Timers that came due while suspended and fired on resume.
    deferred: usize,
}

/// Engagements of one model back to back, about 1500 steps in all.
fn long_run(name: &'static str, seed: u64) -> Result<LongRunStats, TestCaseError> {
    let mut rng = SplitMix(seed);
    let mut tally = Tally::default();
    let mut stats = LongRunStats::default();
    while stats.steps < 1_500 {
        long_engagement(name, &mut rng, &mut tally, &mut stats)?;
    }
    prop_assert!(stats.suspensions >= 20, "{}: only {:?}", name, stats);
    prop_assert!(stats.deferred >= 20, "{}: only {:?}", name, stats);
    prop_assert!(tally.accepted > 500, "{}: only {:?}", name, tally);
    eprintln!("{name}: {stats:?}; {tally:?}");
    Ok(stats)
}

#[test]
fn a_long_fixed_seed_run_through_suspensions_stays_consistent() {
    for (name, seed) in [
        ("four-stage", 0x5eed_0001),
        ("columbia-three-phase", 0x5eed_0002),
        ("seven-step", 0x5eed_0003),
    ] {
        if let Err(error) = long_run(name, seed) {
            panic!("{name}: {error}");
        }
    }
}
