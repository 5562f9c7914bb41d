//! Reads: each authorized for its caller first, and answering with what the caller may see.
//! Lists hold only what the caller may see and say nothing of the rest.

use std::sync::Arc;

use coachflow_engine::Viewer;
use coachflow_model::Model;
use coachflow_store::{EngagementFilter, EngagementSummary, StoredModel, TaskCursor, TaskFilter, TaskRow};

use super::authorization::{self, Scope, Target, check_without_state};
use super::{
    AppError, Core, EngagementName, EngagementView, HistoryView, Method, ModelName, ModelView, Principal, Resource,
};

/// What a caller may receive of a stream of public events.
#[derive(Debug, Clone)]
pub enum EventsGrant {
    /// The tenant's events, as the events' audience receives them.
    Tenant,
    /// One engagement's events, with outputs only as this person may see them.
    Engagement { viewer: Viewer, model: Arc<Model> },
}

impl Core {
    /// One engagement.
    pub async fn engagement(
        &self,
        principal: &Principal,
        method: Method,
        name: &EngagementName,
    ) -> Result<EngagementView, AppError> {
        check_without_state(principal, method, &name.tenant)?;
        let current = self.current(name).await?;
        let resource = name.to_string();
        let target = Target {
            name: Some(&resource),
            state: current.as_ref().map(|current| current.state.as_ref()),
            ..Target::default()
        };
        let grant = authorization::authorize(principal, method, &name.tenant, target, &self.settings.audience)?;
        let current = current.ok_or_else(|| AppError::not_found(Resource::Engagement, resource))?;
        if grant.break_glass {
            self.record_content_read(principal, method, name).await?;
        }
        self.view(name, current.state, current.created_at, grant.viewer).await
    }

    /// A page of an engagement's history: events after `after_sequence`, at most `limit`.
    pub async fn history(
        &self,
        principal: &Principal,
        method: Method,
        name: &EngagementName,
        after_sequence: u64,
        limit: u64,
    ) -> Result<HistoryView, AppError> {
        let current = self.engagement(principal, method, name).await?;
        let mut events = self
            .store
            .history_marked(&name.tenant, &name.id, after_sequence, limit + 1)
            .await?;
        let more = events.len() as u64 > limit;
        events.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        let erased = events
            .iter()
            .filter(|(_, erased)| *erased)
            .map(|(event, _)| event.sequence)
            .collect();
        let events = events
            .into_iter()
            .map(|(event, _)| super::privacy::shown(event, &current.pseudonyms))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(HistoryView {
            name: name.clone(),
            events,
            erased,
            more,
            state: current.state,
            model: current.model,
            viewer: current.viewer,
        })
    }

    /// The tenant's engagements matching `filter`, after `after_id`: all of them for a
    /// reader of every engagement, a person's own for a person.
    pub async fn list_engagements(
        &self,
        principal: &Principal,
        method: Method,
        tenant: &str,
        mut filter: EngagementFilter,
        after_id: Option<&str>,
        limit: u64,
    ) -> Result<(Vec<EngagementSummary>, bool), AppError> {
        check_without_state(principal, method, tenant)?;
        if !reads_every_engagement(principal) {
            match &filter.person {
                Some(person) if *person != principal.subject => return Ok((Vec::new(), false)),
                _ => filter.person = Some(principal.subject.clone()),
            }
        }
        let mut summaries = self
            .store
            .list_engagements(tenant, &filter, after_id, limit + 1)
            .await?;
        Ok(split(&mut summaries, limit))
    }

    /// A person's work queue: anyone's for a reader of every engagement, one's own for a
    /// person.
    pub async fn list_tasks(
        &self,
        principal: &Principal,
        method: Method,
        tenant: &str,
        filter: &TaskFilter,
        after: Option<&TaskCursor>,
        limit: u64,
    ) -> Result<(Vec<TaskRow>, bool), AppError> {
        check_without_state(principal, method, tenant)?;
        if !reads_every_engagement(principal) && filter.assignee != principal.subject {
            return Ok((Vec::new(), false));
        }
        let mut rows = self.store.list_tasks(tenant, filter, after, limit + 1).await?;
        Ok(split(&mut rows, limit))
    }

