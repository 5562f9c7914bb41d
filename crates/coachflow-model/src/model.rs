//! A validated, compiled process model: what the engine runs.

use std::collections::HashMap;

use crate::document::{ProcessModel, Role, Task, TaskKind};
use crate::duration::IsoDuration;
use crate::expression::Condition;
use crate::schedule::Schedule;

/// Index of a task in [`Model::tasks`]: the phases' tasks in order, then `throughout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TaskId(pub usize);

/// The parsed parts of a task; the rest is read from the document via [`Model::task_spec`].
#[derive(Debug, Clone)]
pub struct TaskPlan {
    pub key: String,
    /// `None` for a `throughout` task.
    pub phase: Option<usize>,
    /// Position in its phase's `tasks` (or in `throughout`).
    pub position: usize,
    pub kind: TaskKind,
    pub optional: bool,
    pub after: Vec<TaskId>,
    pub start_after: Option<IsoDuration>,
    pub due: Option<IsoDuration>,
    pub reminders: Vec<IsoDuration>,
    pub escalate_after: Option<IsoDuration>,
    pub repeat: Option<Schedule>,
}

#[derive(Debug, Clone)]
pub struct TransitionPlan {
    /// Index of the target phase.
    pub to: usize,
    pub when: Option<Condition>,
    /// No `when`: the transition always holds and those after it are never looked at.
    pub always: bool,
}

#[derive(Debug, Clone)]
pub struct PhasePlan {
    pub key: String,
    pub tasks: Vec<TaskId>,
    /// `None`: every non-optional task done.
    pub exit_when: Option<Condition>,
    pub approval: Vec<String>,
    pub exit_milestone: Option<String>,
    pub manual: bool,
    pub transitions: Vec<TransitionPlan>,
    /// The phase entered when no transition holds; `None` after the last phase, where the
    /// engagement completes.
    pub fallback: Option<usize>,
}

impl PhasePlan {
    /// Phases that may follow this one; `end` stands for the engagement completing.
    pub fn successors(&self, end: usize) -> Vec<usize> {
        let mut successors = Vec::new();
        for transition in &self.transitions {
            successors.push(transition.to);
            if transition.always {
                return successors;
            }
        }
        successors.push(self.fallback.unwrap_or(end));
        successors
    }
}

/// A process model that passed validation. Build one with [`crate::compile`] or
/// [`Model::from_text`].
#[derive(Debug, Clone)]
pub struct Model {
    document: ProcessModel,
    phases: Vec<PhasePlan>,
    tasks: Vec<TaskPlan>,
    /// What validation found valid but likely a mistake.
    warnings: Vec<crate::Problem>,
    task_ids: HashMap<String, TaskId>,
    phase_ids: HashMap<String, usize>,
}

impl Model {
    pub(crate) fn new(
        document: ProcessModel,
        phases: Vec<PhasePlan>,
        tasks: Vec<TaskPlan>,
        warnings: Vec<crate::Problem>,
    ) -> Model {
        let task_ids = tasks
            .iter()
            .enumerate()
            .map(|(index, task)| (task.key.clone(), TaskId(index)))
            .collect();
        let phase_ids = phases
            .iter()
            .enumerate()
            .map(|(index, phase)| (phase.key.clone(), index))
            .collect();
        Model {
            document,
            phases,
            tasks,
            warnings,
            task_ids,
            phase_ids,
        }
    }

    /// What validation found valid but likely a mistake, each with its path.
    pub fn warnings(&self) -> &[crate::Problem] {
        &self.warnings
    }

    /// Parses and validates a YAML or JSON model.
    pub fn from_text(text: &str) -> Result<Model, crate::Problems> {
        crate::compile(crate::parse(text)?)
    }

    pub fn document(&self) -> &ProcessModel {
        &self.document
    }

    pub fn key(&self) -> &str {
        &self.document.metadata.key
    }

    pub fn phases(&self) -> &[PhasePlan] {
        &self.phases
    }

    pub fn phase(&self, index: usize) -> &PhasePlan {
        &self.phases[index]
    }

    pub fn phase_index(&self, key: &str) -> Option<usize> {
        self.phase_ids.get(key).copied()
    }

    pub fn tasks(&self) -> &[TaskPlan] {
        &self.tasks
    }

    pub fn task(&self, id: TaskId) -> &TaskPlan {
        &self.tasks[id.0]
    }

    pub fn task_id(&self, key: &str) -> Option<TaskId> {
        self.task_ids.get(key).copied()
    }

    /// The task as the document declares it (names, roles, outputs).
    pub fn task_spec(&self, id: TaskId) -> &Task {
        let plan = &self.tasks[id.0];
        let spec = &self.document.spec;
        let group = match plan.phase {
            Some(phase) => &spec.phases[phase].tasks,
            None => &spec.throughout,
        };
        &group[plan.position]
    }

    /// The tasks that run for the whole engagement.
    pub fn throughout(&self) -> impl Iterator<Item = TaskId> + '_ {
        self.tasks
            .iter()
            .enumerate()
            .filter(|(_, task)| task.phase.is_none())
            .map(|(index, _)| TaskId(index))
    }

    pub fn role(&self, key: &str) -> Option<&Role> {
        self.document.spec.roles.iter().find(|role| role.key == key)
    }

    pub fn roles(&self) -> &[Role] {
        &self.document.spec.roles
    }

    pub fn has_milestone(&self, key: &str) -> bool {
        self.document
            .spec
            .milestones
            .iter()
            .any(|milestone| milestone.key == key)
    }
}
