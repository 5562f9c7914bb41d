//! [`decide`]: what a command does to an engagement, as events and effects.
//!
//! A decision works on a copy of the state and applies every event to it the moment it is
//! emitted, so later steps see their effect and replaying the events with [`crate::apply`]
//! gives exactly the state the decision ends with. After the command itself, the
//! engagement *settles*: ready tasks open, milestones are reached, and phases whose exit
//! gate holds are left, until nothing more happens.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use coachflow_model::{IsoDuration, Model, TaskId, parse_timezone};
use serde::{Deserialize, Serialize};

use crate::command::{Action, Actor, Command};
use crate::error::{DomainError, Reason, Violations};
use crate::event::{Event, EventKind, SCHEMA_VERSION};
use crate::gate::{self, tally};
use crate::ids::{PERSON_ID_RULE, RECORD_ID_RULE, is_valid_person_id, is_valid_record_id, series_id, task_instance_id};
use crate::outputs::check_outputs;
use crate::state::{
    CommitmentStatus, EngagementState, EngagementStatus, GoalStatus, SeriesStatus, TaskStatus, Timer, TimerPurpose,
};

mod commands;
pub(crate) mod migration;
mod phases;
mod tasks;
mod timers;

/// What the store must do besides appending events: keep the timers table in step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Effect {
    /// Insert or move the timer so it fires at `at`.
    ScheduleTimer { id: String, at: DateTime<Utc> },
    /// Remove the timer: cancelled, fired, or deferred until the engagement resumes.
    CancelTimer { id: String },
}

/// The outcome of a command: the events to append (in order), the effects to perform in the
/// same transaction, and the state after them.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub events: Vec<Event>,
    pub effects: Vec<Effect>,
    pub state: EngagementState,
}

/// Where the current phase's exit gate stands.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GateStatus {
    /// Non-optional tasks of the phase that are not done yet.
    pub unfinished_tasks: Vec<String>,
    /// Approval roles still to sign off.
    pub missing_sign_offs: Vec<String>,
    /// The value of `exit.when`, or why it could not be evaluated; `None` without one.
    pub condition: Option<Result<bool, String>>,
    /// The gate holds but for its sign-offs: `exit.when` holds as if every approval role had
    /// signed off (or, without one, every non-optional task is done). Sign-offs are taken
    /// only then, and withdrawn when it stops holding.
    pub ready: bool,
}

impl GateStatus {
    pub fn holds(&self) -> bool {
        self.missing_sign_offs.is_empty()
            && match &self.condition {
                Some(result) => *result == Ok(true),
                None => self.unfinished_tasks.is_empty(),
            }
    }

    /// Why the phase cannot be signed off yet: what its condition still waits for.
    fn explain_unready(&self, phase: &str) -> String {
        let mut reasons = self.condition_reasons();
        if reasons.is_empty() {
            reasons.push("its exit condition is false".to_owned());
        }
        format!(
            "phase '{phase}' cannot be signed off before its exit condition holds: {}",
            reasons.join("; ")
        )
    }

    fn condition_reasons(&self) -> Vec<String> {
        let mut reasons = Vec::new();
        let unfinished = (!self.unfinished_tasks.is_empty())
            .then(|| format!("tasks not done: {}", self.unfinished_tasks.join(", ")));
        match (&self.condition, unfinished) {
            (None, Some(unfinished)) => reasons.push(unfinished),
            (Some(Ok(false)), unfinished) => reasons.push(match unfinished {
                Some(unfinished) => format!("its exit condition is false ({unfinished})"),
                None => "its exit condition is false".to_owned(),
            }),
            (Some(Err(error)), _) => reasons.push(format!("its exit condition failed: {error}")),
            _ => {}
        }
        reasons
    }

    fn explain(&self, phase: &str) -> String {
        let mut reasons = self.condition_reasons();
        if !self.missing_sign_offs.is_empty() {
            reasons.push(format!("sign-off missing from: {}", self.missing_sign_offs.join(", ")));
        }
        format!("phase '{phase}' cannot be left yet: {}", reasons.join("; "))
    }
}

/// How many phases one command may pass through; more means the model loops without work.
const MAX_PHASE_CHANGES_PER_COMMAND: u32 = 256;
/// How many missed occurrences of one series open in one command; the rest follow at once
/// in the next timer firing, so a long outage cannot make one transaction huge.
const MAX_CATCH_UP_PER_SERIES: u32 = 500;

