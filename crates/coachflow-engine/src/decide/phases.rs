//! Phases: entering and leaving them, the exit gate, and settling the engagement after
//! each command.

use super::*;

impl Run<'_> {
    // ----- phases --------------------------------------------------------------------

    pub(super) fn current_phase_plan(&self) -> Result<&coachflow_model::PhasePlan, DomainError> {
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
                    Reason::ModelMismatch,
                    format!("phase '{key}' is not in model '{}'", self.model.key()),
                )
            })
    }

    pub(super) fn enter_phase(&mut self, index: usize) {
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

    pub(super) fn gate_status(&self) -> Option<GateStatus> {
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
        let evaluate = |approved: bool| {
            plan.exit_when.as_ref().map(|condition| {
                let variables = gate::variables(
                    self.model,
                    &self.state,
                    unfinished_tasks.is_empty(),
                    approved,
                    condition.needs(),
                );
                condition.evaluate(variables)
            })
        };
        let condition = evaluate(missing_sign_offs.is_empty());
        let as_if_approved = if missing_sign_offs.is_empty() {
            condition.clone()
        } else {
            evaluate(true)
        };
        let ready = match &as_if_approved {
            Some(result) => *result == Ok(true),
            None => unfinished_tasks.is_empty(),
        };
        Some(GateStatus {
            unfinished_tasks,
            missing_sign_offs,
            condition,
            ready,
        })
    }

    /// Withdraws the current phase's sign-offs when its condition no longer holds (a task
    /// reopened, a stakeholder added with a task of their own): an approval is given to the
    /// phase's work as it stood, not to work still to come. Returns whether any was.
    pub(super) fn withdraw_stale_sign_offs(&mut self) -> bool {
        let Some(current) = self.state.phase.clone() else {
            return false;
        };
        if current.sign_offs.is_empty() || self.gate_status().is_none_or(|gate| gate.ready) {
            return false;
        }
        for (role, person) in current.sign_offs {
            self.emit(EventKind::PhaseSignOffWithdrawn {
                phase: current.key.clone(),
                role,
                person,
                reason: None,
            });
        }
        true
    }

    /// Leaves the current phase: picks the transition, closes its remaining work, reaches
    /// its milestone, and enters the next phase or completes the engagement.
    pub(super) fn leave_phase(&mut self) -> Result<(), DomainError> {
        self.phase_changes += 1;
        if self.phase_changes > MAX_PHASE_CHANGES_PER_COMMAND {
            return Err(DomainError::precondition(
                Reason::ModelDoesNotSettle,
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
    pub(super) fn settle(&mut self) -> Result<(), DomainError> {
        while self.state.status == EngagementStatus::Active {
            if self.start_ready_work() || self.reach_task_milestones() || self.withdraw_stale_sign_offs() {
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
    pub(super) fn live_iteration(&self, phase: Option<&str>) -> Option<u32> {
        match (phase, &self.state.phase) {
            (None, _) => Some(1),
            (Some(phase), Some(current)) if current.key == phase => Some(current.iteration),
            _ => None,
        }
    }

    /// Reaches the milestone of every task that is done with at least one instance
    /// completed, once per iteration. Returns whether anything changed.
    pub(super) fn reach_task_milestones(&mut self) -> bool {
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
