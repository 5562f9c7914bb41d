//! The process-model document as a modeller writes it (YAML or JSON).
//!
//! These types mirror the file format one to one and are what the JSON Schema is generated
//! from. Values that need parsing beyond their JSON type (durations, cron expressions, time
//! zones, CEL) are kept as text here so that [`crate::compile`] can report every problem at
//! once, with its path, instead of stopping at the first one.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::compile::KEY_PATTERN;

/// The only `apiVersion` this crate reads.
pub const API_VERSION: &str = "coachflow.dev/v1";
/// The only `kind` this crate reads.
pub const KIND: &str = "ProcessModel";

/// A coaching method as data: phases of tasks with gates, timers and milestones.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schemars(title = "Coachflow process model")]
pub struct ProcessModel {
    /// Always `coachflow.dev/v1`.
    pub api_version: String,
    /// Always `ProcessModel`.
    pub kind: String,
    pub metadata: Metadata,
    pub spec: Spec,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Metadata {
    /// Stable identifier of the model; publishing the same key again makes a new version.
    /// Lower-case letters, digits, `_` and `-`, starting with a letter (snake_case or
    /// kebab-case).
    #[schemars(extend("pattern" = KEY_PATTERN))]
    pub key: String,
    /// Human-readable name.
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// The parties of an engagement; an engagement binds opaque person ids to these roles.
    pub roles: Vec<Role>,
    /// The milestones downstream systems may subscribe to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub milestones: Vec<Milestone>,
    /// The phases, in order. The engagement starts in the first one.
    pub phases: Vec<Phase>,
    /// Tasks that belong to no single phase and run for the whole engagement, usually with
    /// `repeat`. They stop when the engagement ends.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub throughout: Vec<Task>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Role {
    #[schemars(extend("pattern" = KEY_PATTERN))]
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Several people may hold this role (e.g. stakeholders).
    #[serde(default, skip_serializing_if = "is_false")]
    pub multiple: bool,
    /// An engagement cannot start without at least one person in this role.
    #[serde(default, skip_serializing_if = "is_false")]
    pub required: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Milestone {
    #[schemars(extend("pattern" = KEY_PATTERN))]
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Phase {
    #[schemars(extend("pattern" = KEY_PATTERN))]
    pub key: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default)]
    pub tasks: Vec<Task>,
    /// When the phase is done. Without one: every non-optional task done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit: Option<Exit>,
    /// Where to go after the exit: the first transition whose `when` holds wins; if none
    /// does, the next phase in order (or, after the last phase, the engagement completes).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub next: Vec<Transition>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TaskKind {
    Meeting,
    Session,
    Interview,
    Assessment,
    Survey,
    Document,
    Approval,
    Checkin,
    Action,
    Custom,
}

impl TaskKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskKind::Meeting => "meeting",
            TaskKind::Session => "session",
            TaskKind::Interview => "interview",
            TaskKind::Assessment => "assessment",
            TaskKind::Survey => "survey",
            TaskKind::Document => "document",
            TaskKind::Approval => "approval",
            TaskKind::Checkin => "checkin",
            TaskKind::Action => "action",
            TaskKind::Custom => "custom",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Task {
    /// Unique across the whole model.
    #[schemars(extend("pattern" = KEY_PATTERN))]
    pub key: String,
    pub name: String,
    pub kind: TaskKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The role that does the task. With `for_each` on the same role, each person does
    /// their own instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignee: Option<String>,
    /// Roles that take part.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub participants: Vec<String>,
    /// An optional task does not hold up the exit gate and may be skipped.
    #[serde(default, skip_serializing_if = "is_false")]
    pub optional: bool,
    /// Tasks of the same phase (or of `throughout`) that must be done first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub after: Vec<String>,
    /// One instance per person in this role (e.g. a 360 interview per stakeholder); a
    /// person added to the role later gets theirs too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub for_each: Option<String>,
    /// ISO-8601 delay between the task becoming ready and opening (e.g. `P6W`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("pattern" = DURATION_PATTERN))]
    pub start_after: Option<String>,
    /// ISO-8601 duration from opening to the due date.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("pattern" = DURATION_PATTERN))]
    pub due: Option<String>,
    /// ISO-8601 durations before the due date at which the task is due soon.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("items" = { "type": "string", "pattern": DURATION_PATTERN }))]
    pub reminders: Vec<String>,
    /// ISO-8601 duration after opening at which a still-open task is escalated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("pattern" = DURATION_PATTERN))]
    pub escalate_after: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeat: Option<Repeat>,
    /// Typed fields captured when the task is completed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outputs: Vec<Output>,
    /// Reached when the task is done (every instance and occurrence).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub milestone: Option<String>,
}

/// A recurring task: occurrences open on a schedule, `every` duration or `cron` in a time zone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Repeat {
    /// ISO-8601 interval between occurrences, in calendar time of `timezone`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("pattern" = DURATION_PATTERN))]
    pub every: Option<String>,
    /// A cron expression (5 or 6 fields) evaluated in `timezone`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
    /// IANA time zone (e.g. `Europe/Berlin`); default the engagement's time zone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// How many occurrences in all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub count: Option<u32>,
    /// ISO-8601 duration after the first occurrence past which no occurrence opens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("pattern" = DURATION_PATTERN))]
    pub until: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OutputType {
    /// A short string, e.g. a document reference.
    String,
    /// Free text (notes, reflections). Never leaves in an event, whatever its visibility.
    Text,
    Number,
    Integer,
    Boolean,
    /// A calendar date, `YYYY-MM-DD`.
    Date,
    /// One of `values`.
    Enum,
}

impl OutputType {
    pub fn as_str(self) -> &'static str {
        match self {
            OutputType::String => "string",
            OutputType::Text => "text",
            OutputType::Number => "number",
            OutputType::Integer => "integer",
            OutputType::Boolean => "boolean",
            OutputType::Date => "date",
            OutputType::Enum => "enum",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Output {
    #[schemars(extend("pattern" = KEY_PATTERN))]
    pub key: String,
    #[serde(rename = "type")]
    pub output_type: OutputType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Completing the task without this field is refused.
    #[serde(default, skip_serializing_if = "is_false")]
    pub required: bool,
    /// The allowed values of an `enum` output.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
    /// Roles that may see the value, and `integration` for the public events (typed
    /// values only: a `text` or `string` output never leaves in an event). Empty: only the
    /// coach and the client.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub visibility: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Exit {
    /// CEL over the engagement (`tasks`, `outputs`, `goals`, `commitments`, `people`,
    /// `phase`); replaces the default "every non-optional task done", which stays available
    /// as `phase.tasks_done`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<String>,
    /// Roles that must sign off before the phase can be left.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approval: Vec<String>,
    /// Reached when the phase is left.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub milestone: Option<String>,
    /// Leave the phase only on an explicit `AdvancePhase` command, not as soon as the gate
    /// holds.
    #[serde(default, skip_serializing_if = "is_false")]
    pub manual: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Transition {
    /// The phase to enter; it may be an earlier one (a loop).
    pub to: String,
    /// CEL condition; without one the transition always holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<String>,
}

/// ISO-8601 duration as accepted by [`crate::IsoDuration`] (which also refuses zero): a
/// date part, a time part or both, each with at least one unit, in order. Written without
/// lookarounds, so every JSON Schema validator (ECMA-262 or RE2-style regexes) reads it.
pub const DURATION_PATTERN: &str = concat!(
    r"^P(?:(?:\d+Y(?:\d+M)?(?:\d+W)?(?:\d+D)?|\d+M(?:\d+W)?(?:\d+D)?|\d+W(?:\d+D)?|\d+D)",
    r"(?:T(?:\d+H(?:\d+M)?(?:\d+S)?|\d+M(?:\d+S)?|\d+S))?",
    r"|T(?:\d+H(?:\d+M)?(?:\d+S)?|\d+M(?:\d+S)?|\d+S))$"
);

fn is_false(value: &bool) -> bool {
    !*value
}
