//! Conversions between the protobuf contract and the domain: every `proto` ↔ engine/store
//! mapping lives here, so handlers stay thin.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeZone as _, Utc};
use coachflow_engine::{
    Commitment, CommitmentStatus, EngagementStatus, Event, EventKind, Goal, GoalStatus, TaskInstance, TaskStatus,
    Viewer, gate_status,
};
use coachflow_model::Model;
use coachflow_store::{EngagementSummary, TaskRow};
use prost_types::value::Kind;

use crate::application::{AppError, EngagementName, EngagementView, HistoryView, ModelName, ModelView, TaskName};
use crate::proto;

// ----- scalars ---------------------------------------------------------------------------

pub fn timestamp(at: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: at.timestamp(),
        nanos: i32::try_from(at.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

pub fn optional_timestamp(at: Option<DateTime<Utc>>) -> Option<prost_types::Timestamp> {
    at.map(timestamp)
}

pub fn from_timestamp(field: &str, at: &prost_types::Timestamp) -> Result<DateTime<Utc>, AppError> {
    u32::try_from(at.nanos)
        .ok()
        .and_then(|nanos| Utc.timestamp_opt(at.seconds, nanos).single())
        .ok_or_else(|| AppError::invalid(field, "is not a valid timestamp"))
}

pub use crate::etag;

/// The sequence an etag names.
pub fn parse_etag(field: &str, etag: &str) -> Result<u64, AppError> {
    etag.trim_matches('"')
        .parse::<u64>()
        .map_err(|_| AppError::invalid(field, format!("'{etag}' is not an etag this service issued")))
}

/// Empty means absent: proto3 strings have no null.
pub fn non_empty(text: &str) -> Option<String> {
    (!text.is_empty()).then(|| text.to_owned())
}

// ----- JSON <-> google.protobuf.Struct -----------------------------------------------------

/// A `google.protobuf.Struct` from JSON fields: a `BTreeMap` or a `serde_json::Map`.
pub fn json_to_struct<'a>(
    fields: impl IntoIterator<Item = (&'a String, &'a serde_json::Value)>,
) -> prost_types::Struct {
    prost_types::Struct {
        fields: fields
            .into_iter()
            .map(|(key, value)| (key.clone(), json_to_value(value)))
            .collect(),
    }
}

pub fn json_to_value(value: &serde_json::Value) -> prost_types::Value {
    let kind = match value {
        serde_json::Value::Null => Kind::NullValue(0),
        serde_json::Value::Bool(flag) => Kind::BoolValue(*flag),
        serde_json::Value::Number(number) => Kind::NumberValue(number.as_f64().unwrap_or(f64::NAN)),
        serde_json::Value::String(text) => Kind::StringValue(text.clone()),
        serde_json::Value::Array(items) => Kind::ListValue(prost_types::ListValue {
            values: items.iter().map(json_to_value).collect(),
        }),
        serde_json::Value::Object(map) => Kind::StructValue(json_to_struct(map)),
    };
    prost_types::Value { kind: Some(kind) }
}

pub fn struct_to_json(fields: &prost_types::Struct) -> BTreeMap<String, serde_json::Value> {
    fields
        .fields
        .iter()
        .map(|(key, value)| (key.clone(), value_to_json(value)))
        .collect()
}

/// Numbers arrive as doubles; whole ones within ±2^53 become JSON integers, so an
/// `integer` output given as `3` is the integer 3.
pub fn value_to_json(value: &prost_types::Value) -> serde_json::Value {
    const EXACT: f64 = 9_007_199_254_740_992.0;
    match &value.kind {
        None | Some(Kind::NullValue(_)) => serde_json::Value::Null,
        Some(Kind::BoolValue(flag)) => serde_json::Value::Bool(*flag),
        Some(Kind::NumberValue(number)) => {
            if number.fract() == 0.0 && number.abs() <= EXACT {
                #[allow(clippy::cast_possible_truncation)]
                serde_json::Value::from(*number as i64)
            } else {
                serde_json::Number::from_f64(*number).map_or(serde_json::Value::Null, serde_json::Value::Number)
            }
        }
        Some(Kind::StringValue(text)) => serde_json::Value::String(text.clone()),
        Some(Kind::ListValue(list)) => serde_json::Value::Array(list.values.iter().map(value_to_json).collect()),
        Some(Kind::StructValue(fields)) => serde_json::Value::Object(
            fields
                .fields
                .iter()
                .map(|(key, value)| (key.clone(), value_to_json(value)))
                .collect(),
        ),
    }
}

// ----- models ------------------------------------------------------------------------------

pub fn model(view: &ModelView, with_source: bool) -> proto::Model {
    let ModelView { stored, model } = view;
    let document = model.document();
    proto::Model {
        name: ModelName::new(&stored.tenant, &stored.key).to_string(),
        version: stored.version,
        display_name: stored.display_name.clone(),
        description: stored.description.clone(),
        source_format: match stored.source_format.as_str() {
            "json" => proto::ModelFormat::Json,
            _ => proto::ModelFormat::Yaml,
        } as i32,
        source: if with_source {
            stored.source.clone()
        } else {
            String::new()
        },
        checksum: stored.checksum.clone(),
        create_time: Some(timestamp(stored.created_at)),
        roles: document
            .spec
            .roles
            .iter()
            .map(|role| proto::ModelRole {
                key: role.key.clone(),
                display_name: role.name.clone().unwrap_or_default(),
                required: role.required,
                multiple: role.multiple,
            })
            .collect(),
        phases: document
            .spec
            .phases
            .iter()
            .map(|phase| proto::ModelPhase {
                key: phase.key.clone(),
                display_name: phase.name.clone(),
                tasks: phase.tasks.iter().map(|task| task.key.clone()).collect(),
            })
            .collect(),
        milestones: document
            .spec
            .milestones
            .iter()
            .map(|milestone| milestone.key.clone())
            .collect(),
        throughout_tasks: document.spec.throughout.iter().map(|task| task.key.clone()).collect(),
        warnings: problems(model.warnings()),
        deprecate_time: optional_timestamp(stored.deprecated_at),
    }
}

/// A model diff as `DiffModelVersions` returns it.
pub fn model_diff(diff: &coachflow_model::ModelDiff) -> proto::DiffModelVersionsResponse {
    use coachflow_model::Impact;
    proto::DiffModelVersionsResponse {
        changes: diff
            .changes
            .iter()
            .map(|change| proto::ModelChange {
                path: change.path.clone(),
                description: change.description.clone(),
                impact: match change.impact {
                    Impact::Compatible => proto::model_change::Impact::Compatible,
                    Impact::NeedsMapping => proto::model_change::Impact::NeedsMapping,
                    Impact::Blocking => proto::model_change::Impact::Blocking,
                } as i32,
            })
            .collect(),
        compatible: diff.compatible(),
    }
}

/// Problems (or warnings) of a model, with their paths.
pub fn problems(problems: &[coachflow_model::Problem]) -> Vec<proto::ModelProblem> {
    problems
        .iter()
        .map(|problem| proto::ModelProblem {
            path: problem.path.clone(),
            message: problem.message.clone(),
        })
        .collect()
}

// ----- engagements -------------------------------------------------------------------------

pub fn engagement_state(status: EngagementStatus) -> proto::engagement::State {
    match status {
        EngagementStatus::New => proto::engagement::State::Unspecified,
        EngagementStatus::Active => proto::engagement::State::Active,
        EngagementStatus::Suspended => proto::engagement::State::Suspended,
        EngagementStatus::Completed => proto::engagement::State::Completed,
        EngagementStatus::Cancelled => proto::engagement::State::Cancelled,
    }
}

/// The store's name of a state, for filters.
pub fn state_filter(state: proto::engagement::State) -> Option<&'static str> {
    match state {
        proto::engagement::State::Unspecified => None,
        proto::engagement::State::Active => Some("active"),
        proto::engagement::State::Suspended => Some("suspended"),
        proto::engagement::State::Completed => Some("completed"),
        proto::engagement::State::Cancelled => Some("cancelled"),
    }
}

