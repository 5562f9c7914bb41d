//! Moving running engagements to another version of their model: one engagement through
//! the command path ([`Core::migrate_engagement`]), or every engagement a filter selects as a
//! long-running operation (AIP-151) that the operation worker carries on across restarts
//! ([`Core::start_migration`], [`Core::migrate_item`]). Each engagement moves in one commit
//! or not at all; one already on the new version is not moved again.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use coachflow_engine::{Actor, Conflict, EngagementState, Mapping, Migration, mapping_problems, migrate};
use coachflow_model::Model;
use coachflow_store::{
    EngagementFilter, NewOperation, OperationItem, OperationStatus, PENDING_OUTCOME, StoreError, StoredOperation,
};
use serde::{Deserialize, Serialize};

use super::authorization::{self, check_without_state};
use super::commands::{Change, target};
use super::idempotency::Outcome;
use super::{
    AppError, Core, EngagementName, EngagementView, Method, ModelView, Principal, Reason, RequestKey, Resource,
    Violation,
};
use crate::application::names::OperationName;

/// Where to move an engagement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigrateTo {
    /// The version of its model to move to.
    pub to_version: u32,
    #[serde(default)]
    pub mapping: Mapping,
    /// Why: recorded with the move.
    pub reason: String,
}

/// A migration of one engagement.
#[derive(Debug, Clone)]
pub struct MigrateEngagement {
    pub engagement: EngagementName,
    pub to: MigrateTo,
    /// Plan only: nothing changes.
    pub validate_only: bool,
    pub expected_sequence: Option<u64>,
    pub request_id: String,
}

/// What a migration of one engagement did, or would do.
#[derive(Debug, Clone)]
pub struct MigrationOutcome {
    /// After the move; planned, as it would be; blocked, as it is.
    pub engagement: EngagementView,
    /// What blocks the move (only when planning; a blocked move is an error).
    pub conflicts: Vec<Conflict>,
    /// The events of the move: `type subject`.
    pub plan: Vec<String>,
}

/// A migration of every engagement of a model version that a filter selects, as it is
/// stored with its operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BulkMigration {
    /// The model's key.
    pub model: String,
    pub from_version: u32,
    /// Only engagements in this phase (of `from_version`).
    pub phase: Option<String>,
    /// Only engagements in this state (`active` or `suspended`); `None`: both.
    pub status: Option<String>,
    pub to: MigrateTo,
    pub validate_only: bool,
}

/// The kind of the operations of a bulk migration.
const MIGRATE_ENGAGEMENTS: &str = "migrate_engagements";

/// What became of one engagement of a bulk migration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum ItemOutcome {
    Pending,
    Migrated,
    /// It was on the new version already.
    AlreadyMigrated,
    /// Planning: it can move.
    WouldMigrate,
    Conflict {
        conflicts: Vec<Conflict>,
    },
    Failed {
        error: String,
    },
}

impl ItemOutcome {
    pub fn as_str(&self) -> &'static str {
        match self {
            ItemOutcome::Pending => PENDING_OUTCOME,
            ItemOutcome::Migrated => "migrated",
            ItemOutcome::AlreadyMigrated => "already_migrated",
            ItemOutcome::WouldMigrate => "would_migrate",
            ItemOutcome::Conflict { .. } => "conflict",
            ItemOutcome::Failed { .. } => "failed",
        }
    }

    /// As stored: the outcome, and the conflicts or the error as JSON.
    pub fn to_item(&self, engagement: &str) -> OperationItem {
        let detail = match self {
            ItemOutcome::Conflict { conflicts } => serde_json::to_string(conflicts).ok(),
            ItemOutcome::Failed { error } => Some(error.clone()),
            _ => None,
        };
        OperationItem {
            engagement: engagement.to_owned(),
            outcome: self.as_str().to_owned(),
            detail,
        }
    }

    fn from_item(item: &OperationItem) -> Result<ItemOutcome, AppError> {
        let detail = item.detail.clone().unwrap_or_default();
        Ok(match item.outcome.as_str() {
            PENDING_OUTCOME => ItemOutcome::Pending,
            "migrated" => ItemOutcome::Migrated,
            "already_migrated" => ItemOutcome::AlreadyMigrated,
            "would_migrate" => ItemOutcome::WouldMigrate,
            "conflict" => ItemOutcome::Conflict {
                conflicts: serde_json::from_str(&detail)
                    .map_err(|error| AppError::Internal(format!("stored conflicts are unreadable: {error}")))?,
            },
            "failed" => ItemOutcome::Failed { error: detail },
            other => return Err(AppError::Internal(format!("stored item outcome '{other}'"))),
        })
    }
}

