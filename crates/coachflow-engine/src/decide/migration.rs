//! [`migrate`]: moving a running engagement to another version of its model, as a pure
//! function like [`decide`]: the old model, the new one, a mapping and the state give the
//! events (or every conflict that blocks the move). Nothing is lost: goals, commitments,
//! outputs, milestones and the history stay; renamed phases and tasks keep their instances
//! and ids; the unfinished work of a task the new version lacks is skipped or cancelled,
//! with the migration's reason; tasks new to the current phase open with their timers; open
//! tasks whose timing changed get their timers recomputed.

use super::*;

/// What becomes of the unfinished work of a task the new version lacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Disposition {
    Skip,
    Cancel,
}

/// How the old version's phases and tasks become the new version's. Keys the mapping does
/// not name stay as they are.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mapping {
    /// Old phase key → new phase key.
    #[serde(default)]
    pub phases: BTreeMap<String, String>,
    /// Old task key → new task key.
    #[serde(default)]
    pub tasks: BTreeMap<String, String>,
    /// Old task key (of a task the new version lacks) → what becomes of its unfinished work.
    #[serde(default)]
    pub removed: BTreeMap<String, Disposition>,
    /// What becomes of the unfinished work of removed tasks the mapping does not name;
    /// without it, such work is a conflict.
    #[serde(default)]
    pub otherwise: Option<Disposition>,
}

/// Why an engagement cannot move, at `path` (`phases.wrap`, `tasks.close`, `roles.mentor`,
/// `mapping.tasks.x`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Conflict {
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for Conflict {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "{}: {}", self.path, self.message)
    }
}

/// The move of an engagement to another version of its model.
#[derive(Debug, Clone, Copy)]
pub struct Migration<'a> {
    /// The version the engagement runs.
    pub from: &'a Model,
    /// The version it moves to, and its number.
    pub to: &'a Model,
    pub to_version: u32,
    pub mapping: &'a Mapping,
    /// Why; recorded with the move and given to the work it skips or cancels.
    pub reason: &'a str,
}

impl Mapping {
    fn phase<'k>(&'k self, key: &'k str) -> &'k str {
        self.phases.get(key).map_or(key, String::as_str)
    }

    fn task<'k>(&'k self, key: &'k str) -> &'k str {
        self.tasks.get(key).map_or(key, String::as_str)
    }

    /// The inverse: for moving back (removed work is not brought back by a mapping; tasks
    /// of the other version are new there and open again).
    pub fn inverse(&self) -> Mapping {
        Mapping {
            phases: self
                .phases
                .iter()
                .map(|(from, to)| (to.clone(), from.clone()))
                .collect(),
            tasks: self.tasks.iter().map(|(from, to)| (to.clone(), from.clone())).collect(),
            removed: BTreeMap::new(),
            otherwise: Some(Disposition::Cancel),
        }
    }
}

/// Where a task of `model` lives: `Some(phase key)`, or `None` for `throughout`.
fn home(model: &Model, task: TaskId) -> Option<&str> {
    model.task(task).phase.map(|phase| model.phase(phase).key.as_str())
}

/// What is wrong with the mapping itself, whatever the engagement: keys neither version
/// has, two tasks mapped onto one, a removed task the new version still has.
pub fn mapping_problems(migration: &Migration<'_>) -> Vec<Conflict> {
    let Migration {
        from: old,
        to: new,
        to_version,
        mapping,
        ..
    } = *migration;
    let mut conflicts = Vec::new();
    let mut conflict = |path: String, message: String| conflicts.push(Conflict { path, message });
    for (from, to) in &mapping.phases {
        if old.phase_index(from).is_none() {
            conflict(
                format!("mapping.phases.{from}"),
                format!("the old version has no phase '{from}'"),
            );
        }
        if new.phase_index(to).is_none() {
            conflict(
                format!("mapping.phases.{from}"),
                format!("version {to_version} has no phase '{to}'"),
            );
        }
    }
    let mut targets = BTreeMap::new();
    for (from, to) in &mapping.tasks {
        if old.task_id(from).is_none() {
            conflict(
                format!("mapping.tasks.{from}"),
                format!("the old version has no task '{from}'"),
            );
        }
        if new.task_id(to).is_none() {
            conflict(
                format!("mapping.tasks.{from}"),
                format!("version {to_version} has no task '{to}'"),
            );
        }
        if let Some(other) = targets.insert(to.as_str(), from.as_str()) {
            conflict(
                format!("mapping.tasks.{from}"),
                format!("tasks '{other}' and '{from}' both become '{to}'"),
            );
        }
    }
    for from in mapping.removed.keys() {
        if old.task_id(from).is_none() {
            conflict(
                format!("mapping.removed.{from}"),
                format!("the old version has no task '{from}'"),
            );
        } else if new.task_id(mapping.task(from)).is_some() {
            conflict(
                format!("mapping.removed.{from}"),
                format!(
                    "version {to_version} has task '{}': it is not removed",
                    mapping.task(from)
                ),
            );
        }
    }

    conflicts
}

