//! The data subject's rights and the firm's retention policy: erasing an engagement's
//! content, erasing a person across the tenant, exporting what is held about a person, and
//! the periodic job that erases and prunes by policy. Every erasure is a command on the one
//! command path, so it is audited, published and safe with several replicas (a second
//! erasure of the same thing decides nothing).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use coachflow_engine::{Action, Actor, EngagementState, Event, TaskInstance, Viewer, is_valid_person_id};
use coachflow_model::Model;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::authorization::{self, Denial, PrincipalKind, Scope, check_without_state};
use super::{AppError, Core, EngagementName, EngagementView, Executed, Method, Mutation, Principal};
use crate::metrics as names;

/// `value` as shown: every erased person (id → pseudonym) named by their pseudonym.
pub(super) fn shown<T: Serialize + DeserializeOwned>(
    value: T,
    pseudonyms: &BTreeMap<String, String>,
) -> Result<T, AppError> {
    if pseudonyms.is_empty() {
        return Ok(value);
    }
    let unreadable = |error: serde_json::Error| AppError::Internal(format!("cannot pseudonymize: {error}"));
    let mut json = serde_json::to_value(value).map_err(unreadable)?;
    for (person, pseudonym) in pseudonyms {
        coachflow_store::replace_person(&mut json, person, pseudonym);
    }
    serde_json::from_value(json).map_err(unreadable)
}

/// `action` as the engine knows it: a task named as shown (an erased person's instance
/// under their pseudonym) by its stored id.
pub(super) fn stored_action(action: &Action, state: &EngagementState) -> Action {
    let mut action = action.clone();
    if !state.pseudonyms.is_empty()
        && let Action::CompleteTask { task, .. }
        | Action::SkipTask { task, .. }
        | Action::AssignTask { task, .. }
        | Action::ReopenTask { task, .. } = &mut action
    {
        *task = state.stored_task_id(task);
    }
    action
}

/// The state as shown (erased people by pseudonym), and who was erased.
pub(super) fn shown_state(
    state: std::sync::Arc<EngagementState>,
) -> Result<(std::sync::Arc<EngagementState>, BTreeMap<String, String>), AppError> {
    if state.pseudonyms.is_empty() {
        return Ok((state, BTreeMap::new()));
    }
    let pseudonyms = state.pseudonyms.clone();
    let shown = shown(state.as_ref().clone(), &pseudonyms)?;
    Ok((std::sync::Arc::new(shown), pseudonyms))
}

/// What `ErasePersonData` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonErasure {
    pub pseudonym: String,
    /// The engagements that named the person.
    pub engagements: Vec<EngagementName>,
    /// Of those, the ones whose content was erased too.
    pub content_erased: Vec<EngagementName>,
}

/// A tenant's retention policy: what goes how long after; `None` keeps it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionPolicy {
    /// The content of an engagement, after it ended.
    pub closed_content: Option<Duration>,
    /// An outbox row, after it was published.
    pub sent_outbox: Option<Duration>,
    /// A request id's remembered outcome, after the request.
    pub idempotency_keys: Option<Duration>,
}

impl RetentionPolicy {
    pub fn is_empty(&self) -> bool {
        self.closed_content.is_none() && self.sent_outbox.is_none() && self.idempotency_keys.is_none()
    }
}

/// Retention policies: one for tenants named, and a default for the rest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionPolicies {
    pub default: RetentionPolicy,
    pub tenants: BTreeMap<String, RetentionPolicy>,
}

impl RetentionPolicies {
    pub fn is_empty(&self) -> bool {
        self.default.is_empty() && self.tenants.values().all(RetentionPolicy::is_empty)
    }

    fn of(&self, tenant: &str) -> RetentionPolicy {
        self.tenants.get(tenant).copied().unwrap_or(self.default)
    }
}

/// What one run of the retention job did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionRun {
    pub engagements_erased: u64,
    pub outbox_pruned: u64,
    pub idempotency_keys_pruned: u64,
}

/// Closed engagements erased per query of the retention job.
const RETENTION_BATCH: u64 = 100;

impl Core {
    /// Erases an engagement's content, as `principal`.
    pub async fn erase_engagement_content(
        &self,
        principal: &Principal,
        method: Method,
        name: EngagementName,
        expected_sequence: Option<u64>,
        request_id: &str,
    ) -> Result<Executed, AppError> {
        let executed = self
            .execute(
                principal,
                Mutation {
                    engagement: name.clone(),
                    method,
                    action: Action::EraseContent,
                    expected_sequence,
                    request_id: request_id.to_owned(),
                },
            )
            .await?;
        if executed.events > 0 {
            tracing::info!(principal = %principal, engagement = %name, "engagement content erased");
            metrics::counter!(names::ERASURES, "kind" => "engagement_content").increment(1);
        }
        Ok(executed)
    }

