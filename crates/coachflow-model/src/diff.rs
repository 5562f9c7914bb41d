//! What changed between two versions of a model, and what each change means for the
//! engagements running on the old one when they are migrated to the new one.

use std::collections::BTreeSet;
use std::fmt;

use crate::document::{Output, Task};
use crate::model::Model;

/// What a change asks of a migration of running engagements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Impact {
    /// Running engagements move without being told anything (a new task, a changed due
    /// date: timers are recomputed, new work opens).
    Compatible,
    /// Engagements that use what changed need a mapping to move: a removed or moved phase
    /// or task must be renamed to one of the new version, or its work skipped or cancelled.
    NeedsMapping,
    /// Engagements that use what changed cannot move as they are (people bound to a role
    /// the new version lacks, a newly required role nobody holds).
    Blocking,
}

impl Impact {
    pub fn as_str(self) -> &'static str {
        match self {
            Impact::Compatible => "compatible",
            Impact::NeedsMapping => "needs_mapping",
            Impact::Blocking => "blocking",
        }
    }
}

/// One difference.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Change {
    /// Where, by keys: `phases.goal`, `tasks.chemistry_call.due`,
    /// `tasks.goal_statement.outputs.goal_count`, `roles.line_manager`.
    pub path: String,
    pub description: String,
    pub impact: Impact,
}

impl fmt::Display for Change {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "[{}] {}: {}",
            self.impact.as_str(),
            self.path,
            self.description
        )
    }
}

/// Every difference between two versions.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ModelDiff {
    pub changes: Vec<Change>,
}

impl ModelDiff {
    /// Whether running engagements can move from the old version to the new one without a
    /// mapping.
    pub fn compatible(&self) -> bool {
        self.changes.iter().all(|change| change.impact == Impact::Compatible)
    }
}

struct Differ {
    changes: Vec<Change>,
}

impl Differ {
    fn add(&mut self, path: impl Into<String>, description: impl Into<String>, impact: Impact) {
        self.changes.push(Change {
            path: path.into(),
            description: description.into(),
            impact,
        });
    }
}

fn keys<'a, T>(items: &'a [T], key: impl Fn(&'a T) -> &'a str) -> BTreeSet<&'a str> {
    items.iter().map(key).collect()
}

/// Where a task lives: its phase's key, or `throughout`.
fn home(model: &Model, task: &str) -> Option<String> {
    let id = model.task_id(task)?;
    Some(match model.task(id).phase {
        Some(phase) => model.phase(phase).key.clone(),
        None => "throughout".to_owned(),
    })
}

