//! The one path every change takes: load the engagement, authorize the caller on it, let the
//! engine decide, commit the events, projection, outbox rows, timers and request id in one
//! transaction, and return the engagement after the change. Handlers and the timer runner
//! both go through [`Core::execute`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use coachflow_broker::Naming;
use coachflow_engine::{
    Action, Actor, Audience, Command, Decision, Effect, EngagementRef, EngagementState, decide, public_event,
};
use coachflow_model::Model;
use coachflow_store::{Commit, NewModelVersion, NewOutboxEvent, StoreError, StoredModel};
use serde::Serialize;
use sha2::{Digest as _, Sha256};

use super::authorization::{self, Target, check_without_state};
use super::idempotency::Outcome;
use super::{
    AppError, CachedState, Core, EngagementName, EngagementView, Executed, Method, ModelView, Principal, Reason,
    RequestKey, Resource,
};
use crate::metrics as names;

/// A new engagement of a model.
#[derive(Debug, Clone, Serialize)]
pub struct CreateEngagement {
    /// The engagement's id within the tenant; `None`: a new one is made (a UUIDv7).
    pub id: Option<String>,
    /// The model's key.
    pub model: String,
    /// `None`: the latest version.
    pub version: Option<u32>,
    /// IANA time zone; `None`: UTC.
    pub timezone: Option<String>,
    /// Role → person ids.
    pub people: BTreeMap<String, Vec<String>>,
}

/// A model version to publish: its text as given, and what it compiled to.
#[derive(Debug, Clone, Copy)]
pub struct ModelSource<'a> {
    pub text: &'a str,
    /// `yaml` or `json`.
    pub format: &'static str,
    pub compiled: &'a Model,
}

/// A change to an existing engagement.
#[derive(Debug, Clone)]
pub struct Mutation {
    pub engagement: EngagementName,
    pub method: Method,
    pub action: Action,
    /// The sequence the caller's etag names, if it sent one.
    pub expected_sequence: Option<u64>,
    /// Empty: no request id.
    pub request_id: String,
}

/// What a mutation's fingerprint is made of.
#[derive(Serialize)]
struct MutationFingerprint<'a> {
    engagement: String,
    action: &'a Action,
    expected_sequence: Option<u64>,
}

/// A decision ready to commit: the model it was made with.
#[derive(Clone, Copy)]
struct Decided<'a> {
    model: &'a Model,
    decision: &'a Decision,
    /// The command's name, for metrics.
    command: &'static str,
}

/// Who and what a change is about, for the authorization check.
pub(super) fn target<'a>(name: &'a str, state: Option<&'a EngagementState>, action: Option<&'a Action>) -> Target<'a> {
    let (task, sign_off) = match action {
        Some(Action::CompleteTask { task, .. } | Action::SkipTask { task, .. } | Action::AssignTask { task, .. }) => {
            (Some(task.as_str()), None)
        }
        Some(Action::SignOff { role, person }) => (None, Some((role.as_str(), person.as_str()))),
        _ => (None, None),
    };
    Target {
        name: Some(name),
        state,
        task,
        sign_off,
    }
}

/// A change decided on an engagement's state, as `actor` at a time: the model to commit it
/// with (the new version's, for a migration) and the decision.
pub(super) trait Decider:
    Fn(Arc<Model>, &EngagementState, Actor, DateTime<Utc>) -> Result<(Arc<Model>, Decision), AppError>
{
}

impl<F> Decider for F where
    F: Fn(Arc<Model>, &EngagementState, Actor, DateTime<Utc>) -> Result<(Arc<Model>, Decision), AppError>
{
}

/// One change to an existing engagement, however it is decided.
pub(super) struct Change<'a, D> {
    pub engagement: &'a EngagementName,
    pub method: Method,
    /// The command's name, for metrics.
    pub command: &'static str,
    /// The engine's action, when it is one (the authorization check reads its task).
    pub action: Option<&'a Action>,
    pub expected_sequence: Option<u64>,
    pub key: Option<RequestKey>,
    pub decide: D,
}

impl Core {
    // ----- models --------------------------------------------------------------------------

