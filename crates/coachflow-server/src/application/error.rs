//! Why a command or query was refused or failed, in the categories a caller acts on
//! differently, with typed reasons instead of strings. The transport layer maps each
//! category to its gRPC status in one place.

use std::fmt;

use coachflow_engine::DomainError;
use coachflow_store::StoreError;
use sea_orm::DbErr;

use super::authorization::Denial;

/// A field of a request and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub field: String,
    pub description: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}: {}", self.field, self.description)
    }
}

/// The kinds of resource a request names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    Model,
    Engagement,
    Task,
    Goal,
    Commitment,
    Operation,
}

impl Resource {
    pub fn as_str(self) -> &'static str {
        match self {
            Resource::Model => "model",
            Resource::Engagement => "engagement",
            Resource::Task => "task",
            Resource::Goal => "goal",
            Resource::Commitment => "commitment",
            Resource::Operation => "operation",
        }
    }

    fn from_engine(resource: &str) -> Resource {
        match resource {
            "goal" => Resource::Goal,
            "commitment" => Resource::Commitment,
            "engagement" => Resource::Engagement,
            "model" => Resource::Model,
            _ => Resource::Task,
        }
    }
}

/// Reasons beyond the engine's: what the command path itself refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// A refusal of the engine.
    Domain(coachflow_engine::Reason),
    /// The caller's etag is not the engagement's any more.
    EtagMismatch,
    /// Another request changed the same thing first, too often; retry.
    ConcurrentModification,
    /// A request with the same request id is being processed.
    RequestInProgress,
    /// The engagement id is taken.
    EngagementExists,
    /// Something with that name exists.
    AlreadyExists,
    /// The model version is deprecated: no new engagement starts on it.
    ModelVersionDeprecated,
    /// The long-running operation is still running.
    OperationRunning,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Domain(reason) => reason.as_str(),
            Reason::EtagMismatch => "ETAG_MISMATCH",
            Reason::ConcurrentModification => "CONCURRENT_MODIFICATION",
            Reason::RequestInProgress => "REQUEST_IN_PROGRESS",
            Reason::EngagementExists => "ENGAGEMENT_EXISTS",
            Reason::AlreadyExists => "ALREADY_EXISTS",
            Reason::ModelVersionDeprecated => "MODEL_VERSION_DEPRECATED",
            Reason::OperationRunning => "OPERATION_RUNNING",
        }
    }
}

/// Why a request was refused or failed. Nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppError {
    #[error("{}", join(.0))]
    InvalidArgument(Vec<Violation>),
    #[error("{} '{name}' not found", .resource.as_str())]
    NotFound { resource: Resource, name: String },
    /// The caller may not do this here (or may not know whether the resource exists).
    #[error("{0}")]
    PermissionDenied(Denial),
    #[error("{message}")]
    FailedPrecondition { reason: Reason, message: String },
    /// The engagement cannot move to the other version of its model: every conflict, by
    /// path (`phases.wrap`, `roles.mentor`).
    #[error("{}", blocked(.0))]
    MigrationBlocked(Vec<Violation>),
    #[error("{message}")]
    AlreadyExists { reason: Reason, message: String },
    /// A concurrency conflict: retry with fresh state.
    #[error("{message}")]
    Aborted { reason: Reason, message: String },
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

fn blocked(conflicts: &[Violation]) -> String {
    match conflicts {
        [] => "the engagement cannot move to that version".to_owned(),
        [only] => format!("the engagement cannot move to that version: {only}"),
        [first, rest @ ..] => format!(
            "the engagement cannot move to that version: {first} (and {} more; see the PreconditionFailure details)",
            rest.len()
        ),
    }
}

fn join(violations: &[Violation]) -> String {
    violations
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl AppError {
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> AppError {
        AppError::InvalidArgument(vec![Violation {
            field: field.into(),
            description: description.into(),
        }])
    }

    pub fn not_found(resource: Resource, name: impl Into<String>) -> AppError {
        AppError::NotFound {
            resource,
            name: name.into(),
        }
    }

    /// The stable reason clients read (`google.rpc.ErrorInfo.reason`).
    pub fn reason(&self) -> &'static str {
        match self {
            AppError::InvalidArgument(_) => "INVALID_ARGUMENT",
            AppError::NotFound { .. } => "NOT_FOUND",
            AppError::PermissionDenied(denial) => denial.reason.as_str(),
            AppError::FailedPrecondition { reason, .. }
            | AppError::AlreadyExists { reason, .. }
            | AppError::Aborted { reason, .. } => reason.as_str(),
            AppError::MigrationBlocked(_) => "MIGRATION_CONFLICT",
            AppError::Unavailable(_) => "UNAVAILABLE",
            AppError::Internal(_) => "INTERNAL",
        }
    }

    /// Renames every violation's field with `map` (the engine's `goal` is the request's
    /// `goal_id`).
    pub fn map_fields(self, map: impl Fn(&str) -> String) -> AppError {
        match self {
            AppError::InvalidArgument(violations) => AppError::InvalidArgument(
                violations
                    .into_iter()
                    .map(|violation| Violation {
                        field: map(&violation.field),
                        description: violation.description,
                    })
                    .collect(),
            ),
            other => other,
        }
    }
}

impl From<Denial> for AppError {
    fn from(denial: Denial) -> AppError {
        AppError::PermissionDenied(denial)
    }
}

impl From<DomainError> for AppError {
    fn from(error: DomainError) -> AppError {
        match error {
            DomainError::InvalidArgument { violations } => AppError::InvalidArgument(
                violations
                    .into_iter()
                    .map(|violation| Violation {
                        field: violation.field,
                        description: violation.description,
                    })
                    .collect(),
            ),
            DomainError::NotFound { resource, id } => AppError::NotFound {
                resource: Resource::from_engine(resource),
                name: id,
            },
            DomainError::FailedPrecondition { reason, message } => AppError::FailedPrecondition {
                reason: Reason::Domain(reason),
                message,
            },
            // A stale expectation is a concurrency conflict; everything else the engine calls a
            // conflict is something that exists already.
            DomainError::Conflict {
                reason: reason @ coachflow_engine::Reason::PhaseMismatch,
                message,
            } => AppError::Aborted {
                reason: Reason::Domain(reason),
                message,
            },
            DomainError::Conflict { reason, message } => AppError::AlreadyExists {
                reason: Reason::Domain(reason),
                message,
            },
        }
    }
}

impl From<StoreError> for AppError {
    fn from(error: StoreError) -> AppError {
        match error {
            StoreError::Conflict => AppError::Aborted {
                reason: Reason::ConcurrentModification,
                message: "the engagement was changed by another request; retry".to_owned(),
            },
            StoreError::AlreadyExists(what) => AppError::AlreadyExists {
                reason: Reason::AlreadyExists,
                message: format!("{what} already exists"),
            },
            StoreError::DuplicateRequest => AppError::Aborted {
                reason: Reason::RequestInProgress,
                message: "a request with this request_id is being processed; retry".to_owned(),
            },
            StoreError::Corrupt(message) => AppError::Internal(format!("stored data is unreadable: {message}")),
            StoreError::Database(error) if is_connection_error(&error) => {
                AppError::Unavailable(format!("the database is unavailable: {error}"))
            }
            other => AppError::Internal(format!("storage failed: {other}")),
        }
    }
}

fn is_connection_error(error: &DbErr) -> bool {
    matches!(error, DbErr::Conn(_) | DbErr::ConnectionAcquire(_))
}
