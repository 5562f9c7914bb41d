//! The engine's cost per command and per event, over a whole four-stage engagement.
//!
//! The command sequence is built once by driving the four-stage model to completion (as
//! `Harness::drive_to_completion` in the tests does); the benchmarks then replay it.
#![allow(clippy::expect_used)]

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::Duration;

use chrono::{DateTime, Utc};
use coachflow_engine::{
    Action, Actor, Command, CommitmentStatus, Effect, EngagementState, EngagementStatus, Event, apply, decide,
    gate_status,
};
use coachflow_model::{Model, OutputType};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde_json::{Value, json};

const FOUR_STAGE: &str = include_str!("../../../models/four-stage.yaml");

/// A recorded engagement: every command with the time it was decided at, and the history.
struct Recording {
    model: Model,
    commands: Vec<(Command, DateTime<Utc>)>,
    events: Vec<Event>,
}

/// Drives an engagement to completion, recording what it does; keeps the timers table from
/// the decisions' effects, as the store does.
struct Driver {
    model: Model,
    state: EngagementState,
    now: DateTime<Utc>,
    timers: BTreeMap<String, DateTime<Utc>>,
    commands: Vec<(Command, DateTime<Utc>)>,
    events: Vec<Event>,
}

impl Driver {
    fn run(&mut self, actor: Actor, action: Action) {
        let command = Command { actor, action };
        let decision = decide(&self.model, &self.state, &command, self.now)
            .unwrap_or_else(|error| panic!("{} refused: {error}", command.action.name()));
        for effect in &decision.effects {
            match effect {
                Effect::ScheduleTimer { id, at } => self.timers.insert(id.clone(), *at),
                Effect::CancelTimer { id } => self.timers.remove(id),
            };
        }
        self.state = decision.state;
        self.events.extend(decision.events);
        self.commands.push((command, self.now));
    }

    fn coach(&mut self, action: Action) {
        self.run(Actor::Person("coach-1".into()), action);
    }

    /// Outputs that satisfy every declared output of the instance's task.
    fn outputs(&self, instance: &str) -> BTreeMap<String, Value> {
        let task = &self.state.tasks[instance].task;
        let spec = self
            .model
            .task_spec(self.model.task_id(task).expect("task of the model"));
        spec.outputs
            .iter()
            .map(|output| {
                let value = match output.output_type {
                    OutputType::String => json!("doc-ref-1"),
                    OutputType::Text => json!("confidential words"),
                    OutputType::Number => json!(4.5),
                    OutputType::Integer => json!(4),
                    OutputType::Boolean => json!(output.key != "course_correction"),
                    OutputType::Date => json!("2026-06-01"),
                    OutputType::Enum => json!(output.values[0]),
                };
                (output.key.clone(), value)
            })
            .collect()
    }

    /// One step of whatever the engagement waits for: an open task, a sign-off, a goal, a
    /// commitment follow-up, a manual advance, or otherwise the next timer.
    fn step(&mut self) {
        let open = self.state.open_tasks().next().map(|task| task.id.clone());
        if let Some(task) = open {
            let outputs = self.outputs(&task);
            self.coach(Action::CompleteTask { task, outputs });
            return;
        }
        if let Some(gate) = gate_status(&self.model, &self.state) {
            if let Some(role) = gate.missing_sign_offs.first() {
                let person = self.state.people[role][0].clone();
                let role = role.clone();
                self.run(Actor::Person(person.clone()), Action::SignOff { role, person });
                return;
            }
            if gate.condition == Some(Ok(false)) && self.state.goals.is_empty() {
                self.coach(Action::RecordGoal {
                    goal: "goal-1".into(),
                    title: "Delegate the weekly operations review".into(),
                    measure: Some("reviews chaired by a direct report".into()),
                    target: Some("4 of 4 in a month".into()),
                    due: None,
                });
                return;
            }
            let open_commitment = self
                .state
                .commitments
                .values()
                .find(|commitment| commitment.status == CommitmentStatus::Open)
                .map(|commitment| commitment.id.clone());
            if let Some(commitment) = open_commitment {
                self.coach(Action::RecordCommitmentFollowUp {
                    commitment,
                    status: CommitmentStatus::Kept,
                    note: None,
                    due: None,
                });
                return;
            }
            if gate.holds() {
                self.coach(Action::AdvancePhase { expected_phase: None });
                return;
            }
        }
        let (timer, at) = self
            .timers
            .iter()
            .min_by_key(|(id, at)| (**at, (*id).clone()))
            .map(|(id, at)| (id.clone(), *at))
            .expect("an engagement waiting for nothing has a timer");
        self.now = self.now.max(at);
        self.timers.remove(&timer);
        self.run(Actor::System, Action::FireTimer { timer });
    }
}