/// The differences from `old` to `new`.
pub fn diff(old: &Model, new: &Model) -> ModelDiff {
    let mut differ = Differ { changes: Vec::new() };
    let (before, after) = (&old.document().spec, &new.document().spec);

    // Roles.
    let old_roles = keys(&before.roles, |role| role.key.as_str());
    let new_roles = keys(&after.roles, |role| role.key.as_str());
    for role in old_roles.difference(&new_roles) {
        differ.add(
            format!("roles.{role}"),
            "removed: engagements with people bound to it cannot move until they are unbound",
            Impact::Blocking,
        );
    }
    for role in after.roles.iter().filter(|role| !old_roles.contains(role.key.as_str())) {
        if role.required {
            differ.add(
                format!("roles.{}", role.key),
                "added as required: engagements without a person in it cannot move",
                Impact::Blocking,
            );
        } else {
            differ.add(format!("roles.{}", role.key), "added", Impact::Compatible);
        }
    }
    for role in &after.roles {
        let Some(previous) = before.roles.iter().find(|candidate| candidate.key == role.key) else {
            continue;
        };
        if role.required && !previous.required {
            differ.add(
                format!("roles.{}.required", role.key),
                "now required: engagements without a person in it cannot move",
                Impact::Blocking,
            );
        }
        if previous.multiple && !role.multiple {
            differ.add(
                format!("roles.{}.multiple", role.key),
                "now holds one person: engagements with several in it cannot move",
                Impact::Blocking,
            );
        }
    }

    // Milestones.
    let old_milestones = keys(&before.milestones, |milestone| milestone.key.as_str());
    let new_milestones = keys(&after.milestones, |milestone| milestone.key.as_str());
    for milestone in old_milestones.difference(&new_milestones) {
        differ.add(
            format!("milestones.{milestone}"),
            "removed: no longer reached; subscribers stop receiving it",
            Impact::Compatible,
        );
    }
    for milestone in new_milestones.difference(&old_milestones) {
        differ.add(format!("milestones.{milestone}"), "added", Impact::Compatible);
    }

    // Phases.
    let old_phases = keys(&before.phases, |phase| phase.key.as_str());
    let new_phases = keys(&after.phases, |phase| phase.key.as_str());
    for phase in old_phases.difference(&new_phases) {
        differ.add(
            format!("phases.{phase}"),
            "removed: engagements in it need a mapping to a phase of the new version",
            Impact::NeedsMapping,
        );
    }
    for phase in new_phases.difference(&old_phases) {
        differ.add(format!("phases.{phase}"), "added", Impact::Compatible);
    }
    let old_order: Vec<&str> = before.phases.iter().map(|phase| phase.key.as_str()).collect();
    let new_order: Vec<&str> = after.phases.iter().map(|phase| phase.key.as_str()).collect();
    let kept_old: Vec<&&str> = old_order.iter().filter(|key| new_phases.contains(**key)).collect();
    let kept_new: Vec<&&str> = new_order.iter().filter(|key| old_phases.contains(**key)).collect();
    if kept_old != kept_new {
        differ.add(
            "phases",
            format!("reordered: {} (was {})", new_order.join(", "), old_order.join(", ")),
            Impact::Compatible,
        );
    }
    for phase in &after.phases {
        let Some(previous) = before.phases.iter().find(|candidate| candidate.key == phase.key) else {
            continue;
        };
        let path = format!("phases.{}", phase.key);
        if previous.exit != phase.exit {
            differ.add(
                format!("{path}.exit"),
                "the exit gate changed: engagements in the phase are held by the new one (and leave at once if it holds)",
                Impact::Compatible,
            );
        }
        if previous.next != phase.next {
            differ.add(
                format!("{path}.next"),
                "the transitions changed: they apply when the phase is next left",
                Impact::Compatible,
            );
        }
    }

    // Tasks.
    let all = |spec: &crate::document::Spec| -> Vec<Task> {
        spec.phases
            .iter()
            .flat_map(|phase| phase.tasks.iter().cloned())
            .chain(spec.throughout.iter().cloned())
            .collect()
    };
    let (old_tasks, new_tasks) = (all(before), all(after));
    for task in &old_tasks {
        let Some(current) = new_tasks.iter().find(|candidate| candidate.key == task.key) else {
            differ.add(
                format!("tasks.{}", task.key),
                "removed: its unfinished work needs a mapping (renamed to a task of the new version, or skipped or cancelled with a reason)",
                Impact::NeedsMapping,
            );
            continue;
        };
        let path = format!("tasks.{}", task.key);
        let (was, is) = (home(old, &task.key), home(new, &task.key));
        if was != is {
            differ.add(
                format!("{path}.phase"),
                format!(
                    "moved from {} to {}: its unfinished work needs a mapping",
                    was.unwrap_or_default(),
                    is.unwrap_or_default()
                ),
                Impact::NeedsMapping,
            );
        }
        diff_task(&mut differ, &path, task, current);
    }
    for task in new_tasks
        .iter()
        .filter(|task| !old_tasks.iter().any(|candidate| candidate.key == task.key))
    {
        differ.add(
            format!("tasks.{}", task.key),
            format!(
                "added to {}: running engagements in it get the task when they move",
                home(new, &task.key).unwrap_or_default()
            ),
            Impact::Compatible,
        );
    }
    ModelDiff {
        changes: differ.changes,
    }
}

fn diff_task(differ: &mut Differ, path: &str, old: &Task, new: &Task) {
    let timing = [
        ("due", &old.due, &new.due),
        ("start_after", &old.start_after, &new.start_after),
        ("escalate_after", &old.escalate_after, &new.escalate_after),
    ];
    for (field, was, is) in timing {
        if was != is {
            differ.add(
                format!("{path}.{field}"),
                format!(
                    "{} → {}: the timers of open instances are recomputed",
                    was.as_deref().unwrap_or("none"),
                    is.as_deref().unwrap_or("none")
                ),
                Impact::Compatible,
            );
        }
    }
    if old.reminders != new.reminders {
        differ.add(
            format!("{path}.reminders"),
            "changed: the reminders of open instances are recomputed",
            Impact::Compatible,
        );
    }
    if old.repeat != new.repeat {
        differ.add(
            format!("{path}.repeat"),
            "the schedule changed: the next occurrence is recomputed",
            Impact::Compatible,
        );
    }
    for (field, changed) in [
        ("assignee", old.assignee != new.assignee),
        ("after", old.after != new.after),
        ("optional", old.optional != new.optional),
        ("for_each", old.for_each != new.for_each),
        ("milestone", old.milestone != new.milestone),
        ("kind", old.kind != new.kind),
    ] {
        if changed {
            differ.add(
                format!("{path}.{field}"),
                "changed: applies to instances created after the move",
                Impact::Compatible,
            );
        }
    }
    diff_outputs(differ, path, &old.outputs, &new.outputs);
}