    /// Publishes a new version of a valid model. The version is chosen before the
    /// transaction so the request id can remember it in the same transaction; a concurrent
    /// publication of the same key makes us choose again.
    pub async fn publish_model(
        &self,
        principal: &Principal,
        method: Method,
        tenant: &str,
        source: ModelSource<'_>,
        request_id: &str,
    ) -> Result<ModelView, AppError> {
        let ModelSource {
            text: source,
            format,
            compiled,
        } = source;
        check_without_state(principal, method, tenant)?;
        let key = RequestKey::of(tenant, method, principal, request_id, &(source, format))?;
        let metadata = &compiled.document().metadata;
        if let Some(Outcome::Model { version }) = self.replay(key.as_ref()).await? {
            return self.stored_model(tenant, &metadata.key, Some(version)).await;
        }
        let document = serde_json::to_string(compiled.document())
            .map_err(|error| AppError::Internal(format!("cannot serialize the model: {error}")))?;
        for _ in 0..=self.settings.max_retries {
            let now = self.now();
            let latest = self.store.get_model(tenant, &metadata.key, None).await?;
            let model = NewModelVersion {
                tenant: tenant.to_owned(),
                key: metadata.key.clone(),
                version: latest.map_or(1, |latest| latest.version + 1),
                display_name: metadata.name.clone(),
                description: metadata.description.clone().unwrap_or_default(),
                source_format: format.to_owned(),
                source: source.to_owned(),
                document: document.clone(),
                checksum: crate::hex(&Sha256::digest(source.as_bytes())),
                created_at: now,
            };
            let version = model.version;
            let idempotency = key
                .as_ref()
                .map(|key| key.remember(&Outcome::Model { version }, now, self.settings.idempotency_ttl))
                .transpose()?;
            match self.store.publish_model(model.clone(), idempotency).await {
                Ok(_) => {
                    return Ok(ModelView {
                        stored: StoredModel::from(model),
                        model: Arc::new(compiled.clone()),
                    });
                }
                Err(StoreError::AlreadyExists(_)) => continue,
                Err(StoreError::DuplicateRequest) => {
                    return match self.replay(key.as_ref()).await? {
                        Some(Outcome::Model { version }) => {
                            self.stored_model(tenant, &metadata.key, Some(version)).await
                        }
                        _ => Err(StoreError::Conflict.into()),
                    };
                }
                Err(error) => return Err(error.into()),
            }
        }
        Err(AppError::Aborted {
            reason: Reason::ConcurrentModification,
            message: format!("model '{}' is being published concurrently; retry", metadata.key),
        })
    }

    // ----- engagements ---------------------------------------------------------------------

    /// Starts a new engagement.
    pub async fn create(
        &self,
        principal: &Principal,
        method: Method,
        tenant: &str,
        request: CreateEngagement,
        request_id: &str,
    ) -> Result<EngagementView, AppError> {
        check_without_state(principal, method, tenant)?;
        // The request as sent (without an id, the repeat of a request must find the first
        // one's, not make another).
        let key = RequestKey::of(tenant, method, principal, request_id, &request)?;
        if let Some(outcome) = self.replay(key.as_ref()).await? {
            return self.replayed(principal, tenant, outcome).await;
        }
        let id = request.id.clone().unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
        let name = &EngagementName::new(tenant, &id);
        let ModelView { stored, model } = self.model_to_start(tenant, &request.model, request.version).await?;
        let now = self.now();
        let command = Command {
            actor: principal.actor(None),
            action: Action::Start {
                model_version: stored.version,
                timezone: request.timezone,
                people: request.people,
            },
        };
        let decision = decide(&model, &EngagementState::default(), &command, now)?;
        let decided = Decided {
            model: &model,
            decision: &decision,
            command: command.action.name(),
        };
        match self.commit(name, 0, decided, key.as_ref(), now).await {
            Ok(()) => {
                let state = self.keep(name, decision.state, now);
                self.respond(principal, method, name, state, now).await
            }
            // The id may have been taken by a concurrent twin of this request (the same
            // request_id): then the twin's outcome is the answer.
            Err(StoreError::AlreadyExists(_)) => match self.replay(key.as_ref()).await? {
                Some(outcome) => self.replayed(principal, tenant, outcome).await,
                None => Err(AppError::AlreadyExists {
                    reason: Reason::EngagementExists,
                    message: format!("engagement '{name}' already exists"),
                }),
            },
            Err(StoreError::DuplicateRequest) => match self.replay(key.as_ref()).await? {
                Some(outcome) => self.replayed(principal, tenant, outcome).await,
                None => Err(StoreError::Conflict.into()),
            },
            Err(error) => Err(error.into()),
        }
    }

