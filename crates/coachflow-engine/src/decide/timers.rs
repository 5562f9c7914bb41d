//! Timers: scheduling and cancelling them, and what a due timer does.

use super::*;

impl Run<'_> {
    pub(super) fn fire_timer(&mut self, id: &str) -> Result<(), DomainError> {
        // A timer already fired or cancelled is no error: the runner may race with the
        // command that cancelled it, and firing twice must do nothing.
        let Some(timer) = self.state.timers.get(id).cloned() else {
            return Ok(());
        };
        if timer.at > self.now {
            return Err(DomainError::precondition(
                Reason::TimerNotDue,
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

    // ----- timers --------------------------------------------------------------------

    pub(super) fn schedule_timer(&mut self, id: String, at: DateTime<Utc>, purpose: TimerPurpose) {
        self.emit(EventKind::TimerScheduled {
            id,
            fires_at: at,
            purpose,
        });
    }

    pub(super) fn cancel_timer(&mut self, id: &str) {
        if self.state.timers.contains_key(id) {
            self.emit(EventKind::TimerCancelled { id: id.to_owned() });
        }
    }

    pub(super) fn cancel_task_timers(&mut self, instance: &str) {
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
    pub(super) fn fire(&mut self, timer: &Timer) {
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

    pub(super) fn later(&self, duration: &IsoDuration) -> Option<DateTime<Utc>> {
        duration.after(self.now, self.zone)
    }
}
