//! The engagement's history: every change is an event with a per-engagement sequence number.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::command::Actor;
use crate::state::{CommitmentStatus, GoalStatus, TimerPurpose};

/// Version of the serialized form of events and state; bumped on incompatible changes.
pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub schema_version: u32,
    /// 1 for the first event of an engagement, then gapless.
    pub sequence: u64,
    pub at: DateTime<Utc>,
    pub actor: Actor,
    #[serde(flatten)]
    pub kind: EventKind,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    EngagementStarted {
        model_key: String,
        model_version: u32,
        timezone: String,
        people: BTreeMap<String, Vec<String>>,
    },
    ParticipantAdded {
        role: String,
        person: String,
    },
    EngagementSuspended {
        reason: Option<String>,
    },
    EngagementResumed,
    EngagementCompleted,
    EngagementCancelled {
        reason: Option<String>,
    },
    /// The engagement moved to another version of its model. Renamed phases and tasks keep
    /// their instances (with their ids), under the new keys.
    EngagementMigrated {
        model_key: String,
        from_version: u32,
        to_version: u32,
        /// Old phase key → new, for the phases that were renamed.
        #[serde(default)]
        phases: BTreeMap<String, String>,
        /// Old task key → new, for the tasks that were renamed.
        #[serde(default)]
        tasks: BTreeMap<String, String>,
        #[serde(default)]
        reason: String,
    },
    PhaseEntered {
        phase: String,
        iteration: u32,
    },
    PhaseSignedOff {
        phase: String,
        role: String,
        person: String,
    },
    PhaseCompleted {
        phase: String,
        iteration: u32,
        /// The phase entered next; `None` when the engagement completes.
        next: Option<String>,
    },
    /// A sign-off no longer counts: withdrawn by a repair (with its reason), or by the
    /// engine when the phase's condition stopped holding (without one).
    PhaseSignOffWithdrawn {
        phase: String,
        role: String,
        person: String,
        reason: Option<String>,
    },
    /// A repair moved the engagement out of a phase it had not completed, to `to` (entered
    /// next); the phase's unfinished work was cancelled, its milestone not reached.
    PhaseExited {
        phase: String,
        iteration: u32,
        to: String,
        #[serde(default)]
        reason: String,
    },
    TaskCreated {
        id: String,
        task: String,
        phase: Option<String>,
        iteration: u32,
        occurrence: Option<u32>,
        /// The person a `for_each` instance is for.
        subject: Option<String>,
        assignee: Option<String>,
        /// For an occurrence of a repeating task: when the schedule said it opens.
        scheduled_at: Option<DateTime<Utc>>,
    },
    /// A ready task waits for its `start_after` delay.
    TaskScheduled {
        id: String,
        opens_at: DateTime<Utc>,
    },
    TaskOpened {
        id: String,
        due_at: Option<DateTime<Utc>>,
    },
    TaskAssigned {
        id: String,
        assignee: String,
    },
    TaskCompleted {
        id: String,
        // Content: absent once erased, like every content field (see `content_fields`).
        #[serde(default)]
        outputs: BTreeMap<String, serde_json::Value>,
    },
    TaskSkipped {
        id: String,
        #[serde(default)]
        reason: String,
    },
    /// Closed without being done: its phase was left or the engagement ended.
    TaskCancelled {
        id: String,
    },
    /// A repair reopened a completed or skipped task: its outputs are cleared, and it opens
    /// again (a `TaskOpened` follows).
    TaskReopened {
        id: String,
        #[serde(default)]
        reason: String,
    },
    /// An open task's due date was recomputed (its model version changed it).
    TaskRescheduled {
        id: String,
        due_at: Option<DateTime<Utc>>,
    },
    TaskDueSoon {
        id: String,
        due_at: DateTime<Utc>,
    },
    TaskOverdue {
        id: String,
        due_at: DateTime<Utc>,
    },
    TaskEscalated {
        id: String,
    },
    SeriesCreated {
        id: String,
        task: String,
        phase: Option<String>,
        iteration: u32,
    },
    SeriesStarted {
        id: String,
        starts_at: DateTime<Utc>,
    },
    SeriesFinished {
        id: String,
    },
    SeriesCancelled {
        id: String,
    },
    MilestoneReached {
        milestone: String,
        phase: Option<String>,
        task: Option<String>,
        iteration: u32,
    },
    GoalSet {
        goal: String,
        #[serde(default)]
        title: String,
        measure: Option<String>,
        target: Option<String>,
        due: Option<NaiveDate>,
    },
    GoalProgressRecorded {
        goal: String,
        progress: u32,
        status: GoalStatus,
        note: Option<String>,
    },
    GoalAchieved {
        goal: String,
    },
    CommitmentRecorded {
        commitment: String,
        #[serde(default)]
        description: String,
        owner: Option<String>,
        due: Option<DateTime<Utc>>,
    },
    CommitmentFollowedUp {
        commitment: String,
        status: CommitmentStatus,
        note: Option<String>,
        due: Option<DateTime<Utc>>,
    },
    CommitmentFollowUpDue {
        commitment: String,
    },
    TimerScheduled {
        id: String,
        /// When the timer fires (the envelope's `at` is when it was scheduled).
        fires_at: DateTime<Utc>,
        purpose: TimerPurpose,
    },
    TimerCancelled {
        id: String,
    },
    TimerFired {
        id: String,
    },
    /// The timer came due while the engagement was suspended; it fires on resume.
    TimerDeferred {
        id: String,
    },
    /// The engagement's content (outputs, notes, goal wording, commitment text, reasons)
    /// was erased: the keys it was sealed under are destroyed, and content recorded from
    /// now on is sealed under the key of `generation`. The skeleton stays.
    ContentErased {
        generation: u32,
    },
    /// A person's data was erased: from now on they appear as `pseudonym` (stable across
    /// the tenant's engagements) wherever the engagement names them.
    PersonErased {
        person: String,
        pseudonym: String,
    },
}

