//! A test driver for the engine: an injected clock, a timers table kept only from the
//! decisions' effects (as the store keeps it), and a runner that fires due timers in order.
//! Every decision is checked: replaying its events gives its state, sequence numbers are
//! gapless, and the timers table agrees with the state's timers.
#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use coachflow_engine::{
    Action, Actor, Command, DomainError, Effect, EngagementState, EngagementStatus, Event, EventKind, TaskStatus,
    apply, decide, gate_status,
};
use coachflow_model::{IsoDuration, Model, OutputType};
use serde_json::{Value, json};

pub fn model(name: &str) -> Model {
    let path = format!("{}/../../models/{name}.yaml", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{path}: {error}"));
    Model::from_text(&text).unwrap_or_else(|problems| panic!("{path}: {problems}"))
}

pub fn utc(text: &str) -> DateTime<Utc> {
    text.parse().unwrap()
}

pub struct Harness {
    pub model: Model,
    pub state: EngagementState,
    pub now: DateTime<Utc>,
    pub history: Vec<Event>,
    /// Every accepted command with the time it was decided at, for replaying elsewhere.
    pub commands: Vec<(Command, DateTime<Utc>)>,
    /// The timers table as the store would hold it: built from effects only.
    pub timer_table: BTreeMap<String, DateTime<Utc>>,
    pub actor: Actor,
}

impl Harness {
    pub fn new(model: Model, now: DateTime<Utc>) -> Harness {
        Harness {
            model,
            state: EngagementState::default(),
            now,
            history: Vec::new(),
            commands: Vec::new(),
            timer_table: BTreeMap::new(),
            actor: Actor::Person("coach-1".into()),
        }
    }

    /// Starts with a client, a coach, a sponsor, HR and `stakeholders` stakeholders.
    pub fn started(model: Model, now: DateTime<Utc>, stakeholders: usize) -> Harness {
        let mut harness = Harness::new(model, now);
        let mut people = BTreeMap::new();
        people.insert("client".to_owned(), vec!["client-1".to_owned()]);
        people.insert("coach".to_owned(), vec!["coach-1".to_owned()]);
        people.insert("sponsor".to_owned(), vec!["sponsor-1".to_owned()]);
        people.insert("hr".to_owned(), vec!["hr-1".to_owned()]);
        people.insert(
            "stakeholder".to_owned(),
            (1..=stakeholders).map(|n| format!("stakeholder-{n}")).collect(),
        );
        harness.ok(Action::Start {
            model_version: 1,
            timezone: Some("Europe/Berlin".into()),
            people,
        });
        harness
    }

    pub fn run(&mut self, action: Action) -> Result<Vec<Event>, DomainError> {
        let command = Command {
            actor: self.actor.clone(),
            action,
        };
        let decision = decide(&self.model, &self.state, &command, self.now)?;
        let replayed = decision.events.iter().fold(self.state.clone(), apply);
        assert_eq!(
            replayed, decision.state,
            "replaying the events must give the decision's state"
        );
        for (offset, event) in decision.events.iter().enumerate() {
            assert_eq!(
                event.sequence,
                self.state.sequence + 1 + offset as u64,
                "gapless sequence"
            );
        }
        for effect in &decision.effects {
            match effect {
                Effect::ScheduleTimer { id, at } => self.timer_table.insert(id.clone(), *at),
                Effect::CancelTimer { id } => self.timer_table.remove(id),
            };
        }
        let live: BTreeMap<String, DateTime<Utc>> = decision
            .state
            .timers
            .values()
            .filter(|timer| !timer.deferred)
            .map(|timer| (timer.id.clone(), timer.at))
            .collect();
        assert_eq!(
            self.timer_table, live,
            "the timers table must mirror the state's timers"
        );
        for task in decision.state.tasks.values() {
            assert!(
                !(task.status == TaskStatus::Open && task.closed_at.is_some()),
                "task {} is both open and closed",
                task.id
            );
        }
        self.state = decision.state;
        self.history.extend(decision.events.iter().cloned());
        self.commands.push((command, self.now));
        Ok(decision.events)
    }

    pub fn ok(&mut self, action: Action) -> Vec<Event> {
        let name = action.name();
        self.run(action)
            .unwrap_or_else(|error| panic!("{name} failed: {error:?}"))
    }

    pub fn err(&mut self, action: Action) -> DomainError {
        let before = self.state.clone();
        let error = self.run(action).expect_err("the command should have been refused");
        assert_eq!(self.state, before, "a refused command changes nothing");
        error
    }

    /// Moves the clock to `until`, firing every timer that comes due on the way, in order,
    /// as the timer runner would.
    pub fn advance_to(&mut self, until: DateTime<Utc>) {
        loop {
            let next = self
                .timer_table
                .iter()
                .filter(|(_, at)| **at <= until)
                .min_by_key(|(id, at)| (**at, (*id).clone()))
                .map(|(id, at)| (id.clone(), *at));
            let Some((id, at)) = next else { break };
            self.now = self.now.max(at);
            // The runner claims the row, then fires the command.
            self.timer_table.remove(&id);
            let actor = std::mem::replace(&mut self.actor, Actor::System);
            let result = self.run(Action::FireTimer { timer: id.clone() });
            self.actor = actor;
            result.unwrap_or_else(|error| panic!("timer {id} failed: {error:?}"));
        }
        self.now = self.now.max(until);
    }

    pub fn advance(&mut self, duration: &str) {
        let duration: IsoDuration = duration.parse().unwrap();
        let until = duration.after(self.now, chrono_tz::Tz::UTC).unwrap();
        self.advance_to(until);
    }

    pub fn next_timer(&self) -> Option<DateTime<Utc>> {
        self.timer_table.values().min().copied()
    }

    pub fn open_tasks(&self) -> Vec<String> {
        self.state.open_tasks().map(|task| task.id.clone()).collect()
    }

    pub fn phase(&self) -> Option<(String, u32)> {
        self.state
            .phase
            .as_ref()
            .map(|phase| (phase.key.clone(), phase.iteration))
    }

    pub fn task_status(&self, id: &str) -> TaskStatus {
        self.state
            .tasks
            .get(id)
            .unwrap_or_else(|| panic!("no task {id}"))
            .status
    }

    /// Outputs that satisfy every declared output of the instance's task.
    pub fn default_outputs(&self, instance: &str) -> BTreeMap<String, Value> {
        let task = &self.state.tasks[instance].task;
        let spec = self.model.task_spec(self.model.task_id(task).unwrap());
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

    pub fn complete(&mut self, instance: &str) -> Vec<Event> {
        let outputs = self.default_outputs(instance);
        self.complete_with(instance, outputs)
    }

    pub fn complete_with(&mut self, instance: &str, outputs: BTreeMap<String, Value>) -> Vec<Event> {
        self.ok(Action::CompleteTask {
            task: instance.to_owned(),
            outputs,
        })
    }

    /// Does whatever the engagement waits for, in a plausible order, until it completes:
    /// completes open tasks, signs off approvals, sets a goal and follows up commitments
    /// when a gate needs them, and otherwise lets time pass to the next timer.
    pub fn drive_to_completion(&mut self, max_steps: usize) {
        for _ in 0..max_steps {
            if self.state.status == EngagementStatus::Completed {
                return;
            }
            if let Some(task) = self.open_tasks().into_iter().next() {
                self.complete(&task);
                continue;
            }
            if let Some(gate) = gate_status(&self.model, &self.state) {
                if let Some(role) = gate.missing_sign_offs.first().filter(|_| gate.ready) {
                    let person = self.state.people[role][0].clone();
                    self.ok(Action::SignOff {
                        role: role.clone(),
                        person,
                    });
                    continue;
                }
                if gate.condition == Some(Ok(false)) && self.state.goals.is_empty() {
                    self.ok(Action::RecordGoal {
                        goal: "goal-1".into(),
                        title: "Delegate the weekly operations review".into(),
                        measure: Some("reviews chaired by a direct report".into()),
                        target: Some("4 of 4 in a month".into()),
                        due: None,
                    });
                    continue;
                }
                let open_commitment = self
                    .state
                    .commitments
                    .values()
                    .find(|commitment| commitment.status == coachflow_engine::CommitmentStatus::Open)
                    .map(|commitment| commitment.id.clone());
                if let Some(commitment) = open_commitment {
                    self.ok(Action::RecordCommitmentFollowUp {
                        commitment,
                        status: coachflow_engine::CommitmentStatus::Kept,
                        note: None,
                        due: None,
                    });
                    continue;
                }
                if gate.holds() {
                    self.ok(Action::AdvancePhase { expected_phase: None });
                    continue;
                }
            }
            match self.next_timer() {
                Some(at) => self.advance_to(at),
                None => panic!(
                    "stuck in {:?} with no timer; gate: {:?}",
                    self.phase(),
                    gate_status(&self.model, &self.state)
                ),
            }
        }
        panic!("did not complete within {max_steps} steps; in {:?}", self.phase());
    }

    pub fn public_events(&self) -> Vec<String> {
        self.history
            .iter()
            .filter_map(|event| {
                event
                    .kind
                    .public_name()
                    .map(|(entity, action)| format!("{entity}.{action}"))
            })
            .collect()
    }

    pub fn milestones(&self) -> Vec<String> {
        self.history
            .iter()
            .filter_map(|event| match &event.kind {
                EventKind::MilestoneReached { milestone, .. } => Some(milestone.clone()),
                _ => None,
            })
            .collect()
    }
}