/// Starts a four-stage engagement with three stakeholders and drives it to completion.
fn record_four_stage() -> Recording {
    let model = Model::from_text(FOUR_STAGE).unwrap_or_else(|problems| panic!("four-stage: {problems}"));
    let mut driver = Driver {
        model,
        state: EngagementState::default(),
        now: "2026-03-02T08:00:00Z".parse().expect("a time"),
        timers: BTreeMap::new(),
        commands: Vec::new(),
        events: Vec::new(),
    };
    let people: BTreeMap<String, Vec<String>> = [
        ("client", vec!["client-1"]),
        ("coach", vec!["coach-1"]),
        ("sponsor", vec!["sponsor-1"]),
        ("hr", vec!["hr-1"]),
        ("stakeholder", vec!["stakeholder-1", "stakeholder-2", "stakeholder-3"]),
    ]
    .into_iter()
    .map(|(role, persons)| (role.to_owned(), persons.into_iter().map(str::to_owned).collect()))
    .collect();
    driver.run(
        Actor::Service("ld-platform".into()),
        Action::Start {
            model_version: 1,
            timezone: Some("Europe/Berlin".into()),
            people,
        },
    );
    for _ in 0..2_000 {
        if driver.state.status == EngagementStatus::Completed {
            return Recording {
                model: driver.model,
                commands: driver.commands,
                events: driver.events,
            };
        }
        driver.step();
    }
    panic!("the four-stage engagement did not complete");
}

/// Decides every command of the engagement in turn, feeding each decision's state forward.
fn replay(model: &Model, commands: &[(Command, DateTime<Utc>)]) -> EngagementState {
    let mut state = EngagementState::default();
    for (command, now) in commands {
        state = decide(model, &state, command, *now).expect("replayed command").state;
    }
    state
}

fn benchmarks(criterion: &mut Criterion) {
    let recording = record_four_stage();
    let Recording {
        model,
        commands,
        events,
    } = &recording;
    let final_state = replay(model, commands);
    assert_eq!(final_state.status, EngagementStatus::Completed);
    assert_eq!(events.iter().fold(EngagementState::default(), apply), final_state);
    eprintln!(
        "four-stage engagement: {} commands, {} events",
        commands.len(),
        events.len()
    );

    let mut group = criterion.benchmark_group("four_stage");

    group.throughput(Throughput::Elements(commands.len() as u64));
    group.bench_function("decide_whole_engagement", |bencher| {
        bencher.iter(|| replay(model, black_box(commands)));
    });

    group.throughput(Throughput::Elements(events.len() as u64));
    group.bench_function("apply_whole_history", |bencher| {
        bencher.iter(|| black_box(events).iter().fold(EngagementState::default(), apply));
    });

    // The first task completion in the second half of the engagement, on the state it was
    // decided on.
    let (index, (command, now)) = commands
        .iter()
        .enumerate()
        .skip(commands.len() / 2)
        .find(|(_, (command, _))| matches!(command.action, Action::CompleteTask { .. }))
        .expect("a task completion in the second half");
    let before = replay(model, &commands[..index]);
    eprintln!(
        "mid-engagement command {index}: {:?} in phase {:?}, {} task instances, {} events so far",
        match &command.action {
            Action::CompleteTask { task, .. } => task.as_str(),
            _ => "",
        },
        before.phase.as_ref().map(|phase| phase.key.as_str()),
        before.tasks.len(),
        before.sequence
    );
    group.throughput(Throughput::Elements(1));
    group.bench_function("decide_complete_task_mid_engagement", |bencher| {
        bencher.iter(|| decide(model, black_box(&before), black_box(command), *now).expect("decided"));
    });

    group.finish();
}

criterion_group! {
    name = engine;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(5))
        .sample_size(20);
    targets = benchmarks
}
criterion_main!(engine);