    /// Erases `person` from every engagement of `tenant` that names them, as `principal`.
    pub async fn erase_person(
        &self,
        principal: &Principal,
        method: Method,
        tenant: &str,
        person: &str,
    ) -> Result<PersonErasure, AppError> {
        check_without_state(principal, method, tenant)?;
        check_person(person)?;
        let pseudonym = self
            .store
            .pseudonym_for(tenant, person, &principal.to_string(), self.now())
            .await?;
        let mut erasure = PersonErasure {
            pseudonym: pseudonym.clone(),
            engagements: Vec::new(),
            content_erased: Vec::new(),
        };
        for id in self.store.engagements_of_person(tenant, person).await? {
            let name = EngagementName {
                tenant: tenant.to_owned(),
                id,
            };
            let executed = self
                .execute(
                    principal,
                    Mutation {
                        engagement: name.clone(),
                        method,
                        action: Action::ErasePerson {
                            person: person.to_owned(),
                            pseudonym: pseudonym.clone(),
                        },
                        expected_sequence: None,
                        request_id: String::new(),
                    },
                )
                .await?;
            if executed.events == 0 {
                continue;
            }
            let state = &executed.engagement.state;
            if state
                .content_erased
                .is_some_and(|erased| erased.sequence + executed.events as u64 > state.sequence)
            {
                erasure.content_erased.push(name.clone());
            }
            erasure.engagements.push(name);
        }
        tracing::info!(
            principal = %principal,
            tenant,
            pseudonym = %pseudonym,
            engagements = erasure.engagements.len(),
            "person data erased"
        );
        metrics::counter!(names::ERASURES, "kind" => "person").increment(1);
        Ok(erasure)
    }

    /// Everything held about `person` in `tenant`, as a JSON document.
    pub async fn export_person(
        &self,
        principal: &Principal,
        method: Method,
        tenant: &str,
        person: &str,
    ) -> Result<Value, AppError> {
        let outright = check_without_state(principal, method, tenant)?.is_some();
        check_person(person)?;
        let themself = principal.kind == PrincipalKind::Token && principal.subject == person;
        if !(outright || themself) {
            return Err(Denial::scope_required(method, Scope::DataExport).into());
        }
        let mut engagements = Vec::new();
        for id in self.store.engagements_of_person(tenant, person).await? {
            let name = EngagementName {
                tenant: tenant.to_owned(),
                id,
            };
            let Some(current) = self.current(&name).await? else {
                continue;
            };
            let viewer = if outright {
                authorization::grant(principal, Some(&current.state), &self.settings.audience).viewer
            } else {
                Viewer::nobody().with_roles_of(&current.state, person)
            };
            // The scope's holder sees all content: recorded like any break-glass read.
            let viewer = if outright && principal.kind == PrincipalKind::Token {
                self.record_content_read(principal, method, &name).await?;
                Viewer::everything()
            } else {
                viewer
            };
            let view = self
                .view(&name, current.state.clone(), current.created_at, viewer)
                .await?;
            let history = self.store.history(tenant, &name.id, 0, u64::MAX).await?;
            engagements.push(exported_engagement(&view, &current.state, person, &history));
        }
        Ok(json!({
            "person": person,
            "tenant": tenant,
            "exported_time": crate::rfc3339(self.now()),
            "erased_pseudonym": self.store.find_pseudonym(tenant, person).await?,
            "engagements": engagements,
        }))
    }

    /// One run of the retention job at `now`: per tenant, the content of engagements that
    /// ended longer ago than the policy says is erased, and sent outbox rows and request
    /// ids older than it say are deleted. Idempotent; replicas running it at once do no
    /// double work (an erased engagement has nothing more to erase).
    pub async fn run_retention(&self, policies: &RetentionPolicies) -> Result<RetentionRun, AppError> {
        let mut run = RetentionRun::default();
        if policies.is_empty() {
            return Ok(run);
        }
        let now = self.now();
        let mut tenants: BTreeSet<String> = self.store.tenants().await?.into_iter().collect();
        tenants.extend(policies.tenants.keys().cloned());
        let principal = Principal::service();
        let method = Method::named("coachflow.v1.EngagementService/EraseEngagementContent");
        for tenant in tenants {
            let policy = policies.of(&tenant);
            if let Some(after) = policy.closed_content {
                let cutoff = before(now, after);
                let mut failed = BTreeSet::new();
                loop {
                    let due = self
                        .store
                        .closed_engagements_with_content(&tenant, cutoff, RETENTION_BATCH + failed.len() as u64)
                        .await?;
                    let due: Vec<String> = due.into_iter().filter(|id| !failed.contains(id)).collect();
                    if due.is_empty() {
                        break;
                    }
                    for id in due {
                        let name = EngagementName {
                            tenant: tenant.clone(),
                            id: id.clone(),
                        };
                        match self
                            .erase_engagement_content(&principal, method, name.clone(), None, "")
                            .await
                        {
                            Ok(executed) => {
                                // Another replica may have erased it first: nothing counted.
                                run.engagements_erased += u64::from(executed.events > 0);
                                if executed.events == 0 {
                                    failed.insert(id);
                                }
                            }
                            Err(error) => {
                                tracing::warn!(engagement = %name, error = %error, "retention could not erase an engagement's content");
                                failed.insert(id);
                            }
                        }
                    }
                }
            }
            if let Some(after) = policy.sent_outbox {
                run.outbox_pruned += self.store.prune_sent_outbox(&tenant, before(now, after)).await?;
            }
            if let Some(after) = policy.idempotency_keys {
                run.idempotency_keys_pruned += self.store.prune_idempotency_keys(&tenant, before(now, after)).await?;
            }
        }
        for (action, count) in [
            ("content_erased", run.engagements_erased),
            ("outbox_pruned", run.outbox_pruned),
            ("idempotency_keys_pruned", run.idempotency_keys_pruned),
        ] {
            metrics::counter!(names::RETENTION_ACTIONS, "action" => action).increment(count);
        }
        Ok(run)
    }
}

