//! `coachflow.v1.EngagementService`.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::NaiveDate;
use coachflow_engine::Action;
use coachflow_store::{EngagementFilter, TaskCursor, TaskFilter, TaskQueue};
use tonic::{Request, Response, Status};

use super::operations;
use super::{decode_page_token, encode_page_token, observe, page_size, principal};
use crate::application::{
    AppError, BulkMigration, Core, CreateEngagement, EngagementName, Method, MigrateEngagement, MigrateTo, ModelName,
    Mutation, Principal, TaskName, TenantName,
};
use crate::proto::{self, engagement_service_server::EngagementService};
use crate::transport::convert::{self, non_empty};

/// The method `name` of this service, as the authorization table knows it.
macro_rules! method {
    ($name:literal) => {
        Method::named(concat!("coachflow.v1.EngagementService/", $name))
    };
}

#[derive(Debug, Clone)]
pub struct EngagementApi {
    core: Arc<Core>,
}

impl EngagementApi {
    pub fn new(core: Arc<Core>) -> EngagementApi {
        EngagementApi { core }
    }

    /// Runs a command on an existing engagement: the common tail of every mutating method.
    async fn mutate(
        &self,
        principal: &Principal,
        method: Method,
        engagement: EngagementName,
        action: Action,
        request: &impl MutatingRequest,
        fields: impl Fn(&str) -> String,
    ) -> Result<proto::Engagement, AppError> {
        let expected_sequence = if request.etag().is_empty() {
            None
        } else {
            Some(convert::parse_etag("etag", request.etag())?)
        };
        let executed = self
            .core
            .execute(
                principal,
                Mutation {
                    engagement,
                    method,
                    action,
                    expected_sequence,
                    request_id: request.request_id().to_owned(),
                },
            )
            .await
            .map_err(|error| error.map_fields(&fields))?;
        Ok(convert::engagement(&executed.engagement))
    }
}

/// A request that changes an engagement: it carries an optional etag and request id.
trait MutatingRequest {
    fn etag(&self) -> &str;
    fn request_id(&self) -> &str;
}

macro_rules! mutating_requests {
    ($($request:ident),* $(,)?) => {$(
        impl MutatingRequest for proto::$request {
            fn etag(&self) -> &str {
                &self.etag
            }
            fn request_id(&self) -> &str {
                &self.request_id
            }
        }
    )*};
}

mutating_requests!(
    CompleteTaskRequest,
    SkipTaskRequest,
    AssignTaskRequest,
    AddParticipantRequest,
    RecordGoalRequest,
    RecordGoalProgressRequest,
    RecordCommitmentRequest,
    RecordCommitmentFollowUpRequest,
    SignOffPhaseRequest,
    AdvancePhaseRequest,
    ReopenTaskRequest,
    MoveToPhaseRequest,
    WithdrawSignOffRequest,
    SuspendEngagementRequest,
    ResumeEngagementRequest,
    CancelEngagementRequest,
);

/// Engine field names that differ from the request's.
fn rename<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> String + 'a {
    move |field: &str| {
        for (engine, request) in pairs {
            if field == *engine {
                return (*request).to_owned();
            }
            if let Some(rest) = field
                .strip_prefix(engine)
                .filter(|rest| rest.starts_with('.') || rest.starts_with('['))
            {
                return format!("{request}{rest}");
            }
        }
        field.to_owned()
    }
}

fn people(bindings: &[proto::RoleBinding]) -> Result<BTreeMap<String, Vec<String>>, AppError> {
    let mut people: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (index, binding) in bindings.iter().enumerate() {
        if binding.role.is_empty() {
            return Err(AppError::invalid(format!("people[{index}].role"), "is required"));
        }
        people
            .entry(binding.role.clone())
            .or_default()
            .extend(binding.people.iter().cloned());
    }
    Ok(people)
}