/// Decides what `command` does to the engagement in `state` at `now`. Pure: the same
/// inputs give the same decision.
pub fn decide(
    model: &Model,
    state: &EngagementState,
    command: &Command,
    now: DateTime<Utc>,
) -> Result<Decision, DomainError> {
    let mut run = Run::new(model, state, &command.actor, now);
    run.execute(&command.action)?;
    Ok(run.finish())
}

/// The exit gate of the engagement's current phase; `None` when it is in no phase.
pub fn gate_status(model: &Model, state: &EngagementState) -> Option<GateStatus> {
    Run::new(model, state, &Actor::System, state.updated_at.unwrap_or_default()).gate_status()
}

struct Run<'a> {
    model: &'a Model,
    state: EngagementState,
    events: Vec<Event>,
    touched_timers: BTreeSet<String>,
    actor: &'a Actor,
    now: DateTime<Utc>,
    zone: Tz,
    phase_changes: u32,
}

impl<'a> Run<'a> {
    fn new(model: &'a Model, state: &EngagementState, actor: &'a Actor, now: DateTime<Utc>) -> Run<'a> {
        Run {
            model,
            state: state.clone(),
            events: Vec::new(),
            touched_timers: BTreeSet::new(),
            actor,
            now,
            zone: parse_timezone(&state.timezone).unwrap_or(Tz::UTC),
            phase_changes: 0,
        }
    }

    fn finish(self) -> Decision {
        let effects = self
            .touched_timers
            .into_iter()
            .map(|id| match self.state.timers.get(&id) {
                Some(timer) if !timer.deferred => Effect::ScheduleTimer { id, at: timer.at },
                _ => Effect::CancelTimer { id },
            })
            .collect();
        Decision {
            events: self.events,
            effects,
            state: self.state,
        }
    }

    fn emit(&mut self, kind: EventKind) {
        if let EventKind::TimerScheduled { id, .. }
        | EventKind::TimerCancelled { id }
        | EventKind::TimerFired { id }
        | EventKind::TimerDeferred { id } = &kind
        {
            self.touched_timers.insert(id.clone());
        }
        let event = Event {
            schema_version: SCHEMA_VERSION,
            sequence: self.state.sequence + 1,
            at: self.now,
            actor: self.actor.clone(),
            kind,
        };
        self.state.apply(&event);
        self.events.push(event);
    }

    fn execute(&mut self, action: &Action) -> Result<(), DomainError> {
        if let Action::Start {
            model_version,
            timezone,
            people,
        } = action
        {
            return self.start(*model_version, timezone.as_deref(), people);
        }
        if self.state.status == EngagementStatus::New {
            return Err(DomainError::precondition(
                Reason::EngagementNotStarted,
                "the engagement has not been started",
            ));
        }
        match action {
            Action::Start { .. } => Ok(()),
            Action::CompleteTask { task, outputs } => self.complete_task(task, outputs),
            Action::SkipTask { task, reason } => self.skip_task(task, reason),
            Action::AssignTask { task, assignee } => self.assign_task(task, assignee),
            Action::AddParticipant { role, person } => self.add_participant(role, person),
            Action::RecordGoal {
                goal,
                title,
                measure,
                target,
                due,
            } => self.record_goal(goal, title, measure.as_deref(), target.as_deref(), *due),
            Action::RecordGoalProgress {
                goal,
                progress,
                status,
                note,
            } => self.record_goal_progress(goal, *progress, *status, note.as_deref()),
            Action::RecordCommitment {
                commitment,
                description,
                owner,
                due,
            } => self.record_commitment(commitment, description, owner.as_deref(), *due),
            Action::RecordCommitmentFollowUp {
                commitment,
                status,
                note,
                due,
            } => self.record_commitment_follow_up(commitment, *status, note.as_deref(), *due),
            Action::SignOff { role, person } => self.sign_off(role, person),
            Action::AdvancePhase { expected_phase } => self.advance_phase(expected_phase.as_deref()),
            Action::FireTimer { timer } => self.fire_timer(timer),
            Action::ReopenTask { task, reason } => self.reopen_task(task, reason),
            Action::MoveToPhase { phase, reason } => self.move_to_phase(phase, reason),
            Action::WithdrawSignOff { role, reason } => self.withdraw_sign_off(role, reason),
            Action::Suspend { reason } => self.suspend(reason.as_deref()),
            Action::Resume => self.resume(),
            Action::Cancel { reason } => self.cancel(reason.as_deref()),
            Action::EraseContent => {
                self.erase_content();
                Ok(())
            }
            Action::ErasePerson { person, pseudonym } => self.erase_person(person, pseudonym),
        }
    }
}