fn status_from_store(status: &str) -> proto::engagement::State {
    match status {
        "active" => proto::engagement::State::Active,
        "suspended" => proto::engagement::State::Suspended,
        "completed" => proto::engagement::State::Completed,
        "cancelled" => proto::engagement::State::Cancelled,
        _ => proto::engagement::State::Unspecified,
    }
}

fn people(people: &BTreeMap<String, Vec<String>>) -> Vec<proto::RoleBinding> {
    people
        .iter()
        .map(|(role, people)| proto::RoleBinding {
            role: role.clone(),
            people: people.clone(),
        })
        .collect()
}

/// The whole engagement, as GetEngagement and every mutating method return it, with the
/// content the caller may not see left out.
pub fn engagement(view: &EngagementView) -> proto::Engagement {
    let EngagementView {
        name,
        state,
        model,
        created_at,
        viewer,
        ..
    } = view;
    let (model, created_at) = (model.as_ref(), *created_at);
    let phase = state.phase.as_ref().map(|phase| {
        let display_name = model
            .phase_index(&phase.key)
            .map(|index| model.document().spec.phases[index].name.clone())
            .unwrap_or_default();
        let gate = gate_status(model, state).map(|gate| proto::GateStatus {
            satisfied: gate.holds(),
            unfinished_tasks: gate.unfinished_tasks.clone(),
            missing_sign_offs: gate.missing_sign_offs.clone(),
            condition_error: match &gate.condition {
                Some(Err(error)) => error.clone(),
                _ => String::new(),
            },
            ready: gate.ready,
        });
        proto::CurrentPhase {
            key: phase.key.clone(),
            display_name,
            iteration: phase.iteration,
            enter_time: Some(timestamp(phase.entered_at)),
            sign_offs: phase
                .sign_offs
                .iter()
                .map(|(role, person)| proto::SignOff {
                    role: role.clone(),
                    person: person.clone(),
                })
                .collect(),
            gate,
        }
    });
    proto::Engagement {
        name: name.to_string(),
        model: ModelName::new(&name.tenant, &state.model_key).to_string(),
        model_version: state.model_version,
        state: engagement_state(state.status) as i32,
        timezone: state.timezone.clone(),
        people: people(&state.people),
        phase,
        tasks: state
            .tasks
            .values()
            .filter(|task| !task.status.is_closed())
            .map(|instance| task(name, instance, Some(model)))
            .collect(),
        goals: state.goals.values().map(|one| goal(one, viewer)).collect(),
        commitments: state.commitments.values().map(|one| commitment(one, viewer)).collect(),
        milestones: state
            .milestones
            .iter()
            .map(|milestone| proto::Milestone {
                key: milestone.milestone.clone(),
                phase: milestone.phase.clone().unwrap_or_default(),
                task: milestone.task.clone().unwrap_or_default(),
                iteration: milestone.iteration,
                reach_time: Some(timestamp(milestone.at)),
            })
            .collect(),
        create_time: Some(timestamp(state.started_at.unwrap_or(created_at))),
        update_time: optional_timestamp(state.updated_at),
        suspend_time: optional_timestamp(state.suspended_at),
        end_time: optional_timestamp(state.ended_at),
        etag: etag(state.sequence),
        event_count: state.sequence,
        content_erase_time: state.content_erased.map(|erasure| timestamp(erasure.at)),
    }
}

