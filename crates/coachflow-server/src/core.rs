//! The one path every change takes: load the engagement, let the engine decide, commit the
//! events, projection, outbox rows, timers and idempotency key in one transaction, reply.
//! Handlers and the timer runner both go through [`Core::execute`].

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use coachflow_engine::{
    Action, Actor, Audience, Command, Decision, Effect, EngagementRef, EngagementState, decide, public_event,
};
use coachflow_model::Model;
use coachflow_store::{
    Commit, LoadedEngagement, NewIdempotencyKey, NewModelVersion, NewOutboxEvent, Store, StoreError, StoredModel,
};
use prost::Message;
use sha2::{Digest as _, Sha256};
use tokio::sync::{Notify, watch};

use crate::cache::{CachedState, StateCache};
use crate::clock::SharedClock;
use crate::convert::{self, hex};
use crate::error::ApiError;
use crate::metrics as names;
use crate::names::{EngagementName, ModelName};
use crate::proto;

/// Tunables of the command path.
#[derive(Debug, Clone)]
pub struct CoreSettings {
    /// How often a command is decided again after losing a race with another one.
    pub max_retries: u32,
    /// How long request ids are remembered.
    pub idempotency_ttl: Duration,
    /// Who receives the public events: which outputs they may carry.
    pub audience: Audience,
    /// How many committed engagement states to keep ([`StateCache`]).
    pub cached_engagements: usize,
}

/// A request that carries a `request_id`: remembered with its response.
#[derive(Debug, Clone)]
pub struct RequestKey {
    pub tenant: String,
    pub request_id: String,
    pub method: &'static str,
    /// SHA-256 of the encoded request, to tell a repeat from a different request.
    pub hash: String,
}

impl RequestKey {
    /// The key of `request`, or `None` without a `request_id`.
    pub fn of(tenant: &str, method: &'static str, request_id: &str, request: &impl Message) -> Option<RequestKey> {
        if request_id.is_empty() {
            return None;
        }
        let mut hasher = Sha256::new();
        hasher.update(method.as_bytes());
        hasher.update(request.encode_to_vec());
        Some(RequestKey {
            tenant: tenant.to_owned(),
            request_id: request_id.to_owned(),
            method,
            hash: hex(&hasher.finalize()),
        })
    }
}

/// A change to an existing engagement.
#[derive(Debug, Clone)]
pub struct Mutation {
    pub engagement: EngagementName,
    pub actor: Actor,
    pub action: Action,
    /// The sequence the caller's etag names, if it sent one.
    pub expected_sequence: Option<u64>,
    pub request: Option<RequestKey>,
}

/// A decision ready to commit: the model it was made with and the reply it gives.
#[derive(Clone, Copy)]
struct Decided<'a> {
    model: &'a Model,
    decision: &'a Decision,
    reply: &'a proto::Engagement,
}

/// What [`Core::execute`] did.
#[derive(Debug, Clone)]
pub struct Executed {
    pub engagement: proto::Engagement,
    /// Events appended (0 when the command changed nothing or was a replay).
    pub events: usize,
}

/// The service's core: the store, the clock and the cache of compiled models.
#[derive(Debug)]
pub struct Core {
    store: Store,
    clock: SharedClock,
    settings: CoreSettings,
    models: RwLock<HashMap<(String, String, u32), Arc<Model>>>,
    /// States this replica committed or read last.
    states: StateCache,
    /// Woken when a commit schedules a timer, so the runner can look again.
    timers_changed: Arc<Notify>,
    /// Counts commits that wrote public events, for `WatchEvents` streams to wake on.
    events_committed: watch::Sender<u64>,
}

