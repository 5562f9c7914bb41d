//! The public face of an engagement's events: what downstream systems (HRIS, L&D) may see.
//!
//! Confidentiality is a rule here, not a setting: a public event carries ids, keys, states,
//! times and counts. Notes, reasons, goal wording and commitment text never appear. A task
//! output appears only when it is a typed value (number, integer, boolean, date or enum
//! value) and the model made it visible to the events' [`Audience`]; `text` and `string`
//! outputs never do, whatever their visibility. Person ids are passed through as the opaque
//! ids the caller gave.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use coachflow_model::{Model, OutputType};
use serde_json::{Map, Value, json};

use crate::event::{Event, EventKind};
use crate::state::{EngagementState, EngagementStatus};
use crate::visibility::Viewer;

/// Every `(entity, action)` a public event can have, as [`EventKind::public_name`] gives it.
pub const PUBLIC_EVENTS: [(&str, &str); 19] = [
    ("engagement", "started"),
    ("engagement", "suspended"),
    ("engagement", "resumed"),
    ("engagement", "completed"),
    ("engagement", "cancelled"),
    ("engagement", "migrated"),
    ("phase", "entered"),
    ("phase", "completed"),
    ("task", "opened"),
    ("task", "completed"),
    ("task", "skipped"),
    ("task", "due_soon"),
    ("task", "overdue"),
    ("task", "escalated"),
    ("milestone", "reached"),
    ("goal", "set"),
    ("goal", "achieved"),
    ("engagement", "content_erased"),
    ("subject", "erased"),
];

/// Who receives the public events, by the names a model's output `visibility` lists: the
/// built-in audience `integration`, or roles such as `hr`. An output is published only
/// when its visibility names one of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Audience {
    names: Vec<String>,
}

impl Audience {
    pub fn new(names: impl IntoIterator<Item = impl Into<String>>) -> Audience {
        Audience {
            names: names.into_iter().map(Into::into).collect(),
        }
    }

    pub fn names(&self) -> &[String] {
        &self.names
    }
}

impl Default for Audience {
    /// The built-in `integration` audience.
    fn default() -> Audience {
        Audience::new([coachflow_model::INTEGRATION_AUDIENCE])
    }
}

/// What a public event says happened: the entity, the action, and the data downstream
/// systems may see. How it travels (the CloudEvents envelope, its id, type and routing
/// key) is the broker's business, not the engine's.
#[derive(Debug, Clone, PartialEq)]
pub struct PublicEvent {
    /// `engagement`, `phase`, `task`, `milestone`, `goal` or `subject`.
    pub entity: &'static str,
    /// `started`, `completed`, `reached`, ...
    pub action: &'static str,
    /// The engagement's sequence number of the event.
    pub sequence: u64,
    pub time: DateTime<Utc>,
    pub data: Value,
}

/// Which engagement an event belongs to, as its data names it.
#[derive(Debug, Clone, Copy)]
pub struct EngagementRef<'a> {
    /// `tenants/{tenant}/engagements/{id}`.
    pub name: &'a str,
}

