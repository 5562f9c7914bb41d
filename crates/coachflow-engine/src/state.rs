//! An engagement's state, and [`apply`], the only way it changes.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::event::{Event, EventKind, SCHEMA_VERSION};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum EngagementStatus {
    /// Not started yet: only `Start` applies.
    #[default]
    New,
    Active,
    Suspended,
    Completed,
    Cancelled,
}

impl EngagementStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            EngagementStatus::New => "new",
            EngagementStatus::Active => "active",
            EngagementStatus::Suspended => "suspended",
            EngagementStatus::Completed => "completed",
            EngagementStatus::Cancelled => "cancelled",
        }
    }

    pub fn is_ended(self) -> bool {
        matches!(self, EngagementStatus::Completed | EngagementStatus::Cancelled)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    /// Created, waiting for the tasks it comes after.
    Waiting,
    /// Ready, waiting for its `start_after` delay.
    Scheduled,
    Open,
    Completed,
    Skipped,
    /// Closed without being done: its phase was left or the engagement ended.
    Cancelled,
}

impl TaskStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Waiting => "waiting",
            TaskStatus::Scheduled => "scheduled",
            TaskStatus::Open => "open",
            TaskStatus::Completed => "completed",
            TaskStatus::Skipped => "skipped",
            TaskStatus::Cancelled => "cancelled",
        }
    }

    pub fn is_closed(self) -> bool {
        matches!(
            self,
            TaskStatus::Completed | TaskStatus::Skipped | TaskStatus::Cancelled
        )
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskInstance {
    pub id: String,
    pub task: String,
    pub phase: Option<String>,
    pub iteration: u32,
    pub occurrence: Option<u32>,
    pub subject: Option<String>,
    pub assignee: Option<String>,
    pub status: TaskStatus,
    pub created_at: DateTime<Utc>,
    pub opens_at: Option<DateTime<Utc>>,
    pub opened_at: Option<DateTime<Utc>>,
    pub due_at: Option<DateTime<Utc>>,
    pub closed_at: Option<DateTime<Utc>>,
    pub due_soon: bool,
    pub overdue: bool,
    pub escalated: bool,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub outputs: BTreeMap<String, serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip_reason: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SeriesStatus {
    Waiting,
    Running,
    Finished,
    Cancelled,
}

/// The occurrences of a repeating task in one iteration of its phase.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Series {
    pub id: String,
    pub task: String,
    pub phase: Option<String>,
    pub iteration: u32,
    pub status: SeriesStatus,
    pub starts_at: Option<DateTime<Utc>>,
    /// How many occurrences have been created.
    pub occurrences: u32,
    pub last_occurrence_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GoalStatus {
    Active,
    OnTrack,
    AtRisk,
    OffTrack,
    Achieved,
    Abandoned,
}

impl GoalStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            GoalStatus::Active => "active",
            GoalStatus::OnTrack => "on_track",
            GoalStatus::AtRisk => "at_risk",
            GoalStatus::OffTrack => "off_track",
            GoalStatus::Achieved => "achieved",
            GoalStatus::Abandoned => "abandoned",
        }
    }

    pub fn is_final(self) -> bool {
        matches!(self, GoalStatus::Achieved | GoalStatus::Abandoned)
    }
}

/// A SMART goal. Its wording is confidential: it never leaves in a public event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Goal {
    pub id: String,
    pub title: String,
    pub measure: Option<String>,
    pub target: Option<String>,
    pub due: Option<NaiveDate>,
    pub progress: u32,
    pub status: GoalStatus,
    pub set_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Its wording was erased (with the engagement's content).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub content_erased: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommitmentStatus {
    Open,
    Kept,
    Missed,
    Renegotiated,
    Dropped,
}

impl CommitmentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CommitmentStatus::Open => "open",
            CommitmentStatus::Kept => "kept",
            CommitmentStatus::Missed => "missed",
            CommitmentStatus::Renegotiated => "renegotiated",
            CommitmentStatus::Dropped => "dropped",
        }
    }
}