impl Core {
    pub fn new(store: Store, clock: SharedClock, settings: CoreSettings) -> Core {
        Core {
            store,
            clock,
            states: StateCache::new(settings.cached_engagements),
            settings,
            models: RwLock::new(HashMap::new()),
            timers_changed: Arc::new(Notify::new()),
            events_committed: watch::Sender::new(0),
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    pub fn timers_changed(&self) -> Arc<Notify> {
        Arc::clone(&self.timers_changed)
    }

    pub fn watch_commits(&self) -> watch::Receiver<u64> {
        self.events_committed.subscribe()
    }

    // ----- models --------------------------------------------------------------------------

    /// Publishes a new version of a valid model. The version is chosen before the
    /// transaction so the response (remembered with the request id in the same transaction)
    /// can name it; a concurrent publication of the same key makes us choose again.
    pub async fn publish_model(
        &self,
        tenant: &str,
        source: &str,
        format: &'static str,
        compiled: &Model,
        request: Option<RequestKey>,
    ) -> Result<proto::Model, ApiError> {
        if let Some(replayed) = self.replay::<proto::Model>(request.as_ref()).await? {
            return Ok(replayed);
        }
        let document = serde_json::to_string(compiled.document())
            .map_err(|error| ApiError::Internal(format!("cannot serialize the model: {error}")))?;
        let metadata = &compiled.document().metadata;
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
                checksum: hex(&Sha256::digest(source.as_bytes())),
                created_at: now,
            };
            let stored = StoredModel::from(model.clone());
            let reply = convert::model(&stored, compiled, true);
            let idempotency = request
                .as_ref()
                .map(|request| self.idempotency_key(request, reply.encode_to_vec(), now));
            match self.store.publish_model(model, idempotency).await {
                Ok(_) => return Ok(reply),
                Err(StoreError::AlreadyExists(_)) => continue,
                Err(StoreError::DuplicateRequest) => {
                    return self
                        .replay::<proto::Model>(request.as_ref())
                        .await?
                        .ok_or_else(|| StoreError::Conflict.into());
                }
                Err(error) => return Err(error.into()),
            }
        }
        Err(ApiError::Aborted {
            reason: "CONCURRENT_MODIFICATION",
            message: format!("model '{}' is being published concurrently; retry", metadata.key),
        })
    }

    /// A compiled model version, from the cache or the store.
    pub async fn model(&self, tenant: &str, key: &str, version: u32) -> Result<Arc<Model>, ApiError> {
        let cache_key = (tenant.to_owned(), key.to_owned(), version);
        if let Some(model) = self.read_cache().get(&cache_key) {
            return Ok(Arc::clone(model));
        }
        let stored = self
            .store
            .get_model(tenant, key, Some(version))
            .await?
            .ok_or_else(|| ApiError::NotFound {
                resource: "model",
                name: format!("{}@{version}", ModelName::new(tenant, key)),
            })?;
        Ok(self.compile(stored)?.1)
    }

    /// A stored model (the latest version when `version` is `None`) with its compiled form.
    pub async fn stored_model(
        &self,
        tenant: &str,
        key: &str,
        version: Option<u32>,
    ) -> Result<(StoredModel, Arc<Model>), ApiError> {
        let stored = self.store.get_model(tenant, key, version).await?.ok_or_else(|| {
            let mut name = ModelName::new(tenant, key);
            name.version = version;
            ApiError::NotFound {
                resource: "model",
                name: name.to_string(),
            }
        })?;
        self.compile(stored)
    }

    /// Compiles a stored model through the cache.
    pub fn compile(&self, stored: StoredModel) -> Result<(StoredModel, Arc<Model>), ApiError> {
        let cache_key = (stored.tenant.clone(), stored.key.clone(), stored.version);
        if let Some(model) = self.read_cache().get(&cache_key) {
            return Ok((stored, Arc::clone(model)));
        }
        let model = Model::from_text(&stored.document).map_err(|problems| {
            ApiError::Internal(format!(
                "stored model {}@{} no longer compiles: {problems}",
                stored.key, stored.version
            ))
        })?;
        let model = Arc::new(model);
        self.models
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(cache_key, Arc::clone(&model));
        Ok((stored, model))
    }

    fn read_cache(&self) -> std::sync::RwLockReadGuard<'_, HashMap<(String, String, u32), Arc<Model>>> {
        self.models.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    // ----- engagements ---------------------------------------------------------------------

    /// The engagement as GetEngagement returns it.
    /// A cached state is used only if the stored sequence is still its own (one indexed
    /// read instead of the snapshot and the events after it).
    pub async fn get(&self, name: &EngagementName) -> Result<proto::Engagement, ApiError> {
        let cached = match self.states.get(&name.tenant, &name.id) {
            Some(cached) => match self.store.engagement_sequence(&name.tenant, &name.id).await? {
                Some(sequence) if sequence == cached.state.sequence => cached,
                Some(_) => self.load(name).await?,
                None => return Err(not_found(name)),
            },
            None => self.load(name).await?,
        };
        let model = self
            .model(&name.tenant, &cached.state.model_key, cached.state.model_version)
            .await?;
        Ok(convert::engagement(name, &cached.state, &model, cached.created_at))
    }