/// The fields among `fields` (name, whether empty) of a record whose content was erased
/// that are empty (a note recorded since is not).
fn erased_fields(erased: bool, fields: &[(&str, bool)]) -> Vec<String> {
    if !erased {
        return Vec::new();
    }
    fields
        .iter()
        .filter(|(_, empty)| *empty)
        .map(|(field, _)| (*field).to_owned())
        .collect()
}

/// An engagement as listed: without tasks, goals, commitments and milestones.
pub fn engagement_summary(summary: &EngagementSummary) -> proto::Engagement {
    let name = EngagementName::new(&summary.tenant, &summary.id);
    let mut bindings: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (role, person) in &summary.people {
        bindings.entry(role.clone()).or_default().push(person.clone());
    }
    proto::Engagement {
        name: name.to_string(),
        model: ModelName::new(&summary.tenant, &summary.model_key).to_string(),
        model_version: summary.model_version,
        state: status_from_store(&summary.status) as i32,
        people: people(&bindings),
        phase: summary.phase.as_ref().map(|phase| proto::CurrentPhase {
            key: phase.clone(),
            iteration: summary.phase_iteration.unwrap_or(1),
            ..proto::CurrentPhase::default()
        }),
        create_time: Some(timestamp(summary.created_at)),
        update_time: Some(timestamp(summary.updated_at)),
        etag: etag(summary.sequence),
        event_count: summary.sequence,
        ..proto::Engagement::default()
    }
}

