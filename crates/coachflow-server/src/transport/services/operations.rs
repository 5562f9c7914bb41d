//! `google.longrunning.Operations` (AIP-151) for the bulk migrations, and the conversion of
//! an operation and of migration requests.

use std::sync::Arc;
use std::time::Duration;

use coachflow_engine::{Conflict, Disposition, Mapping};
use coachflow_store::{OperationStatus, PENDING_OUTCOME};
use tonic::{Request, Response, Status};

use super::{decode_page_token, encode_page_token, observe, page_size, principal};
use crate::application::{AppError, Core, ItemOutcome, Method, OperationName, OperationView, TenantName};
use crate::proto::google::longrunning::{self, operations_server::Operations};
use crate::proto::google::rpc;
use crate::proto::{self, engagement_migration};
use crate::transport::convert;

macro_rules! method {
    ($name:literal) => {
        Method::named(concat!("google.longrunning.Operations/", $name))
    };
}

/// How long `WaitOperation` waits when the request says nothing, and at most.
const WAIT_DEFAULT: Duration = Duration::from_secs(30);
const WAIT_MAX: Duration = Duration::from_secs(120);
/// How often a waiting call looks at the operation again.
const WAIT_POLL: Duration = Duration::from_millis(200);

/// The `google.protobuf.Any` of a message of the contract.
fn any(type_name: &str, message: &impl prost::Message) -> prost_types::Any {
    prost_types::Any {
        type_url: format!("type.googleapis.com/{type_name}"),
        value: message.encode_to_vec(),
    }
}

pub fn conflict(conflict: &Conflict) -> proto::MigrationConflict {
    proto::MigrationConflict {
        path: conflict.path.clone(),
        message: conflict.message.clone(),
    }
}

/// A mapping from the request, at `field` (`mapping`).
pub fn mapping(field: &str, mapping: Option<proto::MigrationMapping>) -> Result<Mapping, AppError> {
    let Some(mapping) = mapping else {
        return Ok(Mapping::default());
    };
    let disposition = |path: String, value: i32| -> Result<Option<Disposition>, AppError> {
        match proto::RemovedWork::try_from(value) {
            Ok(proto::RemovedWork::Unspecified) => Ok(None),
            Ok(proto::RemovedWork::Skip) => Ok(Some(Disposition::Skip)),
            Ok(proto::RemovedWork::Cancel) => Ok(Some(Disposition::Cancel)),
            Err(_) => Err(AppError::invalid(path, format!("{value} is not a RemovedWork"))),
        }
    };
    let mut removed = std::collections::BTreeMap::new();
    for (task, value) in mapping.removed {
        let path = format!("{field}.removed.{task}");
        match disposition(path.clone(), value)? {
            Some(disposition) => {
                removed.insert(task, disposition);
            }
            None => return Err(AppError::invalid(path, "say SKIP or CANCEL")),
        }
    }
    Ok(Mapping {
        phases: mapping.phases.into_iter().collect(),
        tasks: mapping.tasks.into_iter().collect(),
        removed,
        otherwise: disposition(format!("{field}.otherwise"), mapping.otherwise)?,
    })
}

fn item_outcome(outcome: &ItemOutcome) -> engagement_migration::Outcome {
    match outcome {
        ItemOutcome::Pending => engagement_migration::Outcome::Pending,
        ItemOutcome::Migrated => engagement_migration::Outcome::Migrated,
        ItemOutcome::AlreadyMigrated => engagement_migration::Outcome::AlreadyMigrated,
        ItemOutcome::WouldMigrate => engagement_migration::Outcome::WouldMigrate,
        ItemOutcome::Conflict { .. } => engagement_migration::Outcome::Conflict,
        ItemOutcome::Failed { .. } => engagement_migration::Outcome::Failed,
    }
}

fn count(view: &OperationView, outcome: &str) -> u32 {
    u32::try_from(view.stored.count(outcome)).unwrap_or(u32::MAX)
}

/// An operation as AIP-151 shows it: progress in `metadata`; once done, each engagement's
/// outcome in `response`, or `error` (CANCELLED when it was cancelled).
pub fn operation(view: &OperationView) -> longrunning::Operation {
    let stored = &view.stored;
    let metadata = proto::MigrateEngagementsMetadata {
        model: crate::application::ModelName::new(&stored.tenant, &view.request.model).to_string(),
        from_version: view.request.from_version,
        to_version: view.request.to.to_version,
        validate_only: view.request.validate_only,
        total: u32::try_from(stored.total()).unwrap_or(u32::MAX),
        migrated: count(view, "migrated"),
        already_migrated: count(view, "already_migrated"),
        would_migrate: count(view, "would_migrate"),
        conflicts: count(view, "conflict"),
        failed: count(view, "failed"),
        pending: count(view, PENDING_OUTCOME),
        create_time: Some(convert::timestamp(stored.created_at)),
        update_time: Some(convert::timestamp(stored.updated_at)),
        end_time: convert::optional_timestamp(stored.done_at),
        cancel_requested: stored.cancel_requested,
    };
    let result = match stored.status {
        OperationStatus::Running => None,
        OperationStatus::Cancelled => Some(longrunning::operation::Result::Error(rpc::Status {
            code: tonic::Code::Cancelled as i32,
            message: format!(
                "cancelled; {} engagements were not reached and stay where they were",
                metadata.pending
            ),
            details: Vec::new(),
        })),
        OperationStatus::Failed => Some(longrunning::operation::Result::Error(rpc::Status {
            code: tonic::Code::Internal as i32,
            message: stored
                .error
                .clone()
                .unwrap_or_else(|| "the operation failed".to_owned()),
            details: Vec::new(),
        })),
        OperationStatus::Succeeded => {
            let results = view
                .results
                .iter()
                .flatten()
                .map(|(engagement, outcome)| proto::EngagementMigration {
                    engagement: engagement.to_string(),
                    outcome: item_outcome(outcome) as i32,
                    conflicts: match outcome {
                        ItemOutcome::Conflict { conflicts } => conflicts.iter().map(conflict).collect(),
                        _ => Vec::new(),
                    },
                    error: match outcome {
                        ItemOutcome::Failed { error } => error.clone(),
                        _ => String::new(),
                    },
                })
                .collect();
            Some(longrunning::operation::Result::Response(any(
                "coachflow.v1.MigrateEngagementsResponse",
                &proto::MigrateEngagementsResponse { results },
            )))
        }
    };
    longrunning::Operation {
        name: view.name.to_string(),
        metadata: Some(any("coachflow.v1.MigrateEngagementsMetadata", &metadata)),
        done: stored.status.is_done(),
        result,
    }
}