/// A long-running operation as a caller sees it.
#[derive(Debug, Clone)]
pub struct OperationView {
    pub name: OperationName,
    pub stored: StoredOperation,
    pub request: BulkMigration,
    /// Each engagement's outcome, once the operation is done.
    pub results: Option<Vec<(EngagementName, ItemOutcome)>>,
}

/// The conflicts as violations of a refusal.
fn violations(conflicts: Vec<Conflict>) -> Vec<Violation> {
    conflicts
        .into_iter()
        .map(|conflict| Violation {
            field: conflict.path,
            description: conflict.message,
        })
        .collect()
}

/// The events of a decision as `type subject` lines (`task_cancelled close`): what a plan
/// shows, without the text of any event.
fn plan_of(decision: &coachflow_engine::Decision) -> Vec<String> {
    decision
        .events
        .iter()
        .map(|event| {
            let value = serde_json::to_value(&event.kind).unwrap_or_default();
            let subject = ["id", "phase", "key", "timer"]
                .iter()
                .find_map(|field| value.get(*field).and_then(serde_json::Value::as_str));
            match subject {
                Some(subject) => format!("{} {subject}", event.kind.type_name()),
                None => event.kind.type_name().to_owned(),
            }
        })
        .collect()
}

fn check_reason(reason: &str, field: &str) -> Result<(), AppError> {
    if reason.trim().is_empty() {
        return Err(AppError::invalid(
            field,
            "is required: say why the engagements move (it is recorded with the move)",
        ));
    }
    if reason.len() > 2_000 {
        return Err(AppError::invalid(field, "is longer than 2,000 bytes"));
    }
    Ok(())
}

impl Core {
    /// The version engagements move to: it exists and is not deprecated.
    async fn model_to_migrate_to(&self, tenant: &str, key: &str, version: u32) -> Result<ModelView, AppError> {
        let view = self
            .stored_model(tenant, key, Some(version))
            .await
            .map_err(|error| match error {
                AppError::NotFound { .. } => {
                    AppError::invalid("to_version", format!("model '{key}' has no version {version}"))
                }
                other => other,
            })?;
        if view.stored.deprecated_at.is_some() {
            return Err(AppError::FailedPrecondition {
                reason: Reason::ModelVersionDeprecated,
                message: format!("version {version} of model '{key}' is deprecated; move engagements to a later one"),
            });
        }
        Ok(view)
    }

    /// Refuses a mapping that names what neither version has, whatever the engagement.
    fn check_mapping(from: &Model, to: &ModelView, migrate_to: &MigrateTo) -> Result<(), AppError> {
        let problems = mapping_problems(&Migration {
            from,
            to: &to.model,
            to_version: to.stored.version,
            mapping: &migrate_to.mapping,
            reason: &migrate_to.reason,
        });
        if problems.is_empty() {
            Ok(())
        } else {
            Err(AppError::InvalidArgument(violations(problems)))
        }
    }