fn task_state(status: TaskStatus) -> proto::task::State {
    match status {
        TaskStatus::Waiting => proto::task::State::Waiting,
        TaskStatus::Scheduled => proto::task::State::Scheduled,
        TaskStatus::Open => proto::task::State::Open,
        TaskStatus::Completed => proto::task::State::Completed,
        TaskStatus::Skipped => proto::task::State::Skipped,
        TaskStatus::Cancelled => proto::task::State::Cancelled,
    }
}

pub fn task(engagement: &EngagementName, instance: &TaskInstance, model: Option<&Model>) -> proto::Task {
    let spec = model.and_then(|model| model.task_id(&instance.task).map(|id| model.task_spec(id)));
    proto::Task {
        name: TaskName::format(engagement, &instance.id),
        key: instance.task.clone(),
        display_name: spec.map(|spec| spec.name.clone()).unwrap_or_default(),
        kind: spec.map(|spec| spec.kind.as_str().to_owned()).unwrap_or_default(),
        phase: instance.phase.clone().unwrap_or_default(),
        iteration: instance.iteration,
        occurrence: instance.occurrence.unwrap_or(0),
        subject: instance.subject.clone().unwrap_or_default(),
        assignee: instance.assignee.clone().unwrap_or_default(),
        state: task_state(instance.status) as i32,
        optional: spec.is_some_and(|spec| spec.optional),
        open_time: optional_timestamp(instance.opened_at.or(instance.opens_at)),
        due_time: optional_timestamp(instance.due_at),
        close_time: optional_timestamp(instance.closed_at),
        due_soon: instance.due_soon,
        overdue: instance.overdue,
        escalated: instance.escalated,
        engagement: engagement.to_string(),
    }
}

/// A row of a work queue.
pub fn task_row(row: &TaskRow) -> proto::Task {
    let engagement = EngagementName::new(&row.tenant, &row.engagement);
    proto::Task {
        name: TaskName::format(&engagement, &row.task_id),
        key: row.task_key.clone(),
        phase: row.phase.clone().unwrap_or_default(),
        assignee: row.assignee.clone().unwrap_or_default(),
        state: proto::task::State::Open as i32,
        open_time: Some(timestamp(row.opened_at)),
        due_time: optional_timestamp(row.due_at),
        due_soon: row.due_soon,
        overdue: row.overdue,
        engagement: engagement.to_string(),
        ..proto::Task::default()
    }
}

