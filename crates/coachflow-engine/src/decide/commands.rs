//! The commands a caller sends: checked against the state, then turned into events.

use super::*;

impl Run<'_> {
    // ----- state checks -------------------------------------------------------------

    pub(super) fn require_active(&self) -> Result<(), DomainError> {
        match self.state.status {
            EngagementStatus::Active => Ok(()),
            EngagementStatus::Suspended => Err(DomainError::precondition(
                Reason::EngagementSuspended,
                "the engagement is suspended; resume it first",
            )),
            status => Err(ended_error(status)),
        }
    }

    /// Records (goals, commitments, people) may change while suspended, not once ended.
    pub(super) fn require_not_ended(&self) -> Result<(), DomainError> {
        match self.state.status {
            EngagementStatus::Active | EngagementStatus::Suspended => Ok(()),
            status => Err(ended_error(status)),
        }
    }

    pub(super) fn task_id_of(&self, instance: &str) -> Result<TaskId, DomainError> {
        let task = self
            .state
            .tasks
            .get(instance)
            .ok_or_else(|| DomainError::not_found("task", instance))?;
        self.model.task_id(&task.task).ok_or_else(|| {
            DomainError::precondition(
                Reason::ModelMismatch,
                format!("task '{instance}' is not in model '{}'", self.model.key()),
            )
        })
    }

    pub(super) fn open_task(&self, instance: &str) -> Result<TaskId, DomainError> {
        let task_id = self.task_id_of(instance)?;
        let status = self.state.tasks[instance].status;
        if status != TaskStatus::Open {
            return Err(DomainError::precondition(
                Reason::TaskNotOpen,
                format!("task '{instance}' is {}, not open", status.as_str()),
            ));
        }
        Ok(task_id)
    }

    // ----- commands ------------------------------------------------------------------

    pub(super) fn start(
        &mut self,
        model_version: u32,
        timezone: Option<&str>,
        people: &BTreeMap<String, Vec<String>>,
    ) -> Result<(), DomainError> {
        if self.state.status != EngagementStatus::New {
            return Err(DomainError::conflict(
                Reason::EngagementAlreadyStarted,
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

    pub(super) fn complete_task(
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

    pub(super) fn skip_task(&mut self, instance: &str, reason: &str) -> Result<(), DomainError> {
        self.require_active()?;
        let task_id = self.task_id_of(instance)?;
        let task = &self.state.tasks[instance];
        if task.status.is_closed() {
            return Err(DomainError::precondition(
                Reason::TaskClosed,
                format!("task '{instance}' is already {}", task.status.as_str()),
            ));
        }
        if !self.model.task(task_id).optional && task.occurrence.is_none() {
            return Err(DomainError::precondition(
                Reason::TaskRequired,
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

    pub(super) fn assign_task(&mut self, instance: &str, assignee: &str) -> Result<(), DomainError> {
        self.require_not_ended()?;
        let task_id = self.task_id_of(instance)?;
        let task = &self.state.tasks[instance];
        if task.status.is_closed() {
            return Err(DomainError::precondition(
                Reason::TaskClosed,
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

    pub(super) fn add_participant(&mut self, role: &str, person: &str) -> Result<(), DomainError> {
        self.require_not_ended()?;
        let Some(declared) = self.model.role(role) else {
            return Err(DomainError::invalid("role", format!("unknown role '{role}'")));
        };
        if !is_valid_person_id(person) {
            return Err(DomainError::invalid("person", format!("'{person}' {PERSON_ID_RULE}")));
        }
        if self.state.holds_role(person, role) {
            return Err(DomainError::conflict(
                Reason::AlreadyParticipant,
                format!("person '{person}' already holds role '{role}'"),
            ));
        }
        if !declared.multiple
            && let Some(holder) = self.state.people.get(role).and_then(|people| people.first())
        {
            return Err(DomainError::precondition(
                Reason::RoleTaken,
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

    pub(super) fn record_goal(
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
                Reason::GoalExists,
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

    pub(super) fn record_goal_progress(
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
                Reason::GoalClosed,
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

    pub(super) fn record_commitment(
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
                Reason::CommitmentExists,
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

    pub(super) fn record_commitment_follow_up(
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
                Reason::CommitmentClosed,
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

    pub(super) fn sign_off(&mut self, role: &str, person: &str) -> Result<(), DomainError> {
        self.require_active()?;
        let Some(current) = self.state.phase.clone() else {
            return Err(DomainError::precondition(
                Reason::NoCurrentPhase,
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
                Reason::NoSuchApproval,
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
                Reason::AlreadySignedOff,
                format!(
                    "role '{role}' has already signed off phase '{}' (by '{signed}')",
                    current.key
                ),
            ));
        }
        if let Some(gate) = self.gate_status()
            && !gate.ready
        {
            return Err(DomainError::precondition(
                Reason::GateNotReady,
                gate.explain_unready(&current.key),
            ));
        }
        self.emit(EventKind::PhaseSignedOff {
            phase: current.key,
            role: role.to_owned(),
            person: person.to_owned(),
        });
        self.settle()
    }

    // ----- repairs ---------------------------------------------------------------------

    /// The reason a repair gives: required, at most 2,000 characters.
    fn repair_reason(reason: &str) -> Result<String, DomainError> {
        let reason = reason.trim();
        if reason.is_empty() {
            return Err(DomainError::invalid("reason", "say why the engagement is repaired"));
        }
        if reason.chars().count() > 2_000 {
            return Err(DomainError::invalid("reason", "must be at most 2000 characters"));
        }
        Ok(reason.to_owned())
    }

    pub(super) fn reopen_task(&mut self, instance: &str, reason: &str) -> Result<(), DomainError> {
        self.require_active()?;
        let reason = Self::repair_reason(reason)?;
        self.task_id_of(instance)?;
        let task = &self.state.tasks[instance];
        if !matches!(
            task.status,
            TaskStatus::Completed | TaskStatus::Skipped | TaskStatus::Cancelled
        ) {
            return Err(DomainError::precondition(
                Reason::TaskNotClosed,
                format!(
                    "task '{instance}' is {}; only a completed, skipped or cancelled task is reopened",
                    task.status.as_str()
                ),
            ));
        }
        if self.live_iteration(task.phase.as_deref()) != Some(task.iteration) {
            return Err(DomainError::precondition(
                Reason::TaskNotUnderWay,
                format!(
                    "task '{instance}' belongs to iteration {} of phase '{}', which the engagement has left; move the engagement to that phase to do its work again",
                    task.iteration,
                    task.phase.as_deref().unwrap_or("throughout"),
                ),
            ));
        }
        self.emit(EventKind::TaskReopened {
            id: instance.to_owned(),
            reason,
        });
        self.open_instance(instance);
        self.settle()
    }

    pub(super) fn move_to_phase(&mut self, phase: &str, reason: &str) -> Result<(), DomainError> {
        self.require_active()?;
        let reason = Self::repair_reason(reason)?;
        let Some(target) = self.model.phase_index(phase) else {
            let keys: Vec<&str> = self.model.phases().iter().map(|plan| plan.key.as_str()).collect();
            return Err(DomainError::invalid(
                "phase",
                format!("unknown phase '{phase}'; the model has {}", keys.join(", ")),
            ));
        };
        let Some(current) = self.state.phase.clone() else {
            return Err(DomainError::precondition(
                Reason::NoCurrentPhase,
                "the engagement is in no phase",
            ));
        };
        let iteration = current.iteration;
        let key = current.key.clone();
        self.close_work(|task_phase, task_iteration| task_phase == Some(key.as_str()) && task_iteration == iteration);
        self.emit(EventKind::PhaseExited {
            phase: current.key,
            iteration,
            to: phase.to_owned(),
            reason,
        });
        self.enter_phase(target);
        self.settle()
    }

    pub(super) fn withdraw_sign_off(&mut self, role: &str, reason: &str) -> Result<(), DomainError> {
        self.require_active()?;
        let reason = Self::repair_reason(reason)?;
        let Some(current) = self.state.phase.clone() else {
            return Err(DomainError::precondition(
                Reason::NoCurrentPhase,
                "the engagement is in no phase",
            ));
        };
        let Some(person) = current.sign_offs.get(role).cloned() else {
            return Err(DomainError::precondition(
                Reason::NotSignedOff,
                format!("role '{role}' has not signed off phase '{}'", current.key),
            ));
        };
        self.emit(EventKind::PhaseSignOffWithdrawn {
            phase: current.key,
            role: role.to_owned(),
            person,
            reason: Some(reason),
        });
        self.settle()
    }

    pub(super) fn advance_phase(&mut self, expected_phase: Option<&str>) -> Result<(), DomainError> {
        self.require_active()?;
        let Some(current) = self.state.phase.clone() else {
            return Err(DomainError::precondition(
                Reason::NoCurrentPhase,
                "the engagement is in no phase",
            ));
        };
        if let Some(expected) = expected_phase
            && expected != current.key
        {
            return Err(DomainError::conflict(
                Reason::PhaseMismatch,
                format!("the engagement is in phase '{}', not '{expected}'", current.key),
            ));
        }
        if let Some(gate) = self.gate_status()
            && !gate.holds()
        {
            return Err(DomainError::precondition(
                Reason::GateNotSatisfied,
                gate.explain(&current.key),
            ));
        }
        self.leave_phase()?;
        self.settle()
    }

    pub(super) fn suspend(&mut self, reason: Option<&str>) -> Result<(), DomainError> {
        self.require_active()?;
        let mut violations = Violations::default();
        check_text(&mut violations, "reason", reason, 2_000, false);
        violations.into_result()?;
        self.emit(EventKind::EngagementSuspended {
            reason: reason.map(str::to_owned),
        });
        Ok(())
    }

    pub(super) fn resume(&mut self) -> Result<(), DomainError> {
        match self.state.status {
            EngagementStatus::Suspended => {}
            EngagementStatus::Active => {
                return Err(DomainError::precondition(
                    Reason::EngagementNotSuspended,
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

    pub(super) fn cancel(&mut self, reason: Option<&str>) -> Result<(), DomainError> {
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
}

impl Run<'_> {
    /// Erases the content: the first time, and later only when content was recorded since
    /// the last erasure.
    pub(super) fn erase_content(&mut self) {
        if self.state.holds_content || self.state.content_erased.is_none() {
            self.emit(EventKind::ContentErased {
                generation: self.state.content_generation + 1,
            });
        }
    }

    /// Erases what the engagement holds of `person`: they become `pseudonym`, and the
    /// content goes too when they are the client.
    pub(super) fn erase_person(&mut self, person: &str, pseudonym: &str) -> Result<(), DomainError> {
        let mut violations = Violations::default();
        for (field, id) in [("person", person), ("pseudonym", pseudonym)] {
            if !crate::ids::is_valid_person_id(id) {
                violations.add(field, format!("'{id}' is not a person id"));
            }
        }
        violations.into_result()?;
        if !self.state.names_person(person) {
            return Ok(());
        }
        if self.state.holds_role(person, CLIENT_ROLE) {
            self.erase_content();
        }
        self.emit(EventKind::PersonErased {
            person: person.to_owned(),
            pseudonym: pseudonym.to_owned(),
        });
        Ok(())
    }
}

/// The role of the person whose coaching record an engagement is.
const CLIENT_ROLE: &str = "client";

fn ended_error(status: EngagementStatus) -> DomainError {
    match status {
        EngagementStatus::New => {
            DomainError::precondition(Reason::EngagementNotStarted, "the engagement has not been started")
        }
        status => DomainError::precondition(
            Reason::EngagementEnded,
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
