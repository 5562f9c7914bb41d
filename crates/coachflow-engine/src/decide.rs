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
use crate::error::{DomainError, Violations};
use crate::event::{Event, EventKind, SCHEMA_VERSION};
use crate::gate::{self, tally};
use crate::ids::{PERSON_ID_RULE, RECORD_ID_RULE, is_valid_person_id, is_valid_record_id, series_id, task_instance_id};
use crate::outputs::check_outputs;
use crate::state::{
    CommitmentStatus, EngagementState, EngagementStatus, GoalStatus, SeriesStatus, TaskStatus, Timer, TimerPurpose,
};

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
}

impl GateStatus {
    pub fn holds(&self) -> bool {
        self.missing_sign_offs.is_empty()
            && match &self.condition {
                Some(result) => *result == Ok(true),
                None => self.unfinished_tasks.is_empty(),
            }
    }

    fn explain(&self, phase: &str) -> String {
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
                "ENGAGEMENT_NOT_STARTED",
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
            Action::Suspend { reason } => self.suspend(reason.as_deref()),
            Action::Resume => self.resume(),
            Action::Cancel { reason } => self.cancel(reason.as_deref()),
        }
    }

    // ----- state checks -------------------------------------------------------------

    fn require_active(&self) -> Result<(), DomainError> {
        match self.state.status {
            EngagementStatus::Active => Ok(()),
            EngagementStatus::Suspended => Err(DomainError::precondition(
                "ENGAGEMENT_SUSPENDED",
                "the engagement is suspended; resume it first",
            )),
            status => Err(ended_error(status)),
        }
    }

    /// Records (goals, commitments, people) may change while suspended, not once ended.
    fn require_not_ended(&self) -> Result<(), DomainError> {
        match self.state.status {
            EngagementStatus::Active | EngagementStatus::Suspended => Ok(()),
            status => Err(ended_error(status)),
        }
    }

    fn task_id_of(&self, instance: &str) -> Result<TaskId, DomainError> {
        let task = self
            .state
            .tasks
            .get(instance)
            .ok_or_else(|| DomainError::not_found("task", instance))?;
        self.model.task_id(&task.task).ok_or_else(|| {
            DomainError::precondition(
                "MODEL_MISMATCH",
                format!("task '{instance}' is not in model '{}'", self.model.key()),
            )
        })
    }

    fn open_task(&self, instance: &str) -> Result<TaskId, DomainError> {
        let task_id = self.task_id_of(instance)?;
        let status = self.state.tasks[instance].status;
        if status != TaskStatus::Open {
            return Err(DomainError::precondition(
                "TASK_NOT_OPEN",
                format!("task '{instance}' is {}, not open", status.as_str()),
            ));
        }
        Ok(task_id)
    }

    // ----- commands ------------------------------------------------------------------

    fn start(
        &mut self,
        model_version: u32,
        timezone: Option<&str>,
        people: &BTreeMap<String, Vec<String>>,
    ) -> Result<(), DomainError> {
        if self.state.status != EngagementStatus::New {
            return Err(DomainError::conflict(
                "ENGAGEMENT_ALREADY_STARTED",
                "the engagement has already been started",
            ));
        }
        let mut violations = Violations::default();
        let timezone = timezone.unwrap_or("UTC");
        let zone = match parse_timezone(timezone) {
            Ok(zone) => Some(zone),
            Err(message) => {
                violations.add("timezone", message);
                None
            }
        };
        let role_keys: Vec<&str> = self.model.roles().iter().map(|role| role.key.as_str()).collect();
        for (role, persons) in people {
            let Some(declared) = self.model.role(role) else {
                violations.add(
                    format!("people.{role}"),
                    format!("unknown role '{role}'; the model has {}", role_keys.join(", ")),
                );
                continue;
            };
            if !declared.multiple && persons.len() > 1 {
                violations.add(
                    format!("people.{role}"),
                    format!("role '{role}' holds one person, not {}", persons.len()),
                );
            }
            let mut seen = BTreeSet::new();
            for (position, person) in persons.iter().enumerate() {
                if !is_valid_person_id(person) {
                    violations.add(
                        format!("people.{role}[{position}]"),
                        format!("'{person}' {PERSON_ID_RULE}"),
                    );
                } else if !seen.insert(person.as_str()) {
                    violations.add(
                        format!("people.{role}[{position}]"),
                        format!("'{person}' is listed twice"),
                    );
                }
            }
        }
        for role in self.model.roles().iter().filter(|role| role.required) {
            if people.get(&role.key).is_none_or(Vec::is_empty) {
                violations.add(
                    format!("people.{}", role.key),
                    format!("role '{}' is required; bind at least one person to it", role.key),
                );
            }
        }
        violations.into_result()?;
        self.zone = zone.unwrap_or(Tz::UTC);
        self.emit(EventKind::EngagementStarted {
            model_key: self.model.key().to_owned(),
            model_version,
            timezone: timezone.to_owned(),
            people: people
                .iter()
                .filter(|(_, persons)| !persons.is_empty())
                .map(|(role, persons)| (role.clone(), persons.clone()))
                .collect(),
        });
        let throughout: Vec<TaskId> = self.model.throughout().collect();
        for task in throughout {
            self.create_task(task, 1);
        }
        self.enter_phase(0);
        self.settle()
    }

    fn complete_task(
        &mut self,
        instance: &str,
        outputs: &BTreeMap<String, serde_json::Value>,
    ) -> Result<(), DomainError> {
        self.require_active()?;
        let task_id = self.open_task(instance)?;
        let outputs = check_outputs(self.model, task_id, outputs)?;
        self.cancel_task_timers(instance);
        self.emit(EventKind::TaskCompleted {
            id: instance.to_owned(),
            outputs,
        });
        self.settle()
    }

    fn skip_task(&mut self, instance: &str, reason: &str) -> Result<(), DomainError> {
        self.require_active()?;
        let task_id = self.task_id_of(instance)?;
        let task = &self.state.tasks[instance];
        if task.status.is_closed() {
            return Err(DomainError::precondition(
                "TASK_CLOSED",
                format!("task '{instance}' is already {}", task.status.as_str()),
            ));
        }
        if !self.model.task(task_id).optional && task.occurrence.is_none() {
            return Err(DomainError::precondition(
                "TASK_REQUIRED",
                format!(
                    "task '{instance}' is required; only optional tasks and single occurrences of a repeating task can be skipped"
                ),
            ));
        }
        let reason = reason.trim();
        if reason.is_empty() {
            return Err(DomainError::invalid("reason", "say why the task is skipped"));
        }
        if reason.chars().count() > 2_000 {
            return Err(DomainError::invalid("reason", "must be at most 2000 characters"));
        }
        self.cancel_task_timers(instance);
        self.emit(EventKind::TaskSkipped {
            id: instance.to_owned(),
            reason: reason.to_owned(),
        });
        self.settle()
    }

    fn assign_task(&mut self, instance: &str, assignee: &str) -> Result<(), DomainError> {
        self.require_not_ended()?;
        let task_id = self.task_id_of(instance)?;
        let task = &self.state.tasks[instance];
        if task.status.is_closed() {
            return Err(DomainError::precondition(
                "TASK_CLOSED",
                format!("task '{instance}' is already {}", task.status.as_str()),
            ));
        }
        if !is_valid_person_id(assignee) {
            return Err(DomainError::invalid(
                "assignee",
                format!("'{assignee}' {PERSON_ID_RULE}"),
            ));
        }
        match &self.model.task_spec(task_id).assignee {
            Some(role) if !self.state.holds_role(assignee, role) => {
                return Err(DomainError::invalid(
                    "assignee",
                    format!("person '{assignee}' does not hold role '{role}', which does this task"),
                ));
            }
            None if !self.state.is_participant(assignee) => {
                return Err(DomainError::invalid(
                    "assignee",
                    format!("person '{assignee}' is not part of this engagement"),
                ));
            }
            _ => {}
        }
        if task.assignee.as_deref() == Some(assignee) {
            return Ok(());
        }
        self.emit(EventKind::TaskAssigned {
            id: instance.to_owned(),
            assignee: assignee.to_owned(),
        });
        Ok(())
    }

    fn add_participant(&mut self, role: &str, person: &str) -> Result<(), DomainError> {
        self.require_not_ended()?;
        let Some(declared) = self.model.role(role) else {
            return Err(DomainError::invalid("role", format!("unknown role '{role}'")));
        };
        if !is_valid_person_id(person) {
            return Err(DomainError::invalid("person", format!("'{person}' {PERSON_ID_RULE}")));
        }
        if self.state.holds_role(person, role) {
            return Err(DomainError::conflict(
                "ALREADY_PARTICIPANT",
                format!("person '{person}' already holds role '{role}'"),
            ));
        }
        if !declared.multiple
            && let Some(holder) = self.state.people.get(role).and_then(|people| people.first())
        {
            return Err(DomainError::precondition(
                "ROLE_TAKEN",
                format!("role '{role}' holds one person and '{holder}' holds it; reassign tasks instead"),
            ));
        }
        self.emit(EventKind::ParticipantAdded {
            role: role.to_owned(),
            person: person.to_owned(),
        });
        // for_each tasks under way (in the current phase or throughout) get an instance for
        // the newcomer.
        let current = self
            .state
            .phase
            .as_ref()
            .map(|phase| (phase.key.clone(), phase.iteration));
        let mut created = Vec::new();
        for (index, plan) in self.model.tasks().iter().enumerate() {
            if self.model.task_spec(TaskId(index)).for_each.as_deref() != Some(role) {
                continue;
            }
            let iteration = match (plan.phase, &current) {
                (None, _) => 1,
                (Some(phase), Some((key, iteration))) if &self.model.phase(phase).key == key => *iteration,
                _ => continue,
            };
            created.push((TaskId(index), iteration));
        }
        for (task, iteration) in created {
            self.create_instance(task, iteration, None, Some(person.to_owned()), None);
        }
        self.settle()
    }

    fn record_goal(
        &mut self,
        goal: &str,
        title: &str,
        measure: Option<&str>,
        target: Option<&str>,
        due: Option<NaiveDate>,
    ) -> Result<(), DomainError> {
        self.require_not_ended()?;
        let mut violations = Violations::default();
        if !is_valid_record_id(goal) {
            violations.add("goal", format!("'{goal}' {RECORD_ID_RULE}"));
        }
        check_text(&mut violations, "title", Some(title), 500, true);
        check_text(&mut violations, "measure", measure, 500, false);
        check_text(&mut violations, "target", target, 500, false);
        violations.into_result()?;
        if self.state.goals.contains_key(goal) {
            return Err(DomainError::conflict(
                "GOAL_EXISTS",
                format!("goal '{goal}' already exists"),
            ));
        }
        self.emit(EventKind::GoalSet {
            goal: goal.to_owned(),
            title: title.trim().to_owned(),
            measure: measure.map(|text| text.trim().to_owned()),
            target: target.map(|text| text.trim().to_owned()),
            due,
        });
        self.settle()
    }

    fn record_goal_progress(
        &mut self,
        goal: &str,
        progress: u32,
        status: Option<GoalStatus>,
        note: Option<&str>,
    ) -> Result<(), DomainError> {
        self.require_not_ended()?;
        let current = self
            .state
            .goals
            .get(goal)
            .ok_or_else(|| DomainError::not_found("goal", goal))?;
        let mut violations = Violations::default();
        if progress > 100 {
            violations.add(
                "progress",
                format!("must be a percentage from 0 to 100, not {progress}"),
            );
        }
        check_text(&mut violations, "note", note, 10_000, false);
        violations.into_result()?;
        if current.status.is_final() {
            return Err(DomainError::precondition(
                "GOAL_CLOSED",
                format!(
                    "goal '{goal}' is {}; it takes no more progress",
                    current.status.as_str()
                ),
            ));
        }
        let status = status.unwrap_or(current.status);
        self.emit(EventKind::GoalProgressRecorded {
            goal: goal.to_owned(),
            progress,
            status,
            note: note.map(str::to_owned),
        });
        if status == GoalStatus::Achieved {
            self.emit(EventKind::GoalAchieved { goal: goal.to_owned() });
        }
        self.settle()
    }

    fn record_commitment(
        &mut self,
        commitment: &str,
        description: &str,
        owner: Option<&str>,
        due: Option<DateTime<Utc>>,
    ) -> Result<(), DomainError> {
        self.require_not_ended()?;
        let mut violations = Violations::default();
        if !is_valid_record_id(commitment) {
            violations.add("commitment", format!("'{commitment}' {RECORD_ID_RULE}"));
        }
        check_text(&mut violations, "description", Some(description), 2_000, true);
        if let Some(owner) = owner
            && !self.state.is_participant(owner)
        {
            violations.add("owner", format!("person '{owner}' is not part of this engagement"));
        }
        if let Some(due) = due
            && due <= self.now
        {
            violations.add("due", "must be in the future");
        }
        violations.into_result()?;
        if self.state.commitments.contains_key(commitment) {
            return Err(DomainError::conflict(
                "COMMITMENT_EXISTS",
                format!("commitment '{commitment}' already exists"),
            ));
        }
        self.emit(EventKind::CommitmentRecorded {
            commitment: commitment.to_owned(),
            description: description.trim().to_owned(),
            owner: owner.map(str::to_owned),
            due,
        });
        if let Some(due) = due {
            self.schedule_timer(
                follow_up_timer(commitment),
                due,
                TimerPurpose::CommitmentFollowUp {
                    commitment: commitment.to_owned(),
                },
            );
        }
        self.settle()
    }

    fn record_commitment_follow_up(
        &mut self,
        commitment: &str,
        status: CommitmentStatus,
        note: Option<&str>,
        due: Option<DateTime<Utc>>,
    ) -> Result<(), DomainError> {
        self.require_not_ended()?;
        let current = self
            .state
            .commitments
            .get(commitment)
            .ok_or_else(|| DomainError::not_found("commitment", commitment))?;
        let mut violations = Violations::default();
        match (status, due) {
            (CommitmentStatus::Open, _) => {
                violations.add("status", "a follow-up records kept, missed, renegotiated or dropped");
            }
            (CommitmentStatus::Renegotiated, None) => {
                violations.add("due", "a renegotiated commitment needs a new due date")
            }
            (CommitmentStatus::Renegotiated, Some(due)) if due <= self.now => {
                violations.add("due", "must be in the future")
            }
            (CommitmentStatus::Renegotiated, Some(_)) => {}
            (_, Some(_)) => violations.add("due", "only a renegotiated commitment takes a new due date"),
            (_, None) => {}
        }
        check_text(&mut violations, "note", note, 10_000, false);
        violations.into_result()?;
        if current.status != CommitmentStatus::Open {
            return Err(DomainError::precondition(
                "COMMITMENT_CLOSED",
                format!("commitment '{commitment}' is already {}", current.status.as_str()),
            ));
        }
        self.cancel_timer(&follow_up_timer(commitment));
        self.emit(EventKind::CommitmentFollowedUp {
            commitment: commitment.to_owned(),
            status,
            note: note.map(str::to_owned),
            due,
        });
        if let (CommitmentStatus::Renegotiated, Some(due)) = (status, due) {
            self.schedule_timer(
                follow_up_timer(commitment),
                due,
                TimerPurpose::CommitmentFollowUp {
                    commitment: commitment.to_owned(),
                },
            );
        }
        self.settle()
    }

    fn sign_off(&mut self, role: &str, person: &str) -> Result<(), DomainError> {
        self.require_active()?;
        let Some(current) = self.state.phase.clone() else {
            return Err(DomainError::precondition(
                "NO_CURRENT_PHASE",
                "the engagement is in no phase",
            ));
        };
        let plan = self.current_phase_plan()?;
        if !plan.approval.iter().any(|approver| approver == role) {
            let needed = if plan.approval.is_empty() {
                "no sign-off at all".to_owned()
            } else {
                format!("sign-off from {}", plan.approval.join(", "))
            };
            return Err(DomainError::precondition(
                "NO_SUCH_APPROVAL",
                format!(
                    "phase '{}' needs no sign-off from role '{role}'; it needs {needed}",
                    current.key
                ),
            ));
        }
        if !self.state.holds_role(person, role) {
            return Err(DomainError::invalid(
                "person",
                format!("person '{person}' does not hold role '{role}'"),
            ));
        }
        if let Some(signed) = current.sign_offs.get(role) {
            return Err(DomainError::conflict(
                "ALREADY_SIGNED_OFF",
                format!(
                    "role '{role}' has already signed off phase '{}' (by '{signed}')",
                    current.key
                ),
            ));
        }
        self.emit(EventKind::PhaseSignedOff {
            phase: current.key,
            role: role.to_owned(),
            person: person.to_owned(),
        });
        self.settle()
    }

    fn advance_phase(&mut self, expected_phase: Option<&str>) -> Result<(), DomainError> {
        self.require_active()?;
        let Some(current) = self.state.phase.clone() else {
            return Err(DomainError::precondition(
                "NO_CURRENT_PHASE",
                "the engagement is in no phase",
            ));
        };
        if let Some(expected) = expected_phase
            && expected != current.key
        {
            return Err(DomainError::conflict(
                "PHASE_MISMATCH",
                format!("the engagement is in phase '{}', not '{expected}'", current.key),
            ));
        }
        if let Some(gate) = self.gate_status()
            && !gate.holds()
        {
            return Err(DomainError::precondition(
                "GATE_NOT_SATISFIED",
                gate.explain(&current.key),
            ));
        }
        self.leave_phase()?;
        self.settle()
    }

    fn fire_timer(&mut self, id: &str) -> Result<(), DomainError> {
        // A timer already fired or cancelled is no error: the runner may race with the
        // command that cancelled it, and firing twice must do nothing.
        let Some(timer) = self.state.timers.get(id).cloned() else {
            return Ok(());
        };
        if timer.at > self.now {
            return Err(DomainError::precondition(
                "TIMER_NOT_DUE",
                format!("timer '{id}' is due at {}, not yet", timer.at.to_rfc3339()),
            ));
        }
        match self.state.status {
            EngagementStatus::Active => {
                self.fire(&timer);
                self.settle()
            }
            EngagementStatus::Suspended => {
                if !timer.deferred {
                    self.emit(EventKind::TimerDeferred { id: id.to_owned() });
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn suspend(&mut self, reason: Option<&str>) -> Result<(), DomainError> {
        self.require_active()?;
        let mut violations = Violations::default();
        check_text(&mut violations, "reason", reason, 2_000, false);
        violations.into_result()?;
        self.emit(EventKind::EngagementSuspended {
            reason: reason.map(str::to_owned),
        });
        Ok(())
    }

    fn resume(&mut self) -> Result<(), DomainError> {
        match self.state.status {
            EngagementStatus::Suspended => {}
            EngagementStatus::Active => {
                return Err(DomainError::precondition(
                    "ENGAGEMENT_NOT_SUSPENDED",
                    "the engagement is not suspended",
                ));
            }
            status => return Err(ended_error(status)),
        }
        self.emit(EventKind::EngagementResumed);
        // Catch up: everything that came due while suspended fires now, oldest first.
        let mut due: Vec<Timer> = self
            .state
            .timers
            .values()
            .filter(|timer| timer.deferred || timer.at <= self.now)
            .cloned()
            .collect();
        due.sort_by(|left, right| (left.at, &left.id).cmp(&(right.at, &right.id)));
        for timer in due {
            // An earlier firing may have cancelled it.
            if self.state.timers.contains_key(&timer.id) {
                self.fire(&timer);
            }
        }
        self.settle()
    }

    fn cancel(&mut self, reason: Option<&str>) -> Result<(), DomainError> {
        self.require_not_ended()?;
        let mut violations = Violations::default();
        check_text(&mut violations, "reason", reason, 2_000, false);
        violations.into_result()?;
        self.close_everything();
        self.emit(EventKind::EngagementCancelled {
            reason: reason.map(str::to_owned),
        });
        Ok(())
    }

    // ----- timers --------------------------------------------------------------------

    fn schedule_timer(&mut self, id: String, at: DateTime<Utc>, purpose: TimerPurpose) {
        self.emit(EventKind::TimerScheduled {
            id,
            fires_at: at,
            purpose,
        });
    }

    fn cancel_timer(&mut self, id: &str) {
        if self.state.timers.contains_key(id) {
            self.emit(EventKind::TimerCancelled { id: id.to_owned() });
        }
    }

    fn cancel_task_timers(&mut self, instance: &str) {
        let ids: Vec<String> = self
            .state
            .timers
            .values()
            .filter(|timer| match &timer.purpose {
                TimerPurpose::OpenTask { task }
                | TimerPurpose::DueSoon { task }
                | TimerPurpose::Overdue { task }
                | TimerPurpose::Escalate { task } => task == instance,
                _ => false,
            })
            .map(|timer| timer.id.clone())
            .collect();
        for id in ids {
            self.cancel_timer(&id);
        }
    }

    /// Does what a due timer is for. The engagement is active.
    fn fire(&mut self, timer: &Timer) {
        self.emit(EventKind::TimerFired { id: timer.id.clone() });
        let task_status = |run: &Self, id: &str| run.state.tasks.get(id).map(|task| task.status);
        match &timer.purpose {
            TimerPurpose::OpenTask { task } => {
                if task_status(self, task) == Some(TaskStatus::Scheduled) {
                    self.open_instance(task);
                }
            }
            TimerPurpose::DueSoon { task } => {
                if task_status(self, task) == Some(TaskStatus::Open)
                    && let Some(due_at) = self.state.tasks[task].due_at
                {
                    self.emit(EventKind::TaskDueSoon {
                        id: task.clone(),
                        due_at,
                    });
                }
            }
            TimerPurpose::Overdue { task } => {
                if task_status(self, task) == Some(TaskStatus::Open)
                    && let Some(due_at) = self.state.tasks[task].due_at
                {
                    self.emit(EventKind::TaskOverdue {
                        id: task.clone(),
                        due_at,
                    });
                }
            }
            TimerPurpose::Escalate { task } => {
                if task_status(self, task) == Some(TaskStatus::Open) {
                    self.emit(EventKind::TaskEscalated { id: task.clone() });
                }
            }
            TimerPurpose::NextOccurrence { series } => {
                if self.state.series.get(series).map(|series| series.status) == Some(SeriesStatus::Running) {
                    self.open_occurrence(series, timer.at);
                    self.continue_series(series);
                }
            }
            TimerPurpose::CommitmentFollowUp { commitment } => {
                if self
                    .state
                    .commitments
                    .get(commitment)
                    .map(|commitment| commitment.status)
                    == Some(CommitmentStatus::Open)
                {
                    self.emit(EventKind::CommitmentFollowUpDue {
                        commitment: commitment.clone(),
                    });
                }
            }
        }
    }

    fn later(&self, duration: &IsoDuration) -> Option<DateTime<Utc>> {
        duration.after(self.now, self.zone)
    }

    // ----- tasks ---------------------------------------------------------------------

    /// Creates the instances (or the series) of `task` for one iteration of its phase.
    fn create_task(&mut self, task: TaskId, iteration: u32) {
        let plan = self.model.task(task);
        if plan.repeat.is_some() {
            self.emit(EventKind::SeriesCreated {
                id: series_id(&plan.key, iteration),
                task: plan.key.clone(),
                phase: plan.phase.map(|phase| self.model.phase(phase).key.clone()),
                iteration,
            });
            return;
        }
        match &self.model.task_spec(task).for_each {
            Some(role) => {
                let people = self.state.people.get(role).cloned().unwrap_or_default();
                for person in people {
                    self.create_instance(task, iteration, None, Some(person), None);
                }
            }
            None => {
                self.create_instance(task, iteration, None, None, None);
            }
        }
    }

    fn create_instance(
        &mut self,
        task: TaskId,
        iteration: u32,
        occurrence: Option<u32>,
        subject: Option<String>,
        scheduled_at: Option<DateTime<Utc>>,
    ) -> String {
        let plan = self.model.task(task);
        let spec = self.model.task_spec(task);
        let id = task_instance_id(&plan.key, iteration, occurrence, subject.as_deref());
        // The person a for_each instance is for does it when the assignee role is theirs;
        // otherwise the first person bound to the assignee role.
        let assignee = match (&spec.assignee, &spec.for_each, &subject) {
            (Some(role), Some(each), Some(person)) if role == each => Some(person.clone()),
            (Some(role), _, _) => self.state.people.get(role).and_then(|people| people.first()).cloned(),
            (None, _, _) => None,
        };
        self.emit(EventKind::TaskCreated {
            id: id.clone(),
            task: plan.key.clone(),
            phase: plan.phase.map(|phase| self.model.phase(phase).key.clone()),
            iteration,
            occurrence,
            subject,
            assignee,
            scheduled_at,
        });
        id
    }

    /// A waiting instance whose dependencies are done: open it, or wait for `start_after`.
    fn start_instance(&mut self, instance: &str, task: TaskId) {
        let delay = self.model.task(task).start_after;
        match delay.and_then(|delay| self.later(&delay)) {
            Some(opens_at) if opens_at > self.now => {
                self.emit(EventKind::TaskScheduled {
                    id: instance.to_owned(),
                    opens_at,
                });
                self.schedule_timer(
                    format!("open:{instance}"),
                    opens_at,
                    TimerPurpose::OpenTask {
                        task: instance.to_owned(),
                    },
                );
            }
            _ => self.open_instance(instance),
        }
    }

    fn open_instance(&mut self, instance: &str) {
        let Some(task) = self
            .state
            .tasks
            .get(instance)
            .and_then(|task| self.model.task_id(&task.task))
        else {
            return;
        };
        let plan = self.model.task(task);
        let due_at = plan.due.and_then(|due| self.later(&due));
        let reminders = plan.reminders.clone();
        let escalate_at = plan.escalate_after.and_then(|delay| self.later(&delay));
        self.emit(EventKind::TaskOpened {
            id: instance.to_owned(),
            due_at,
        });
        if let Some(due_at) = due_at {
            for (index, reminder) in reminders.iter().enumerate() {
                if let Some(at) = reminder.before(due_at, self.zone).filter(|at| *at > self.now) {
                    self.schedule_timer(
                        format!("remind{index}:{instance}"),
                        at,
                        TimerPurpose::DueSoon {
                            task: instance.to_owned(),
                        },
                    );
                }
            }
            self.schedule_timer(
                format!("due:{instance}"),
                due_at,
                TimerPurpose::Overdue {
                    task: instance.to_owned(),
                },
            );
        }
        if let Some(at) = escalate_at {
            self.schedule_timer(
                format!("escalate:{instance}"),
                at,
                TimerPurpose::Escalate {
                    task: instance.to_owned(),
                },
            );
        }
    }

    fn start_series(&mut self, series: &str, task: TaskId) {
        let starts_at = self
            .model
            .task(task)
            .start_after
            .and_then(|delay| self.later(&delay))
            .unwrap_or(self.now);
        self.emit(EventKind::SeriesStarted {
            id: series.to_owned(),
            starts_at,
        });
        self.continue_series(series);
    }

    /// Opens every occurrence of `series` that is due by now and schedules the next one, or
    /// finishes the series when the schedule has no more.
    fn continue_series(&mut self, series: &str) {
        let mut opened = 0;
        loop {
            let Some(current) = self.state.series.get(series) else {
                return;
            };
            let Some(task) = self.model.task_id(&current.task) else {
                return;
            };
            let Some(schedule) = &self.model.task(task).repeat else {
                return;
            };
            let Some(starts_at) = current.starts_at else { return };
            let next = schedule.occurrence(
                starts_at,
                current.occurrences + 1,
                current.last_occurrence_at,
                self.zone,
            );
            match next {
                None => {
                    self.emit(EventKind::SeriesFinished { id: series.to_owned() });
                    return;
                }
                Some(at) if at <= self.now && opened < MAX_CATCH_UP_PER_SERIES => {
                    self.open_occurrence(series, at);
                    opened += 1;
                }
                Some(at) => {
                    self.schedule_timer(
                        format!("next:{series}"),
                        at,
                        TimerPurpose::NextOccurrence {
                            series: series.to_owned(),
                        },
                    );
                    return;
                }
            }
        }
    }

    fn open_occurrence(&mut self, series: &str, scheduled_at: DateTime<Utc>) {
        let Some(current) = self.state.series.get(series) else {
            return;
        };
        let Some(task) = self.model.task_id(&current.task) else {
            return;
        };
        let iteration = current.iteration;
        let number = current.occurrences + 1;
        let instance = self.create_instance(task, iteration, Some(number), None, Some(scheduled_at));
        self.open_instance(&instance);
    }

    /// Cancels every unfinished instance and series that `belongs` selects, with timers.
    fn close_work(&mut self, belongs: impl Fn(Option<&str>, u32) -> bool) {
        let instances: Vec<String> = self
            .state
            .tasks
            .values()
            .filter(|task| !task.status.is_closed() && belongs(task.phase.as_deref(), task.iteration))
            .map(|task| task.id.clone())
            .collect();
        for instance in instances {
            self.cancel_task_timers(&instance);
            self.emit(EventKind::TaskCancelled { id: instance });
        }
        let series: Vec<String> = self
            .state
            .series
            .values()
            .filter(|series| {
                matches!(series.status, SeriesStatus::Waiting | SeriesStatus::Running)
                    && belongs(series.phase.as_deref(), series.iteration)
            })
            .map(|series| series.id.clone())
            .collect();
        for series in series {
            self.cancel_timer(&format!("next:{series}"));
            self.emit(EventKind::SeriesCancelled { id: series });
        }
    }

    /// Ends all work: tasks, series and every timer left.
    fn close_everything(&mut self) {
        self.close_work(|_, _| true);
        let timers: Vec<String> = self.state.timers.keys().cloned().collect();
        for timer in timers {
            self.cancel_timer(&timer);
        }
    }

    // ----- phases --------------------------------------------------------------------

    fn current_phase_plan(&self) -> Result<&coachflow_model::PhasePlan, DomainError> {
        let key = self
            .state
            .phase
            .as_ref()
            .map(|phase| phase.key.as_str())
            .unwrap_or_default();
        self.model
            .phase_index(key)
            .map(|index| self.model.phase(index))
            .ok_or_else(|| {
                DomainError::precondition(
                    "MODEL_MISMATCH",
                    format!("phase '{key}' is not in model '{}'", self.model.key()),
                )
            })
    }

    fn enter_phase(&mut self, index: usize) {
        let plan = self.model.phase(index);
        let iteration = self.state.phase_iterations.get(&plan.key).copied().unwrap_or(0) + 1;
        self.emit(EventKind::PhaseEntered {
            phase: plan.key.clone(),
            iteration,
        });
        for task in plan.tasks.clone() {
            self.create_task(task, iteration);
        }
    }

    fn gate_status(&self) -> Option<GateStatus> {
        let current = self.state.phase.as_ref()?;
        let plan = self.current_phase_plan().ok()?;
        let unfinished_tasks: Vec<String> = plan
            .tasks
            .iter()
            .map(|task| self.model.task(*task))
            .filter(|task| !task.optional && !tally(&self.state, &task.key, current.iteration).done())
            .map(|task| task.key.clone())
            .collect();
        let missing_sign_offs: Vec<String> = plan
            .approval
            .iter()
            .filter(|role| !current.sign_offs.contains_key(*role))
            .cloned()
            .collect();
        let condition = plan.exit_when.as_ref().map(|condition| {
            let variables = gate::variables(
                self.model,
                &self.state,
                unfinished_tasks.is_empty(),
                missing_sign_offs.is_empty(),
                condition.needs(),
            );
            condition.evaluate(variables)
        });
        Some(GateStatus {
            unfinished_tasks,
            missing_sign_offs,
            condition,
        })
    }

    /// Leaves the current phase: picks the transition, closes its remaining work, reaches
    /// its milestone, and enters the next phase or completes the engagement.
    fn leave_phase(&mut self) -> Result<(), DomainError> {
        self.phase_changes += 1;
        if self.phase_changes > MAX_PHASE_CHANGES_PER_COMMAND {
            return Err(DomainError::precondition(
                "MODEL_DOES_NOT_SETTLE",
                format!(
                    "the engagement passed through {MAX_PHASE_CHANGES_PER_COMMAND} phases in one command; the model loops without work to do"
                ),
            ));
        }
        let Some(current) = self.state.phase.clone() else {
            return Ok(());
        };
        let plan = self.current_phase_plan()?.clone();
        let gate = self.gate_status().unwrap_or_default();
        let holds = |condition: &coachflow_model::Condition| {
            let variables = gate::variables(
                self.model,
                &self.state,
                gate.unfinished_tasks.is_empty(),
                gate.missing_sign_offs.is_empty(),
                condition.needs(),
            );
            condition.evaluate(variables) == Ok(true)
        };
        let next = plan
            .transitions
            .iter()
            .find(|transition| transition.always || transition.when.as_ref().is_some_and(holds))
            .map(|transition| transition.to)
            .or(plan.fallback);
        let phase_key = current.key.clone();
        let iteration = current.iteration;
        self.close_work(|phase, task_iteration| phase == Some(phase_key.as_str()) && task_iteration == iteration);
        if let Some(milestone) = &plan.exit_milestone {
            self.emit(EventKind::MilestoneReached {
                milestone: milestone.clone(),
                phase: Some(current.key.clone()),
                task: None,
                iteration,
            });
        }
        self.emit(EventKind::PhaseCompleted {
            phase: current.key,
            iteration,
            next: next.map(|index| self.model.phase(index).key.clone()),
        });
        match next {
            Some(index) => self.enter_phase(index),
            None => {
                self.close_everything();
                self.emit(EventKind::EngagementCompleted);
            }
        }
        Ok(())
    }

    // ----- settling ------------------------------------------------------------------

    /// Runs the engagement forward until nothing more happens on its own.
    fn settle(&mut self) -> Result<(), DomainError> {
        while self.state.status == EngagementStatus::Active {
            if self.start_ready_work() || self.reach_task_milestones() {
                continue;
            }
            let Some(gate) = self.gate_status() else { return Ok(()) };
            if !gate.holds() || self.current_phase_plan()?.manual {
                return Ok(());
            }
            self.leave_phase()?;
        }
        Ok(())
    }

    /// The iteration work of `phase` runs in now, or `None` if it is not under way.
    fn live_iteration(&self, phase: Option<&str>) -> Option<u32> {
        match (phase, &self.state.phase) {
            (None, _) => Some(1),
            (Some(phase), Some(current)) if current.key == phase => Some(current.iteration),
            _ => None,
        }
    }

    fn dependencies_done(&self, task: TaskId, iteration: u32) -> bool {
        self.model
            .task(task)
            .after
            .iter()
            .all(|dependency| tally(&self.state, &self.model.task(*dependency).key, iteration).done())
    }

    /// The task, if work of it in `iteration` of `phase` is under way and its dependencies
    /// are done.
    fn ready(&self, task: &str, phase: Option<&str>, iteration: u32) -> Option<TaskId> {
        let task_id = self.model.task_id(task)?;
        (self.live_iteration(phase) == Some(iteration) && self.dependencies_done(task_id, iteration)).then_some(task_id)
    }

    /// Opens (or schedules) every waiting instance and starts every waiting series whose
    /// dependencies are done. Returns whether anything changed.
    fn start_ready_work(&mut self) -> bool {
        let ready_instances: Vec<(String, TaskId)> = self
            .state
            .tasks
            .values()
            .filter(|task| task.status == TaskStatus::Waiting)
            .filter_map(|task| {
                Some((
                    task.id.clone(),
                    self.ready(&task.task, task.phase.as_deref(), task.iteration)?,
                ))
            })
            .collect();
        let ready_series: Vec<(String, TaskId)> = self
            .state
            .series
            .values()
            .filter(|series| series.status == SeriesStatus::Waiting)
            .filter_map(|series| {
                Some((
                    series.id.clone(),
                    self.ready(&series.task, series.phase.as_deref(), series.iteration)?,
                ))
            })
            .collect();
        let changed = !ready_instances.is_empty() || !ready_series.is_empty();
        for (instance, task) in ready_instances {
            self.start_instance(&instance, task);
        }
        for (series, task) in ready_series {
            self.start_series(&series, task);
        }
        changed
    }

    /// Reaches the milestone of every task that is done with at least one instance
    /// completed, once per iteration. Returns whether anything changed.
    fn reach_task_milestones(&mut self) -> bool {
        let mut reached = Vec::new();
        for (index, plan) in self.model.tasks().iter().enumerate() {
            let Some(milestone) = &self.model.task_spec(TaskId(index)).milestone else {
                continue;
            };
            let phase = plan.phase.map(|phase| self.model.phase(phase).key.as_str());
            let Some(iteration) = self.live_iteration(phase) else {
                continue;
            };
            let already = self
                .state
                .milestones
                .iter()
                .any(|record| record.task.as_deref() == Some(plan.key.as_str()) && record.iteration == iteration);
            if already {
                continue;
            }
            let tally = tally(&self.state, &plan.key, iteration);
            let exists = tally.total > 0 || tally.series_finished.is_some();
            if exists && tally.done() && tally.completed > 0 {
                reached.push(EventKind::MilestoneReached {
                    milestone: milestone.clone(),
                    phase: phase.map(str::to_owned),
                    task: Some(plan.key.clone()),
                    iteration,
                });
            }
        }
        let changed = !reached.is_empty();
        for event in reached {
            self.emit(event);
        }
        changed
    }
}

fn ended_error(status: EngagementStatus) -> DomainError {
    match status {
        EngagementStatus::New => {
            DomainError::precondition("ENGAGEMENT_NOT_STARTED", "the engagement has not been started")
        }
        status => DomainError::precondition(
            "ENGAGEMENT_ENDED",
            format!("the engagement is {}; it takes no more changes", status.as_str()),
        ),
    }
}

fn follow_up_timer(commitment: &str) -> String {
    format!("followup:{commitment}")
}

fn check_text(violations: &mut Violations, field: &str, text: Option<&str>, max_chars: usize, required: bool) {
    match text {
        Some(text) if text.chars().count() > max_chars => {
            violations.add(field, format!("must be at most {max_chars} characters"));
        }
        Some(text) if required && text.trim().is_empty() => violations.add(field, "must not be empty"),
        None if required => violations.add(field, "is required"),
        _ => {}
    }
}