fn goal_status(status: GoalStatus) -> proto::goal::Status {
    match status {
        GoalStatus::Active => proto::goal::Status::Active,
        GoalStatus::OnTrack => proto::goal::Status::OnTrack,
        GoalStatus::AtRisk => proto::goal::Status::AtRisk,
        GoalStatus::OffTrack => proto::goal::Status::OffTrack,
        GoalStatus::Achieved => proto::goal::Status::Achieved,
        GoalStatus::Abandoned => proto::goal::Status::Abandoned,
    }
}

pub fn goal_status_from_proto(status: proto::goal::Status) -> Option<GoalStatus> {
    match status {
        proto::goal::Status::Unspecified => None,
        proto::goal::Status::Active => Some(GoalStatus::Active),
        proto::goal::Status::OnTrack => Some(GoalStatus::OnTrack),
        proto::goal::Status::AtRisk => Some(GoalStatus::AtRisk),
        proto::goal::Status::OffTrack => Some(GoalStatus::OffTrack),
        proto::goal::Status::Achieved => Some(GoalStatus::Achieved),
        proto::goal::Status::Abandoned => Some(GoalStatus::Abandoned),
    }
}

/// Free text the viewer may see, or empty, with the field's name added to `withheld` when
/// there was something to withhold.
fn text(viewer: &Viewer, field: &str, value: Option<&str>, withheld: &mut Vec<String>) -> String {
    match value {
        Some(value) if viewer.sees_text() => value.to_owned(),
        Some(value) if !value.is_empty() => {
            withheld.push(field.to_owned());
            String::new()
        }
        _ => String::new(),
    }
}

fn goal(goal: &Goal, viewer: &Viewer) -> proto::Goal {
    let mut withheld = Vec::new();
    let erased = erased_fields(
        goal.content_erased,
        &[
            ("title", goal.title.is_empty()),
            ("measure", goal.measure.is_none()),
            ("target", goal.target.is_none()),
            ("note", goal.note.is_none()),
        ],
    );
    proto::Goal {
        id: goal.id.clone(),
        title: text(viewer, "title", Some(&goal.title), &mut withheld),
        measure: text(viewer, "measure", goal.measure.as_deref(), &mut withheld),
        target: text(viewer, "target", goal.target.as_deref(), &mut withheld),
        due_date: goal.due.map(|due| due.to_string()).unwrap_or_default(),
        progress: goal.progress,
        status: goal_status(goal.status) as i32,
        set_time: Some(timestamp(goal.set_at)),
        update_time: Some(timestamp(goal.updated_at)),
        note: text(viewer, "note", goal.note.as_deref(), &mut withheld),
        withheld_fields: withheld,
        erased_fields: erased,
    }
}

fn commitment_status(status: CommitmentStatus) -> proto::commitment::Status {
    match status {
        CommitmentStatus::Open => proto::commitment::Status::Open,
        CommitmentStatus::Kept => proto::commitment::Status::Kept,
        CommitmentStatus::Missed => proto::commitment::Status::Missed,
        CommitmentStatus::Renegotiated => proto::commitment::Status::Renegotiated,
        CommitmentStatus::Dropped => proto::commitment::Status::Dropped,
    }
}

pub fn commitment_status_from_proto(status: proto::commitment::Status) -> Option<CommitmentStatus> {
    match status {
        proto::commitment::Status::Unspecified => None,
        proto::commitment::Status::Open => Some(CommitmentStatus::Open),
        proto::commitment::Status::Kept => Some(CommitmentStatus::Kept),
        proto::commitment::Status::Missed => Some(CommitmentStatus::Missed),
        proto::commitment::Status::Renegotiated => Some(CommitmentStatus::Renegotiated),
        proto::commitment::Status::Dropped => Some(CommitmentStatus::Dropped),
    }
}

