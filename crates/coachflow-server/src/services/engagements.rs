//! `coachflow.v1.EngagementService`.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::NaiveDate;
use coachflow_engine::{Action, Command};
use coachflow_store::{EngagementFilter, TaskCursor, TaskFilter, TaskQueue};
use tonic::{Request, Response, Status};

use super::{actor, decode_page_token, encode_page_token, observe, page_size, split_page};
use crate::convert::{self, non_empty};
use crate::core::{Core, Mutation, RequestKey};
use crate::error::ApiError;
use crate::names::{EngagementName, ModelName, TaskName, TenantName};
use crate::proto::{self, engagement_service_server::EngagementService};

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
        method: &'static str,
        engagement: EngagementName,
        actor: coachflow_engine::Actor,
        action: Action,
        request: &impl MutatingRequest,
        fields: impl Fn(&str) -> String,
    ) -> Result<proto::Engagement, ApiError> {
        let expected_sequence = if request.etag().is_empty() {
            None
        } else {
            Some(convert::parse_etag("etag", request.etag())?)
        };
        let key = RequestKey::of(&engagement.tenant, method, request.request_id(), request);
        let executed = self
            .core
            .execute(Mutation {
                engagement,
                actor,
                action,
                expected_sequence,
                request: key,
            })
            .await
            .map_err(|error| error.map_fields(&fields))?;
        Ok(executed.engagement)
    }
}