    /// The version a new engagement starts on: the one asked for, unless it is deprecated;
    /// without one, the latest that is not.
    async fn model_to_start(&self, tenant: &str, key: &str, version: Option<u32>) -> Result<ModelView, AppError> {
        let deprecated = |message: String| AppError::FailedPrecondition {
            reason: Reason::ModelVersionDeprecated,
            message,
        };
        match version {
            Some(version) => {
                let view = self.stored_model(tenant, key, Some(version)).await?;
                if view.stored.deprecated_at.is_some() {
                    return Err(deprecated(format!(
                        "version {version} of model '{key}' is deprecated; start on a later version"
                    )));
                }
                Ok(view)
            }
            None => match self.store.latest_usable_model(tenant, key).await? {
                Some(stored) => self.compile(stored),
                None => {
                    // Either no version at all, or every one deprecated.
                    self.stored_model(tenant, key, None).await?;
                    Err(deprecated(format!("every version of model '{key}' is deprecated")))
                }
            },
        }
    }

    /// Deprecates a version of a model (`deprecated`) or undoes it.
    pub async fn set_model_deprecated(
        &self,
        principal: &Principal,
        method: Method,
        name: &super::ModelName,
        deprecated: bool,
    ) -> Result<ModelView, AppError> {
        check_without_state(principal, method, &name.tenant)?;
        let Some(version) = name.version else {
            return Err(AppError::invalid(
                "name",
                format!("'{name}' names no version: write tenants/{{tenant}}/models/{{model}}@{{version}}"),
            ));
        };
        let at = deprecated.then(|| self.now());
        let stored = self
            .store
            .set_model_deprecated(&name.tenant, &name.key, version, at)
            .await?
            .ok_or_else(|| AppError::not_found(Resource::Model, name.to_string()))?;
        tracing::info!(model = %name, deprecated, principal = %principal, "model version deprecation changed");
        self.compile(stored)
    }

    /// Applies a command to an existing engagement, as `principal`.
    #[tracing::instrument(skip_all, fields(engagement = %mutation.engagement, command = mutation.action.name()))]
    pub async fn execute(&self, principal: &Principal, mutation: Mutation) -> Result<Executed, AppError> {
        let name = &mutation.engagement;
        check_without_state(principal, mutation.method, &name.tenant)?;
        let key = RequestKey::of(
            &name.tenant,
            mutation.method,
            principal,
            &mutation.request_id,
            &MutationFingerprint {
                engagement: name.to_string(),
                action: &mutation.action,
                expected_sequence: mutation.expected_sequence,
            },
        )?;
        let action = &mutation.action;
        let change = Change {
            engagement: name,
            method: mutation.method,
            command: action.name(),
            action: Some(action),
            expected_sequence: mutation.expected_sequence,
            key,
            decide: |model: Arc<Model>, state: &EngagementState, actor: Actor, now: DateTime<Utc>| {
                let command = Command {
                    actor,
                    action: super::privacy::stored_action(action, state),
                };
                let decision = decide(&model, state, &command, now)?;
                Ok((model, decision))
            },
        };
        self.change(principal, change).await
    }