fn diff_outputs(differ: &mut Differ, path: &str, old: &[Output], new: &[Output]) {
    for output in old {
        let output_path = format!("{path}.outputs.{}", output.key);
        match new.iter().find(|candidate| candidate.key == output.key) {
            None => differ.add(
                output_path,
                "removed: recorded values stay in the history",
                Impact::Compatible,
            ),
            Some(current) => {
                if current.output_type != output.output_type || current.values != output.values {
                    differ.add(
                        format!("{output_path}.type"),
                        format!(
                            "{} → {}: values recorded before stay as they were; a gate reading them may see the old kind",
                            output.output_type.as_str(),
                            current.output_type.as_str()
                        ),
                        Impact::Compatible,
                    );
                }
                if current.required && !output.required {
                    differ.add(
                        format!("{output_path}.required"),
                        "now required: open instances must give it to be completed",
                        Impact::Compatible,
                    );
                }
                if current.visibility != output.visibility {
                    differ.add(
                        format!("{output_path}.visibility"),
                        "changed: applies to every read from the move on, to values recorded before too",
                        Impact::Compatible,
                    );
                }
            }
        }
    }
    for output in new
        .iter()
        .filter(|output| !old.iter().any(|candidate| candidate.key == output.key))
    {
        differ.add(
            format!("{path}.outputs.{}", output.key),
            if output.required {
                "added as required: open instances must give it to be completed"
            } else {
                "added"
            },
            Impact::Compatible,
        );
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const OLD: &str = r"
apiVersion: coachflow.dev/v1
kind: ProcessModel
metadata: {key: grow, name: GROW}
spec:
  roles: [{key: client, required: true}, {key: coach, required: true}, {key: mentor}]
  milestones: [{key: agreed}]
  phases:
    - key: goal
      name: Goal
      tasks:
        - {key: chemistry, name: Chemistry, kind: meeting, due: P7D}
        - {key: statement, name: Statement, kind: document, outputs: [{key: count, type: integer}]}
    - key: wrap
      name: Wrap
      tasks: [{key: close, name: Close, kind: meeting}]
";

    const NEW: &str = r"
apiVersion: coachflow.dev/v1
kind: ProcessModel
metadata: {key: grow, name: GROW}
spec:
  roles: [{key: client, required: true}, {key: coach, required: true}]
  milestones: [{key: agreed}, {key: closed}]
  phases:
    - key: goal
      name: Goal
      tasks:
        - {key: chemistry, name: Chemistry, kind: meeting, due: P14D}
        - {key: statement, name: Statement, kind: document, outputs: [{key: count, type: integer, required: true}]}
        - {key: contract, name: Contract, kind: document}
    - key: closing
      name: Closing
      tasks: [{key: close, name: Close, kind: meeting}]
";

    #[test]
    fn every_difference_is_named_with_what_it_asks_of_a_migration() {
        let diff = diff(&Model::from_text(OLD).unwrap(), &Model::from_text(NEW).unwrap());
        let lines: Vec<String> = diff.changes.iter().map(ToString::to_string).collect();
        for expected in [
            "[blocking] roles.mentor: removed",
            "[compatible] milestones.closed: added",
            "[needs_mapping] phases.wrap: removed",
            "[compatible] phases.closing: added",
            "[compatible] tasks.chemistry.due: P7D → P14D",
            "[compatible] tasks.statement.outputs.count.required: now required",
            "[compatible] tasks.contract: added to goal",
            "[needs_mapping] tasks.close.phase: moved from wrap to closing",
        ] {
            assert!(
                lines.iter().any(|line| line.starts_with(expected)),
                "{expected} not in {lines:#?}"
            );
        }
        assert!(!diff.compatible());
        let same = super::diff(&Model::from_text(OLD).unwrap(), &Model::from_text(OLD).unwrap());
        assert!(same.changes.is_empty() && same.compatible());
    }
}