    /// The stored state (and keeps it).
    async fn load(&self, name: &EngagementName) -> Result<CachedState, ApiError> {
        let LoadedEngagement { state, created_at, .. } = self
            .store
            .load_engagement(&name.tenant, &name.id)
            .await?
            .ok_or_else(|| not_found(name))?;
        let loaded = CachedState {
            state: Arc::new(state),
            created_at,
        };
        self.states.put(&name.tenant, &name.id, loaded.clone());
        Ok(loaded)
    }

    /// Starts a new engagement.
    pub async fn create(
        &self,
        name: &EngagementName,
        model: &Arc<Model>,
        command: Command,
        request: Option<RequestKey>,
    ) -> Result<proto::Engagement, ApiError> {
        if let Some(replayed) = self.replay::<proto::Engagement>(request.as_ref()).await? {
            return Ok(replayed);
        }
        let now = self.now();
        let decision = decide(model, &EngagementState::default(), &command, now)?;
        let reply = convert::engagement(name, &decision.state, model, now);
        let decided = Decided {
            model,
            decision: &decision,
            reply: &reply,
        };
        match self.commit(name, 0, decided, request.as_ref(), now).await {
            Ok(()) => {
                let committed = CachedState {
                    state: Arc::new(decision.state),
                    created_at: now,
                };
                self.states.put(&name.tenant, &name.id, committed);
                Ok(reply)
            }
            // The id may have been taken by a concurrent twin of this request (the same
            // request_id): then the twin's response is the answer.
            Err(StoreError::AlreadyExists(_)) => match self.replay::<proto::Engagement>(request.as_ref()).await? {
                Some(replayed) => Ok(replayed),
                None => Err(ApiError::AlreadyExists {
                    reason: "ENGAGEMENT_EXISTS",
                    message: format!("engagement '{name}' already exists"),
                }),
            },
            Err(StoreError::DuplicateRequest) => self
                .replay::<proto::Engagement>(request.as_ref())
                .await?
                .ok_or_else(|| StoreError::Conflict.into()),
            Err(error) => Err(error.into()),
        }
    }

    /// Applies a command to an existing engagement; on a lost race it is decided again
    /// against the new state (unless the caller pinned an etag), so no update is lost.
    #[tracing::instrument(skip_all, fields(engagement = %mutation.engagement, command = mutation.action.name()))]
    pub async fn execute(&self, mutation: Mutation) -> Result<Executed, ApiError> {
        if let Some(replayed) = self.replay::<proto::Engagement>(mutation.request.as_ref()).await? {
            return Ok(Executed {
                engagement: replayed,
                events: 0,
            });
        }
        let name = &mutation.engagement;
        let command = Command {
            actor: mutation.actor.clone(),
            action: mutation.action.clone(),
        };
        let mut attempt = 0;
        let mut cached = self.states.get(&name.tenant, &name.id);
        loop {
            let from_cache = cached.is_some();
            let loaded = match cached.take() {
                Some(hit) => hit,
                None => self.load(name).await?,
            };
            let sequence = loaded.state.sequence;
            if let Some(expected) = mutation.expected_sequence
                && expected != sequence
            {
                if from_cache {
                    // Perhaps another replica moved it on: compare with the stored one.
                    continue;
                }
                return Err(ApiError::Aborted {
                    reason: "ETAG_MISMATCH",
                    message: format!(
                        "the engagement has changed since etag {} (now {}); get it again and retry",
                        convert::etag(expected),
                        convert::etag(sequence)
                    ),
                });
            }
            let model = self
                .model(&name.tenant, &loaded.state.model_key, loaded.state.model_version)
                .await?;
            let now = self.now();
            // Only a commit checks a kept state against the stored one: any other outcome
            // of a kept state (a refusal, nothing to do, such as a timer it does not know)
            // is decided again on the stored state.
            let decision = match decide(&model, &loaded.state, &command, now) {
                Ok(decision) => decision,
                Err(_) if from_cache => continue,
                Err(error) => return Err(error.into()),
            };
            let reply = convert::engagement(name, &decision.state, &model, loaded.created_at);
            if decision.events.is_empty() && mutation.request.is_none() {
                if from_cache {
                    continue;
                }
                return Ok(Executed {
                    engagement: reply,
                    events: 0,
                });
            }
            let decided = Decided {
                model: &model,
                decision: &decision,
                reply: &reply,
            };
            match self
                .commit(name, sequence, decided, mutation.request.as_ref(), now)
                .await
            {
                Ok(()) => {
                    let events = decision.events.len();
                    let committed = CachedState {
                        state: Arc::new(decision.state),
                        created_at: loaded.created_at,
                    };
                    self.states.put(&name.tenant, &name.id, committed);
                    return Ok(Executed {
                        engagement: reply,
                        events,
                    });
                }
                Err(StoreError::Conflict) if from_cache => {
                    // The cached state was stale (another replica moved the engagement
                    // on): not a lost race of this command's, so not counted as one.
                    self.states.remove(&name.tenant, &name.id);
                }
                Err(StoreError::Conflict)
                    if mutation.expected_sequence.is_none() && attempt < self.settings.max_retries =>
                {
                    self.states.remove(&name.tenant, &name.id);
                    attempt += 1;
                    metrics::counter!(names::COMMAND_RETRIES, "command" => command.action.name()).increment(1);
                    // A short, growing pause lets the winner's readers through before we reload.
                    tokio::time::sleep(Duration::from_millis(u64::from(attempt))).await;
                }
                Err(StoreError::DuplicateRequest) => {
                    return self
                        .replay::<proto::Engagement>(mutation.request.as_ref())
                        .await?
                        .map(|engagement| Executed { engagement, events: 0 })
                        .ok_or_else(|| StoreError::Conflict.into());
                }
                Err(error) => {
                    self.states.remove(&name.tenant, &name.id);
                    return Err(error.into());
                }
            }
        }
    }