    /// Whether `principal` may watch the public events of `tenant` (of one engagement, when
    /// given), and what it may see of them.
    pub async fn events(
        &self,
        principal: &Principal,
        method: Method,
        tenant: &str,
        engagement: Option<&EngagementName>,
    ) -> Result<EventsGrant, AppError> {
        if check_without_state(principal, method, tenant)?.is_some() {
            return Ok(EventsGrant::Tenant);
        }
        let Some(name) = engagement else {
            return Err(authorization::Denial::scope_required(method, Scope::EventsRead).into());
        };
        let view = self.engagement(principal, method, name).await?;
        Ok(EventsGrant::Engagement {
            viewer: view.viewer,
            model: view.model,
        })
    }

    // ----- models --------------------------------------------------------------------------

    /// Checks that `principal` may call a model method in `tenant`.
    pub fn check_models(&self, principal: &Principal, method: Method, tenant: &str) -> Result<(), AppError> {
        check_without_state(principal, method, tenant)?;
        Ok(())
    }

    /// A model version (the latest when the name has none).
    pub async fn get_model(
        &self,
        principal: &Principal,
        method: Method,
        name: &ModelName,
    ) -> Result<ModelView, AppError> {
        check_without_state(principal, method, &name.tenant)?;
        self.stored_model(&name.tenant, &name.key, name.version).await
    }

    /// The latest version of each of the tenant's models, after `after_key`.
    pub async fn list_models(
        &self,
        principal: &Principal,
        method: Method,
        tenant: &str,
        after_key: Option<&str>,
        limit: u64,
    ) -> Result<(Vec<ModelView>, bool), AppError> {
        check_without_state(principal, method, tenant)?;
        let stored = self.store.list_models(tenant, after_key, limit + 1).await?;
        self.compiled_page(stored, limit)
    }

    /// Versions of one model, newest first, older than `before_version`.
    pub async fn list_model_versions(
        &self,
        principal: &Principal,
        method: Method,
        name: &ModelName,
        before_version: Option<u32>,
        limit: u64,
    ) -> Result<(Vec<ModelView>, bool), AppError> {
        check_without_state(principal, method, &name.tenant)?;
        let stored = self
            .store
            .list_model_versions(&name.tenant, &name.key, before_version, limit + 1)
            .await?;
        if stored.is_empty() && before_version.is_none() {
            return Err(AppError::not_found(Resource::Model, name.to_string()));
        }
        self.compiled_page(stored, limit)
    }

    /// What changed from one version of a model to another.
    pub async fn diff_models(
        &self,
        principal: &Principal,
        method: Method,
        name: &ModelName,
        from: u32,
        to: u32,
    ) -> Result<coachflow_model::ModelDiff, AppError> {
        check_without_state(principal, method, &name.tenant)?;
        let old = self.stored_model(&name.tenant, &name.key, Some(from)).await?;
        let new = self.stored_model(&name.tenant, &name.key, Some(to)).await?;
        Ok(coachflow_model::diff(&old.model, &new.model))
    }

    fn compiled_page(&self, mut stored: Vec<StoredModel>, limit: u64) -> Result<(Vec<ModelView>, bool), AppError> {
        let (stored, more) = split(&mut stored, limit);
        let views = stored
            .into_iter()
            .map(|stored| self.compile(stored))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((views, more))
    }
}

/// Whether `principal` reads every engagement of its tenant.
fn reads_every_engagement(principal: &Principal) -> bool {
    [Scope::EngagementsRead, Scope::EngagementsWrite, Scope::ContentRead]
        .into_iter()
        .any(|scope| principal.has(scope))
}

/// Of `limit + 1` items fetched, the first `limit`, and whether there are more.
fn split<T>(items: &mut Vec<T>, limit: u64) -> (Vec<T>, bool) {
    let more = items.len() as u64 > limit;
    items.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    (std::mem::take(items), more)
}
