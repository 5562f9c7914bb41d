//! Driving an engagement over gRPC the way its people would: complete what is open with
//! outputs the model accepts, sign off gates, set a goal when a gate wants one, and
//! otherwise move the clock to the next timer the history says is pending and wait for
//! the server's timer runner to fire it.

use std::time::Duration;

use chrono::{DateTime, Utc};
use coachflow_model::{Model, OutputType};
use coachflow_server::proto;
use serde_json::{Value, json};

use crate::client::instance_of;
use crate::history;
use crate::server::TestServer;
use crate::wait_until;

/// How long the timer runner may take to fire the timers that are due.
pub const TIMER_TIMEOUT: Duration = Duration::from_secs(30);

/// Parses a model's text as the server does.
pub fn parse_model(source: &str) -> Model {
    Model::from_text(source).unwrap_or_else(|problems| panic!("invalid model: {problems}"))
}

pub use coachflow_server::convert::json_to_value;

/// A `google.protobuf.Struct` from a JSON object (`json!({...})`).
pub fn json_to_struct(object: &Value) -> prost_types::Struct {
    let Value::Object(map) = object else {
        panic!("not a JSON object: {object}");
    };
    coachflow_server::convert::json_to_struct(map)
}

/// Outputs that satisfy every declared output of the model's task `key`, as the engine's
/// scenario tests fill them in (a course correction is never asked for).
pub fn default_outputs(model: &Model, key: &str) -> prost_types::Struct {
    let task = model
        .task_id(key)
        .unwrap_or_else(|| panic!("model {} has no task {key}", model.key()));
    let outputs: serde_json::Map<String, Value> = model
        .task_spec(task)
        .outputs
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
        .collect();
    json_to_struct(&Value::Object(outputs))
}

/// The actor a task's assignee acts as.
pub fn assignee_actor(task: &proto::Task) -> String {
    if task.assignee.is_empty() {
        crate::client::SERVICE_ACTOR.to_owned()
    } else {
        format!("person/{}", task.assignee)
    }
}

/// What one step of a [`Driver`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Completed(String),
    SignedOff(String),
    GoalSet,
    FollowedUp(String),
    Advanced(String),
    /// Moved the clock to this time and saw every timer due by then fire.
    TimePassed(DateTime<Utc>),
    Done,
}

/// Drives one engagement.
#[derive(Debug)]
pub struct Driver<'a> {
    server: &'a TestServer,
    model: Model,
    name: String,
    /// Every step taken, for failure messages.
    pub steps: Vec<Step>,
}