    /// Moves one engagement to another version of its model (or, with `validate_only`, says
    /// what the move would do or what blocks it, and changes nothing).
    #[tracing::instrument(skip_all, fields(engagement = %request.engagement, to_version = request.to.to_version))]
    pub async fn migrate_engagement(
        &self,
        principal: &Principal,
        method: Method,
        request: MigrateEngagement,
    ) -> Result<MigrationOutcome, AppError> {
        let name = &request.engagement;
        check_without_state(principal, method, &name.tenant)?;
        check_reason(&request.to.reason, "reason")?;
        let key = RequestKey::of(
            &name.tenant,
            method,
            principal,
            &request.request_id,
            &(name.to_string(), &request.to, request.expected_sequence),
        )?;
        // The caller is checked on the engagement before its model is read.
        let resource = name.to_string();
        let current = self.current(name).await?;
        authorization::authorize(
            principal,
            method,
            &name.tenant,
            target(&resource, current.as_ref().map(|current| current.state.as_ref()), None),
            &self.settings.audience,
        )?;
        let current = current.ok_or_else(|| AppError::not_found(Resource::Engagement, resource))?;
        if current.state.model_version == request.to.to_version {
            // Moved already: that is the one conflict (the mapping, from the version it is
            // on now, would only add noise).
            let conflict = Conflict {
                path: "model_version".to_owned(),
                message: format!("the engagement is on version {} already", request.to.to_version),
            };
            if !request.validate_only {
                return Err(AppError::MigrationBlocked(violations(vec![conflict])));
            }
            return self.blocked(principal, method, name, &current, vec![conflict]).await;
        }
        let to = self
            .model_to_migrate_to(&name.tenant, &current.state.model_key, request.to.to_version)
            .await?;
        let from = self
            .model(&name.tenant, &current.state.model_key, current.state.model_version)
            .await?;
        Self::check_mapping(&from, &to, &request.to)?;

        if request.validate_only {
            return self
                .plan_migration(principal, method, name, &current, &from, &to, &request.to)
                .await;
        }
        let migrate_to = &request.to;
        let target_model = &to.model;
        let change = Change {
            engagement: name,
            method,
            command: "migrate",
            action: None,
            expected_sequence: request.expected_sequence,
            key,
            decide: |model: Arc<Model>, state: &EngagementState, actor: Actor, now: DateTime<Utc>| {
                let migration = Migration {
                    from: &model,
                    to: target_model,
                    to_version: migrate_to.to_version,
                    mapping: &migrate_to.mapping,
                    reason: &migrate_to.reason,
                };
                let decision = migrate(&migration, state, &actor, now)
                    .map_err(|conflicts| AppError::MigrationBlocked(violations(conflicts)))?;
                Ok((Arc::clone(target_model), decision))
            },
        };
        let executed = self.change(principal, change).await?;
        if executed.events > 0 {
            tracing::info!(principal = %principal, "engagement migrated");
            metrics::counter!(crate::metrics::ENGAGEMENTS_MIGRATED).increment(1);
        }
        // The plan of a move already made is its history; a repeat made none.
        Ok(MigrationOutcome {
            engagement: executed.engagement,
            conflicts: Vec::new(),
            plan: Vec::new(),
        })
    }

    /// A planned move that `conflicts` block: the engagement as it is, as the caller may
    /// see it.
    async fn blocked(
        &self,
        principal: &Principal,
        method: Method,
        name: &EngagementName,
        current: &super::CachedState,
        conflicts: Vec<Conflict>,
    ) -> Result<MigrationOutcome, AppError> {
        let grant = authorization::grant(principal, Some(&current.state), &self.settings.audience);
        if grant.break_glass {
            self.record_content_read(principal, method, name).await?;
        }
        let engagement = self
            .view(name, Arc::clone(&current.state), current.created_at, grant.viewer)
            .await?;
        Ok(MigrationOutcome {
            engagement,
            conflicts,
            plan: Vec::new(),
        })
    }