    async fn commit(
        &self,
        name: &EngagementName,
        expected_sequence: u64,
        decided: Decided<'_>,
        request: Option<&RequestKey>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let Decided { model, decision, reply } = decided;
        let engagement_name = name.to_string();
        let reference = EngagementRef {
            tenant: &name.tenant,
            name: &engagement_name,
        };
        let traceparent = crate::trace::current().map(|context| context.traceparent());
        let outbox = outbox_rows(reference, model, &self.settings.audience, decision, traceparent);
        let idempotency = request.map(|request| self.idempotency_key(request, reply.encode_to_vec(), now));
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

    // ----- idempotency ---------------------------------------------------------------------

    fn idempotency_key(&self, request: &RequestKey, response: Vec<u8>, now: DateTime<Utc>) -> NewIdempotencyKey {
        let ttl = chrono::TimeDelta::from_std(self.settings.idempotency_ttl).unwrap_or(chrono::TimeDelta::days(1));
        NewIdempotencyKey {
            tenant: request.tenant.clone(),
            request_id: request.request_id.clone(),
            method: request.method.to_owned(),
            request_hash: request.hash.clone(),
            response,
            created_at: now,
            expires_at: now + ttl,
        }
    }

    /// The first response to a repeated request, or `None` if the request id is new.
    async fn replay<M: Message + Default>(&self, request: Option<&RequestKey>) -> Result<Option<M>, ApiError> {
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
            return Err(ApiError::invalid(
                "request_id",
                format!(
                    "'{}' was already used for a different request ({}); use a new request_id for a new request",
                    request.request_id, stored.method
                ),
            ));
        }
        metrics::counter!(names::IDEMPOTENT_REPLAYS).increment(1);
        M::decode(stored.response.as_slice())
            .map(Some)
            .map_err(|error| ApiError::Internal(format!("stored response is unreadable: {error}")))
    }
}

/// The outbox rows of a decision: its public events as `audience` may see them, with the
/// trace context of the command that made it.
pub fn outbox_rows(
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
        .map(|event| NewOutboxEvent {
            event_id: event.id,
            sequence: event.sequence,
            event_type: event.event_type,
            routing_key: event.routing_key,
            subject: event.subject,
            time: event.time,
            data: event.data.to_string(),
            traceparent: traceparent.clone(),
        })
        .collect()
}

fn not_found(name: &EngagementName) -> ApiError {
    ApiError::NotFound {
        resource: "engagement",
        name: name.to_string(),
    }
}