impl EventKind {
    /// The `(entity, action)` of an event downstream systems receive, or `None` for an
    /// internal one. Routing keys and CloudEvents types are built from it.
    pub fn public_name(&self) -> Option<(&'static str, &'static str)> {
        Some(match self {
            EventKind::EngagementStarted { .. } => ("engagement", "started"),
            EventKind::EngagementSuspended { .. } => ("engagement", "suspended"),
            EventKind::EngagementResumed => ("engagement", "resumed"),
            EventKind::EngagementCompleted => ("engagement", "completed"),
            EventKind::EngagementCancelled { .. } => ("engagement", "cancelled"),
            EventKind::EngagementMigrated { .. } => ("engagement", "migrated"),
            EventKind::PhaseEntered { .. } => ("phase", "entered"),
            EventKind::PhaseCompleted { .. } => ("phase", "completed"),
            EventKind::TaskOpened { .. } => ("task", "opened"),
            EventKind::TaskCompleted { .. } => ("task", "completed"),
            EventKind::TaskSkipped { .. } => ("task", "skipped"),
            EventKind::TaskDueSoon { .. } => ("task", "due_soon"),
            EventKind::TaskOverdue { .. } => ("task", "overdue"),
            EventKind::TaskEscalated { .. } => ("task", "escalated"),
            EventKind::MilestoneReached { .. } => ("milestone", "reached"),
            EventKind::GoalSet { .. } => ("goal", "set"),
            EventKind::GoalAchieved { .. } => ("goal", "achieved"),
            EventKind::ContentErased { .. } => ("engagement", "content_erased"),
            EventKind::PersonErased { .. } => ("subject", "erased"),
            _ => return None,
        })
    }