    /// What a move would do to the stored state, or what blocks it.
    #[allow(clippy::too_many_arguments)]
    async fn plan_migration(
        &self,
        principal: &Principal,
        method: Method,
        name: &EngagementName,
        current: &super::CachedState,
        from: &Model,
        to: &ModelView,
        migrate_to: &MigrateTo,
    ) -> Result<MigrationOutcome, AppError> {
        let migration = Migration {
            from,
            to: &to.model,
            to_version: migrate_to.to_version,
            mapping: &migrate_to.mapping,
            reason: &migrate_to.reason,
        };
        let actor = principal.actor(Some(&current.state));
        match migrate(&migration, &current.state, &actor, self.now()) {
            Ok(decision) => {
                let grant = authorization::grant(principal, Some(&current.state), &self.settings.audience);
                if grant.break_glass {
                    self.record_content_read(principal, method, name).await?;
                }
                let plan = plan_of(&decision);
                let (state, pseudonyms) = super::privacy::shown_state(Arc::new(decision.state))?;
                let engagement = EngagementView {
                    name: name.clone(),
                    state,
                    model: Arc::clone(&to.model),
                    created_at: current.created_at,
                    viewer: grant.viewer,
                    pseudonyms,
                };
                Ok(MigrationOutcome {
                    engagement,
                    conflicts: Vec::new(),
                    plan,
                })
            }
            Err(conflicts) => self.blocked(principal, method, name, current, conflicts).await,
        }
    }

    // ----- bulk --------------------------------------------------------------------------------

    /// Starts a bulk migration: selects the engagements now, stores the operation with one
    /// pending item each, and leaves the work to the operation worker.
    pub async fn start_migration(
        &self,
        principal: &Principal,
        method: Method,
        tenant: &str,
        request: BulkMigration,
        request_id: &str,
    ) -> Result<OperationView, AppError> {
        check_without_state(principal, method, tenant)?;
        check_reason(&request.to.reason, "reason")?;
        let key = RequestKey::of(tenant, method, principal, request_id, &request)?;
        if let Some(outcome) = self.replay(key.as_ref()).await? {
            return self.replayed_operation(tenant, outcome).await;
        }
        if request.from_version == request.to.to_version {
            return Err(AppError::invalid("to_version", "is the same as from_version"));
        }
        let from = self
            .stored_model(tenant, &request.model, Some(request.from_version))
            .await
            .map_err(|error| match error {
                AppError::NotFound { .. } => AppError::invalid(
                    "from_version",
                    format!("model '{}' has no version {}", request.model, request.from_version),
                ),
                other => other,
            })?;
        let to = self
            .model_to_migrate_to(tenant, &request.model, request.to.to_version)
            .await?;
        Self::check_mapping(&from.model, &to, &request.to)?;
        if let Some(phase) = &request.phase
            && from.model.phase_index(phase).is_none()
        {
            return Err(AppError::invalid(
                "phase",
                format!(
                    "version {} of model '{}' has no phase '{phase}'",
                    request.from_version, request.model
                ),
            ));
        }

        let engagements = self.select(tenant, &request).await?;
        let id = uuid::Uuid::now_v7().to_string();
        let now = self.now();
        let operation = NewOperation {
            tenant: tenant.to_owned(),
            id: id.clone(),
            kind: MIGRATE_ENGAGEMENTS.to_owned(),
            request: to_json("request", &request)?,
            principal: to_json("principal", principal)?,
            engagements,
            created_at: now,
        };
        let idempotency = key
            .as_ref()
            .map(|key| {
                key.remember(
                    &Outcome::Operation { id: id.clone() },
                    now,
                    self.settings.idempotency_ttl,
                )
            })
            .transpose()?;
        let total = operation.engagements.len();
        match self.store.create_operation(operation, idempotency).await {
            Ok(()) => {}
            Err(StoreError::DuplicateRequest) => {
                return match self.replay(key.as_ref()).await? {
                    Some(outcome) => self.replayed_operation(tenant, outcome).await,
                    None => Err(StoreError::Conflict.into()),
                };
            }
            Err(error) => return Err(error.into()),
        }
        tracing::info!(
            operation = %OperationName::new(tenant, &id),
            model = %request.model,
            from_version = request.from_version,
            to_version = request.to.to_version,
            validate_only = request.validate_only,
            engagements = total,
            principal = %principal,
            "bulk migration started"
        );
        self.operations_changed.notify_one();
        self.load_operation(&OperationName::new(tenant, &id)).await
    }

