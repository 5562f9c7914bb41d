//! What can go wrong with a command, in the categories a caller acts on differently.

use std::fmt;

/// One field of a command that is wrong, and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FieldViolation {
    /// The field's path in the command, e.g. `outputs.score` or `people.coach`.
    pub field: String,
    pub description: String,
}

impl FieldViolation {
    pub fn new(field: impl Into<String>, description: impl Into<String>) -> FieldViolation {
        FieldViolation {
            field: field.into(),
            description: description.into(),
        }
    }
}

impl fmt::Display for FieldViolation {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}: {}", self.field, self.description)
    }
}

/// A command the engine refuses. Nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    /// The command itself is malformed, whatever the engagement's state.
    #[error("invalid argument: {}", .violations.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    InvalidArgument { violations: Vec<FieldViolation> },
    /// The command names something the engagement does not have.
    #[error("{resource} '{id}' not found")]
    NotFound { resource: &'static str, id: String },
    /// The engagement is not in a state where the command applies (e.g. completing a task
    /// that is not open); the same command may succeed later.
    #[error("{message}")]
    FailedPrecondition { reason: &'static str, message: String },
    /// The command clashes with what already exists (e.g. a goal id taken, an engagement
    /// started twice, a stale expectation).
    #[error("{message}")]
    Conflict { reason: &'static str, message: String },
}

impl DomainError {
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> DomainError {
        DomainError::InvalidArgument {
            violations: vec![FieldViolation::new(field, description)],
        }
    }

    pub fn not_found(resource: &'static str, id: impl Into<String>) -> DomainError {
        DomainError::NotFound {
            resource,
            id: id.into(),
        }
    }

    pub fn precondition(reason: &'static str, message: impl Into<String>) -> DomainError {
        DomainError::FailedPrecondition {
            reason,
            message: message.into(),
        }
    }

    pub fn conflict(reason: &'static str, message: impl Into<String>) -> DomainError {
        DomainError::Conflict {
            reason,
            message: message.into(),
        }
    }

    /// A stable, machine-readable reason (`google.rpc.ErrorInfo.reason` material).
    pub fn reason(&self) -> &'static str {
        match self {
            DomainError::InvalidArgument { .. } => "INVALID_ARGUMENT",
            DomainError::NotFound { .. } => "NOT_FOUND",
            DomainError::FailedPrecondition { reason, .. } | DomainError::Conflict { reason, .. } => reason,
        }
    }
}

/// Checks of command fields collect every violation before failing.
#[derive(Debug, Default)]
pub(crate) struct Violations(Vec<FieldViolation>);

impl Violations {
    pub(crate) fn add(&mut self, field: impl Into<String>, description: impl Into<String>) {
        self.0.push(FieldViolation::new(field, description));
    }

    pub(crate) fn into_result(self) -> Result<(), DomainError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(DomainError::InvalidArgument { violations: self.0 })
        }
    }
}