fn commitment(commitment: &Commitment, viewer: &Viewer) -> proto::Commitment {
    let mut withheld = Vec::new();
    let erased = erased_fields(
        commitment.content_erased,
        &[
            ("description", commitment.description.is_empty()),
            ("note", commitment.note.is_none()),
        ],
    );
    proto::Commitment {
        id: commitment.id.clone(),
        description: text(viewer, "description", Some(&commitment.description), &mut withheld),
        owner: commitment.owner.clone().unwrap_or_default(),
        follow_up_time: optional_timestamp(commitment.due),
        status: commitment_status(commitment.status) as i32,
        record_time: Some(timestamp(commitment.recorded_at)),
        followed_up_time: optional_timestamp(commitment.followed_up_at),
        follow_up_due: commitment.follow_up_due,
        note: text(viewer, "note", commitment.note.as_deref(), &mut withheld),
        withheld_fields: withheld,
        erased_fields: erased,
    }
}

// ----- history -----------------------------------------------------------------------------

/// One event of a history page, with the content the caller may not see left out: the
/// audit skeleton (who, when, what, which task) stays.
pub fn history_event(event: &Event, view: &HistoryView) -> proto::HistoryEvent {
    let mut details = match serde_json::to_value(event) {
        Ok(serde_json::Value::Object(map)) => map,
        _ => serde_json::Map::new(),
    };
    for envelope in ["schema_version", "sequence", "at", "actor", "type"] {
        details.remove(envelope);
    }
    let mut withheld = Vec::new();
    let mut erased = Vec::new();
    if view.erased.contains(&event.sequence) {
        for field in event.kind.content_fields() {
            details.remove(*field);
            erased.push((*field).to_owned());
        }
    }
    if !view.viewer.sees_text() {
        for field in event.kind.text_fields() {
            if details.get(*field).is_some_and(|value| !value.is_null()) {
                details.remove(*field);
                withheld.push((*field).to_owned());
            }
        }
    }
    if let EventKind::TaskCompleted { id, .. } = &event.kind
        && let Some(serde_json::Value::Object(outputs)) = details.get_mut("outputs")
    {
        let task = view
            .state
            .tasks
            .get(id)
            .map(|task| task.task.as_str())
            .unwrap_or_default();
        outputs.retain(|key, _| {
            let visible = view.viewer.sees_task_output(&view.model, task, key);
            if !visible {
                withheld.push(format!("outputs.{key}"));
            }
            visible
        });
    }
    proto::HistoryEvent {
        sequence: event.sequence,
        time: Some(timestamp(event.at)),
        r#type: event.kind.type_name().to_owned(),
        actor: actor(&event.actor),
        details: Some(json_to_struct(&details)),
        withheld_fields: withheld,
        erased_fields: erased,
    }
}

pub fn actor(actor: &coachflow_engine::Actor) -> String {
    match actor {
        coachflow_engine::Actor::Person(id) => format!("person/{id}"),
        coachflow_engine::Actor::Service(name) => format!("service/{name}"),
        coachflow_engine::Actor::Delegated { person, by } => format!("person/{person} via service/{by}"),
        coachflow_engine::Actor::System => "system".to_owned(),
    }
}

pub use crate::rfc3339;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_numbers_become_integers_and_fractions_stay() {
        let value = |number: f64| prost_types::Value {
            kind: Some(Kind::NumberValue(number)),
        };
        assert_eq!(value_to_json(&value(3.0)), serde_json::json!(3));
        assert_eq!(value_to_json(&value(2.5)), serde_json::json!(2.5));
        assert_eq!(value_to_json(&value(f64::NAN)), serde_json::Value::Null);
    }

    #[test]
    fn struct_round_trips() {
        let map: BTreeMap<String, serde_json::Value> = serde_json::from_value(serde_json::json!({
            "score": 4, "ok": true, "tags": ["a", "b"], "nested": {"x": null}, "name": "n"
        }))
        .unwrap();
        assert_eq!(struct_to_json(&json_to_struct(&map)), map);
    }

    #[test]
    fn etags_round_trip_and_foreign_ones_are_refused() {
        assert_eq!(parse_etag("etag", &etag(42)).unwrap(), 42);
        assert!(parse_etag("etag", "W/abc").is_err());
    }
}