    /// The fields of this event that hold free text (content, not progress): left out of
    /// what a reader who may not see content receives, and never in a public event. Task
    /// outputs are content too, each by its own visibility.
    pub fn text_fields(&self) -> &'static [&'static str] {
        match self {
            EventKind::TaskSkipped { .. }
            | EventKind::EngagementSuspended { .. }
            | EventKind::EngagementCancelled { .. }
            | EventKind::TaskReopened { .. }
            | EventKind::EngagementMigrated { .. }
            | EventKind::PhaseExited { .. }
            | EventKind::PhaseSignOffWithdrawn { .. } => &["reason"],
            EventKind::GoalSet { .. } => &["title", "measure", "target"],
            EventKind::GoalProgressRecorded { .. } | EventKind::CommitmentFollowedUp { .. } => &["note"],
            EventKind::CommitmentRecorded { .. } => &["description"],
            _ => &[],
        }
    }

    /// The fields of this event that hold content, sealed at rest under the engagement's
    /// data key and gone once it is erased: the free text, and a completed task's outputs.
    pub fn content_fields(&self) -> &'static [&'static str] {
        match self {
            EventKind::TaskCompleted { .. } => &["outputs"],
            kind => kind.text_fields(),
        }
    }

    /// Whether this event records content (a content field that is not empty).
    pub fn records_content(&self) -> bool {
        match self {
            EventKind::TaskCompleted { outputs, .. } => !outputs.is_empty(),
            EventKind::TaskSkipped { .. }
            | EventKind::TaskReopened { .. }
            | EventKind::EngagementMigrated { .. }
            | EventKind::PhaseExited { .. }
            | EventKind::GoalSet { .. }
            | EventKind::CommitmentRecorded { .. } => true,
            EventKind::EngagementSuspended { reason }
            | EventKind::EngagementCancelled { reason }
            | EventKind::PhaseSignOffWithdrawn { reason, .. } => reason.is_some(),
            EventKind::GoalProgressRecorded { note, .. } | EventKind::CommitmentFollowedUp { note, .. } => {
                note.is_some()
            }
            _ => false,
        }
    }

    /// The event's type tag as serialized (`task_completed`), for logs and history filters.
    pub fn type_name(&self) -> &'static str {
        match self {
            EventKind::EngagementStarted { .. } => "engagement_started",
            EventKind::ParticipantAdded { .. } => "participant_added",
            EventKind::EngagementSuspended { .. } => "engagement_suspended",
            EventKind::EngagementResumed => "engagement_resumed",
            EventKind::EngagementCompleted => "engagement_completed",
            EventKind::EngagementCancelled { .. } => "engagement_cancelled",
            EventKind::EngagementMigrated { .. } => "engagement_migrated",
            EventKind::PhaseEntered { .. } => "phase_entered",
            EventKind::PhaseSignedOff { .. } => "phase_signed_off",
            EventKind::PhaseCompleted { .. } => "phase_completed",
            EventKind::PhaseSignOffWithdrawn { .. } => "phase_sign_off_withdrawn",
            EventKind::PhaseExited { .. } => "phase_exited",
            EventKind::TaskCreated { .. } => "task_created",
            EventKind::TaskScheduled { .. } => "task_scheduled",
            EventKind::TaskOpened { .. } => "task_opened",
            EventKind::TaskAssigned { .. } => "task_assigned",
            EventKind::TaskCompleted { .. } => "task_completed",
            EventKind::TaskSkipped { .. } => "task_skipped",
            EventKind::TaskCancelled { .. } => "task_cancelled",
            EventKind::TaskReopened { .. } => "task_reopened",
            EventKind::TaskRescheduled { .. } => "task_rescheduled",
            EventKind::TaskDueSoon { .. } => "task_due_soon",
            EventKind::TaskOverdue { .. } => "task_overdue",
            EventKind::TaskEscalated { .. } => "task_escalated",
            EventKind::SeriesCreated { .. } => "series_created",
            EventKind::SeriesStarted { .. } => "series_started",
            EventKind::SeriesFinished { .. } => "series_finished",
            EventKind::SeriesCancelled { .. } => "series_cancelled",
            EventKind::MilestoneReached { .. } => "milestone_reached",
            EventKind::GoalSet { .. } => "goal_set",
            EventKind::GoalProgressRecorded { .. } => "goal_progress_recorded",
            EventKind::GoalAchieved { .. } => "goal_achieved",
            EventKind::CommitmentRecorded { .. } => "commitment_recorded",
            EventKind::CommitmentFollowedUp { .. } => "commitment_followed_up",
            EventKind::CommitmentFollowUpDue { .. } => "commitment_follow_up_due",
            EventKind::TimerScheduled { .. } => "timer_scheduled",
            EventKind::TimerCancelled { .. } => "timer_cancelled",
            EventKind::TimerFired { .. } => "timer_fired",
            EventKind::TimerDeferred { .. } => "timer_deferred",
            EventKind::ContentErased { .. } => "content_erased",
            EventKind::PersonErased { .. } => "person_erased",
        }
    }
}
