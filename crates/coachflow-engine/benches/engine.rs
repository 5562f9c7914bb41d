//! The engine's cost per command and per event, over a whole four-stage engagement.
//!
//! The command sequence is built once by driving the four-stage model to completion with
//! the tests' `Harness`; the benchmarks then replay it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::Duration;

use chrono::{DateTime, Utc};
use coachflow_engine::{Action, Command, EngagementState, EngagementStatus, apply, decide};
use coachflow_model::Model;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

#[path = "../tests/support/mod.rs"]
mod support;

/// Decides every command of the engagement in turn, feeding each decision's state forward.
fn replay(model: &Model, commands: &[(Command, DateTime<Utc>)]) -> EngagementState {
    let mut state = EngagementState::default();
    for (command, now) in commands {
        state = decide(model, &state, command, *now).expect("replayed command").state;
    }
    state
}

fn benchmarks(criterion: &mut Criterion) {
    // Four-stage with three stakeholders, driven to completion by the tests' driver.
    let mut harness = support::Harness::started(support::model("four-stage"), support::utc("2026-03-02T08:00:00Z"), 3);
    harness.drive_to_completion(2_000);
    let (model, commands, events) = (&harness.model, &harness.commands, &harness.history);
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