fn due_date(field: &str, text: &str) -> Result<Option<NaiveDate>, AppError> {
    if text.is_empty() {
        return Ok(None);
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map(Some)
        .map_err(|_| AppError::invalid(field, format!("'{text}' is not a date like 2026-12-31")))
}

fn optional_time(
    field: &str,
    at: Option<&prost_types::Timestamp>,
) -> Result<Option<chrono::DateTime<chrono::Utc>>, AppError> {
    at.map(|at| convert::from_timestamp(field, at)).transpose()
}

#[tonic::async_trait]
impl EngagementService for EngagementApi {
    async fn create_engagement(
        &self,
        request: Request<proto::CreateEngagementRequest>,
    ) -> Result<Response<proto::Engagement>, Status> {
        let method = method!("CreateEngagement");
        let principal = principal(&request).map_err(Status::from)?;
        observe(method, &principal, async {
            let request = request.into_inner();
            let tenant = TenantName::parse("parent", &request.parent)?;
            let id = if request.engagement_id.is_empty() {
                None
            } else {
                Some(EngagementName::id("engagement_id", &request.engagement_id)?)
            };
            let model = ModelName::parse_reference("model", &request.model, &tenant.tenant)?;
            let create = CreateEngagement {
                id,
                model: model.key,
                version: (request.model_version != 0).then_some(request.model_version),
                timezone: non_empty(&request.timezone),
                people: people(&request.people)?,
            };
            let view = self
                .core
                .create(&principal, method, &tenant.tenant, create, &request.request_id)
                .await?;
            Ok(convert::engagement(&view))
        })
        .await
    }

    async fn get_engagement(
        &self,
        request: Request<proto::GetEngagementRequest>,
    ) -> Result<Response<proto::Engagement>, Status> {
        let method = method!("GetEngagement");
        let principal = principal(&request).map_err(Status::from)?;
        observe(method, &principal, async {
            let name = EngagementName::parse("name", &request.get_ref().name)?;
            let view = self.core.engagement(&principal, method, &name).await?;
            Ok(convert::engagement(&view))
        })
        .await
    }

    async fn list_engagements(
        &self,
        request: Request<proto::ListEngagementsRequest>,
    ) -> Result<Response<proto::ListEngagementsResponse>, Status> {
        let method = method!("ListEngagements");
        let principal = principal(&request).map_err(Status::from)?;
        observe(method, &principal, async {
            let request = request.into_inner();
            let tenant = TenantName::parse("parent", &request.parent)?;
            let limit = page_size(request.page_size)?;
            let state = proto::engagement::State::try_from(request.state)
                .map_err(|_| AppError::invalid("state", format!("{} is not an Engagement.State", request.state)))?;
            let model = if request.model.is_empty() {
                None
            } else {
                Some(ModelName::parse_reference("model", &request.model, &tenant.tenant)?)
            };
            let filter = EngagementFilter {
                model_version: model.as_ref().and_then(|model| model.version),
                model_key: model.map(|model| model.key),
                status: convert::state_filter(state).map(str::to_owned),
                phase: non_empty(&request.phase),
                person: non_empty(&request.person),
                overdue_only: request.overdue,
            };
            let fingerprint = format!("{tenant}|{filter:?}");
            let after: Option<String> = decode_page_token("engagements", &fingerprint, &request.page_token)?;
            let (summaries, more) = self
                .core
                .list_engagements(&principal, method, &tenant.tenant, filter, after.as_deref(), limit)
                .await?;
            let next_page_token = match summaries.last() {
                Some(last) if more => encode_page_token("engagements", &fingerprint, &last.id),
                _ => String::new(),
            };
            Ok(proto::ListEngagementsResponse {
                engagements: summaries.iter().map(convert::engagement_summary).collect(),
                next_page_token,
            })
        })
        .await
    }

    async fn complete_task(
        &self,
        request: Request<proto::CompleteTaskRequest>,
    ) -> Result<Response<proto::Engagement>, Status> {
        let method = method!("CompleteTask");
        let principal = principal(&request).map_err(Status::from)?;
        observe(method, &principal, async {
            let request = request.into_inner();
            let task = TaskName::parse("name", &request.name)?;
            let outputs = request
                .outputs
                .as_ref()
                .map(convert::struct_to_json)
                .unwrap_or_default();
            let action = Action::CompleteTask {
                task: task.task,
                outputs,
            };
            self.mutate(
                &principal,
                method,
                task.engagement,
                action,
                &request,
                rename(&[("task", "name")]),
            )
            .await
        })
        .await
    }

    async fn skip_task(&self, request: Request<proto::SkipTaskRequest>) -> Result<Response<proto::Engagement>, Status> {
        let method = method!("SkipTask");
        let principal = principal(&request).map_err(Status::from)?;
        observe(method, &principal, async {
            let request = request.into_inner();
            let task = TaskName::parse("name", &request.name)?;
            let action = Action::SkipTask {
                task: task.task,
                reason: request.reason.clone(),
            };
            self.mutate(
                &principal,
                method,
                task.engagement,
                action,
                &request,
                rename(&[("task", "name")]),
            )
            .await
        })
        .await
    }

    async fn assign_task(
        &self,
        request: Request<proto::AssignTaskRequest>,
    ) -> Result<Response<proto::Engagement>, Status> {
        let method = method!("AssignTask");
        let principal = principal(&request).map_err(Status::from)?;
        observe(method, &principal, async {
            let request = request.into_inner();
            let task = TaskName::parse("name", &request.name)?;
            let action = Action::AssignTask {
                task: task.task,
                assignee: request.assignee.clone(),
            };
            self.mutate(
                &principal,
                method,
                task.engagement,
                action,
                &request,
                rename(&[("task", "name")]),
            )
            .await
        })
        .await
    }

    async fn add_participant(
        &self,
        request: Request<proto::AddParticipantRequest>,
    ) -> Result<Response<proto::Engagement>, Status> {
        let method = method!("AddParticipant");
        let principal = principal(&request).map_err(Status::from)?;
        observe(method, &principal, async {
            let request = request.into_inner();
            let engagement = EngagementName::parse("engagement", &request.engagement)?;
            let action = Action::AddParticipant {
                role: request.role.clone(),
                person: request.person.clone(),
            };
            self.mutate(&principal, method, engagement, action, &request, rename(&[]))
                .await
        })
        .await
    }

    async fn record_goal(
        &self,
        request: Request<proto::RecordGoalRequest>,
    ) -> Result<Response<proto::Engagement>, Status> {
        let method = method!("RecordGoal");
        let principal = principal(&request).map_err(Status::from)?;
        observe(method, &principal, async {
            let request = request.into_inner();
            let engagement = EngagementName::parse("engagement", &request.engagement)?;
            let action = Action::RecordGoal {
                goal: request.goal_id.clone(),
                title: request.title.clone(),
                measure: non_empty(&request.measure),
                target: non_empty(&request.target),
                due: due_date("due_date", &request.due_date)?,
            };
            self.mutate(
                &principal,
                method,
                engagement,
                action,
                &request,
                rename(&[("goal", "goal_id"), ("due", "due_date")]),
            )
            .await
        })
        .await
    }

    async fn record_goal_progress(
        &self,
        request: Request<proto::RecordGoalProgressRequest>,
    ) -> Result<Response<proto::Engagement>, Status> {
        let method = method!("RecordGoalProgress");
        let principal = principal(&request).map_err(Status::from)?;
        observe(method, &principal, async {
            let request = request.into_inner();
            let engagement = EngagementName::parse("engagement", &request.engagement)?;
            let status = proto::goal::Status::try_from(request.status)
                .map_err(|_| AppError::invalid("status", format!("{} is not a Goal.Status", request.status)))?;
            let action = Action::RecordGoalProgress {
                goal: request.goal_id.clone(),
                progress: request.progress,
                status: convert::goal_status_from_proto(status),
                note: non_empty(&request.note),
            };
            self.mutate(
                &principal,
                method,
                engagement,
                action,
                &request,
                rename(&[("goal", "goal_id")]),
            )
            .await
        })
        .await
    }

    async fn record_commitment(
        &self,
        request: Request<proto::RecordCommitmentRequest>,
    ) -> Result<Response<proto::Engagement>, Status> {
        let method = method!("RecordCommitment");
        let principal = principal(&request).map_err(Status::from)?;
        observe(method, &principal, async {
            let request = request.into_inner();
            let engagement = EngagementName::parse("engagement", &request.engagement)?;
            let action = Action::RecordCommitment {
                commitment: request.commitment_id.clone(),
                description: request.description.clone(),
                owner: non_empty(&request.owner),
                due: optional_time("follow_up_time", request.follow_up_time.as_ref())?,
            };
            self.mutate(
                &principal,
                method,
                engagement,
                action,
                &request,
                rename(&[("commitment", "commitment_id"), ("due", "follow_up_time")]),
            )
            .await
        })
        .await
    }

    async fn record_commitment_follow_up(
        &self,
        request: Request<proto::RecordCommitmentFollowUpRequest>,
    ) -> Result<Response<proto::Engagement>, Status> {
        let method = method!("RecordCommitmentFollowUp");
        let principal = principal(&request).map_err(Status::from)?;
        observe(method, &principal, async {
            let request = request.into_inner();
            let engagement = EngagementName::parse("engagement", &request.engagement)?;
            let status = proto::commitment::Status::try_from(request.status)
                .ok()
                .and_then(convert::commitment_status_from_proto)
                .ok_or_else(|| AppError::invalid("status", "is required: KEPT, MISSED, RENEGOTIATED or DROPPED"))?;
            let action = Action::RecordCommitmentFollowUp {
                commitment: request.commitment_id.clone(),
                status,
                note: non_empty(&request.note),
                due: optional_time("follow_up_time", request.follow_up_time.as_ref())?,
            };
            self.mutate(
                &principal,
                method,
                engagement,
                action,
                &request,
                rename(&[("commitment", "commitment_id"), ("due", "follow_up_time")]),
            )
            .await
        })
        .await
    }

    async fn sign_off_phase(
        &self,
        request: Request<proto::SignOffPhaseRequest>,
    ) -> Result<Response<proto::Engagement>, Status> {
        let method = method!("SignOffPhase");
        let principal = principal(&request).map_err(Status::from)?;
        observe(method, &principal, async {
            let request = request.into_inner();
            let engagement = EngagementName::parse("engagement", &request.engagement)?;
            let action = Action::SignOff {
                role: request.role.clone(),
                person: request.person.clone(),
            };
            self.mutate(&principal, method, engagement, action, &request, rename(&[]))
                .await
        })
        .await
    }

    async fn advance_phase(
        &self,
        request: Request<proto::AdvancePhaseRequest>,
    ) -> Result<Response<proto::Engagement>, Status> {
        let method = method!("AdvancePhase");
        let principal = principal(&request).map_err(Status::from)?;
        observe(method, &principal, async {
            let request = request.into_inner();
            let engagement = EngagementName::parse("engagement", &request.engagement)?;
            let action = Action::AdvancePhase {
                expected_phase: non_empty(&request.expected_phase),
            };
            self.mutate(&principal, method, engagement, action, &request, rename(&[]))
                .await
        })
        .await
    }

    async fn reopen_task(
        &self,
        request: Request<proto::ReopenTaskRequest>,
    ) -> Result<Response<proto::Engagement>, Status> {
        let method = method!("ReopenTask");
        let principal = principal(&request).map_err(Status::from)?;
        observe(method, &principal, async {
            let request = request.into_inner();
            let task = TaskName::parse("name", &request.name)?;
            let action = Action::ReopenTask {
                task: task.task,
                reason: request.reason.clone(),
            };
            self.mutate(
                &principal,
                method,
                task.engagement,
                action,
                &request,
                rename(&[("task", "name")]),
            )
            .await
        })
        .await
    }

    async fn move_to_phase(
        &self,
        request: Request<proto::MoveToPhaseRequest>,
    ) -> Result<Response<proto::Engagement>, Status> {
        let method = method!("MoveToPhase");
        let principal = principal(&request).map_err(Status::from)?;
        observe(method, &principal, async {
            let request = request.into_inner();
            let engagement = EngagementName::parse("engagement", &request.engagement)?;
            let action = Action::MoveToPhase {
                phase: request.phase.clone(),
                reason: request.reason.clone(),
            };
            self.mutate(&principal, method, engagement, action, &request, rename(&[]))
                .await
        })
        .await
    }

    async fn migrate_engagement(
        &self,
        request: Request<proto::MigrateEngagementRequest>,
    ) -> Result<Response<proto::MigrateEngagementResponse>, Status> {
        let method = method!("MigrateEngagement");
        let principal = principal(&request).map_err(Status::from)?;
        observe(method, &principal, async {
            let request = request.into_inner();
            let engagement = EngagementName::parse("engagement", &request.engagement)?;
            let expected_sequence = if request.etag.is_empty() {
                None
            } else {
                Some(convert::parse_etag("etag", &request.etag)?)
            };
            let migration = MigrateEngagement {
                engagement,
                to: MigrateTo {
                    to_version: request.to_version,
                    mapping: operations::mapping("mapping", request.mapping)?,
                    reason: request.reason,
                },
                validate_only: request.validate_only,
                expected_sequence,
                request_id: request.request_id,
            };
            let outcome = self.core.migrate_engagement(&principal, method, migration).await?;
            Ok(proto::MigrateEngagementResponse {
                engagement: Some(convert::engagement(&outcome.engagement)),
                conflicts: outcome.conflicts.iter().map(operations::conflict).collect(),
                plan: outcome.plan,
            })
        })
        .await
    }

    async fn migrate_engagements(
        &self,
        request: Request<proto::MigrateEngagementsRequest>,
    ) -> Result<Response<proto::google::longrunning::Operation>, Status> {
        let method = method!("MigrateEngagements");
        let principal = principal(&request).map_err(Status::from)?;
        observe(method, &principal, async {
            let request = request.into_inner();
            let tenant = TenantName::parse("parent", &request.parent)?;
            let model = ModelName::parse_reference("model", &request.model, &tenant.tenant)?;
            let state = proto::engagement::State::try_from(request.state)
                .map_err(|_| AppError::invalid("state", format!("{} is not an Engagement.State", request.state)))?;
            let status = match state {
                proto::engagement::State::Unspecified => None,
                proto::engagement::State::Active | proto::engagement::State::Suspended => {
                    convert::state_filter(state).map(str::to_owned)
                }
                _ => {
                    return Err(AppError::invalid(
                        "state",
                        "an ended engagement keeps the version it ran on: say ACTIVE or SUSPENDED, or nothing",
                    ));
                }
            };
            if request.from_version == 0 {
                return Err(AppError::invalid("from_version", "is required"));
            }
            if request.to_version == 0 {
                return Err(AppError::invalid("to_version", "is required"));
            }
            let bulk = BulkMigration {
                model: model.key,
                from_version: request.from_version,
                phase: non_empty(&request.phase),
                status,
                to: MigrateTo {
                    to_version: request.to_version,
                    mapping: operations::mapping("mapping", request.mapping)?,
                    reason: request.reason,
                },
                validate_only: request.validate_only,
            };
            let view = self
                .core
                .start_migration(&principal, method, &tenant.tenant, bulk, &request.request_id)
                .await?;
            Ok(operations::operation(&view))
        })
        .await
    }

    async fn withdraw_sign_off(
        &self,
        request: Request<proto::WithdrawSignOffRequest>,
    ) -> Result<Response<proto::Engagement>, Status> {
        let method = method!("WithdrawSignOff");
        let principal = principal(&request).map_err(Status::from)?;
        observe(method, &principal, async {
            let request = request.into_inner();
            let engagement = EngagementName::parse("engagement", &request.engagement)?;
            let action = Action::WithdrawSignOff {
                role: request.role.clone(),
                reason: request.reason.clone(),
            };
            self.mutate(&principal, method, engagement, action, &request, rename(&[]))
                .await
        })
        .await
    }

    async fn suspend_engagement(
        &self,
        request: Request<proto::SuspendEngagementRequest>,
    ) -> Result<Response<proto::Engagement>, Status> {
        let method = method!("SuspendEngagement");
        let principal = principal(&request).map_err(Status::from)?;
        observe(method, &principal, async {
            let request = request.into_inner();
            let engagement = EngagementName::parse("name", &request.name)?;
            let action = Action::Suspend {
                reason: non_empty(&request.reason),
            };
            self.mutate(&principal, method, engagement, action, &request, rename(&[]))
                .await
        })
        .await
    }

    async fn resume_engagement(
        &self,
        request: Request<proto::ResumeEngagementRequest>,
    ) -> Result<Response<proto::Engagement>, Status> {
        let method = method!("ResumeEngagement");
        let principal = principal(&request).map_err(Status::from)?;
        observe(method, &principal, async {
            let request = request.into_inner();
            let engagement = EngagementName::parse("name", &request.name)?;
            self.mutate(&principal, method, engagement, Action::Resume, &request, rename(&[]))
                .await
        })
        .await
    }

    async fn cancel_engagement(
        &self,
        request: Request<proto::CancelEngagementRequest>,
    ) -> Result<Response<proto::Engagement>, Status> {
        let method = method!("CancelEngagement");
        let principal = principal(&request).map_err(Status::from)?;
        observe(method, &principal, async {
            let request = request.into_inner();
            let engagement = EngagementName::parse("name", &request.name)?;
            let action = Action::Cancel {
                reason: non_empty(&request.reason),
            };
            self.mutate(&principal, method, engagement, action, &request, rename(&[]))
                .await
        })
        .await
    }

    async fn list_tasks(
        &self,
        request: Request<proto::ListTasksRequest>,
    ) -> Result<Response<proto::ListTasksResponse>, Status> {
        let method = method!("ListTasks");
        let principal = principal(&request).map_err(Status::from)?;
        observe(method, &principal, async {
            let request = request.into_inner();
            let tenant = TenantName::parse("parent", &request.parent)?;
            if request.assignee.is_empty() {
                return Err(AppError::invalid(
                    "assignee",
                    "is required: the person whose queue to list",
                ));
            }
            let queue = match proto::list_tasks_request::Queue::try_from(request.queue) {
                Ok(proto::list_tasks_request::Queue::Unspecified) => TaskQueue::Open,
                Ok(proto::list_tasks_request::Queue::DueSoon) => TaskQueue::DueSoon,
                Ok(proto::list_tasks_request::Queue::Overdue) => TaskQueue::Overdue,
                Err(_) => return Err(AppError::invalid("queue", format!("{} is not a Queue", request.queue))),
            };
            let limit = page_size(request.page_size)?;
            let filter = TaskFilter {
                assignee: request.assignee.clone(),
                queue,
            };
            let fingerprint = format!("{tenant}|{filter:?}");
            let after: Option<TaskCursor> = decode_page_token("tasks", &fingerprint, &request.page_token)?;
            let (rows, more) = self
                .core
                .list_tasks(&principal, method, &tenant.tenant, &filter, after.as_ref(), limit)
                .await?;
            let next_page_token = match rows.last() {
                Some(last) if more => encode_page_token(
                    "tasks",
                    &fingerprint,
                    &TaskCursor {
                        due_at: last.due_at,
                        engagement: last.engagement.clone(),
                        task_id: last.task_id.clone(),
                    },
                ),
                _ => String::new(),
            };
            Ok(proto::ListTasksResponse {
                tasks: rows.iter().map(convert::task_row).collect(),
                next_page_token,
            })
        })
        .await
    }

    async fn get_history(
        &self,
        request: Request<proto::GetHistoryRequest>,
    ) -> Result<Response<proto::GetHistoryResponse>, Status> {
        let method = method!("GetHistory");
        let principal = principal(&request).map_err(Status::from)?;
        observe(method, &principal, async {
            let request = request.into_inner();
            let name = EngagementName::parse("name", &request.name)?;
            let limit = page_size(request.page_size)?;
            let after: Option<u64> = decode_page_token("history", &name.to_string(), &request.page_token)?;
            let view = self
                .core
                .history(&principal, method, &name, after.unwrap_or(0), limit)
                .await?;
            let next_page_token = match view.events.last() {
                Some(last) if view.more => encode_page_token("history", &name.to_string(), &last.sequence),
                _ => String::new(),
            };
            Ok(proto::GetHistoryResponse {
                events: view
                    .events
                    .iter()
                    .map(|event| convert::history_event(event, &view))
                    .collect(),
                next_page_token,
            })
        })
        .await
    }

    async fn erase_engagement_content(
        &self,
        request: Request<proto::EraseEngagementContentRequest>,
    ) -> Result<Response<proto::Engagement>, Status> {
        let method = method!("EraseEngagementContent");
        let principal = principal(&request).map_err(Status::from)?;
        observe(method, &principal, async {
            let request = request.into_inner();
            let engagement = EngagementName::parse("name", &request.name)?;
            let expected_sequence = if request.etag.is_empty() {
                None
            } else {
                Some(convert::parse_etag("etag", &request.etag)?)
            };
            let executed = self
                .core
                .erase_engagement_content(&principal, method, engagement, expected_sequence, &request.request_id)
                .await?;
            Ok(convert::engagement(&executed.engagement))
        })
        .await
    }

    async fn erase_person_data(
        &self,
        request: Request<proto::ErasePersonDataRequest>,
    ) -> Result<Response<proto::ErasePersonDataResponse>, Status> {
        let method = method!("ErasePersonData");
        let principal = principal(&request).map_err(Status::from)?;
        observe(method, &principal, async {
            let request = request.into_inner();
            let tenant = TenantName::parse("parent", &request.parent)?;
            let erasure = self
                .core
                .erase_person(&principal, method, &tenant.tenant, &request.person)
                .await?;
            Ok(proto::ErasePersonDataResponse {
                pseudonym: erasure.pseudonym,
                engagements: erasure.engagements.iter().map(ToString::to_string).collect(),
                content_erased: erasure.content_erased.iter().map(ToString::to_string).collect(),
            })
        })
        .await
    }

    async fn export_person_data(
        &self,
        request: Request<proto::ExportPersonDataRequest>,
    ) -> Result<Response<proto::ExportPersonDataResponse>, Status> {
        let method = method!("ExportPersonData");
        let principal = principal(&request).map_err(Status::from)?;
        observe(method, &principal, async {
            let request = request.into_inner();
            let tenant = TenantName::parse("parent", &request.parent)?;
            let document = self
                .core
                .export_person(&principal, method, &tenant.tenant, &request.person)
                .await?;
            Ok(proto::ExportPersonDataResponse {
                content_type: "application/json".to_owned(),
                json: document.to_string(),
            })
        })
        .await
    }
}