/// An action item the client committed to and the coach follows up on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Commitment {
    pub id: String,
    pub description: String,
    pub owner: Option<String>,
    pub due: Option<DateTime<Utc>>,
    pub status: CommitmentStatus,
    pub recorded_at: DateTime<Utc>,
    pub followed_up_at: Option<DateTime<Utc>>,
    pub follow_up_due: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Its text was erased (with the engagement's content).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub content_erased: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TimerPurpose {
    /// A task's `start_after` delay is over.
    OpenTask {
        task: String,
    },
    /// One of a task's reminders.
    DueSoon {
        task: String,
    },
    Overdue {
        task: String,
    },
    Escalate {
        task: String,
    },
    /// The next occurrence of a repeating task.
    NextOccurrence {
        series: String,
    },
    CommitmentFollowUp {
        commitment: String,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Timer {
    pub id: String,
    pub at: DateTime<Utc>,
    pub purpose: TimerPurpose,
    /// Came due while the engagement was suspended; fires on resume.
    pub deferred: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CurrentPhase {
    pub key: String,
    pub iteration: u32,
    pub entered_at: DateTime<Utc>,
    /// Approval role → the person who signed off.
    pub sign_offs: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MilestoneRecord {
    pub milestone: String,
    pub phase: Option<String>,
    pub task: Option<String>,
    pub iteration: u32,
    pub at: DateTime<Utc>,
}

/// Everything the engine knows about one engagement: built only by applying its events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EngagementState {
    pub schema_version: u32,
    /// Sequence number of the last event applied; 0 before the first.
    pub sequence: u64,
    pub status: EngagementStatus,
    pub model_key: String,
    pub model_version: u32,
    pub timezone: String,
    pub started_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
    pub suspended_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    /// Role → people, in the order they were bound.
    pub people: BTreeMap<String, Vec<String>>,
    pub phase: Option<CurrentPhase>,
    /// How many times each phase has been entered.
    pub phase_iterations: BTreeMap<String, u32>,
    pub tasks: BTreeMap<String, TaskInstance>,
    pub series: BTreeMap<String, Series>,
    pub goals: BTreeMap<String, Goal>,
    pub commitments: BTreeMap<String, Commitment>,
    pub timers: BTreeMap<String, Timer>,
    pub milestones: Vec<MilestoneRecord>,
    /// The generation of the data key content is sealed under now: one more per erasure.
    #[serde(default)]
    pub content_generation: u32,
    /// The last erasure of the engagement's content: what earlier events held is gone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_erased: Option<ContentErasure>,
    /// Whether content was recorded since the last erasure (a state kept before erasure
    /// existed is assumed to hold some).
    #[serde(default = "assume_content")]
    pub holds_content: bool,
    /// The people whose data was erased: their id → their pseudonym.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pseudonyms: BTreeMap<String, String>,
}

/// When an engagement's content was erased, by the event at `sequence`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContentErasure {
    pub sequence: u64,
    pub at: DateTime<Utc>,
}

fn assume_content() -> bool {
    true
}

impl Default for EngagementState {
    fn default() -> Self {
        EngagementState {
            schema_version: SCHEMA_VERSION,
            sequence: 0,
            status: EngagementStatus::New,
            model_key: String::new(),
            model_version: 0,
            timezone: "UTC".to_owned(),
            started_at: None,
            updated_at: None,
            suspended_at: None,
            ended_at: None,
            people: BTreeMap::new(),
            phase: None,
            phase_iterations: BTreeMap::new(),
            tasks: BTreeMap::new(),
            series: BTreeMap::new(),
            goals: BTreeMap::new(),
            commitments: BTreeMap::new(),
            timers: BTreeMap::new(),
            milestones: Vec::new(),
            content_generation: 0,
            content_erased: None,
            holds_content: false,
            pseudonyms: BTreeMap::new(),
        }
    }
}

/// The state after `event`.
pub fn apply(mut state: EngagementState, event: &Event) -> EngagementState {
    state.apply(event);
    state
}

impl EngagementState {
    /// Whether `person` is bound to `role`.
    pub fn holds_role(&self, person: &str, role: &str) -> bool {
        self.people
            .get(role)
            .is_some_and(|people| people.iter().any(|bound| bound == person))
    }

    /// Whether `person` is bound to any role.
    pub fn is_participant(&self, person: &str) -> bool {
        self.people.values().flatten().any(|bound| bound == person)
    }

    /// The occurrence series of `task` in `iteration` of its phase. Found by its task and
    /// iteration, not its id: the id keeps the key the task had when the series began (a
    /// migration may have renamed the task since).
    pub fn series_of(&self, task: &str, iteration: u32) -> Option<&Series> {
        self.series
            .values()
            .find(|series| series.task == task && series.iteration == iteration)
    }

    /// Whether the engagement names `person` anywhere: bound to a role, signing off, as a
    /// task's subject or assignee, or owning a commitment.
    pub fn names_person(&self, person: &str) -> bool {
        self.is_participant(person)
            || self
                .phase
                .as_ref()
                .is_some_and(|phase| phase.sign_offs.values().any(|signed| signed == person))
            || self
                .tasks
                .values()
                .any(|task| task.subject.as_deref() == Some(person) || task.assignee.as_deref() == Some(person))
            || self
                .commitments
                .values()
                .any(|commitment| commitment.owner.as_deref() == Some(person))
    }

    /// A task instance's id as it is shown: an erased person's `for_each` instance
    /// (`interview~p-42`) under their pseudonym.
    pub fn shown_task_id(&self, id: &str) -> String {
        for (person, pseudonym) in &self.pseudonyms {
            if let Some(stem) = id.strip_suffix(person.as_str()).and_then(|stem| stem.strip_suffix('~')) {
                return format!("{stem}~{pseudonym}");
            }
        }
        id.to_owned()
    }

    /// The instance id a shown one ([`Self::shown_task_id`]) stands for.
    pub fn stored_task_id(&self, shown: &str) -> String {
        for (person, pseudonym) in &self.pseudonyms {
            if let Some(stem) = shown
                .strip_suffix(pseudonym.as_str())
                .and_then(|stem| stem.strip_suffix('~'))
            {
                return format!("{stem}~{person}");
            }
        }
        shown.to_owned()
    }

    /// Drops every piece of content the state holds; the skeleton stays.
    fn erase_content(&mut self) {
        for task in self.tasks.values_mut() {
            task.outputs.clear();
            task.skip_reason = None;
        }
        for goal in self.goals.values_mut() {
            goal.title.clear();
            goal.measure = None;
            goal.target = None;
            goal.note = None;
            goal.content_erased = true;
        }
        for commitment in self.commitments.values_mut() {
            commitment.description.clear();
            commitment.note = None;
            commitment.content_erased = true;
        }
        self.holds_content = false;
    }

    /// Names `pseudonym` wherever the state named `person`.
    fn replace_person(&mut self, person: &str, pseudonym: &str) {
        let replace = |id: &mut String| {
            if id == person {
                pseudonym.clone_into(id);
            }
        };
        for people in self.people.values_mut() {
            people.iter_mut().for_each(replace);
        }
        if let Some(phase) = &mut self.phase {
            phase.sign_offs.values_mut().for_each(replace);
        }
        for task in self.tasks.values_mut() {
            task.subject
                .iter_mut()
                .chain(task.assignee.iter_mut())
                .for_each(replace);
        }
        for commitment in self.commitments.values_mut() {
            commitment.owner.iter_mut().for_each(replace);
        }
        self.pseudonyms.insert(person.to_owned(), pseudonym.to_owned());
    }

    /// Tasks that are open now.
    pub fn open_tasks(&self) -> impl Iterator<Item = &TaskInstance> {
        self.tasks.values().filter(|task| task.status == TaskStatus::Open)
    }

    /// Renames phase and task keys everywhere the state holds them (a migration); ids of
    /// instances, series and timers stay.
    fn rename(&mut self, phases: &BTreeMap<String, String>, tasks: &BTreeMap<String, String>) {
        let phase = |key: &mut String| {
            if let Some(renamed) = phases.get(key.as_str()) {
                key.clone_from(renamed);
            }
        };
        let task = |key: &mut String| {
            if let Some(renamed) = tasks.get(key.as_str()) {
                key.clone_from(renamed);
            }
        };
        if let Some(current) = &mut self.phase {
            phase(&mut current.key);
        }
        self.phase_iterations = std::mem::take(&mut self.phase_iterations)
            .into_iter()
            .map(|(key, iteration)| (phases.get(&key).cloned().unwrap_or(key), iteration))
            .collect();
        for instance in self.tasks.values_mut() {
            task(&mut instance.task);
            if let Some(key) = &mut instance.phase {
                phase(key);
            }
        }
        for series in self.series.values_mut() {
            task(&mut series.task);
            if let Some(key) = &mut series.phase {
                phase(key);
            }
        }
        for record in &mut self.milestones {
            if let Some(key) = &mut record.task {
                task(key);
            }
            if let Some(key) = &mut record.phase {
                phase(key);
            }
        }
    }

    /// Applies one event in place. Events come from [`crate::decide`], which checked them;
    /// an event that names something unknown changes nothing.
    pub fn apply(&mut self, event: &Event) {
        self.sequence = event.sequence;
        self.updated_at = Some(event.at);
        let at = event.at;
        if event.kind.records_content() {
            self.holds_content = true;
        }
        match &event.kind {
            EventKind::EngagementStarted {
                model_key,
                model_version,
                timezone,
                people,
            } => {
                self.status = EngagementStatus::Active;
                self.model_key.clone_from(model_key);
                self.model_version = *model_version;
                self.timezone.clone_from(timezone);
                self.people.clone_from(people);
                self.started_at = Some(at);
            }
            EventKind::ParticipantAdded { role, person } => {
                self.people.entry(role.clone()).or_default().push(person.clone());
            }
            EventKind::EngagementSuspended { .. } => {
                self.status = EngagementStatus::Suspended;
                self.suspended_at = Some(at);
            }
            EventKind::EngagementResumed => {
                self.status = EngagementStatus::Active;
                self.suspended_at = None;
            }
            EventKind::EngagementCompleted => {
                self.status = EngagementStatus::Completed;
                self.ended_at = Some(at);
                self.phase = None;
            }
            EventKind::EngagementMigrated {
                to_version,
                phases,
                tasks,
                ..
            } => {
                self.model_version = *to_version;
                self.rename(phases, tasks);
            }
            EventKind::EngagementCancelled { .. } => {
                self.status = EngagementStatus::Cancelled;
                self.ended_at = Some(at);
                self.phase = None;
            }
            EventKind::PhaseEntered { phase, iteration } => {
                self.phase_iterations.insert(phase.clone(), *iteration);
                self.phase = Some(CurrentPhase {
                    key: phase.clone(),
                    iteration: *iteration,
                    entered_at: at,
                    sign_offs: BTreeMap::new(),
                });
            }
            EventKind::PhaseSignedOff { role, person, .. } => {
                if let Some(phase) = &mut self.phase {
                    phase.sign_offs.insert(role.clone(), person.clone());
                }
            }
            EventKind::PhaseCompleted { .. } | EventKind::PhaseExited { .. } => {
                self.phase = None;
            }
            EventKind::PhaseSignOffWithdrawn { role, .. } => {
                if let Some(phase) = &mut self.phase {
                    phase.sign_offs.remove(role);
                }
            }
            EventKind::TaskCreated {
                id,
                task,
                phase,
                iteration,
                occurrence,
                subject,
                assignee,
                scheduled_at,
            } => {
                self.tasks.insert(
                    id.clone(),
                    TaskInstance {
                        id: id.clone(),
                        task: task.clone(),
                        phase: phase.clone(),
                        iteration: *iteration,
                        occurrence: *occurrence,
                        subject: subject.clone(),
                        assignee: assignee.clone(),
                        status: TaskStatus::Waiting,
                        created_at: at,
                        opens_at: None,
                        opened_at: None,
                        due_at: None,
                        closed_at: None,
                        due_soon: false,
                        overdue: false,
                        escalated: false,
                        outputs: BTreeMap::new(),
                        skip_reason: None,
                    },
                );
                let series = self
                    .series
                    .values_mut()
                    .find(|series| series.task == *task && series.iteration == *iteration);
                if let (Some(_), Some(series)) = (occurrence, series) {
                    series.occurrences += 1;
                    series.last_occurrence_at = *scheduled_at;
                }
            }
            EventKind::TaskScheduled { id, opens_at } => {
                if let Some(task) = self.tasks.get_mut(id) {
                    task.status = TaskStatus::Scheduled;
                    task.opens_at = Some(*opens_at);
                }
            }
            EventKind::TaskOpened { id, due_at } => {
                if let Some(task) = self.tasks.get_mut(id) {
                    task.status = TaskStatus::Open;
                    task.opened_at = Some(at);
                    task.due_at = *due_at;
                }
            }
            EventKind::TaskAssigned { id, assignee } => {
                if let Some(task) = self.tasks.get_mut(id) {
                    task.assignee = Some(assignee.clone());
                }
            }
            EventKind::TaskCompleted { id, outputs } => {
                if let Some(task) = self.tasks.get_mut(id) {
                    task.status = TaskStatus::Completed;
                    task.closed_at = Some(at);
                    task.outputs.clone_from(outputs);
                }
            }
            EventKind::TaskSkipped { id, reason } => {
                if let Some(task) = self.tasks.get_mut(id) {
                    task.status = TaskStatus::Skipped;
                    task.closed_at = Some(at);
                    task.skip_reason = Some(reason.clone());
                }
            }
            EventKind::TaskReopened { id, .. } => {
                if let Some(task) = self.tasks.get_mut(id) {
                    task.status = TaskStatus::Waiting;
                    task.closed_at = None;
                    task.due_at = None;
                    task.outputs.clear();
                    task.skip_reason = None;
                    task.due_soon = false;
                    task.overdue = false;
                    task.escalated = false;
                }
            }
            EventKind::TaskCancelled { id } => {
                if let Some(task) = self.tasks.get_mut(id) {
                    task.status = TaskStatus::Cancelled;
                    task.closed_at = Some(at);
                }
            }
            EventKind::TaskRescheduled { id, due_at } => {
                if let Some(task) = self.tasks.get_mut(id) {
                    task.due_at = *due_at;
                    task.due_soon = false;
                    task.overdue = false;
                    task.escalated = false;
                }
            }
            EventKind::TaskDueSoon { id, .. } => {
                if let Some(task) = self.tasks.get_mut(id) {
                    task.due_soon = true;
                }
            }
            EventKind::TaskOverdue { id, .. } => {
                if let Some(task) = self.tasks.get_mut(id) {
                    task.overdue = true;
                }
            }
            EventKind::TaskEscalated { id } => {
                if let Some(task) = self.tasks.get_mut(id) {
                    task.escalated = true;
                }
            }
            EventKind::SeriesCreated {
                id,
                task,
                phase,
                iteration,
            } => {
                self.series.insert(
                    id.clone(),
                    Series {
                        id: id.clone(),
                        task: task.clone(),
                        phase: phase.clone(),
                        iteration: *iteration,
                        status: SeriesStatus::Waiting,
                        starts_at: None,
                        occurrences: 0,
                        last_occurrence_at: None,
                    },
                );
            }
            EventKind::SeriesStarted { id, starts_at } => {
                if let Some(series) = self.series.get_mut(id) {
                    series.status = SeriesStatus::Running;
                    series.starts_at = Some(*starts_at);
                }
            }
            EventKind::SeriesFinished { id } => {
                if let Some(series) = self.series.get_mut(id) {
                    series.status = SeriesStatus::Finished;
                }
            }
            EventKind::SeriesCancelled { id } => {
                if let Some(series) = self.series.get_mut(id) {
                    series.status = SeriesStatus::Cancelled;
                }
            }
            EventKind::MilestoneReached {
                milestone,
                phase,
                task,
                iteration,
            } => self.milestones.push(MilestoneRecord {
                milestone: milestone.clone(),
                phase: phase.clone(),
                task: task.clone(),
                iteration: *iteration,
                at,
            }),
            EventKind::GoalSet {
                goal,
                title,
                measure,
                target,
                due,
            } => {
                self.goals.insert(
                    goal.clone(),
                    Goal {
                        id: goal.clone(),
                        title: title.clone(),
                        measure: measure.clone(),
                        target: target.clone(),
                        due: *due,
                        progress: 0,
                        status: GoalStatus::Active,
                        set_at: at,
                        updated_at: at,
                        note: None,
                        content_erased: false,
                    },
                );
            }
            EventKind::GoalProgressRecorded {
                goal,
                progress,
                status,
                note,
            } => {
                if let Some(goal) = self.goals.get_mut(goal) {
                    goal.progress = *progress;
                    goal.status = *status;
                    goal.updated_at = at;
                    if note.is_some() {
                        goal.note.clone_from(note);
                    }
                }
            }
            EventKind::GoalAchieved { goal } => {
                if let Some(goal) = self.goals.get_mut(goal) {
                    goal.status = GoalStatus::Achieved;
                    goal.updated_at = at;
                }
            }
            EventKind::CommitmentRecorded {
                commitment,
                description,
                owner,
                due,
            } => {
                self.commitments.insert(
                    commitment.clone(),
                    Commitment {
                        id: commitment.clone(),
                        description: description.clone(),
                        owner: owner.clone(),
                        due: *due,
                        status: CommitmentStatus::Open,
                        recorded_at: at,
                        followed_up_at: None,
                        follow_up_due: false,
                        note: None,
                        content_erased: false,
                    },
                );
            }
            EventKind::CommitmentFollowedUp {
                commitment,
                status,
                note,
                due,
            } => {
                if let Some(commitment) = self.commitments.get_mut(commitment) {
                    commitment.followed_up_at = Some(at);
                    commitment.follow_up_due = false;
                    if note.is_some() {
                        commitment.note.clone_from(note);
                    }
                    if *status == CommitmentStatus::Renegotiated {
                        // Renegotiated means open again with a new date.
                        commitment.status = CommitmentStatus::Open;
                        commitment.due = *due;
                    } else {
                        commitment.status = *status;
                    }
                }
            }
            EventKind::CommitmentFollowUpDue { commitment } => {
                if let Some(commitment) = self.commitments.get_mut(commitment) {
                    commitment.follow_up_due = true;
                }
            }
            EventKind::TimerScheduled { id, fires_at, purpose } => {
                self.timers.insert(
                    id.clone(),
                    Timer {
                        id: id.clone(),
                        at: *fires_at,
                        purpose: purpose.clone(),
                        deferred: false,
                    },
                );
            }
            EventKind::TimerCancelled { id } | EventKind::TimerFired { id } => {
                self.timers.remove(id);
            }
            EventKind::TimerDeferred { id } => {
                if let Some(timer) = self.timers.get_mut(id) {
                    timer.deferred = true;
                }
            }
            EventKind::ContentErased { generation } => {
                self.erase_content();
                self.content_generation = *generation;
                self.content_erased = Some(ContentErasure {
                    sequence: event.sequence,
                    at,
                });
            }
            EventKind::PersonErased { person, pseudonym } => self.replace_person(person, pseudonym),
        }
    }
}
