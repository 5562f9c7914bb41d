//! The service's errors and their one mapping to `tonic::Status` with `google.rpc` details
//! (`BadRequest` field violations, `ErrorInfo` reasons, `ResourceInfo`).

use std::collections::HashMap;
use std::fmt;

use coachflow_engine::DomainError;
use coachflow_store::StoreError;
use sea_orm::DbErr;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt as _};

/// `google.rpc.ErrorInfo.domain` of every error.
pub const ERROR_DOMAIN: &str = "coachflow.dev";

/// A field of a request and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub field: String,
    pub description: String,
}

/// Why a request was refused or failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    #[error("{}", join(.0))]
    InvalidArgument(Vec<Violation>),
    #[error("{resource} '{name}' not found")]
    NotFound { resource: &'static str, name: String },
    #[error("{message}")]
    FailedPrecondition { reason: &'static str, message: String },
    #[error("{message}")]
    AlreadyExists { reason: &'static str, message: String },
    /// A concurrency conflict: retry with fresh state.
    #[error("{message}")]
    Aborted { reason: &'static str, message: String },
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

fn join(violations: &[Violation]) -> String {
    violations
        .iter()
        .map(|violation| format!("{}: {}", violation.field, violation.description))
        .collect::<Vec<_>>()
        .join("; ")
}

impl ApiError {
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> ApiError {
        ApiError::InvalidArgument(vec![Violation {
            field: field.into(),
            description: description.into(),
        }])
    }

    pub fn code(&self) -> Code {
        match self {
            ApiError::InvalidArgument(_) => Code::InvalidArgument,
            ApiError::NotFound { .. } => Code::NotFound,
            ApiError::FailedPrecondition { .. } => Code::FailedPrecondition,
            ApiError::AlreadyExists { .. } => Code::AlreadyExists,
            ApiError::Aborted { .. } => Code::Aborted,
            ApiError::Unavailable(_) => Code::Unavailable,
            ApiError::Internal(_) => Code::Internal,
        }
    }

    pub fn reason(&self) -> &'static str {
        match self {
            ApiError::InvalidArgument(_) => "INVALID_ARGUMENT",
            ApiError::NotFound { .. } => "NOT_FOUND",
            ApiError::FailedPrecondition { reason, .. }
            | ApiError::AlreadyExists { reason, .. }
            | ApiError::Aborted { reason, .. } => reason,
            ApiError::Unavailable(_) => "UNAVAILABLE",
            ApiError::Internal(_) => "INTERNAL",
        }
    }

    /// Prefixes every violation's field, e.g. the engine's `outputs.score` becomes the
    /// request's `outputs.score` and `people.client` becomes `people[client]`.
    pub fn map_fields(self, map: impl Fn(&str) -> String) -> ApiError {
        match self {
            ApiError::InvalidArgument(violations) => ApiError::InvalidArgument(
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

impl From<DomainError> for ApiError {
    fn from(error: DomainError) -> ApiError {
        match error {
            DomainError::InvalidArgument { violations } => ApiError::InvalidArgument(
                violations
                    .into_iter()
                    .map(|violation| Violation {
                        field: violation.field,
                        description: violation.description,
                    })
                    .collect(),
            ),
            DomainError::NotFound { resource, id } => ApiError::NotFound { resource, name: id },
            DomainError::FailedPrecondition { reason, message } => ApiError::FailedPrecondition { reason, message },
            // A stale expectation is a concurrency conflict; everything else the engine calls a
            // conflict is something that exists already.
            DomainError::Conflict { reason, message } if reason == "PHASE_MISMATCH" => {
                ApiError::Aborted { reason, message }
            }
            DomainError::Conflict { reason, message } => ApiError::AlreadyExists { reason, message },
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> ApiError {
        match error {
            StoreError::Conflict => ApiError::Aborted {
                reason: "CONCURRENT_MODIFICATION",
                message: "the engagement was changed by another request; retry".to_owned(),
            },
            StoreError::AlreadyExists(what) => ApiError::AlreadyExists {
                reason: "ALREADY_EXISTS",
                message: format!("{what} already exists"),
            },
            StoreError::DuplicateRequest => ApiError::Aborted {
                reason: "REQUEST_IN_PROGRESS",
                message: "a request with this request_id is being processed; retry".to_owned(),
            },
            StoreError::Corrupt(message) => ApiError::Internal(format!("stored data is unreadable: {message}")),
            StoreError::Database(error) if is_connection_error(&error) => {
                ApiError::Unavailable(format!("the database is unavailable: {error}"))
            }
            other => ApiError::Internal(format!("storage failed: {other}")),
        }
    }
}

fn is_connection_error(error: &DbErr) -> bool {
    matches!(error, DbErr::Conn(_) | DbErr::ConnectionAcquire(_))
}

impl From<ApiError> for Status {
    fn from(error: ApiError) -> Status {
        let message = error.to_string();
        let mut details = ErrorDetails::new();
        if let ApiError::InvalidArgument(violations) = &error {
            for violation in violations {
                details.add_bad_request_violation(violation.field.clone(), violation.description.clone());
            }
        }
        if let ApiError::NotFound { resource, name } = &error {
            details.set_resource_info(*resource, name.clone(), "", message.clone());
        }
        details.set_error_info(error.reason(), ERROR_DOMAIN, HashMap::<String, String>::new());
        Status::with_error_details(error.code(), message, details)
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}: {}", self.field, self.description)
    }
}
