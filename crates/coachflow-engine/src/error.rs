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

/// Declares [`Reason`] with the stable text of each variant.
macro_rules! reasons {
    ($($(#[doc = $doc:literal])* $variant:ident = $text:literal,)*) => {
        /// Why the engine refused a command: a stable, machine-readable reason that callers
        /// act on (the gRPC layer sends it as `google.rpc.ErrorInfo.reason`).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Reason {
            $($(#[doc = $doc])* $variant,)*
        }

        impl Reason {
            /// Every reason, for documentation and tests.
            pub const ALL: &[Reason] = &[$(Reason::$variant,)*];

            /// The reason as clients read it, e.g. `TASK_NOT_OPEN`.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Reason::$variant => $text,)*
                }
            }
        }
    };
}

reasons! {
    /// Only `Start` applies to an engagement that has not been started.
    EngagementNotStarted = "ENGAGEMENT_NOT_STARTED",
    EngagementAlreadyStarted = "ENGAGEMENT_ALREADY_STARTED",
    /// The engagement is suspended; resume it first.
    EngagementSuspended = "ENGAGEMENT_SUSPENDED",
    EngagementNotSuspended = "ENGAGEMENT_NOT_SUSPENDED",
    /// The engagement is completed or cancelled; it takes no more changes.
    EngagementEnded = "ENGAGEMENT_ENDED",
    /// The state names a task or phase its model does not have.
    ModelMismatch = "MODEL_MISMATCH",
    /// One command passed through too many phases: the model loops without work.
    ModelDoesNotSettle = "MODEL_DOES_NOT_SETTLE",
    TaskNotOpen = "TASK_NOT_OPEN",
    TaskClosed = "TASK_CLOSED",
    /// Only optional tasks and single occurrences of a repeating task can be skipped.
    TaskRequired = "TASK_REQUIRED",
    AlreadyParticipant = "ALREADY_PARTICIPANT",
    /// A role that holds one person is taken.
    RoleTaken = "ROLE_TAKEN",
    GoalExists = "GOAL_EXISTS",
    GoalClosed = "GOAL_CLOSED",
    CommitmentExists = "COMMITMENT_EXISTS",
    CommitmentClosed = "COMMITMENT_CLOSED",
    NoCurrentPhase = "NO_CURRENT_PHASE",
    /// The current phase needs no sign-off from that role.
    NoSuchApproval = "NO_SUCH_APPROVAL",
    AlreadySignedOff = "ALREADY_SIGNED_OFF",
    /// The engagement is not in the phase the command expected.
    PhaseMismatch = "PHASE_MISMATCH",
    /// The phase's exit gate does not hold.
    GateNotSatisfied = "GATE_NOT_SATISFIED",
    TimerNotDue = "TIMER_NOT_DUE",
    /// A sign-off before the phase's condition holds: it would approve work not done.
    GateNotReady = "GATE_NOT_READY",
    /// The role has not signed off the current phase.
    NotSignedOff = "NOT_SIGNED_OFF",
    /// The task is not closed: only a completed or skipped task is reopened.
    TaskNotClosed = "TASK_NOT_CLOSED",
    /// The task belongs to work the engagement has left; move it back to that phase first.
    TaskNotUnderWay = "TASK_NOT_UNDER_WAY",
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
    FailedPrecondition { reason: Reason, message: String },
    /// The command clashes with what already exists (e.g. a goal id taken, an engagement
    /// started twice, a stale expectation).
    #[error("{message}")]
    Conflict { reason: Reason, message: String },
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

    pub fn precondition(reason: Reason, message: impl Into<String>) -> DomainError {
        DomainError::FailedPrecondition {
            reason,
            message: message.into(),
        }
    }

    pub fn conflict(reason: Reason, message: impl Into<String>) -> DomainError {
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
            DomainError::FailedPrecondition { reason, .. } | DomainError::Conflict { reason, .. } => reason.as_str(),
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
