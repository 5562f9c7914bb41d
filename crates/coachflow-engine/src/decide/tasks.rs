//! Task instances and series: creating, opening and closing them, and starting the work
//! whose dependencies are done.

use super::*;

impl Run<'_> {
    // ----- tasks ---------------------------------------------------------------------

    /// Creates the instances (or the series) of `task` for one iteration of its phase.
    pub(super) fn create_task(&mut self, task: TaskId, iteration: u32) {
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

    pub(super) fn create_instance(
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
    pub(super) fn start_instance(&mut self, instance: &str, task: TaskId) {
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

    pub(super) fn open_instance(&mut self, instance: &str) {
        let Some(task) = self
            .state
            .tasks
            .get(instance)
            .and_then(|task| self.model.task_id(&task.task))
        else {
            return;
        };
        let due_at = self.model.task(task).due.and_then(|due| self.later(&due));
        self.emit(EventKind::TaskOpened {
            id: instance.to_owned(),
            due_at,
        });
        self.schedule_task_timers(instance, task, self.now, due_at);
    }

    /// Schedules an open instance's reminders (those still ahead), its due timer at
    /// `due_at` and its escalation, counted from `opened_at`.
    pub(super) fn schedule_task_timers(
        &mut self,
        instance: &str,
        task: TaskId,
        opened_at: DateTime<Utc>,
        due_at: Option<DateTime<Utc>>,
    ) {
        let plan = self.model.task(task);
        let reminders = plan.reminders.clone();
        let escalate_at = plan.escalate_after.and_then(|delay| delay.after(opened_at, self.zone));
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

    pub(super) fn start_series(&mut self, series: &str, task: TaskId) {
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
    pub(super) fn continue_series(&mut self, series: &str) {
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

    pub(super) fn open_occurrence(&mut self, series: &str, scheduled_at: DateTime<Utc>) {
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
    pub(super) fn close_work(&mut self, belongs: impl Fn(Option<&str>, u32) -> bool) {
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
    pub(super) fn close_everything(&mut self) {
        self.close_work(|_, _| true);
        let timers: Vec<String> = self.state.timers.keys().cloned().collect();
        for timer in timers {
            self.cancel_timer(&timer);
        }
    }

    pub(super) fn dependencies_done(&self, task: TaskId, iteration: u32) -> bool {
        self.model
            .task(task)
            .after
            .iter()
            .all(|dependency| tally(&self.state, &self.model.task(*dependency).key, iteration).done())
    }

    /// The task, if work of it in `iteration` of `phase` is under way and its dependencies
    /// are done.
    pub(super) fn ready(&self, task: &str, phase: Option<&str>, iteration: u32) -> Option<TaskId> {
        let task_id = self.model.task_id(task)?;
        (self.live_iteration(phase) == Some(iteration) && self.dependencies_done(task_id, iteration)).then_some(task_id)
    }

    /// Opens (or schedules) every waiting instance and starts every waiting series whose
    /// dependencies are done. Returns whether anything changed.
    pub(super) fn start_ready_work(&mut self) -> bool {
        let instances = self
            .state
            .tasks
            .values()
            .filter(|task| task.status == TaskStatus::Waiting)
            .map(|task| {
                (
                    Work::Instance(&task.id),
                    task.task.as_str(),
                    task.phase.as_deref(),
                    task.iteration,
                )
            });
        let series = self
            .state
            .series
            .values()
            .filter(|series| series.status == SeriesStatus::Waiting)
            .map(|series| {
                (
                    Work::Series(&series.id),
                    series.task.as_str(),
                    series.phase.as_deref(),
                    series.iteration,
                )
            });
        let ready: Vec<(Work<String>, TaskId)> = instances
            .chain(series)
            .filter_map(|(work, task, phase, iteration)| Some((work.owned(), self.ready(task, phase, iteration)?)))
            .collect();
        let changed = !ready.is_empty();
        for (work, task) in ready {
            match work {
                Work::Instance(instance) => self.start_instance(&instance, task),
                Work::Series(series) => self.start_series(&series, task),
            }
        }
        changed
    }
}

/// Waiting work of a task: one instance, or the series of a repeating task.
enum Work<Id> {
    Instance(Id),
    Series(Id),
}

impl Work<&String> {
    fn owned(&self) -> Work<String> {
        match self {
            Work::Instance(id) => Work::Instance((*id).clone()),
            Work::Series(id) => Work::Series((*id).clone()),
        }
    }
}