    /// The engagements a bulk migration selects: on its model version, in its phase and
    /// state (active or suspended when it names none), by id.
    async fn select(&self, tenant: &str, request: &BulkMigration) -> Result<Vec<String>, AppError> {
        const PAGE: u64 = 1_000;
        let filter = EngagementFilter {
            model_key: Some(request.model.clone()),
            model_version: Some(request.from_version),
            status: request.status.clone(),
            phase: request.phase.clone(),
            ..EngagementFilter::default()
        };
        let mut selected = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = self
                .store
                .list_engagements(tenant, &filter, after.as_deref(), PAGE)
                .await?;
            let full = page.len() as u64 == PAGE;
            after = page.last().map(|summary| summary.id.clone());
            selected.extend(
                page.into_iter()
                    .filter(|summary| matches!(summary.status.as_str(), "active" | "suspended"))
                    .map(|summary| summary.id),
            );
            if !full {
                return Ok(selected);
            }
        }
    }

    async fn replayed_operation(&self, tenant: &str, outcome: Outcome) -> Result<OperationView, AppError> {
        let Outcome::Operation { id } = outcome else {
            return Err(AppError::Internal(
                "a request id of MigrateEngagements remembered something else".to_owned(),
            ));
        };
        self.load_operation(&OperationName::new(tenant, &id)).await
    }

    /// The operation, with each engagement's outcome once it is done.
    async fn load_operation(&self, name: &OperationName) -> Result<OperationView, AppError> {
        let stored = self
            .store
            .get_operation(&name.tenant, &name.id)
            .await?
            .ok_or_else(|| AppError::not_found(Resource::Operation, name.to_string()))?;
        self.operation_view(stored, true).await
    }

    async fn operation_view(&self, stored: StoredOperation, with_results: bool) -> Result<OperationView, AppError> {
        let name = OperationName::new(&stored.tenant, &stored.id);
        let request: BulkMigration = serde_json::from_str(&stored.request)
            .map_err(|error| AppError::Internal(format!("operation {name} is unreadable: {error}")))?;
        let results = if with_results && stored.status.is_done() {
            let items = self.store.operation_items(&stored.tenant, &stored.id).await?;
            Some(
                items
                    .iter()
                    .map(|item| {
                        Ok((
                            EngagementName::new(&stored.tenant, &item.engagement),
                            ItemOutcome::from_item(item)?,
                        ))
                    })
                    .collect::<Result<Vec<_>, AppError>>()?,
            )
        } else {
            None
        };
        Ok(OperationView {
            name,
            stored,
            request,
            results,
        })
    }

    pub async fn get_operation(
        &self,
        principal: &Principal,
        method: Method,
        name: &OperationName,
    ) -> Result<OperationView, AppError> {
        check_without_state(principal, method, &name.tenant)?;
        self.load_operation(name).await
    }

    /// A page of the tenant's operations, newest first, after `before_id`; done ones with
    /// their results.
    pub async fn list_operations(
        &self,
        principal: &Principal,
        method: Method,
        tenant: &str,
        before_id: Option<&str>,
        limit: u64,
    ) -> Result<Vec<OperationView>, AppError> {
        check_without_state(principal, method, tenant)?;
        let mut views = Vec::new();
        for stored in self.store.list_operations(tenant, before_id, limit).await? {
            views.push(self.operation_view(stored, true).await?);
        }
        Ok(views)
    }

    /// Asks a running operation to stop; the engagements it has not reached stay pending
    /// (and where they were). Cancelling a finished operation does nothing.
    pub async fn cancel_operation(
        &self,
        principal: &Principal,
        method: Method,
        name: &OperationName,
    ) -> Result<(), AppError> {
        check_without_state(principal, method, &name.tenant)?;
        let stored = self.load_operation(name).await?;
        if !stored.stored.status.is_done() {
            self.store
                .request_operation_cancel(&name.tenant, &name.id, self.now())
                .await?;
            tracing::info!(operation = %name, principal = %principal, "operation cancellation requested");
            self.operations_changed.notify_one();
        }
        Ok(())
    }

    /// Forgets a finished operation (AIP-151: the caller is no longer interested in it).
    pub async fn delete_operation(
        &self,
        principal: &Principal,
        method: Method,
        name: &OperationName,
    ) -> Result<(), AppError> {
        check_without_state(principal, method, &name.tenant)?;
        let stored = self.load_operation(name).await?;
        if !stored.stored.status.is_done() {
            return Err(AppError::FailedPrecondition {
                reason: Reason::OperationRunning,
                message: format!("operation '{name}' is still running: cancel it first"),
            });
        }
        self.store.delete_operation(&name.tenant, &name.id).await?;
        Ok(())
    }

    /// Moves (or, planning, checks) one engagement of a bulk migration, as the principal
    /// that started it. `Err` only for what may pass (the database is unavailable, the
    /// engagement too busy): the item stays pending and is tried again.
    pub async fn migrate_item(
        &self,
        principal: &Principal,
        method: Method,
        tenant: &str,
        engagement: &str,
        request: &BulkMigration,
    ) -> Result<ItemOutcome, AppError> {
        let name = EngagementName::new(tenant, engagement);
        let Some(current) = self.current(&name).await? else {
            return Ok(ItemOutcome::Failed {
                error: "the engagement no longer exists".to_owned(),
            });
        };
        let version = current.state.model_version;
        if version == request.to.to_version {
            return Ok(ItemOutcome::AlreadyMigrated);
        }
        if version != request.from_version {
            return Ok(ItemOutcome::Conflict {
                conflicts: vec![Conflict {
                    path: "model_version".to_owned(),
                    message: format!(
                        "the engagement is on version {version} now, not {}",
                        request.from_version
                    ),
                }],
            });
        }
        let outcome = self
            .migrate_engagement(
                principal,
                method,
                MigrateEngagement {
                    engagement: name,
                    to: request.to.clone(),
                    validate_only: request.validate_only,
                    expected_sequence: None,
                    request_id: String::new(),
                },
            )
            .await;
        match outcome {
            Ok(outcome) if !outcome.conflicts.is_empty() => Ok(ItemOutcome::Conflict {
                conflicts: outcome.conflicts,
            }),
            Ok(_) if request.validate_only => Ok(ItemOutcome::WouldMigrate),
            Ok(outcome) if outcome.engagement.state.model_version == request.to.to_version => Ok(ItemOutcome::Migrated),
            Ok(outcome) => Ok(ItemOutcome::Failed {
                error: format!(
                    "the engagement stayed on version {}",
                    outcome.engagement.state.model_version
                ),
            }),
            Err(AppError::MigrationBlocked(conflicts)) => {
                // Moved meanwhile by someone else: that is not a conflict.
                match self.current(&EngagementName::new(tenant, engagement)).await? {
                    Some(now) if now.state.model_version == request.to.to_version => Ok(ItemOutcome::AlreadyMigrated),
                    _ => Ok(ItemOutcome::Conflict {
                        conflicts: conflicts
                            .into_iter()
                            .map(|violation| Conflict {
                                path: violation.field,
                                message: violation.description,
                            })
                            .collect(),
                    }),
                }
            }
            Err(error @ (AppError::Unavailable(_) | AppError::Aborted { .. })) => Err(error),
            Err(error) => Ok(ItemOutcome::Failed {
                error: error.to_string(),
            }),
        }
    }

    /// Finishes an operation the worker holds: `cancelled` when asked, else `succeeded`.
    pub async fn finish_operation(
        &self,
        operation: &StoredOperation,
        owner: &str,
        cancelled: bool,
    ) -> Result<bool, AppError> {
        let status = if cancelled {
            OperationStatus::Cancelled
        } else {
            OperationStatus::Succeeded
        };
        let finished = self
            .store
            .finish_operation(&operation.tenant, &operation.id, owner, status, None, self.now())
            .await?;
        if finished {
            tracing::info!(
                operation = %OperationName::new(&operation.tenant, &operation.id),
                status = status.as_str(),
                "operation finished"
            );
        }
        Ok(finished)
    }
}

fn to_json(what: &str, value: &impl Serialize) -> Result<String, AppError> {
    serde_json::to_string(value)
        .map_err(|error| AppError::Internal(format!("cannot encode the operation's {what}: {error}")))
}
