//! The public face of an engagement's events: what downstream systems (HRIS, L&D) may see.
//!
//! Confidentiality is a rule here, not a setting: a public event carries ids, keys, states,
//! times and counts. Notes, reasons, goal wording, commitment text and task outputs never
//! appear. Person ids are passed through as the opaque ids the caller gave.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value, json};

use crate::event::{Event, EventKind};
use crate::state::EngagementState;

/// CloudEvents `specversion` of every public event.
pub const SPEC_VERSION: &str = "1.0";

/// One public event, ready for the outbox: CloudEvents attributes and JSON data.
#[derive(Debug, Clone, PartialEq)]
pub struct PublicEvent {
    /// Stable across re-sends: `{subject}/events/{sequence}`, the consumer's dedupe key.
    pub id: String,
    /// `dev.coachflow.<entity>.<action>.v1`.
    pub event_type: String,
    /// `<tenant>.<entity>.<action>`.
    pub routing_key: String,
    /// The engagement's resource name.
    pub subject: String,
    pub time: DateTime<Utc>,
    pub sequence: u64,
    pub data: Value,
}

/// Where an engagement lives, as the public events name it.
#[derive(Debug, Clone, Copy)]
pub struct EngagementRef<'a> {
    pub tenant: &'a str,
    /// `tenants/{tenant}/engagements/{id}`.
    pub name: &'a str,
}

/// The public form of `event`, or `None` for an internal one. `state` is the engagement's
/// state after the event (or later): task events take the task's key and phase from it.
pub fn public_event(engagement: EngagementRef<'_>, state: &EngagementState, event: &Event) -> Option<PublicEvent> {
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
        EventKind::EngagementSuspended { .. }
        | EventKind::EngagementResumed
        | EventKind::EngagementCompleted
        | EventKind::EngagementCancelled { .. } => {
            data.insert("state".to_owned(), Value::from(action));
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
        EventKind::TaskCompleted { id, .. } | EventKind::TaskSkipped { id, .. } | EventKind::TaskEscalated { id } => {
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
        _ => {}
    }
    Some(PublicEvent {
        id: format!("{}/events/{}", engagement.name, event.sequence),
        event_type: format!("dev.coachflow.{entity}.{action}.v1"),
        routing_key: format!("{}.{entity}.{action}", engagement.tenant),
        subject: engagement.name.to_owned(),
        time: event.at,
        sequence: event.sequence,
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
    if let Some(occurrence) = task.occurrence {
        data.insert("occurrence".to_owned(), Value::from(occurrence));
    }
    if let Some(subject) = &task.subject {
        data.insert("subject".to_owned(), Value::from(subject.as_str()));
    }
    if let Some(assignee) = &task.assignee {
        data.insert("assignee".to_owned(), Value::from(assignee.as_str()));
    }
}

fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}