/// Every reason `state` cannot move as `migration` says; empty when it can.
pub fn conflicts(migration: &Migration<'_>, state: &EngagementState) -> Vec<Conflict> {
    let Migration {
        to: new,
        to_version,
        mapping,
        ..
    } = *migration;
    let mut conflicts = mapping_problems(migration);
    let mut conflict = |path: String, message: String| conflicts.push(Conflict { path, message });

    match state.status {
        EngagementStatus::Active | EngagementStatus::Suspended => {}
        EngagementStatus::New => conflict("state".to_owned(), "the engagement has not been started".to_owned()),
        status => conflict(
            "state".to_owned(),
            format!(
                "the engagement is {}; an ended engagement keeps the version it ran on",
                status.as_str()
            ),
        ),
    }
    if state.model_version == to_version {
        conflict(
            "model_version".to_owned(),
            format!("the engagement is on version {to_version} already"),
        );
    }
    if let Some(current) = &state.phase
        && new.phase_index(mapping.phase(&current.key)).is_none()
    {
        conflict(
            format!("phases.{}", current.key),
            format!(
                "the engagement is in phase '{}', which version {to_version} lacks: map it to one of its phases",
                current.key
            ),
        );
    }

    for (role, people) in state.people.iter().filter(|(_, people)| !people.is_empty()) {
        match new.role(role) {
            None => conflict(
                format!("roles.{role}"),
                format!("people are bound to role '{role}', which version {to_version} lacks"),
            ),
            Some(declared) if !declared.multiple && people.len() > 1 => conflict(
                format!("roles.{role}"),
                format!(
                    "{} people hold role '{role}', which holds one person in version {to_version}",
                    people.len()
                ),
            ),
            Some(_) => {}
        }
    }
    for role in new.roles().iter().filter(|role| role.required) {
        if state.people.get(&role.key).is_none_or(Vec::is_empty) {
            conflict(
                format!("roles.{}", role.key),
                format!(
                    "role '{}' is required in version {to_version} and nobody holds it",
                    role.key
                ),
            );
        }
    }

    // Unfinished work: it follows its task, or the mapping says what becomes of it.
    let live_instances = state
        .tasks
        .values()
        .filter(|task| !task.status.is_closed())
        .map(|task| (task.id.as_str(), task.task.as_str(), task.phase.as_deref()));
    let live_series = state
        .series
        .values()
        .filter(|series| matches!(series.status, SeriesStatus::Waiting | SeriesStatus::Running))
        .map(|series| (series.id.as_str(), series.task.as_str(), series.phase.as_deref()));
    for (id, task, phase) in live_instances.chain(live_series) {
        let key = mapping.task(task);
        match new.task_id(key) {
            Some(target) => {
                let expected = phase.map(|phase| mapping.phase(phase));
                if home(new, target) != expected {
                    conflict(
                        format!("tasks.{task}"),
                        format!(
                            "'{id}' is unfinished work of {}, but task '{key}' belongs to {} in version {to_version}: finish or skip it first",
                            phase.map_or_else(|| "throughout".to_owned(), |phase| format!("phase '{phase}'")),
                            home(new, target)
                                .map_or_else(|| "throughout".to_owned(), |phase| format!("phase '{phase}'")),
                        ),
                    );
                }
            }
            None if mapping.removed.contains_key(task) || mapping.otherwise.is_some() => {}
            None => conflict(
                format!("tasks.{task}"),
                format!(
                    "'{id}' is unfinished work of task '{task}', which version {to_version} lacks: map it to a task, or say whether to skip or cancel it"
                ),
            ),
        }
    }
    conflicts.sort();
    conflicts.dedup();
    conflicts
}

/// Moves the engagement in `state` to `migration.to`, as `actor` at `now`: the events and
/// effects, like [`decide`]'s, or every conflict that blocks the move (nothing moves then).
pub fn migrate(
    migration: &Migration<'_>,
    state: &EngagementState,
    actor: &Actor,
    now: DateTime<Utc>,
) -> Result<Decision, Vec<Conflict>> {
    let found = conflicts(migration, state);
    if !found.is_empty() {
        return Err(found);
    }
    let Migration {
        from: old,
        to: new,
        to_version,
        mapping,
        reason,
    } = *migration;
    let reason = reason.trim().to_owned();
    let mut run = Run::new(old, state, actor, now);

    // The unfinished work of tasks the new version lacks, under the old model.
    let removed = |task: &str| new.task_id(mapping.task(task)).is_none();
    let instances: Vec<(String, String)> = run
        .state
        .tasks
        .values()
        .filter(|task| !task.status.is_closed() && removed(&task.task))
        .map(|task| (task.id.clone(), task.task.clone()))
        .collect();
    for (instance, task) in instances {
        run.cancel_task_timers(&instance);
        let disposition = mapping.removed.get(&task).copied().or(mapping.otherwise);
        match disposition {
            Some(Disposition::Skip) => run.emit(EventKind::TaskSkipped {
                id: instance,
                reason: reason.clone(),
            }),
            _ => run.emit(EventKind::TaskCancelled { id: instance }),
        }
    }
    let series: Vec<String> = run
        .state
        .series
        .values()
        .filter(|series| matches!(series.status, SeriesStatus::Waiting | SeriesStatus::Running))
        .filter(|series| removed(&series.task))
        .map(|series| series.id.clone())
        .collect();
    for series in series {
        run.cancel_timer(&format!("next:{series}"));
        run.emit(EventKind::SeriesCancelled { id: series });
    }

    let renamed = |renames: &BTreeMap<String, String>| {
        renames
            .iter()
            .filter(|(from, to)| from != to)
            .map(|(from, to)| (from.clone(), to.clone()))
            .collect::<BTreeMap<_, _>>()
    };
    run.emit(EventKind::EngagementMigrated {
        model_key: new.key().to_owned(),
        from_version: state.model_version,
        to_version,
        phases: renamed(&mapping.phases),
        tasks: renamed(&mapping.tasks),
        reason: reason.clone(),
    });
    run.model = new;

    run.recompute_changed_timers(old, mapping);
    run.open_new_work(&reason);
    run.settle().map_err(|error| {
        vec![Conflict {
            path: String::new(),
            message: error.to_string(),
        }]
    })?;
    Ok(run.finish())
}