/// A request that changes an engagement: it carries an optional etag and request id.
trait MutatingRequest: prost::Message {
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

fn people(bindings: &[proto::RoleBinding]) -> Result<BTreeMap<String, Vec<String>>, ApiError> {
    let mut people: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (index, binding) in bindings.iter().enumerate() {
        if binding.role.is_empty() {
            return Err(ApiError::invalid(format!("people[{index}].role"), "is required"));
        }
        people
            .entry(binding.role.clone())
            .or_default()
            .extend(binding.people.iter().cloned());
    }
    Ok(people)
}

fn due_date(field: &str, text: &str) -> Result<Option<NaiveDate>, ApiError> {
    if text.is_empty() {
        return Ok(None);
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map(Some)
        .map_err(|_| ApiError::invalid(field, format!("'{text}' is not a date like 2026-12-31")))
}

fn optional_time(
    field: &str,
    at: Option<&prost_types::Timestamp>,
) -> Result<Option<chrono::DateTime<chrono::Utc>>, ApiError> {
    at.map(|at| convert::from_timestamp(field, at)).transpose()
}

#[tonic::async_trait]
impl EngagementService for EngagementApi {
    async fn create_engagement(
        &self,
        request: Request<proto::CreateEngagementRequest>,
    ) -> Result<Response<proto::Engagement>, Status> {
        observe("CreateEngagement", async {
            let actor = actor(&request)?;
            let request = request.into_inner();
            let tenant = TenantName::parse("parent", &request.parent)?;
            let id = if request.engagement_id.is_empty() {
                uuid::Uuid::now_v7().to_string()
            } else {
                EngagementName::id("engagement_id", &request.engagement_id)?
            };
            let model_name = ModelName::parse_reference("model", &request.model, &tenant.tenant)?;
            let version = (request.model_version != 0).then_some(request.model_version);
            let (stored, model) = self.core.stored_model(&tenant.tenant, &model_name.key, version).await?;
            let people = people(&request.people)?;
            let name = EngagementName::new(&tenant.tenant, &id);
            let key = RequestKey::of(&tenant.tenant, "CreateEngagement", &request.request_id, &request);
            let command = Command {
                actor,
                action: Action::Start {
                    model_version: stored.version,
                    timezone: non_empty(&request.timezone),
                    people,
                },
            };
            self.core.create(&name, &model, command, key).await
        })
        .await
    }

    async fn get_engagement(
        &self,
        request: Request<proto::GetEngagementRequest>,
    ) -> Result<Response<proto::Engagement>, Status> {
        observe("GetEngagement", async {
            let name = EngagementName::parse("name", &request.get_ref().name)?;
            self.core.get(&name).await
        })
        .await
    }

    async fn list_engagements(
        &self,
        request: Request<proto::ListEngagementsRequest>,
    ) -> Result<Response<proto::ListEngagementsResponse>, Status> {
        observe("ListEngagements", async {
            let request = request.into_inner();
            let tenant = TenantName::parse("parent", &request.parent)?;
            let limit = page_size(request.page_size)?;
            let state = proto::engagement::State::try_from(request.state)
                .map_err(|_| ApiError::invalid("state", format!("{} is not an Engagement.State", request.state)))?;
            let filter = EngagementFilter {
                model_key: if request.model.is_empty() {
                    None
                } else {
                    Some(ModelName::parse_reference("model", &request.model, &tenant.tenant)?.key)
                },
                status: convert::state_filter(state).map(str::to_owned),
                phase: non_empty(&request.phase),
                person: non_empty(&request.person),
                overdue_only: request.overdue,
            };
            let fingerprint = format!("{tenant}|{filter:?}");
            let after: Option<String> = decode_page_token("engagements", &fingerprint, &request.page_token)?;
            let summaries = self
                .core
                .store()
                .list_engagements(&tenant.tenant, &filter, after.as_deref(), limit + 1)
                .await?;
            let (summaries, more) = split_page(summaries, limit);
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
        observe("CompleteTask", async {
            let actor = actor(&request)?;
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
                "CompleteTask",
                task.engagement,
                actor,
                action,
                &request,
                rename(&[("task", "name")]),
            )
            .await
        })
        .await
    }

    async fn skip_task(&self, request: Request<proto::SkipTaskRequest>) -> Result<Response<proto::Engagement>, Status> {
        observe("SkipTask", async {
            let actor = actor(&request)?;
            let request = request.into_inner();
            let task = TaskName::parse("name", &request.name)?;
            let action = Action::SkipTask {
                task: task.task,
                reason: request.reason.clone(),
            };
            self.mutate(
                "SkipTask",
                task.engagement,
                actor,
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
        observe("AssignTask", async {
            let actor = actor(&request)?;
            let request = request.into_inner();
            let task = TaskName::parse("name", &request.name)?;
            let action = Action::AssignTask {
                task: task.task,
                assignee: request.assignee.clone(),
            };
            self.mutate(
                "AssignTask",
                task.engagement,
                actor,
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
        observe("AddParticipant", async {
            let actor = actor(&request)?;
            let request = request.into_inner();
            let engagement = EngagementName::parse("engagement", &request.engagement)?;
            let action = Action::AddParticipant {
                role: request.role.clone(),
                person: request.person.clone(),
            };
            self.mutate("AddParticipant", engagement, actor, action, &request, rename(&[]))
                .await
        })
        .await
    }

    async fn record_goal(
        &self,
        request: Request<proto::RecordGoalRequest>,
    ) -> Result<Response<proto::Engagement>, Status> {
        observe("RecordGoal", async {
            let actor = actor(&request)?;
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
                "RecordGoal",
                engagement,
                actor,
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
        observe("RecordGoalProgress", async {
            let actor = actor(&request)?;
            let request = request.into_inner();
            let engagement = EngagementName::parse("engagement", &request.engagement)?;
            let status = proto::goal::Status::try_from(request.status)
                .map_err(|_| ApiError::invalid("status", format!("{} is not a Goal.Status", request.status)))?;
            let action = Action::RecordGoalProgress {
                goal: request.goal_id.clone(),
                progress: request.progress,
                status: convert::goal_status_from_proto(status),
                note: non_empty(&request.note),
            };
            self.mutate(
                "RecordGoalProgress",
                engagement,
                actor,
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
        observe("RecordCommitment", async {
            let actor = actor(&request)?;
            let request = request.into_inner();
            let engagement = EngagementName::parse("engagement", &request.engagement)?;
            let action = Action::RecordCommitment {
                commitment: request.commitment_id.clone(),
                description: request.description.clone(),
                owner: non_empty(&request.owner),
                due: optional_time("follow_up_time", request.follow_up_time.as_ref())?,
            };
            self.mutate(
                "RecordCommitment",
                engagement,
                actor,
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
        observe("RecordCommitmentFollowUp", async {
            let actor = actor(&request)?;
            let request = request.into_inner();
            let engagement = EngagementName::parse("engagement", &request.engagement)?;
            let status = proto::commitment::Status::try_from(request.status)
                .ok()
                .and_then(convert::commitment_status_from_proto)
                .ok_or_else(|| ApiError::invalid("status", "is required: KEPT, MISSED, RENEGOTIATED or DROPPED"))?;
            let action = Action::RecordCommitmentFollowUp {
                commitment: request.commitment_id.clone(),
                status,
                note: non_empty(&request.note),
                due: optional_time("follow_up_time", request.follow_up_time.as_ref())?,
            };
            self.mutate(
                "RecordCommitmentFollowUp",
                engagement,
                actor,
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
        observe("SignOffPhase", async {
            let actor = actor(&request)?;
            let request = request.into_inner();
            let engagement = EngagementName::parse("engagement", &request.engagement)?;
            let action = Action::SignOff {
                role: request.role.clone(),
                person: request.person.clone(),
            };
            self.mutate("SignOffPhase", engagement, actor, action, &request, rename(&[]))
                .await
        })
        .await
    }

    async fn advance_phase(
        &self,
        request: Request<proto::AdvancePhaseRequest>,
    ) -> Result<Response<proto::Engagement>, Status> {
        observe("AdvancePhase", async {
            let actor = actor(&request)?;
            let request = request.into_inner();
            let engagement = EngagementName::parse("engagement", &request.engagement)?;
            let action = Action::AdvancePhase {
                expected_phase: non_empty(&request.expected_phase),
            };
            self.mutate("AdvancePhase", engagement, actor, action, &request, rename(&[]))
                .await
        })
        .await
    }

    async fn suspend_engagement(
        &self,
        request: Request<proto::SuspendEngagementRequest>,
    ) -> Result<Response<proto::Engagement>, Status> {
        observe("SuspendEngagement", async {
            let actor = actor(&request)?;
            let request = request.into_inner();
            let engagement = EngagementName::parse("name", &request.name)?;
            let action = Action::Suspend {
                reason: non_empty(&request.reason),
            };
            self.mutate("SuspendEngagement", engagement, actor, action, &request, rename(&[]))
                .await
        })
        .await
    }

    async fn resume_engagement(
        &self,
        request: Request<proto::ResumeEngagementRequest>,
    ) -> Result<Response<proto::Engagement>, Status> {
        observe("ResumeEngagement", async {
            let actor = actor(&request)?;
            let request = request.into_inner();
            let engagement = EngagementName::parse("name", &request.name)?;
            self.mutate(
                "ResumeEngagement",
                engagement,
                actor,
                Action::Resume,
                &request,
                rename(&[]),
            )
            .await
        })
        .await
    }

    async fn cancel_engagement(
        &self,
        request: Request<proto::CancelEngagementRequest>,
    ) -> Result<Response<proto::Engagement>, Status> {
        observe("CancelEngagement", async {
            let actor = actor(&request)?;
            let request = request.into_inner();
            let engagement = EngagementName::parse("name", &request.name)?;
            let action = Action::Cancel {
                reason: non_empty(&request.reason),
            };
            self.mutate("CancelEngagement", engagement, actor, action, &request, rename(&[]))
                .await
        })
        .await
    }

    async fn list_tasks(
        &self,
        request: Request<proto::ListTasksRequest>,
    ) -> Result<Response<proto::ListTasksResponse>, Status> {
        observe("ListTasks", async {
            let request = request.into_inner();
            let tenant = TenantName::parse("parent", &request.parent)?;
            if request.assignee.is_empty() {
                return Err(ApiError::invalid(
                    "assignee",
                    "is required: the person whose queue to list",
                ));
            }
            let queue = match proto::list_tasks_request::Queue::try_from(request.queue) {
                Ok(proto::list_tasks_request::Queue::Unspecified) => TaskQueue::Open,
                Ok(proto::list_tasks_request::Queue::DueSoon) => TaskQueue::DueSoon,
                Ok(proto::list_tasks_request::Queue::Overdue) => TaskQueue::Overdue,
                Err(_) => return Err(ApiError::invalid("queue", format!("{} is not a Queue", request.queue))),
            };
            let limit = page_size(request.page_size)?;
            let filter = TaskFilter {
                assignee: request.assignee.clone(),
                queue,
            };
            let fingerprint = format!("{tenant}|{filter:?}");
            let after: Option<TaskCursor> = decode_page_token("tasks", &fingerprint, &request.page_token)?;
            let rows = self
                .core
                .store()
                .list_tasks(&tenant.tenant, &filter, after.as_ref(), limit + 1)
                .await?;
            let (rows, more) = split_page(rows, limit);
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
        observe("GetHistory", async {
            let request = request.into_inner();
            let name = EngagementName::parse("name", &request.name)?;
            let limit = page_size(request.page_size)?;
            let after: Option<u64> = decode_page_token("history", &name.to_string(), &request.page_token)?;
            let events = self
                .core
                .store()
                .history(&name.tenant, &name.id, after.unwrap_or(0), limit + 1)
                .await?;
            if events.is_empty() && after.is_none() {
                return Err(ApiError::NotFound {
                    resource: "engagement",
                    name: name.to_string(),
                });
            }
            let (events, more) = split_page(events, limit);
            let next_page_token = match events.last() {
                Some(last) if more => encode_page_token("history", &name.to_string(), &last.sequence),
                _ => String::new(),
            };
            Ok(proto::GetHistoryResponse {
                events: events.iter().map(convert::history_event).collect(),
                next_page_token,
            })
        })
        .await
    }
}