#[derive(Debug, Clone)]
pub struct OperationsApi {
    core: Arc<Core>,
}

impl OperationsApi {
    pub fn new(core: Arc<Core>) -> OperationsApi {
        OperationsApi { core }
    }
}

/// `tenants/{tenant}` or `tenants/{tenant}/operations`: the collection `ListOperations` names.
fn collection(name: &str) -> Result<TenantName, AppError> {
    let tenant = name.strip_suffix("/operations").unwrap_or(name);
    TenantName::parse("name", tenant).map_err(|_| {
        AppError::invalid(
            "name",
            format!("'{name}' is not of the form 'tenants/{{tenant}}/operations'"),
        )
    })
}

#[tonic::async_trait]
impl Operations for OperationsApi {
    async fn list_operations(
        &self,
        request: Request<longrunning::ListOperationsRequest>,
    ) -> Result<Response<longrunning::ListOperationsResponse>, Status> {
        let method = method!("ListOperations");
        let principal = principal(&request).map_err(Status::from)?;
        observe(method, &principal, async {
            let request = request.into_inner();
            let tenant = collection(&request.name)?;
            if !request.filter.is_empty() {
                return Err(AppError::invalid("filter", "is not supported; leave it empty"));
            }
            let limit = page_size(request.page_size)?;
            let fingerprint = tenant.to_string();
            let before: Option<String> = decode_page_token("operations", &fingerprint, &request.page_token)?;
            let views = self
                .core
                .list_operations(&principal, method, &tenant.tenant, before.as_deref(), limit + 1)
                .await?;
            let more = views.len() as u64 > limit;
            let operations: Vec<_> = views.iter().take(limit as usize).map(operation).collect();
            let next_page_token = match views.get(limit as usize - 1) {
                Some(last) if more => encode_page_token("operations", &fingerprint, &last.name.id),
                _ => String::new(),
            };
            Ok(longrunning::ListOperationsResponse {
                operations,
                next_page_token,
            })
        })
        .await
    }

    async fn get_operation(
        &self,
        request: Request<longrunning::GetOperationRequest>,
    ) -> Result<Response<longrunning::Operation>, Status> {
        let method = method!("GetOperation");
        let principal = principal(&request).map_err(Status::from)?;
        observe(method, &principal, async {
            let name = OperationName::parse("name", &request.get_ref().name)?;
            let view = self.core.get_operation(&principal, method, &name).await?;
            Ok(operation(&view))
        })
        .await
    }

    async fn delete_operation(
        &self,
        request: Request<longrunning::DeleteOperationRequest>,
    ) -> Result<Response<()>, Status> {
        let method = method!("DeleteOperation");
        let principal = principal(&request).map_err(Status::from)?;
        observe(method, &principal, async {
            let name = OperationName::parse("name", &request.get_ref().name)?;
            self.core.delete_operation(&principal, method, &name).await
        })
        .await
    }

    async fn cancel_operation(
        &self,
        request: Request<longrunning::CancelOperationRequest>,
    ) -> Result<Response<()>, Status> {
        let method = method!("CancelOperation");
        let principal = principal(&request).map_err(Status::from)?;
        observe(method, &principal, async {
            let name = OperationName::parse("name", &request.get_ref().name)?;
            self.core.cancel_operation(&principal, method, &name).await
        })
        .await
    }

    /// Waits until the operation is done or the timeout passes (at most two minutes), and
    /// returns it as it is then.
    async fn wait_operation(
        &self,
        request: Request<longrunning::WaitOperationRequest>,
    ) -> Result<Response<longrunning::Operation>, Status> {
        let method = method!("WaitOperation");
        let principal = principal(&request).map_err(Status::from)?;
        observe(method, &principal, async {
            let request = request.into_inner();
            let name = OperationName::parse("name", &request.name)?;
            let timeout = match request.timeout {
                None => WAIT_DEFAULT,
                Some(timeout) => Duration::try_from(timeout)
                    .map_err(|_| AppError::invalid("timeout", "must not be negative"))?
                    .min(WAIT_MAX),
            };
            let deadline = tokio::time::Instant::now() + timeout;
            loop {
                let view = self.core.get_operation(&principal, method, &name).await?;
                if view.stored.status.is_done() || tokio::time::Instant::now() >= deadline {
                    return Ok(operation(&view));
                }
                tokio::time::sleep_until(deadline.min(tokio::time::Instant::now() + WAIT_POLL)).await;
            }
        })
        .await
    }
}