    /// Makes a change to an existing engagement, as `principal`; on a lost race it is
    /// decided again against the new state (unless the caller pinned an etag), so no update
    /// is lost. A kept state is trusted only by a commit: a refusal of any kind (the
    /// caller's authorization too) or nothing to do on a kept state is decided again on the
    /// stored one.
    pub(super) async fn change(
        &self,
        principal: &Principal,
        change: Change<'_, impl Decider>,
    ) -> Result<Executed, AppError> {
        let Change {
            engagement: name,
            method,
            command,
            action,
            expected_sequence,
            key,
            decide,
        } = change;
        let resource = name.to_string();
        let mut attempt = 0;
        let mut replay_checked = false;
        let mut cached = self.states.get(&name.tenant, &name.id);
        loop {
            let from_cache = cached.is_some();
            let loaded = match cached.take() {
                Some(hit) => Some(hit),
                None => self.load(name).await?,
            };
            let state = loaded.as_ref().map(|loaded| loaded.state.as_ref());
            if let Err(denial) = authorization::authorize(
                principal,
                method,
                &name.tenant,
                target(&resource, state, action),
                &self.settings.audience,
            ) {
                if from_cache {
                    continue;
                }
                return Err(denial.into());
            }
            let Some(loaded) = loaded else {
                return Err(AppError::not_found(Resource::Engagement, resource));
            };
            if !replay_checked {
                replay_checked = true;
                if let Some(outcome) = self.replay(key.as_ref()).await? {
                    let engagement = self.replayed(principal, &name.tenant, outcome).await?;
                    return Ok(Executed { engagement, events: 0 });
                }
            }
            let sequence = loaded.state.sequence;
            if let Some(expected) = expected_sequence
                && expected != sequence
            {
                if from_cache {
                    // Perhaps another replica moved it on: compare with the stored one.
                    continue;
                }
                return Err(AppError::Aborted {
                    reason: Reason::EtagMismatch,
                    message: format!(
                        "the engagement has changed since etag {} (now {}); get it again and retry",
                        crate::etag(expected),
                        crate::etag(sequence)
                    ),
                });
            }
            let model = self
                .model(&name.tenant, &loaded.state.model_key, loaded.state.model_version)
                .await?;
            let now = self.now();
            let actor = principal.actor(Some(&loaded.state));
            let (model, decision) = match decide(model, &loaded.state, actor, now) {
                Ok(decided) => decided,
                Err(_) if from_cache => continue,
                Err(error) => return Err(error),
            };
            if decision.events.is_empty() && key.is_none() {
                if from_cache {
                    continue;
                }
                let engagement = self
                    .respond(principal, method, name, Arc::new(decision.state), loaded.created_at)
                    .await?;
                return Ok(Executed { engagement, events: 0 });
            }
            let decided = Decided {
                model: &model,
                decision: &decision,
                command,
            };
            match self.commit(name, sequence, decided, key.as_ref(), now).await {
                Ok(()) => {
                    let events = decision.events.len();
                    let state = self.keep(name, decision.state, loaded.created_at);
                    let engagement = self.respond(principal, method, name, state, loaded.created_at).await?;
                    return Ok(Executed { engagement, events });
                }
                Err(StoreError::Conflict) if from_cache => {
                    // The kept state was stale (another replica moved the engagement on):
                    // not a lost race of this command's, so not counted as one.
                    self.states.remove(&name.tenant, &name.id);
                }
                Err(StoreError::Conflict) if expected_sequence.is_none() && attempt < self.settings.max_retries => {
                    self.states.remove(&name.tenant, &name.id);
                    attempt += 1;
                    metrics::counter!(names::COMMAND_RETRIES, "command" => command).increment(1);
                    // A short, growing pause lets the winner's readers through before we reload.
                    tokio::time::sleep(Duration::from_millis(u64::from(attempt))).await;
                }
                Err(StoreError::DuplicateRequest) => {
                    return match self.replay(key.as_ref()).await? {
                        Some(outcome) => {
                            let engagement = self.replayed(principal, &name.tenant, outcome).await?;
                            Ok(Executed { engagement, events: 0 })
                        }
                        None => Err(StoreError::Conflict.into()),
                    };
                }
                Err(error) => {
                    self.states.remove(&name.tenant, &name.id);
                    return Err(error.into());
                }
            }
        }
    }

    /// Keeps a state this replica committed, for the next command on the engagement.
    fn keep(&self, name: &EngagementName, state: EngagementState, created_at: DateTime<Utc>) -> Arc<EngagementState> {
        let state = Arc::new(state);
        let kept = CachedState {
            state: Arc::clone(&state),
            created_at,
        };
        self.states.put(&name.tenant, &name.id, kept);
        state
    }

    /// The engagement after a command, as the caller may see it.
    async fn respond(
        &self,
        principal: &Principal,
        method: Method,
        name: &EngagementName,
        state: Arc<EngagementState>,
        created_at: DateTime<Utc>,
    ) -> Result<EngagementView, AppError> {
        let grant = authorization::grant(principal, Some(&state), &self.settings.audience);
        if grant.break_glass {
            self.record_content_read(principal, method, name).await?;
        }
        self.view(name, state, created_at, grant.viewer).await
    }