fn before(now: DateTime<Utc>, after: Duration) -> DateTime<Utc> {
    now - chrono::TimeDelta::from_std(after).unwrap_or(chrono::TimeDelta::MAX)
}

fn check_person(person: &str) -> Result<(), AppError> {
    if is_valid_person_id(person) {
        Ok(())
    } else {
        Err(AppError::invalid("person", format!("'{person}' is not a person id")))
    }
}

/// What one engagement holds about `person`: shown through `view` (its viewer's content,
/// erased people by pseudonym); `state` names people as stored, to find the person's own.
fn exported_engagement(view: &EngagementView, state: &EngagementState, person: &str, history: &[Event]) -> Value {
    let shown = &view.state;
    let viewer = &view.viewer;
    let model: &Model = &view.model;
    let roles: Vec<&String> = state
        .people
        .iter()
        .filter(|(_, people)| people.iter().any(|bound| bound == person))
        .map(|(role, _)| role)
        .collect();
    let client = roles.iter().any(|role| role.as_str() == "client");
    let tasks: Vec<Value> = state
        .tasks
        .values()
        .filter(|task| task.assignee.as_deref() == Some(person) || task.subject.as_deref() == Some(person))
        .filter_map(|task| shown.tasks.get(&shown.shown_task_id(&task.id)).or(Some(task)))
        .map(|task| exported_task(task, viewer, model))
        .collect();
    let text = |value: &str| viewer.sees_text().then(|| value.to_owned());
    let goals: Vec<Value> = if client {
        shown
            .goals
            .values()
            .map(|goal| {
                json!({
                    "id": goal.id, "title": text(&goal.title), "measure": goal.measure.as_deref().and_then(text),
                    "target": goal.target.as_deref().and_then(text), "due": goal.due, "progress": goal.progress,
                    "status": goal.status.as_str(), "note": goal.note.as_deref().and_then(text),
                    "set_time": crate::rfc3339(goal.set_at),
                })
            })
            .collect()
    } else {
        Vec::new()
    };
    let commitments: Vec<Value> = state
        .commitments
        .values()
        .filter(|commitment| client || commitment.owner.as_deref() == Some(person))
        .filter_map(|commitment| shown.commitments.get(&commitment.id))
        .map(|commitment| {
            json!({
                "id": commitment.id, "description": text(&commitment.description), "status": commitment.status.as_str(),
                "note": commitment.note.as_deref().and_then(text), "record_time": crate::rfc3339(commitment.recorded_at),
                "follow_up_time": commitment.due.map(crate::rfc3339),
            })
        })
        .collect();
    let actions: Vec<Value> = history
        .iter()
        .filter(|event| match &event.actor {
            Actor::Person(id) => id == person,
            Actor::Delegated { person: id, .. } => id == person,
            Actor::Service(_) | Actor::System => false,
        })
        .map(|event| json!({"sequence": event.sequence, "time": crate::rfc3339(event.at), "type": event.kind.type_name()}))
        .collect();
    json!({
        "name": view.name.to_string(),
        "model": state.model_key,
        "model_version": state.model_version,
        "state": state.status.as_str(),
        "roles": roles,
        "start_time": state.started_at.map(crate::rfc3339),
        "end_time": state.ended_at.map(crate::rfc3339),
        "content_erase_time": state.content_erased.map(|erasure| crate::rfc3339(erasure.at)),
        "tasks": tasks,
        "goals": goals,
        "commitments": commitments,
        "actions": actions,
    })
}

fn exported_task(task: &TaskInstance, viewer: &Viewer, model: &Model) -> Value {
    let outputs: serde_json::Map<String, Value> = task
        .outputs
        .iter()
        .filter(|(key, _)| viewer.sees_task_output(model, &task.task, key))
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect();
    json!({
        "id": task.id,
        "key": task.task,
        "phase": task.phase,
        "state": task.status.as_str(),
        "subject": task.subject,
        "assignee": task.assignee,
        "open_time": task.opened_at.map(crate::rfc3339),
        "close_time": task.closed_at.map(crate::rfc3339),
        "outputs": outputs,
        "skip_reason": task.skip_reason.as_deref().filter(|_| viewer.sees_text()),
    })
}
