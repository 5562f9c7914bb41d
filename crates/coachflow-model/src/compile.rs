//! Validation: turns a [`ProcessModel`] document into a [`Model`] the engine can run, or
//! into the list of every problem, each with its path.

use std::collections::{BTreeSet, HashMap};
use std::fmt;

use crate::document::{API_VERSION, KIND, OutputType, ProcessModel, Task};
use crate::duration::IsoDuration;
use crate::expression::{Condition, Vocabulary};
use crate::model::{Model, PhasePlan, TaskId, TaskPlan, TransitionPlan};
use crate::schedule::{Cadence, Schedule, parse_cron, parse_timezone};

/// One thing wrong with a model, at `path` (e.g. `spec.phases[2].tasks[0].after[0]`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct Problem {
    pub path: String,
    pub message: String,
}

impl Problem {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Problem {
        Problem {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            formatter.write_str(&self.message)
        } else {
            write!(formatter, "{}: {}", self.path, self.message)
        }
    }
}

/// Every problem of a model that did not validate: grouped by check (header, catalogues,
/// task keys, tasks, dependency cycles, phases, the phase graph), each group in document order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the model has {} problem(s):\n{}", .0.len(), .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
pub struct Problems(pub Vec<Problem>);

/// The longest key a model may use.
pub const MAX_KEY_LENGTH: usize = 63;

/// The key rule, as the JSON Schema's `pattern` writes it.
pub const KEY_PATTERN: &str = r"^[a-z][a-z0-9_-]{0,62}$";

/// Keys of models, roles, milestones, phases, tasks and outputs, as firms write them: lower
/// snake_case or kebab-case (`goal_statement`, `goal-statement`). Resource names, routing
/// keys and CloudEvents carry them unescaped; CEL reads a snake_case key as a field
/// (`outputs.goal_statement`), a kebab-case one by index (`outputs['goal-statement']`).
pub fn is_valid_key(key: &str) -> bool {
    let mut characters = key.chars();
    characters.next().is_some_and(|first| first.is_ascii_lowercase())
        && key.len() <= MAX_KEY_LENGTH
        && characters.all(|character| {
            character.is_ascii_lowercase() || character.is_ascii_digit() || character == '-' || character == '_'
        })
}

const KEY_RULE: &str =
    "lower-case letters, digits, '_' and '-', starting with a letter, at most 63 characters (snake_case or kebab-case)";

/// Validates `document` and compiles it into a runnable [`Model`].
pub fn compile(document: ProcessModel) -> Result<Model, Problems> {
    let mut checker = Checker {
        document: &document,
        problems: Vec::new(),
        warnings: Vec::new(),
    };
    let compiled = checker.run();
    let mut problems = checker.problems;
    let warnings = checker.warnings;
    match compiled {
        Some((phases, tasks)) if problems.is_empty() => Ok(Model::new(document, phases, tasks, warnings)),
        _ => {
            problems.dedup();
            Err(Problems(problems))
        }
    }
}

struct Checker<'a> {
    document: &'a ProcessModel,
    problems: Vec<Problem>,
    /// What is valid but likely a mistake: the model is published, the author told.
    warnings: Vec<Problem>,
}

/// Where a task sits: which phase (or `throughout`) and its index there.
#[derive(Clone, Copy)]
struct TaskLocation {
    phase: Option<usize>,
    index: usize,
    id: TaskId,
}

impl Vocabulary for Checker<'_> {
    fn task_keys(&self) -> Vec<&str> {
        self.all_tasks().map(|(_, task)| task.key.as_str()).collect()
    }

    fn output_keys(&self, task: &str) -> Option<Vec<&str>> {
        let (_, task) = self.all_tasks().find(|(_, candidate)| candidate.key == task)?;
        Some(task.outputs.iter().map(|output| output.key.as_str()).collect())
    }

    fn role_keys(&self) -> Vec<&str> {
        self.document.spec.roles.iter().map(|role| role.key.as_str()).collect()
    }
}