/// The timing of a task, as the model writes it.
fn timing(model: &Model, task: TaskId) -> (Option<IsoDuration>, Vec<IsoDuration>, Option<IsoDuration>) {
    let plan = model.task(task);
    (plan.due, plan.reminders.clone(), plan.escalate_after)
}

impl Run<'_> {
    /// Open instances of tasks whose due date, reminders or escalation changed get them
    /// counted anew from when they opened; running series whose schedule changed continue
    /// on the new one.
    fn recompute_changed_timers(&mut self, old: &Model, mapping: &Mapping) {
        let reverse: BTreeMap<&str, &str> = mapping
            .tasks
            .iter()
            .map(|(from, to)| (to.as_str(), from.as_str()))
            .collect();
        let old_task = |key: &str| old.task_id(reverse.get(key).copied().unwrap_or(key));
        let open: Vec<(String, TaskId, DateTime<Utc>)> = self
            .state
            .tasks
            .values()
            .filter(|task| task.status == TaskStatus::Open)
            .filter_map(|task| {
                let new_id = self.model.task_id(&task.task)?;
                let before = old_task(&task.task)?;
                (timing(old, before) != timing(self.model, new_id))
                    .then(|| (task.id.clone(), new_id, task.opened_at.unwrap_or(task.created_at)))
            })
            .collect();
        for (instance, task, opened_at) in open {
            self.cancel_task_timers(&instance);
            let due_at = self
                .model
                .task(task)
                .due
                .and_then(|due| due.after(opened_at, self.zone));
            self.emit(EventKind::TaskRescheduled {
                id: instance.clone(),
                due_at,
            });
            self.schedule_task_timers(&instance, task, opened_at, due_at);
        }
        let series: Vec<String> = self
            .state
            .series
            .values()
            .filter(|series| series.status == SeriesStatus::Running)
            .filter(|series| {
                let (Some(new_id), Some(before)) = (self.model.task_id(&series.task), old_task(&series.task)) else {
                    return false;
                };
                old.task_spec(before).repeat != self.model.task_spec(new_id).repeat
            })
            .map(|series| series.id.clone())
            .collect();
        for series in series {
            self.cancel_timer(&format!("next:{series}"));
            self.continue_series(&series);
        }
    }

    /// Tasks of the new version in the current phase (and throughout) that the engagement
    /// has no work of yet: created, to open as their dependencies allow. Work of such a task
    /// that an earlier migration cancelled opens again.
    fn open_new_work(&mut self, reason: &str) {
        let current = self
            .state
            .phase
            .as_ref()
            .map(|phase| (phase.key.clone(), phase.iteration));
        let mut wanted: Vec<(TaskId, u32)> = self.model.throughout().map(|task| (task, 1)).collect();
        if let Some((key, iteration)) = &current
            && let Some(index) = self.model.phase_index(key)
        {
            wanted.extend(self.model.phase(index).tasks.iter().map(|task| (*task, *iteration)));
        }
        for (task, iteration) in wanted {
            let key = self.model.task(task).key.clone();
            let instances: Vec<(String, TaskStatus)> = self
                .state
                .tasks
                .values()
                .filter(|instance| instance.task == key && instance.iteration == iteration)
                .map(|instance| (instance.id.clone(), instance.status))
                .collect();
            let has_series = self.state.series_of(&key, iteration).is_some();
            if instances.is_empty() && !has_series {
                self.create_task(task, iteration);
                continue;
            }
            if !instances.is_empty() && instances.iter().all(|(_, status)| *status == TaskStatus::Cancelled) {
                for (instance, _) in instances {
                    self.emit(EventKind::TaskReopened {
                        id: instance,
                        reason: reason.to_owned(),
                    });
                }
            }
        }
    }
}
