//! The application layer: commands and queries over domain types. A command is loaded,
//! authorized, decided by the engine and committed in one transaction; a query is
//! authorized and read. Both return domain values and a typed [`AppError`]; they know
//! nothing of protobuf or gRPC (the transport layer does the conversion and shows content
//! only as the caller may see it).

pub mod authorization;
mod cache;
mod commands;
pub mod error;
mod idempotency;
mod migrations;
pub mod names;
pub mod privacy;
mod queries;
pub mod views;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use coachflow_engine::{Audience, EngagementState};
use coachflow_model::Model;
use coachflow_store::{LoadedEngagement, Store, StoredModel};
use tokio::sync::{Notify, watch};

pub use authorization::{Method, Principal, Scope};
pub use cache::{CachedState, StateCache};
pub use commands::{CreateEngagement, ModelSource, Mutation, outbox_rows};
pub use error::{AppError, Reason, Resource, Violation};
pub use idempotency::RequestKey;
pub use migrations::{BulkMigration, ItemOutcome, MigrateEngagement, MigrateTo, MigrationOutcome, OperationView};
pub use names::{EngagementName, ModelName, OperationName, TaskName, TenantName};
pub use queries::EventsGrant;
pub use views::{EngagementView, Executed, HistoryView, ModelView};

use crate::clock::SharedClock;

/// Tunables of the command path.
#[derive(Debug, Clone)]
pub struct CoreSettings {
    /// How often a command is decided again after losing a race with another one.
    pub max_retries: u32,
    /// How long request ids are remembered.
    pub idempotency_ttl: Duration,
    /// Who receives the public events: which outputs they may carry, and what a system
    /// reader (`engagements:read`) may see of content.
    pub audience: Audience,
    /// How many committed engagement states to keep ([`StateCache`]).
    pub cached_engagements: usize,
}

type ModelCache = RwLock<HashMap<(String, String, u32), Arc<Model>>>;

/// The application: the store, the clock and what it keeps in memory.
#[derive(Debug)]
pub struct Core {
    store: Store,
    clock: SharedClock,
    settings: CoreSettings,
    models: ModelCache,
    /// States this replica committed or read last.
    states: StateCache,
    /// Woken when a commit schedules a timer, so the runner can look again.
    timers_changed: Arc<Notify>,
    /// Counts commits that wrote public events, for `WatchEvents` streams to wake on.
    events_committed: watch::Sender<u64>,
    /// Woken when a long-running operation starts or is asked to stop.
    operations_changed: Arc<Notify>,
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
            operations_changed: Arc::new(Notify::new()),
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    pub fn clock(&self) -> &dyn crate::clock::Clock {
        self.clock.as_ref()
    }

    pub fn audience(&self) -> &Audience {
        &self.settings.audience
    }

    pub fn timers_changed(&self) -> Arc<Notify> {
        Arc::clone(&self.timers_changed)
    }

    pub fn operations_changed(&self) -> Arc<Notify> {
        Arc::clone(&self.operations_changed)
    }

    pub fn watch_commits(&self) -> watch::Receiver<u64> {
        self.events_committed.subscribe()
    }

    // ----- models ------------------------------------------------------------------------

    /// A compiled model version, from the cache or the store.
    pub(crate) async fn model(&self, tenant: &str, key: &str, version: u32) -> Result<Arc<Model>, AppError> {
        let cache_key = (tenant.to_owned(), key.to_owned(), version);
        if let Some(model) = self.read_models().get(&cache_key) {
            return Ok(Arc::clone(model));
        }
        let stored = self.store.get_model(tenant, key, Some(version)).await?.ok_or_else(|| {
            AppError::not_found(Resource::Model, format!("{}@{version}", ModelName::new(tenant, key)))
        })?;
        Ok(self.compile(stored)?.model)
    }

    /// A stored model (the latest version when `version` is `None`) with its compiled form.
    pub(crate) async fn stored_model(
        &self,
        tenant: &str,
        key: &str,
        version: Option<u32>,
    ) -> Result<ModelView, AppError> {
        let stored = self.store.get_model(tenant, key, version).await?.ok_or_else(|| {
            let mut name = ModelName::new(tenant, key);
            name.version = version;
            AppError::not_found(Resource::Model, name.to_string())
        })?;
        self.compile(stored)
    }