    #[tracing::instrument(name = "commit", skip_all, fields(sequence = expected_sequence + 1))]
    async fn commit(
        &self,
        name: &EngagementName,
        expected_sequence: u64,
        decided: Decided<'_>,
        request: Option<&RequestKey>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let Decided {
            model,
            decision,
            command,
        } = decided;
        let engagement_name = name.to_string();
        let reference = EngagementRef { name: &engagement_name };
        let traceparent = crate::trace::current().map(|context| context.traceparent());
        let outbox = outbox_rows(
            &name.tenant,
            reference,
            model,
            &self.settings.audience,
            decision,
            traceparent,
        );
        let outcome = Outcome::Engagement {
            engagement: name.id.clone(),
            sequence: decision.state.sequence,
        };
        let idempotency = request
            .map(|request| request.remember(&outcome, now, self.settings.idempotency_ttl))
            .transpose()
            .map_err(|error| StoreError::Invalid(error.to_string()))?;
        self.store
            .commit(Commit {
                tenant: &name.tenant,
                engagement: &name.id,
                expected_sequence,
                events: &decision.events,
                effects: &decision.effects,
                state: &decision.state,
                outbox: &outbox,
                idempotency,
                now,
            })
            .await?;
        metrics::counter!(names::COMMANDS_COMMITTED, "command" => command).increment(1);
        metrics::counter!(names::EVENTS_APPENDED).increment(decision.events.len() as u64);
        if decision
            .effects
            .iter()
            .any(|effect| matches!(effect, Effect::ScheduleTimer { .. }))
        {
            self.timers_changed.notify_one();
        }
        if !outbox.is_empty() {
            self.events_committed.send_modify(|commits| *commits += 1);
        }
        Ok(())
    }

    // ----- request ids ---------------------------------------------------------------------

    /// The outcome of the first request with this key, or `None` if the request id is new.
    pub(super) async fn replay(&self, request: Option<&RequestKey>) -> Result<Option<Outcome>, AppError> {
        let Some(request) = request else {
            return Ok(None);
        };
        let Some(stored) = self
            .store
            .find_idempotency_key(&request.tenant, &request.request_id)
            .await?
        else {
            return Ok(None);
        };
        if stored.method != request.method || stored.request_hash != request.hash {
            return Err(AppError::invalid(
                "request_id",
                format!(
                    "'{}' was already used for a different request ({}); use a new request_id for a new request",
                    request.request_id, stored.method
                ),
            ));
        }
        metrics::counter!(names::IDEMPOTENT_REPLAYS).increment(1);
        Outcome::decode(&stored.response).map(Some)
    }

    /// The engagement as the first request with a request id left it.
    async fn replayed(
        &self,
        principal: &Principal,
        tenant: &str,
        outcome: Outcome,
    ) -> Result<EngagementView, AppError> {
        let Outcome::Engagement { engagement, sequence } = outcome else {
            return Err(AppError::Internal(
                "a request id of an engagement method remembered a model".to_owned(),
            ));
        };
        let name = &EngagementName::new(tenant, &engagement);
        let loaded = self
            .store
            .load_engagement_at(&name.tenant, &name.id, sequence)
            .await?
            .ok_or_else(|| AppError::not_found(Resource::Engagement, name.to_string()))?;
        let state = Arc::new(loaded.state);
        let grant = authorization::grant(principal, Some(&state), &self.settings.audience);
        self.view(name, state, loaded.created_at, grant.viewer).await
    }
}

/// The outbox rows of a decision: its public events as `audience` may see them, named as
/// CloudEvents, with the trace context of the command that made it.
pub fn outbox_rows(
    tenant: &str,
    reference: EngagementRef<'_>,
    model: &Model,
    audience: &Audience,
    decision: &Decision,
    traceparent: Option<String>,
) -> Vec<NewOutboxEvent> {
    decision
        .events
        .iter()
        .filter_map(|event| public_event(reference, model, audience, &decision.state, event))
        .map(|event| {
            let naming = Naming::of(tenant, reference.name, event.entity, event.action, event.sequence);
            NewOutboxEvent {
                event_id: naming.id,
                sequence: event.sequence,
                event_type: naming.event_type,
                routing_key: naming.routing_key,
                subject: reference.name.to_owned(),
                time: event.time,
                data: event.data.to_string(),
                traceparent: traceparent.clone(),
            }
        })
        .collect()
}