impl<'a> Driver<'a> {
    /// `source` is the text of the engagement's model; `name` the engagement's resource name.
    pub fn new(server: &'a TestServer, source: &str, name: &str) -> Driver<'a> {
        Driver {
            server,
            model: parse_model(source),
            name: name.to_owned(),
            steps: Vec::new(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub async fn engagement(&self) -> proto::Engagement {
        self.server.get_engagement(&self.name).await
    }

    /// Completes an open task with outputs its model accepts, as its assignee.
    pub async fn complete(&self, task: &proto::Task) -> proto::Engagement {
        let outputs = default_outputs(&self.model, &task.key);
        self.server
            .engagements_as(&assignee_actor(task))
            .complete_task(proto::CompleteTaskRequest {
                name: task.name.clone(),
                outputs: Some(outputs),
                etag: String::new(),
                request_id: String::new(),
            })
            .await
            .unwrap_or_else(|status| panic!("CompleteTask {} failed: {status:?}", task.name))
            .into_inner()
    }

    /// Takes one step; see the module documentation for the order.
    pub async fn step(&mut self) -> Step {
        let step = self.decide_and_act().await;
        self.steps.push(step.clone());
        step
    }

    async fn decide_and_act(&mut self) -> Step {
        let engagement = self.engagement().await;
        if engagement.state() == proto::engagement::State::Completed {
            return Step::Done;
        }
        let mut open: Vec<&proto::Task> = engagement
            .tasks
            .iter()
            .filter(|task| task.state() == proto::task::State::Open)
            .collect();
        open.sort_by(|left, right| instance_of(&left.name).cmp(instance_of(&right.name)));
        if let Some(task) = open.first() {
            self.complete(task).await;
            return Step::Completed(instance_of(&task.name).to_owned());
        }
        let phase = engagement
            .phase
            .clone()
            .unwrap_or_else(|| panic!("{} is {:?} without a phase", self.name, engagement.state()));
        let gate = phase.gate.clone().unwrap_or_default();
        let mut client = self.server.engagements();
        // A sign-off is taken once the phase's condition holds, as its approver gives it.
        if let Some(role) = gate.missing_sign_offs.first().filter(|_| gate.ready) {
            let person = engagement
                .people
                .iter()
                .find(|binding| binding.role == *role)
                .and_then(|binding| binding.people.first())
                .unwrap_or_else(|| panic!("nobody holds role {role} to sign off {}", phase.key))
                .clone();
            client = self.server.engagements_as(&format!("person/{person}"));
            client
                .sign_off_phase(proto::SignOffPhaseRequest {
                    engagement: self.name.clone(),
                    role: role.clone(),
                    person: person.clone(),
                    etag: engagement.etag.clone(),
                    request_id: String::new(),
                })
                .await
                .unwrap_or_else(|status| panic!("SignOffPhase {} as {role} failed: {status:?}", phase.key));
            return Step::SignedOff(role.clone());
        }
        if !gate.satisfied && gate.unfinished_tasks.is_empty() && engagement.goals.is_empty() {
            client
                .record_goal(proto::RecordGoalRequest {
                    engagement: self.name.clone(),
                    goal_id: "goal-1".to_owned(),
                    title: "Delegate the weekly operations review".to_owned(),
                    measure: "reviews chaired by a direct report".to_owned(),
                    target: "4 of 4 in a month".to_owned(),
                    due_date: String::new(),
                    etag: engagement.etag.clone(),
                    request_id: String::new(),
                })
                .await
                .unwrap_or_else(|status| panic!("RecordGoal failed: {status:?}"));
            return Step::GoalSet;
        }
        let open_commitment = engagement
            .commitments
            .iter()
            .find(|commitment| commitment.status() == proto::commitment::Status::Open);
        if let Some(commitment) = open_commitment {
            client
                .record_commitment_follow_up(proto::RecordCommitmentFollowUpRequest {
                    engagement: self.name.clone(),
                    commitment_id: commitment.id.clone(),
                    status: proto::commitment::Status::Kept.into(),
                    note: String::new(),
                    follow_up_time: None,
                    etag: engagement.etag.clone(),
                    request_id: String::new(),
                })
                .await
                .unwrap_or_else(|status| panic!("RecordCommitmentFollowUp failed: {status:?}"));
            return Step::FollowedUp(commitment.id.clone());
        }
        if gate.satisfied {
            client
                .advance_phase(proto::AdvancePhaseRequest {
                    engagement: self.name.clone(),
                    expected_phase: phase.key.clone(),
                    etag: engagement.etag.clone(),
                    request_id: String::new(),
                })
                .await
                .unwrap_or_else(|status| panic!("AdvancePhase from {} failed: {status:?}", phase.key));
            return Step::Advanced(phase.key);
        }
        match self.advance_to_next_timer().await {
            Some(at) => Step::TimePassed(at),
            None => panic!(
                "{} is stuck in phase {} with nothing open and no timer pending; gate {gate:?}; tasks {:?}",
                self.name, phase.key, engagement.tasks
            ),
        }
    }

    /// Steps until `stop` holds for the engagement.
    pub async fn drive_until(&mut self, what: &str, max_steps: usize, stop: impl Fn(&proto::Engagement) -> bool) {
        for _ in 0..max_steps {
            let engagement = self.engagement().await;
            if stop(&engagement) {
                return;
            }
            if self.step().await == Step::Done {
                panic!("{} completed before {what}; steps: {:?}", self.name, self.steps);
            }
        }
        panic!(
            "{} did not reach {what} within {max_steps} steps; last steps: {:?}",
            self.name,
            &self.steps[self.steps.len().saturating_sub(20)..]
        );
    }

    /// Steps until the engagement is COMPLETED.
    pub async fn drive_to_completion(&mut self, max_steps: usize) {
        for _ in 0..max_steps {
            if self.step().await == Step::Done {
                return;
            }
        }
        panic!(
            "{} did not complete within {max_steps} steps; last steps: {:?}",
            self.name,
            &self.steps[self.steps.len().saturating_sub(20)..]
        );
    }

    /// Moves the clock to the engagement's next pending timer (per its history) unless the
    /// clock is already past it, then waits until every timer due by then has fired.
    /// `None` when no timer is pending.
    pub async fn advance_to_next_timer(&self) -> Option<DateTime<Utc>> {
        let history = self.server.history(&self.name).await;
        let next = history::timers(&history).pending.values().min().copied()?;
        let at = next.max(self.server.now());
        self.server.set_time(at);
        self.wait_for_due_timers().await;
        Some(at)
    }

    /// Waits until no timer of the engagement is pending with a time at or before the
    /// clock's.
    pub async fn wait_for_due_timers(&self) {
        let now = self.server.now();
        let what = format!("every timer of {} due by {now} has fired", self.name);
        wait_until(&what, TIMER_TIMEOUT, || async {
            let history = self.server.history(&self.name).await;
            let timers = history::timers(&history);
            timers.pending.values().all(|at| *at > now).then_some(())
        })
        .await;
    }
}