    /// Compiles a stored model through the cache.
    fn compile(&self, stored: StoredModel) -> Result<ModelView, AppError> {
        let cache_key = (stored.tenant.clone(), stored.key.clone(), stored.version);
        if let Some(model) = self.read_models().get(&cache_key) {
            return Ok(ModelView {
                stored,
                model: Arc::clone(model),
            });
        }
        let model = Model::from_text(&stored.document).map_err(|problems| {
            AppError::Internal(format!(
                "stored model {}@{} no longer compiles: {problems}",
                stored.key, stored.version
            ))
        })?;
        let model = Arc::new(model);
        self.models
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(cache_key, Arc::clone(&model));
        Ok(ModelView { stored, model })
    }

    fn read_models(&self) -> std::sync::RwLockReadGuard<'_, HashMap<(String, String, u32), Arc<Model>>> {
        self.models.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    // ----- engagement states ---------------------------------------------------------------

    /// The stored state (and keeps it); `None` if the engagement does not exist.
    async fn load(&self, name: &EngagementName) -> Result<Option<CachedState>, AppError> {
        let Some(LoadedEngagement { state, created_at, .. }) =
            self.store.load_engagement(&name.tenant, &name.id).await?
        else {
            return Ok(None);
        };
        let loaded = CachedState {
            state: Arc::new(state),
            created_at,
        };
        self.states.put(&name.tenant, &name.id, loaded.clone());
        Ok(Some(loaded))
    }

    /// Reads the states of those of `engagements` this replica does not keep, together, and
    /// keeps them: a batch of commands on them (the timer runner's) then decides each without
    /// a read of its own. Nothing when this replica keeps no states.
    pub async fn preload(&self, engagements: &[EngagementName]) -> Result<(), AppError> {
        if !self.states.enabled() {
            return Ok(());
        }
        let mut missing: Vec<(String, String)> = engagements
            .iter()
            .filter(|name| self.states.get(&name.tenant, &name.id).is_none())
            .map(|name| (name.tenant.clone(), name.id.clone()))
            .collect();
        missing.sort_unstable();
        missing.dedup();
        for LoadedEngagement {
            tenant,
            id,
            state,
            created_at,
        } in self.store.load_engagements(&missing).await?
        {
            // A commit meanwhile may have kept a later state: keep that one.
            if self
                .states
                .get(&tenant, &id)
                .is_none_or(|kept| kept.state.sequence < state.sequence)
            {
                let loaded = CachedState {
                    state: Arc::new(state),
                    created_at,
                };
                self.states.put(&tenant, &id, loaded);
            }
        }
        Ok(())
    }

    /// The current state for a read: a kept one only if the stored sequence is still its
    /// own (one indexed read instead of the snapshot and the events after it).
    async fn current(&self, name: &EngagementName) -> Result<Option<CachedState>, AppError> {
        let Some(cached) = self.states.get(&name.tenant, &name.id) else {
            return self.load(name).await;
        };
        match self.store.engagement_sequence(&name.tenant, &name.id).await? {
            Some(sequence) if sequence == cached.state.sequence => Ok(Some(cached)),
            Some(_) => self.load(name).await,
            None => {
                self.states.remove(&name.tenant, &name.id);
                Ok(None)
            }
        }
    }

    /// The view of `state` for a caller who sees as `viewer`.
    async fn view(
        &self,
        name: &EngagementName,
        state: Arc<EngagementState>,
        created_at: DateTime<Utc>,
        viewer: coachflow_engine::Viewer,
    ) -> Result<EngagementView, AppError> {
        let model = self.model(&name.tenant, &state.model_key, state.model_version).await?;
        let (state, pseudonyms) = privacy::shown_state(state)?;
        Ok(EngagementView {
            name: name.clone(),
            state,
            model,
            created_at,
            viewer,
            pseudonyms,
        })
    }

    /// Records a break-glass read of an engagement's content.
    async fn record_content_read(
        &self,
        principal: &Principal,
        method: Method,
        name: &EngagementName,
    ) -> Result<(), AppError> {
        tracing::warn!(
            principal = %principal,
            method = method.short_name(),
            engagement = %name,
            "break-glass read of content (content:read)"
        );
        metrics::counter!(crate::metrics::CONTENT_READS, "method" => method.short_name()).increment(1);
        self.store
            .record_content_read(coachflow_store::NewContentRead {
                tenant: name.tenant.clone(),
                engagement: name.id.clone(),
                principal: principal.subject.clone(),
                delegate: principal.delegate.clone(),
                method: method.short_name().to_owned(),
                at: self.now(),
            })
            .await?;
        Ok(())
    }
}