/// The public form of `event`, or `None` for an internal one. `state` is the engagement's
/// state after the event (or later): task events take the task's key and phase from it;
/// `model` (the engagement's) says which outputs `audience` may see.
pub fn public_event(
    engagement: EngagementRef<'_>,
    model: &Model,
    audience: &Audience,
    state: &EngagementState,
    event: &Event,
) -> Option<PublicEvent> {
    let (entity, action) = event.kind.public_name()?;
    let mut data = Map::new();
    data.insert("engagement".to_owned(), Value::from(engagement.name));
    data.insert("sequence".to_owned(), Value::from(event.sequence));
    match &event.kind {
        EventKind::EngagementStarted {
            model_key,
            model_version,
            timezone,
            people,
        } => {
            data.insert("model".to_owned(), Value::from(model_key.as_str()));
            data.insert("model_version".to_owned(), Value::from(*model_version));
            data.insert("timezone".to_owned(), Value::from(timezone.as_str()));
            data.insert("people".to_owned(), json!(people));
        }
        EventKind::EngagementSuspended { .. } => {
            data.insert("state".to_owned(), Value::from(EngagementStatus::Suspended.as_str()));
        }
        EventKind::EngagementResumed => {
            data.insert("state".to_owned(), Value::from(EngagementStatus::Active.as_str()));
        }
        EventKind::EngagementCompleted => {
            data.insert("state".to_owned(), Value::from(EngagementStatus::Completed.as_str()));
        }
        EventKind::EngagementCancelled { .. } => {
            data.insert("state".to_owned(), Value::from(EngagementStatus::Cancelled.as_str()));
        }
        EventKind::EngagementMigrated {
            model_key,
            from_version,
            to_version,
            phases,
            tasks,
            ..
        } => {
            let renames = |renames: &BTreeMap<String, String>| {
                Value::Object(
                    renames
                        .iter()
                        .map(|(from, to)| (from.clone(), Value::from(to.as_str())))
                        .collect(),
                )
            };
            data.insert("renamed_phases".to_owned(), renames(phases));
            data.insert("renamed_tasks".to_owned(), renames(tasks));
            data.insert("model".to_owned(), Value::from(model_key.as_str()));
            data.insert("from_version".to_owned(), Value::from(*from_version));
            data.insert("to_version".to_owned(), Value::from(*to_version));
            data.insert(
                "phase".to_owned(),
                state
                    .phase
                    .as_ref()
                    .map_or(Value::Null, |phase| Value::from(phase.key.as_str())),
            );
        }
        EventKind::PhaseEntered { phase, iteration } => {
            data.insert("phase".to_owned(), Value::from(phase.as_str()));
            data.insert("iteration".to_owned(), Value::from(*iteration));
        }
        EventKind::PhaseCompleted { phase, iteration, next } => {
            data.insert("phase".to_owned(), Value::from(phase.as_str()));
            data.insert("iteration".to_owned(), Value::from(*iteration));
            data.insert(
                "next_phase".to_owned(),
                next.as_deref().map_or(Value::Null, Value::from),
            );
        }
        EventKind::TaskOpened { id, due_at } => {
            task_fields(&mut data, state, id);
            data.insert(
                "due_time".to_owned(),
                due_at.map_or(Value::Null, |at| Value::from(timestamp(at))),
            );
        }
        EventKind::TaskCompleted { id, outputs } => {
            task_fields(&mut data, state, id);
            data.insert(
                "outputs".to_owned(),
                Value::Object(visible_outputs(model, audience, state, id, outputs)),
            );
        }
        EventKind::TaskSkipped { id, .. } | EventKind::TaskEscalated { id } => {
            task_fields(&mut data, state, id);
        }
        EventKind::TaskDueSoon { id, due_at } | EventKind::TaskOverdue { id, due_at } => {
            task_fields(&mut data, state, id);
            data.insert("due_time".to_owned(), Value::from(timestamp(*due_at)));
        }
        EventKind::MilestoneReached {
            milestone,
            phase,
            task,
            iteration,
        } => {
            data.insert("milestone".to_owned(), Value::from(milestone.as_str()));
            data.insert("phase".to_owned(), phase.as_deref().map_or(Value::Null, Value::from));
            data.insert("task".to_owned(), task.as_deref().map_or(Value::Null, Value::from));
            data.insert("iteration".to_owned(), Value::from(*iteration));
        }
        EventKind::GoalSet { goal, .. } | EventKind::GoalAchieved { goal } => {
            data.insert("goal".to_owned(), Value::from(goal.as_str()));
            let goals = state.goals.len();
            let achieved = state
                .goals
                .values()
                .filter(|goal| goal.status == crate::state::GoalStatus::Achieved)
                .count();
            data.insert("goals".to_owned(), Value::from(goals));
            data.insert("goals_achieved".to_owned(), Value::from(achieved));
        }
        EventKind::PersonErased { person, pseudonym } => {
            // Whom consumers must erase their copies of, and the name they appear under now.
            data.insert("person".to_owned(), Value::from(person.as_str()));
            data.insert("pseudonym".to_owned(), Value::from(pseudonym.as_str()));
        }
        _ => {}
    }
    Some(PublicEvent {
        entity,
        action,
        sequence: event.sequence,
        time: event.at,
        data: Value::Object(data),
    })
}

fn task_fields(data: &mut Map<String, Value>, state: &EngagementState, id: &str) {
    data.insert("task".to_owned(), Value::from(id));
    let Some(task) = state.tasks.get(id) else {
        return;
    };
    data.insert("key".to_owned(), Value::from(task.task.as_str()));
    data.insert(
        "phase".to_owned(),
        task.phase.as_deref().map_or(Value::Null, Value::from),
    );
    data.insert("iteration".to_owned(), Value::from(task.iteration));
    data.insert(
        "occurrence".to_owned(),
        task.occurrence.map_or(Value::Null, Value::from),
    );
    data.insert(
        "subject".to_owned(),
        task.subject.as_deref().map_or(Value::Null, Value::from),
    );
    data.insert(
        "assignee".to_owned(),
        task.assignee.as_deref().map_or(Value::Null, Value::from),
    );
}

