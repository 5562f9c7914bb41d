//! What a caller asks of an engagement.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::state::{CommitmentStatus, GoalStatus};

/// Who caused a change: recorded on every event for the audit trail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "id", rename_all = "snake_case")]
pub enum Actor {
    /// A person bound to the engagement or known to the calling system (opaque id).
    Person(String),
    /// A calling system, such as an L&D platform, by its principal's name.
    Service(String),
    /// A system acting for a person with the person's token (RFC 8693 `act`): the person
    /// acts, and the system that carried the token is recorded beside them.
    Delegated { person: String, by: String },
    /// The engine itself, e.g. a timer firing.
    System,
}

/// A request to change an engagement, with who made it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Command {
    pub actor: Actor,
    pub action: Action,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Action {
    /// Starts the engagement in its first phase with people bound to roles.
    Start {
        model_version: u32,
        /// IANA zone for calendar arithmetic of due dates and schedules; default UTC.
        #[serde(default)]
        timezone: Option<String>,
        people: BTreeMap<String, Vec<String>>,
    },
    CompleteTask {
        task: String,
        #[serde(default)]
        outputs: BTreeMap<String, serde_json::Value>,
    },
    /// Skips an optional task, or one occurrence of a repeating one.
    SkipTask {
        task: String,
        reason: String,
    },
    AssignTask {
        task: String,
        assignee: String,
    },
    /// Binds another person to a role; `for_each` tasks under way get an instance for them.
    AddParticipant {
        role: String,
        person: String,
    },
    RecordGoal {
        goal: String,
        title: String,
        #[serde(default)]
        measure: Option<String>,
        #[serde(default)]
        target: Option<String>,
        #[serde(default)]
        due: Option<NaiveDate>,
    },
    RecordGoalProgress {
        goal: String,
        /// Percent, 0 to 100.
        progress: u32,
        #[serde(default)]
        status: Option<GoalStatus>,
        #[serde(default)]
        note: Option<String>,
    },
    RecordCommitment {
        commitment: String,
        description: String,
        #[serde(default)]
        owner: Option<String>,
        /// When the coach should follow up; a timer fires then.
        #[serde(default)]
        due: Option<DateTime<Utc>>,
    },
    RecordCommitmentFollowUp {
        commitment: String,
        status: CommitmentStatus,
        #[serde(default)]
        note: Option<String>,
        /// With `renegotiated`: the new follow-up date.
        #[serde(default)]
        due: Option<DateTime<Utc>>,
    },
    /// A person signs off the current phase's exit gate for one of its approval roles.
    SignOff {
        role: String,
        person: String,
    },
    /// Leaves the current phase now that its gate holds (needed for `exit.manual` phases).
    AdvancePhase {
        /// When given, the command applies only if the engagement is in this phase.
        #[serde(default)]
        expected_phase: Option<String>,
    },
    FireTimer {
        timer: String,
    },
    /// Repair: reopens a completed or skipped task of the work under way, with a reason.
    ReopenTask {
        task: String,
        reason: String,
    },
    /// Repair: leaves the current phase (its unfinished work cancelled, no milestone) and
    /// enters `phase`, with a reason.
    MoveToPhase {
        phase: String,
        reason: String,
    },
    /// Repair: withdraws a role's sign-off of the current phase, with a reason.
    WithdrawSignOff {
        role: String,
        reason: String,
    },
    Suspend {
        #[serde(default)]
        reason: Option<String>,
    },
    Resume,
    Cancel {
        #[serde(default)]
        reason: Option<String>,
    },
    /// Erases the engagement's content; the skeleton (phases, tasks, times, states) stays.
    /// Nothing happens when it was erased before and no content was recorded since.
    /// Allowed once it has ended.
    EraseContent,
    /// Erases a person's data from the engagement: they appear as `pseudonym` from now on,
    /// and when they are its client (whose coaching record it is) its content is erased
    /// too. Nothing happens when the engagement does not name them.
    ErasePerson {
        person: String,
        pseudonym: String,
    },
}

impl Action {
    /// The command's name, for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Action::Start { .. } => "start",
            Action::CompleteTask { .. } => "complete_task",
            Action::SkipTask { .. } => "skip_task",
            Action::AssignTask { .. } => "assign_task",
            Action::AddParticipant { .. } => "add_participant",
            Action::RecordGoal { .. } => "record_goal",
            Action::RecordGoalProgress { .. } => "record_goal_progress",
            Action::RecordCommitment { .. } => "record_commitment",
            Action::RecordCommitmentFollowUp { .. } => "record_commitment_follow_up",
            Action::SignOff { .. } => "sign_off",
            Action::AdvancePhase { .. } => "advance_phase",
            Action::FireTimer { .. } => "fire_timer",
            Action::ReopenTask { .. } => "reopen_task",
            Action::MoveToPhase { .. } => "move_to_phase",
            Action::WithdrawSignOff { .. } => "withdraw_sign_off",
            Action::Suspend { .. } => "suspend",
            Action::Resume => "resume",
            Action::Cancel { .. } => "cancel",
            Action::EraseContent => "erase_content",
            Action::ErasePerson { .. } => "erase_person",
        }
    }
}