/// The audience of the public events (HRIS, L&D systems): an output's `visibility` may name
/// it beside the model's roles.
pub const INTEGRATION_AUDIENCE: &str = "integration";

fn task_path(phase: Option<usize>, index: usize) -> String {
    match phase {
        Some(phase) => format!("spec.phases[{phase}].tasks[{index}]"),
        None => format!("spec.throughout[{index}]"),
    }
}

impl<'a> Checker<'a> {
    fn report(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem::new(path, message));
    }

    /// Every task with its phase: phases in order, then `throughout`.
    fn all_tasks(&self) -> impl Iterator<Item = (Option<usize>, &'a Task)> + 'a {
        let spec = &self.document.spec;
        spec.phases
            .iter()
            .enumerate()
            .flat_map(|(index, phase)| phase.tasks.iter().map(move |task| (Some(index), task)))
            .chain(spec.throughout.iter().map(|task| (None, task)))
    }

    fn run(&mut self) -> Option<(Vec<PhasePlan>, Vec<TaskPlan>)> {
        let document = self.document;
        if document.api_version != API_VERSION {
            self.report(
                "apiVersion",
                format!("must be '{API_VERSION}', not '{}'", document.api_version),
            );
        }
        if document.kind != KIND {
            self.report("kind", format!("must be '{KIND}', not '{}'", document.kind));
        }
        if !is_valid_key(&document.metadata.key) {
            self.report(
                "metadata.key",
                format!("'{}' is not a valid key: {KEY_RULE}", document.metadata.key),
            );
        }
        if document.metadata.name.trim().is_empty() {
            self.report("metadata.name", "must not be empty");
        }
        self.check_catalogues();
        let locations = self.locate_tasks();
        let tasks = self.check_tasks(&locations);
        self.check_dependency_cycles(&locations);
        let phases = self.check_phases(&locations);
        self.check_unbounded_repeats(&phases);
        self.check_phase_graph(&phases);
        Some((phases, tasks))
    }

    fn check_catalogues(&mut self) {
        let spec = &self.document.spec;
        if spec.roles.is_empty() {
            self.report("spec.roles", "a model needs at least one role");
        }
        let mut seen = HashMap::new();
        for (index, role) in spec.roles.iter().enumerate() {
            self.check_key(&format!("spec.roles[{index}].key"), &role.key, "role", &mut seen);
            if role.key == INTEGRATION_AUDIENCE {
                self.report(
                    format!("spec.roles[{index}].key"),
                    format!("'{INTEGRATION_AUDIENCE}' is the public events' audience, not a role; choose another key"),
                );
            }
        }
        let mut seen = HashMap::new();
        for (index, milestone) in spec.milestones.iter().enumerate() {
            self.check_key(
                &format!("spec.milestones[{index}].key"),
                &milestone.key,
                "milestone",
                &mut seen,
            );
        }
        if spec.phases.is_empty() {
            self.report("spec.phases", "a model needs at least one phase");
        }
        let mut seen = HashMap::new();
        for (index, phase) in spec.phases.iter().enumerate() {
            self.check_key(&format!("spec.phases[{index}].key"), &phase.key, "phase", &mut seen);
            if phase.name.trim().is_empty() {
                self.report(format!("spec.phases[{index}].name"), "must not be empty");
            }
        }
    }

    fn check_key(&mut self, path: &str, key: &str, what: &str, seen: &mut HashMap<String, String>) {
        if !is_valid_key(key) {
            self.report(path, format!("'{key}' is not a valid {what} key: {KEY_RULE}"));
        }
        if let Some(first) = seen.get(key) {
            self.report(path, format!("duplicate {what} key '{key}' (first defined at {first})"));
        } else {
            seen.insert(key.to_owned(), path.to_owned());
        }
    }

    fn locate_tasks(&mut self) -> HashMap<&'a str, TaskLocation> {
        let mut locations = HashMap::new();
        let mut seen = HashMap::new();
        let mut next_id = 0;
        let document = self.document;
        let groups = document
            .spec
            .phases
            .iter()
            .enumerate()
            .map(|(index, phase)| (Some(index), &phase.tasks))
            .chain(std::iter::once((None, &document.spec.throughout)));
        for (phase, tasks) in groups {
            for (index, task) in tasks.iter().enumerate() {
                let path = format!("{}.key", task_path(phase, index));
                self.check_key(&path, &task.key, "task", &mut seen);
                locations.entry(task.key.as_str()).or_insert(TaskLocation {
                    phase,
                    index,
                    id: TaskId(next_id),
                });
                next_id += 1;
            }
        }
        locations
    }

    fn check_role(&mut self, path: String, role: &str) -> bool {
        if self.document.spec.roles.iter().any(|declared| declared.key == role) {
            return true;
        }
        self.report(path, format!("unknown role '{role}'"));
        false
    }

    fn check_milestone(&mut self, path: String, milestone: &str) {
        if !self
            .document
            .spec
            .milestones
            .iter()
            .any(|candidate| candidate.key == milestone)
        {
            self.report(
                path,
                format!("unknown milestone '{milestone}'; declare it in spec.milestones"),
            );
        }
    }

    fn duration(&mut self, path: String, text: &str) -> Option<IsoDuration> {
        match text.parse::<IsoDuration>() {
            Ok(duration) => Some(duration),
            Err(error) => {
                self.report(path, error.to_string());
                None
            }
        }
    }

    fn check_tasks(&mut self, locations: &HashMap<&'a str, TaskLocation>) -> Vec<TaskPlan> {
        let all: Vec<_> = self.all_tasks().collect();
        let mut plans = Vec::with_capacity(all.len());
        let mut indexes = HashMap::<Option<usize>, usize>::new();
        for (phase, task) in all {
            let index = {
                let counter = indexes.entry(phase).or_default();
                *counter += 1;
                *counter - 1
            };
            plans.push(self.check_task(phase, index, task, locations));
        }
        plans
    }

    fn check_task(
        &mut self,
        phase: Option<usize>,
        index: usize,
        task: &'a Task,
        locations: &HashMap<&'a str, TaskLocation>,
    ) -> TaskPlan {
        let path = task_path(phase, index);
        if task.name.trim().is_empty() {
            self.report(format!("{path}.name"), "must not be empty");
        }
        if let Some(assignee) = &task.assignee {
            self.check_role(format!("{path}.assignee"), assignee);
        }
        for (position, participant) in task.participants.iter().enumerate() {
            self.check_role(format!("{path}.participants[{position}]"), participant);
        }
        if let Some(role) = &task.for_each
            && self.check_role(format!("{path}.for_each"), role)
            && let Some(declared) = self.document.spec.roles.iter().find(|candidate| &candidate.key == role)
            && !declared.multiple
        {
            self.report(
                format!("{path}.for_each"),
                format!("role '{role}' holds one person; for_each needs a role with multiple: true"),
            );
        }
        let mut after = Vec::new();
        for (position, dependency) in task.after.iter().enumerate() {
            let dependency_path = format!("{path}.after[{position}]");
            match locations.get(dependency.as_str()) {
                None => self.report(dependency_path, format!("unknown task '{dependency}'")),
                Some(_) if dependency == &task.key => {
                    self.report(dependency_path, format!("task '{dependency}' cannot come after itself"));
                }
                Some(location) if location.phase != phase => {
                    let home = match location.phase {
                        Some(other) => format!("phase '{}'", self.document.spec.phases[other].key),
                        None => "throughout".to_owned(),
                    };
                    let here = match phase {
                        Some(_) => "tasks of the same phase",
                        None => "other throughout tasks",
                    };
                    self.report(
                        dependency_path,
                        format!("task '{dependency}' belongs to {home}; after may only name {here}"),
                    );
                }
                Some(location) => after.push(location.id),
            }
        }
        let start_after = task
            .start_after
            .as_ref()
            .and_then(|text| self.duration(format!("{path}.start_after"), text));
        let due = task
            .due
            .as_ref()
            .and_then(|text| self.duration(format!("{path}.due"), text));
        let mut reminders = Vec::new();
        for (position, text) in task.reminders.iter().enumerate() {
            let reminder_path = format!("{path}.reminders[{position}]");
            let Some(reminder) = self.duration(reminder_path.clone(), text) else {
                continue;
            };
            match &due {
                None if task.due.is_none() => {
                    self.report(
                        reminder_path,
                        "a reminder counts back from the due date; give the task a due",
                    );
                }
                Some(due) if reminder.approximate_seconds() >= due.approximate_seconds() => {
                    self.report(
                        reminder_path,
                        format!(
                            "reminder {reminder} before the due date would fall at or before the moment the task opens (due is {due}); make it shorter than due"
                        ),
                    );
                }
                _ => reminders.push(reminder),
            }
        }
        let escalate_after = task
            .escalate_after
            .as_ref()
            .and_then(|text| self.duration(format!("{path}.escalate_after"), text));
        let repeat = task.repeat.as_ref().and_then(|repeat| {
            let repeat_path = format!("{path}.repeat");
            let cadence = match (&repeat.every, &repeat.cron) {
                (Some(every), None) => self.duration(format!("{repeat_path}.every"), every).map(Cadence::Every),
                (None, Some(cron)) => match parse_cron(cron) {
                    Ok(cron) => Some(Cadence::Cron(Box::new(cron))),
                    Err(message) => {
                        self.report(format!("{repeat_path}.cron"), message);
                        None
                    }
                },
                (Some(_), Some(_)) => {
                    self.report(repeat_path.clone(), "give either every or cron, not both");
                    None
                }
                (None, None) => {
                    self.report(repeat_path.clone(), "give every (an ISO-8601 interval) or cron");
                    None
                }
            };
            let timezone = repeat.timezone.as_ref().and_then(|name| match parse_timezone(name) {
                Ok(zone) => Some(zone),
                Err(message) => {
                    self.report(format!("{repeat_path}.timezone"), message);
                    None
                }
            });
            if repeat.count == Some(0) {
                self.report(format!("{repeat_path}.count"), "must be at least 1");
            }
            let until = repeat
                .until
                .as_ref()
                .and_then(|text| self.duration(format!("{repeat_path}.until"), text));
            if task.for_each.is_some() {
                self.report(
                    repeat_path.clone(),
                    "a task cannot both repeat and run for_each person; split it in two tasks",
                );
            }
            Some(Schedule {
                cadence: cadence?,
                timezone,
                count: repeat.count,
                until,
            })
        });
        let mut output_keys = HashMap::new();
        for (position, output) in task.outputs.iter().enumerate() {
            let output_path = format!("{path}.outputs[{position}]");
            if !is_valid_key(&output.key) {
                self.report(
                    format!("{output_path}.key"),
                    format!("'{}' is not a valid output key: {KEY_RULE}", output.key),
                );
            }
            let first = *output_keys.entry(output.key.as_str()).or_insert(position);
            if first != position {
                self.report(
                    format!("{output_path}.key"),
                    format!(
                        "duplicate output key '{}' (first defined at {path}.outputs[{first}])",
                        output.key
                    ),
                );
            }
            match (output.output_type, output.values.is_empty()) {
                (OutputType::Enum, true) => {
                    self.report(format!("{output_path}.values"), "an enum output needs its values")
                }
                (OutputType::Enum, false) => {
                    let distinct: BTreeSet<_> = output.values.iter().collect();
                    if distinct.len() != output.values.len() {
                        self.report(format!("{output_path}.values"), "values must be distinct");
                    }
                }
                (other, false) => self.report(
                    format!("{output_path}.values"),
                    format!("only an enum output has values; this one is {}", other.as_str()),
                ),
                _ => {}
            }
            for (role_position, role) in output.visibility.iter().enumerate() {
                let role_path = format!("{output_path}.visibility[{role_position}]");
                if role != INTEGRATION_AUDIENCE {
                    self.check_role(role_path, role);
                } else if matches!(output.output_type, OutputType::Text | OutputType::String) {
                    self.report(
                        role_path,
                        format!(
                            "a {} output never leaves in an event, so it cannot be visible to \
                             '{INTEGRATION_AUDIENCE}'; record a typed value (number, integer, boolean, \
                             date or enum) for integrations",
                            output.output_type.as_str()
                        ),
                    );
                }
            }
        }
        if let Some(milestone) = &task.milestone {
            self.check_milestone(format!("{path}.milestone"), milestone);
        }
        TaskPlan {
            key: task.key.clone(),
            phase,
            position: index,
            kind: task.kind,
            optional: task.optional,
            after,
            start_after,
            due,
            reminders,
            escalate_after,
            repeat,
        }
    }

    fn check_dependency_cycles(&mut self, locations: &HashMap<&'a str, TaskLocation>) {
        // Depth-first search per task group; a back edge closes a cycle, reported once at
        // the task where the search met it again.
        let document = self.document;
        let groups = document
            .spec
            .phases
            .iter()
            .enumerate()
            .map(|(index, phase)| (Some(index), &phase.tasks))
            .chain(std::iter::once((None, &document.spec.throughout)));
        for (phase, tasks) in groups {
            let index_of = |key: &str| {
                locations
                    .get(key)
                    .filter(|location| location.phase == phase)
                    .map(|location| location.index)
            };
            #[derive(Clone, Copy, PartialEq)]
            enum Mark {
                New,
                Active,
                Done,
            }
            let mut marks = vec![Mark::New; tasks.len()];
            let mut reported = BTreeSet::new();
            for start in 0..tasks.len() {
                if marks[start] != Mark::New {
                    continue;
                }
                // Explicit stack of (task, next dependency to look at).
                let mut stack = vec![(start, 0usize)];
                marks[start] = Mark::Active;
                while let Some((current, next)) = stack.last_mut() {
                    let current = *current;
                    let Some(dependency) = tasks[current].after.get(*next) else {
                        marks[current] = Mark::Done;
                        stack.pop();
                        continue;
                    };
                    let position = *next;
                    *next += 1;
                    let Some(target) = index_of(dependency) else { continue };
                    if target == current {
                        continue; // reported as "cannot come after itself"
                    }
                    match marks[target] {
                        Mark::New => {
                            marks[target] = Mark::Active;
                            stack.push((target, 0));
                        }
                        Mark::Active => {
                            let cycle_start = stack.iter().position(|(task, _)| *task == target).unwrap_or(0);
                            let mut members: Vec<usize> = stack[cycle_start..].iter().map(|(task, _)| *task).collect();
                            let mut canonical = members.clone();
                            canonical.sort_unstable();
                            if reported.insert(canonical) {
                                members.push(target);
                                let names: Vec<&str> = members.iter().map(|task| tasks[*task].key.as_str()).collect();
                                self.report(
                                    format!("{}.after[{position}]", task_path(phase, current)),
                                    format!("tasks depend on each other in a cycle: {}", names.join(" -> ")),
                                );
                            }
                        }
                        Mark::Done => {}
                    }
                }
            }
        }
    }

    fn check_phases(&mut self, locations: &HashMap<&'a str, TaskLocation>) -> Vec<PhasePlan> {
        let document = self.document;
        let phase_count = document.spec.phases.len();
        let mut plans = Vec::with_capacity(phase_count);
        for (index, phase) in document.spec.phases.iter().enumerate() {
            let path = format!("spec.phases[{index}]");
            let mut exit_when = None;
            let mut approval = Vec::new();
            let mut exit_milestone = None;
            let mut manual = false;
            if let Some(exit) = &phase.exit {
                if let Some(source) = &exit.when {
                    exit_when = self.condition(format!("{path}.exit.when"), source);
                    if let Some(condition) = &exit_when {
                        self.warn_optional_outputs(&format!("{path}.exit.when"), &phase.key, condition);
                    }
                }
                let mut seen = BTreeSet::new();
                for (position, role) in exit.approval.iter().enumerate() {
                    let role_path = format!("{path}.exit.approval[{position}]");
                    if self.check_role(role_path.clone(), role) && !seen.insert(role.as_str()) {
                        self.report(role_path, format!("role '{role}' is listed twice"));
                    }
                    approval.push(role.clone());
                }
                if let Some(milestone) = &exit.milestone {
                    self.check_milestone(format!("{path}.exit.milestone"), milestone);
                    exit_milestone = Some(milestone.clone());
                }
                manual = exit.manual;
            }
            let mut transitions = Vec::new();
            let mut always_taken: Option<usize> = None;
            for (position, transition) in phase.next.iter().enumerate() {
                let transition_path = format!("{path}.next[{position}]");
                if let Some(earlier) = always_taken {
                    self.report(
                        transition_path.clone(),
                        format!(
                            "this transition is never taken: next[{earlier}] before it has no when, so it always holds"
                        ),
                    );
                }
                let target = document
                    .spec
                    .phases
                    .iter()
                    .position(|candidate| candidate.key == transition.to);
                if target.is_none() {
                    self.report(
                        format!("{transition_path}.to"),
                        format!("unknown phase '{}'", transition.to),
                    );
                }
                let when = transition
                    .when
                    .as_ref()
                    .and_then(|source| self.condition(format!("{transition_path}.when"), source));
                if transition.when.is_none() && always_taken.is_none() {
                    always_taken = Some(position);
                }
                if let Some(target) = target {
                    transitions.push(TransitionPlan {
                        to: target,
                        when,
                        always: transition.when.is_none(),
                    });
                }
            }
            let tasks = phase
                .tasks
                .iter()
                .filter_map(|task| {
                    locations
                        .get(task.key.as_str())
                        .filter(|location| location.phase == Some(index))
                })
                .map(|location| location.id)
                .collect();
            plans.push(PhasePlan {
                key: phase.key.clone(),
                tasks,
                exit_when,
                approval,
                exit_milestone,
                manual,
                transitions,
                fallback: (index + 1 < phase_count).then_some(index + 1),
            });
        }
        plans
    }

    /// A repeat without `count` or `until` never finishes, so a non-optional one holds up
    /// the default gate, and any gate that reads `phase.tasks_done`, forever.
    fn check_unbounded_repeats(&mut self, phases: &[PhasePlan]) {
        let document = self.document;
        for (index, (phase, plan)) in document.spec.phases.iter().zip(phases).enumerate() {
            let when_written = phase.exit.as_ref().and_then(|exit| exit.when.as_ref()).is_some();
            let reads_tasks_done = match &plan.exit_when {
                None => !when_written, // a broken `when` is reported on its own
                Some(condition) => condition.uses_tasks_done(),
            };
            if !reads_tasks_done {
                continue;
            }
            for (position, task) in phase.tasks.iter().enumerate() {
                let unbounded = task
                    .repeat
                    .as_ref()
                    .is_some_and(|repeat| repeat.count.is_none() && repeat.until.is_none());
                if task.optional || !unbounded {
                    continue;
                }
                let message = if when_written {
                    "a repeat without count or until never finishes, so phase.tasks_done in the phase's exit.when would never hold: add count or until, make the task optional, or leave phase.tasks_done out of exit.when"
                } else {
                    "a repeat without count or until never finishes, so the phase's default exit gate would never hold: add count or until, make the task optional, or give the phase an exit.when"
                };
                self.report(format!("{}.repeat", task_path(Some(index), position)), message);
            }
        }
    }

    /// An exit condition that reads an output its task may be completed without can stay
    /// false with nothing left to do: the engagement waits in the phase until someone
    /// repairs it.
    fn warn_optional_outputs(&mut self, path: &str, phase: &str, condition: &Condition) {
        for (task, key) in condition.output_reads() {
            let optional = self
                .all_tasks()
                .find(|(_, candidate)| candidate.key == *task)
                .and_then(|(_, task)| task.outputs.iter().find(|output| output.key == *key))
                .is_some_and(|output| !output.required);
            if optional {
                self.warnings.push(Problem::new(
                    path,
                    format!(
                        "reads outputs.{task}.{key}, which is not required: if '{task}' is completed without it, the \
                         condition can stay false with nothing left to do, and the engagement waits in phase '{phase}' \
                         until a coach repairs it; make the output required, or write the condition for its absence"
                    ),
                ));
            }
        }
    }

    fn condition(&mut self, path: String, source: &str) -> Option<Condition> {
        match Condition::compile(source, self) {
            Ok(condition) => Some(condition),
            Err(messages) => {
                for message in messages {
                    self.report(path.clone(), message);
                }
                None
            }
        }
    }

    /// Unreachable phases, and loops nothing leads out of.
    fn check_phase_graph(&mut self, phases: &[PhasePlan]) {
        let count = phases.len();
        if count == 0 {
            return;
        }
        // Node `count` stands for "the engagement completes".
        let end = count;
        let successors: Vec<Vec<usize>> = phases.iter().map(|phase| phase.successors(end)).collect();
        let reach_from = |start: usize| {
            let mut seen = vec![false; count + 1];
            let mut pending = vec![start];
            while let Some(node) = pending.pop() {
                if node == end {
                    seen[end] = true;
                    continue;
                }
                for &next in &successors[node] {
                    if !seen[next] {
                        seen[next] = true;
                        pending.push(next);
                    }
                }
            }
            seen
        };
        let reach: Vec<Vec<bool>> = (0..count).map(reach_from).collect();
        let mut reachable = reach[0].clone();
        reachable[0] = true;
        for (index, phase) in phases.iter().enumerate() {
            if !reachable[index] {
                self.report(
                    format!("spec.phases[{index}]"),
                    format!("phase '{}' can never be entered: no transition leads to it", phase.key),
                );
            }
        }
        let mut reported = vec![false; count];
        for index in 0..count {
            if reported[index] || !reach[index][index] {
                continue;
            }
            let members: Vec<usize> = (0..count)
                .filter(|&other| reach[index][other] && reach[other][index])
                .collect();
            for &member in &members {
                reported[member] = true;
            }
            let leaves = members
                .iter()
                .any(|&member| successors[member].iter().any(|next| !members.contains(next)));
            if !leaves {
                self.report(
                    format!("spec.phases[{}].next", members[0]),
                    format!(
                        "phases {} form a loop with no way out: give a transition in the loop a when, or add one that leaves it",
                        loop_description(phases, &successors, &members)
                    ),
                );
            }
        }
    }
}

/// The phases of a loop as they follow each other (`a -> c -> b -> a`) when it is a single
/// cycle; otherwise, when the loop branches, the phases in document order (`a, b, c`).
fn loop_description(phases: &[PhasePlan], successors: &[Vec<usize>], members: &[usize]) -> String {
    let key = |index: usize| phases[index].key.as_str();
    let single_successor = |member: usize| {
        let mut next = successors[member].clone();
        next.sort_unstable();
        next.dedup();
        match next.as_slice() {
            [only] => Some(*only),
            _ => None,
        }
    };
    let mut chain = vec![members[0]];
    let mut current = members[0];
    while let Some(next) = single_successor(current) {
        chain.push(next);
        if next == members[0] || chain.len() > members.len() + 1 {
            break;
        }
        current = next;
    }
    if chain.len() == members.len() + 1 && chain.last() == Some(&members[0]) {
        chain.into_iter().map(key).collect::<Vec<_>>().join(" -> ")
    } else {
        members.iter().map(|&member| key(member)).collect::<Vec<_>>().join(", ")
    }
}