/// The outputs of task instance `id` that `audience` may see: typed values only.
fn visible_outputs(
    model: &Model,
    audience: &Audience,
    state: &EngagementState,
    id: &str,
    outputs: &std::collections::BTreeMap<String, Value>,
) -> Map<String, Value> {
    let Some(task) = state.tasks.get(id).and_then(|task| model.task_id(&task.task)) else {
        return Map::new();
    };
    let viewer = Viewer::audience(audience);
    model
        .task_spec(task)
        .outputs
        .iter()
        .filter(|output| viewer.sees_output(output))
        .filter_map(|output| Some((output.key.clone(), outputs.get(&output.key)?.clone())))
        .filter(|(_, value)| !value.is_null())
        .collect()
}

/// Whether values of this type may leave in an event: typed values, never free text.
pub fn publishable(output_type: OutputType) -> bool {
    match output_type {
        OutputType::Number | OutputType::Integer | OutputType::Boolean | OutputType::Date | OutputType::Enum => true,
        OutputType::String | OutputType::Text => false,
    }
}

/// A time as public events write it: RFC 3339 in UTC (`2026-03-02T09:00:00Z`).
pub fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::collections::BTreeMap;

    use serde_json::json;

    use super::*;
    use crate::{Action, Actor, Command, decide};

    const MODEL: &str = r#"
apiVersion: coachflow.dev/v1
kind: ProcessModel
metadata: {key: audiences, name: Audiences}
spec:
  roles: [{key: coach}, {key: client}, {key: hr}]
  phases:
    - key: assessment
      name: Assessment
      tasks:
        - key: assessment
          name: Assessment
          kind: assessment
          assignee: coach
          outputs:
            - {key: score, type: integer, visibility: [integration]}
            - {key: readiness, type: enum, values: [low, high], visibility: [hr]}
            - {key: start_on, type: date, visibility: [hr, integration]}
            - {key: private_rating, type: number, visibility: [coach]}
            - {key: plan_ref, type: string, visibility: [hr]}
            - {key: notes, type: text, visibility: [coach, client, hr]}
"#;

    /// The `outputs` of the `task.completed` event for `audience`.
    fn published_outputs(audience: &Audience) -> Value {
        let model = Model::from_text(MODEL).unwrap();
        let now = "2026-03-02T09:00:00Z".parse().unwrap();
        let actor = Actor::Person("coach-1".to_owned());
        let people = BTreeMap::from([
            ("coach".to_owned(), vec!["coach-1".to_owned()]),
            ("client".to_owned(), vec!["client-1".to_owned()]),
            ("hr".to_owned(), vec!["hr-1".to_owned()]),
        ]);
        let start = Action::Start {
            model_version: 1,
            timezone: None,
            people,
        };
        let started = decide(
            &model,
            &EngagementState::default(),
            &Command {
                actor: actor.clone(),
                action: start,
            },
            now,
        )
        .unwrap();
        let outputs = json!({
            "score": 7, "readiness": "high", "start_on": "2026-04-01", "private_rating": 4.5,
            "plan_ref": "doc-1", "notes": "struggles with delegation",
        });
        let complete = Action::CompleteTask {
            task: "assessment".to_owned(),
            outputs: outputs.as_object().unwrap().clone().into_iter().collect(),
        };
        let completed = decide(
            &model,
            &started.state,
            &Command {
                actor,
                action: complete,
            },
            now,
        )
        .unwrap();
        let reference = EngagementRef {
            name: "tenants/acme/engagements/e",
        };
        let event = completed
            .events
            .iter()
            .filter_map(|event| public_event(reference, &model, audience, &completed.state, event))
            .find(|event| (event.entity, event.action) == ("task", "completed"))
            .expect("a task.completed event");
        event.data["outputs"].clone()
    }

    #[test]
    fn outputs_are_published_only_to_the_audiences_their_visibility_names() {
        assert_eq!(
            published_outputs(&Audience::default()),
            json!({"score": 7, "start_on": "2026-04-01"})
        );
        assert_eq!(
            published_outputs(&Audience::new(["hr"])),
            json!({"readiness": "high", "start_on": "2026-04-01"}),
            "string and text outputs never leave, even when visible to the audience"
        );
        assert_eq!(published_outputs(&Audience::new(Vec::<String>::new())), json!({}));
    }
}
