//! The Coachflow process-model language.
//!
//! A coaching method is data: a YAML or JSON [`ProcessModel`] of roles, milestones, phases
//! of tasks, exit gates and transitions. [`parse`] reads one, [`compile`] validates it into
//! a runnable [`Model`] (or returns every [`Problem`] with its path), [`json_schema`]
//! describes the format, and [`render_mermaid`] draws it. Nothing here does IO.

mod compile;
mod diff;
mod document;
mod duration;
mod expression;
mod mermaid;
mod model;
mod parse;
mod schedule;

pub use cel;
pub use compile::INTEGRATION_AUDIENCE;
pub use compile::{KEY_PATTERN, MAX_KEY_LENGTH, Problem, Problems, compile, is_valid_key};
pub use diff::{Change, Impact, ModelDiff, diff};
pub use document::{
    API_VERSION, DURATION_PATTERN, Exit, KIND, Metadata, Milestone, Output, OutputType, Phase, ProcessModel, Repeat,
    Role, Spec, Task, TaskKind, Transition,
};
pub use duration::{DurationError, IsoDuration, resolve_local};
pub use expression::{Condition, Needs, PHASE_FIELDS, TASK_FIELDS, VARIABLES, Vocabulary};
pub use mermaid::render_mermaid;
pub use model::{Model, PhasePlan, TaskId, TaskPlan, TransitionPlan};
pub use parse::parse;
pub use schedule::{Cadence, Schedule, parse_cron, parse_timezone};

/// The JSON Schema of the model format, generated from the document types.
pub fn json_schema() -> serde_json::Value {
    let schema = schemars::schema_for!(ProcessModel);
    serde_json::to_value(schema).unwrap_or_default()
}
